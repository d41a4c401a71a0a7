// Upstream connections and the per-worker pool of idle, kept-alive ones (no locks: a pool belongs
// to one worker thread).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "proxy/stats/stats.h"
#include "proxy/routing/target.h"
#include "proxy/tls/tls_store.h"

namespace remora::proxy {

using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

struct UpstreamConn {
    std::variant<std::monostate, PlainStream, TlsStream> stream;
    boost::beast::flat_buffer buffer;
    std::string key;
    std::shared_ptr<const TlsSnapshot> tls;  // keeps the context this connection was made with
    uint64_t requests = 0;
};

class UpstreamPool {
public:
    explicit UpstreamPool(size_t max_idle_per_key = 64) : max_idle_(max_idle_per_key) {}
    // An idle connection for `key` that the peer has not closed, or null.
    std::unique_ptr<UpstreamConn> take(const std::string& key);
    void put(std::unique_ptr<UpstreamConn> conn);
    size_t idle() const;
    // The same count, readable from any thread (the metrics scrape).
    uint64_t idle_count() const { return idle_count_.load(std::memory_order_relaxed); }
    void clear() {
        idle_.clear();
        idle_count_.store(0, std::memory_order_relaxed);
    }
    // A connection closed rather than pooled because bytes were waiting after a complete
    // response: a later request must never read them as its answer (response queue poisoning).
    // Counted in `stats` (upstream_cx_closed_dirty) when set.
    void count_dirty() noexcept {
        if (stats_) stats_->inc(Counter::upstream_cx_closed_dirty);
    }
    void set_stats(WorkerStats* stats) noexcept { stats_ = stats; }

private:
    WorkerStats* stats_ = nullptr;
    size_t max_idle_;
    std::atomic<uint64_t> idle_count_{0};
    std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConn>>> idle_;
};

}  // namespace remora::proxy
