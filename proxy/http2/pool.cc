// Http2Pool: find a connection with room, else connect (bounded per key), else wait for room;
// drop dead ones.
#include "proxy/http2/pool.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace remora::proxy::http2 {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
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

ClientConnection* Http2Pool::ready(std::string_view key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    prune(it->second);
    for (auto& c : it->second.connections)
        if (c.available()) return &c;
    return nullptr;
}

asio::awaitable<boost::system::result<ClientConnection>> Http2Pool::acquire(
    std::string key, const ConnectFn& connect) {
    const auto deadline = std::chrono::steady_clock::now() + pool_limits_.pending_timeout;
    bool counted = false;
    for (;;) {
        // Looked up again after every suspension: the map may rehash meanwhile.
        auto& entry = entries_[key];
        if (!entry.changed) entry.changed = std::make_shared<Signal>(executor_);
        prune(entry);
        for (auto& c : entry.connections)
            if (c.available()) co_return c;
        auto signal = entry.changed;
        // A connection being made takes the requests that fit in it (as Envoy attaches pending
        // requests to a connecting client): a cold burst opens one connection, not one each.
        const bool connecting_has_room =
            entry.connecting > 0 && signal->waiters() < entry.connecting * limits_.max_concurrent_streams;
        if (!connecting_has_room &&
            entry.connections.size() + entry.connecting < pool_limits_.max_connections_per_key)
            break;  // room for one more connection: make it
        // Every connection is full, or the one that will have room is still being made: wait for
        // a slot (a stream ends, a connection comes up or goes away), as Envoy's pending queue.
        if (signal->waiters() >= pool_limits_.max_pending_per_key ||
            std::chrono::steady_clock::now() >= deadline) {
            ++stats_->pool_overflow;
            if (counted) ++stats_->pool_pending_timeouts;
            co_return make_error_code(Http2Error::pool_overflow);
        }
        if (!counted) {
            ++stats_->pool_pending;
            counted = true;
        }
        asio::steady_timer timer(executor_, deadline);
        co_await (signal->wait() || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    }
    ++entries_[key].connecting;
    auto result = co_await connect();
    auto& after = entries_[key];
    --after.connecting;
    if (result.error || !result.stream) {
        ++stats_->pool_connect_failures;
        after.changed->notify();  // waiters for this connection try to make their own
        co_return make_error_code(Http2Error::connect_failed);
    }
    ClientConnection conn(std::move(result.stream), limits_, stats_);
    conn.on_capacity([weak = std::weak_ptr<Signal>(after.changed)] {
        if (auto s = weak.lock()) s->notify();
    });
    asio::co_spawn(conn.get_executor(), conn.run(), asio::detached);
    ++stats_->pool_connections_opened;
    after.connections.push_back(conn);
    pooled_.fetch_add(1, std::memory_order_relaxed);
    after.changed->notify();
    co_return conn;
}

asio::awaitable<boost::system::result<std::shared_ptr<ClientStream>>> Http2Pool::open_stream(
    std::string_view key, const http::RequestHead& head, bool end_stream, const ConnectFn& connect,
    uint32_t max_requests_per_connection) {
    for (int attempt = 0;; ++attempt) {
        boost::system::result<ClientConnection> conn = make_error_code(Http2Error::connect_failed);
        if (ClientConnection* c = ready(key)) {
            conn = *c;
        } else {
            conn = co_await acquire(std::string(key), connect);
        }
        if (!conn) co_return conn.error();
        auto stream = conn->open(head, end_stream);
        if (stream) {
            ++stats_->pool_streams_opened;
            if (max_requests_per_connection > 0 &&
                conn->requests_submitted() >= max_requests_per_connection) {
                conn->goaway();  // no new streams; closes once the last one is done
                ++stats_->pool_connections_drained;
            }
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
