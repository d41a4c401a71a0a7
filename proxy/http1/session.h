// Downstream connections: outbound (app → mesh) and inbound (mesh → app) HTTP/1.1 sessions, and
// TCP passthrough for destinations outside the mesh.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "proxy/config.h"
#include "proxy/routing/resolve.h"
#include "proxy/stats/stats.h"
#include "proxy/telemetry/telemetry.h"
#include "proxy/tls/tls_store.h"
#include "proxy/upstream/pool.h"

namespace remora::proxy {

using LogFn = std::function<void(const std::string&)>;

// What one worker's sessions share. Used only on that worker's thread, except the atomics.
struct WorkerContext {
    const TlsStore& tls;
    const ConfigStore& config;
    WorkerStats& stats;
    WorkerTelemetry& telemetry;
    const std::atomic<bool>& draining;
    LogFn log;
    UpstreamPool pool;
    RoundRobin rr;           // registry routing (--registry)
    WorkerBalancer balancer;  // route-table routing (--config)
    uint64_t next_connection_id = 1;
    uint32_t mirrors_in_flight = 0;  // fire-and-forget mirrored requests (kMaxMirrorsInFlight)
};

boost::asio::awaitable<void> serve_connection(boost::asio::ip::tcp::socket socket,
                                              ListenerKind kind, WorkerContext& ctx);

}  // namespace remora::proxy
