// The worker threads: each has its own io_context, its own SO_REUSEPORT listeners, upstream pool
// and counters, so the request path takes no lock.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "proxy/server/connection.h"

namespace remora::proxy {

struct ListenerSpec {
    ListenerKind kind;
    boost::asio::ip::tcp::endpoint address;
};

const char* listener_name(ListenerKind kind);

class Worker {
public:
    Worker(const TlsStore& tls, const ConfigStore& config, const std::atomic<bool>& draining,
           LogFn log, std::shared_ptr<const TelemetryConfig> telemetry, uint64_t seed);
    ~Worker();
    // Binds every listener (SO_REUSEPORT, so each worker has its own); throws naming the address.
    void bind(const std::vector<ListenerSpec>& listeners);
    void start();
    // Stop accepting; live connections finish (they see `draining` and close after a response).
    void stop_accepting();
    void stop();
    void join();
    const WorkerStats& stats() const { return stats_; }
    const WorkerMetrics& metrics() const { return telemetry_.metrics(); }
    uint64_t idle_upstream_connections() const { return ctx_.pool.idle_count(); }
    uint64_t http2_upstream_connections() const { return ctx_.h2pool ? ctx_.h2pool->pooled_count() : 0; }
    uint64_t active_connections() const { return stats_.get(Counter::downstream_cx_active); }
    uint64_t active_requests() const { return stats_.get(Counter::downstream_rq_active); }
    // A copy of the worker's HTTP/2 counters, taken on the worker's thread (they are not atomic);
    // zeros when the worker does not answer within a second (stopped).
    http2::Http2Stats http2_stats() const;

private:
    // Destroyed first (in ~Worker): pending connection coroutines hold references to the stats
    // and context below, so those must outlive it.
    // One thread runs it and only that thread touches its sockets (others post to it): no
    // per-socket locks in the reactor. The scheduler still locks, for those posts.
    std::unique_ptr<boost::asio::io_context> io_ =
        std::make_unique<boost::asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO);
    WorkerStats stats_;
    WorkerTelemetry telemetry_;
    WorkerContext ctx_;
    std::vector<std::pair<ListenerKind, std::unique_ptr<boost::asio::ip::tcp::acceptor>>> acceptors_;
    std::thread thread_;
};

}  // namespace remora::proxy
