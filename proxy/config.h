// The proxy's resolved configuration: what each listener does and where traffic may go. Immutable
// once built; a new connection uses the newest one.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/routing/route_table.h"
#include "proxy/upstream/pool.h"

namespace remora::proxy {

namespace authz {
class Engine;
}

enum class ListenerKind {
    outbound_capture,   // 15001: iptables-redirected app traffic, SO_ORIGINAL_DST decides
    inbound_capture,    // 15006: redirected traffic to this pod
    outbound_explicit,  // --listen-outbound: plaintext HTTP in, every request to --upstream
    inbound_explicit,   // --listen-inbound: mTLS in, to --app
};

// PeerAuthentication on the inbound side: STRICT takes only mTLS, PERMISSIVE both, DISABLE only
// plaintext (TLS is not terminated, as Envoy's listener without a TLS transport socket).
enum class MtlsMode { strict, permissive, disable };

struct Limits {
    uint32_t max_request_header_bytes = 60 * 1024;   // Envoy's default max_request_headers_kb
    std::chrono::seconds request_header_timeout{10};  // a client slower than this gets 408
    std::chrono::seconds idle_timeout{60};            // keep-alive idle, downstream and upstream
    std::chrono::seconds connect_timeout{10};         // Istio's connectTimeout default
    std::chrono::seconds tls_handshake_timeout{10};
    // Envoy's stream idle timeout: a request whose body, or whose upstream's answer, stalls this
    // long ends (408 SI while the request arrives, 504 SI waiting for the response head, a cut
    // after it), and its upstream side is closed too.
    std::chrono::seconds stream_idle_timeout{300};
    // Envoy's request_timeout: the whole request (head and body) must arrive within this; 0, the
    // default, is no limit. Past it: 408 "request timeout".
    std::chrono::seconds request_timeout{0};
    // An undeclared port's client that sends nothing for this long is carried as TCP (a
    // server-first protocol such as MySQL or SMTP), counted in downstream_cx_detect_timeout.
    // Istio's protocolDetectionTimeout; it waits forever by default, which stalls server-first
    // protocols on undeclared ports.
    std::chrono::milliseconds protocol_detection_timeout{1000};
};

struct ProxyConfig {
    std::string ns = "default";  // this workload's namespace: short host names resolve here
    std::string trust_domain = "cluster.local";
    MtlsMode inbound_mode = MtlsMode::strict;
    // MeshConfig outboundTrafficPolicy REGISTRY_ONLY: a captured outbound connection to an address
    // that is no mesh service is closed (Istio's BlackHoleCluster) instead of passed through.
    bool registry_only = false;
    // portLevelMtls: the mode for connections whose original destination is this port.
    std::map<uint32_t, MtlsMode> inbound_port_modes;
    // AuthorizationPolicy for inbound requests, compiled once; null when none applies.
    std::shared_ptr<const authz::Engine> authz;
    // Istio routing (ServiceEntry, VirtualService, DestinationRule, ...): translated from
    // --registry/--config or received from remora-control; null in explicit mode.
    std::shared_ptr<const RouteTable> routes;
    // Explicit mode.
    std::optional<UpstreamTarget> upstream;
    std::optional<boost::asio::ip::tcp::endpoint> app;
    Limits limits;
    // MeshConfig h2UpgradePolicy: whether HTTP/1.1 requests to a mesh endpoint (mTLS to its
    // sidecar) are carried over HTTP/2, when the cluster's DestinationRule says DEFAULT or
    // nothing. Remora's default is UPGRADE (docs/protocols.md says why); DO_NOT_UPGRADE keeps
    // HTTP/1.1 between sidecars.
    bool h2_upgrade_default = true;

    MtlsMode inbound_mode_for(uint32_t port) const {
        auto it = inbound_port_modes.find(port);
        return it == inbound_port_modes.end() ? inbound_mode : it->second;
    }
};

class ConfigStore {
public:
    std::shared_ptr<const ProxyConfig> current() const { return config_.load(); }
    void publish(std::shared_ptr<const ProxyConfig> c) {
        config_.store(std::move(c));
        generation_.fetch_add(1, std::memory_order_release);
    }
    // Changes on every publish: a live connection compares it (one relaxed load per request)
    // and takes the new configuration for its next request, as Envoy applies a route update.
    uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

private:
    std::atomic<std::shared_ptr<const ProxyConfig>> config_;
    std::atomic<uint64_t> generation_{0};
};

}  // namespace remora::proxy
