// The HTTP/2 codec behind the protocol-neutral stream interface: a request stream a
// ServerConnection accepted, and an upstream exchange on a stream of a pooled ClientConnection.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>
#include <string>

#include "proxy/http/stream.h"
#include "proxy/http2/pool.h"
#include "proxy/http2/server.h"

namespace remora::proxy::http2 {

class ServerStreamAdapter final : public http::ServerStream {
public:
    explicit ServerStreamAdapter(std::shared_ptr<http2::ServerStream> s);

    bool body_done() const noexcept override { return ended_ || s_->request_ended(); }
    boost::asio::awaitable<http::BodyPart> read_body(std::chrono::steady_clock::duration wait) override;
    boost::asio::awaitable<boost::system::error_code> send_head(http::ResponseHead& head,
                                                                bool end_stream) override;
    boost::asio::awaitable<boost::system::error_code> send_body(std::string_view data,
                                                                bool end_stream) override;
    boost::asio::awaitable<boost::system::error_code> send_trailers(const http::Trailers& t) override;
    boost::asio::awaitable<boost::system::error_code> flush() override;
    void reset() noexcept override { s_->reset(); }
    bool head_sent() const noexcept override { return head_sent_; }

private:
    std::shared_ptr<http2::ServerStream> s_;
    BodyEvent event_;
    bool ended_ = false;
    bool head_sent_ = false;
};

class ClientStreamAdapter : public http::ClientStream {
public:
    // The stream opens on send_head(), on a connection of `pool` for `key` (made by `connect`
    // when none has room).
    // max_requests_per_connection: see Http2Pool::open_stream (0: no limit).
    // `key` is a view: what it names must outlive send_head() (the request's target does).
    ClientStreamAdapter(Http2Pool& pool, std::string_view key, ConnectFn connect,
                        uint32_t max_requests_per_connection = 0);
    ~ClientStreamAdapter() override;

    http::Protocol protocol() const noexcept override { return http::Protocol::http2; }
    bool reused() const noexcept override { return false; }  // the pool retries refused streams
    boost::asio::awaitable<boost::system::error_code> send_head(const http::RequestHead& head,
                                                                bool end_stream) override;
    boost::asio::awaitable<boost::system::error_code> send_body(std::string_view data,
                                                                bool end_stream) override;
    boost::asio::awaitable<boost::system::error_code> send_trailers(const http::Trailers& t) override;
    boost::asio::awaitable<boost::system::error_code> read_head(
        http::ResponseHead& head, std::chrono::steady_clock::duration wait) override;
    boost::asio::awaitable<http::BodyPart> read_body(std::chrono::steady_clock::duration wait) override;
    bool body_ready() const noexcept override { return s_ && s_->body_ready(); }
    bool head_ready() const noexcept override { return s_ && s_->head_ready(); }
    void finish(bool complete) noexcept override;

private:
    Http2Pool& pool_;
    std::string_view key_;
    ConnectFn connect_;
    uint32_t max_requests_per_connection_ = 0;
    std::shared_ptr<http2::ClientStream> s_;
    BodyEvent event_;
    bool ended_ = false;
};

}  // namespace remora::proxy::http2
