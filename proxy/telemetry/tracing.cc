// Trace header parsing and writing, sampling, and Zipkin v2 JSON.
#include "proxy/telemetry/tracing.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cstring>

namespace remora::proxy {

namespace {

bool is_lower_hex(std::string_view s) {
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return !s.empty();
}

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

bool valid_trace_id(std::string_view s) {
    return (s.size() == 32 || s.size() == 16) && is_lower_hex(s) && !all_zero(s);
}
bool valid_span_id(std::string_view s) { return s.size() == 16 && is_lower_hex(s) && !all_zero(s); }

std::optional<bool> b3_sampling(std::string_view s) {
    if (s == "1" || s == "true" || s == "d") return true;
    if (s == "0" || s == "false") return false;
    return std::nullopt;
}

// traceparent: version "-" trace-id "-" parent-id "-" flags; later versions may append fields.
bool parse_traceparent(std::string_view v, IncomingTrace& out) {
    if (v.size() < 55) return false;
    std::string_view version = v.substr(0, 2);
    if (!is_lower_hex(version) || version == "ff") return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
    if (version == "00" && v.size() != 55) return false;
    if (v.size() > 55 && v[55] != '-') return false;
    std::string_view trace = v.substr(3, 32), span = v.substr(36, 16), flags = v.substr(53, 2);
    if (trace.size() != 32 || !valid_trace_id(trace) || !valid_span_id(span) || !is_lower_hex(flags)) {
        return false;
    }
    out.trace_id = trace;
    out.parent_id = span;
    int f = std::stoi(std::string(flags), nullptr, 16);
    out.sampled = (f & 1) != 0;
    return true;
}

bool parse_b3_single(std::string_view v, IncomingTrace& out) {
    if (v.size() == 1) {  // a sampling decision alone
        auto s = b3_sampling(v);
        if (!s) return false;
        out.sampled = s;
        return true;
    }
    std::vector<std::string_view> parts;
    while (true) {
        size_t dash = v.find('-');
        parts.push_back(v.substr(0, dash));
        if (dash == std::string_view::npos) break;
        v = v.substr(dash + 1);
    }
    if (parts.size() < 2 || parts.size() > 4) return false;
    if (!valid_trace_id(parts[0]) || !valid_span_id(parts[1])) return false;
    std::optional<bool> sampled;
    if (parts.size() >= 3) {
        sampled = b3_sampling(parts[2]);
        if (!sampled) return false;
    }
    if (parts.size() == 4 && !valid_span_id(parts[3])) return false;
    out.trace_id = parts[0];
    out.parent_id = parts[1];
    out.sampled = sampled;
    return true;
}

}  // namespace

IncomingTrace extract_trace(const TraceHeaders& h) {
    IncomingTrace out;
    if (!h.traceparent.empty()) {
        IncomingTrace w;
        if (parse_traceparent(h.traceparent, w)) {
            out = std::move(w);
            out.formats |= kW3c;
            if (h.tracestate.size() <= 512) out.tracestate = h.tracestate;
        }
    }
    if (!h.b3.empty()) {
        IncomingTrace b;
        if (parse_b3_single(h.b3, b)) {
            if (out.trace_id.empty()) {
                out.trace_id = b.trace_id;
                out.parent_id = b.parent_id;
            }
            if (!out.sampled) out.sampled = b.sampled;
            out.formats |= kB3Single;
        }
    }
    if (!h.x_b3_traceid.empty() || !h.x_b3_sampled.empty() || !h.x_b3_flags.empty()) {
        bool ids = valid_trace_id(h.x_b3_traceid) && valid_span_id(h.x_b3_spanid);
        std::optional<bool> sampled =
            h.x_b3_flags == "1" ? std::optional<bool>(true) : b3_sampling(h.x_b3_sampled);
        if (ids || (h.x_b3_traceid.empty() && sampled)) {
            if (out.trace_id.empty() && ids) {
                out.trace_id = h.x_b3_traceid;
                out.parent_id = h.x_b3_spanid;
            }
            if (!out.sampled) out.sampled = sampled;
            out.formats |= kB3Multi;
        }
    }
    return out;
}

std::string random_hex(std::mt19937_64& rng, size_t digits) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(digits, '0');
    for (;;) {
        uint64_t bits = 0;
        for (size_t i = 0; i < digits; ++i) {
            if (i % 16 == 0) bits = rng();
            out[i] = kHex[bits & 15];
            bits >>= 4;
        }
        if (!all_zero(out)) return out;  // all-zero ids are invalid everywhere
    }
}

std::string new_request_id(std::mt19937_64& rng) {
    std::string id = random_hex(rng, 36);  // 32 digits and room for the 4 dashes
    id[12] = '4';
    id[16] = "89ab"[id[16] % 4];
    // 8-4-4-4-12: move the digits right, from the end, to open the dashes.
    for (size_t from = 31, to = 35;; --from, --to) {
        id[to] = id[from];
        if (to == 24 || to == 19 || to == 14 || to == 9) id[--to] = '-';
        if (from == 0) break;
    }
    return id;
}

SpanContext start_span(const IncomingTrace& in, double sampling_percent, std::mt19937_64& rng) {
    SpanContext s;
    s.span_id = random_hex(rng, 16);
    if (!in.trace_id.empty()) {
        s.trace_id = in.trace_id;
        s.parent_id = in.parent_id;
        s.tracestate = in.tracestate;
        s.formats = in.formats;
    } else {
        s.trace_id = random_hex(rng, 32);
        s.formats = in.formats ? in.formats : (kW3c | kB3Multi);
    }
    // A 64-bit B3 trace id cannot go into traceparent: keep to the B3 formats then.
    if (s.trace_id.size() != 32) s.formats &= ~static_cast<unsigned>(kW3c);
    if (s.formats == 0) s.formats = kB3Multi;
    if (in.sampled) {
        s.sampled = *in.sampled;
    } else {
        double draw = static_cast<double>(rng() >> 11) * (100.0 / 9007199254740992.0);
        s.sampled = draw < sampling_percent;
    }
    return s;
}

const std::vector<std::string_view>& trace_header_names() {
    static const std::vector<std::string_view> kNames = {
        "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
        "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"};
    return kNames;
}

void for_each_propagation_header(const SpanContext& s,
                                 const std::function<void(std::string_view, std::string_view)>& set) {
    // Ids are hex of bounded length (trace 32, span and parent 16 digits, as parsed): a buffer
    // on the stack holds every value.
    char buf[160];
    auto join = [&buf](std::initializer_list<std::string_view> parts) {
        size_t n = 0;
        for (std::string_view p : parts) {
            p = p.substr(0, sizeof buf - n);
            std::memcpy(buf + n, p.data(), p.size());
            n += p.size();
        }
        return std::string_view(buf, n);
    };
    if (s.formats & kW3c) {
        set("traceparent", join({"00-", s.trace_id, "-", s.span_id, s.sampled ? "-01" : "-00"}));
        if (!s.tracestate.empty()) set("tracestate", s.tracestate);
    }
    if (s.formats & kB3Single) {
        set("b3", s.parent_id.empty()
                      ? join({s.trace_id, "-", s.span_id, s.sampled ? "-1" : "-0"})
                      : join({s.trace_id, "-", s.span_id, s.sampled ? "-1" : "-0", "-", s.parent_id}));
    }
    if (s.formats & kB3Multi) {
        set("x-b3-traceid", s.trace_id);
        set("x-b3-spanid", s.span_id);
        if (!s.parent_id.empty()) set("x-b3-parentspanid", s.parent_id);
        set("x-b3-sampled", s.sampled ? "1" : "0");
    }
}

std::vector<std::pair<std::string_view, std::string>> propagation_headers(const SpanContext& s) {
    std::vector<std::pair<std::string_view, std::string>> out;
    for_each_propagation_header(s, [&](std::string_view n, std::string_view v) { out.emplace_back(n, v); });
    return out;
}

std::string zipkin_json(const std::vector<Span>& spans, size_t first, size_t count) {
    // One small DOM per span, serialized into one string: a batch never exists twice in memory.
    std::string out = "[";
    const size_t end = std::min(spans.size(), first + count);
    for (size_t i = first; i < end; ++i) {
        const Span& s = spans[i];
        boost::json::object o;
        o["traceId"] = s.trace_id;
        o["id"] = s.id;
        if (!s.parent_id.empty()) o["parentId"] = s.parent_id;
        o["kind"] = s.server ? "SERVER" : "CLIENT";
        o["name"] = s.name;
        o["timestamp"] = s.timestamp_us;
        o["duration"] = s.duration_us > 0 ? s.duration_us : 1;
        boost::json::object local{{"serviceName", s.local_service}};
        if (!s.local_ipv4.empty()) local["ipv4"] = s.local_ipv4;
        o["localEndpoint"] = std::move(local);
        if (!s.remote_ip.empty()) {
            boost::json::object remote;
            remote[s.remote_ip.find(':') == std::string::npos ? "ipv4" : "ipv6"] = s.remote_ip;
            if (s.remote_port) remote["port"] = s.remote_port;
            o["remoteEndpoint"] = std::move(remote);
        }
        boost::json::object tags;
        for (const auto& [k, v] : s.tags) tags[k] = v;
        o["tags"] = std::move(tags);
        if (i != first) out += ',';
        out += boost::json::serialize(o);
    }
    out += ']';
    return out;
}

}  // namespace remora::proxy
