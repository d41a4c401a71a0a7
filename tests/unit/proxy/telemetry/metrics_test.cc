// Istio metric series per worker, merged and rendered in Prometheus' text format.
#include <doctest/doctest.h>

#include <string>

#include "proxy/telemetry/metrics.h"

using namespace remora::proxy;

namespace {

MetricLabels sample(const std::string& code) {
    MetricLabels l;
    l[Label::reporter] = "source";
    l[Label::source_workload] = "productpage-v1";
    l[Label::destination_service] = "reviews.default.svc.cluster.local";
    l[Label::response_code] = code;
    l[Label::request_protocol] = "http";
    return l;
}

size_t count_of(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("unknown labels say unknown, response_flags says '-'") {
    MetricLabels l;
    CHECK(l[Label::source_workload] == "unknown");
    CHECK(l[Label::response_flags] == "-");
    CHECK(std::string(label_name(Label::connection_security_policy)) == "connection_security_policy");
}

TEST_CASE("one series per label set; requests counted and sizes observed") {
    WorkerMetrics w;
    w.record_request(sample("200"), 0.4, 100, 2000);
    w.record_request(sample("200"), 7, 100, 2000);
    w.record_request(sample("503"), 2, 50, 19);
    std::string out = render_istio_metrics({&w});
    CHECK(count_of(out, "# TYPE istio_requests_total counter\n") == 1);
    CHECK(count_of(out, "# TYPE istio_request_duration_milliseconds histogram\n") == 1);
    CHECK(count_of(out, "istio_requests_total{") == 2);
    CHECK(out.find("response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\","
                   "connection_security_policy=\"unknown\"} 2\n") != std::string::npos);
    CHECK(out.find("response_code=\"503\",grpc_response_status=\"\",response_flags=\"-\","
                   "connection_security_policy=\"unknown\"} 1\n") != std::string::npos);
    // Cumulative buckets: 0.4 ms is in le=0.5; 7 ms first in le=10.
    CHECK(out.find("response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\","
                   "connection_security_policy=\"unknown\",le=\"0.5\"} 1\n") != std::string::npos);
    CHECK(out.find("connection_security_policy=\"unknown\",le=\"5\"} 1\n") != std::string::npos);
    CHECK(out.find("connection_security_policy=\"unknown\",le=\"10\"} 2\n") != std::string::npos);
    CHECK(out.find("connection_security_policy=\"unknown\",le=\"+Inf\"} 2\n") != std::string::npos);
    CHECK(out.find("istio_request_duration_milliseconds_sum{") != std::string::npos);
    CHECK(out.find("istio_request_bytes_count{") != std::string::npos);
    CHECK(out.find("le=\"1000000000\"") != std::string::npos);  // bytes buckets reach 1 GB
    CHECK(count_of(out, "istio_response_bytes_bucket{") == 2 * 11);
    CHECK(out.find("istio_tcp_") == std::string::npos);  // no TCP series yet
}

TEST_CASE("label values are escaped for the exposition format") {
    WorkerMetrics w;
    MetricLabels l = sample("200");
    l[Label::source_workload] = "we\"ird\\na\nme";
    w.record_request(l, 1, 1, 1);
    std::string out = render_istio_metrics({&w});
    CHECK(out.find("source_workload=\"we\\\"ird\\\\na\\nme\"") != std::string::npos);
}

TEST_CASE("workers are summed per label set") {
    WorkerMetrics a, b;
    a.record_request(sample("200"), 1, 1, 1);
    b.record_request(sample("200"), 1, 1, 1);
    b.record_request(sample("200"), 1, 1, 1);
    std::string out = render_istio_metrics({&a, &b});
    CHECK(count_of(out, "istio_requests_total{") == 1);
    CHECK(out.find("connection_security_policy=\"unknown\"} 3\n") != std::string::npos);
}

TEST_CASE("the series limit bounds memory and counts what it drops") {
    WorkerMetrics w(2);
    w.record_request(sample("200"), 1, 1, 1);
    w.record_request(sample("201"), 1, 1, 1);
    w.record_request(sample("202"), 1, 1, 1);
    w.record_request(sample("200"), 1, 1, 1);  // an existing series still counts
    CHECK(w.series_overflow() == 1);
    std::string out = render_istio_metrics({&w});
    CHECK(count_of(out, "istio_requests_total{") == 2);
    MetricLabels tcp;
    CHECK(w.tcp_series(tcp) == nullptr);
    CHECK(w.series_overflow() == 2);
}

TEST_CASE("TCP series carry no response_code") {
    WorkerMetrics w;
    MetricLabels l;
    l[Label::request_protocol] = "tcp";
    TcpSeries* s = w.tcp_series(l);
    REQUIRE(s);
    CHECK(w.tcp_series(l) == s);
    s->opened += 1;
    s->sent += 10;
    s->received += 3;
    std::string out = render_istio_metrics({&w});
    CHECK(out.find("# TYPE istio_tcp_sent_bytes_total counter") != std::string::npos);
    CHECK(out.find("request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"unknown\"} 10\n") !=
          std::string::npos);
    CHECK(out.find("response_code") == std::string::npos);
    CHECK(out.find("istio_tcp_connections_closed_total{") != std::string::npos);
}

TEST_CASE("numbers are printed as Prometheus expects") {
    CHECK(format_number(0.5) == "0.5");
    CHECK(format_number(1000) == "1000");
    CHECK(format_number(3600000) == "3600000");
    CHECK(format_number(1e9) == "1000000000");
    CHECK(format_number(2.25) == "2.25");
}
