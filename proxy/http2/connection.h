// The HTTP/2 codec core shared by server and client connections: one nghttp2_session driven by a
// reader and a writer coroutine on one io_context thread (no strand, no locks), its stream table,
// flow control given back as handlers read, coalesced writes and the hardening limits.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/http/message.h"
#include "proxy/http2/byte_stream.h"
#include "proxy/http2/errors.h"
#include "proxy/http2/codec_limits.h"
#include "proxy/http2/wakeup.h"

struct nghttp2_session;

namespace remora::proxy::http2 {

// What read_body() yields: a chunk of body; or the end, with the trailers when the peer sent
// some; or the stream's failure (reset by the peer, connection gone).
struct BodyEvent {
    enum class Kind { data, end, reset };
    Kind kind = Kind::end;
    std::string data;           // Kind::data
    http::Trailers trailers;    // Kind::end; empty when there were none
    boost::system::error_code error;  // Kind::reset
    uint32_t h2_error = 0;      // Kind::reset: the RST_STREAM code, when the peer sent one
};

class ServerStream;

namespace detail {

// The state of one HTTP/2 stream, owned by the connection's table while nghttp2 knows the stream
// and by the handle (ServerStream or ClientStream) while the application holds it.
struct StreamState {
    explicit StreamState(boost::asio::any_io_executor ex) : signal(ex) {}

    int32_t id = -1;
    Signal signal;  // wakes whichever coroutines wait on this stream

    // Inbound header blocks.
    http::HeaderMap block;      // regular fields of the block being received
    std::string pseudo_method, pseudo_scheme, pseudo_authority, pseudo_path, pseudo_status;
    std::size_t block_bytes = 0;  // RFC 9113 header list size of the block so far
    bool head_received = false;   // the request (server) or final response (client) head
    http::RequestHead request;
    http::ResponseHead response;

    // Inbound body, not yet handed to the application (window not yet given back).
    std::deque<std::string> body;
    std::size_t body_bytes = 0;
    bool recv_end = false;
    http::Trailers trailers;
    bool end_delivered = false;

    // Outbound: the caller's span, copied by nghttp2's data callback as window allows.
    bool body_open = false;             // HEADERS went with a data provider
    const uint8_t* out_data = nullptr;  // borrowed from the pending write_body()
    std::size_t out_left = 0;
    bool end_requested = false;         // this side ended the stream (end_stream, trailers, reset)
    std::optional<http::Trailers> out_trailers;
    bool deferred = false;              // the data callback returned NGHTTP2_ERR_DEFERRED
    bool head_submitted = false;        // write_head()/open() queued our HEADERS
    bool headers_sent = false;          // our HEADERS left (client: the request reached the wire)
    bool end_sent = false;              // our END_STREAM left

    // Closing.
    bool closed = false;
    boost::system::error_code close_error;
    uint32_t h2_error = 0;
    bool reset_by_peer = false;
    bool abandoned = false;  // the handle is gone: discard body, give window back at once
    bool read_timed_out = false;  // the wait of the read_body() in progress has passed
    uint32_t read_generation = 0;  // which read_body() a timer belongs to (a late one is ignored)
};

class Connection : public std::enable_shared_from_this<Connection> {
public:
    enum class Side { server, client };
    using Handler = std::function<boost::asio::awaitable<void>(std::shared_ptr<ServerStream>)>;

    Connection(Side side, std::unique_ptr<ByteStream> io, const Http2Limits& limits,
               std::shared_ptr<Http2Stats> stats, Handler handler);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Runs until the connection ends; the error says why (empty after a clean GOAWAY/close).
    boost::asio::awaitable<boost::system::error_code> run();

    // Graceful: GOAWAY(NO_ERROR) naming last_stream_id (default: the last one processed); streams
    // up to it complete, later ones are refused; the connection closes when they are done.
    void goaway(int32_t last_stream_id = -1);
    // Abrupt: closes the socket; every open stream fails with connection_closed.
    void close();

    bool is_closed() const noexcept { return finished_ || closing_; }
    bool going_away() const noexcept { return goaway_sent_ || goaway_received_; }
    std::size_t active_streams() const noexcept { return streams_.size(); }
    // Requests this (client) connection has sent, over its life.
    uint64_t requests_submitted() const noexcept { return requests_submitted_; }
    std::size_t buffered_bytes() const noexcept { return out_.size() + inbound_bytes_; }
    std::size_t peak_buffered_bytes() const noexcept { return peak_buffered_; }
    uint32_t peer_max_concurrent_streams() const noexcept;
    const Http2Limits& limits() const noexcept { return limits_; }
    // Called when a stream ends or the connection can take no more (a pool's waiters re-check).
    void on_capacity(std::function<void()> fn) { on_capacity_ = std::move(fn); }
    boost::asio::any_io_executor get_executor() const { return executor_; }

    // Stream operations, used by the handles.
    boost::system::result<std::shared_ptr<StreamState>> submit_request(const http::RequestHead& head,
                                                                       bool end_stream);
    boost::system::error_code submit_response(StreamState& s, const http::ResponseHead& head,
                                              bool end_stream);
    boost::asio::awaitable<boost::system::error_code> write_body(std::shared_ptr<StreamState> s,
                                                                 std::span<const uint8_t> data,
                                                                 bool end_stream);
    boost::system::error_code write_trailers(StreamState& s, http::Trailers trailers);
    boost::asio::awaitable<BodyEvent> read_body(std::shared_ptr<StreamState> s,
                                                std::chrono::steady_clock::duration wait);
    boost::asio::awaitable<boost::system::result<http::ResponseHead>> read_head(
        std::shared_ptr<StreamState> s);
    void reset(StreamState& s, uint32_t h2_error);
    // The handle is gone: reset the stream if this side had not ended it, give window back.
    void release(StreamState& s) noexcept;

    // nghttp2 callbacks (static trampolines in connection.cc call these).
    int on_begin_frame(const void* hd);
    int on_begin_headers(const void* frame);
    int on_header(const void* frame, std::string_view name, std::string_view value);
    int on_frame_recv(const void* frame);
    int on_data_chunk(uint8_t flags, int32_t stream_id, const uint8_t* data, std::size_t len);
    int on_stream_close(int32_t stream_id, uint32_t error_code);
    int on_frame_send(const void* frame);
    int on_frame_not_send(const void* frame, int lib_error);
    long read_data(int32_t stream_id, uint8_t* buf, std::size_t length, uint32_t* flags,
                   StreamState& s);

private:
    enum class Fatal { none, header_overflow, continuation_flood, settings_flood, empty_frame_flood,
                       rapid_reset, buffer_overflow };

    bool start_session();
    boost::asio::awaitable<void> read_loop();
    boost::asio::awaitable<void> write_loop();
    void handle_recv_error(long rv);
    void terminate(uint32_t h2_error, Http2Error reason);
    void fail_all_streams();
    void note_buffered();
    void want_write() noexcept { write_signal_.notify(); }
    void abort() noexcept;
    void resume(StreamState& s);
    StreamState* find(int32_t id) noexcept;
    void spawn_handler(std::shared_ptr<StreamState> s);
    void finish_block(StreamState& s, const void* frame);

    Side side_;
    std::unique_ptr<ByteStream> io_;
    boost::asio::any_io_executor executor_;
    Http2Limits limits_;
    std::shared_ptr<Http2Stats> stats_;
    Handler handler_;
    nghttp2_session* session_ = nullptr;
    uint64_t requests_submitted_ = 0;

    std::unordered_map<int32_t, std::shared_ptr<StreamState>> streams_;
    Signal write_signal_;
    std::function<void()> on_capacity_;
    std::vector<uint8_t> out_;
    std::size_t inbound_bytes_ = 0;
    std::size_t peak_buffered_ = 0;
    boost::asio::steady_timer write_timer_;
    uint64_t write_generation_ = 0;
    bool writing_ = false;

    bool started_ = false;
    bool read_done_ = false;
    bool closing_ = false;      // flush what is queued (a GOAWAY), then close
    bool finished_ = false;     // the socket is closed; streams have failed
    bool goaway_sent_ = false;
    bool goaway_received_ = false;
    bool aborted_ = false;      // close without flushing
    bool terminated_by_us_ = false;  // our GOAWAY carries an error we already counted
    boost::system::error_code error_;  // why the connection ended
    Fatal fatal_ = Fatal::none;        // set by a callback that returned a fatal error

    // Limit accounting.
    std::size_t continuations_ = 0;
    std::size_t consecutive_empty_ = 0;
    std::size_t streams_closed_ = 0;
    std::size_t premature_resets_ = 0;
};

}  // namespace detail
}  // namespace remora::proxy::http2
