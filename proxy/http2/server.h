// The server side of the HTTP/2 codec: a ServerConnection reads the client preface and frames and
// hands each request stream, as a ServerStream, to a handler co_spawned on the connection's executor.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "proxy/http2/connection.h"

namespace remora::proxy::http2 {

// One request stream. Calls must come from the connection's io_context thread. At most one
// read_body() and one write at a time; reads and writes may run in two coroutines at once.
// Dropping the last reference before this side ended the stream resets it (INTERNAL_ERROR).
class ServerStream {
public:
    ServerStream(std::shared_ptr<detail::Connection> conn, std::shared_ptr<detail::StreamState> s)
        : conn_(std::move(conn)), state_(std::move(s)) {}
    ~ServerStream();
    ServerStream(const ServerStream&) = delete;
    ServerStream& operator=(const ServerStream&) = delete;

    int32_t id() const noexcept { return state_->id; }
    // The request head: :method, :scheme, :authority (or Host), :path, regular fields.
    const http::RequestHead& head() const noexcept { return state_->request; }
    // The next chunk of request body; the stream's window is given back as chunks are taken,
    // so a handler that stops reading stops the client. Waits at most `wait`: past it, a reset
    // event with boost::beast::error::timeout, and the stream is still open for an answer.
    boost::asio::awaitable<BodyEvent> read_body(
        std::chrono::steady_clock::duration wait = std::chrono::steady_clock::duration::max());
    // By value: a coroutine's reference parameters would dangle if the awaitable were stored.
    boost::asio::awaitable<boost::system::error_code> write_head(http::ResponseHead head,
                                                                 bool end_stream);
    // The same, at once: nghttp2 copies the fields, so no coroutine frame or copy of the head.
    boost::system::error_code submit_head(const http::ResponseHead& head, bool end_stream);
    // The request head, moved out (the stream does not read it again): for the one handler
    // that takes the stream over, instead of a copy.
    http::RequestHead take_head() noexcept { return std::move(state_->request); }
    // Completes once nghttp2 has taken every byte (flow control allowing): the span must stay
    // valid until then, and nothing is buffered beyond the connection's coalescing buffer.
    boost::asio::awaitable<boost::system::error_code> write_body(std::span<const uint8_t> data,
                                                                 bool end_stream);
    // Ends the stream with trailing HEADERS (after write_head(…, false) and any body).
    boost::asio::awaitable<boost::system::error_code> write_trailers(http::Trailers trailers);
    void reset(uint32_t h2_error = 2 /* INTERNAL_ERROR */);
    bool closed() const noexcept { return state_->closed; }
    // The client ended the request and every body byte has been taken by read_body().
    bool request_ended() const noexcept { return state_->recv_end && state_->body.empty(); }

private:
    std::shared_ptr<detail::Connection> conn_;
    std::shared_ptr<detail::StreamState> state_;
};

// A handle to one server connection (copies share it).
class ServerConnection {
public:
    using Handler = detail::Connection::Handler;

    ServerConnection(std::unique_ptr<ByteStream> io, Handler handler, const Http2Limits& limits = {},
                     std::shared_ptr<Http2Stats> stats = std::make_shared<Http2Stats>());

    // Serves until the client goes away, a limit closes the connection or close() is called.
    boost::asio::awaitable<boost::system::error_code> run() { return conn_->run(); }
    void goaway(int32_t last_stream_id = -1) { conn_->goaway(last_stream_id); }
    void close() { conn_->close(); }
    std::size_t active_streams() const noexcept { return conn_->active_streams(); }
    std::size_t buffered_bytes() const noexcept { return conn_->buffered_bytes(); }
    std::size_t peak_buffered_bytes() const noexcept { return conn_->peak_buffered_bytes(); }

private:
    std::shared_ptr<detail::Connection> conn_;
};

}  // namespace remora::proxy::http2
