// What a worker's connections share (WorkerContext) and what every request of one downstream
// connection shares (Downstream), whichever protocol it speaks.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "proxy/config.h"
#include "proxy/http2/pool.h"
#include "proxy/routing/resolve.h"
#include "proxy/stats/stats.h"
#include "proxy/telemetry/telemetry.h"
#include "proxy/tls/tls_store.h"
#include "proxy/upstream/pool.h"

namespace remora::proxy {

using LogFn = std::function<void(const std::string&)>;

// Bytes one read or write of a relayed body or TCP stream moves at most.
inline constexpr size_t kRelayChunk = 16 * 1024;

// What one worker's sessions share. Used only on that worker's thread, except the atomics.
struct WorkerContext {
    const TlsStore& tls;
    const ConfigStore& config;
    WorkerStats& stats;
    WorkerTelemetry& telemetry;
    const std::atomic<bool>& draining;
    LogFn log;
    UpstreamPool pool;
    WorkerBalancer balancer;  // route-table routing (--config)
    uint64_t next_connection_id = 1;
    uint32_t mirrors_in_flight = 0;  // fire-and-forget mirrored requests (kMaxMirrorsInFlight)
    // HTTP/2: the codec's counters and limits for this worker's connections (either side), and
    // the pool of multiplexed upstream connections (to peer sidecars and h2c apps).
    std::shared_ptr<http2::Http2Stats> h2stats = std::make_shared<http2::Http2Stats>();
    http2::Http2Limits h2limits;
    std::unique_ptr<http2::Http2Pool> h2pool;
    // The peer metadata last seen on an outbound response, decoded (responses from one peer
    // carry the same text, so it is decoded once, not per request).
    std::string peer_cache_raw;
    std::optional<WorkloadInfo> peer_cache;
};

// Per-connection facts every request of it shares.
struct Downstream {
    uint64_t id = 0;
    std::string remote, local;
    std::optional<boost::asio::ip::address> remote_ip;  // for AuthorizationPolicy ipBlocks
    ListenerKind kind = ListenerKind::outbound_capture;
    std::optional<boost::asio::ip::tcp::endpoint> original_dst;
    std::optional<std::string> peer_identity;  // inbound over mTLS
    std::shared_ptr<const ProxyConfig> config;
    uint64_t config_generation = 0;  // of `config`; a newer one is taken between requests
    std::shared_ptr<const TlsSnapshot> tls;
    std::optional<UpstreamTarget> inbound_target;  // the app, for every request of the connection
    std::string xfcc;                              // By=<own>;URI=<peer>, when the peer is known
    // TLS the app originated: the server name its ClientHello asked for (tls[] routes), when read.
    std::string sni;
    // REGISTRY_ONLY, to an address outside the registry on a port some service serves as HTTP:
    // Istio's HTTP listener on 0.0.0.0:<port> routes such a request by Host, and answers one for
    // a host the proxy does not know from its block_all virtual host (502).
    bool block_unknown_hosts = false;
    // The peer sidecar's workload metadata, decoded once per connection (every request of an
    // mTLS connection comes from the same sidecar).
    std::string peer_metadata_raw;
    std::optional<WorkloadInfo> peer_workload;
    // One relay buffer per connection, reused by every request: a chunk per read, never a body.
    std::unique_ptr<char[]> relay_storage = std::make_unique_for_overwrite<char[]>(kRelayChunk);
    std::span<char> relay_buffer{relay_storage.get(), kRelayChunk};

    bool outbound() const {
        return kind == ListenerKind::outbound_capture || kind == ListenerKind::outbound_explicit;
    }
};

inline std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep) {
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace remora::proxy
