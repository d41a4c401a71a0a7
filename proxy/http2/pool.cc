// Http2Pool: find a connection with room, else connect (bounded per key), drop dead ones.
#include "proxy/http2/pool.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <algorithm>

namespace remora::proxy::http2 {

namespace asio = boost::asio;
using boost::system::error_code;

Http2Pool::Http2Pool(asio::any_io_executor ex, const Http2Limits& limits,
                     std::shared_ptr<Http2Stats> stats, Http2PoolLimits pool_limits)
    : executor_(std::move(ex)),
      limits_(limits),
      stats_(stats ? std::move(stats) : std::make_shared<Http2Stats>()),
      pool_limits_(pool_limits) {}

Http2Pool::~Http2Pool() {
    for (auto& [key, e] : entries_)
        for (auto& c : e.connections) c.close();
}

void Http2Pool::prune(Entry& e) {
    const auto gone = std::erase_if(e.connections, [](const ClientConnection& c) { return !c.usable(); });
    pooled_.fetch_sub(gone, std::memory_order_relaxed);
}

asio::awaitable<boost::system::result<ClientConnection>> Http2Pool::acquire(
    std::string key, ConnectFn connect) {
    auto& entry = entries_[key];
    prune(entry);
    for (auto& c : entry.connections)
        if (c.available()) co_return c;
    if (entry.connections.size() + entry.connecting >= pool_limits_.max_connections_per_key) {
        ++stats_->pool_overflow;
        co_return make_error_code(Http2Error::pool_overflow);
    }
    ++entry.connecting;
    auto result = co_await connect();
    auto& after = entries_[key];  // the map may have rehashed while we waited
    --after.connecting;
    if (result.error || !result.stream) {
        ++stats_->pool_connect_failures;
        co_return make_error_code(Http2Error::connect_failed);
    }
    ClientConnection conn(std::move(result.stream), limits_, stats_);
    asio::co_spawn(conn.get_executor(), conn.run(), asio::detached);
    ++stats_->pool_connections_opened;
    after.connections.push_back(conn);
    pooled_.fetch_add(1, std::memory_order_relaxed);
    co_return conn;
}

asio::awaitable<boost::system::result<std::shared_ptr<ClientStream>>> Http2Pool::open_stream(
    std::string key, http::RequestHead head, bool end_stream, ConnectFn connect) {
    for (int attempt = 0;; ++attempt) {
        auto conn = co_await acquire(key, connect);
        if (!conn) co_return conn.error();
        auto stream = conn->open(head, end_stream);
        if (stream) {
            ++stats_->pool_streams_opened;
            co_return stream;
        }
        if (!is_retryable(stream.error()) || attempt > 0) co_return stream.error();
        ++stats_->pool_streams_retried;
    }
}

std::size_t Http2Pool::connection_count(const std::string& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? 0 : it->second.connections.size();
}

void Http2Pool::shutdown() {
    for (auto& [key, e] : entries_)
        for (auto& c : e.connections) c.goaway();
}

}  // namespace remora::proxy::http2
