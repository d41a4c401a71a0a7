// Trace context propagation (W3C traceparent/tracestate, B3 multi-header and single `b3`,
// x-request-id), the sampling decision, and spans in Zipkin v2 JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::proxy {

// The tracing headers of one request, as received (empty when absent).
struct TraceHeaders {
    std::string_view traceparent, tracestate;
    std::string_view b3;  // single header
    std::string_view x_b3_traceid, x_b3_spanid, x_b3_parentspanid, x_b3_sampled, x_b3_flags;
};

enum TraceFormat : unsigned { kW3c = 1, kB3Multi = 2, kB3Single = 4 };

// A trace as it reached this hop: ids when the caller sent a valid context, and its sampling
// decision when it made one. Malformed headers count as absent.
struct IncomingTrace {
    std::string trace_id;   // 32 (or, from B3, 16) lowercase hex; empty: no context
    std::string parent_id;  // the caller's span id, 16 hex
    std::optional<bool> sampled;
    std::string tracestate;
    unsigned formats = 0;  // which formats arrived (a TraceFormat mask)
};

IncomingTrace extract_trace(const TraceHeaders& h);

// This hop's span: continues the incoming trace or starts one.
struct SpanContext {
    std::string trace_id;
    std::string span_id;
    std::string parent_id;  // empty for a root span
    bool sampled = false;
    std::string tracestate;
    unsigned formats = 0;  // formats to write downstream of this hop
};

// `sampling_percent` (0..100) decides only when the caller did not.
SpanContext start_span(const IncomingTrace& in, double sampling_percent, std::mt19937_64& rng);

// The headers to send onward so the next hop's parent is this span: each format that arrived is
// rewritten; a trace that starts here gets traceparent and B3 multi-headers.
std::vector<std::pair<std::string_view, std::string>> propagation_headers(const SpanContext& s);
// The same, one call of set(name, value) per header; the values are views that end with the call
// (the request path: no allocation).
void for_each_propagation_header(const SpanContext& s,
                                 const std::function<void(std::string_view, std::string_view)>& set);
// Every header name propagation may write, to clear stale copies first.
const std::vector<std::string_view>& trace_header_names();

std::string random_hex(std::mt19937_64& rng, size_t digits);
std::string new_request_id(std::mt19937_64& rng);  // UUID version 4

struct Span {
    std::string trace_id, id, parent_id;
    bool server = false;  // SERVER (inbound) or CLIENT (outbound)
    std::string name;
    int64_t timestamp_us = 0;
    int64_t duration_us = 0;
    std::string local_service;  // <canonical service>.<namespace>
    std::string local_ipv4;
    std::string remote_ip;
    uint16_t remote_port = 0;
    std::map<std::string, std::string> tags;
};

// A JSON array of spans [first, first + count) as Zipkin's POST /api/v2/spans takes it.
std::string zipkin_json(const std::vector<Span>& spans, size_t first = 0, size_t count = SIZE_MAX);

}  // namespace remora::proxy
