// Istio's standard metrics (istio_requests_total, request duration and sizes, istio_tcp_*), kept
// per worker without locks and merged when Prometheus scrapes :15090.
//
// Each worker owns its series: it alone creates them (an index only it touches) and publishes each
// new one on an append-only list with a release store; counters are relaxed atomics. The scraper
// walks the lists and sums, so the request path never takes a lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace remora::proxy {

// Istio's label set, in exposition order.
enum class Label : size_t {
    reporter,
    source_workload,
    source_workload_namespace,
    source_principal,
    source_app,
    source_version,
    source_canonical_service,
    source_canonical_revision,
    source_cluster,
    destination_workload,
    destination_workload_namespace,
    destination_principal,
    destination_app,
    destination_version,
    destination_service,
    destination_service_name,
    destination_service_namespace,
    destination_canonical_service,
    destination_canonical_revision,
    destination_cluster,
    request_protocol,
    response_code,
    grpc_response_status,
    response_flags,
    connection_security_policy,
    kCount
};

const char* label_name(Label l);

// Label values: MetricLabels owns them (a series keeps its own); MetricLabelViews points into
// a request's record and the telemetry config, so the request path builds its key without
// allocating and copies the values only for a new series.
template <class S>
struct BasicMetricLabels {
    std::array<S, static_cast<size_t>(Label::kCount)> values;

    BasicMetricLabels() {  // every label "unknown", as Istio reports what it cannot know
        values.fill("unknown");
        (*this)[Label::grpc_response_status] = "";
        (*this)[Label::response_flags] = "-";
    }
    S& operator[](Label l) { return values[static_cast<size_t>(l)]; }
    const S& operator[](Label l) const { return values[static_cast<size_t>(l)]; }
    // The series' identity: every value, each followed by a unit separator.
    void append_key(std::string& k) const {
        for (const auto& v : values) {
            k += v;
            k += '\x1f';
        }
    }
    std::string key() const {
        std::string k;
        size_t n = 0;
        for (const auto& v : values) n += v.size() + 1;
        k.reserve(n);
        append_key(k);
        return k;
    }
};
using MetricLabels = BasicMetricLabels<std::string>;
using MetricLabelViews = BasicMetricLabels<std::string_view>;

// Istio's duration buckets (ms) and byte-size buckets.
inline constexpr std::array<double, 19> kDurationBucketsMs = {
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000};
inline constexpr std::array<double, 10> kByteBuckets = {1,      10,      100,      1000,      10000,
                                                        100000, 1000000, 10000000, 100000000, 1000000000};

template <size_t N>
struct Histogram {
    std::array<std::atomic<uint64_t>, N + 1> buckets{};  // the last is +Inf
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_micro{0};  // sum in millionths of the unit

    void observe(const std::array<double, N>& bounds, double v) {
        size_t i = 0;
        while (i < N && v > bounds[i]) ++i;
        buckets[i].fetch_add(1, std::memory_order_relaxed);
        count.fetch_add(1, std::memory_order_relaxed);
        sum_micro.fetch_add(static_cast<uint64_t>(v * 1e6), std::memory_order_relaxed);
    }
};

struct HttpSeries {
    MetricLabels labels;
    std::atomic<uint64_t> requests{0};
    Histogram<kDurationBucketsMs.size()> duration_ms;
    Histogram<kByteBuckets.size()> request_bytes;
    Histogram<kByteBuckets.size()> response_bytes;
    HttpSeries* next = nullptr;
};

struct TcpSeries {
    MetricLabels labels;
    std::atomic<uint64_t> sent{0}, received{0}, opened{0}, closed{0};
    TcpSeries* next = nullptr;
};

class WorkerMetrics {
public:
    explicit WorkerMetrics(size_t max_series = 10000) : max_series_(max_series) {}
    ~WorkerMetrics();
    WorkerMetrics(const WorkerMetrics&) = delete;
    WorkerMetrics& operator=(const WorkerMetrics&) = delete;

    // Worker thread only.
    void record_request(const MetricLabels& labels, double duration_ms, uint64_t request_bytes,
                        uint64_t response_bytes);
    // The same for the request path: no allocation when the series exists.
    void record_request(const MetricLabelViews& labels, double duration_ms, uint64_t request_bytes,
                        uint64_t response_bytes);
    // The series a TCP connection adds its bytes to; null when the series limit is reached.
    TcpSeries* tcp_series(const MetricLabels& labels);

    // Any thread.
    const HttpSeries* http_head() const { return http_head_.load(std::memory_order_acquire); }
    const TcpSeries* tcp_head() const { return tcp_head_.load(std::memory_order_acquire); }
    uint64_t series_overflow() const { return overflow_.load(std::memory_order_relaxed); }

private:
    size_t max_series_;
    size_t series_ = 0;
    struct KeyHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    HttpSeries* http_series(std::string&& key, const MetricLabels* labels, const MetricLabelViews* views);
    std::string key_;  // the request path's key, built in place
    std::unordered_map<std::string, HttpSeries*, KeyHash, std::equal_to<>> http_index_;
    std::unordered_map<std::string, TcpSeries*> tcp_index_;
    std::atomic<HttpSeries*> http_head_{nullptr};
    std::atomic<TcpSeries*> tcp_head_{nullptr};
    std::atomic<uint64_t> overflow_{0};
};

// The Istio metrics of all workers, summed per label set, in Prometheus' text format (0.0.4).
std::string render_istio_metrics(const std::vector<const WorkerMetrics*>& workers);

// One Prometheus sample line, label values escaped: name{k="v",...} value
void append_sample(std::string& out, std::string_view name,
                   const std::vector<std::pair<std::string_view, std::string_view>>& labels,
                   std::string_view value);
std::string format_number(double v);

}  // namespace remora::proxy
