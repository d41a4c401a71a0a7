// The stream interface every codec implements and the request path is written against: a
// ServerStream is one request received from a client (HTTP/1.1 message or HTTP/2 stream) and the
// response going back; a ClientStream is one exchange with an upstream (a pooled HTTP/1.1
// connection or a stream multiplexed on an HTTP/2 connection).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

#include "proxy/http/message.h"

namespace remora::proxy::http {

// One step of a body: some bytes, or its end (with trailers when the peer sent any), or the
// stream's failure. `data` and `trailers` stay valid until the next read on the same stream.
struct BodyPart {
    enum class Kind { data, end, error };
    Kind kind = Kind::end;
    std::string_view data;
    const Trailers* trailers = nullptr;  // Kind::end only; null when there were none
    boost::system::error_code error;     // Kind::error
};

// Writes report failure as an error_code; every call comes from the stream's executor, one
// read and one write outstanding at most.
class ServerStream {
public:
    virtual ~ServerStream() = default;

    // The request head as received; the request path edits it in place before forwarding it.
    RequestHead& head() noexcept { return head_; }
    const RequestHead& head() const noexcept { return head_; }
    // The request carries no more body to read (none at all, or read to its end).
    virtual bool body_done() const noexcept = 0;
    // The next part of the request body, waiting at most `wait` for it (a timeout is an error
    // part with boost::beast::error::timeout; the stream stays usable for a reply). A client
    // waiting for "100-continue" is told to go on by the first call.
    virtual boost::asio::awaitable<BodyPart> read_body(std::chrono::steady_clock::duration wait) = 0;

    // The response head; with end_stream nothing follows. A codec may hold the head back to send
    // it with the first body part (one write): flush() sends what is held.
    virtual boost::asio::awaitable<boost::system::error_code> send_head(ResponseHead& head,
                                                                        bool end_stream) = 0;
    virtual boost::asio::awaitable<boost::system::error_code> send_body(std::string_view data,
                                                                        bool end_stream) = 0;
    // Ends the response with trailers (an HTTP/1.1 response that is not chunked drops them).
    virtual boost::asio::awaitable<boost::system::error_code> send_trailers(const Trailers& t) = 0;
    virtual boost::asio::awaitable<boost::system::error_code> flush() = 0;
    // Abandons the response: HTTP/2 resets the stream, HTTP/1.1 closes the connection.
    virtual void reset() noexcept = 0;
    // Whether the response head has gone (or is held to go): a local reply is no longer possible.
    virtual bool head_sent() const noexcept = 0;
    // HTTP/1.1 Upgrade (WebSocket): sends the 101 `head`, then carries bytes both ways between
    // this connection and `upstream`'s until either side closes, adding them to `received` (from
    // the client) and `sent`. Protocols without Upgrade do nothing.
    virtual boost::asio::awaitable<void> tunnel(ResponseHead& head, class ClientStream& upstream,
                                                uint64_t& received, uint64_t& sent) {
        (void)head, (void)upstream, (void)received, (void)sent;
        co_return;
    }

protected:
    RequestHead head_;
};

class ClientStream {
public:
    virtual ~ClientStream() = default;

    virtual Protocol protocol() const noexcept = 0;
    // This exchange runs on a connection that carried an earlier one: a failure before any
    // response byte may be a stale connection, retried once on a fresh one.
    virtual bool reused() const noexcept = 0;

    virtual boost::asio::awaitable<boost::system::error_code> send_head(const RequestHead& head,
                                                                        bool end_stream) = 0;
    virtual boost::asio::awaitable<boost::system::error_code> send_body(std::string_view data,
                                                                        bool end_stream) = 0;
    virtual boost::asio::awaitable<boost::system::error_code> send_trailers(const Trailers& t) = 0;
    // The final response head (informational ones are skipped, except 101 after an Upgrade),
    // waiting at most `wait`. A timeout is boost::beast::error::timeout.
    virtual boost::asio::awaitable<boost::system::error_code> read_head(
        ResponseHead& head, std::chrono::steady_clock::duration wait) = 0;
    // The next part of the response body, waiting at most `wait` (a timeout is an error part with
    // boost::beast::error::timeout).
    virtual boost::asio::awaitable<BodyPart> read_body(std::chrono::steady_clock::duration wait) = 0;
    // Response body bytes already here, so reading them will not wait.
    virtual bool body_ready() const noexcept = 0;
    // The upstream answered before taking the whole request (an early 403 or 413, then a reset
    // of the request side): read_head() returns that answer without waiting.
    virtual bool head_ready() const noexcept { return false; }
    // The exchange is over. `complete`: request and response ended cleanly, so the connection
    // may carry another (HTTP/1.1 goes back to its pool); otherwise it is closed or reset.
    virtual void finish(bool complete) noexcept = 0;
};

}  // namespace remora::proxy::http
