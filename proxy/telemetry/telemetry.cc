// A finished request → Istio metric labels, an access-log line (Envoy text or JSON), a span.
#include "proxy/telemetry/telemetry.h"

#include <boost/json.hpp>

#include <array>
#include <ctime>

namespace remora::proxy {

namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return static_cast<double>(duration_cast<microseconds>(b - a).count()) / 1000.0;
}

bool set(std::chrono::steady_clock::time_point t) { return t.time_since_epoch().count() != 0; }

const std::string& or_dash(const std::string& s) {
    static const std::string kDash = "-";
    return s.empty() ? kDash : s;
}

std::string upstream_service_time(const RequestRecord& r) {
    if (!set(r.upstream_sent) || !set(r.upstream_header)) return "-";
    return std::to_string(duration_cast<std::chrono::milliseconds>(r.upstream_header - r.upstream_sent).count());
}

}  // namespace

template <class S>
void fill_workload(BasicMetricLabels<S>& l, bool source, const WorkloadInfo& w) {
    l[source ? Label::source_workload : Label::destination_workload] = w.name;
    l[source ? Label::source_workload_namespace : Label::destination_workload_namespace] = w.ns;
    l[source ? Label::source_app : Label::destination_app] = w.app;
    l[source ? Label::source_version : Label::destination_version] = w.version;
    l[source ? Label::source_canonical_service : Label::destination_canonical_service] = w.canonical_service;
    l[source ? Label::source_canonical_revision : Label::destination_canonical_revision] = w.canonical_revision;
    l[source ? Label::source_cluster : Label::destination_cluster] = w.cluster;
}

template void fill_workload(MetricLabels&, bool, const WorkloadInfo&);
template void fill_workload(MetricLabelViews&, bool, const WorkloadInfo&);

std::string format_start_time(std::chrono::system_clock::time_point t) {
    auto secs = std::chrono::system_clock::to_time_t(t);
    auto millis = duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03lldZ", static_cast<long long>(millis));
    return buf;
}

namespace {

// "100".."599" and "0", kept for the life of the process: a status code as a view.
std::string_view status_text(unsigned status) {
    static const std::array<std::string, 600> kCodes = [] {
        std::array<std::string, 600> a;
        for (size_t i = 0; i < a.size(); ++i) a[i] = std::to_string(i);
        return a;
    }();
    return status < kCodes.size() ? std::string_view(kCodes[status]) : std::string_view();
}

}  // namespace

template <class S>
void fill_labels(const RequestRecord& r, const TelemetryConfig& c, BasicMetricLabels<S>& l, std::string& code) {
    l[Label::reporter] = r.outbound ? "source" : "destination";
    fill_workload(l, r.outbound, c.self);
    if (r.peer) fill_workload(l, !r.outbound, *r.peer);
    const std::string_view own = r.self_principal.empty() ? std::string_view("unknown") : r.self_principal;
    const std::string_view peer = r.peer_principal.empty() ? std::string_view("unknown") : r.peer_principal;
    if (r.outbound) {
        l[Label::source_principal] = r.mtls ? own : "unknown";
        l[Label::destination_principal] = peer;
        l[Label::connection_security_policy] = "unknown";  // as Istio's source reporter says
    } else {
        l[Label::source_principal] = peer;
        l[Label::destination_principal] = r.mtls ? own : "unknown";
        l[Label::connection_security_policy] = r.mtls ? "mutual_tls" : "none";
    }
    if (!r.service_host.empty()) l[Label::destination_service] = r.service_host;
    if (!r.service_name.empty()) l[Label::destination_service_name] = r.service_name;
    if (!r.service_ns.empty()) l[Label::destination_service_namespace] = r.service_ns;
    l[Label::request_protocol] = r.grpc ? "grpc" : "http";
    std::string_view status = status_text(r.status);
    if (status.empty()) {
        code = std::to_string(r.status);
        status = code;
    }
    l[Label::response_code] = status;
    if (r.grpc) l[Label::grpc_response_status] = r.grpc_status;
    l[Label::response_flags] = r.flags;
}

MetricLabels labels_for(const RequestRecord& r, const TelemetryConfig& c) {
    MetricLabels l;
    std::string code;
    fill_labels(r, c, l, code);
    return l;
}

MetricLabels passthrough_labels(const std::string& destination, const TelemetryConfig& c) {
    MetricLabels l;
    l[Label::reporter] = "source";
    fill_workload(l, true, c.self);
    l[Label::destination_service] = destination;
    l[Label::destination_service_name] = "PassthroughCluster";
    l[Label::request_protocol] = "tcp";
    return l;
}

std::string format_access_log(const RequestRecord& r, const TelemetryConfig& c) {
    const auto duration = static_cast<int64_t>(ms_between(r.start, r.end));
    const std::string start = format_start_time(r.start_wall);
    const std::string peer = r.peer_principal;
    if (c.access_log_encoding == AccessLogEncoding::json) {
        boost::json::object o;
        auto str = [&](const char* k, const std::string& v) {
            if (v.empty()) o[k] = nullptr;
            else o[k] = v;
        };
        o["start_time"] = start;
        str("method", r.method);
        str("path", r.path);
        o["protocol"] = r.protocol;
        o["response_code"] = r.status;
        o["response_flags"] = std::string(r.flags);
        o["bytes_received"] = r.request_body_bytes;
        o["bytes_sent"] = r.response_body_bytes;
        o["duration"] = duration;
        std::string ust = upstream_service_time(r);
        if (ust == "-") o["upstream_service_time"] = nullptr;
        else o["upstream_service_time"] = ust;
        str("x_forwarded_for", r.x_forwarded_for);
        str("user_agent", r.user_agent);
        str("request_id", r.request_id);
        str("authority", r.authority);
        str("upstream_host", r.upstream_host);
        str("upstream_cluster", r.upstream_cluster);
        str("downstream_local_address", r.downstream_local);
        str("downstream_remote_address", r.downstream_remote);
        str("traceparent", r.traceparent);
        str("downstream_peer_uri_san", peer);
        o["reporter"] = r.outbound ? "source" : "destination";
        str("workload", c.self.name + "." + c.self.ns);
        return boost::json::serialize(o) + "\n";
    }
    // Envoy's default format, then the upstream cluster, traceparent, peer identity and reporter.
    std::string out;
    out.reserve(384);
    out += '[' + start + "] \"" + or_dash(r.method) + ' ' + or_dash(r.path) + ' ' + r.protocol + "\" ";
    out += std::to_string(r.status) + ' ' + std::string(r.flags) + ' ';
    out += std::to_string(r.request_body_bytes) + ' ' + std::to_string(r.response_body_bytes) + ' ';
    out += std::to_string(duration) + ' ' + upstream_service_time(r) + ' ';
    out += '"' + or_dash(r.x_forwarded_for) + "\" \"" + or_dash(r.user_agent) + "\" \"" +
           or_dash(r.request_id) + "\" \"" + or_dash(r.authority) + "\" \"" + or_dash(r.upstream_host) + "\" ";
    out += or_dash(r.upstream_cluster) + " \"" + or_dash(r.traceparent) + "\" \"" + or_dash(peer) + "\" " +
           (r.outbound ? "source" : "destination") + "\n";
    return out;
}

std::string format_access_log(const TcpRecord& r, const TelemetryConfig& c) {
    const auto duration = static_cast<int64_t>(ms_between(r.start, r.end));
    const std::string start = format_start_time(r.start_wall);
    const char* reporter = r.outbound ? "source" : "destination";
    if (c.access_log_encoding == AccessLogEncoding::json) {
        boost::json::object o;
        auto str = [&](const char* k, const std::string& v) {
            if (v.empty())
                o[k] = nullptr;
            else
                o[k] = v;
        };
        o["start_time"] = start;
        o["method"] = nullptr;
        o["path"] = nullptr;
        o["protocol"] = nullptr;
        o["response_code"] = 0;
        o["response_flags"] = std::string(r.flags);
        o["response_code_details"] = nullptr;
        str("connection_termination_details", r.termination_details);
        str("upstream_transport_failure_reason", r.transport_failure);
        o["bytes_received"] = r.bytes_received;
        o["bytes_sent"] = r.bytes_sent;
        o["duration"] = duration;
        o["upstream_service_time"] = nullptr;
        o["x_forwarded_for"] = nullptr;
        o["user_agent"] = nullptr;
        o["request_id"] = nullptr;
        o["authority"] = nullptr;
        str("upstream_host", r.upstream_host);
        str("upstream_cluster", r.upstream_cluster);
        str("upstream_local_address", r.upstream_local);
        str("downstream_local_address", r.downstream_local);
        str("downstream_remote_address", r.downstream_remote);
        str("requested_server_name", r.sni);
        o["route_name"] = nullptr;
        str("downstream_peer_uri_san", r.peer_principal);
        o["reporter"] = reporter;
        str("workload", c.self.name + "." + c.self.ns);
        return boost::json::serialize(o) + "\n";
    }
    // Istio's default TEXT format, whose HTTP-only fields a TCP connection leaves "-" (and 0 for
    // the response code), as Envoy writes them.
    std::string out;
    out.reserve(320);
    out += '[' + start + "] \"- - -\" 0 " + std::string(r.flags) + " - " +
           or_dash(r.termination_details) + " \"" + or_dash(r.transport_failure) + "\" ";
    out += std::to_string(r.bytes_received) + ' ' + std::to_string(r.bytes_sent) + ' ' +
           std::to_string(duration) + " - ";
    out += "\"-\" \"-\" \"-\" \"-\" \"" + or_dash(r.upstream_host) + "\" " +
           or_dash(r.upstream_cluster) + ' ' + or_dash(r.upstream_local) + ' ' +
           or_dash(r.downstream_local) + ' ' + or_dash(r.downstream_remote) + ' ' + or_dash(r.sni) +
           " - \"" + or_dash(r.peer_principal) + "\" " + reporter + "\n";
    return out;
}

Span span_for(const RequestRecord& r, const TelemetryConfig& c) {
    Span s;
    s.trace_id = r.span->trace_id;
    s.id = r.span->span_id;
    s.parent_id = r.span->parent_id;
    s.server = !r.outbound;
    std::string host = r.service_host.empty() ? r.authority : r.service_host;
    if (r.service_port && host.find(':') == std::string::npos) host += ":" + std::to_string(r.service_port);
    s.name = host + "/*";
    s.timestamp_us = duration_cast<microseconds>(r.start_wall.time_since_epoch()).count();
    s.duration_us = duration_cast<microseconds>(r.end - r.start).count();
    s.local_service = c.self.canonical_service + "." + c.self.ns;
    s.local_ipv4 = c.pod_ip;
    const std::string& remote = r.outbound ? r.upstream_host : r.downstream_remote;
    size_t colon = remote.rfind(':');
    if (colon != std::string::npos) {
        s.remote_ip = remote.substr(0, colon);
        s.remote_port = static_cast<uint16_t>(std::atoi(remote.c_str() + colon + 1));
    }
    auto& t = s.tags;
    t["component"] = "proxy";
    t["node_id"] = c.node_id;
    t["guid:x-request-id"] = r.request_id;
    t["http.method"] = r.method;
    t["http.url"] = "http://" + r.authority + r.path;
    t["http.protocol"] = r.protocol;
    t["http.status_code"] = std::to_string(r.status);
    t["request_size"] = std::to_string(r.request_body_bytes);
    t["response_size"] = std::to_string(r.response_body_bytes);
    t["response_flags"] = std::string(r.flags);
    t["upstream_cluster"] = or_dash(r.upstream_cluster);
    t["upstream_cluster.name"] = or_dash(r.upstream_cluster);
    t["peer.address"] = or_dash(r.downstream_remote);
    t["downstream_cluster"] = "-";
    t["user_agent"] = or_dash(r.user_agent);
    t["istio.canonical_service"] = c.self.canonical_service;
    t["istio.canonical_revision"] = c.self.canonical_revision;
    t["istio.namespace"] = c.self.ns;
    t["istio.mesh_id"] = "cluster.local";
    if (r.status == 0 || r.status >= 500) t["error"] = "true";
    return s;
}

void WorkerTelemetry::begin(RequestRecord& r, const TraceHeaders& trace, std::string_view request_id) {
    const TelemetryConfig& c = *config_;
    r.start_wall = c.wall_clock();
    r.start = c.steady_clock();
    r.request_id = request_id.empty() ? new_request_id(rng_) : std::string(request_id);
    r.span = start_span(extract_trace(trace), c.sampling_percent, rng_);
}

void WorkerTelemetry::begin(TcpRecord& r) const {
    r.start_wall = config_->wall_clock();
    r.start = config_->steady_clock();
}

void WorkerTelemetry::finish(TcpRecord& r) const {
    const TelemetryConfig& c = *config_;
    r.end = c.steady_clock();
    if (c.access_log) c.access_log->submit(format_access_log(r, c));
}

void WorkerTelemetry::finish(RequestRecord& r) {
    const TelemetryConfig& c = *config_;
    r.end = c.steady_clock();
    if (c.metrics) {
        MetricLabelViews labels;
        std::string code;  // a status outside 0..599 (none is sent)
        fill_labels(r, c, labels, code);
        metrics_.record_request(labels, ms_between(r.start, r.end),
                                r.request_header_bytes + r.request_body_bytes,
                                r.response_header_bytes + r.response_body_bytes);
    }
    if (c.access_log) c.access_log->submit(format_access_log(r, c));
    if (c.zipkin && r.span && r.span->sampled) c.zipkin->submit(span_for(r, c));
}

}  // namespace remora::proxy
