// VirtualService, DestinationRule, ServiceEntry and WorkloadEntry: parsing with Istio's validation
// (pkg/config/validation) and "not supported by remora" warnings for valid features Remora lacks.
#include <algorithm>
#include <set>

#include "control/model/checks.h"
#include "control/model/parsers.h"

namespace remora::control::model::detail {

namespace {

std::string fmt_double(double d) {
    std::string s = std::to_string(d);
    return s;
}

// --- shared pieces ---------------------------------------------------------------------------

void parse_string_match_value(Reporter& r, const std::optional<Value>& v,
                              std::optional<StringMatch>& out, bool empty_prefix_ok) {
    if (!v) return;
    if (!v->node.IsMap()) {
        r.error(v->mark(), v->path, "must be a mapping (exact, prefix or regex)");
        return;
    }
    Obj m(r, *v);
    StringMatch sm;
    int kinds = 0;
    for (auto [name, type] : {std::pair{"exact", StringMatch::Type::Exact},
                              std::pair{"prefix", StringMatch::Type::Prefix},
                              std::pair{"regex", StringMatch::Type::Regex}}) {
        std::string s;
        if (m.str(name, s)) {
            ++kinds;
            sm.type = type;
            sm.value = s;
        }
    }
    if (kinds > 1) {
        r.error(v->mark(), v->path, "only one of exact, prefix or regex may be set");
        return;
    }
    if (kinds == 0) {
        // {}: matches any value (presence).
        sm.type = StringMatch::Type::Prefix;
    } else if (sm.type == StringMatch::Type::Regex) {
        if (sm.value.empty()) {
            r.error(v->mark(), join(v->path, "regex"), "regex string match should not be empty");
        } else if (auto p = regex_problem(sm.value); !p.empty()) {
            r.error(mark_of(field(v->node, "regex")), join(v->path, "regex"), p);
        }
    } else if (sm.type == StringMatch::Type::Prefix && sm.value.empty() && !empty_prefix_ok) {
        r.error(v->mark(), join(v->path, "prefix"), "prefix string match should not be empty");
    }
    out = sm;
}

void parse_string_match(Obj& parent, const std::string& key, std::optional<StringMatch>& out,
                        bool empty_prefix_ok) {
    parse_string_match_value(parent.reporter(), parent.get(key), out, empty_prefix_ok);
}

// Go's %v of a []string: "[a b]".
std::string go_words(const std::vector<std::string>& words) {
    std::string out;
    for (const auto& w : words)
        out += (out.empty() ? "" : " ") + w;
    return "[" + out + "]";
}

// jwt.ToRoutingClaim(name).Match: "@request.auth.claims.a.b" or "@request.auth.claims[a][b]"
// (the prefix in any case).
bool is_jwt_claim_key(const std::string& name) {
    static constexpr std::string_view kPrefix = "@request.auth.claims";
    if (name.size() < kPrefix.size()) return false;
    for (std::size_t i = 0; i < kPrefix.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(name[i])) != kPrefix[i]) return false;
    }
    std::string_view rest = std::string_view(name).substr(kPrefix.size());
    if (rest.size() > 1 && rest.front() == '.') return true;
    return rest.size() > 2 && rest.front() == '[' && rest.back() == ']';
}

// `mesh_gateways`: for header names, the gateways of a VirtualService that applies to the mesh
// (JWT claims exist only at gateways, so routing on them there is refused, as Istio does); null
// when it applies to gateways only.
void parse_string_match_map(Obj& parent, const std::string& key,
                            std::map<std::string, StringMatch>& out, bool header_names,
                            const std::vector<std::string>* mesh_gateways = nullptr) {
    Reporter& r = parent.reporter();
    parent.entries(key, [&](const std::string& name, const YAML::Mark& key_mark, const Value& v) {
        if (name.empty()) {
            r.error(key_mark, v.path, "header name cannot be empty");
            return;
        }
        bool claim = header_names && is_jwt_claim_key(name);
        if (claim && mesh_gateways) {
            r.error(key_mark, v.path,
                    "JWT claim based routing (key: " + name +
                        ") is only supported for gateway, found no gateways: " +
                        go_words(*mesh_gateways));
        } else if (header_names && !claim) {
            std::string lower = name;
            for (char& c : lower)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (lower != name) {
                r.error(key_mark, v.path,
                        "header match key " + in_quotes(name) + " must be lowercase");
            }
        }
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "match " + in_quotes(name) + " cannot be null");
            return;
        }
        std::optional<StringMatch> sm;
        parse_string_match_value(r, v, sm, false);
        if (sm) out[name] = *sm;
    });
}

}  // namespace

void parse_destination(Obj& d, Destination& out) {
    Reporter& r = d.reporter();
    if (!d.has("host")) {
        d.require("host");
    } else {
        auto v = d.get("host");
        if (scalar_string(r, *v, out.host)) {
            if (out.host == "*") {
                r.error(v->mark(), v->path, "invalid destination host *");
            } else if (auto p = wildcard_domain_problem(out.host); !p.empty()) {
                r.error(v->mark(), v->path, p);
            }
        }
    }
    if (auto v = d.get("subset")) {
        if (scalar_string(r, *v, out.subset)) {
            if (out.subset.empty()) {
                r.error(v->mark(), v->path, "subset name cannot be empty");
            } else if (!is_dns1123_label(out.subset)) {
                r.error(v->mark(), v->path, "subset name is invalid: " + out.subset);
            }
        }
    }
    d.object("port", [&](Obj& p) {
        uint32_t n = 0;
        if (p.integer("number", n, 1, 65535)) out.port = n;
        if (!p.has("number")) p.require("number");
    });
}

namespace {

void parse_header_ops(Obj& parent, const std::string& key, HeaderOperations& out, bool request) {
    Reporter& r = parent.reporter();
    parent.object(key, [&](Obj& h) {
        auto check_name = [&](const std::string& name, const YAML::Mark& at,
                              const std::string& path, bool setting) {
            if (name.empty()) {
                r.error(at, path, "header name cannot be empty");
                return;
            }
            bool authority =
                name == ":authority" || name == "host" || name == "Host" || name == "HOST";
            if (request && setting && authority) return;  // authority rewrite, allowed
            if (!setting || !request) {
                std::string lower = name;
                for (char& c : lower)
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                if (lower == "host") {
                    r.error(at, path,
                            "invalid header " + in_quotes(name) + ": cannot set Host header");
                    return;
                }
            }
            if (name.front() == ':') {
                r.error(at, path,
                        "invalid header " + in_quotes(name) + ": header cannot have \":\" prefix");
            }
        };
        for (const char* op : {"set", "add"}) {
            std::map<std::string, std::string>& dst = std::string(op) == "set" ? out.set : out.add;
            h.entries(op, [&](const std::string& name, const YAML::Mark& at, const Value& v) {
                check_name(name, at, v.path, true);
                std::string s;
                if (v.node.IsNull() || scalar_string(r, v, s)) dst[name] = s;
            });
        }
        h.list("remove", [&](const Value& v, std::size_t) {
            std::string s;
            if (scalar_string(r, v, s)) {
                check_name(s, v.mark(), v.path, false);
                out.remove.push_back(s);
            }
        });
    });
}

void parse_headers(Obj& parent, Headers& out) {
    parent.object("headers", [&](Obj& h) {
        parse_header_ops(h, "request", out.request, true);
        parse_header_ops(h, "response", out.response, false);
    });
}

void check_weights(Reporter& r, const Value& route_list,
                   const std::vector<HTTPRouteDestination>& routes) {
    int64_t total = 0;
    for (const auto& d : routes)
        total += d.weight;
    if (routes.size() > 1 && total == 0) {
        r.error(route_list.mark(), route_list.path, "total destination weight = 0");
    }
}

void parse_route_destinations(Obj& parent, std::vector<HTTPRouteDestination>& out, bool http) {
    Reporter& r = parent.reporter();
    auto list = parent.get("route");
    parent.objects("route", [&](Obj& rd, std::size_t) {
        HTTPRouteDestination d;
        if (!rd.has("destination")) {
            r.error(rd.mark(), join(rd.path(), "destination"), "destination is required");
        }
        rd.object("destination", [&](Obj& dest) { parse_destination(dest, d.destination); });
        if (auto w = rd.get("weight")) {
            int64_t n = 0;
            if (scalar_int(r, *w, n, INT32_MIN, INT32_MAX)) {
                if (n < 0) r.error(w->mark(), w->path, "weight " + std::to_string(n) + " < 0");
                d.weight = static_cast<int32_t>(n);
            }
        }
        if (http) {
            parse_headers(rd, d.headers);
        }
        out.push_back(std::move(d));
    });
    if (list) check_weights(r, *list, out);
}

void check_gateway_names(Reporter& r, const Value& v, const std::string& name) {
    auto slash = name.find('/');
    if (slash == std::string::npos) {
        if (name == "mesh") return;
        if (auto p = fqdn_problem(name); !p.empty()) r.error(v.mark(), v.path, p);
        return;
    }
    std::string ns = name.substr(0, slash), gw = name.substr(slash + 1);
    if (ns.empty() || gw.empty()) {
        r.error(v.mark(), v.path, "config namespace and gateway name cannot be empty");
        return;
    }
    if (!is_dns1123_label(ns))
        r.error(v.mark(), v.path, "invalid value for namespace: " + in_quotes(ns));
    if (!is_dns1123_label(gw)) {
        r.error(v.mark(), v.path, "invalid value for gateway name: " + in_quotes(gw));
    }
}

void parse_gateways(Obj& parent, std::vector<std::string>& out, bool warn_non_mesh) {
    Reporter& r = parent.reporter();
    parent.list("gateways", [&](const Value& v, std::size_t) {
        std::string g;
        if (!scalar_string(r, v, g)) return;
        check_gateway_names(r, v, g);
        if (warn_non_mesh && g != "mesh") {
            r.unsupported(v.mark(), v.path, "gateway " + in_quotes(g) + "; only the mesh gateway");
        }
        out.push_back(g);
    });
}

// --- VirtualService --------------------------------------------------------------------------

void parse_match(Obj& m, HTTPMatchRequest& out, const std::vector<std::string>* mesh_gateways) {
    Reporter& r = m.reporter();
    m.str("name", out.name);
    parse_string_match(m, "uri", out.uri, true);
    parse_string_match(m, "scheme", out.scheme, false);
    parse_string_match(m, "method", out.method, false);
    parse_string_match(m, "authority", out.authority, false);
    parse_string_match_map(m, "headers", out.headers, true, mesh_gateways);
    parse_string_match_map(m, "withoutHeaders", out.without_headers, true, mesh_gateways);
    parse_string_match_map(m, "queryParams", out.query_params, false);
    m.boolean("ignoreUriCase", out.ignore_uri_case);
    m.integer("port", out.port, 0, 65535);
    if (auto v = m.get("sourceLabels")) {
        m.string_map("sourceLabels", out.source_labels);
        check_labels(r, *v, out.source_labels);  // decided per workload at translation
    }
    if (auto v = m.get("sourceNamespace")) {
        if (m.str("sourceNamespace", out.source_namespace) &&
            !is_dns1123_label(out.source_namespace)) {
            r.error(v->mark(), v->path,
                    "sourceNamespace match " + out.source_namespace + " is invalid");
        }
    }
    parse_gateways(m, out.gateways, true);
    m.unsupported("statPrefix");
}

void parse_retries(Obj& o, HTTPRetry& out) {
    Reporter& r = o.reporter();
    auto attempts = o.get("attempts");
    if (attempts) {
        int64_t n = 0;
        if (scalar_int(r, *attempts, n, INT32_MIN, INT32_MAX)) {
            if (n < 0) r.error(attempts->mark(), attempts->path, "attempts cannot be negative");
            out.attempts = static_cast<int32_t>(n);
        }
    }
    o.duration("perTryTimeout", out.per_try_timeout);
    if (auto v = o.get("retryOn")) {
        if (scalar_string(r, *v, out.retry_on)) {
            std::size_t start = 0;
            while (start <= out.retry_on.size()) {
                std::size_t comma = out.retry_on.find(',', start);
                std::string token = out.retry_on.substr(
                    start, comma == std::string::npos ? std::string::npos : comma - start);
                if (!is_retry_condition(token)) {
                    r.error(v->mark(), v->path, "unknown retry condition " + in_quotes(token));
                }
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        }
    }
    bool b = false;
    if (o.boolean("retryRemoteLocalities", b)) {
        out.retry_remote_localities = b;
        o.unsupported("retryRemoteLocalities");
    }
    o.duration("backoff", out.backoff);
    // Istio's default is true, which is what remora's retries do (another endpoint when there is
    // one); false is the part remora lacks.
    if (o.boolean("retryIgnorePreviousHosts", b) && !b) o.unsupported("retryIgnorePreviousHosts");
    if (out.attempts == 0 &&
        (out.per_try_timeout || !out.retry_on.empty() || out.retry_remote_localities)) {
        r.error(attempts ? attempts->mark() : o.mark(), join(o.path(), "attempts"),
                "http retry policy configured when attempts are set to 0 (disabled)");
    }
}

void parse_fault(Obj& f, HTTPFaultInjection& out) {
    Reporter& r = f.reporter();
    if (!f.has("delay") && !f.has("abort")) {
        r.error(f.mark(), f.path(), "HTTP fault injection must have an abort and/or a delay");
    }
    auto legacy_percent = [&](Obj& o, std::optional<double>& pct, int32_t* written = nullptr) {
        int32_t p = 0;
        if (o.integer("percent", p, INT32_MIN, INT32_MAX)) {
            if (written) *written = p;
            auto v = o.get("percent");
            if (p < 0 || p > 100) {
                r.error(v->mark(), v->path,
                        "percentage " + std::to_string(p) + " is not in range 0..100");
            } else if (!pct) {
                pct = p;
            }
        }
    };
    f.object("delay", [&](Obj& d) {
        HTTPFaultInjection::Delay delay;
        std::optional<Duration> fixed;
        d.duration("fixedDelay", fixed);
        if (auto v = d.get("exponentialDelay")) {
            r.error(v->mark(), v->path, "exponentialDelay not supported yet");
        }
        if (!d.has("fixedDelay") && !d.has("exponentialDelay")) {
            r.error(d.mark(), join(d.path(), "fixedDelay"), "required");
        }
        if (fixed) delay.fixed_delay = *fixed;
        d.percent("percentage", delay.percentage);
        legacy_percent(d, delay.percentage, &delay.legacy_percent);
        out.delay = delay;
    });
    f.object("abort", [&](Obj& a) {
        HTTPFaultInjection::Abort abort;
        if (auto v = a.get("httpStatus")) {
            int64_t n = 0;
            if (scalar_int(r, *v, n, INT32_MIN, INT32_MAX)) {
                if (n < 200 || n > 600) {
                    r.error(v->mark(), v->path,
                            "HTTP status " + std::to_string(n) + " is not in range 200-599");
                }
                abort.http_status = static_cast<int32_t>(n);
            }
        }
        if (a.str("grpcStatus", abort.grpc_status)) {
            static const std::set<std::string> kGrpc = {"OK",
                                                        "CANCELLED",
                                                        "UNKNOWN",
                                                        "INVALID_ARGUMENT",
                                                        "DEADLINE_EXCEEDED",
                                                        "NOT_FOUND",
                                                        "ALREADY_EXISTS",
                                                        "PERMISSION_DENIED",
                                                        "RESOURCE_EXHAUSTED",
                                                        "FAILED_PRECONDITION",
                                                        "ABORTED",
                                                        "OUT_OF_RANGE",
                                                        "UNIMPLEMENTED",
                                                        "INTERNAL",
                                                        "UNAVAILABLE",
                                                        "DATA_LOSS",
                                                        "UNAUTHENTICATED"};
            if (!kGrpc.count(abort.grpc_status)) {
                auto v = a.get("grpcStatus");
                r.error(v->mark(), v->path,
                        "gRPC status " + in_quotes(abort.grpc_status) + " is not supported");
            }
        }
        if (auto v = a.get("http2Error")) {
            r.error(v->mark(), v->path, "HTTP/2 abort fault injection not supported yet");
        }
        if (!a.has("httpStatus") && !a.has("grpcStatus") && !a.has("http2Error")) {
            r.warning(a.mark(), a.path(), "abort configured, but error type not set");
        }
        a.percent("percentage", abort.percentage);
        legacy_percent(a, abort.percentage);
        out.abort = abort;
    });
}

void parse_cors(Obj& c) {
    Reporter& r = c.reporter();
    c.list("allowOrigins", [&](const Value& v, std::size_t) {
        std::optional<StringMatch> sm;
        parse_string_match_value(r, v, sm, false);
    });
    std::vector<std::string> ignored;
    c.strings("allowOrigin", ignored);
    c.list("allowMethods", [&](const Value& v, std::size_t) {
        static const std::set<std::string> kMethods = {
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"};
        std::string m;
        if (scalar_string(r, v, m) && !kMethods.count(m)) {
            r.error(v.mark(), v.path, in_quotes(m) + " is not a supported HTTP method");
        }
    });
    c.strings("allowHeaders", ignored);
    c.strings("exposeHeaders", ignored);
    std::optional<Duration> max_age;
    if (c.duration("maxAge", max_age) && max_age->count() % 1000000000 != 0) {
        auto v = c.get("maxAge");
        r.error(v->mark(), v->path, "max_age duration is accurate only to seconds precision");
    }
    bool b = false;
    c.boolean("allowCredentials", b);
    std::string s;
    c.enumeration("unmatchedPreflights", s, {"UNSPECIFIED", "FORWARD", "IGNORE"});
}

void parse_http_route(Obj& h, HTTPRoute& out, bool delegate_vs,
                      const std::vector<std::string>* mesh_gateways) {
    Reporter& r = h.reporter();
    out.where = r.location(h.mark());
    h.str("name", out.name);
    h.objects("match", [&](Obj& m, std::size_t) {
        HTTPMatchRequest req;
        parse_match(m, req, mesh_gateways);
        out.match.push_back(std::move(req));
    });
    parse_route_destinations(h, out.route, true);
    h.object("redirect", [&](Obj& o) {
        HTTPRedirect rd;
        o.str("uri", rd.uri);
        std::string prefix_rewrite;
        if (o.str("prefixRewrite", prefix_rewrite)) {
            if (!rd.uri.empty()) {
                r.error(o.mark(), o.path(),
                        "redirect uri and prefixRewrite are mutually exclusive");
            }
            o.unsupported("prefixRewrite");
        }
        o.str("authority", rd.authority);
        o.integer("port", rd.port, 1, 65535);
        o.enumeration("derivePort", rd.derive_port, {"FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"});
        if (auto v = o.get("scheme")) {
            if (o.str("scheme", rd.scheme) && rd.scheme != "http" && rd.scheme != "https") {
                r.error(v->mark(), v->path,
                        "invalid redirect scheme, must be \"http\" or \"https\"");
            }
        }
        if (auto v = o.get("redirectCode")) {
            int64_t n = 0;
            if (scalar_int(r, *v, n, 0, UINT32_MAX)) {
                if (n != 0 && (n < 300 || n > 399)) {
                    r.error(v->mark(), v->path,
                            std::to_string(n) + " is not a valid redirect code, must be 3xx");
                }
                if (n != 0) rd.redirect_code = static_cast<uint32_t>(n);
            }
        }
        if (rd.uri.empty() && prefix_rewrite.empty() && rd.authority.empty() && !o.has("port") &&
            !o.has("derivePort") && rd.scheme.empty()) {
            r.error(o.mark(), o.path(), "redirect must specify URI, authority, scheme, or port");
        }
        out.redirect = rd;
    });
    h.object("directResponse", [&](Obj& o) {
        HTTPDirectResponse dr;
        if (!o.has("status")) o.require("status");
        if (auto v = o.get("status")) {
            int64_t n = 0;
            if (scalar_int(r, *v, n, 0, UINT32_MAX)) {
                if (n < 200 || n > 600) {
                    r.error(v->mark(), v->path,
                            "HTTP status " + std::to_string(n) + " is not in range 200-599");
                }
                dr.status = static_cast<uint32_t>(n);
            }
        }
        o.object("body", [&](Obj& b) {
            std::string s;
            if (b.str("string", s)) dr.body = s;
            if (b.str("bytes", s)) {
                if (dr.body) r.error(b.mark(), b.path(), "only one of string or bytes may be set");
                dr.body = s;
            }
            if (dr.body && dr.body->size() > 1024 * 1024) {
                r.error(b.mark(), b.path(),
                        "large direct_responses may impact control plane performance, must be "
                        "less than 1MB");
            }
        });
        out.direct_response = dr;
    });
    if (auto v = h.get("delegate")) {
        out.has_delegate = true;
        Obj d(r, *v);
        std::string s;
        d.str("name", s);
        d.str("namespace", s);
        r.unsupported(v->mark(), v->path);
        if (delegate_vs) r.error(v->mark(), v->path, "delegate HTTP route cannot contain delegate");
    }
    h.object("rewrite", [&](Obj& o) {
        HTTPRewrite rw;
        o.str("uri", rw.uri);
        o.str("authority", rw.authority);
        o.object("uriRegexRewrite", [&](Obj& rr) {
            std::string match, rewrite;
            rr.str("match", match);
            rr.str("rewrite", rewrite);
            if (match.empty() || rewrite.empty()) {
                r.error(rr.mark(), rr.path(),
                        "UriRegexRewrite requires both Rewrite and Match fields to be specified");
            } else if (auto p = regex_problem(match); !p.empty()) {
                r.error(rr.mark(), join(rr.path(), "match"), p);
            }
            rw.uri_regex_rewrite = std::pair{match, rewrite};
        });
        if (!rw.uri.empty() && rw.uri_regex_rewrite) {
            r.error(o.mark(), o.path(), "rewrite may only contain one of URI or UriRegexRewrite");
        }
        if (rw.uri.empty() && !rw.uri_regex_rewrite && rw.authority.empty()) {
            r.error(o.mark(), o.path(),
                    "rewrite must specify at least one of URI, UriRegexRewrite, or authority");
        }
        out.rewrite = rw;
    });
    h.duration("timeout", out.timeout);
    h.object("retries", [&](Obj& o) {
        HTTPRetry rt;
        parse_retries(o, rt);
        out.retries = rt;
    });
    h.object("fault", [&](Obj& o) {
        HTTPFaultInjection f;
        parse_fault(o, f);
        out.fault = f;
    });
    h.object("mirror", [&](Obj& o) {
        Destination d;
        parse_destination(o, d);
        out.mirror = d;
    });
    // mirror_percent is the CRD's other spelling (+kubebuilder:altName) of the same field.
    for (const char* spelling : {"mirrorPercent", "mirror_percent"}) {
        auto v = h.get(spelling);
        if (!v) continue;
        {
            int64_t n = 0;
            if (scalar_int(r, *v, n, 0, UINT32_MAX)) {
                if (n > 100) {
                    r.error(v->mark(), v->path,
                            "mirror_percent must have a max value of 100 (it has " +
                                std::to_string(n) + ")");
                } else {
                    out.mirror_percentage = static_cast<double>(n);
                }
            }
            r.warning(
                v->mark(), v->path,
                "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead");
        }
    }
    h.object("mirrorPercentage", [&](Obj& p) {
        double d = 0;
        if (p.number("value", d)) {
            auto v = p.get("value");
            if (d > 100) {
                r.error(v->mark(), v->path,
                        "mirror_percentage must have a max value of 100 (it has " + fmt_double(d) +
                            ")");
            } else if (d < 0) {
                r.error(
                    v->mark(), v->path,
                    "mirror_percentage must have a min value of 0 (it has " + fmt_double(d) + ")");
            } else {
                out.mirror_percentage = d;
            }
        } else if (!p.has("value")) {
            out.mirror_percentage = 0;
        }
    });
    h.objects("mirrors", [&](Obj& m, std::size_t) {
        HTTPMirrorPolicy mp;
        if (!m.has("destination")) {
            r.error(m.mark(), join(m.path(), "destination"), "destination is required for mirrors");
        }
        m.object("destination", [&](Obj& d) { parse_destination(d, mp.destination); });
        m.percent("percentage", mp.percentage);
        out.mirrors.push_back(std::move(mp));
    });
    if (auto v = h.get("corsPolicy")) {
        out.has_cors_policy = true;
        if (v->node.IsMap()) {
            Obj c(r, *v);
            parse_cors(c);
        } else {
            r.error(v->mark(), v->path, "must be a mapping");
        }
        r.unsupported(v->mark(), v->path);
    }
    parse_headers(h, out.headers);

    // Conflicts (validateHTTPRouteConflict).
    if (out.has_delegate && !delegate_vs) {
        if (out.redirect)
            r.error(h.mark(), h.path(),
                    "root HTTP route " + out.name + " must not specify redirect");
        if (!out.route.empty())
            r.error(h.mark(), h.path(), "root HTTP route " + out.name + " must not specify route");
    } else if (out.redirect) {
        if (!out.route.empty())
            r.error(h.mark(), h.path(), "HTTP route cannot contain both route and redirect");
        if (out.fault)
            r.error(h.mark(), h.path(), "HTTP route cannot contain both fault and redirect");
        if (out.rewrite)
            r.error(h.mark(), h.path(), "HTTP route rule cannot contain both rewrite and redirect");
        if (out.direct_response) {
            r.error(h.mark(), h.path(),
                    "HTTP route rule cannot contain both direct_response and redirect");
        }
    } else if (out.direct_response) {
        if (!out.route.empty())
            r.error(h.mark(), h.path(), "HTTP route cannot contain both route and direct_response");
        if (out.fault)
            r.error(h.mark(), h.path(), "HTTP route cannot contain both fault and direct_response");
        if (out.rewrite)
            r.error(h.mark(), h.path(),
                    "HTTP route rule cannot contain both rewrite and direct_response");
    } else if (out.route.empty()) {
        r.error(h.mark(), h.path(), "HTTP route, redirect or direct_response is required");
    }
    if (out.mirror && !out.mirrors.empty()) {
        r.error(h.mark(), h.path(), "HTTP route cannot contain both mirror and mirrors");
    }
    int authority_sets = !out.rewrite || out.rewrite->authority.empty() ? 0 : 1;
    for (const auto& [k, v] : out.headers.request.set) {
        if (k == ":authority" || k == "host" || k == "Host") ++authority_sets;
    }
    for (const auto& [k, v] : out.headers.request.add) {
        if (k == ":authority" || k == "host" || k == "Host") ++authority_sets;
    }
    if (authority_sets > 1)
        r.error(h.mark(), h.path(), "authority header cannot be set multiple times");
}

void parse_l4_route(Obj& t, L4Route& out, bool tls, Reporter& r) {
    out.where = r.location(t.mark());
    t.objects("match", [&](Obj& m, std::size_t) {
        L4Match block;
        std::vector<std::string> sni, subnets;
        if (tls) {
            m.strings("sniHosts", sni);
            if (sni.empty())
                r.error(m.mark(), join(m.path(), "sniHosts"),
                        "TLS match must have at least one SNI host");
        }
        m.strings("destinationSubnets", subnets);
        for (const auto& s : subnets) {
            if (!is_ip_or_cidr(s))
                r.error(m.mark(), join(m.path(), "destinationSubnets"),
                        in_quotes(s) + " is not a valid IP or CIDR");
        }
        uint32_t port = 0;
        m.integer("port", port, 0, 65535);
        if (auto v = m.get("sourceSubnet")) {  // deprecated, hidden from Istio's docs
            std::string subnet;
            if (scalar_string(r, *v, subnet)) {
                if (!subnet.empty() && !is_ip_or_cidr(subnet)) {
                    r.error(v->mark(), v->path, in_quotes(subnet) + " is not a valid IP or CIDR");
                }
                r.unsupported(v->mark(), v->path);
            }
        }
        Labels l;
        m.string_map("sourceLabels", l);
        std::string ns;
        m.str("sourceNamespace", ns);
        std::vector<std::string> gws;
        parse_gateways(m, gws, false);
        block.port = port;
        block.sni_hosts = std::move(sni);
        block.source_labels = std::move(l);
        block.source_namespace = std::move(ns);
        out.match.push_back(std::move(block));
    });
    if (tls && !t.has("match"))
        r.error(t.mark(), join(t.path(), "match"),
                "TLS route must have at least one match condition");
    if (!t.has("route"))
        r.error(t.mark(), join(t.path(), "route"),
                std::string(tls ? "TLS" : "TCP") + " route is required");
    parse_route_destinations(t, out.route, false);
}

// host.Name.Matches: equal, or a wildcard that covers the other.
bool hosts_overlap(const std::string& a, const std::string& b) {
    if (a == b) return true;
    auto covers = [](const std::string& wild, const std::string& other) {
        if (!wild.starts_with("*")) return false;
        std::string suffix = wild.substr(1);
        std::string o = other.starts_with("*") ? other.substr(1) : other;
        return o.ends_with(suffix);
    };
    return covers(a, b) || covers(b, a);
}

}  // namespace

void parse_virtual_service(Obj& spec, VirtualService& vs) {
    Reporter& r = spec.reporter();
    auto hosts = spec.get("hosts");
    spec.strings("hosts", vs.hosts);
    parse_gateways(spec, vs.gateways, true);
    bool mesh = vs.applies_to_mesh();
    if (vs.hosts.empty() && (!hosts || hosts->node.IsSequence())) {
        if (!vs.gateways.empty()) {
            r.error(spec.mark(), join(spec.path(), "gateways"),
                    "delegate virtual service must have no gateways specified");
        }
        if (spec.has("tls"))
            r.error(spec.mark(), join(spec.path(), "tls"),
                    "delegate virtual service must have no tls route specified");
        if (spec.has("tcp"))
            r.error(spec.mark(), join(spec.path(), "tcp"),
                    "delegate virtual service must have no tcp route specified");
        r.unsupported(hosts ? hosts->mark() : spec.mark(), join(spec.path(), "hosts"),
                      "a VirtualService without hosts is a delegate");
    }
    bool all_valid = true;
    for (std::size_t i = 0; i < vs.hosts.size(); ++i) {
        const std::string& h = vs.hosts[i];
        Value v{item(hosts->node, i), at_index(hosts->path, i)};
        if (auto p = wildcard_domain_problem(h); !p.empty()) {
            if (!is_ip(h)) {
                r.error(v.mark(), v.path, p);
                all_valid = false;
            }
        } else if (mesh && h == "*") {
            r.error(
                v.mark(), v.path,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway");
            all_valid = false;
        }
    }
    if (all_valid) {
        for (std::size_t i = 0; i < vs.hosts.size(); ++i) {
            for (std::size_t j = i + 1; j < vs.hosts.size(); ++j) {
                if (hosts_overlap(vs.hosts[i], vs.hosts[j])) {
                    r.error(
                        mark_of(item(hosts->node, j)), at_index(hosts->path, j),
                        "duplicate hosts in virtual service: " + vs.hosts[i] + " & " + vs.hosts[j]);
                }
            }
        }
    }
    if (!spec.has("http") && !spec.has("tcp") && !spec.has("tls")) {
        r.error(spec.mark(), spec.path(), "http, tcp or tls must be provided in virtual service");
    }
    spec.list("http", [&](const Value& v, std::size_t) {
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "http route may not be null");
            return;
        }
        Obj h(r, v);
        HTTPRoute route;
        parse_http_route(h, route, vs.hosts.empty(), mesh ? &vs.gateways : nullptr);
        vs.http.push_back(std::move(route));
    });
    for (const char* kind : {"tcp", "tls"}) {
        bool tls = std::string(kind) == "tls";
        spec.objects(kind, [&](Obj& t, std::size_t) {
            L4Route route;
            parse_l4_route(t, route, tls, r);
            (tls ? vs.tls : vs.tcp).push_back(std::move(route));
        });
    }
    check_export_to(spec, vs.meta.ns, vs.export_to, false);
}

// --- DestinationRule -------------------------------------------------------------------------

namespace {

void parse_load_balancer(Obj& o, LoadBalancerSettings& out) {
    Reporter& r = o.reporter();
    o.enumeration(
        "simple", out.simple,
        {"UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"});
    o.object("consistentHash", [&](Obj& c) {
        LoadBalancerSettings::ConsistentHash ch;
        c.str("httpHeaderName", ch.http_header_name);
        c.object("httpCookie", [&](Obj& k) {
            LoadBalancerSettings::ConsistentHash::HttpCookie cookie;
            k.str("name", cookie.name);
            k.str("path", cookie.path);
            k.duration("ttl", cookie.ttl, true);
            k.unsupported("attributes");
            if (cookie.name.empty())
                r.error(k.mark(), join(k.path(), "name"), "name required for HttpCookie");
            ch.http_cookie = cookie;
        });
        c.boolean("useSourceIp", ch.use_source_ip);
        c.str("httpQueryParameterName", ch.http_query_parameter_name);
        c.object("ringHash", [&](Obj& rh) {
            uint64_t n = 0;
            rh.integer("minimumRingSize", n, 0, INT64_MAX);
            ch.ring_hash_minimum_ring_size = n;
        });
        c.object("maglev", [&](Obj& m) {
            uint64_t n = 0;
            m.integer("tableSize", n, 0, INT64_MAX);
            if (n == 0)
                r.error(m.mark(), join(m.path(), "tableSize"), "tableSize must be set for maglev");
            ch.maglev_table_size = n;
        });
        if (auto v = c.get("minimumRingSize")) {
            c.integer("minimumRingSize", ch.minimum_ring_size, 0, INT64_MAX);
            r.warning(v->mark(), v->path,
                      "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's "
                      "RingHash configuration instead");
            if (ch.ring_hash_minimum_ring_size || ch.maglev_table_size) {
                r.error(v->mark(), v->path,
                        "only one of MinimumRingSize or Maglev/Ringhash can be specified");
            }
        }
        int keys = !ch.http_header_name.empty() + ch.http_cookie.has_value() + ch.use_source_ip +
                   !ch.http_query_parameter_name.empty();
        if (keys > 1) {
            r.error(c.mark(), c.path(),
                    "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName");
        }
        out.consistent_hash = ch;
    });
    if (!out.simple.empty() && out.consistent_hash) {
        r.error(o.mark(), o.path(), "only one of simple or consistentHash may be set");
    }
    o.unsupported("localityLbSetting");
    o.unsupported("zoneAwareLbSetting");
    // Not enforced, still validated as Istio validates them.
    if (o.has("warmupDurationSecs")) {
        std::optional<Duration> d;
        o.duration("warmupDurationSecs", d);
        o.unsupported("warmupDurationSecs");
    }
    if (auto w = o.get("warmup")) {
        Obj warm(r, *w);
        if (!warm.has("duration")) {
            r.error(w->mark(), join(w->path, "duration"), "duration is required");
        } else {
            std::optional<Duration> d;
            warm.duration("duration", d);
        }
        double minimum = 0, aggression = 1;
        if (auto v = warm.get("minimumPercent")) {
            if (warm.number("minimumPercent", minimum) && minimum > 100) {
                r.error(v->mark(), v->path,
                        "minimumPercent value should be less than or equal to 100");
            }
        }
        if (auto v = warm.get("aggression")) {
            if (warm.number("aggression", aggression) && aggression <= 0) {
                r.error(v->mark(), v->path, "aggression should be greater than 0");
            }
        }
        r.unsupported(w->mark(), w->path);
    }
}

}  // namespace

void parse_connection_pool(Obj& o, ConnectionPoolSettings& out) {
    Reporter& r = o.reporter();
    if (!o.has("tcp") && !o.has("http")) {
        r.error(o.mark(), o.path(), "connection pool must have at least one field");
    }
    o.object("tcp", [&](Obj& t) {
        ConnectionPoolSettings::TCP tcp;
        auto nonneg = [&](Obj& x, const char* key, std::optional<int32_t>& dst, const char* what) {
            int64_t n = 0;
            if (x.i64(key, n, INT32_MIN, INT32_MAX)) {
                if (n < 0) {
                    auto v = x.get(key);
                    r.error(v->mark(), v->path, std::string(what) + " must be non-negative");
                }
                dst = static_cast<int32_t>(n);
            }
        };
        nonneg(t, "maxConnections", tcp.max_connections, "max connections");
        t.duration("connectTimeout", tcp.connect_timeout);
        t.duration("maxConnectionDuration", tcp.max_connection_duration);
        t.duration("idleTimeout", tcp.idle_timeout, true);
        t.object("tcpKeepalive", [&](Obj& k) {
            ConnectionPoolSettings::TCP::Keepalive ka;
            k.integer("probes", ka.probes, 0, UINT32_MAX);
            k.duration("time", ka.time);
            k.duration("interval", ka.interval);
            tcp.tcp_keepalive = ka;
        });
        out.tcp = tcp;
    });
    o.object("http", [&](Obj& h) {
        ConnectionPoolSettings::HTTP http;
        auto nonneg = [&](const char* key, std::optional<int32_t>& dst, const char* what) {
            int64_t n = 0;
            if (h.i64(key, n, INT32_MIN, INT32_MAX)) {
                if (n < 0) {
                    auto v = h.get(key);
                    r.error(v->mark(), v->path, std::string(what) + " must be non-negative");
                }
                dst = static_cast<int32_t>(n);
            }
        };
        nonneg("http1MaxPendingRequests", http.http1_max_pending_requests,
               "http1 max pending requests");
        nonneg("http2MaxRequests", http.http2_max_requests, "http2 max requests");
        nonneg("maxRequestsPerConnection", http.max_requests_per_connection,
               "max requests per connection");
        nonneg("maxRetries", http.max_retries, "max retries");
        nonneg("maxConcurrentStreams", http.max_concurrent_streams, "max concurrent streams");
        h.duration("idleTimeout", http.idle_timeout);
        h.enumeration("h2UpgradePolicy", http.h2_upgrade_policy,
                      {"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"});
        h.boolean("useClientProtocol", http.use_client_protocol);
        if (auto v = h.get("http2KeepAlive")) {
            Obj k(r, *v);
            std::optional<Duration> interval, timeout;
            k.duration("interval", interval);
            k.duration("timeout", timeout);
            r.unsupported(v->mark(), v->path);
        }
        if (http.h2_upgrade_policy == "UPGRADE" && http.use_client_protocol) {
            r.error(h.mark(), h.path(),
                    "use client protocol must not be true when H2UpgradePolicy is UPGRADE");
        }
        out.http = http;
    });
}

namespace {

void parse_outlier_detection(Obj& o, OutlierDetection& out) {
    Reporter& r = o.reporter();
    if (auto v = o.get("consecutiveErrors")) {
        int32_t n = 0;
        o.integer("consecutiveErrors", n, INT32_MIN, INT32_MAX);
        r.warning(v->mark(), v->path,
                  "outlier detection consecutive errors is deprecated, use "
                  "consecutiveGatewayErrors or consecutive5xxErrors instead");
    }
    o.integer("consecutive5xxErrors", out.consecutive_5xx_errors, 0, UINT32_MAX);
    o.integer("consecutiveGatewayErrors", out.consecutive_gateway_errors, 0, UINT32_MAX);
    o.integer("consecutiveLocalOriginFailures", out.consecutive_local_origin_failures, 0,
              UINT32_MAX);
    o.boolean("splitExternalLocalOriginErrors", out.split_external_local_origin_errors);
    if (!out.split_external_local_origin_errors &&
        out.consecutive_local_origin_failures.value_or(0) > 0) {
        r.error(o.mark(), o.path(),
                "outlier detection consecutive local origin failures is specified, but split "
                "external local origin errors is set to false");
    }
    o.duration("interval", out.interval);
    o.duration("baseEjectionTime", out.base_ejection_time);
    if (o.has("outlierDetectionHttpErrorCodes")) {
        o.list("outlierDetectionHttpErrorCodes", [&](const Value& v, std::size_t) {
            int64_t code = 0;
            scalar_int(r, v, code, 100, 599);
        });
        o.unsupported("outlierDetectionHttpErrorCodes");
    } else {
        o.skip("outlierDetectionHttpErrorCodes");
    }
    for (auto [key, dst] : {std::pair{"maxEjectionPercent", &out.max_ejection_percent},
                            std::pair{"minHealthPercent", &out.min_health_percent}}) {
        int64_t n = 0;
        if (o.i64(key, n, INT32_MIN, INT32_MAX)) {
            if (n < 0 || n > 100) {
                auto v = o.get(key);
                r.error(v->mark(), v->path,
                        "percentage " + std::to_string(n) + " is not in range 0..100");
            }
            *dst = static_cast<int32_t>(n);
        }
    }
}

void parse_client_tls(Obj& o, ClientTLSSettings& out) {
    Reporter& r = o.reporter();
    o.enumeration("mode", out.mode, {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"});
    o.str("clientCertificate", out.client_certificate);
    o.str("privateKey", out.private_key);
    o.str("caCertificates", out.ca_certificates);
    o.str("credentialName", out.credential_name);
    o.strings("subjectAltNames", out.subject_alt_names);
    o.str("sni", out.sni);
    o.boolean("insecureSkipVerify", out.insecure_skip_verify);
    std::string crl;
    o.str("caCrl", crl);
    if (out.insecure_skip_verify) {
        if (out.mode == "SIMPLE" && (!out.ca_certificates.empty() || !out.credential_name.empty() ||
                                     o.has("subjectAltNames"))) {
            r.error(o.mark(), o.path(),
                    "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                    "InsecureSkipVerify is set true");
        }
        if (out.mode == "MUTUAL" && (!out.ca_certificates.empty() || o.has("subjectAltNames"))) {
            r.error(o.mark(), o.path(),
                    "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is "
                    "set true");
        }
    }
    if ((out.mode == "SIMPLE" || out.mode == "MUTUAL") && !out.credential_name.empty()) {
        if (!out.client_certificate.empty() || !out.ca_certificates.empty() ||
            !out.private_key.empty() || !crl.empty()) {
            r.error(o.mark(), o.path(),
                    "cannot specify client certificates or CA certificate or CA CRL If "
                    "credentialName is set");
        }
        return;
    }
    if (out.mode == "MUTUAL") {
        if (out.client_certificate.empty()) {
            r.error(o.mark(), join(o.path(), "clientCertificate"),
                    "client certificate required for mutual tls");
        }
        if (out.private_key.empty()) {
            r.error(o.mark(), join(o.path(), "privateKey"), "private key required for mutual tls");
        }
    }
}

void parse_traffic_policy(Obj& o, TrafficPolicy& out) {
    Reporter& r = o.reporter();
    if (!o.has("loadBalancer") && !o.has("connectionPool") && !o.has("outlierDetection") &&
        !o.has("tls") && !o.has("portLevelSettings") && !o.has("tunnel") &&
        !o.has("proxyProtocol") && !o.has("retryBudget")) {
        r.error(o.mark(), o.path(), "traffic policy must have at least one field");
    }
    o.object("loadBalancer", [&](Obj& x) { parse_load_balancer(x, out.load_balancer.emplace()); });
    o.object("connectionPool",
             [&](Obj& x) { parse_connection_pool(x, out.connection_pool.emplace()); });
    o.object("outlierDetection",
             [&](Obj& x) { parse_outlier_detection(x, out.outlier_detection.emplace()); });
    o.object("tls", [&](Obj& x) { parse_client_tls(x, out.tls.emplace()); });
    o.objects("portLevelSettings", [&](Obj& p, std::size_t) {
        PortTrafficPolicy pt;
        if (!p.has("port"))
            r.error(p.mark(), join(p.path(), "port"), "portTrafficPolicy must have valid port");
        p.object("port", [&](Obj& port) {
            if (!port.has("number")) port.require("number");
            port.integer("number", pt.port, 1, 65535);
        });
        if (!p.has("loadBalancer") && !p.has("connectionPool") && !p.has("outlierDetection") &&
            !p.has("tls")) {
            r.error(p.mark(), p.path(), "port traffic policy must have at least one field");
        }
        p.object("loadBalancer",
                 [&](Obj& x) { parse_load_balancer(x, pt.load_balancer.emplace()); });
        p.object("connectionPool",
                 [&](Obj& x) { parse_connection_pool(x, pt.connection_pool.emplace()); });
        p.object("outlierDetection",
                 [&](Obj& x) { parse_outlier_detection(x, pt.outlier_detection.emplace()); });
        p.object("tls", [&](Obj& x) { parse_client_tls(x, pt.tls.emplace()); });
        out.port_level_settings.push_back(std::move(pt));
    });
    if (o.has("tunnel") && o.has("proxyProtocol")) {
        r.error(o.mark(), o.path(), "tunnel and proxyProtocol must not be set together");
    }
    if (auto v = o.get("tunnel")) {
        Obj t(r, *v);
        std::string s;
        uint32_t port = 0;
        t.enumeration("protocol", s, {"CONNECT", "POST"});
        t.str("targetHost", s);
        t.integer("targetPort", port, 1, 65535);
        r.unsupported(v->mark(), v->path);
    }
    if (auto v = o.get("proxyProtocol")) {
        Obj p(r, *v);
        std::string s;
        p.enumeration("version", s, {"V1", "V2"});
        r.unsupported(v->mark(), v->path);
    }
    if (auto v = o.get("retryBudget")) {
        Obj b(r, *v);
        RetryBudget& budget = out.retry_budget.emplace();
        double percent = 0;
        if (b.number("percent", percent)) {
            if (percent < 0 || percent > 100) {
                auto p = b.get("percent");
                r.error(p->mark(), p->path, "percent must be in range [0, 100]");
            } else {
                budget.percent = percent;
            }
        }
        uint32_t min_concurrency = 0;
        if (b.has("minRetryConcurrency") && b.integer("minRetryConcurrency", min_concurrency, 0, UINT32_MAX)) {
            budget.min_retry_concurrency = min_concurrency;
        }
        std::optional<Duration> interval;
        if (b.duration("budgetInterval", interval, true) && interval) {
            auto i = b.get("budgetInterval");
            r.unsupported(i->mark(), i->path);
        }
    }
}

}  // namespace

void parse_destination_rule(Obj& spec, DestinationRule& dr) {
    Reporter& r = spec.reporter();
    if (!spec.has("host")) {
        r.error(spec.mark(), join(spec.path(), "host"), "empty domain name not allowed");
    }
    if (auto v = spec.get("host")) {
        if (scalar_string(r, *v, dr.host)) {
            if (auto p = wildcard_domain_problem(dr.host); !p.empty())
                r.error(v->mark(), v->path, p);
        }
    }
    spec.object("trafficPolicy",
                [&](Obj& o) { parse_traffic_policy(o, dr.traffic_policy.emplace()); });
    std::set<std::string> names;
    spec.list("subsets", [&](const Value& v, std::size_t) {
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "subset may not be null");
            return;
        }
        Obj s(r, v);
        Subset subset;
        auto name = s.get("name");
        s.str("name", subset.name);
        if (subset.name.empty()) {
            r.error(name ? name->mark() : s.mark(), join(v.path, "name"),
                    "subset name cannot be empty");
        } else if (!is_dns1123_label(subset.name)) {
            r.error(name->mark(), name->path, "subset name is invalid: " + subset.name);
        }
        if (!subset.name.empty() && !names.insert(subset.name).second) {
            r.error(name->mark(), name->path, "duplicate subset names: " + subset.name);
        }
        read_labels(s, "labels", subset.labels);
        s.object("trafficPolicy",
                 [&](Obj& o) { parse_traffic_policy(o, subset.traffic_policy.emplace()); });
        dr.subsets.push_back(std::move(subset));
    });
    check_export_to(spec, dr.meta.ns, dr.export_to, false);
    if (auto v = spec.get("workloadSelector")) {
        Obj w(r, *v);
        Labels l;
        read_labels(w, "matchLabels", l);
        dr.workload_selector = l;
        r.unsupported(v->mark(), v->path);
        bool beyond = false;
        for (const auto& e : dr.export_to)
            beyond |= e != "." && e != dr.meta.ns;
        if (beyond) {
            r.error(v->mark(), join(spec.path(), "exportTo"),
                    "destination rule with workload selector cannot have exportTo beyond current "
                    "namespace");
        }
    }
}

// --- ServiceEntry / WorkloadEntry ------------------------------------------------------------

void parse_workload_entry(Obj& spec, WorkloadEntrySpec& we, bool inline_endpoint) {
    Reporter& r = spec.reporter();
    auto addr = spec.get("address");
    spec.str("address", we.address);
    if (we.address.empty() && !inline_endpoint) {
        if (!spec.has("network")) {
            r.error(spec.mark(), join(spec.path(), "address"), "address is required");
        } else {
            std::string network;
            spec.str("network", network);
            r.warning(spec.mark(), join(spec.path(), "address"),
                      "address is unset with network " + in_quotes(network));
        }
    } else if (addr && we.address.starts_with("unix://")) {
        if (auto p = unix_address_problem(std::string_view(we.address).substr(7)); !p.empty())
            r.error(addr->mark(), addr->path, p);
        if (spec.has("ports")) {
            auto ports = spec.get("ports");
            r.error(ports->mark(), ports->path,
                    "unix endpoint " + we.address + " must not include ports");
        }
        r.unsupported(addr->mark(), addr->path, "unix domain socket endpoints");
    } else if (addr && !is_ip(we.address) && !fqdn_problem(we.address).empty()) {
        r.error(
            addr->mark(), addr->path,
            "endpoint address " + in_quotes(we.address) + " is not a valid FQDN or an IP address");
    }
    spec.entries("ports", [&](const std::string& name, const YAML::Mark& at, const Value& v) {
        if (!is_dns1123_label(name)) r.error(at, v.path, "invalid port name: " + name);
        int64_t n = 0;
        if (scalar_int(r, v, n, 1, 65535)) we.ports[name] = static_cast<uint32_t>(n);
    });
    read_labels(spec, "labels", we.labels);
    spec.str("network", we.network);
    spec.str("locality", we.locality);
    spec.integer("weight", we.weight, 0, UINT32_MAX);
    if (auto v = spec.get("serviceAccount")) {
        if (spec.str("serviceAccount", we.service_account) && !we.service_account.empty() &&
            !is_dns1123_subdomain(we.service_account)) {
            r.error(v->mark(), v->path,
                    in_quotes(we.service_account) + " is not a valid service account name");
        }
    }
}

void parse_service_entry(Obj& spec, ServiceEntry& se) {
    Reporter& r = spec.reporter();
    auto hosts = spec.get("hosts");
    spec.strings("hosts", se.hosts);
    if (se.hosts.empty()) {
        r.error(hosts ? hosts->mark() : spec.mark(), join(spec.path(), "hosts"),
                "service entry must have at least one host");
    }
    for (std::size_t i = 0; i < se.hosts.size(); ++i) {
        Value v{item(hosts->node, i), at_index(hosts->path, i)};
        if (se.hosts[i] == "*") {
            r.error(v.mark(), v.path, "invalid host *");
        } else if (auto p = wildcard_domain_problem(se.hosts[i]); !p.empty()) {
            r.error(v.mark(), v.path, p);
        }
    }
    auto addresses = spec.get("addresses");
    spec.strings("addresses", se.addresses);
    bool cidr = false;
    for (std::size_t i = 0; i < se.addresses.size(); ++i) {
        cidr |= se.addresses[i].find('/') != std::string::npos;
        if (!is_ip_or_cidr(se.addresses[i])) {
            r.error(mark_of(item(addresses->node, i)), at_index(addresses->path, i),
                    in_quotes(se.addresses[i]) + " is not a valid IP address or CIDR range");
        }
    }
    std::set<std::string> port_names;
    std::set<uint32_t> port_numbers;
    spec.objects("ports", [&](Obj& p, std::size_t) {
        ServicePort port;
        if (!p.has("number")) p.require("number");
        auto number = p.get("number");
        p.integer("number", port.number, 1, 65535);
        auto name = p.get("name");
        p.str("name", port.name);
        if (!is_dns1123_label(port.name)) {
            r.error(name ? name->mark() : p.mark(), join(p.path(), "name"),
                    "invalid port name: " + port.name);
        }
        if (auto v = p.get("protocol")) {
            if (p.str("protocol", port.protocol) && !port.protocol.empty() &&
                !is_protocol(port.protocol)) {
                r.error(v->mark(), v->path, "unsupported protocol: " + port.protocol);
            }
        }
        p.integer("targetPort", port.target_port, 1, 65535);
        if (!port_names.insert(port.name).second) {
            r.error(name ? name->mark() : p.mark(), join(p.path(), "name"),
                    "service entry port name " + in_quotes(port.name) + " already defined");
        }
        if (number && !port_numbers.insert(port.number).second) {
            r.error(number->mark(), number->path,
                    "service entry port " + std::to_string(port.number) + " already defined");
        }
        se.ports.push_back(std::move(port));
    });
    spec.enumeration("location", se.location, {"MESH_EXTERNAL", "MESH_INTERNAL"});
    spec.enumeration("resolution", se.resolution, {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"});
    auto endpoints = spec.get("endpoints");
    spec.objects("endpoints", [&](Obj& e, std::size_t) {
        WorkloadEntrySpec we;
        parse_workload_entry(e, we, true);
        if (we.address.empty()) r.error(e.mark(), join(e.path(), "address"), "address is required");
        for (const auto& [name, port] : we.ports) {
            if (!port_names.count(name)) {
                r.error(e.mark(), join(e.path(), "ports"),
                        "endpoint port " + std::to_string(port) +
                            " is not defined by the service entry");
            }
        }
        if (we.address.starts_with("unix://") && se.ports.size() != 1) {
            r.error(e.mark(), join(e.path(), "address"),
                    "exactly 1 service port required for unix endpoints");
        }
        if (se.resolution == "STATIC" && !we.address.empty() && !is_ip(we.address) &&
            !we.address.starts_with("unix://")) {
            r.error(e.mark(), join(e.path(), "address"),
                    "endpoint address " + in_quotes(we.address) + " is not a valid IP address");
        }
        se.endpoints.push_back(std::move(we));
    });
    if (auto v = spec.get("workloadSelector")) {
        Obj w(r, *v);
        Labels l;
        read_labels(w, "labels", l);
        if (l.empty()) {
            r.warning(v->mark(), v->path,
                      "service entry: workload selector specified without labels, will be applied "
                      "to all services in namespace");
        }
        se.workload_selector = l;
        if (endpoints) {
            r.error(v->mark(), v->path,
                    "only one of WorkloadSelector or Endpoints is allowed in Service Entry");
        }
    }
    if (cidr && se.resolution != "NONE" && se.resolution != "STATIC") {
        r.error(addresses->mark(), addresses->path,
                "CIDR addresses are allowed only for NONE/STATIC resolution types");
    }
    if (se.resolution == "NONE" && endpoints) {
        r.error(endpoints->mark(), endpoints->path,
                "no endpoints should be provided for resolution type none");
    }
    if ((se.resolution == "DNS" || se.resolution == "DNS_ROUND_ROBIN") && !endpoints) {
        for (const auto& h : se.hosts) {
            if (!fqdn_problem(h).empty()) {
                r.error(hosts->mark(), hosts->path,
                        "hosts must be FQDN if no endpoints are provided for resolution mode " +
                            se.resolution);
                break;
            }
        }
    }
    if (se.resolution == "DNS_ROUND_ROBIN" && se.endpoints.size() > 1) {
        r.error(endpoints->mark(), endpoints->path,
                "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN");
    }
    if (se.resolution != "NONE" && se.hosts.size() > 1) {
        for (const auto& p : se.ports) {
            std::string proto = p.protocol;
            for (char& c : proto)
                c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            bool http_or_tls = proto == "HTTP" || proto == "HTTPS" || proto == "HTTP2" ||
                               proto == "GRPC" || proto == "GRPC-WEB" || proto == "TLS";
            if (!http_or_tls) {
                r.error(hosts->mark(), hosts->path,
                        "multiple hosts provided with non-HTTP, non-TLS ports");
                break;
            }
        }
    }
    spec.strings("subjectAltNames", se.subject_alt_names);
    check_export_to(spec, se.meta.ns, se.export_to, true);
}

// --- shared with security.cc -----------------------------------------------------------------

void check_export_to(Obj& spec, const std::string& ns, std::vector<std::string>& out,
                     bool service_entry) {
    Reporter& r = spec.reporter();
    auto v = spec.get("exportTo");
    if (!v) return;
    spec.strings("exportTo", out);
    std::set<std::string> seen;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const std::string& e = out[i];
        YAML::Mark at = mark_of(item(v->node, i));
        std::string path = at_index(v->path, i);
        std::string key = e == "." ? ns : e;
        if (seen.count(key)) {
            r.error(at, path,
                    key != e ? "duplicate entries in exportTo: . and current namespace " + ns
                             : "duplicate entries in exportTo for entry " + e);
            continue;
        }
        if (e == "~" && service_entry) {
            seen.insert(key);
            continue;
        }
        if (e != "*" && e != "." && !is_dns1123_label(e)) {
            r.error(at, path, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry");
            continue;
        }
        seen.insert(key);
    }
    if (seen.count("*") && out.size() > 1) {
        r.error(v->mark(), v->path,
                "cannot have both public (*) and non-public exportTo values for a resource");
    }
    if (seen.count("~") && out.size() > 1) {
        r.error(v->mark(), v->path, "cannot export service entry to no one (~) and someone");
    }
}

void read_labels(Obj& o, const std::string& key, Labels& out) {
    if (auto v = o.get(key)) {
        o.string_map(key, out);
        check_labels(o.reporter(), *v, out);
    }
}

void check_labels(Reporter& r, const Value& where, const Labels& labels) {
    for (const auto& [k, v] : labels) {
        if (auto p = label_problem(k, v); !p.empty()) {
            yaml::Node value = field(where.node, k);
            r.error(value.IsDefined() ? value.Mark() : where.mark(), join(where.path, k), p);
        }
    }
}

void parse_selector(Obj& parent, const std::string& key, std::optional<Labels>& out) {
    Reporter& r = parent.reporter();
    parent.object(key, [&](Obj& s) {
        Labels l;
        if (auto ml = s.get("matchLabels")) {
            s.string_map("matchLabels", l);
            check_labels(r, *ml, l);
            for (const auto& [k, v] : l) {
                if (k.find('*') != std::string::npos || v.find('*') != std::string::npos) {
                    r.error(ml->mark(), join(ml->path, k),
                            "wildcard is not supported in selector: \"" + k + "=" + v + "\"");
                }
            }
        }
        if (l.empty()) r.warning(s.mark(), s.path(), "workload selector specified without labels");
        out = l;
    });
}

}  // namespace remora::control::model::detail
