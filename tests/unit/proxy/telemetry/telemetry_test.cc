// A finished request becomes Istio labels, an access-log line, a span; the writers never block.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "proxy/telemetry/telemetry.h"

using namespace remora::proxy;
using namespace std::chrono;

namespace {

TelemetryConfig config_for(const std::string& workload, const std::string& app) {
    TelemetryConfig c;
    c.self = WorkloadInfo::from_labels(workload, "default", {{"app", app}, {"version", "v1"}});
    c.pod_ip = "198.18.0.9";
    c.node_id = "sidecar~198.18.0.9~" + workload + ".default~default.svc.cluster.local";
    c.peer_metadata = encode_peer_metadata(c.self);
    return c;
}

RequestRecord outbound_record() {
    RequestRecord r;
    r.outbound = true;
    r.start_wall = system_clock::time_point(seconds(1700000000)) + milliseconds(123);
    r.start = steady_clock::time_point(seconds(100));
    r.upstream_sent = r.start + milliseconds(1);
    r.upstream_header = r.start + milliseconds(5);
    r.end = r.start + milliseconds(7);
    r.method = "GET";
    r.path = "/reviews/0";
    r.authority = "reviews:9080";
    r.user_agent = "curl/7.88.1";
    r.request_id = "a1b2c3d4-0000-4000-8000-000000000001";
    r.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    r.status = 200;
    r.request_body_bytes = 0;
    r.response_body_bytes = 295;
    r.upstream_host = "198.18.0.5:9080";
    r.upstream_cluster = "outbound|9080||reviews.default.svc.cluster.local";
    r.service_host = "reviews.default.svc.cluster.local";
    r.service_name = "reviews";
    r.service_ns = "default";
    r.service_port = 9080;
    r.mtls = true;
    r.self_principal = "spiffe://cluster.local/ns/default/sa/productpage";
    r.peer_principal = "spiffe://cluster.local/ns/default/sa/reviews";
    r.peer = WorkloadInfo::from_labels("reviews-v2", "default", {{"app", "reviews"}, {"version", "v2"}});
    return r;
}

}  // namespace

TEST_CASE("source reporter labels: self as source, the peer's metadata as destination") {
    TelemetryConfig c = config_for("productpage-v1", "productpage");
    MetricLabels l = labels_for(outbound_record(), c);
    CHECK(l[Label::reporter] == "source");
    CHECK(l[Label::source_workload] == "productpage-v1");
    CHECK(l[Label::source_app] == "productpage");
    CHECK(l[Label::source_version] == "v1");
    CHECK(l[Label::source_principal] == "spiffe://cluster.local/ns/default/sa/productpage");
    CHECK(l[Label::destination_workload] == "reviews-v2");
    CHECK(l[Label::destination_version] == "v2");
    CHECK(l[Label::destination_principal] == "spiffe://cluster.local/ns/default/sa/reviews");
    CHECK(l[Label::destination_service] == "reviews.default.svc.cluster.local");
    CHECK(l[Label::destination_service_name] == "reviews");
    CHECK(l[Label::destination_service_namespace] == "default");
    CHECK(l[Label::response_code] == "200");
    CHECK(l[Label::response_flags] == "-");
    CHECK(l[Label::request_protocol] == "http");
    CHECK(l[Label::connection_security_policy] == "unknown");
}

TEST_CASE("destination reporter labels: the caller's metadata as source, mutual_tls") {
    TelemetryConfig c = config_for("reviews-v2", "reviews");
    RequestRecord r = outbound_record();
    r.outbound = false;
    r.self_principal = "spiffe://cluster.local/ns/default/sa/reviews";
    r.peer_principal = "spiffe://cluster.local/ns/default/sa/productpage";
    r.peer = WorkloadInfo::from_labels("productpage-v1", "default", {{"app", "productpage"}});
    MetricLabels l = labels_for(r, c);
    CHECK(l[Label::reporter] == "destination");
    CHECK(l[Label::source_workload] == "productpage-v1");
    CHECK(l[Label::source_principal] == "spiffe://cluster.local/ns/default/sa/productpage");
    CHECK(l[Label::destination_workload] == "reviews-v2");
    CHECK(l[Label::destination_principal] == "spiffe://cluster.local/ns/default/sa/reviews");
    CHECK(l[Label::connection_security_policy] == "mutual_tls");
    r.mtls = false;
    r.peer_principal.clear();
    r.peer.reset();
    l = labels_for(r, c);
    CHECK(l[Label::connection_security_policy] == "none");
    CHECK(l[Label::source_workload] == "unknown");
    CHECK(l[Label::destination_principal] == "unknown");
}

TEST_CASE("access log: Envoy's text format, then cluster, traceparent, peer, reporter") {
    TelemetryConfig c = config_for("productpage-v1", "productpage");
    std::string line = format_access_log(outbound_record(), c);
    CHECK(line ==
          "[2023-11-14T22:13:20.123Z] \"GET /reviews/0 HTTP/1.1\" 200 - 0 295 7 4 \"-\" "
          "\"curl/7.88.1\" \"a1b2c3d4-0000-4000-8000-000000000001\" \"reviews:9080\" "
          "\"198.18.0.5:9080\" outbound|9080||reviews.default.svc.cluster.local "
          "\"00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01\" "
          "\"spiffe://cluster.local/ns/default/sa/reviews\" source\n");
    RequestRecord refused;
    refused.status = 400;
    refused.flags = "DPE";
    refused.start_wall = system_clock::time_point(seconds(1700000000));
    std::string short_line = format_access_log(refused, c);
    CHECK(short_line.find("\"- - HTTP/1.1\" 400 DPE 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\" - \"-\" \"-\" source\n") !=
          std::string::npos);
}

TcpRecord tcp_record() {
    TcpRecord r;
    r.outbound = true;
    r.start_wall = system_clock::time_point(seconds(1700000000)) + milliseconds(123);
    r.start = steady_clock::time_point(seconds(100));
    r.end = r.start + milliseconds(2041);
    r.bytes_received = 1527;
    r.bytes_sent = 1530;
    r.upstream_host = "198.18.0.5:6379";
    r.upstream_cluster = "outbound|6379||redis.default.svc.cluster.local";
    r.upstream_local = "198.18.0.4:56148";
    r.downstream_local = "198.19.0.40:6379";
    r.downstream_remote = "198.18.0.4:56146";
    r.peer_principal = "spiffe://cluster.local/ns/default/sa/redis";
    return r;
}

TEST_CASE("TCP access log: Istio's text format with the TCP fields, then peer and reporter") {
    TelemetryConfig c = config_for("client", "client");
    CHECK(format_access_log(tcp_record(), c) ==
          "[2023-11-14T22:13:20.123Z] \"- - -\" 0 - - - \"-\" 1527 1530 2041 - \"-\" \"-\" \"-\" "
          "\"-\" "
          "\"198.18.0.5:6379\" outbound|6379||redis.default.svc.cluster.local 198.18.0.4:56148 "
          "198.19.0.40:6379 198.18.0.4:56146 - - \"spiffe://cluster.local/ns/default/sa/redis\" "
          "source\n");
    // A refused connect: the flag, Envoy's failure reason, no bytes, no upstream local address.
    TcpRecord failed = tcp_record();
    failed.flags = "UF";
    failed.transport_failure = "delayed connect error: 111";
    failed.bytes_received = failed.bytes_sent = 0;
    failed.upstream_local.clear();
    failed.peer_principal.clear();
    failed.sni = "db.example";
    failed.end = failed.start;
    CHECK(format_access_log(failed, c) ==
          "[2023-11-14T22:13:20.123Z] \"- - -\" 0 UF - - \"delayed connect error: 111\" 0 0 0 - "
          "\"-\" \"-\" \"-\" "
          "\"-\" \"198.18.0.5:6379\" outbound|6379||redis.default.svc.cluster.local - "
          "198.19.0.40:6379 "
          "198.18.0.4:56146 db.example - \"-\" source\n");
    // Inbound, denied by RBAC before any upstream: the termination details say by what.
    TcpRecord denied;
    denied.outbound = false;
    denied.start_wall = system_clock::time_point(seconds(1700000000));
    denied.termination_details = "rbac_access_denied_matched_policy[default/deny-2527]";
    denied.downstream_remote = "198.18.0.4:40000";
    CHECK(format_access_log(denied, c) ==
          "[2023-11-14T22:13:20.000Z] \"- - -\" 0 - - "
          "rbac_access_denied_matched_policy[default/deny-2527] \"-\" "
          "0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\" - - - 198.18.0.4:40000 - - \"-\" destination\n");
}

TEST_CASE("TCP access log: JSON with Istio's keys, HTTP-only ones null") {
    TelemetryConfig c = config_for("client", "client");
    c.access_log_encoding = AccessLogEncoding::json;
    TcpRecord r = tcp_record();
    r.flags = "UO";
    std::string line = format_access_log(r, c);
    REQUIRE(line.back() == '\n');
    auto o = boost::json::parse(line).as_object();
    CHECK(o.at("start_time").as_string() == "2023-11-14T22:13:20.123Z");
    CHECK(o.at("method").is_null());
    CHECK(o.at("protocol").is_null());
    CHECK(o.at("response_code").as_int64() == 0);
    CHECK(o.at("response_flags").as_string() == "UO");
    CHECK(o.at("bytes_received").as_int64() == 1527);
    CHECK(o.at("bytes_sent").as_int64() == 1530);
    CHECK(o.at("duration").as_int64() == 2041);
    CHECK(o.at("upstream_host").as_string() == "198.18.0.5:6379");
    CHECK(o.at("upstream_cluster").as_string() == "outbound|6379||redis.default.svc.cluster.local");
    CHECK(o.at("upstream_local_address").as_string() == "198.18.0.4:56148");
    CHECK(o.at("downstream_local_address").as_string() == "198.19.0.40:6379");
    CHECK(o.at("downstream_remote_address").as_string() == "198.18.0.4:56146");
    CHECK(o.at("requested_server_name").is_null());
    CHECK(o.at("connection_termination_details").is_null());
    CHECK(o.at("downstream_peer_uri_san").as_string() ==
          "spiffe://cluster.local/ns/default/sa/redis");
    CHECK(o.at("reporter").as_string() == "source");
    CHECK(o.at("workload").as_string() == "client.default");
}

TEST_CASE("TCP access log: finish writes the line only when logs are on") {
    auto path = std::filesystem::temp_directory_path() /
                ("remora-tcp-access-" + std::to_string(::getpid()) + ".log");
    std::filesystem::remove(path);
    {
        auto c = std::make_shared<TelemetryConfig>(config_for("client", "client"));
        WorkerTelemetry off(c, 1);
        TcpRecord r = tcp_record();
        off.finish(r);  // no writer: nothing, no crash
        c->access_log = std::make_shared<AccessLogWriter>(path.string());
        c->steady_clock = [] { return steady_clock::time_point(seconds(100)) + milliseconds(30); };
        c->wall_clock = [] { return system_clock::time_point(seconds(1700000000)); };
        WorkerTelemetry on(c, 1);
        TcpRecord t = tcp_record();
        on.begin(t);
        on.finish(t);
        CHECK(t.end - t.start == milliseconds(0));
    }  // the writer drains and closes
    std::ifstream in(path);
    std::string line;
    REQUIRE(std::getline(in, line));
    CHECK(line.starts_with("[2023-11-14T22:13:20.000Z] \"- - -\" 0 - "));
    CHECK(line.find(" 1527 1530 0 - ") != std::string::npos);
    CHECK_FALSE(std::getline(in, line));
    std::filesystem::remove(path);
}

TEST_CASE("access log: JSON with Istio's keys") {
    TelemetryConfig c = config_for("productpage-v1", "productpage");
    c.access_log_encoding = AccessLogEncoding::json;
    std::string line = format_access_log(outbound_record(), c);
    REQUIRE(line.back() == '\n');
    auto o = boost::json::parse(line).as_object();
    CHECK(o.at("start_time").as_string() == "2023-11-14T22:13:20.123Z");
    CHECK(o.at("method").as_string() == "GET");
    CHECK(o.at("path").as_string() == "/reviews/0");
    CHECK(o.at("protocol").as_string() == "HTTP/1.1");
    CHECK(o.at("response_code").as_int64() == 200);
    CHECK(o.at("response_flags").as_string() == "-");
    CHECK(o.at("bytes_sent").as_int64() == 295);
    CHECK(o.at("duration").as_int64() == 7);
    CHECK(o.at("upstream_service_time").as_string() == "4");
    CHECK(o.at("request_id").as_string() == "a1b2c3d4-0000-4000-8000-000000000001");
    CHECK(o.at("upstream_host").as_string() == "198.18.0.5:9080");
    CHECK(o.at("traceparent").as_string().starts_with("00-4bf9"));
    CHECK(o.at("downstream_peer_uri_san").as_string() == "spiffe://cluster.local/ns/default/sa/reviews");
    CHECK(o.at("x_forwarded_for").is_null());
    CHECK(o.at("reporter").as_string() == "source");
}

TEST_CASE("span: Istio's tags, name and endpoints; 5xx marks an error") {
    TelemetryConfig c = config_for("productpage-v1", "productpage");
    RequestRecord r = outbound_record();
    std::mt19937_64 rng(9);
    IncomingTrace in;
    in.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    in.parent_id = "00f067aa0ba902b7";
    in.sampled = true;
    in.formats = kW3c;
    r.span = start_span(in, 0, rng);
    Span s = span_for(r, c);
    CHECK(s.trace_id == in.trace_id);
    CHECK(s.parent_id == in.parent_id);
    CHECK_FALSE(s.server);
    CHECK(s.name == "reviews.default.svc.cluster.local:9080/*");
    CHECK(s.local_service == "productpage.default");
    CHECK(s.duration_us == 7000);
    CHECK(s.timestamp_us == 1700000000123000);
    CHECK(s.remote_ip == "198.18.0.5");
    CHECK(s.remote_port == 9080);
    CHECK(s.tags["http.method"] == "GET");
    CHECK(s.tags["http.url"] == "http://reviews:9080/reviews/0");
    CHECK(s.tags["http.status_code"] == "200");
    CHECK(s.tags["upstream_cluster"] == "outbound|9080||reviews.default.svc.cluster.local");
    CHECK(s.tags["node_id"] == c.node_id);
    CHECK(s.tags["istio.canonical_service"] == "productpage");
    CHECK(s.tags["guid:x-request-id"] == r.request_id);
    CHECK(s.tags.count("error") == 0);
    r.status = 503;
    CHECK(span_for(r, c).tags["error"] == "true");
}

TEST_CASE("finish records metrics and writes the access log in the background") {
    auto path = std::filesystem::temp_directory_path() / ("remora-access-" + std::to_string(::getpid()) + ".log");
    std::filesystem::remove(path);
    {
        auto c = std::make_shared<TelemetryConfig>(config_for("productpage-v1", "productpage"));
        c->access_log = std::make_shared<AccessLogWriter>(path.string());
        c->wall_clock = [] { return system_clock::time_point(seconds(1700000000)); };
        c->steady_clock = [] { return steady_clock::time_point(seconds(5)); };
        WorkerTelemetry t(c, 1);
        RequestRecord r = outbound_record();
        t.begin(r, {}, "");
        CHECK(r.request_id.size() == 36);  // generated
        CHECK(r.span->trace_id.size() == 32);
        RequestRecord kept = outbound_record();
        t.begin(kept, {}, "my-id");
        CHECK(kept.request_id == "my-id");
        r.status = 200;
        t.finish(r);
        t.finish(kept);
        std::string out = render_istio_metrics({&t.metrics()});
        CHECK(out.find("destination_workload=\"reviews-v2\"") != std::string::npos);
        CHECK(out.find("} 2\n") != std::string::npos);
    }  // the writer drains and closes
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    CHECK(text.find("\"my-id\"") != std::string::npos);
    CHECK(std::count(text.begin(), text.end(), '\n') == 2);
    std::filesystem::remove(path);
}

TEST_CASE("a full queue drops and counts instead of waiting") {
    BoundedQueue<int> q(2);
    CHECK(q.push(1));
    CHECK(q.push(2));
    CHECK_FALSE(q.push(3));
    CHECK(q.dropped() == 1);
    std::vector<int> out;
    CHECK(q.drain(out, milliseconds(0)));
    CHECK(out == std::vector<int>{1, 2});
    CHECK(q.push(4));
    q.close();
    CHECK(q.drain(out, milliseconds(0)));  // what was queued before close still comes out
    CHECK(out == std::vector<int>{4});
    CHECK_FALSE(q.drain(out, milliseconds(0)));
    CHECK_FALSE(q.push(5));
}

TEST_CASE("an access log that cannot be opened is named") {
    CHECK_THROWS_WITH_AS(AccessLogWriter("/nonexistent-dir/x.log"),
                         "access log \"/nonexistent-dir/x.log\": No such file or directory",
                         std::runtime_error);
}

TEST_CASE("an unreachable collector drops spans and counts the failures") {
    ZipkinOptions z;
    z.host = "127.0.0.1";
    z.port = "1";  // nothing listens on port 1
    z.flush_interval = milliseconds(20);
    z.attempts = 2;
    std::vector<std::string> logs;
    {
        ZipkinExporter e(z, [&](const std::string& m) { logs.push_back(m); });
        Span s;
        s.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        s.id = "1111111111111111";
        CHECK(e.submit(s));
        for (int i = 0; i < 200 && e.dropped() == 0; ++i) std::this_thread::sleep_for(milliseconds(20));
        CHECK(e.dropped() == 1);
        CHECK(e.failed_posts() == 2);
        CHECK(e.sent() == 0);
    }
    REQUIRE_FALSE(logs.empty());
    CHECK(logs[0].find("connect 127.0.0.1:1") != std::string::npos);
}
