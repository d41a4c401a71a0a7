// ClientStream and ClientConnection: thin handles over the codec core.
#include "proxy/http2/client.h"

#include <algorithm>

namespace remora::proxy::http2 {

namespace asio = boost::asio;
using boost::system::error_code;

ClientStream::~ClientStream() { conn_->release(*state_); }

asio::awaitable<boost::system::result<http::ResponseHead>> ClientStream::read_head() {
    return conn_->read_head(state_);
}

asio::awaitable<BodyEvent> ClientStream::read_body(std::chrono::steady_clock::duration wait) {
    return conn_->read_body(state_, wait);
}

asio::awaitable<error_code> ClientStream::write_body(std::span<const uint8_t> data,
                                                     bool end_stream) {
    return conn_->write_body(state_, data, end_stream);
}

asio::awaitable<error_code> ClientStream::write_trailers(http::Trailers trailers) {
    co_return conn_->write_trailers(*state_, std::move(trailers));
}

void ClientStream::reset(uint32_t h2_error) { conn_->reset(*state_, h2_error); }

ClientConnection::ClientConnection(std::unique_ptr<ByteStream> io, const Http2Limits& limits,
                                   std::shared_ptr<Http2Stats> stats)
    : conn_(std::make_shared<detail::Connection>(detail::Connection::Side::client, std::move(io),
                                                 limits, std::move(stats), nullptr)) {}

boost::system::result<std::shared_ptr<ClientStream>> ClientConnection::open(
    const http::RequestHead& head, bool end_stream) {
    auto s = conn_->submit_request(head, end_stream);
    if (!s) return s.error();
    return std::make_shared<ClientStream>(conn_, std::move(*s));
}

bool ClientConnection::available() const noexcept {
    if (conn_->is_closed() || conn_->going_away()) return false;
    auto cap = std::min(conn_->peer_max_concurrent_streams(), conn_->limits().max_concurrent_streams);
    return conn_->active_streams() < cap;
}

}  // namespace remora::proxy::http2
