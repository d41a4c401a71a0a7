// Services and endpoints, clusters per subset with merged DestinationRule policy, route tables
// from VirtualServices, and the inbound mTLS mode from PeerAuthentication.
#include "control/translate/translate.h"

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "proxy/snapshot/snapshot_json.h"

namespace remora::control::translate {

namespace snap = proxy::snapshot;
using model::Labels;

namespace {

struct ServiceEndpoint {
    std::string address;
    std::map<std::string, uint32_t> ports;
    Labels labels;
    std::string ns, service_account;
    uint32_t weight = 0;
};

struct ServicePortInfo {
    uint32_t number = 0;
    std::string name;
    uint32_t target_port = 0;
    std::string protocol;  // Istio's name for it; "" = undeclared (detected by the proxy)
};

struct ServiceInfo {
    const void* source = nullptr;  // the Kubernetes Service or ServiceEntry it comes from
    std::string host, name, ns;
    std::vector<std::string> vips;
    std::vector<ServicePortInfo> ports;
    std::vector<ServiceEndpoint> endpoints;
};

// Istio's protocol names, by the lowercase form a port name prefix or appProtocol uses.
std::string istio_protocol(std::string_view text) {
    std::string lower(text);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    static const std::pair<const char*, const char*> kNames[] = {
        {"http", "HTTP"},   {"http2", "HTTP2"}, {"https", "HTTPS"}, {"grpc", "GRPC"},
        {"grpc-web", "GRPC-Web"}, {"tcp", "TCP"}, {"tls", "TLS"}, {"mongo", "Mongo"},
        {"mysql", "MySQL"}, {"redis", "Redis"}, {"h2c", "HTTP2"},
        {"kubernetes.io/h2c", "HTTP2"}, {"kubernetes.io/ws", "HTTP"}, {"kubernetes.io/wss", "TLS"}};
    for (const auto& [key, name] : kNames) {
        if (lower == key) return name;
    }
    return "";
}

// A Kubernetes Service port's protocol as istiod reads it: appProtocol wins; else the name,
// "<protocol>" or "<protocol>-<suffix>"; else undeclared (sniffed). `protocol: UDP` is not proxied.
std::string kube_port_protocol(const model::KubeServicePort& p) {
    if (!p.app_protocol.empty()) {
        if (std::string named = istio_protocol(p.app_protocol); !named.empty()) return named;
    }
    std::string_view name = p.name;
    // grpc-web is a protocol of its own, not grpc with the suffix "web".
    if (name == "grpc-web" || name.starts_with("grpc-web-")) return "GRPC-Web";
    return istio_protocol(name.substr(0, name.find('-')));
}

bool selects(const Labels& selector, const Labels& labels) {
    for (const auto& [k, v] : selector) {
        auto it = labels.find(k);
        if (it == labels.end() || it->second != v) return false;
    }
    return true;
}

ServiceEndpoint from_workload_entry(const model::WorkloadEntry& we) {
    return {we.spec.address, we.spec.ports, we.spec.labels, we.meta.ns,
            we.spec.service_account.empty() ? "default" : we.spec.service_account, we.spec.weight};
}

// Which services a proxy's translation needs (namespace, host): under a Sidecar, those its
// listeners import and the destinations of the VirtualServices they import; null: all.
using ServiceFilter = std::function<bool(const std::string& ns, const std::string& host)>;

// The services a proxy in `client_ns` can see (exportTo) and `wanted` keeps.
std::vector<ServiceInfo> services_of(const model::Config& config, const std::string& client_ns,
                                     const Options& o, const std::vector<model::WorkloadEntry>& more_workloads,
                                     const ServiceFilter& wanted = nullptr,
                                     std::size_t* left_out_ports = nullptr) {
    std::vector<ServiceInfo> out;
    std::unordered_map<std::string, std::vector<const model::WorkloadEntry*>> entries_by_ns;
    for (const auto* list : {&config.workload_entries, &more_workloads}) {
        for (const auto& we : *list) {
            if (we.meta.valid) entries_by_ns[we.meta.ns].push_back(&we);
        }
    }
    auto entries_selected = [&](const Labels& selector, const std::string& ns) {
        std::vector<ServiceEndpoint> eps;
        if (selector.empty()) return eps;
        auto in_ns = entries_by_ns.find(ns);
        if (in_ns == entries_by_ns.end()) return eps;
        for (const model::WorkloadEntry* we : in_ns->second) {
            if (selects(selector, we->spec.labels)) eps.push_back(from_workload_entry(*we));
        }
        return eps;
    };
    for (const auto& ks : config.kube_services) {
        if (!ks.meta.valid || !exported_to(ks.meta.ns, service_export_to(ks), client_ns)) continue;
        std::string host = ks.meta.name + "." + ks.meta.ns + "." + o.cluster_domain;
        if (wanted && !wanted(ks.meta.ns, host)) {
            if (left_out_ports) *left_out_ports += ks.ports.size();
            continue;
        }
        ServiceInfo s;
        s.source = &ks;
        s.name = ks.meta.name;
        s.ns = ks.meta.ns;
        s.host = std::move(host);
        s.vips = ks.cluster_ips;
        for (const auto& p : ks.ports) s.ports.push_back({p.port, p.name, 0, kube_port_protocol(p)});
        s.endpoints = entries_selected(ks.selector, ks.meta.ns);
        out.push_back(std::move(s));
    }
    for (const auto& se : config.service_entries) {
        if (!se.meta.valid || !exported_to(se.meta.ns, se.export_to, client_ns)) continue;
        for (const std::string& host : se.hosts) {
            if (wanted && !wanted(se.meta.ns, host)) {
                if (left_out_ports) *left_out_ports += se.ports.size();
                continue;
            }
            ServiceInfo s;
            s.source = &se;
            s.name = se.meta.name;
            s.ns = se.meta.ns;
            s.host = host;
            s.vips = se.addresses;
            for (const auto& p : se.ports) {
                s.ports.push_back({p.number, p.name, p.target_port, istio_protocol(p.protocol)});
            }
            for (const auto& e : se.endpoints) {
                s.endpoints.push_back({e.address, e.ports, e.labels, se.meta.ns,
                                       e.service_account, e.weight});
            }
            if (se.workload_selector) {
                auto eps = entries_selected(*se.workload_selector, se.meta.ns);
                s.endpoints.insert(s.endpoints.end(), eps.begin(), eps.end());
            }
            out.push_back(std::move(s));
        }
    }
    // The first definition of a host wins (a Kubernetes Service before a ServiceEntry of the same
    // name, as istiod's registries merge): a stable sort keeps them in that order.
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.host < b.host; });
    out.erase(std::unique(out.begin(), out.end(),
                          [](const auto& a, const auto& b) { return a.host == b.host; }),
              out.end());
    return out;
}

bool host_matches(const std::string& pattern, const std::string& host) {
    if (pattern == host || pattern == "*") return true;
    if (pattern.size() > 1 && pattern[0] == '*') {
        std::string suffix = pattern.substr(1);  // ".example.com"
        return host.size() > suffix.size() && host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0;
    }
    return false;
}

// Istio's Sidecar egress for one workload: the listener that governs a port (the one with that
// port, else the catch-all one without a port; none: nothing on that port is imported) and what
// a listener imports, by `namespace/dnsName`: namespace `*` any, `.` the workload's (also for
// the root namespace's default Sidecar, as istiod converts it per namespace), `~` none; dnsName
// `*`, a `*.suffix` wildcard or an FQDN. A Sidecar without egress imports `*/*`; no Sidecar
// imports everything (unscoped).
class EgressScope {
  public:
    struct Host {
        std::string ns;   // "*" = any namespace; "" = none (`~`)
        std::string dns;  // "*", "*.suffix" or an FQDN
    };
    struct Listener {
        uint32_t port = 0;  // 0: the catch-all listener
        std::vector<Host> hosts;
    };

    EgressScope(const model::Sidecar* sc, const std::string& workload_ns) : sidecar_(sc) {
        if (!sc) return;
        for (const model::IstioEgressListener& e : sc->egress) {
            if (e.port && e.port->number == 0) continue;  // a unix socket bind: no port to govern
            Listener l;
            l.port = e.port ? e.port->number : 0;
            for (const std::string& h : e.hosts) {
                const auto slash = h.find('/');
                if (slash == std::string::npos) continue;  // validation refuses it
                std::string ns = h.substr(0, slash);
                if (ns.starts_with('~')) ns.clear();
                else if (ns == ".") ns = workload_ns;
                l.hosts.push_back({std::move(ns), h.substr(slash + 1)});
            }
            listeners_.push_back(std::move(l));
        }
        if (sc->egress.empty()) listeners_.push_back({0, {{"*", "*"}}});
    }

    const model::Sidecar* sidecar() const { return sidecar_; }
    bool scoped() const { return sidecar_ != nullptr; }

    const Listener* for_port(uint32_t port) const {
        const Listener* catch_all = nullptr;
        for (const Listener& l : listeners_) {
            if (l.port == port) return &l;
            if (l.port == 0 && !catch_all) catch_all = &l;
        }
        return catch_all;
    }

    // A service (or ServiceEntry host) of namespace `ns`.
    static bool imports(const Listener& l, const std::string& ns, const std::string& host) {
        for (const Host& h : l.hosts) {
            if (!h.ns.empty() && (h.ns == "*" || h.ns == ns) && host_matches(h.dns, host)) return true;
        }
        return false;
    }
    // By any listener, on any port.
    bool imports_any(const std::string& ns, const std::string& host) const {
        for (const Listener& l : listeners_) {
            if (imports(l, ns, host)) return true;
        }
        return false;
    }
    bool imports_any(const model::VirtualService& vs, const Options& o) const {
        for (const Listener& l : listeners_) {
            if (imports(l, vs, o)) return true;
        }
        return false;
    }
    // A VirtualService: one of its hosts (resolved, maybe a wildcard) meets an egress host of
    // its namespace.
    static bool imports(const Listener& l, const model::VirtualService& vs, const Options& o) {
        for (const std::string& raw : vs.hosts) {
            const std::string host = resolve_host(raw, vs.meta.ns, o);
            for (const Host& h : l.hosts) {
                if (h.ns.empty() || (h.ns != "*" && h.ns != vs.meta.ns)) continue;
                if (host_matches(h.dns, host) || host_matches(host, h.dns)) return true;
            }
        }
        return false;
    }

  private:
    const model::Sidecar* sidecar_;
    std::vector<Listener> listeners_;
};

// A gRPC status name (fault.abort.grpcStatus) as its code; validation admits only known names.
uint32_t grpc_status_code(const std::string& name) {
    static constexpr std::string_view kNames[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    for (uint32_t i = 0; i < std::size(kNames); ++i) {
        if (kNames[i] == name) return i;
    }
    return 2;  // UNKNOWN
}

snap::Millis millis(model::Duration d) {
    return std::chrono::duration_cast<snap::Millis>(d);
}

// The valid DestinationRules by namespace and host, built once per translation so that finding
// a service's rule does not scan every rule (40,000 services with a rule each were quadratic).
class RuleIndex {
  public:
    RuleIndex(const model::Config& config, const std::string& client_ns, const Options& o) {
        for (const auto& dr : config.destination_rules) {
            if (!dr.meta.valid || !exported_to(dr.meta.ns, dr.export_to, client_ns)) continue;
            std::string host = resolve_host(dr.host, dr.meta.ns, o);
            if (host.starts_with("*")) wildcards_[dr.meta.ns].push_back({std::move(host), &dr});
            exact_.emplace(dr.meta.ns + '\0' + resolve_host(dr.host, dr.meta.ns, o), &dr);
        }
    }

    // The DestinationRule for a host: the client's namespace first, then the service's, then
    // the root namespace, as Istio looks them up. Within a namespace an exact host beats a
    // wildcard; among equals the first one read.
    const model::DestinationRule* rule_for(const ServiceInfo& s, const WorkloadRef& w,
                                           const Options& o) const {
        for (const std::string& ns : {w.ns, s.ns, o.root_namespace}) {
            if (auto it = exact_.find(ns + '\0' + s.host); it != exact_.end()) return it->second;
            if (auto it = wildcards_.find(ns); it != wildcards_.end()) {
                for (const auto& [pattern, dr] : it->second) {
                    if (host_matches(pattern, s.host)) return dr;
                }
            }
        }
        return nullptr;
    }

  private:
    std::unordered_map<std::string, const model::DestinationRule*> exact_;  // "ns\0host": first
    std::unordered_map<std::string,
                       std::vector<std::pair<std::string, const model::DestinationRule*>>>
        wildcards_;
};

void apply_policy(snap::Cluster& c, const model::TrafficPolicy& tp) {
    auto apply_parts = [&](const std::optional<model::LoadBalancerSettings>& lb,
                           const std::optional<model::ConnectionPoolSettings>& pool,
                           const std::optional<model::OutlierDetection>& od,
                           const std::optional<model::ClientTLSSettings>& tls) {
        if (lb) {
            if (!lb->simple.empty()) c.load_balancer.simple = lb->simple;
            if (lb->consistent_hash) {
                const auto& h = *lb->consistent_hash;
                c.load_balancer.hash_header = h.http_header_name;
                c.load_balancer.hash_cookie = h.http_cookie ? h.http_cookie->name : "";
                c.load_balancer.hash_query_parameter = h.http_query_parameter_name;
                c.load_balancer.hash_source_ip = h.use_source_ip;
            }
        }
        if (pool && pool->tcp) {
            if (pool->tcp->max_connections) c.limits.max_connections = static_cast<uint32_t>(*pool->tcp->max_connections);
            if (pool->tcp->connect_timeout) c.limits.connect_timeout = millis(*pool->tcp->connect_timeout);
            if (pool->tcp->idle_timeout) c.limits.tcp_idle_timeout = millis(*pool->tcp->idle_timeout);
        }
        if (pool && pool->http) {
            const auto& h = *pool->http;
            if (h.http1_max_pending_requests) c.limits.http1_max_pending_requests = static_cast<uint32_t>(*h.http1_max_pending_requests);
            if (h.http2_max_requests) c.limits.http2_max_requests = static_cast<uint32_t>(*h.http2_max_requests);
            if (h.max_requests_per_connection) c.limits.max_requests_per_connection = static_cast<uint32_t>(*h.max_requests_per_connection);
            if (h.max_retries) c.limits.max_retries = static_cast<uint32_t>(*h.max_retries);
            if (h.idle_timeout) c.limits.idle_timeout = millis(*h.idle_timeout);
            c.limits.h2_upgrade_policy = h.h2_upgrade_policy;
            c.limits.use_client_protocol = h.use_client_protocol;
        }
        if (od) {
            snap::OutlierDetection o;
            if (od->consecutive_5xx_errors) o.consecutive_5xx_errors = *od->consecutive_5xx_errors;
            if (od->consecutive_gateway_errors) o.consecutive_gateway_errors = *od->consecutive_gateway_errors;
            if (od->interval) o.interval = millis(*od->interval);
            if (od->base_ejection_time) o.base_ejection_time = millis(*od->base_ejection_time);
            if (od->max_ejection_percent) o.max_ejection_percent = static_cast<uint32_t>(*od->max_ejection_percent);
            if (od->min_health_percent) o.min_health_percent = static_cast<uint32_t>(*od->min_health_percent);
            c.outlier_detection = o;
        }
        if (tls && !tls->mode.empty()) c.tls_mode = tls->mode;
    };
    apply_parts(tp.load_balancer, tp.connection_pool, tp.outlier_detection, tp.tls);
    if (tp.retry_budget) {
        c.limits.retry_budget_percent = tp.retry_budget->percent.value_or(20.0);
        c.limits.retry_budget_min_concurrency = tp.retry_budget->min_retry_concurrency.value_or(3);
    }
    for (const auto& pl : tp.port_level_settings) {
        if (pl.port == c.port) apply_parts(pl.load_balancer, pl.connection_pool, pl.outlier_detection, pl.tls);
    }
}

std::string cluster_name(uint32_t port, const std::string& subset, const std::string& host) {
    return "outbound|" + std::to_string(port) + "|" + subset + "|" + host;
}

// PeerAuthentication for a workload: its own policy, else its namespace's, else the mesh's; UNSET
// inherits from the level above; portLevelMtls from its own policy.
snap::InboundPolicy peer_authentication_for(const model::Config& config, const std::string& ns,
                                            const Labels& labels, const Options& o) {
    snap::InboundPolicy out;
    const model::PeerAuthentication *mesh = nullptr, *nspa = nullptr, *wl = nullptr;
    for (const auto& pa : config.peer_authentications) {
        if (!pa.meta.valid) continue;
        if (!pa.selector || pa.selector->empty()) {
            if (pa.meta.ns == o.root_namespace && !mesh) mesh = &pa;
            else if (pa.meta.ns == ns && !nspa) nspa = &pa;
        } else if (pa.meta.ns == ns && selects(*pa.selector, labels) && !wl) {
            wl = &pa;
        }
    }
    for (const auto* pa : {mesh, nspa, wl}) {
        if (pa && pa->mtls_mode != "UNSET") out.mtls_mode = pa->mtls_mode;
        if (pa) out.peer_authentications.push_back(pa->meta.name + "." + pa->meta.ns);
    }
    if (wl) {
        for (const auto& [port, mode] : wl->port_level_mtls) {
            if (mode != "UNSET") out.port_mtls[port] = mode;
        }
    }
    return out;
}

snap::Cluster make_cluster(const model::Config& config, const ServiceInfo& s, const ServicePortInfo& p,
                           const model::DestinationRule* dr, const model::Subset* subset, const Options& o) {
    snap::Cluster c;
    c.subset = subset ? subset->name : "";
    c.name = cluster_name(p.number, c.subset, s.host);
    c.service_host = s.host;
    c.port = p.number;
    if (dr) c.destination_rule = dr->meta.name + "." + dr->meta.ns;
    c.tls_mode.clear();  // "" until a DestinationRule says: then auto mTLS decides
    if (dr && dr->traffic_policy) apply_policy(c, *dr->traffic_policy);
    if (subset && subset->traffic_policy) apply_policy(c, *subset->traffic_policy);
    const bool auto_mtls = c.tls_mode.empty();
    if (auto_mtls) c.tls_mode = "ISTIO_MUTUAL";
    for (const ServiceEndpoint& e : s.endpoints) {
        if (subset && !selects(subset->labels, e.labels)) continue;
        snap::Endpoint ep;
        ep.address = e.address;
        auto named = e.ports.find(p.name);
        ep.port = named != e.ports.end() ? named->second : p.target_port ? p.target_port : p.number;
        ep.labels = e.labels;
        ep.weight = e.weight;
        // Auto mTLS: endpoints whose sidecar says so (the label istio's injector sets).
        auto mode = e.labels.find("security.istio.io/tlsMode");
        bool in_mesh = mode != e.labels.end() && mode->second == "istio";
        ep.mtls = c.tls_mode == "ISTIO_MUTUAL" && in_mesh;
        // Auto mTLS also follows the server's PeerAuthentication, as istiod does: plaintext to a
        // port whose mode is DISABLE (its sidecar would not terminate TLS).
        if (ep.mtls && auto_mtls) {
            const snap::InboundPolicy server = peer_authentication_for(config, e.ns, e.labels, o);
            auto port_mode = server.port_mtls.find(ep.port);
            if ((port_mode != server.port_mtls.end() ? port_mode->second : server.mtls_mode) == "DISABLE") {
                ep.mtls = false;
            }
        }
        if (ep.mtls && !e.service_account.empty()) {
            ep.identity = "spiffe://" + o.trust_domain + "/ns/" + e.ns + "/sa/" + e.service_account;
        }
        c.endpoints.push_back(std::move(ep));
    }
    std::sort(c.endpoints.begin(), c.endpoints.end(),
              [](const auto& a, const auto& b) { return std::tie(a.address, a.port) < std::tie(b.address, b.port); });
    return c;
}

snap::StringMatcher matcher(const model::StringMatch& m, bool ignore_case = false) {
    snap::StringMatcher out;
    out.kind = m.type == model::StringMatch::Type::Exact    ? snap::StringMatcher::Kind::exact
               : m.type == model::StringMatch::Type::Prefix ? snap::StringMatcher::Kind::prefix
                                                             : snap::StringMatcher::Kind::regex;
    out.value = m.value;
    out.ignore_case = ignore_case;
    return out;
}

snap::HeaderOps header_ops(const model::HeaderOperations& h) {
    snap::HeaderOps out;
    out.set.assign(h.set.begin(), h.set.end());
    out.add.assign(h.add.begin(), h.add.end());
    out.remove = h.remove;
    return out;
}

snap::RetryPolicy retry_policy(const std::optional<model::HTTPRetry>& r) {
    snap::RetryPolicy out;
    if (!r) return out;  // Istio's default policy
    out.attempts = static_cast<uint32_t>(std::max(0, r->attempts));
    out.per_try_timeout.reset();
    if (r->per_try_timeout) out.per_try_timeout = millis(*r->per_try_timeout);
    if (!r->retry_on.empty()) {
        std::vector<std::string> conditions;
        out.retriable_status_codes.clear();
        size_t start = 0;
        while (start <= r->retry_on.size()) {
            size_t comma = r->retry_on.find(',', start);
            std::string part = r->retry_on.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            part.erase(0, part.find_first_not_of(' '));
            part.erase(part.find_last_not_of(' ') + 1);
            if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
                out.retriable_status_codes.push_back(static_cast<uint32_t>(std::stoul(part)));
            } else if (!part.empty()) {
                conditions.push_back(part);
            }
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        // Numeric codes mean "retriable-status-codes" with those codes, as Istio translates them.
        if (!out.retriable_status_codes.empty() &&
            std::find(conditions.begin(), conditions.end(), "retriable-status-codes") == conditions.end()) {
            conditions.push_back("retriable-status-codes");
        }
        out.retry_on.clear();
        for (const auto& c : conditions) out.retry_on += (out.retry_on.empty() ? "" : ",") + c;
    }
    return out;
}

// AuthorizationPolicy for one workload: the root namespace's policies (mesh-wide) and its own
// namespace's, each when it has no selector or its selector picks the workload's labels, as
// istiod decides them. CUSTOM needs an external authorizer remora does not have: left out.
std::vector<snap::AuthzPolicy> authorization_policies(const model::Config& config, const WorkloadRef& w,
                                                      const Options& o, std::vector<std::string>& notes) {
    std::vector<snap::AuthzPolicy> out;
    for (const model::AuthorizationPolicy& ap : config.authorization_policies) {
        if (!ap.meta.valid || (ap.meta.ns != o.root_namespace && ap.meta.ns != w.ns)) continue;
        if (ap.selector && !ap.selector->empty() && !selects(*ap.selector, w.labels)) continue;
        const std::string who = "AuthorizationPolicy " + ap.meta.ns + "/" + ap.meta.name + ": ";
        if (ap.action == "CUSTOM") {
            notes.push_back(who + "action CUSTOM is not supported by remora; the policy is ignored");
            continue;
        }
        if (auto dry = ap.meta.annotations.find("istio.io/dry-run");
            dry != ap.meta.annotations.end() && dry->second == "true") {
            notes.push_back(who + "istio.io/dry-run: not enforced (remora keeps no shadow results)");
            continue;
        }
        snap::AuthzPolicy p;
        p.name = ap.meta.name + "." + ap.meta.ns;
        p.action = ap.action;
        bool jwt = false, unknown = false;
        // serviceAccounts are principals in this trust domain; "<sa>" is in the policy's namespace.
        auto principal_of = [&](const std::string& sa) {
            size_t slash = sa.find('/');
            std::string ns = slash == std::string::npos ? ap.meta.ns : sa.substr(0, slash);
            std::string name = slash == std::string::npos ? sa : sa.substr(slash + 1);
            return o.trust_domain + "/ns/" + ns + "/sa/" + name;
        };
        auto ports = [](const std::vector<std::string>& in) {
            std::vector<uint32_t> v;
            for (const auto& s : in) v.push_back(static_cast<uint32_t>(std::stoul(s)));  // validated
            return v;
        };
        for (const model::Rule& r : ap.rules.value_or(std::vector<model::Rule>{})) {
            snap::AuthzRule rule;
            for (const model::Source& s : r.from) {
                snap::AuthzSource src{s.principals, s.not_principals, s.request_principals, s.not_request_principals,
                                      s.namespaces, s.not_namespaces, s.trust_domains, s.not_trust_domains,
                                      s.ip_blocks, s.not_ip_blocks, s.remote_ip_blocks, s.not_remote_ip_blocks};
                for (const auto& sa : s.service_accounts) src.principals.push_back(principal_of(sa));
                for (const auto& sa : s.not_service_accounts) src.not_principals.push_back(principal_of(sa));
                jwt = jwt || !s.request_principals.empty() || !s.not_request_principals.empty();
                rule.from.push_back(std::move(src));
            }
            for (const model::Operation& op : r.to) {
                rule.to.push_back({op.hosts, op.not_hosts, ports(op.ports), ports(op.not_ports), op.methods,
                                   op.not_methods, op.paths, op.not_paths});
            }
            for (const model::Condition& c : r.when) {
                jwt = jwt || c.key.starts_with("request.auth.");
                unknown = unknown || c.key == "connection.sni" || c.key.starts_with("experimental.");
                rule.when.push_back({c.key, c.values, c.not_values});
            }
            p.rules.push_back(std::move(rule));
        }
        if (jwt) {
            notes.push_back(who + "requestPrincipals and request.auth.* need RequestAuthentication (JWT), "
                                  "which remora does not support: no request has them");
        }
        if (unknown) {
            notes.push_back(who + "connection.sni and experimental.* conditions are unknown to remora: they "
                                  "match in DENY policies and never in ALLOW or AUDIT ones");
        }
        out.push_back(std::move(p));
    }
    auto action_rank = [](const std::string& a) { return a == "DENY" ? 0 : a == "ALLOW" ? 1 : 2; };
    std::stable_sort(out.begin(), out.end(), [&](const auto& a, const auto& b) {
        return std::make_pair(action_rank(a.action), a.name) < std::make_pair(action_rank(b.action), b.name);
    });
    return out;
}

}  // namespace

const model::Sidecar* sidecar_for(const model::Config& config, const std::string& ns,
                                  const Labels& labels, const Options& o) {
    const model::Sidecar *picked = nullptr, *ns_default = nullptr, *root = nullptr;
    auto first = [](const model::Sidecar*& best, const model::Sidecar& sc) {
        if (!best || sc.meta.name < best->meta.name) best = &sc;
    };
    for (const model::Sidecar& sc : config.sidecars) {
        if (!sc.meta.valid) continue;
        const bool selector = sc.workload_selector && !sc.workload_selector->empty();
        if (sc.meta.ns == ns) {
            if (!selector) first(ns_default, sc);
            else if (selects(*sc.workload_selector, labels)) first(picked, sc);
        }
        if (sc.meta.ns == o.root_namespace && !selector) first(root, sc);
    }
    return picked ? picked : ns_default ? ns_default : root;
}

std::string resolve_host(const std::string& host, const std::string& ns, const Options& o) {
    if (host.find('.') != std::string::npos || host.find('*') != std::string::npos) return host;
    return host + "." + ns + "." + o.cluster_domain;
}

bool exported_to(const std::string& resource_ns, const std::vector<std::string>& export_to,
                 const std::string& client_ns) {
    if (export_to.empty()) return true;
    for (const std::string& e : export_to) {
        if (e == "*" || e == client_ns || (e == "." && resource_ns == client_ns)) return true;
    }
    return false;
}

std::vector<std::string> service_export_to(const model::KubeService& service) {
    std::vector<std::string> out;
    auto anno = service.meta.annotations.find("networking.istio.io/exportTo");
    if (anno == service.meta.annotations.end()) return out;
    const std::string& s = anno->second;
    std::size_t start = 0;
    while (start <= s.size()) {
        std::size_t comma = s.find(',', start);
        std::string e = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        e.erase(0, e.find_first_not_of(" \t"));
        e.erase(e.find_last_not_of(" \t") + 1);
        if (!e.empty()) out.push_back(std::move(e));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

snap::Snapshot translate(const model::Config& config, const WorkloadRef& w, const Options& o) {
    return translate(config, w, o, {});
}

namespace {

// A cluster to make: the service port, DestinationRule and subset it is made from.
struct ClusterPlan {
    const ServiceInfo* service;
    const ServicePortInfo* port;
    const model::DestinationRule* rule;
    const model::Subset* subset;
};

// A translation before its clusters are made: the snapshot without them, the services they
// are for, and the clusters to make (pointing into `services`).
struct Translation {
    snap::Snapshot snapshot;
    std::vector<ServiceInfo> services;
    std::vector<ClusterPlan> clusters;
};

Translation translate_parts(const model::Config& config, const WorkloadRef& w, const Options& o,
                            const std::vector<model::WorkloadEntry>& more_workloads) {
    Translation result;
    snap::Snapshot& out = result.snapshot;
    out.workload_namespace = w.ns;
    out.workload_labels = w.labels;
    size_t skipped = 0;
    auto count_invalid = [&](const auto& list) {
        for (const auto& r : list) skipped += r.meta.valid ? 0 : 1;
    };
    count_invalid(config.virtual_services);
    count_invalid(config.destination_rules);
    count_invalid(config.service_entries);
    count_invalid(config.workload_entries);
    count_invalid(more_workloads);
    count_invalid(config.peer_authentications);
    count_invalid(config.authorization_policies);
    if (skipped) out.notes.push_back(std::to_string(skipped) + " invalid resource(s) left out");

    // The Sidecar that scopes this proxy's egress, if any: virtual hosts for the service ports
    // its listeners import, clusters for those and for what their routes send to. Only those
    // services are read at all (at 10,000 services a scoped proxy's translation was mostly
    // building and sorting services it then left out).
    const EgressScope egress(sidecar_for(config, w.ns, w.labels, o), w.ns);
    std::set<std::pair<std::string, uint32_t>> wanted;  // (host, port) needing clusters; scoped only
    ServiceFilter needed;
    std::unordered_set<std::string> destinations;  // hosts the imported VirtualServices name
    if (egress.scoped()) {
        for (const auto& vs : config.virtual_services) {
            if (!vs.meta.valid || !vs.applies_to_mesh() || !exported_to(vs.meta.ns, vs.export_to, w.ns) ||
                !egress.imports_any(vs, o)) {
                continue;
            }
            auto add = [&](const model::Destination& d) { destinations.insert(resolve_host(d.host, vs.meta.ns, o)); };
            for (const auto& hr : vs.http) {
                for (const auto& rd : hr.route) add(rd.destination);
                if (hr.mirror) add(*hr.mirror);
                for (const auto& m : hr.mirrors) add(m.destination);
            }
            for (const auto& r : vs.tcp) {
                for (const auto& rd : r.route) add(rd.destination);
            }
            for (const auto& r : vs.tls) {
                for (const auto& rd : r.route) add(rd.destination);
            }
        }
        needed = [&](const std::string& ns, const std::string& host) {
            return egress.imports_any(ns, host) || destinations.count(host) > 0;
        };
    }
    std::size_t scoped_out = 0;  // service ports a Sidecar leaves out
    std::vector<ServiceInfo>& services = result.services;
    services = services_of(config, w.ns, o, more_workloads, needed, &scoped_out);
    // services_of sorts by host.
    auto find_service = [&](const std::string& host) -> const ServiceInfo* {
        auto it = std::lower_bound(services.begin(), services.end(), host,
                                   [](const ServiceInfo& s, const std::string& h) { return s.host < h; });
        return it != services.end() && it->host == host ? &*it : nullptr;
    };

    // The mesh VirtualServices, in a stable order: the workload's namespace first, then by
    // namespace and name. For a host claimed twice the first wins (IST0109 reports the conflict).
    std::vector<const model::VirtualService*> vss;
    for (const auto& vs : config.virtual_services) {
        if (vs.meta.valid && vs.applies_to_mesh() && exported_to(vs.meta.ns, vs.export_to, w.ns)) {
            vss.push_back(&vs);
        }
    }
    std::stable_sort(vss.begin(), vss.end(), [&](const auto* a, const auto* b) {
        return std::make_tuple(a->meta.ns != w.ns, a->meta.ns, a->meta.name) <
               std::make_tuple(b->meta.ns != w.ns, b->meta.ns, b->meta.name);
    });

    // The first of them naming a service's host, found through an index of exact hosts (the
    // earliest VirtualService per host) and the short list of wildcard ones. Under a Sidecar,
    // one index per egress listener, of the VirtualServices that listener imports.
    struct VsIndex {
        std::unordered_map<std::string, std::size_t> by_host;
        std::vector<std::pair<std::string, std::size_t>> wildcards;
    };
    std::map<const EgressScope::Listener*, VsIndex> vs_indexes;
    auto vs_index = [&](const EgressScope::Listener* l) -> const VsIndex& {
        auto [it, fresh] = vs_indexes.try_emplace(l);
        if (!fresh) return it->second;
        for (std::size_t i = 0; i < vss.size(); ++i) {
            if (l && !EgressScope::imports(*l, *vss[i], o)) continue;
            for (const std::string& h : vss[i]->hosts) {
                std::string host = resolve_host(h, vss[i]->meta.ns, o);
                if (host.starts_with("*")) it->second.wildcards.emplace_back(host, i);
                it->second.by_host.emplace(std::move(host), i);
            }
        }
        return it->second;
    };
    auto vs_for = [&](const std::string& host, const EgressScope::Listener* l) -> const model::VirtualService* {
        const VsIndex& index = vs_index(l);
        std::size_t best = vss.size();
        if (auto it = index.by_host.find(host); it != index.by_host.end()) best = it->second;
        for (const auto& [pattern, i] : index.wildcards) {
            if (i >= best) break;
            if (host_matches(pattern, host)) best = i;
        }
        return best < vss.size() ? vss[best] : nullptr;
    };

    for (const ServiceInfo& s : services) {
        for (const ServicePortInfo& p : s.ports) {
            const EgressScope::Listener* listener = nullptr;
            if (egress.scoped()) {
                listener = egress.for_port(p.number);
                if (!listener || !EgressScope::imports(*listener, s.ns, s.host)) {
                    ++scoped_out;
                    continue;
                }
                wanted.emplace(s.host, p.number);
            }
            const model::VirtualService* vs = vs_for(s.host, listener);
            snap::VirtualHost vh;
            vh.name = s.host + ":" + std::to_string(p.number);
            const std::string port = ":" + std::to_string(p.number);
            std::set<std::string> domains{s.host, s.host + port};
            const std::string suffix = "." + s.ns + "." + o.cluster_domain;
            if (s.host.size() > suffix.size() && s.host.ends_with(suffix)) {
                std::string short_name = s.host.substr(0, s.host.size() - suffix.size());
                for (const std::string& d : {short_name + "." + s.ns + ".svc", short_name + "." + s.ns}) {
                    domains.insert(d);
                    domains.insert(d + port);
                }
                if (s.ns == w.ns) {
                    domains.insert(short_name);
                    domains.insert(short_name + port);
                }
            }
            for (const std::string& vip : s.vips) {
                domains.insert(vip);
                domains.insert(vip + port);
            }
            vh.domains.assign(domains.begin(), domains.end());

            auto destination_cluster = [&](const model::Destination& d, const std::string& ns) {
                std::string host = resolve_host(d.host, ns, o);
                uint32_t dport = d.port.value_or(0);
                if (!dport) {
                    const ServiceInfo* target = find_service(host);
                    dport = target && target->ports.size() == 1 ? target->ports.front().number : p.number;
                }
                if (egress.scoped()) wanted.emplace(host, dport);
                return cluster_name(dport, d.subset, host);
            };

            // A VirtualService with tcp[] routes only leaves this port's HTTP routing as it was.
            if (vs && !vs->http.empty()) {
                for (size_t i = 0; i < vs->http.size(); ++i) {
                    const model::HTTPRoute& hr = vs->http[i];
                    snap::Route r;
                    r.name = hr.name.empty() ? "route-" + std::to_string(i) : hr.name;
                    r.virtual_service = vs->meta.name + "." + vs->meta.ns;
                    bool any_block = hr.match.empty();
                    for (const auto& m : hr.match) {
                        if (m.port && m.port != p.number) continue;  // a block for another port
                        // sourceLabels and sourceNamespace are about the caller, which is this
                        // workload: decided here, as istiod does, not by the proxy.
                        if (!m.source_labels.empty() && !selects(m.source_labels, w.labels)) continue;
                        if (!m.source_namespace.empty() && m.source_namespace != w.ns) continue;
                        any_block = true;
                        snap::RouteMatch rm;
                        if (m.uri) rm.uri = matcher(*m.uri, m.ignore_uri_case);
                        if (m.scheme) rm.scheme = matcher(*m.scheme);
                        if (m.method) rm.method = matcher(*m.method);
                        if (m.authority) rm.authority = matcher(*m.authority);
                        for (const auto& [k, v] : m.headers) rm.headers.emplace_back(k, matcher(v));
                        for (const auto& [k, v] : m.query_params) rm.query_params.emplace_back(k, matcher(v));
                        for (const auto& [k, v] : m.without_headers) rm.without_headers.emplace_back(k, matcher(v));
                        rm.port = m.port;
                        rm.source_labels = m.source_labels;
                        rm.source_namespace = m.source_namespace;
                        r.matches.push_back(std::move(rm));
                    }
                    if (!any_block) {  // every block names another port or another caller
                        out.notes.push_back("VirtualService " + vs->meta.name + "." + vs->meta.ns + " http[" +
                                            std::to_string(i) + "] (" + r.name + ") left out of " + vh.name +
                                            ": every match block is for another port, sourceLabels or "
                                            "sourceNamespace than this workload's");
                        continue;
                    }
                    for (const auto& rd : hr.route) {
                        snap::WeightedCluster wc;
                        wc.cluster = destination_cluster(rd.destination, vs->meta.ns);
                        wc.weight = hr.route.size() == 1 && rd.weight == 0 ? 100 : static_cast<uint32_t>(rd.weight);
                        wc.request = header_ops(rd.headers.request);
                        wc.response = header_ops(rd.headers.response);
                        r.clusters.push_back(std::move(wc));
                    }
                    if (hr.direct_response) {
                        r.direct_response = std::make_pair(hr.direct_response->status,
                                                           hr.direct_response->body.value_or(""));
                    }
                    if (hr.redirect) {
                        r.redirect = true;
                        r.redirect_uri = hr.redirect->uri;
                        r.redirect_authority = hr.redirect->authority;
                        r.redirect_scheme = hr.redirect->scheme;
                        r.redirect_port = hr.redirect->port;
                        r.redirect_code = hr.redirect->redirect_code;
                    }
                    if (hr.rewrite) {
                        r.rewrite_uri = hr.rewrite->uri;
                        r.rewrite_authority = hr.rewrite->authority;
                    }
                    if (hr.timeout) r.timeout = millis(*hr.timeout);
                    r.retries = retry_policy(hr.retries);
                    if (hr.fault) {
                        snap::Fault f;
                        if (hr.fault->delay) {
                            f.delay = millis(hr.fault->delay->fixed_delay);
                            f.delay_percent = hr.fault->delay->percentage.value_or(100);
                        }
                        if (hr.fault->abort && hr.fault->abort->http_status) {
                            f.abort_status = static_cast<uint32_t>(*hr.fault->abort->http_status);
                            f.abort_percent = hr.fault->abort->percentage.value_or(100);
                        }
                        if (hr.fault->abort && !hr.fault->abort->grpc_status.empty()) {
                            f.abort_grpc_status = grpc_status_code(hr.fault->abort->grpc_status);
                            // A gRPC abort answers HTTP 200 with the status in a trailers-only reply.
                            if (!f.abort_status) f.abort_status = 200;
                            f.abort_percent = hr.fault->abort->percentage.value_or(100);
                        }
                        r.fault = f;
                    }
                    if (hr.mirror) {
                        r.mirrors.push_back({destination_cluster(*hr.mirror, vs->meta.ns), hr.mirror_percentage.value_or(100)});
                    }
                    for (const auto& m : hr.mirrors) {
                        r.mirrors.push_back({destination_cluster(m.destination, vs->meta.ns), m.percentage.value_or(100)});
                    }
                    r.request_headers = header_ops(hr.headers.request);
                    r.response_headers = header_ops(hr.headers.response);
                    vh.routes.push_back(std::move(r));
                }
            } else {
                snap::Route r;
                r.name = "default";
                r.clusters.push_back({cluster_name(p.number, "", s.host), 100, {}, {}});
                vh.routes.push_back(std::move(r));
            }
            vh.protocol = p.protocol;
            // TCP: the first tcp[] route with a block for this port (and this caller), as Envoy's
            // tcp_proxy takes the first matching route; else the port's own cluster.
            const model::L4Route* tcp_route = nullptr;
            for (size_t i = 0; vs && !tcp_route && i < vs->tcp.size(); ++i) {
                const model::L4Route& tr = vs->tcp[i];
                bool any = tr.match.empty();
                for (const model::L4Match& m : tr.match) {
                    if (m.port && m.port != p.number) continue;
                    if (!m.source_labels.empty() && !selects(m.source_labels, w.labels)) continue;
                    if (!m.source_namespace.empty() && m.source_namespace != w.ns) continue;
                    any = true;
                }
                if (any) tcp_route = &tr;
            }
            if (tcp_route) {
                vh.tcp_virtual_service = vs->meta.name + "." + vs->meta.ns;
                for (const auto& rd : tcp_route->route) {
                    const uint32_t weight =
                        tcp_route->route.size() == 1 && rd.weight == 0 ? 100 : static_cast<uint32_t>(rd.weight);
                    vh.tcp_clusters.push_back({destination_cluster(rd.destination, vs->meta.ns), weight, {}, {}});
                }
            } else {
                vh.tcp_clusters.push_back({cluster_name(p.number, "", s.host), 100, {}, {}});
            }
            // TLS the app originated: every tls[] route with a match block for this port (and this
            // caller), in order, with the server names of those blocks.
            for (size_t i = 0; vs && i < vs->tls.size(); ++i) {
                const model::L4Route& tr = vs->tls[i];
                snap::TlsRoute t;
                for (const model::L4Match& m : tr.match) {
                    if (m.port && m.port != p.number) continue;
                    if (!m.source_labels.empty() && !selects(m.source_labels, w.labels)) continue;
                    if (!m.source_namespace.empty() && m.source_namespace != w.ns) continue;
                    t.sni_hosts.insert(t.sni_hosts.end(), m.sni_hosts.begin(), m.sni_hosts.end());
                }
                if (t.sni_hosts.empty()) continue;
                for (const auto& rd : tr.route) {
                    const uint32_t weight = tr.route.size() == 1 && rd.weight == 0 ? 100 : static_cast<uint32_t>(rd.weight);
                    t.clusters.push_back({destination_cluster(rd.destination, vs->meta.ns), weight, {}, {}});
                }
                vh.tls_routes.push_back(std::move(t));
            }
            if (!vh.tls_routes.empty()) vh.tls_virtual_service = vs->meta.name + "." + vs->meta.ns;
            out.virtual_hosts.push_back(std::move(vh));
        }
    }
    std::sort(out.virtual_hosts.begin(), out.virtual_hosts.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });

    // Clusters: one per service port, and one per port and DestinationRule subset; under a
    // Sidecar only for the ports it imports and the destinations of their routes.
    const RuleIndex rules(config, w.ns, o);
    for (const ServiceInfo& s : services) {
        const model::DestinationRule* dr = nullptr;
        bool looked_up = false;
        for (const ServicePortInfo& p : s.ports) {
            if (egress.scoped() && !wanted.count({s.host, p.number})) continue;
            if (!looked_up) {
                dr = rules.rule_for(s, w, o);
                looked_up = true;
            }
            result.clusters.push_back({&s, &p, dr, nullptr});
            if (dr) {
                for (const model::Subset& sub : dr->subsets) result.clusters.push_back({&s, &p, dr, &sub});
            }
        }
    }
    if (const model::Sidecar* sc = egress.sidecar()) {
        out.notes.push_back("Sidecar " + sc->meta.ns + "/" + sc->meta.name + " scopes egress: " +
                            std::to_string(out.virtual_hosts.size()) + " service port(s) imported, " +
                            std::to_string(scoped_out) + " left out");
        // Istio: the Sidecar's mode replaces the mesh's for the proxies it applies to.
        if (sc->outbound_traffic_policy) out.outbound_traffic_policy = sc->outbound_traffic_policy->mode;
    }

    out.inbound = peer_authentication_for(config, w.ns, w.labels, o);
    out.inbound.authz = authorization_policies(config, w, o, out.notes);
    return result;
}

snap::Cluster make_cluster(const model::Config& config, const ClusterPlan& plan, const Options& o) {
    return make_cluster(config, *plan.service, *plan.port, plan.rule, plan.subset, o);
}

}  // namespace

snap::Snapshot translate(const model::Config& config, const WorkloadRef& w, const Options& o,
                         const std::vector<model::WorkloadEntry>& more_workloads) {
    Translation t = translate_parts(config, w, o, more_workloads);
    snap::Snapshot& out = t.snapshot;
    out.clusters.reserve(t.clusters.size());
    for (const ClusterPlan& plan : t.clusters) out.clusters.push_back(make_cluster(config, plan, o));
    std::sort(out.clusters.begin(), out.clusters.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return std::move(out);
}

SharedTranslation translate_shared(const model::Config& config, const WorkloadRef& w, const Options& o,
                                   const std::vector<model::WorkloadEntry>& more_workloads,
                                   ClusterTexts& texts) {
    Translation t = translate_parts(config, w, o, more_workloads);
    SharedTranslation out;
    out.snapshot = std::move(t.snapshot);
    out.clusters.resize(t.clusters.size());
    auto key_of = [](const ClusterPlan& plan) {
        return ClusterTexts::Key{plan.service->source, plan.service->host, plan.port->number, plan.rule,
                                 plan.subset};
    };
    auto make = [&](const ClusterTexts::Key& key, const ClusterPlan& plan) {
        try {
            snap::Cluster c = make_cluster(config, plan, o);
            auto text = std::make_shared<ClusterTexts::Text>();
            text->json = proxy::snapshot::cluster_json_text(c);
            text->name = std::move(c.name);
            text->service_host = std::move(c.service_host);
            texts.put(key, text);
            return ClusterTexts::TextPtr(std::move(text));
        } catch (...) {
            texts.abandon(key);
            throw;
        }
    };
    // Those another translation is making are taken at the end: two classes translated at once
    // make alternate clusters rather than the same ones.
    std::vector<std::size_t> busy;
    for (std::size_t i = 0; i < t.clusters.size(); ++i) {
        const ClusterTexts::Key key = key_of(t.clusters[i]);
        switch (texts.find_or_claim(key, out.clusters[i], false)) {
            case ClusterTexts::Found::Made: break;
            case ClusterTexts::Found::Claimed: out.clusters[i] = make(key, t.clusters[i]); break;
            case ClusterTexts::Found::Busy: busy.push_back(i); break;
        }
    }
    for (std::size_t i : busy) {
        const ClusterTexts::Key key = key_of(t.clusters[i]);
        if (texts.find_or_claim(key, out.clusters[i], true) == ClusterTexts::Found::Claimed) {
            out.clusters[i] = make(key, t.clusters[i]);
        }
    }
    std::sort(out.clusters.begin(), out.clusters.end(), [](const auto& a, const auto& b) { return a->name < b->name; });
    return out;
}

ClusterTexts::Found ClusterTexts::find_or_claim(const Key& key, TextPtr& text, bool wait) {
    std::unique_lock lock(mu_);
    for (;;) {
        auto [it, fresh] = texts_.try_emplace(key);
        if (fresh) return Found::Claimed;
        if (it->second) {
            stats_.reused += 1;
            text = it->second;
            return Found::Made;
        }
        if (!wait) return Found::Busy;
        cv_.wait(lock);
    }
}

void ClusterTexts::put(const Key& key, TextPtr text) {
    {
        std::lock_guard lock(mu_);
        texts_[key] = std::move(text);
        stats_.made += 1;
    }
    cv_.notify_all();
}

void ClusterTexts::abandon(const Key& key) {
    {
        std::lock_guard lock(mu_);
        texts_.erase(key);
    }
    cv_.notify_all();
}

ClusterTexts::Stats ClusterTexts::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

}  // namespace remora::control::translate
