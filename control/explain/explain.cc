// One request explained: the route table's trace, weighted shares, endpoints, the server side's
// PeerAuthentication and AuthorizationPolicy (through proxy/authz's Engine), and the outcomes.
#include "control/explain/explain.h"

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "proxy/authz/authz.h"
#include "proxy/request/error.h"
#include "proxy/request/retry.h"
#include "proxy/routing/cluster_state.h"
#include "proxy/routing/route_table.h"

namespace remora::control::explain {

namespace json = boost::json;
using proxy::ProxyError;
using proxy::RouteTable;

namespace {

constexpr uint32_t kUnlimited = 4294967295u;

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return std::string(s);
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string ms_text(snap::Millis ms) {
    if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + "s";
    return std::to_string(ms.count()) + "ms";
}

std::string percent_text(double share) {
    char buf[32];
    double p = share * 100;
    if (p == static_cast<double>(static_cast<long long>(p))) {
        std::snprintf(buf, sizeof buf, "%lld%%", static_cast<long long>(p));
    } else {
        std::snprintf(buf, sizeof buf, "%.2f%%", p);
    }
    return buf;
}

// "name.namespace" (snapshot form) → "namespace/name" (kubectl's).
std::string ns_name(std::string_view dotted) {
    size_t dot = dotted.rfind('.');
    if (dot == std::string_view::npos) return std::string(dotted);
    return std::string(dotted.substr(dot + 1)) + "/" + std::string(dotted.substr(0, dot));
}

std::string matcher_text(const snap::StringMatcher& m) {
    std::string kind = m.kind == snap::StringMatcher::Kind::exact    ? "exact"
                       : m.kind == snap::StringMatcher::Kind::prefix ? "prefix"
                                                                     : "regex";
    return kind + " " + in_quotes(m.value) + (m.ignore_case ? " (any case)" : "");
}

std::string miss_text(const proxy::MatchMiss& m) {
    using F = proxy::MatchMiss::Field;
    std::string what;
    switch (m.field) {
        case F::uri: what = "uri"; break;
        case F::scheme: what = "scheme"; break;
        case F::method: what = "method"; break;
        case F::authority: what = "authority"; break;
        case F::header: what = "header " + std::string(m.name); break;
        case F::without_header: what = "withoutHeaders " + std::string(m.name); break;
        case F::query_param: what = "queryParams " + std::string(m.name); break;
    }
    const std::string want = m.want ? matcher_text(*m.want) : "";
    if (m.field == F::without_header) return what + ": present as " + in_quotes(*m.got) + ", which the rule excludes (" + want + ")";
    if (!m.got) return what + ": absent (the rule wants " + want + ")";
    return what + ": " + in_quotes(*m.got) + " is not " + want;
}

json::array header_ops_json(const snap::HeaderOps& h) {
    json::array a;
    for (const auto& [k, v] : h.set) a.push_back(json::string("set " + k + ": " + v));
    for (const auto& [k, v] : h.add) a.push_back(json::string("add " + k + ": " + v));
    for (const auto& k : h.remove) a.push_back(json::string("remove " + k));
    return a;
}

// The request as the route table sees it.
struct View final : proxy::RequestView {
    const std::vector<std::pair<std::string, std::string>>& headers;
    std::string authority_text;
    View(const Request& r, const std::string& auth) : headers(r.headers), authority_text(auth) {
        method = r.method;
        path = r.path;
        authority = authority_text;
        scheme = r.scheme;
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        if (name == "host" || name == ":authority") return authority;
        for (const auto& [k, v] : headers) {
            if (k == name) return std::string_view(v);
        }
        return std::nullopt;
    }
};

// The request as the server's sidecar sees it: rewritten, with the route's header operations.
struct Forwarded final : proxy::authz::Request {
    std::vector<std::pair<std::string, std::string>> headers;
    std::string path_text, host_text, principal_text;
    std::optional<std::string_view> header(std::string_view name) const override {
        if (name == "host" || name == ":authority") return host;
        for (const auto& [k, v] : headers) {
            if (k == name) return std::string_view(v);
        }
        return std::nullopt;
    }
};

void apply_ops(std::vector<std::pair<std::string, std::string>>& h, const snap::HeaderOps& ops) {
    auto erase = [&](const std::string& name) {
        std::string n = lower(name);
        h.erase(std::remove_if(h.begin(), h.end(), [&](const auto& kv) { return kv.first == n; }), h.end());
    };
    for (const auto& name : ops.remove) erase(name);
    for (const auto& [k, v] : ops.set) {
        erase(k);
        h.emplace_back(lower(k), v);
    }
    for (const auto& [k, v] : ops.add) h.emplace_back(lower(k), v);
}

struct Outcome {
    double share = 0;
    uint32_t status = 0;  // 0 = reaches the app (its own status)
    std::string flag, reason, where;
    bool served = true;
};

json::object outcome_json(const Outcome& o) {
    return json::object{{"share", o.share},
                        {"served", o.served},
                        {"status", o.status},
                        {"flag", o.flag},
                        {"reason", o.reason},
                        {"where", o.where}};
}

std::string limit_text(uint32_t v) { return v == kUnlimited ? "unlimited" : std::to_string(v); }

json::object pool_json(const snap::Cluster& c) {
    const snap::ConnectionLimits& l = c.limits;
    json::object o{{"maxConnections", limit_text(l.max_connections)},
                   {"connectTimeout", ms_text(l.connect_timeout)},
                   {"http1MaxPendingRequests", limit_text(l.http1_max_pending_requests)},
                   {"http2MaxRequests", limit_text(l.http2_max_requests)},
                   {"maxRequestsPerConnection", l.max_requests_per_connection ? std::to_string(l.max_requests_per_connection) : "unlimited"},
                   {"maxRetries", limit_text(l.max_retries)}};
    if (l.idle_timeout) o["idleTimeout"] = ms_text(*l.idle_timeout);
    if (l.tcp_idle_timeout) o["tcpIdleTimeout"] = ms_text(*l.tcp_idle_timeout);
    if (!l.h2_upgrade_policy.empty()) o["h2UpgradePolicy"] = l.h2_upgrade_policy;
    if (l.retry_budget_percent) {
        o["retryBudget"] = json::object{{"percent", *l.retry_budget_percent},
                                        {"minRetryConcurrency", l.retry_budget_min_concurrency}};
    }
    return o;
}

json::object outlier_json(const snap::OutlierDetection& od) {
    return json::object{{"consecutive5xxErrors", od.consecutive_5xx_errors},
                        {"consecutiveGatewayErrors", od.consecutive_gateway_errors},
                        {"interval", ms_text(od.interval)},
                        {"baseEjectionTime", ms_text(od.base_ejection_time)},
                        {"maxEjectionPercent", od.max_ejection_percent},
                        {"minHealthPercent", od.min_health_percent}};
}

std::string lb_text(const snap::LoadBalancer& lb) {
    if (!lb.hash_header.empty()) return "consistentHash on header " + lb.hash_header;
    if (!lb.hash_cookie.empty()) return "consistentHash on cookie " + lb.hash_cookie;
    if (!lb.hash_query_parameter.empty()) return "consistentHash on query parameter " + lb.hash_query_parameter;
    if (lb.hash_source_ip) return "consistentHash on the source IP";
    return lb.simple;
}

json::object route_json(const snap::Route& r) {
    json::object o{{"name", r.name}, {"virtualService", r.virtual_service}};
    o["timeout"] = r.timeout ? ms_text(*r.timeout) : "none";
    json::object retries{{"attempts", r.retries.attempts}, {"retryOn", r.retries.retry_on}};
    retries["perTryTimeout"] = r.retries.per_try_timeout ? ms_text(*r.retries.per_try_timeout) : "none";
    json::array codes;
    for (uint32_t c : r.retries.retriable_status_codes) codes.push_back(c);
    retries["retriableStatusCodes"] = std::move(codes);
    // What bounds retries in flight per cluster (proxy/routing/cluster_state.h); each cluster's
    // connectionPool shows its maxRetries and retryBudget.
    retries["budget"] = "retries in flight to a cluster at most its connectionPool.http.maxRetries (Istio's default "
                        "unlimited), and within its DestinationRule's retryBudget when one is set";
    o["retries"] = std::move(retries);
    if (r.fault) {
        json::object f;
        if (r.fault->delay) f["delay"] = json::object{{"fixedDelay", ms_text(*r.fault->delay)}, {"percent", r.fault->delay_percent}};
        if (r.fault->abort_status) {
            json::object a{{"httpStatus", *r.fault->abort_status}, {"percent", r.fault->abort_percent}};
            if (r.fault->abort_grpc_status) a["grpcStatus"] = *r.fault->abort_grpc_status;
            f["abort"] = std::move(a);
        }
        o["fault"] = std::move(f);
    }
    json::array mirrors;
    for (const auto& m : r.mirrors) mirrors.push_back(json::object{{"cluster", m.cluster}, {"percent", m.percent}});
    o["mirrors"] = std::move(mirrors);
    o["requestHeaders"] = header_ops_json(r.request_headers);
    o["responseHeaders"] = header_ops_json(r.response_headers);
    if (!r.rewrite_uri.empty()) o["rewriteUri"] = r.rewrite_uri;
    if (!r.rewrite_authority.empty()) o["rewriteAuthority"] = r.rewrite_authority;
    if (r.direct_response) {
        o["directResponse"] = json::object{{"status", r.direct_response->first}, {"body", r.direct_response->second}};
    }
    return o;
}

// The protocol a port speaks, and why.
std::string protocol_text(const std::string& p) {
    if (p.empty()) return "undeclared: the proxy detects it from the first bytes (HTTP/1.1 for this request)";
    return p;
}

bool is_http(const std::string& protocol) {
    return protocol.empty() || protocol == "HTTP" || protocol == "HTTP2" || protocol == "GRPC" ||
           protocol == "GRPC-Web";
}

}  // namespace

std::string Request::authority() const {
    const bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
    return port_given && !default_port ? host + ":" + std::to_string(port) : host;
}

Request parse_request(const std::string& url, const std::string& method,
                      const std::vector<std::string>& headers) {
    Request r;
    r.method = method.empty() ? "GET" : method;
    std::string rest = url;
    size_t scheme_end = rest.find("://");
    if (scheme_end != std::string::npos) {
        r.scheme = lower(rest.substr(0, scheme_end));
        rest = rest.substr(scheme_end + 3);
    }
    if (r.scheme != "http" && r.scheme != "https") throw std::invalid_argument("URL " + url + ": use http:// (or https://)");
    if (r.scheme == "https") r.port = 443;
    size_t slash = rest.find_first_of("/?");
    std::string hostport = rest.substr(0, slash);
    r.path = slash == std::string::npos ? "/" : rest.substr(slash);
    if (!r.path.empty() && r.path[0] == '?') r.path = "/" + r.path;
    if (hostport.empty()) throw std::invalid_argument("URL " + url + ": no host");
    size_t colon = hostport.rfind(':');
    if (colon != std::string::npos && hostport.find(']') == std::string::npos) {
        std::string port = hostport.substr(colon + 1);
        if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
            std::stoul(port) == 0 || std::stoul(port) > 65535) {
            throw std::invalid_argument("URL " + url + ": bad port \"" + port + "\"");
        }
        r.port = static_cast<uint32_t>(std::stoul(port));
        r.port_given = true;
        hostport.resize(colon);
    }
    if (hostport.size() > 2 && hostport.front() == '[') hostport = hostport.substr(1, hostport.size() - 2);
    r.host = lower(hostport);
    for (const std::string& h : headers) {
        size_t c = h.find(':');
        if (c == std::string::npos || c == 0) throw std::invalid_argument("header \"" + h + "\": expected 'name: value'");
        std::string name = lower(trim(std::string_view(h).substr(0, c)));
        std::string value = trim(std::string_view(h).substr(c + 1));
        if (name == "host") {
            // A Host header overrides the URL's authority, as curl's -H does.
            size_t pc = value.rfind(':');
            if (pc != std::string::npos && value.find(']') == std::string::npos) {
                r.port = static_cast<uint32_t>(std::strtoul(value.c_str() + pc + 1, nullptr, 10));
                r.port_given = true;
                value.resize(pc);
            }
            r.host = lower(value);
            continue;
        }
        r.headers.emplace_back(name, value);
    }
    return r;
}

std::string Workload::spiffe_id(const std::string& trust_domain) const {
    return "spiffe://" + trust_domain + "/ns/" + ns + "/sa/" + service_account;
}

std::optional<Workload> find_workload(const model::Config& config, const std::string& name, const std::string& ns) {
    for (const auto& we : config.workload_entries) {
        if (!we.meta.valid || we.meta.name != name || (!ns.empty() && we.meta.ns != ns)) continue;
        return Workload{we.meta.name, we.meta.ns,
                        we.spec.service_account.empty() ? "default" : we.spec.service_account,
                        we.spec.address, we.spec.labels};
    }
    for (const auto& w : config.workloads) {
        if (w.name != name || (!ns.empty() && w.ns != ns)) continue;
        return Workload{w.name, w.ns, "default", "", w.labels};
    }
    return std::nullopt;
}

Inputs offline_inputs(std::shared_ptr<const model::Config> config, const Workload& client,
                      const translate::Options& options, const std::string& source) {
    Inputs in;
    in.client = client;
    in.trust_domain = options.trust_domain;
    in.snapshot = translate::translate(*config, {client.ns, client.service_account, client.labels}, options);
    in.source = source;
    in.server_for = [config, options](const snap::Cluster&, const snap::Endpoint& e) {
        Server s;
        for (const auto& we : config->workload_entries) {
            if (!we.meta.valid || we.spec.address != e.address) continue;
            s.known = true;
            s.workload = {we.meta.name, we.meta.ns,
                          we.spec.service_account.empty() ? "default" : we.spec.service_account,
                          we.spec.address, we.spec.labels};
            const std::string what = "WorkloadEntry " + we.meta.ns + "/" + we.meta.name;
            auto mode = we.spec.labels.find("security.istio.io/tlsMode");
            if (mode != we.spec.labels.end() && mode->second == "istio") {
                s.inbound = translate::translate(*config, {s.workload.ns, s.workload.service_account, s.workload.labels},
                                                 options).inbound;
                s.source = what + ", translated offline";
            } else {
                s.source = what + ", without a sidecar (no security.istio.io/tlsMode=istio label)";
            }
            break;
        }
        return s;
    };
    return in;
}

json::object explain(const Inputs& in, const Request& request) {
    RouteTable table(in.snapshot);
    json::object report;
    std::vector<Outcome> outcomes;
    json::array notes;

    const std::string authority = request.authority();
    json::object req{{"method", request.method},
                     {"url", request.scheme + "://" + authority + request.path},
                     {"authority", authority},
                     {"port", request.port}};
    json::array hs;
    for (const auto& [k, v] : request.headers) hs.push_back(json::string(k + ": " + v));
    req["headers"] = std::move(hs);
    json::object client{{"name", in.client.name},
                        {"namespace", in.client.ns},
                        {"serviceAccount", in.client.service_account},
                        {"identity", in.client.spiffe_id(in.trust_domain)},
                        {"ip", in.client.ip},
                        {"config", in.source}};

    // Host: by Host header (with and without the port), else by the address dialled.
    View view(request, authority);
    const snap::VirtualHost* vh = table.find_host(authority);
    std::string found_by = "Host header " + in_quotes(authority);
    if (!vh && request.port_given) {
        vh = table.find_host(request.host + ":" + std::to_string(request.port));
    }
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(request.host, ec);
    if (!vh && !ec) {
        vh = table.find_address({address, static_cast<unsigned short>(request.port)});
        found_by = "the address dialled, " + request.host + ":" + std::to_string(request.port);
    }
    json::object host;
    const snap::Route* route = nullptr;
    std::vector<const snap::WeightedCluster*> destinations;
    std::vector<snap::WeightedCluster> tcp_destinations;

    auto finish = [&](json::object& r) {
        // Sum outcomes by what the client gets.
        std::vector<Outcome> merged;
        for (const Outcome& o : outcomes) {
            auto it = std::find_if(merged.begin(), merged.end(), [&](const Outcome& m) {
                return m.status == o.status && m.flag == o.flag && m.reason == o.reason && m.where == o.where;
            });
            if (it == merged.end()) merged.push_back(o);
            else it->share += o.share;
        }
        std::stable_sort(merged.begin(), merged.end(), [](const Outcome& a, const Outcome& b) {
            if (a.served != b.served) return !a.served;  // refusals first: the reason leads
            return a.share > b.share;
        });
        double refused = 0;
        json::array list;
        for (const Outcome& o : merged) {
            if (!o.served) refused += o.share;
            list.push_back(outcome_json(o));
        }
        std::string summary;
        if (merged.empty()) {
            summary = "served";
        } else if (refused > 0) {
            const Outcome& first = merged.front();
            summary = (first.status ? std::to_string(first.status) + " " : "") + first.flag + " " + first.reason;
            if (refused < 0.999999) summary += " (" + percent_text(first.share) + " of requests; " + percent_text(1 - refused) + " served)";
        } else {
            if (merged.size() == 1) {
                summary = "served by " + merged.front().where;
            } else {
                summary = "served:";
                for (size_t i = 0; i < merged.size(); ++i) {
                    summary += (i ? ", " : " ") + percent_text(merged[i].share) + " by " + merged[i].where;
                }
            }
        }
        json::object out;
        out["verdict"] = json::object{{"served", refused == 0}, {"summary", summary}, {"outcomes", std::move(list)}};
        for (auto& kv : r) out[kv.key()] = std::move(kv.value());
        return out;
    };

    report["request"] = std::move(req);
    report["client"] = std::move(client);
    if (!vh) {
        host["virtualHost"] = nullptr;
        const std::string why = "is not a service this proxy knows (no virtual host for " + in_quotes(authority) + ")";
        // A Sidecar's outboundTrafficPolicy, carried in the client's snapshot, replaces the mesh's.
        const std::string& sidecar_mode = in.snapshot.outbound_traffic_policy;
        const bool registry_only = sidecar_mode.empty() ? in.registry_only : sidecar_mode == "REGISTRY_ONLY";
        const std::string whose = sidecar_mode.empty() ? "the mesh's" : "the Sidecar's";
        if (registry_only) {
            outcomes.push_back({1, 502, "", "BlackHoleCluster: " + request.host + " " + why + " and outboundTrafficPolicy is REGISTRY_ONLY (" + whose + ")", "", false});
        } else {
            outcomes.push_back({1, 0, "", "", "PassthroughCluster (" + request.host + " " + why + "; ALLOW_ANY (" + whose + ") sends it to the address dialled)", true});
        }
        report["host"] = std::move(host);
        for (const auto& n : in.snapshot.notes) notes.push_back(json::string(n));
        report["notes"] = std::move(notes);
        return finish(report);
    }
    host["virtualHost"] = vh->name;
    host["foundBy"] = found_by;
    host["protocol"] = vh->protocol;
    host["protocolText"] = protocol_text(vh->protocol);

    double fault_abort_share = 0;
    json::object routing;
    std::optional<json::object> route_obj;
    if (is_http(vh->protocol)) {
        std::vector<proxy::RouteTrace> trace = table.trace(*vh, view);
        json::array rules;
        for (const auto& t : trace) {
            json::array why;
            for (const auto& m : t.misses) why.push_back(json::string(miss_text(m)));
            json::object rule{{"name", t.route->name},
                              {"virtualService", t.route->virtual_service},
                              {"matched", t.matched},
                              {"whyNot", std::move(why)}};
            if (t.route->matches.empty()) rule["match"] = "everything (no match blocks)";
            rules.push_back(std::move(rule));
        }
        routing["rules"] = std::move(rules);
        route = table.match(*vh, view);
        routing["virtualService"] = route ? route->virtual_service : (vh->routes.empty() ? "" : vh->routes.front().virtual_service);
        if (!route) {
            outcomes.push_back({1, 404, "NR", "no rule of " + vh->name + " matches the request", "", false});
        } else {
            route_obj = route_json(*route);
            const snap::Fault* f = route->fault ? &*route->fault : nullptr;
            if (f && f->abort_status) {
                fault_abort_share = std::clamp(f->abort_percent / 100.0, 0.0, 1.0);
                // A gRPC abort answers HTTP 200 with an error grpc-status: refused all the same.
                const bool served_abort = *f->abort_status < 400 && !f->abort_grpc_status;
                outcomes.push_back({fault_abort_share, *f->abort_status, "FI",
                                    "fault injection: " + ns_name(route->virtual_service) + " rule " + route->name +
                                        " aborts" + (f->abort_grpc_status ? " with grpc-status " +
                                                                                std::to_string(*f->abort_grpc_status)
                                                                          : std::string()),
                                    "", served_abort});
            }
            if (route->direct_response) {
                outcomes.push_back({1 - fault_abort_share, route->direct_response->first, "",
                                    "directResponse of " + ns_name(route->virtual_service) + " rule " + route->name,
                                    "the client's sidecar", route->direct_response->first < 400});
            } else if (route->redirect) {
                outcomes.push_back({1 - fault_abort_share, route->redirect_code, "",
                                    "redirect to " + proxy::redirect_location(*route, authority, request.path), "the client's sidecar", true});
            } else if (route->clusters.empty()) {
                outcomes.push_back({1 - fault_abort_share, 404, "NR", "rule " + route->name + " has no destination", "", false});
            } else {
                for (const auto& wc : route->clusters) destinations.push_back(&wc);
            }
        }
    } else {
        routing["tcp"] = true;
        routing["virtualService"] = vh->tcp_virtual_service;
        routing["note"] = "port protocol " + vh->protocol + ": HTTP rules do not apply; the connection is carried as TCP";
        for (const auto& wc : vh->tcp_clusters) destinations.push_back(&wc);
    }
    report["host"] = std::move(host);
    report["routing"] = std::move(routing);
    if (route_obj) report["route"] = std::move(*route_obj);

    // Weighted destinations, their endpoints, and the server each one reaches.
    uint64_t total = 0;
    for (const auto* wc : destinations) total += wc->weight;
    const double remaining = 1 - fault_abort_share;
    json::array dests;
    for (size_t di = 0; di < destinations.size(); ++di) {
        const snap::WeightedCluster& wc = *destinations[di];
        double share = total == 0 ? (di == 0 ? 1.0 : 0.0) : static_cast<double>(wc.weight) / static_cast<double>(total);
        share *= remaining;
        json::object d{{"cluster", wc.cluster}, {"weight", wc.weight}, {"share", share}};
        json::array ops = header_ops_json(wc.request);
        if (!ops.empty()) d["requestHeaders"] = std::move(ops);
        const snap::Cluster* cluster = table.cluster(wc.cluster);
        if (!cluster) {
            d["missing"] = true;
            outcomes.push_back({share, 503, "UH", "cluster " + wc.cluster + " does not exist (no DestinationRule defines its subset, or no such service)", "", false});
            dests.push_back(std::move(d));
            continue;
        }
        d["subset"] = cluster->subset;
        d["destinationRule"] = cluster->destination_rule;
        d["loadBalancer"] = lb_text(cluster->load_balancer);
        d["connectionPool"] = pool_json(*cluster);
        if (cluster->outlier_detection) d["outlierDetection"] = outlier_json(*cluster->outlier_detection);
        d["tlsMode"] = cluster->tls_mode;
        std::vector<size_t> healthy;
        json::array eps;
        for (size_t i = 0; i < cluster->endpoints.size(); ++i) {
            const snap::Endpoint& e = cluster->endpoints[i];
            const std::string key = e.address + ":" + std::to_string(e.port);
            std::string health = "unknown (--proxy-admin asks the running proxy)";
            bool ejected = false;
            if (in.ejected) {
                auto it = in.ejected->find(cluster->name + "::" + key);
                ejected = it != in.ejected->end() && it->second;
                health = it == in.ejected->end() ? "unknown (the proxy does not list it)" : ejected ? "ejected by outlier detection" : "healthy";
            }
            if (!ejected) healthy.push_back(i);
            json::object ej{{"address", key}, {"mtls", e.mtls}, {"identity", e.identity}, {"health", health}};
            json::object labels;
            for (const auto& [k, v] : e.labels) labels[k] = v;
            ej["labels"] = std::move(labels);
            eps.push_back(std::move(ej));
        }
        if (cluster->endpoints.empty()) {
            outcomes.push_back({share, 503, "UH", "no healthy upstream: " + cluster->name + " has no endpoints", "", false});
        } else if (healthy.empty()) {
            outcomes.push_back({share, 503, "UH", "no healthy upstream: every endpoint of " + cluster->name + " is ejected by outlier detection", "", false});
        }
        // Each healthy endpoint's server: mTLS both sides and AuthorizationPolicy.
        for (size_t i : healthy) {
            const snap::Endpoint& e = cluster->endpoints[i];
            const double eshare = share / static_cast<double>(healthy.size());
            json::object& ej = eps[i].as_object();
            Server server = in.server_for ? in.server_for(*cluster, e) : Server{};
            json::object sj{{"known", server.known}, {"source", server.source}};
            if (server.known) {
                sj["name"] = server.workload.name;
                sj["namespace"] = server.workload.ns;
                sj["serviceAccount"] = server.workload.service_account;
            }
            const std::string where = (server.known && !server.workload.name.empty() ? server.workload.name : e.address) +
                                      " (" + cluster->name + ")";
            auto refuse = [&](uint32_t status, std::string flag, std::string reason) {
                outcomes.push_back({eshare, status, std::move(flag), std::move(reason), where, false});
            };
            const snap::RetryPolicy* retry = route ? &route->retries : nullptr;
            auto with_retries = [&](ProxyError e) {
                std::string flag(proxy::describe(e).flag);
                if (retry && retry->attempts > 0 && proxy::retry_covers(*retry, proxy::AttemptOutcome{e})) flag += ",URX";
                return flag;
            };
            if (!server.inbound) {
                sj["sidecar"] = false;
                if (e.mtls) {
                    refuse(503, with_retries(ProxyError::connect_failure),
                           "mTLS to " + e.address + ", which has no sidecar to terminate it");
                } else {
                    outcomes.push_back({eshare, 0, "", "", where + ", plaintext (no sidecar: no policy applies)", true});
                }
                ej["server"] = std::move(sj);
                continue;
            }
            sj["sidecar"] = true;
            const snap::InboundPolicy& inbound = *server.inbound;
            auto pm = inbound.port_mtls.find(e.port);
            const std::string mode = pm != inbound.port_mtls.end() ? pm->second : inbound.mtls_mode;
            json::array pas;
            for (const auto& p : inbound.peer_authentications) pas.push_back(json::string(ns_name(p)));
            sj["mtlsMode"] = mode;
            sj["peerAuthentications"] = std::move(pas);
            sj["mtlsModeFrom"] = pm != inbound.port_mtls.end() ? "portLevelMtls " + std::to_string(e.port)
                                 : inbound.peer_authentications.empty() ? std::string("Istio's default (no PeerAuthentication)")
                                                                        : "PeerAuthentication";
            if (mode == "STRICT" && !e.mtls) {
                refuse(503, "UC", "the server's sidecar takes only mTLS (STRICT) and the client sends plaintext (DestinationRule tls " + cluster->tls_mode + ")");
                ej["server"] = std::move(sj);
                continue;
            }
            if (mode == "DISABLE" && e.mtls) {
                refuse(503, with_retries(ProxyError::connect_failure),
                       "the client sends mTLS and the server's PeerAuthentication is DISABLE (plaintext only)");
                ej["server"] = std::move(sj);
                continue;
            }
            // AuthorizationPolicy, by the proxy's own engine, on the request as forwarded.
            Forwarded fw;
            fw.headers = request.headers;
            fw.path_text = route && !route->rewrite_uri.empty() ? proxy::rewritten_path(*route, request.path) : request.path;
            fw.host_text = route && !route->rewrite_authority.empty() ? route->rewrite_authority : authority;
            if (route) apply_ops(fw.headers, route->request_headers);
            apply_ops(fw.headers, wc.request);
            fw.method = request.method;
            fw.path = fw.path_text;
            fw.host = fw.host_text;
            fw.tcp = !is_http(vh->protocol);
            if (e.mtls) {
                fw.principal_text = in.client.spiffe_id(in.trust_domain).substr(9);
                fw.principal = fw.principal_text;
            }
            boost::system::error_code aec;
            auto src = boost::asio::ip::make_address(in.client.ip, aec);
            if (!aec) fw.source_ip = src;
            auto dst = boost::asio::ip::make_address(e.address, aec);
            if (!aec) fw.destination_ip = dst;
            fw.destination_port = e.port;
            json::array policies;
            for (const auto& p : inbound.authz) {
                policies.push_back(json::object{{"name", ns_name(p.name)}, {"action", p.action}, {"rules", p.rules.size()}});
            }
            json::object az{{"policies", std::move(policies)}};
            try {
                proxy::authz::Engine engine(inbound.authz);
                const proxy::authz::Result verdict = engine.evaluate(fw);
                const bool allowed = verdict.decision == proxy::authz::Decision::allow;
                az["decision"] = allowed ? "ALLOW" : "DENY";
                az["policy"] = verdict.policy.empty() ? "" : ns_name(verdict.policy);
                az["rule"] = verdict.rule;
                std::string by;
                if (!verdict.policy.empty()) {
                    by = ns_name(verdict.policy) + " rule " + std::to_string(verdict.rule);
                } else if (allowed) {
                    by = "default (no ALLOW policy applies to this workload)";
                } else {
                    by = "default (ALLOW policies apply and none matched)";
                }
                az["by"] = by;
                if (!verdict.audit_policy.empty()) az["audit"] = ns_name(verdict.audit_policy);
                if (allowed) {
                    outcomes.push_back({eshare, 0, "", "", where, true});
                } else {
                    refuse(403, "RBAC", "by " + by);
                }
            } catch (const std::exception& ex) {
                az["error"] = ex.what();
                refuse(403, "RBAC", std::string("the server's policies do not compile: ") + ex.what());
            }
            sj["authorization"] = std::move(az);
            ej["server"] = std::move(sj);
        }
        d["endpoints"] = std::move(eps);
        dests.push_back(std::move(d));
    }
    if (!destinations.empty()) report["destinations"] = std::move(dests);
    for (const auto& n : in.snapshot.notes) notes.push_back(json::string(n));
    report["notes"] = std::move(notes);
    return finish(report);
}

namespace {

std::string str(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    if (!v) return "";
    if (v->is_string()) return std::string(v->as_string());
    if (v->is_null()) return "";
    return json::serialize(*v);
}

const json::array& arr(const json::object& o, const char* key) {
    static const json::array empty;
    const json::value* v = o.if_contains(key);
    return v && v->is_array() ? v->as_array() : empty;
}

const json::object& obj(const json::object& o, const char* key) {
    static const json::object empty;
    const json::value* v = o.if_contains(key);
    return v && v->is_object() ? v->as_object() : empty;
}

double num(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_double()) return v->as_double();
    if (v->is_int64()) return static_cast<double>(v->as_int64());
    if (v->is_uint64()) return static_cast<double>(v->as_uint64());
    return 0;
}

std::string join(const json::array& a, const std::string& sep) {
    std::string out;
    for (const auto& v : a) {
        if (!out.empty()) out += sep;
        out += v.is_string() ? std::string(v.as_string()) : json::serialize(v);
    }
    return out;
}

}  // namespace

std::string render_text(const json::object& r) {
    std::ostringstream out;
    const json::object& verdict = obj(r, "verdict");
    out << str(verdict, "summary") << "\n\n";
    const json::object& req = obj(r, "request");
    const json::object& client = obj(r, "client");
    out << "request:   " << str(req, "method") << " " << str(req, "url");
    for (const auto& h : arr(req, "headers")) out << " -H '" << std::string(h.as_string()) << "'";
    out << "\nfrom:      " << (str(client, "name").empty() ? "(labels)" : str(client, "name")) << "."
        << str(client, "namespace") << " as " << str(client, "identity");
    if (!str(client, "ip").empty()) out << " at " << str(client, "ip");
    out << "\nconfig:    " << str(client, "config") << "\n";
    const json::object& host = obj(r, "host");
    if (str(host, "virtualHost").empty()) {
        out << "host:      " << str(req, "authority") << " is not a mesh service of this proxy\n";
    } else {
        out << "host:      " << str(req, "authority") << " -> " << str(host, "virtualHost") << " (by "
            << str(host, "foundBy") << ")\nprotocol:  " << str(host, "protocolText") << "\n";
    }
    if (const json::value* rv = r.if_contains("routing"); rv && rv->is_object()) {
        const json::object& routing = rv->as_object();
        std::string vs = str(routing, "virtualService");
        out << "routing:   " << (vs.empty() ? "no VirtualService: the service's default route" : "VirtualService " + ns_name(vs)) << "\n";
        if (!str(routing, "note").empty()) out << "           " << str(routing, "note") << "\n";
        size_t i = 0;
        for (const auto& rv2 : arr(routing, "rules")) {
            const json::object& rule = rv2.as_object();
            out << "  " << (rule.at("matched").as_bool() ? "MATCH " : "no    ") << "rule " << i++ << " " << str(rule, "name");
            if (!str(rule, "match").empty()) out << ": " << str(rule, "match");
            out << "\n";
            size_t b = 0;
            const json::array& why = arr(rule, "whyNot");
            for (const auto& w : why) {
                out << "          " << (why.size() > 1 ? "block " + std::to_string(b++) + ": " : "") << std::string(w.as_string()) << "\n";
            }
        }
    }
    if (const json::value* rv = r.if_contains("route"); rv && rv->is_object()) {
        const json::object& route = rv->as_object();
        const json::object& retries = obj(route, "retries");
        out << "route:     timeout " << str(route, "timeout") << "; retries " << str(retries, "attempts") << " (retryOn "
            << str(retries, "retryOn") << ", perTryTimeout " << str(retries, "perTryTimeout") << ", retriable codes "
            << str(retries, "retriableStatusCodes") << ")\n";
        if (num(retries, "attempts") > 0) out << "           retry budget: " << str(retries, "budget") << "\n";
        if (const json::value* f = route.if_contains("fault"); f && f->is_object()) {
            const json::object& fo = f->as_object();
            if (fo.contains("delay")) {
                const json::object& d = obj(fo, "delay");
                out << "fault:     delay " << str(d, "fixedDelay") << " for " << num(d, "percent") << "% (DI)\n";
            }
            if (fo.contains("abort")) {
                const json::object& a = obj(fo, "abort");
                out << "fault:     abort with " << str(a, "httpStatus") << " for " << num(a, "percent") << "% (FI)\n";
            }
        }
        for (const auto& m : arr(route, "mirrors")) {
            out << "mirror:    " << str(m.as_object(), "cluster") << " (" << num(m.as_object(), "percent") << "%)\n";
        }
        if (!arr(route, "requestHeaders").empty()) out << "headers:   request " << join(arr(route, "requestHeaders"), ", ") << "\n";
        if (!arr(route, "responseHeaders").empty()) out << "headers:   response " << join(arr(route, "responseHeaders"), ", ") << "\n";
        if (!str(route, "rewriteUri").empty()) out << "rewrite:   uri " << str(route, "rewriteUri") << "\n";
        if (!str(route, "rewriteAuthority").empty()) out << "rewrite:   authority " << str(route, "rewriteAuthority") << "\n";
    }
    for (const auto& dv : arr(r, "destinations")) {
        const json::object& d = dv.as_object();
        out << "\ndestination " << percent_text(num(d, "share")) << ": " << str(d, "cluster");
        if (d.contains("missing")) {
            out << " (does not exist)\n";
            continue;
        }
        out << "\n";
        if (!str(d, "destinationRule").empty()) out << "  DestinationRule " << ns_name(str(d, "destinationRule")) << "\n";
        if (!arr(d, "requestHeaders").empty()) out << "  headers: request " << join(arr(d, "requestHeaders"), ", ") << "\n";
        out << "  load balancer " << str(d, "loadBalancer") << "; client TLS " << str(d, "tlsMode") << "\n";
        const json::object& pool = obj(d, "connectionPool");
        out << "  pool: maxConnections " << str(pool, "maxConnections") << ", http1MaxPendingRequests "
            << str(pool, "http1MaxPendingRequests") << ", http2MaxRequests " << str(pool, "http2MaxRequests")
            << ", maxRequestsPerConnection " << str(pool, "maxRequestsPerConnection") << ", maxRetries "
            << str(pool, "maxRetries") << ", connectTimeout " << str(pool, "connectTimeout") << "\n";
        if (d.contains("outlierDetection")) {
            const json::object& od = obj(d, "outlierDetection");
            out << "  outlier detection: consecutive5xxErrors " << str(od, "consecutive5xxErrors") << ", interval "
                << str(od, "interval") << ", baseEjectionTime " << str(od, "baseEjectionTime") << ", maxEjectionPercent "
                << str(od, "maxEjectionPercent") << "\n";
        }
        if (arr(d, "endpoints").empty()) out << "  no endpoints\n";
        for (const auto& ev : arr(d, "endpoints")) {
            const json::object& e = ev.as_object();
            out << "  endpoint " << str(e, "address") << " " << (e.at("mtls").as_bool() ? "mTLS" : "plaintext");
            if (!str(e, "identity").empty()) out << " to " << str(e, "identity");
            out << ", " << str(e, "health") << "\n";
            const json::object& s = obj(e, "server");
            if (s.empty()) continue;
            out << "    server: " << (s.at("known").as_bool() ? str(s, "name") + "." + str(s, "namespace") : "unknown workload");
            if (!str(s, "source").empty()) out << " (" << str(s, "source") << ")";
            out << "\n";
            if (!s.contains("mtlsMode")) {
                out << "    no sidecar known: no PeerAuthentication or AuthorizationPolicy applies\n";
                continue;
            }
            out << "    mTLS " << str(s, "mtlsMode") << " from " << str(s, "mtlsModeFrom");
            if (!arr(s, "peerAuthentications").empty()) out << " (" << join(arr(s, "peerAuthentications"), ", ") << ")";
            out << "\n";
            const json::object& az = obj(s, "authorization");
            if (!az.empty()) {
                out << "    authorization: " << str(az, "decision") << " by " << str(az, "by");
                if (!arr(az, "policies").empty()) {
                    std::vector<std::string> names;
                    for (const auto& p : arr(az, "policies")) names.push_back(str(p.as_object(), "name") + " " + str(p.as_object(), "action"));
                    std::string all;
                    for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
                    out << " (policies: " << all << ")";
                }
                out << "\n";
            }
        }
    }
    out << "\noutcomes:\n";
    for (const auto& ov : arr(verdict, "outcomes")) {
        const json::object& o = ov.as_object();
        out << "  " << percent_text(num(o, "share")) << "  ";
        if (o.at("served").as_bool() && num(o, "status") == 0) {
            out << "reaches " << str(o, "where") << "\n";
        } else {
            out << str(o, "status") << (str(o, "flag").empty() ? "" : " " + str(o, "flag")) << " " << str(o, "reason");
            if (!str(o, "where").empty()) out << " at " << str(o, "where");
            out << "\n";
        }
    }
    if (!arr(r, "notes").empty()) {
        out << "\nnotes:\n";
        for (const auto& n : arr(r, "notes")) out << "  " << std::string(n.as_string()) << "\n";
    }
    return out.str();
}

bool served(const json::object& report) {
    const json::object& v = obj(report, "verdict");
    const json::value* s = v.if_contains("served");
    return s && s->is_bool() && s->as_bool();
}

std::map<std::string, bool> parse_admin_clusters(const std::string& text) {
    std::map<std::string, bool> out;
    std::istringstream in(text);
    std::string line;
    const std::string suffix = "::health_flags::";
    while (std::getline(in, line)) {
        size_t at = line.find(suffix);
        if (at == std::string::npos) continue;
        out[line.substr(0, at)] = line.find("failed_outlier_check", at) != std::string::npos;
    }
    return out;
}

}  // namespace remora::control::explain
