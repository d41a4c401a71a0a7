// Istio metric series per worker and their Prometheus exposition.
#include "proxy/telemetry/metrics.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <utility>

namespace remora::proxy {

const char* label_name(Label l) {
    static constexpr const char* kNames[] = {
        "reporter",
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "source_canonical_service",
        "source_canonical_revision",
        "source_cluster",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_app",
        "destination_version",
        "destination_service",
        "destination_service_name",
        "destination_service_namespace",
        "destination_canonical_service",
        "destination_canonical_revision",
        "destination_cluster",
        "request_protocol",
        "response_code",
        "grpc_response_status",
        "response_flags",
        "connection_security_policy",
    };
    static_assert(std::size(kNames) == static_cast<size_t>(Label::kCount));
    return kNames[static_cast<size_t>(l)];
}

WorkerMetrics::~WorkerMetrics() {
    for (HttpSeries* s = http_head_.load(); s;) delete std::exchange(s, s->next);
    for (TcpSeries* s = tcp_head_.load(); s;) delete std::exchange(s, s->next);
}

HttpSeries* WorkerMetrics::http_series(std::string&& key, const MetricLabels* labels,
                                       const MetricLabelViews* views) {
    if (series_ >= max_series_) {
        overflow_.fetch_add(1, std::memory_order_relaxed);
        return nullptr;
    }
    auto* s = new HttpSeries;
    if (labels) {
        s->labels = *labels;
    } else {
        for (size_t i = 0; i < views->values.size(); ++i) s->labels.values[i] = std::string(views->values[i]);
    }
    s->next = http_head_.load(std::memory_order_relaxed);
    http_head_.store(s, std::memory_order_release);
    http_index_.emplace(std::move(key), s);
    ++series_;
    return s;
}

namespace {

void observe(HttpSeries& s, double duration_ms, uint64_t request_bytes, uint64_t response_bytes) {
    s.requests.fetch_add(1, std::memory_order_relaxed);
    s.duration_ms.observe(kDurationBucketsMs, duration_ms);
    s.request_bytes.observe(kByteBuckets, static_cast<double>(request_bytes));
    s.response_bytes.observe(kByteBuckets, static_cast<double>(response_bytes));
}

}  // namespace

void WorkerMetrics::record_request(const MetricLabels& labels, double duration_ms,
                                   uint64_t request_bytes, uint64_t response_bytes) {
    std::string key = labels.key();
    auto it = http_index_.find(key);
    HttpSeries* s = it != http_index_.end() ? it->second : http_series(std::move(key), &labels, nullptr);
    if (s) observe(*s, duration_ms, request_bytes, response_bytes);
}

void WorkerMetrics::record_request(const MetricLabelViews& labels, double duration_ms,
                                   uint64_t request_bytes, uint64_t response_bytes) {
    key_.clear();
    labels.append_key(key_);
    auto it = http_index_.find(std::string_view(key_));
    HttpSeries* s = it != http_index_.end() ? it->second : http_series(std::string(key_), nullptr, &labels);
    if (s) observe(*s, duration_ms, request_bytes, response_bytes);
}

TcpSeries* WorkerMetrics::tcp_series(const MetricLabels& labels) {
    std::string key = labels.key();
    auto it = tcp_index_.find(key);
    if (it != tcp_index_.end()) return it->second;
    if (series_ >= max_series_) {
        overflow_.fetch_add(1, std::memory_order_relaxed);
        return nullptr;
    }
    auto* s = new TcpSeries;
    s->labels = labels;
    s->next = tcp_head_.load(std::memory_order_relaxed);
    tcp_head_.store(s, std::memory_order_release);
    tcp_index_.emplace(std::move(key), s);
    ++series_;
    return s;
}

std::string format_number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    if (v == std::floor(v) && std::fabs(v) < 1e15) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.6g", v);
    }
    return buf;
}

void append_sample(std::string& out, std::string_view name,
                   const std::vector<std::pair<std::string_view, std::string_view>>& labels,
                   std::string_view value) {
    out += name;
    if (!labels.empty()) {
        out += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
            if (!first) out += ',';
            first = false;
            out += k;
            out += "=\"";
            for (char c : v) {
                if (c == '\\') out += "\\\\";
                else if (c == '"') out += "\\\"";
                else if (c == '\n') out += "\\n";
                else out += c;
            }
            out += '"';
        }
        out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
}

namespace {

template <size_t N>
struct HistogramSum {
    std::array<uint64_t, N + 1> buckets{};
    uint64_t count = 0;
    uint64_t sum_micro = 0;
    void add(const Histogram<N>& h) {
        for (size_t i = 0; i <= N; ++i) buckets[i] += h.buckets[i].load(std::memory_order_relaxed);
        count += h.count.load(std::memory_order_relaxed);
        sum_micro += h.sum_micro.load(std::memory_order_relaxed);
    }
};

struct HttpSum {
    const MetricLabels* labels = nullptr;
    uint64_t requests = 0;
    HistogramSum<kDurationBucketsMs.size()> duration;
    HistogramSum<kByteBuckets.size()> request_bytes, response_bytes;
};

struct TcpSum {
    const MetricLabels* labels = nullptr;
    uint64_t sent = 0, received = 0, opened = 0, closed = 0;
};

using LabelPairs = std::vector<std::pair<std::string_view, std::string_view>>;

LabelPairs pairs_of(const MetricLabels& l, bool tcp) {
    LabelPairs out;
    for (size_t i = 0; i < l.values.size(); ++i) {
        auto which = static_cast<Label>(i);
        if (tcp && (which == Label::response_code || which == Label::grpc_response_status)) continue;
        out.emplace_back(label_name(which), l.values[i]);
    }
    return out;
}

template <size_t N>
void append_histogram(std::string& out, std::string_view name, LabelPairs labels,
                      const std::array<double, N>& bounds, const HistogramSum<N>& h) {
    std::string bucket_name = std::string(name) + "_bucket";
    uint64_t cumulative = 0;
    labels.emplace_back("le", "");
    for (size_t i = 0; i <= N; ++i) {
        cumulative += h.buckets[i];
        std::string le = i < N ? format_number(bounds[i]) : "+Inf";
        labels.back().second = le;
        append_sample(out, bucket_name, labels, std::to_string(cumulative));
    }
    labels.pop_back();
    append_sample(out, std::string(name) + "_sum", labels,
                  format_number(static_cast<double>(h.sum_micro) / 1e6));
    append_sample(out, std::string(name) + "_count", labels, std::to_string(h.count));
}

}  // namespace

std::string render_istio_metrics(const std::vector<const WorkerMetrics*>& workers) {
    std::map<std::string, HttpSum> http;
    std::map<std::string, TcpSum> tcp;
    for (const WorkerMetrics* w : workers) {
        for (const HttpSeries* s = w->http_head(); s; s = s->next) {
            HttpSum& sum = http[s->labels.key()];
            sum.labels = &s->labels;
            sum.requests += s->requests.load(std::memory_order_relaxed);
            sum.duration.add(s->duration_ms);
            sum.request_bytes.add(s->request_bytes);
            sum.response_bytes.add(s->response_bytes);
        }
        for (const TcpSeries* s = w->tcp_head(); s; s = s->next) {
            TcpSum& sum = tcp[s->labels.key()];
            sum.labels = &s->labels;
            sum.sent += s->sent.load(std::memory_order_relaxed);
            sum.received += s->received.load(std::memory_order_relaxed);
            sum.opened += s->opened.load(std::memory_order_relaxed);
            sum.closed += s->closed.load(std::memory_order_relaxed);
        }
    }
    std::string out;
    if (!http.empty()) {
        out += "# HELP istio_requests_total Requests, as Istio counts them.\n";
        out += "# TYPE istio_requests_total counter\n";
        for (const auto& [k, s] : http) {
            append_sample(out, "istio_requests_total", pairs_of(*s.labels, false), std::to_string(s.requests));
        }
        out += "# HELP istio_request_duration_milliseconds Request duration.\n";
        out += "# TYPE istio_request_duration_milliseconds histogram\n";
        for (const auto& [k, s] : http) {
            append_histogram(out, "istio_request_duration_milliseconds", pairs_of(*s.labels, false),
                             kDurationBucketsMs, s.duration);
        }
        out += "# HELP istio_request_bytes Request size (headers and body).\n";
        out += "# TYPE istio_request_bytes histogram\n";
        for (const auto& [k, s] : http) {
            append_histogram(out, "istio_request_bytes", pairs_of(*s.labels, false), kByteBuckets,
                             s.request_bytes);
        }
        out += "# HELP istio_response_bytes Response size (headers and body).\n";
        out += "# TYPE istio_response_bytes histogram\n";
        for (const auto& [k, s] : http) {
            append_histogram(out, "istio_response_bytes", pairs_of(*s.labels, false), kByteBuckets,
                             s.response_bytes);
        }
    }
    if (!tcp.empty()) {
        auto counter = [&](const char* name, const char* help, uint64_t TcpSum::*field) {
            out += std::string("# HELP ") + name + " " + help + "\n";
            out += std::string("# TYPE ") + name + " counter\n";
            for (const auto& [k, s] : tcp) {
                append_sample(out, name, pairs_of(*s.labels, true), std::to_string(s.*field));
            }
        };
        counter("istio_tcp_sent_bytes_total", "Bytes sent to the downstream peer of a TCP connection.",
                &TcpSum::sent);
        counter("istio_tcp_received_bytes_total", "Bytes received from the downstream peer of a TCP connection.",
                &TcpSum::received);
        counter("istio_tcp_connections_opened_total", "TCP connections opened.", &TcpSum::opened);
        counter("istio_tcp_connections_closed_total", "TCP connections closed.", &TcpSum::closed);
    }
    return out;
}

}  // namespace remora::proxy
