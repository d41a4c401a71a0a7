// One request/response exchange on a pooled HTTP/1.1 upstream connection (plain or mTLS), behind
// the protocol-neutral ClientStream: the request head goes with its first body bytes in one
// write, the response is parsed by Beast and streamed a chunk at a time.
#pragma once

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "proxy/http/stream.h"
#include "proxy/http1/codec.h"
#include "proxy/upstream/pool.h"

namespace remora::proxy::http1 {

class ClientStream final : public http::ClientStream {
public:
    // `pool` takes the connection back when the exchange ends cleanly, unless it has carried
    // `max_requests` (0: no limit).
    ClientStream(std::unique_ptr<UpstreamConn> conn, UpstreamPool& pool, uint32_t max_requests,
                 std::chrono::seconds idle_timeout, uint32_t max_header_bytes);
    ~ClientStream() override;

    http::Protocol protocol() const noexcept override { return http::Protocol::http11; }
    bool reused() const noexcept override { return reused_; }
    boost::asio::awaitable<boost::system::error_code> send_head(const http::RequestHead& head,
                                                                bool end_stream) override;
    boost::asio::awaitable<boost::system::error_code> send_body(std::string_view data,
                                                                bool end_stream) override;
    boost::asio::awaitable<boost::system::error_code> send_trailers(const http::Trailers& t) override;
    boost::asio::awaitable<boost::system::error_code> read_head(
        http::ResponseHead& head, std::chrono::steady_clock::duration wait) override;
    boost::asio::awaitable<http::BodyPart> read_body(std::chrono::steady_clock::duration wait) override;
    bool body_ready() const noexcept override;
    void finish(bool complete) noexcept override;

    // The connection itself, for a WebSocket tunnel after a 101 (then never pooled again).
    UpstreamConn& connection() noexcept { return *conn_; }

private:
    boost::asio::awaitable<boost::system::error_code> write_out(std::string_view data);

    std::unique_ptr<UpstreamConn> conn_;
    UpstreamPool& pool_;
    uint32_t max_requests_;
    std::chrono::seconds idle_timeout_;
    uint32_t max_header_bytes_;
    bool reused_ = false;
    bool head_request_ = false;
    Framing framing_ = Framing::none;
    bool request_done_ = false;
    std::string out_;  // the head (and chunk framing) waiting to go with the next bytes
    std::optional<boost::beast::http::response_parser<boost::beast::http::buffer_body>> parser_;
    std::unique_ptr<char[]> chunk_;
    bool response_done_ = false;
};

}  // namespace remora::proxy::http1
