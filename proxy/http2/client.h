// The client side of the HTTP/2 codec: a ClientConnection multiplexes ClientStreams over one
// connection, within the peer's SETTINGS_MAX_CONCURRENT_STREAMS, and reports GOAWAY and
// REFUSED_STREAM as retryable errors.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <span>

#include "proxy/http2/connection.h"

namespace remora::proxy::http2 {

// One request stream. Same threading and backpressure rules as ServerStream. Dropping the last
// reference before this side ended the stream resets it (CANCEL).
class ClientStream {
public:
    ClientStream(std::shared_ptr<detail::Connection> conn, std::shared_ptr<detail::StreamState> s)
        : conn_(std::move(conn)), state_(std::move(s)) {}
    ~ClientStream();
    ClientStream(const ClientStream&) = delete;
    ClientStream& operator=(const ClientStream&) = delete;

    int32_t id() const noexcept { return state_->id; }
    // The final response head (1xx heads are skipped). Fails with refused_stream (retryable)
    // when the peer refused the stream or it was above the last id of a GOAWAY.
    boost::asio::awaitable<boost::system::result<http::ResponseHead>> read_head();
    // Waits at most `wait` for the next chunk: past it, a reset event with
    // boost::beast::error::timeout (the stream itself is left as it is).
    boost::asio::awaitable<BodyEvent> read_body(
        std::chrono::steady_clock::duration wait = std::chrono::steady_clock::duration::max());
    boost::asio::awaitable<boost::system::error_code> write_body(std::span<const uint8_t> data,
                                                                 bool end_stream);
    boost::asio::awaitable<boost::system::error_code> write_trailers(http::Trailers trailers);
    void reset(uint32_t h2_error = 8 /* CANCEL */);
    // Reading the body will not wait: bytes or the end are here, or the stream is gone.
    bool body_ready() const noexcept { return !state_->body.empty() || state_->recv_end || state_->closed; }
    // The final response head has arrived.
    bool head_ready() const noexcept { return state_->head_received; }

private:
    std::shared_ptr<detail::Connection> conn_;
    std::shared_ptr<detail::StreamState> state_;
};

// A handle to one client connection (copies share it). run() must be running (co_spawned) for
// streams to make progress; Http2Pool does that.
class ClientConnection {
public:
    ClientConnection(std::unique_ptr<ByteStream> io, const Http2Limits& limits = {},
                     std::shared_ptr<Http2Stats> stats = std::make_shared<Http2Stats>());

    boost::asio::awaitable<boost::system::error_code> run() { return conn_->run(); }
    // Sends the request HEADERS (with END_STREAM when end_stream). Fails with going_away or
    // no_capacity (both retryable on another connection) when available() is false.
    boost::system::result<std::shared_ptr<ClientStream>> open(const http::RequestHead& head,
                                                              bool end_stream);
    // A new stream fits: not closed, no GOAWAY either way, under the peer's concurrency limit.
    bool available() const noexcept;
    // Still worth keeping in a pool (in-flight streams may still complete when false).
    bool usable() const noexcept { return !conn_->is_closed() && !conn_->going_away(); }
    bool closed() const noexcept { return conn_->is_closed(); }
    std::size_t active_streams() const noexcept { return conn_->active_streams(); }
    uint64_t requests_submitted() const noexcept { return conn_->requests_submitted(); }
    std::size_t buffered_bytes() const noexcept { return conn_->buffered_bytes(); }
    std::size_t peak_buffered_bytes() const noexcept { return conn_->peak_buffered_bytes(); }
    void goaway() { conn_->goaway(); }
    void on_capacity(std::function<void()> fn) { conn_->on_capacity(std::move(fn)); }
    void close() { conn_->close(); }
    boost::asio::any_io_executor get_executor() const { return conn_->get_executor(); }

private:
    std::shared_ptr<detail::Connection> conn_;
};

}  // namespace remora::proxy::http2
