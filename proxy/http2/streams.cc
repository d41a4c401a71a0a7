// HTTP/2 streams as http::ServerStream and http::ClientStream.
#include "proxy/http2/streams.h"

#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/error.hpp>

namespace remora::proxy::http2 {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

std::span<const uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

http::BodyPart to_part(BodyEvent& ev, bool& ended) {
    http::BodyPart part;
    switch (ev.kind) {
        case BodyEvent::Kind::data:
            part.kind = http::BodyPart::Kind::data;
            part.data = ev.data;
            break;
        case BodyEvent::Kind::end:
            ended = true;
            part.kind = http::BodyPart::Kind::end;
            if (!ev.trailers.empty()) part.trailers = &ev.trailers;
            break;
        case BodyEvent::Kind::reset:
            part.kind = http::BodyPart::Kind::error;
            part.error = ev.error ? ev.error : make_error_code(Http2Error::stream_reset);
            break;
    }
    return part;
}

}  // namespace

ServerStreamAdapter::ServerStreamAdapter(std::shared_ptr<http2::ServerStream> s) : s_(std::move(s)) {
    head_ = s_->take_head();
    head_.protocol = http::Protocol::http2;
}

asio::awaitable<http::BodyPart> ServerStreamAdapter::read_body(std::chrono::steady_clock::duration wait) {
    if (ended_) co_return http::BodyPart{};
    event_ = co_await s_->read_body(wait);
    co_return to_part(event_, ended_);
}

asio::awaitable<error_code> ServerStreamAdapter::send_head(http::ResponseHead& head, bool end_stream) {
    head_sent_ = true;
    co_return s_->submit_head(head, end_stream);
}

asio::awaitable<error_code> ServerStreamAdapter::send_body(std::string_view data, bool end_stream) {
    co_return co_await s_->write_body(bytes(data), end_stream);
}

asio::awaitable<error_code> ServerStreamAdapter::send_trailers(const http::Trailers& t) {
    co_return co_await s_->write_trailers(t);
}

asio::awaitable<error_code> ServerStreamAdapter::flush() { co_return error_code{}; }

ClientStreamAdapter::ClientStreamAdapter(Http2Pool& pool, std::string_view key, ConnectFn connect,
                                         uint32_t max_requests_per_connection)
    : pool_(pool),
      key_(key),
      connect_(std::move(connect)),
      max_requests_per_connection_(max_requests_per_connection) {}

ClientStreamAdapter::~ClientStreamAdapter() { finish(false); }

asio::awaitable<error_code> ClientStreamAdapter::send_head(const http::RequestHead& head, bool end_stream) {
    auto r = co_await pool_.open_stream(key_, head, end_stream, connect_, max_requests_per_connection_);
    if (!r) co_return r.error();
    s_ = std::move(*r);
    co_return error_code{};
}

asio::awaitable<error_code> ClientStreamAdapter::send_body(std::string_view data, bool end_stream) {
    if (!s_) co_return make_error_code(Http2Error::head_not_sent);
    co_return co_await s_->write_body(bytes(data), end_stream);
}

asio::awaitable<error_code> ClientStreamAdapter::send_trailers(const http::Trailers& t) {
    if (!s_) co_return make_error_code(Http2Error::head_not_sent);
    co_return co_await s_->write_trailers(t);
}

asio::awaitable<error_code> ClientStreamAdapter::read_head(http::ResponseHead& head,
                                                           std::chrono::steady_clock::duration wait) {
    if (!s_) co_return make_error_code(Http2Error::head_not_sent);
    // The deadline resets the stream, which ends the wait; the handler holds only the stream.
    auto fired = std::make_shared<bool>(false);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(wait);
    timer.async_wait([fired, s = s_](error_code ec) {
        if (ec) return;
        *fired = true;
        s->reset();
    });
    auto r = co_await s_->read_head();
    timer.cancel();
    if (*fired) co_return boost::beast::error::timeout;
    if (!r) co_return r.error();
    head = std::move(*r);
    co_return error_code{};
}

asio::awaitable<http::BodyPart> ClientStreamAdapter::read_body(std::chrono::steady_clock::duration wait) {
    if (!s_ || ended_) co_return http::BodyPart{};
    event_ = co_await s_->read_body(wait);
    co_return to_part(event_, ended_);
}

void ClientStreamAdapter::finish(bool complete) noexcept {
    if (!s_) return;
    if (!complete || !ended_) s_->reset();
    s_.reset();
}

}  // namespace remora::proxy::http2
