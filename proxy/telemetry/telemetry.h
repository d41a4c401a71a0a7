// What a worker records about each request once it is over: Istio metrics, an access-log line and
// a span. Sessions fill a RequestRecord as the request goes; `finish` turns it into telemetry.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "proxy/telemetry/exporters.h"
#include "proxy/telemetry/metrics.h"
#include "proxy/telemetry/tracing.h"
#include "proxy/telemetry/workload.h"

namespace remora::proxy {

enum class AccessLogEncoding { text, json };

// Shared by every worker; immutable once the proxy starts.
struct TelemetryConfig {
    WorkloadInfo self;
    std::string pod_ip;     // spans' localEndpoint
    std::string node_id;    // sidecar~<ip>~<workload>.<ns>~<ns>.svc.cluster.local
    std::string peer_metadata;  // encode_peer_metadata(self), sent to peer sidecars
    bool metrics = true;
    double sampling_percent = 1.0;  // Istio's default
    AccessLogEncoding access_log_encoding = AccessLogEncoding::text;
    std::shared_ptr<AccessLogWriter> access_log;  // null: off (Istio's default)
    std::shared_ptr<ZipkinExporter> zipkin;       // null: spans are not exported
    std::function<std::chrono::system_clock::time_point()> wall_clock = [] {
        return std::chrono::system_clock::now();
    };
    std::function<std::chrono::steady_clock::time_point()> steady_clock = [] {
        return std::chrono::steady_clock::now();
    };
};

struct RequestRecord {
    bool outbound = true;  // reporter "source" (outbound) or "destination" (inbound)
    std::chrono::system_clock::time_point start_wall;
    std::chrono::steady_clock::time_point start, upstream_sent, upstream_header, end;
    std::string method, path, authority, protocol = "HTTP/1.1", user_agent, x_forwarded_for;
    std::string request_id, traceparent;  // as forwarded
    unsigned status = 0;
    std::string_view flags = "-";
    uint64_t request_header_bytes = 0, request_body_bytes = 0;
    uint64_t response_header_bytes = 0, response_body_bytes = 0;
    std::string upstream_host, upstream_cluster;
    std::string downstream_remote, downstream_local;
    // The mesh service the request was for (outbound: routed; inbound: from Host).
    std::string service_host, service_name, service_ns;
    uint16_t service_port = 0;
    bool mtls = false;
    std::string self_principal;          // own SPIFFE ID on this request's mTLS hop
    std::string peer_principal;          // the other side's SPIFFE ID, when proven by mTLS
    std::optional<WorkloadInfo> peer;    // from the peer-metadata header
    std::optional<SpanContext> span;     // when this hop traces the request
    bool grpc = false;                   // a gRPC request: request_protocol="grpc"
    std::string grpc_status;             // grpc-status of the response, "" when none came
};

// One opaque TCP connection (tcp_proxy: outbound, inbound, passthrough), logged when it closes as
// Envoy's tcp_proxy access log does. Filled by proxy/tcp/ as the connection goes.
struct TcpRecord {
    bool outbound = true;
    std::chrono::system_clock::time_point start_wall;
    std::chrono::steady_clock::time_point start, end;
    std::string_view flags = "-";     // UF, UH, UO, NR; "-" when none
    std::string termination_details;  // CONNECTION_TERMINATION_DETAILS (RBAC, idle timeout)
    std::string transport_failure;    // UPSTREAM_TRANSPORT_FAILURE_REASON (connect, TLS)
    uint64_t bytes_received = 0;      // from the downstream
    uint64_t bytes_sent = 0;          // to the downstream
    std::string upstream_host, upstream_cluster, upstream_local;
    std::string downstream_local, downstream_remote;
    std::string sni;             // REQUESTED_SERVER_NAME
    std::string peer_principal;  // the other side's SPIFFE ID, when proven by mTLS
};

class WorkerTelemetry {
public:
    WorkerTelemetry(std::shared_ptr<const TelemetryConfig> config, uint64_t seed)
        : config_(std::move(config)), rng_(seed) {}

    const TelemetryConfig& config() const { return *config_; }
    std::mt19937_64& rng() { return rng_; }
    WorkerMetrics& metrics() { return metrics_; }
    const WorkerMetrics& metrics() const { return metrics_; }

    // The span for this hop and the request id (kept when the caller sent one).
    void begin(RequestRecord& r, const TraceHeaders& trace, std::string_view request_id);
    void finish(RequestRecord& r);
    // A TCP connection's start (clocks) and its end: the access-log line when logs are on.
    void begin(TcpRecord& r) const;
    void finish(TcpRecord& r) const;

  private:
    std::shared_ptr<const TelemetryConfig> config_;
    std::mt19937_64 rng_;
    WorkerMetrics metrics_;
};

MetricLabels labels_for(const RequestRecord& r, const TelemetryConfig& c);
// The source_* (or destination_*) workload labels from a workload's metadata.
template <class S>
void fill_workload(BasicMetricLabels<S>& l, bool source, const WorkloadInfo& w);
// A TCP connection passed through to a destination outside the mesh (Istio's PassthroughCluster).
MetricLabels passthrough_labels(const std::string& destination, const TelemetryConfig& c);
std::string format_access_log(const RequestRecord& r, const TelemetryConfig& c);
// Istio's default access-log format as Envoy fills it for a TCP connection ("- - -" 0 …), then
// the peer identity and the reporter; or JSON with Istio's keys.
std::string format_access_log(const TcpRecord& r, const TelemetryConfig& c);
Span span_for(const RequestRecord& r, const TelemetryConfig& c);
std::string format_start_time(std::chrono::system_clock::time_point t);  // 2026-11-21T10:00:00.123Z

}  // namespace remora::proxy
