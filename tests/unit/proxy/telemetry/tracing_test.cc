// Trace context: parsing each header format, continuing or starting a trace, the sampling
// decision, what is sent onward, and Zipkin v2 JSON.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <regex>

#include "proxy/telemetry/tracing.h"

using namespace remora::proxy;

namespace {
const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kSpan = "00f067aa0ba902b7";
const std::string kParent = "00f067aa0ba902b7";
}  // namespace

TEST_CASE("W3C traceparent is continued with its sampling flag") {
    std::string tp = "00-" + kTrace + "-" + kSpan + "-01";
    TraceHeaders h;
    h.traceparent = tp;
    h.tracestate = "congo=t61rcWkgMzE";
    IncomingTrace in = extract_trace(h);
    CHECK(in.trace_id == kTrace);
    CHECK(in.parent_id == kSpan);
    REQUIRE(in.sampled);
    CHECK(*in.sampled);
    CHECK(in.tracestate == "congo=t61rcWkgMzE");
    CHECK(in.formats == kW3c);

    std::string unsampled = "00-" + kTrace + "-" + kSpan + "-00";
    h.traceparent = unsampled;
    CHECK_FALSE(*extract_trace(h).sampled);
    // A later version may append fields.
    std::string v1 = "01-" + kTrace + "-" + kSpan + "-01-extra";
    h.traceparent = v1;
    CHECK(extract_trace(h).trace_id == kTrace);
}

TEST_CASE("malformed traceparent headers are ignored") {
    for (std::string bad : {
             "00-" + kTrace + "-" + kSpan + "-0",                   // short flags
             "00-" + kTrace + "-" + kSpan + "-01-x",                // version 00 with extra
             "ff-" + kTrace + "-" + kSpan + "-01",                  // version ff is invalid
             "00-00000000000000000000000000000000-" + kSpan + "-01",  // zero trace id
             "00-" + kTrace + "-0000000000000000-01",               // zero span id
             "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + kSpan + "-01",  // uppercase
             "00_" + kTrace + "_" + kSpan + "_01",                  // wrong separators
             std::string("garbage"),
         }) {
        TraceHeaders h;
        h.traceparent = bad;
        IncomingTrace in = extract_trace(h);
        CAPTURE(bad);
        CHECK(in.trace_id.empty());
        CHECK_FALSE(in.sampled);
        CHECK(in.formats == 0);
    }
}

TEST_CASE("B3 single header: ids, sampling, parent; or a decision alone") {
    TraceHeaders h;
    std::string full = kTrace + "-" + kSpan + "-1-" + kParent;
    h.b3 = full;
    IncomingTrace in = extract_trace(h);
    CHECK(in.trace_id == kTrace);
    CHECK(in.parent_id == kSpan);
    CHECK(*in.sampled);
    CHECK(in.formats == kB3Single);

    h.b3 = "0";
    in = extract_trace(h);
    CHECK(in.trace_id.empty());
    CHECK_FALSE(*in.sampled);
    h.b3 = "d";
    CHECK(*extract_trace(h).sampled);

    std::string no_decision = "a3ce929d0e0e4736-" + kSpan;  // 64-bit trace id
    h.b3 = no_decision;
    in = extract_trace(h);
    CHECK(in.trace_id == "a3ce929d0e0e4736");
    CHECK_FALSE(in.sampled);
    for (std::string bad : {std::string("x"), kTrace + "-" + kSpan + "-7", kTrace, kTrace + "-zz"}) {
        h.b3 = bad;
        CAPTURE(bad);
        CHECK(extract_trace(h).formats == 0);
    }
}

TEST_CASE("B3 multi-headers, with x-b3-flags debug meaning sampled") {
    TraceHeaders h;
    h.x_b3_traceid = "a3ce929d0e0e4736";
    h.x_b3_spanid = kSpan;
    h.x_b3_sampled = "0";
    IncomingTrace in = extract_trace(h);
    CHECK(in.trace_id == "a3ce929d0e0e4736");
    CHECK_FALSE(*in.sampled);
    h.x_b3_flags = "1";
    CHECK(*extract_trace(h).sampled);
    h.x_b3_spanid = "nothex";
    CHECK(extract_trace(h).formats == 0);  // ids present but invalid: ignored as a whole
}

TEST_CASE("traceparent wins over B3 for the ids; formats that arrived are all kept") {
    TraceHeaders h;
    std::string tp = "00-" + kTrace + "-" + kSpan + "-01";
    h.traceparent = tp;
    h.x_b3_traceid = "a3ce929d0e0e4736";
    h.x_b3_spanid = "1111111111111111";
    IncomingTrace in = extract_trace(h);
    CHECK(in.trace_id == kTrace);
    CHECK(in.formats == (kW3c | kB3Multi));
}

TEST_CASE("a continued span keeps the trace, has the caller as parent and a new id") {
    std::mt19937_64 rng(7);
    IncomingTrace in;
    in.trace_id = kTrace;
    in.parent_id = kSpan;
    in.sampled = false;
    in.formats = kW3c;
    SpanContext s = start_span(in, 100, rng);
    CHECK(s.trace_id == kTrace);
    CHECK(s.parent_id == kSpan);
    CHECK(s.span_id.size() == 16);
    CHECK(s.span_id != kSpan);
    CHECK_FALSE(s.sampled);  // the caller decided; 100% sampling does not override
    in.sampled = true;
    CHECK(start_span(in, 0, rng).sampled);

    auto out = propagation_headers(start_span(in, 0, rng));
    REQUIRE(out.size() == 1);
    CHECK(out[0].first == "traceparent");
    CHECK(out[0].second.substr(0, 36) == "00-" + kTrace + "-");
    CHECK(out[0].second.substr(52) == "-01");
}

TEST_CASE("a trace that starts here: sampling percentage, and both formats sent") {
    std::mt19937_64 rng(1);
    IncomingTrace none;
    int sampled = 0;
    for (int i = 0; i < 10000; ++i) sampled += start_span(none, 10, rng).sampled;
    CHECK(sampled > 800);
    CHECK(sampled < 1200);
    CHECK_FALSE(start_span(none, 0, rng).sampled);
    SpanContext s = start_span(none, 100, rng);
    CHECK(s.sampled);
    CHECK(s.trace_id.size() == 32);
    CHECK(s.parent_id.empty());
    auto out = propagation_headers(s);
    std::map<std::string, std::string> m;
    for (auto& [k, v] : out) m[std::string(k)] = v;
    CHECK(m["traceparent"] == "00-" + s.trace_id + "-" + s.span_id + "-01");
    CHECK(m["x-b3-traceid"] == s.trace_id);
    CHECK(m["x-b3-spanid"] == s.span_id);
    CHECK(m["x-b3-sampled"] == "1");
    CHECK(m.count("x-b3-parentspanid") == 0);
}

TEST_CASE("a 64-bit B3 trace is never written as traceparent") {
    std::mt19937_64 rng(3);
    IncomingTrace in;
    in.trace_id = "a3ce929d0e0e4736";
    in.parent_id = kSpan;
    in.formats = kB3Multi | kW3c;
    auto out = propagation_headers(start_span(in, 100, rng));
    for (auto& [k, v] : out) CHECK(k != "traceparent");
    IncomingTrace single;
    single.trace_id = "a3ce929d0e0e4736";
    single.parent_id = kSpan;
    single.formats = kB3Single;
    single.sampled = true;
    auto b3 = propagation_headers(start_span(single, 0, rng));
    REQUIRE(b3.size() == 1);
    CHECK(b3[0].first == "b3");
    CHECK(b3[0].second.find("a3ce929d0e0e4736-") == 0);
    CHECK(b3[0].second.substr(b3[0].second.size() - 19) == "-1-" + kSpan);
}

TEST_CASE("request ids are UUID version 4") {
    std::mt19937_64 rng(5);
    std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    for (int i = 0; i < 50; ++i) CHECK(std::regex_match(new_request_id(rng), uuid));
    CHECK(new_request_id(rng) != new_request_id(rng));
}

TEST_CASE("spans as Zipkin v2 JSON") {
    Span s;
    s.trace_id = kTrace;
    s.id = "1111111111111111";
    s.parent_id = kSpan;
    s.server = true;
    s.name = "reviews.default.svc.cluster.local:9080/*";
    s.timestamp_us = 1700000000000000;
    s.duration_us = 0;
    s.local_service = "reviews.default";
    s.local_ipv4 = "198.18.0.5";
    s.remote_ip = "198.18.0.4";
    s.remote_port = 41000;
    s.tags["http.status_code"] = "200";
    Span root = s;
    root.parent_id.clear();
    root.server = false;
    auto v = boost::json::parse(zipkin_json({s, root}));
    auto& a = v.as_array();
    REQUIRE(a.size() == 2);
    auto& o = a[0].as_object();
    CHECK(o.at("traceId").as_string() == kTrace);
    CHECK(o.at("parentId").as_string() == kSpan);
    CHECK(o.at("kind").as_string() == "SERVER");
    CHECK(o.at("timestamp").as_int64() == 1700000000000000);
    CHECK(o.at("duration").as_int64() == 1);  // Zipkin wants a positive duration
    CHECK(o.at("localEndpoint").at("serviceName").as_string() == "reviews.default");
    CHECK(o.at("remoteEndpoint").at("port").as_int64() == 41000);
    CHECK(o.at("tags").at("http.status_code").as_string() == "200");
    CHECK(a[1].as_object().count("parentId") == 0);
    CHECK(a[1].as_object().at("kind").as_string() == "CLIENT");
}
