// Snapshot <-> JSON, written by hand so that every field has one obvious name and a malformed
// document is refused with the path of the field that is wrong.
#include "proxy/snapshot/snapshot_json.h"

#include <boost/json.hpp>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace remora::proxy::snapshot {

namespace json = boost::json;

namespace {

// ---- writing --------------------------------------------------------------------------------

json::value labels_json(const Labels& labels) {
    json::object o;
    for (const auto& [k, v] : labels) o[k] = v;
    return o;
}

json::value strings_json(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) a.emplace_back(s);
    return a;
}

json::value pairs_json(const std::vector<std::pair<std::string, std::string>>& v) {
    json::array a;
    for (const auto& [k, val] : v) a.push_back(json::array{json::value(k), json::value(val)});
    return a;
}

json::value matcher_json(const StringMatcher& m) {
    const char* kind = m.kind == StringMatcher::Kind::exact    ? "exact"
                       : m.kind == StringMatcher::Kind::prefix ? "prefix"
                                                               : "regex";
    return json::object{{"kind", kind}, {"value", m.value}, {"ignore_case", m.ignore_case}};
}

json::value named_matchers_json(const std::vector<std::pair<std::string, StringMatcher>>& v) {
    json::array a;
    for (const auto& [name, m] : v) a.push_back(json::object{{"name", name}, {"match", matcher_json(m)}});
    return a;
}

json::value header_ops_json(const HeaderOps& h) {
    return json::object{{"set", pairs_json(h.set)}, {"add", pairs_json(h.add)}, {"remove", strings_json(h.remove)}};
}

json::value endpoint_json(const Endpoint& e) {
    return json::object{{"address", e.address}, {"port", e.port},   {"labels", labels_json(e.labels)},
                        {"identity", e.identity}, {"mtls", e.mtls}, {"weight", e.weight}};
}

// `with_endpoints` false: every field but "endpoints" (the last), for to_json_text.
json::value cluster_json(const Cluster& c, bool with_endpoints = true) {
    json::object o;
    o["name"] = c.name;
    o["service_host"] = c.service_host;
    o["port"] = c.port;
    o["subset"] = c.subset;
    o["destination_rule"] = c.destination_rule;
    const LoadBalancer& lb = c.load_balancer;
    o["load_balancer"] = json::object{{"simple", lb.simple},
                                      {"hash_header", lb.hash_header},
                                      {"hash_cookie", lb.hash_cookie},
                                      {"hash_query_parameter", lb.hash_query_parameter},
                                      {"hash_source_ip", lb.hash_source_ip}};
    const ConnectionLimits& l = c.limits;
    json::object limits{{"max_connections", l.max_connections},
                        {"connect_timeout_ms", l.connect_timeout.count()},
                        {"http1_max_pending_requests", l.http1_max_pending_requests},
                        {"http2_max_requests", l.http2_max_requests},
                        {"max_requests_per_connection", l.max_requests_per_connection},
                        {"max_retries", l.max_retries}};
    if (l.retry_budget_percent) {
        limits["retry_budget_percent"] = *l.retry_budget_percent;
        limits["retry_budget_min_concurrency"] = l.retry_budget_min_concurrency;
    }
    if (l.idle_timeout) limits["idle_timeout_ms"] = l.idle_timeout->count();
    if (l.tcp_idle_timeout) limits["tcp_idle_timeout_ms"] = l.tcp_idle_timeout->count();
    if (!l.h2_upgrade_policy.empty()) limits["h2_upgrade_policy"] = l.h2_upgrade_policy;
    if (l.use_client_protocol) limits["use_client_protocol"] = true;
    o["limits"] = std::move(limits);
    if (const auto& od = c.outlier_detection) {
        o["outlier_detection"] = json::object{{"consecutive_5xx_errors", od->consecutive_5xx_errors},
                                              {"consecutive_gateway_errors", od->consecutive_gateway_errors},
                                              {"interval_ms", od->interval.count()},
                                              {"base_ejection_time_ms", od->base_ejection_time.count()},
                                              {"max_ejection_percent", od->max_ejection_percent},
                                              {"min_health_percent", od->min_health_percent}};
    }
    o["tls_mode"] = c.tls_mode;
    if (!with_endpoints) return o;
    json::array eps;
    for (const auto& e : c.endpoints) eps.push_back(endpoint_json(e));
    o["endpoints"] = std::move(eps);
    return o;
}

json::value match_json(const RouteMatch& m) {
    json::object o;
    auto opt = [&](const char* name, const std::optional<StringMatcher>& v) {
        if (v) o[name] = matcher_json(*v);
    };
    opt("uri", m.uri);
    opt("scheme", m.scheme);
    opt("method", m.method);
    opt("authority", m.authority);
    o["headers"] = named_matchers_json(m.headers);
    o["query_params"] = named_matchers_json(m.query_params);
    o["without_headers"] = named_matchers_json(m.without_headers);
    o["port"] = m.port;
    o["source_labels"] = labels_json(m.source_labels);
    o["source_namespace"] = m.source_namespace;
    return o;
}

json::array weighted_clusters_json(const std::vector<WeightedCluster>& in) {
    json::array clusters;
    for (const auto& wc : in) {
        clusters.push_back(json::object{{"cluster", wc.cluster},
                                        {"weight", wc.weight},
                                        {"request_headers", header_ops_json(wc.request)},
                                        {"response_headers", header_ops_json(wc.response)}});
    }
    return clusters;
}

json::value route_json(const Route& r) {
    json::object o;
    o["name"] = r.name;
    o["virtual_service"] = r.virtual_service;
    json::array matches;
    for (const auto& m : r.matches) matches.push_back(match_json(m));
    o["matches"] = std::move(matches);
    o["clusters"] = weighted_clusters_json(r.clusters);
    if (r.direct_response) {
        o["direct_response"] = json::object{{"status", r.direct_response->first}, {"body", r.direct_response->second}};
    }
    if (r.redirect) {
        o["redirect"] = json::object{{"uri", r.redirect_uri},       {"authority", r.redirect_authority},
                                     {"scheme", r.redirect_scheme}, {"port", r.redirect_port},
                                     {"code", r.redirect_code}};
    }
    o["rewrite_uri"] = r.rewrite_uri;
    o["rewrite_authority"] = r.rewrite_authority;
    if (r.timeout) o["timeout_ms"] = r.timeout->count();
    json::object retries{{"attempts", r.retries.attempts}, {"retry_on", r.retries.retry_on}};
    if (r.retries.per_try_timeout) retries["per_try_timeout_ms"] = r.retries.per_try_timeout->count();
    json::array codes;
    for (uint32_t c : r.retries.retriable_status_codes) codes.emplace_back(c);
    retries["retriable_status_codes"] = std::move(codes);
    o["retries"] = std::move(retries);
    if (r.fault) {
        json::object f{{"delay_percent", r.fault->delay_percent}, {"abort_percent", r.fault->abort_percent}};
        if (r.fault->delay) f["delay_ms"] = r.fault->delay->count();
        if (r.fault->abort_status) f["abort_status"] = *r.fault->abort_status;
        if (r.fault->abort_grpc_status) f["abort_grpc_status"] = *r.fault->abort_grpc_status;
        o["fault"] = std::move(f);
    }
    json::array mirrors;
    for (const auto& m : r.mirrors) mirrors.push_back(json::object{{"cluster", m.cluster}, {"percent", m.percent}});
    o["mirrors"] = std::move(mirrors);
    o["request_headers"] = header_ops_json(r.request_headers);
    o["response_headers"] = header_ops_json(r.response_headers);
    return o;
}

// ---- reading --------------------------------------------------------------------------------

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw SnapshotFormatError(path + ": " + what);
}

const json::object& as_object(const json::value& v, const std::string& path) {
    if (!v.is_object()) fail(path, "expected an object");
    return v.get_object();
}

const json::array& as_array(const json::value& v, const std::string& path) {
    if (!v.is_array()) fail(path, "expected an array");
    return v.get_array();
}

// A field reader for one object: each read checks the type and names the path when it is wrong.
class Fields {
  public:
    Fields(const json::value& v, std::string path) : obj_(as_object(v, path)), path_(std::move(path)) {}

    const json::value* find(const char* name) const { return obj_.if_contains(name); }
    std::string at(const char* name) const { return path_ + "." + name; }

    void read(const char* name, std::string& out) const {
        if (const json::value* v = find(name)) {
            if (!v->is_string()) fail(at(name), "expected a string");
            out = std::string(v->get_string());
        }
    }
    void read(const char* name, bool& out) const {
        if (const json::value* v = find(name)) {
            if (!v->is_bool()) fail(at(name), "expected true or false");
            out = v->get_bool();
        }
    }
    void read(const char* name, uint32_t& out) const {
        if (const json::value* v = find(name)) out = to_u32(*v, at(name));
    }
    void read(const char* name, double& out) const {
        if (const json::value* v = find(name)) {
            if (v->is_double()) out = v->get_double();
            else if (v->is_int64()) out = static_cast<double>(v->get_int64());
            else if (v->is_uint64()) out = static_cast<double>(v->get_uint64());
            else fail(at(name), "expected a number");
        }
    }
    void read(const char* name, Millis& out) const {
        if (const json::value* v = find(name)) out = Millis(to_u32(*v, at(name)));
    }
    void read(const char* name, std::optional<Millis>& out) const {
        if (const json::value* v = find(name)) out = Millis(to_u32(*v, at(name)));
    }
    void read(const char* name, Labels& out) const {
        if (const json::value* v = find(name)) {
            for (const auto& kv : as_object(*v, at(name))) {
                if (!kv.value().is_string()) fail(at(name) + "." + std::string(kv.key()), "expected a string");
                out[std::string(kv.key())] = std::string(kv.value().get_string());
            }
        }
    }
    void read(const char* name, std::vector<std::string>& out) const {
        if (const json::value* v = find(name)) {
            const auto& a = as_array(*v, at(name));
            for (size_t i = 0; i < a.size(); ++i) {
                if (!a[i].is_string()) fail(at(name) + "[" + std::to_string(i) + "]", "expected a string");
                out.emplace_back(a[i].get_string());
            }
        }
    }
    void read(const char* name, std::vector<std::pair<std::string, std::string>>& out) const {
        if (const json::value* v = find(name)) {
            const auto& a = as_array(*v, at(name));
            for (size_t i = 0; i < a.size(); ++i) {
                const json::array* p = a[i].if_array();
                if (!p || p->size() != 2 || !(*p)[0].is_string() || !(*p)[1].is_string()) {
                    fail(at(name) + "[" + std::to_string(i) + "]", "expected [name, value]");
                }
                out.emplace_back(std::string((*p)[0].get_string()), std::string((*p)[1].get_string()));
            }
        }
    }
    void read(const char* name, std::vector<uint32_t>& out) const {
        if (const json::value* v = find(name)) {
            const auto& a = as_array(*v, at(name));
            for (size_t i = 0; i < a.size(); ++i) out.push_back(to_u32(a[i], at(name) + "[" + std::to_string(i) + "]"));
        }
    }
    // Each element of the array `name`, with its path.
    template <class Fn>
    void each(const char* name, Fn fn) const {
        if (const json::value* v = find(name)) {
            const auto& a = as_array(*v, at(name));
            for (size_t i = 0; i < a.size(); ++i) fn(a[i], at(name) + "[" + std::to_string(i) + "]");
        }
    }

    static uint32_t to_u32(const json::value& v, const std::string& path) {
        if (v.is_uint64() && v.get_uint64() <= 0xffffffffu) return static_cast<uint32_t>(v.get_uint64());
        if (v.is_int64() && v.get_int64() >= 0 && v.get_int64() <= 0xffffffffLL) {
            return static_cast<uint32_t>(v.get_int64());
        }
        fail(path, "expected an unsigned 32-bit integer");
    }

  private:
    const json::object& obj_;
    std::string path_;
};

StringMatcher read_matcher(const json::value& v, const std::string& path) {
    Fields f(v, path);
    StringMatcher m;
    std::string kind = "exact";
    f.read("kind", kind);
    if (kind == "exact") m.kind = StringMatcher::Kind::exact;
    else if (kind == "prefix") m.kind = StringMatcher::Kind::prefix;
    else if (kind == "regex") m.kind = StringMatcher::Kind::regex;
    else fail(f.at("kind"), "\"" + kind + "\" is not exact, prefix or regex");
    f.read("value", m.value);
    f.read("ignore_case", m.ignore_case);
    return m;
}

void read_named_matchers(const Fields& f, const char* name,
                         std::vector<std::pair<std::string, StringMatcher>>& out) {
    f.each(name, [&](const json::value& v, const std::string& path) {
        Fields e(v, path);
        std::string n;
        e.read("name", n);
        const json::value* m = e.find("match");
        if (!m) fail(path, "missing match");
        out.emplace_back(n, read_matcher(*m, e.at("match")));
    });
}

HeaderOps read_header_ops(const Fields& f, const char* name) {
    HeaderOps h;
    if (const json::value* v = f.find(name)) {
        Fields o(*v, f.at(name));
        o.read("set", h.set);
        o.read("add", h.add);
        o.read("remove", h.remove);
    }
    return h;
}

Cluster read_cluster(const json::value& v, const std::string& path) {
    Fields f(v, path);
    Cluster c;
    f.read("name", c.name);
    f.read("service_host", c.service_host);
    f.read("port", c.port);
    f.read("subset", c.subset);
    f.read("destination_rule", c.destination_rule);
    if (const json::value* lbv = f.find("load_balancer")) {
        Fields lb(*lbv, f.at("load_balancer"));
        lb.read("simple", c.load_balancer.simple);
        lb.read("hash_header", c.load_balancer.hash_header);
        lb.read("hash_cookie", c.load_balancer.hash_cookie);
        lb.read("hash_query_parameter", c.load_balancer.hash_query_parameter);
        lb.read("hash_source_ip", c.load_balancer.hash_source_ip);
    }
    if (const json::value* lv = f.find("limits")) {
        Fields l(*lv, f.at("limits"));
        l.read("max_connections", c.limits.max_connections);
        l.read("connect_timeout_ms", c.limits.connect_timeout);
        l.read("http1_max_pending_requests", c.limits.http1_max_pending_requests);
        l.read("http2_max_requests", c.limits.http2_max_requests);
        l.read("max_requests_per_connection", c.limits.max_requests_per_connection);
        l.read("max_retries", c.limits.max_retries);
        if (l.find("retry_budget_percent")) {
            double percent = 0;
            l.read("retry_budget_percent", percent);
            c.limits.retry_budget_percent = percent;
            l.read("retry_budget_min_concurrency", c.limits.retry_budget_min_concurrency);
        }
        l.read("idle_timeout_ms", c.limits.idle_timeout);
        l.read("tcp_idle_timeout_ms", c.limits.tcp_idle_timeout);
        l.read("h2_upgrade_policy", c.limits.h2_upgrade_policy);
        l.read("use_client_protocol", c.limits.use_client_protocol);
    }
    if (const json::value* ov = f.find("outlier_detection")) {
        Fields o(*ov, f.at("outlier_detection"));
        OutlierDetection od;
        o.read("consecutive_5xx_errors", od.consecutive_5xx_errors);
        o.read("consecutive_gateway_errors", od.consecutive_gateway_errors);
        o.read("interval_ms", od.interval);
        o.read("base_ejection_time_ms", od.base_ejection_time);
        o.read("max_ejection_percent", od.max_ejection_percent);
        o.read("min_health_percent", od.min_health_percent);
        c.outlier_detection = od;
    }
    f.read("tls_mode", c.tls_mode);
    f.each("endpoints", [&](const json::value& ev, const std::string& ep) {
        Fields e(ev, ep);
        Endpoint x;
        e.read("address", x.address);
        e.read("port", x.port);
        e.read("labels", x.labels);
        e.read("identity", x.identity);
        e.read("mtls", x.mtls);
        e.read("weight", x.weight);
        c.endpoints.push_back(std::move(x));
    });
    return c;
}

RouteMatch read_match(const json::value& v, const std::string& path) {
    Fields f(v, path);
    RouteMatch m;
    auto opt = [&](const char* name, std::optional<StringMatcher>& out) {
        if (const json::value* x = f.find(name)) out = read_matcher(*x, f.at(name));
    };
    opt("uri", m.uri);
    opt("scheme", m.scheme);
    opt("method", m.method);
    opt("authority", m.authority);
    read_named_matchers(f, "headers", m.headers);
    read_named_matchers(f, "query_params", m.query_params);
    read_named_matchers(f, "without_headers", m.without_headers);
    f.read("port", m.port);
    f.read("source_labels", m.source_labels);
    f.read("source_namespace", m.source_namespace);
    return m;
}

void read_weighted_clusters(Fields& f, const char* name, std::vector<WeightedCluster>& out) {
    f.each(name, [&](const json::value& cv, const std::string& p) {
        Fields c(cv, p);
        WeightedCluster wc;
        c.read("cluster", wc.cluster);
        c.read("weight", wc.weight);
        wc.request = read_header_ops(c, "request_headers");
        wc.response = read_header_ops(c, "response_headers");
        out.push_back(std::move(wc));
    });
}

Route read_route(const json::value& v, const std::string& path) {
    Fields f(v, path);
    Route r;
    f.read("name", r.name);
    f.read("virtual_service", r.virtual_service);
    f.each("matches", [&](const json::value& mv, const std::string& p) { r.matches.push_back(read_match(mv, p)); });
    read_weighted_clusters(f, "clusters", r.clusters);
    if (const json::value* d = f.find("direct_response")) {
        Fields dr(*d, f.at("direct_response"));
        std::pair<uint32_t, std::string> resp{200, ""};
        dr.read("status", resp.first);
        dr.read("body", resp.second);
        r.direct_response = std::move(resp);
    }
    if (const json::value* d = f.find("redirect")) {
        Fields rd(*d, f.at("redirect"));
        r.redirect = true;
        rd.read("uri", r.redirect_uri);
        rd.read("authority", r.redirect_authority);
        rd.read("scheme", r.redirect_scheme);
        rd.read("port", r.redirect_port);
        rd.read("code", r.redirect_code);
    }
    f.read("rewrite_uri", r.rewrite_uri);
    f.read("rewrite_authority", r.rewrite_authority);
    f.read("timeout_ms", r.timeout);
    if (const json::value* rv = f.find("retries")) {
        Fields rt(*rv, f.at("retries"));
        rt.read("attempts", r.retries.attempts);
        rt.read("retry_on", r.retries.retry_on);
        rt.read("per_try_timeout_ms", r.retries.per_try_timeout);
        if (rt.find("retriable_status_codes")) {
            r.retries.retriable_status_codes.clear();
            rt.each("retriable_status_codes", [&](const json::value& cv, const std::string& p) {
                r.retries.retriable_status_codes.push_back(Fields::to_u32(cv, p));
            });
        }
    }
    if (const json::value* fv = f.find("fault")) {
        Fields ft(*fv, f.at("fault"));
        Fault fault;
        ft.read("delay_ms", fault.delay);
        ft.read("delay_percent", fault.delay_percent);
        if (ft.find("abort_status")) {
            uint32_t s = 0;
            ft.read("abort_status", s);
            fault.abort_status = s;
        }
        if (ft.find("abort_grpc_status")) {
            uint32_t s = 0;
            ft.read("abort_grpc_status", s);
            fault.abort_grpc_status = s;
        }
        ft.read("abort_percent", fault.abort_percent);
        r.fault = fault;
    }
    f.each("mirrors", [&](const json::value& mv, const std::string& p) {
        Fields m(mv, p);
        Mirror mirror;
        m.read("cluster", mirror.cluster);
        m.read("percent", mirror.percent);
        r.mirrors.push_back(std::move(mirror));
    });
    r.request_headers = read_header_ops(f, "request_headers");
    r.response_headers = read_header_ops(f, "response_headers");
    return r;
}

json::value ports_json(const std::vector<uint32_t>& v) {
    json::array a;
    for (uint32_t p : v) a.emplace_back(p);
    return a;
}

json::value authz_policy_json(const AuthzPolicy& p) {
    json::array rules;
    for (const AuthzRule& r : p.rules) {
        json::array from, to, when;
        for (const AuthzSource& s : r.from) {
            from.push_back(json::object{
                {"principals", strings_json(s.principals)}, {"not_principals", strings_json(s.not_principals)},
                {"request_principals", strings_json(s.request_principals)},
                {"not_request_principals", strings_json(s.not_request_principals)},
                {"namespaces", strings_json(s.namespaces)}, {"not_namespaces", strings_json(s.not_namespaces)},
                {"trust_domains", strings_json(s.trust_domains)},
                {"not_trust_domains", strings_json(s.not_trust_domains)},
                {"ip_blocks", strings_json(s.ip_blocks)}, {"not_ip_blocks", strings_json(s.not_ip_blocks)},
                {"remote_ip_blocks", strings_json(s.remote_ip_blocks)},
                {"not_remote_ip_blocks", strings_json(s.not_remote_ip_blocks)}});
        }
        for (const AuthzOperation& o : r.to) {
            to.push_back(json::object{
                {"hosts", strings_json(o.hosts)}, {"not_hosts", strings_json(o.not_hosts)},
                {"ports", ports_json(o.ports)}, {"not_ports", ports_json(o.not_ports)},
                {"methods", strings_json(o.methods)}, {"not_methods", strings_json(o.not_methods)},
                {"paths", strings_json(o.paths)}, {"not_paths", strings_json(o.not_paths)}});
        }
        for (const AuthzCondition& c : r.when) {
            when.push_back(json::object{{"key", c.key}, {"values", strings_json(c.values)},
                                        {"not_values", strings_json(c.not_values)}});
        }
        rules.push_back(json::object{{"from", std::move(from)}, {"to", std::move(to)}, {"when", std::move(when)}});
    }
    return json::object{{"name", p.name}, {"action", p.action}, {"rules", std::move(rules)}};
}

AuthzPolicy read_authz_policy(const json::value& v, const std::string& path) {
    Fields f(v, path);
    AuthzPolicy p;
    f.read("name", p.name);
    f.read("action", p.action);
    if (p.action != "ALLOW" && p.action != "DENY" && p.action != "AUDIT") {
        fail(f.at("action"), "\"" + p.action + "\" is not ALLOW, DENY or AUDIT");
    }
    f.each("rules", [&](const json::value& rv, const std::string& rp) {
        Fields rf(rv, rp);
        AuthzRule r;
        rf.each("from", [&](const json::value& sv, const std::string& sp) {
            Fields sf(sv, sp);
            AuthzSource s;
            sf.read("principals", s.principals);
            sf.read("not_principals", s.not_principals);
            sf.read("request_principals", s.request_principals);
            sf.read("not_request_principals", s.not_request_principals);
            sf.read("namespaces", s.namespaces);
            sf.read("not_namespaces", s.not_namespaces);
            sf.read("trust_domains", s.trust_domains);
            sf.read("not_trust_domains", s.not_trust_domains);
            sf.read("ip_blocks", s.ip_blocks);
            sf.read("not_ip_blocks", s.not_ip_blocks);
            sf.read("remote_ip_blocks", s.remote_ip_blocks);
            sf.read("not_remote_ip_blocks", s.not_remote_ip_blocks);
            r.from.push_back(std::move(s));
        });
        rf.each("to", [&](const json::value& ov, const std::string& op) {
            Fields of(ov, op);
            AuthzOperation o;
            of.read("hosts", o.hosts);
            of.read("not_hosts", o.not_hosts);
            of.read("ports", o.ports);
            of.read("not_ports", o.not_ports);
            of.read("methods", o.methods);
            of.read("not_methods", o.not_methods);
            of.read("paths", o.paths);
            of.read("not_paths", o.not_paths);
            r.to.push_back(std::move(o));
        });
        rf.each("when", [&](const json::value& cv, const std::string& cp) {
            Fields cf(cv, cp);
            AuthzCondition c;
            cf.read("key", c.key);
            cf.read("values", c.values);
            cf.read("not_values", c.not_values);
            r.when.push_back(std::move(c));
        });
        p.rules.push_back(std::move(r));
    });
    return p;
}

}  // namespace

namespace {

json::value virtual_host_json(const VirtualHost& vh) {
    json::array routes;
    for (const auto& r : vh.routes) routes.push_back(route_json(r));
    json::array tls_routes;
    for (const auto& t : vh.tls_routes) {
        tls_routes.push_back(json::object{{"sni_hosts", strings_json(t.sni_hosts)},
                                          {"clusters", weighted_clusters_json(t.clusters)}});
    }
    return json::object{{"name", vh.name},
                        {"domains", strings_json(vh.domains)},
                        {"routes", std::move(routes)},
                        {"protocol", vh.protocol},
                        {"tcp_clusters", weighted_clusters_json(vh.tcp_clusters)},
                        {"tcp_virtual_service", vh.tcp_virtual_service},
                        {"tls_routes", std::move(tls_routes)},
                        {"tls_virtual_service", vh.tls_virtual_service}};
}

json::value inbound_json(const InboundPolicy& in) {
    json::object port_mtls;
    for (const auto& [port, mode] : in.port_mtls) port_mtls[std::to_string(port)] = mode;
    json::array authz;
    for (const auto& p : in.authz) authz.push_back(authz_policy_json(p));
    return json::object{{"mtls_mode", in.mtls_mode}, {"port_mtls", std::move(port_mtls)},
                        {"peer_authentications", strings_json(in.peer_authentications)},
                        {"authz", std::move(authz)}};
}

}  // namespace

json::value to_json(const Snapshot& snap) {
    json::object o;
    o["workload_namespace"] = snap.workload_namespace;
    o["workload_labels"] = labels_json(snap.workload_labels);
    json::array clusters;
    for (const auto& c : snap.clusters) clusters.push_back(cluster_json(c));
    o["clusters"] = std::move(clusters);
    json::array vhs;
    for (const auto& vh : snap.virtual_hosts) vhs.push_back(virtual_host_json(vh));
    o["virtual_hosts"] = std::move(vhs);
    o["inbound"] = inbound_json(snap.inbound);
    if (!snap.outbound_traffic_policy.empty()) o["outbound_traffic_policy"] = snap.outbound_traffic_policy;
    o["notes"] = strings_json(snap.notes);
    return o;
}

namespace {

// A JSON string as boost::json serializes it. Most strings (addresses, label values, SPIFFE IDs)
// need no escape and are copied; any other goes through the serializer.
void append_json_string(std::string& out, std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == '"' || c == '\\') {
            out += json::serialize(json::string_view(s.data(), s.size()));
            return;
        }
    }
    out += '"';
    out += s;
    out += '"';
}

// endpoint_json(e), serialized, without building the tree: a cluster's endpoints are most of a
// large snapshot (thousands per cluster at 10,000 services).
void append_endpoint(std::string& out, const Endpoint& e) {
    out += "{\"address\":";
    append_json_string(out, e.address);
    out += ",\"port\":";
    out += std::to_string(e.port);
    out += ",\"labels\":{";
    bool first = true;
    for (const auto& [k, v] : e.labels) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, k);
        out += ':';
        append_json_string(out, v);
    }
    out += "},\"identity\":";
    append_json_string(out, e.identity);
    out += e.mtls ? ",\"mtls\":true" : ",\"mtls\":false";
    out += ",\"weight\":";
    out += std::to_string(e.weight);
    out += '}';
}

}  // namespace

namespace {

// Serializes small trees (each freed at once) onto the end of a text.
class TreeWriter {
  public:
    explicit TreeWriter(std::string& out) : out_(out) {}
    void operator()(const json::value& v) {
        sr_.reset(&v);
        char buf[16384];
        while (!sr_.done()) out_.append(sr_.read(buf));
    }

  private:
    std::string& out_;
    json::serializer sr_;
};

void append_cluster(std::string& out, TreeWriter& append, const Cluster& c) {
    append(cluster_json(c, false));
    out.pop_back();  // the object's '}': "endpoints" follows as its last field
    out += ",\"endpoints\":[";
    bool first = true;
    for (const Endpoint& e : c.endpoints) {
        if (!first) out += ',';
        first = false;
        append_endpoint(out, e);
    }
    out += "]}";
}

std::size_t estimate_size(const Cluster& c) {
    std::size_t n = 768 + c.name.size() + c.service_host.size();
    for (const Endpoint& e : c.endpoints) {
        n += 96 + e.address.size() + e.identity.size();
        for (const auto& [k, v] : e.labels) n += 6 + k.size() + v.size();
    }
    return n;
}

// The fields in to_json's order; each element's small tree is serialized and freed at once,
// and a cluster's endpoints (its last field) are written straight. The clusters are `texts`
// when given, else snap.clusters.
std::string snapshot_text(const Snapshot& snap, const std::span<const std::string_view>* texts) {
    std::string out;
    // Sized first: at 10,000 services the text is megabytes, and growing it by doubling copied
    // it and touched fresh pages again at each step.
    std::size_t estimate = 4096 + snap.virtual_hosts.size() * 2048;
    if (texts) {
        for (std::string_view t : *texts) estimate += t.size() + 1;
    } else {
        for (const Cluster& c : snap.clusters) estimate += estimate_size(c);
    }
    out.reserve(estimate);
    TreeWriter append(out);
    out += "{\"workload_namespace\":";
    append(json::value(snap.workload_namespace));
    out += ",\"workload_labels\":";
    append(labels_json(snap.workload_labels));
    out += ",\"clusters\":[";
    const std::size_t clusters = texts ? texts->size() : snap.clusters.size();
    for (std::size_t i = 0; i < clusters; ++i) {
        if (i) out += ',';
        if (texts) {
            out += (*texts)[i];
        } else {
            append_cluster(out, append, snap.clusters[i]);
        }
    }
    out += "],\"virtual_hosts\":[";
    for (std::size_t i = 0; i < snap.virtual_hosts.size(); ++i) {
        if (i) out += ',';
        append(virtual_host_json(snap.virtual_hosts[i]));
    }
    out += "],\"inbound\":";
    append(inbound_json(snap.inbound));
    if (!snap.outbound_traffic_policy.empty()) {
        out += ",\"outbound_traffic_policy\":";
        append(json::value(snap.outbound_traffic_policy));
    }
    out += ",\"notes\":";
    append(strings_json(snap.notes));
    out += '}';
    if (out.capacity() > out.size() + out.size() / 4) out.shrink_to_fit();  // it is kept, per class
    return out;
}

}  // namespace

std::string to_json_text(const Snapshot& snap) {
    return snapshot_text(snap, nullptr);
}

std::string to_json_text(const Snapshot& snap, std::span<const std::string_view> clusters) {
    return snapshot_text(snap, &clusters);
}

std::string cluster_json_text(const Cluster& cluster) {
    std::string out;
    out.reserve(estimate_size(cluster));
    TreeWriter append(out);
    append_cluster(out, append, cluster);
    if (out.capacity() > out.size() + out.size() / 4) out.shrink_to_fit();
    return out;
}

Snapshot from_json(const json::value& doc) {
    Fields f(doc, "snapshot");
    Snapshot s;
    f.read("workload_namespace", s.workload_namespace);
    f.read("workload_labels", s.workload_labels);
    f.each("clusters", [&](const json::value& v, const std::string& p) { s.clusters.push_back(read_cluster(v, p)); });
    f.each("virtual_hosts", [&](const json::value& v, const std::string& p) {
        Fields vf(v, p);
        VirtualHost vh;
        vf.read("name", vh.name);
        vf.read("domains", vh.domains);
        vf.each("routes", [&](const json::value& rv, const std::string& rp) { vh.routes.push_back(read_route(rv, rp)); });
        vf.read("protocol", vh.protocol);
        read_weighted_clusters(vf, "tcp_clusters", vh.tcp_clusters);
        vf.read("tcp_virtual_service", vh.tcp_virtual_service);
        vf.each("tls_routes", [&](const json::value& tv, const std::string& tp) {
            Fields tf(tv, tp);
            TlsRoute t;
            tf.read("sni_hosts", t.sni_hosts);
            read_weighted_clusters(tf, "clusters", t.clusters);
            vh.tls_routes.push_back(std::move(t));
        });
        vf.read("tls_virtual_service", vh.tls_virtual_service);
        s.virtual_hosts.push_back(std::move(vh));
    });
    if (const json::value* iv = f.find("inbound")) {
        Fields in(*iv, f.at("inbound"));
        in.read("mtls_mode", s.inbound.mtls_mode);
        in.read("peer_authentications", s.inbound.peer_authentications);
        in.each("authz", [&](const json::value& v, const std::string& p) {
            s.inbound.authz.push_back(read_authz_policy(v, p));
        });
        if (const json::value* pm = in.find("port_mtls")) {
            for (const auto& kv : as_object(*pm, in.at("port_mtls"))) {
                std::string key(kv.key());
                std::string where = in.at("port_mtls") + "." + key;
                uint32_t port = 0;
                try {
                    size_t used = 0;
                    unsigned long n = std::stoul(key, &used);
                    if (used != key.size() || n == 0 || n > 65535) throw std::out_of_range(key);
                    port = static_cast<uint32_t>(n);
                } catch (const std::logic_error&) {
                    fail(where, "expected a port number as the key");
                }
                if (!kv.value().is_string()) fail(where, "expected a string");
                s.inbound.port_mtls[port] = std::string(kv.value().get_string());
            }
        }
    }
    f.read("outbound_traffic_policy", s.outbound_traffic_policy);
    if (!s.outbound_traffic_policy.empty() && s.outbound_traffic_policy != "REGISTRY_ONLY" &&
        s.outbound_traffic_policy != "ALLOW_ANY") {
        fail(f.at("outbound_traffic_policy"), "expected REGISTRY_ONLY or ALLOW_ANY");
    }
    f.read("notes", s.notes);
    return s;
}

std::string version_of(const Snapshot& snap) {
    return version_of_text(to_json_text(snap));
}

std::string version_of_text(std::string_view text) {
    // Eight bytes at a step (a byte-wise FNV-1a was 5% of a push at 10,000 services): each step
    // (xor, multiply by an odd constant, xor-shift) is a bijection of the state, so a text that
    // differs from another in one word always hashes differently. Words are read little-endian
    // so that every replica gives the same version whatever its machine.
    constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
    uint64_t h = 0xcbf29ce484222325ull ^ (text.size() * kMul);
    auto mix = [&](uint64_t w) {
        h ^= w;
        h *= kMul;
        h ^= h >> 29;
    };
    std::size_t i = 0;
    for (; i + 8 <= text.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, text.data() + i, 8);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        mix(w);
    }
    uint64_t tail = 0;
    for (std::size_t b = text.size(); b > i; --b) tail = (tail << 8) | static_cast<unsigned char>(text[b - 1]);
    mix(tail);
    h ^= h >> 32;  // the high bits' changes reach the low ones
    h *= kMul;
    h ^= h >> 29;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

}  // namespace remora::proxy::snapshot
