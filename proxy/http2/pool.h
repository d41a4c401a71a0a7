// A per-worker pool of multiplexed HTTP/2 client connections, keyed by the upstream's pool key:
// it hands out a connection with room for one more stream, opening one through an injected
// connect function when none has room, within a bound per key.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/http2/client.h"
#include "proxy/http2/wakeup.h"

namespace remora::proxy::http2 {

struct ConnectResult {
    boost::system::error_code error;
    std::unique_ptr<ByteStream> stream;  // connected (and TLS-handshaken, ALPN h2) when no error
};
using ConnectFn = std::function<boost::asio::awaitable<ConnectResult>()>;

struct Http2PoolLimits {
    std::size_t max_connections_per_key = 4;
    // With every connection full (or still connecting), a request waits for a stream slot, as
    // Envoy's pending requests do; at most this many at once per key, for at most this long.
    std::size_t max_pending_per_key = 1024;
    std::chrono::milliseconds pending_timeout{5000};
};

// Single-threaded: one pool per worker, used from that worker's io_context only.
class Http2Pool {
public:
    Http2Pool(boost::asio::any_io_executor ex, const Http2Limits& limits,
              std::shared_ptr<Http2Stats> stats, Http2PoolLimits pool_limits = {});
    ~Http2Pool();
    Http2Pool(const Http2Pool&) = delete;
    Http2Pool& operator=(const Http2Pool&) = delete;

    // A connection with room for one more stream (open() on it, before the next co_await, fits).
    // Parameters by value: they live in the coroutine frame across its suspensions.
    // `connect` by reference: co_await the call at once (the caller's frame keeps it alive).
    boost::asio::awaitable<boost::system::result<ClientConnection>> acquire(std::string key,
                                                                           const ConnectFn& connect);
    // acquire() + open(); when open() loses a race with a GOAWAY or a full connection it tries
    // once more on another connection (counted in pool_streams_retried). A connection that has
    // carried max_requests_per_connection requests (DestinationRule
    // connectionPool.http.maxRequestsPerConnection; 0: no limit) takes no more: it is drained
    // (GOAWAY; its streams complete) and the next request gets another, as Envoy's pools do for
    // HTTP/1.1 and HTTP/2 alike. Counted in pool_connections_drained.
    // The request path's call, once per request: when a connection has room (the usual case) the
    // stream opens without a suspension or a copy. Arguments by reference: co_await the call at
    // once, as every caller does (they live in the caller's frame).
    boost::asio::awaitable<boost::system::result<std::shared_ptr<ClientStream>>> open_stream(
        std::string_view key, const http::RequestHead& head, bool end_stream, const ConnectFn& connect,
        uint32_t max_requests_per_connection = 0);

    std::size_t connection_count(const std::string& key) const;
    // Connections held, readable from any thread (the metrics scrape). One that has closed is
    // counted until the next acquire() for its key notices.
    uint64_t pooled_count() const { return pooled_.load(std::memory_order_relaxed); }
    // GOAWAY on every connection: in-flight streams complete, nothing new is opened.
    void shutdown();

private:
    struct Entry {
        std::vector<ClientConnection> connections;
        std::size_t connecting = 0;
        std::shared_ptr<Signal> changed;  // a connection came up, a stream slot freed, one closed
    };
    void prune(Entry& e);
    // A connection of `key` with room now, or null.
    ClientConnection* ready(std::string_view key);
    struct KeyHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };

    boost::asio::any_io_executor executor_;
    Http2Limits limits_;
    std::shared_ptr<Http2Stats> stats_;
    Http2PoolLimits pool_limits_;
    std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> entries_;
    std::atomic<uint64_t> pooled_{0};
};

}  // namespace remora::proxy::http2
