// ServerStream and ServerConnection: thin handles over the codec core.
#include "proxy/http2/server.h"

namespace remora::proxy::http2 {

namespace asio = boost::asio;
using boost::system::error_code;

ServerStream::~ServerStream() { conn_->release(*state_); }

asio::awaitable<BodyEvent> ServerStream::read_body(std::chrono::steady_clock::duration wait) {
    return conn_->read_body(state_, wait);
}

asio::awaitable<error_code> ServerStream::write_head(http::ResponseHead head, bool end_stream) {
    co_return conn_->submit_response(*state_, head, end_stream);
}

error_code ServerStream::submit_head(const http::ResponseHead& head, bool end_stream) {
    return conn_->submit_response(*state_, head, end_stream);
}

asio::awaitable<error_code> ServerStream::write_body(std::span<const uint8_t> data,
                                                     bool end_stream) {
    return conn_->write_body(state_, data, end_stream);
}

asio::awaitable<error_code> ServerStream::write_trailers(http::Trailers trailers) {
    co_return conn_->write_trailers(*state_, std::move(trailers));
}

void ServerStream::reset(uint32_t h2_error) { conn_->reset(*state_, h2_error); }

ServerConnection::ServerConnection(std::unique_ptr<ByteStream> io, Handler handler,
                                   const Http2Limits& limits, std::shared_ptr<Http2Stats> stats)
    : conn_(std::make_shared<detail::Connection>(detail::Connection::Side::server, std::move(io),
                                                 limits, std::move(stats), std::move(handler))) {}

}  // namespace remora::proxy::http2
