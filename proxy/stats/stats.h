// Per-worker counters: each worker writes only its own (relaxed atomics, no lock, no contention);
// the admin port sums all workers when scraped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace remora::proxy {

enum class Counter : size_t {
    downstream_cx_total,
    downstream_cx_active,
    downstream_cx_passthrough,
    downstream_cx_refused_plaintext,
    downstream_rq_total,
    downstream_rq_active,
    downstream_rq_2xx,
    downstream_rq_3xx,
    downstream_rq_4xx,
    downstream_rq_5xx,
    downstream_rq_bad_request,
    downstream_rq_headers_too_large,
    downstream_rq_header_timeout,
    downstream_rq_idle_timeout,  // the stream idle timeout ended a request (408 or 504 SI, or a reset)
    downstream_rq_timeout,       // the request timeout ended a request (408)
    upstream_cx_total,
    upstream_cx_connect_fail,
    upstream_cx_pool_hit,
    upstream_cx_closed_dirty,  // closed instead of pooled: bytes after the response (poisoning, mis-framing)
    upstream_rq_total,
    upstream_rq_reset,
    tls_handshake_ok,
    tls_handshake_fail,
    rq_flag_nr,
    rq_flag_uh,
    rq_flag_uf,
    rq_flag_uc,
    rq_flag_ut,
    rq_flag_fi,
    rq_flag_di,
    rq_flag_urx,
    upstream_rq_retry,
    rq_flag_uo,
    upstream_rq_retry_overflow,
    outlier_detection_ejections_enforced,
    outlier_detection_ejections_overflow,
    retry_or_shadow_abandoned,
    upstream_rq_mirror,
    upstream_rq_mirror_failed,
    upstream_rq_mirror_overflow,
    rbac_allowed,  // inbound requests AuthorizationPolicy allowed (only when a policy applies)
    rbac_denied,   // ... and denied: 403 RBAC
    rbac_audited,  // ... that matched an AUDIT policy
    downstream_cx_blackhole,  // outbound to a destination outside the registry, REGISTRY_ONLY
    downstream_rq_blackhole,  // ... HTTP to such a destination on an HTTP port: 502 (block_all)
    downstream_cx_tcp,        // connections carried as opaque TCP (outbound or inbound)
    downstream_cx_tcp_rbac_denied,          // inbound TCP connections AuthorizationPolicy closed
    downstream_cx_peer_exchange_failed,     // a TCP tunnel without the metadata exchange preamble
    tcp_idle_timeout,                       // TCP connections closed after the idle timeout
    downstream_cx_detected_http1,           // undeclared port, first bytes an HTTP/1.x request
    downstream_cx_detected_http2,           // ... the HTTP/2 preface
    downstream_cx_detected_tls,             // ... a TLS ClientHello
    downstream_cx_detected_tcp,             // ... anything else
    downstream_cx_detect_timeout,           // ... nothing within the detection timeout: TCP
    downstream_cx_upgrades,                 // HTTP/1.1 connections upgraded (WebSocket) by a 101
    downstream_cx_http2,                    // HTTP/2 connections accepted (h2c from the app, h2 from a peer sidecar)
    downstream_rq_http2,                    // requests received on HTTP/2 streams
    upstream_cx_http2,                      // HTTP/2 connections opened (each carries many requests)
    upstream_rq_http2,                      // requests sent on HTTP/2 streams
    downstream_cx_tls_passthrough,          // inbound PERMISSIVE: the app's own TLS, passed to it untouched
    tls_sni_route,                          // outbound app TLS sent where a tls[] route's sniHosts said
    kCount
};

const char* counter_name(Counter c);

class WorkerStats {
public:
    void inc(Counter c, int64_t n = 1) {
        counters_[static_cast<size_t>(c)].fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
    void dec(Counter c) { counters_[static_cast<size_t>(c)].fetch_sub(1, std::memory_order_relaxed); }
    uint64_t get(Counter c) const {
        return counters_[static_cast<size_t>(c)].load(std::memory_order_relaxed);
    }
    // TLS handshake failures by reason token ("untrusted_chain", "no_certificate", ...). Failures
    // are rare, so a small locked map is fine here.
    void tls_failure(std::string_view reason);
    std::map<std::string, uint64_t> tls_failures() const;

private:
    std::array<std::atomic<uint64_t>, static_cast<size_t>(Counter::kCount)> counters_{};
    mutable std::mutex failures_mu_;
    std::map<std::string, uint64_t, std::less<>> failures_;
};

// Sum over workers, as "name: value" lines (Envoy's /stats text) or JSON.
// `extra`: more counters (already summed over workers) shown with the rest, e.g. remora.http2.*.
std::string render_stats(const std::vector<const WorkerStats*>& workers, bool json,
                         const std::map<std::string, uint64_t>& extra = {});

// The same counters in Prometheus' text format: remora_<name>_total counters, the active
// connections as a gauge, handshake failures by reason.
std::string render_stats_prometheus(const std::vector<const WorkerStats*>& workers);

}  // namespace remora::proxy
