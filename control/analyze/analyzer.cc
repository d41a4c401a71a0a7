// Istio's analyzers over the resource model: destination hosts and ports, subsets, mesh gateway
// host conflicts, subsets that select no workload, DestinationRules for unknown hosts; and over
// the Kubernetes objects in the input (Services, Pods, Deployments, Namespaces): port names,
// injection, the proxy's UID, Istio annotations.
#include "control/analyze/analyzer.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>

namespace remora::control::analyze {

namespace {

using namespace remora::control::model;

constexpr std::string_view kClusterSuffix = ".svc.cluster.local";

// Go's %q for the plain strings that appear here.
std::string go_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
    std::string out;
    for (const auto& p : parts)
        out += (out.empty() ? "" : sep) + p;
    return out;
}

// Istio's util.ConvertHostToFQDN: a short name lives in `ns`.
std::string to_fqdn(const std::string& ns, const std::string& host) {
    if (host.starts_with("*") || host.find('.') != std::string::npos) return host;
    return host + "." + ns + std::string(kClusterSuffix);
}

std::string strip_wildcard(const std::string& host) {
    return host.starts_with("*") ? host.substr(1) : host;
}

// What a host resolves to: a ServiceEntry or a Kubernetes Service, seen as Istio's analyzers see
// them (a Service becomes a ServiceEntry with its ports and its selector as workload selector).
struct Target {
    std::string ns;
    std::vector<uint32_t> ports;
    Labels selector;
    std::vector<Labels> inline_endpoints;  // ServiceEntry spec.endpoints labels
};

// Istio's InitServiceEntryHostMap + GetDestinationHost, keyed by (visibility scope, FQDN).
class HostIndex {
  public:
    explicit HostIndex(const Config& c) {
        for (const auto& se : c.service_entries) {
            Target t;
            t.ns = se.meta.ns;
            for (const auto& p : se.ports)
                t.ports.push_back(p.number);
            if (se.workload_selector) t.selector = *se.workload_selector;
            for (const auto& e : se.endpoints)
                t.inline_endpoints.push_back(e.labels);
            targets_.push_back(std::move(t));
            std::vector<std::string> scopes;
            bool all = se.export_to.empty() || std::find(se.export_to.begin(), se.export_to.end(),
                                                         "*") != se.export_to.end();
            if (all) {
                scopes = {"*"};
            } else {
                for (const auto& e : se.export_to) {
                    if (e == "~") continue;
                    scopes.push_back(e == "." ? se.meta.ns : e);
                }
            }
            for (const auto& h : se.hosts) {
                for (const auto& s : scopes)
                    add(s, to_fqdn(se.meta.ns, h), targets_.size() - 1);
            }
        }
        for (const auto& svc : c.kube_services) {
            Target t;
            t.ns = svc.meta.ns;
            for (const auto& p : svc.ports)
                t.ports.push_back(p.port);
            t.selector = svc.selector;
            targets_.push_back(std::move(t));
            std::vector<std::string> scopes;
            auto anno = svc.meta.annotations.find("networking.istio.io/exportTo");
            if (anno == svc.meta.annotations.end() || anno->second.empty()) {
                scopes = {"*"};
            } else {
                std::string s = anno->second;
                std::size_t start = 0;
                while (start <= s.size()) {
                    std::size_t comma = s.find(',', start);
                    std::string e = s.substr(
                        start, comma == std::string::npos ? std::string::npos : comma - start);
                    e.erase(0, e.find_first_not_of(" \t"));
                    e.erase(e.find_last_not_of(" \t") + 1);
                    if (!e.empty()) scopes.push_back(e == "." ? svc.meta.ns : e);
                    if (comma == std::string::npos) break;
                    start = comma + 1;
                }
            }
            for (const auto& s : scopes) {
                add(s, to_fqdn(svc.meta.ns, svc.meta.name), targets_.size() - 1);
            }
        }
    }

    const Target* find(const std::string& source_ns, const std::vector<std::string>& export_to,
                       const std::string& host) const {
        std::string fqdn = to_fqdn(source_ns, host);
        if (auto t = get("*", fqdn)) return t;
        if (export_to.empty()) {
            if (auto t = get(source_ns, fqdn)) return t;
        } else {
            for (const auto& e : export_to) {
                if (auto t = get(e == "." ? source_ns : e, fqdn)) return t;
            }
        }
        std::string bare = strip_wildcard(host);
        for (const auto& [key, index] : index_) {
            const auto& [scope, se_host] = key;
            if (!se_host.starts_with("*")) continue;
            if (scope != "*" && scope != source_ns) continue;
            if (bare.ends_with(strip_wildcard(se_host))) return &targets_[index];
        }
        return nullptr;
    }

  private:
    void add(const std::string& scope, const std::string& fqdn, std::size_t index) {
        index_.emplace(std::pair{scope, fqdn}, index);  // the first definition wins
    }
    const Target* get(const std::string& scope, const std::string& fqdn) const {
        auto it = index_.find({scope, fqdn});
        return it == index_.end() ? nullptr : &targets_[it->second];
    }

    std::vector<Target> targets_;
    std::map<std::pair<std::string, std::string>, std::size_t> index_;
};

Message message(const std::string& code, Level level, const std::string& kind, const Metadata& meta,
                std::string text) {
    Message m;
    m.code = code;
    m.level = level;
    m.kind = kind;
    m.ns = meta.ns;
    m.name = meta.name;
    m.where = meta.where;
    m.text = std::move(text);
    return m;
}

std::vector<const Destination*> route_destinations(const VirtualService& vs) {
    std::vector<const Destination*> out;
    for (const auto& h : vs.http) {
        for (const auto& r : h.route)
            out.push_back(&r.destination);
    }
    for (const auto* l4 : {&vs.tcp, &vs.tls}) {
        for (const auto& t : *l4) {
            for (const auto& r : t.route)
                out.push_back(&r.destination);
        }
    }
    return out;
}

std::vector<const Destination*> mirror_destinations(const VirtualService& vs) {
    std::vector<const Destination*> out;
    for (const auto& h : vs.http) {
        if (h.mirror) out.push_back(&*h.mirror);
        for (const auto& m : h.mirrors)
            out.push_back(&m.destination);
    }
    return out;
}

// IST0140: a VirtualService bound to gateways routes to a host without a subset, while another
// VirtualService (for that host) splits it by subsets: those subsets do not apply to what comes
// through the gateway. As upstream, only http routes count.
void ingress_route_rules_not_affected(const Config& c, std::vector<Message>& out) {
    // VirtualServices with subset destinations to one of their own hosts, one entry per such
    // destination.
    std::vector<std::pair<const VirtualService*, const Destination*>> subset_routes;
    for (const auto& vs : c.virtual_services) {
        for (const auto& h : vs.http) {
            for (const auto& r : h.route) {
                if (r.destination.subset.empty()) continue;
                for (const auto& host : vs.hosts) {
                    if (r.destination.host == host) subset_routes.emplace_back(&vs, &r.destination);
                }
            }
        }
    }
    for (const auto& vs : c.virtual_services) {
        if (vs.gateways.empty()) continue;
        for (const auto& h : vs.http) {
            for (const auto& r : h.route) {
                if (!r.destination.subset.empty()) continue;
                for (const auto& [other, d] : subset_routes) {
                    if (d->host != r.destination.host) continue;
                    out.push_back(message("IST0140", Level::Warning, "VirtualService", vs.meta,
                                          "Subset in virtual service " + other->meta.ns + "/" +
                                              other->meta.name +
                                              " has no effect on ingress gateway " + vs.meta.ns +
                                              "/" + vs.meta.name + " requests"));
                }
            }
        }
    }
}

void destination_host(const Config& c, std::vector<Message>& out) {
    HostIndex index(c);
    for (const auto& vs : c.virtual_services) {
        auto check = [&](const Destination* d, const std::string& reftype) {
            const Target* t = index.find(vs.meta.ns, vs.export_to, d->host);
            if (!t) {
                out.push_back(
                    message("IST0101", Level::Error, "VirtualService", vs.meta,
                            "Referenced " + reftype + " not found: " + go_quote(d->host)));
                return;
            }
            if (!d->port) {
                if (t->ports.size() > 1) {
                    std::vector<std::string> ports;
                    for (auto p : t->ports)
                        ports.push_back(std::to_string(p));
                    out.push_back(
                        message("IST0112", Level::Error, "VirtualService", vs.meta,
                                "This VirtualService routes to a service " + go_quote(d->host) +
                                    " that exposes multiple ports [" + join(ports, " ") +
                                    "]. Specifying a port in the destination is required to "
                                    "disambiguate."));
                }
                return;
            }
            if (std::find(t->ports.begin(), t->ports.end(), *d->port) == t->ports.end()) {
                out.push_back(message("IST0101", Level::Error, "VirtualService", vs.meta,
                                      "Referenced host:port not found: " +
                                          go_quote(d->host + ":" + std::to_string(*d->port))));
            }
        };
        for (const auto* d : route_destinations(vs))
            check(d, "host");
        for (const auto* d : mirror_destinations(vs))
            check(d, "mirror host");
    }
    ingress_route_rules_not_affected(c, out);
}

// Istio's util.GetResourceNameFromHost: "name.ns.svc.cluster.local" or a name in `ns`.
std::pair<std::string, std::string> resource_name(const std::string& ns, const std::string& host) {
    if (host.ends_with(kClusterSuffix)) {
        std::string rest = host.substr(0, host.size() - kClusterSuffix.size());
        auto dot = rest.rfind('.');
        if (dot != std::string::npos && dot > 0 && dot + 1 < rest.size()) {
            return {rest.substr(dot + 1), rest.substr(0, dot)};
        }
    }
    return {ns, host};
}

void destination_rule(const Config& c, std::vector<Message>& out) {
    std::set<std::tuple<std::string, std::string, std::string>> subsets;  // ns, name, subset
    for (const auto& dr : c.destination_rules) {
        auto [ns, name] = resource_name(dr.meta.ns, dr.host);
        for (const auto& s : dr.subsets)
            subsets.insert({ns, name, s.name});
    }
    for (const auto& vs : c.virtual_services) {
        auto check = [&](const Destination* d, const std::string& reftype) {
            if (d->subset.empty()) return;
            auto [ns, name] = resource_name(vs.meta.ns, d->host);
            if (subsets.count({ns, name, d->subset})) return;
            out.push_back(message(
                "IST0101", Level::Error, "VirtualService", vs.meta,
                "Referenced " + reftype + " not found: " + go_quote(d->host + "+" + d->subset)));
        };
        for (const auto* d : route_destinations(vs))
            check(d, "host+subset in destinationrule");
        for (const auto* d : mirror_destinations(vs))
            check(d, "mirror+subset in destinationrule");
    }
}

// Istio's host.Name.Matches: equal names, or a wildcard ("*.x") whose suffix the other has.
bool hosts_match(const std::string& a, const std::string& b) {
    bool aw = a.starts_with("*"), bw = b.starts_with("*");
    if (aw && bw) {
        return a.size() < b.size() ? b.substr(1).ends_with(a.substr(1))
                                   : a.substr(1).ends_with(b.substr(1));
    }
    if (aw) return b.ends_with(a.substr(1));
    if (bw) return a.ends_with(b.substr(1));
    return a == b;
}

void conflicting_mesh_gateway_hosts(const Config& c, std::vector<Message>& out) {
    // (scope, fqdn) -> VirtualServices bound to the mesh gateway, in input order. The scope is
    // "*" when exported everywhere, else each namespace exportTo names.
    std::map<std::pair<std::string, std::string>, std::vector<const VirtualService*>> hosts;
    for (const auto& vs : c.virtual_services) {
        if (!vs.applies_to_mesh()) continue;
        std::set<std::string> scopes;
        bool all = vs.export_to.empty() ||
                   std::find(vs.export_to.begin(), vs.export_to.end(), "*") != vs.export_to.end();
        if (all) {
            scopes.insert("*");
        } else {
            for (const auto& e : vs.export_to)
                scopes.insert(e == "." ? vs.meta.ns : e);
        }
        for (const auto& scope : scopes) {
            for (const auto& h : vs.hosts)
                hosts[{scope, to_fqdn(vs.meta.ns, h)}].push_back(&vs);
        }
    }
    std::set<const VirtualService*> reported;
    for (const auto& [scoped, list] : hosts) {
        const auto& [scope, fqdn] = scoped;
        std::vector<const VirtualService*> group = list;
        if (scope != "*") {
            // Visible in its own scope: conflicts with those exported everywhere that match.
            for (const auto& [other, wide] : hosts) {
                if (other.first == "*" && hosts_match(fqdn, other.second))
                    group.insert(group.end(), wide.begin(), wide.end());
            }
        }
        if (group.size() < 2) continue;
        std::vector<std::string> names;
        for (const auto* vs : group)
            names.push_back(vs->meta.ns + "/" + vs->meta.name);
        std::sort(names.begin(), names.end());
        for (const auto* vs : group) {
            if (!reported.insert(vs).second) continue;
            out.push_back(message(
                "IST0109", Level::Error, "VirtualService", vs->meta,
                "The VirtualServices " + join(names, ",") +
                    " associated with mesh gateway define the same host " + scope + "/" + fqdn +
                    " which can lead to undefined behavior. This can be fixed by merging the "
                    "conflicting VirtualServices into a single resource."));
        }
    }
}

bool selects(const Labels& selector, const Labels& labels) {
    return std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
        auto it = labels.find(kv.first);
        return it != labels.end() && it->second == kv.second;
    });
}

// A pod's labels as Istio's label.AugmentLabels sees them: its node's region, zone and subzone,
// and the node's name as kubernetes.io/hostname, so subsets may select by topology.
Labels with_topology(const Config& c, const Workload& w) {
    Labels out = w.labels;
    if (w.node.empty()) return out;
    auto node = c.node_labels.find(w.node);
    if (node != c.node_labels.end()) {
        for (const char* key : {"topology.kubernetes.io/region", "topology.kubernetes.io/zone",
                                "topology.istio.io/subzone"}) {
            auto v = node->second.find(key);
            if (v != node->second.end() && !v->second.empty()) out.emplace(key, v->second);
        }
    }
    out.emplace("kubernetes.io/hostname", w.node);
    return out;
}

void pod_not_selected(const Config& c, std::vector<Message>& out) {
    HostIndex index(c);
    for (const auto& dr : c.destination_rules) {
        const Target* t = index.find(dr.meta.ns, dr.export_to, dr.host);
        if (!t) {
            out.push_back(message("IST0174", Level::Warning, "DestinationRule", dr.meta,
                                  "The host " + dr.host +
                                      " defined in the DestinationRule does not match any "
                                      "services in the mesh."));
            continue;
        }
        for (const auto& subset : dr.subsets) {
            Labels selector = t->selector;
            for (const auto& [k, v] : subset.labels)
                selector[k] = v;
            bool matched =
                std::any_of(c.workloads.begin(), c.workloads.end(), [&](const Workload& w) {
                    return w.ns == t->ns && selects(selector, with_topology(c, w));
                });
            matched |= std::any_of(t->inline_endpoints.begin(), t->inline_endpoints.end(),
                                   [&](const Labels& l) { return selects(selector, l); });
            if (!matched) {
                out.push_back(message("IST0173", Level::Error, "DestinationRule", dr.meta,
                                      "The Subset " + subset.name +
                                          " defined in the DestinationRule does not select any "
                                          "pods. Which may lead to 503 UH (NoHealthyUpstream)."));
            }
        }
    }
}

// destinationrule.CaCertificateAnalyzer: SIMPLE or MUTUAL TLS without caCertificates verifies no
// server certificate (unless a credentialName serves a workload-selected gateway rule).
void ca_certificate(const Config& c, std::vector<Message>& out) {
    auto unverified = [](const ClientTLSSettings& tls, const DestinationRule& dr) {
        return (tls.mode == "SIMPLE" || tls.mode == "MUTUAL") && tls.ca_certificates.empty() &&
               !(!tls.credential_name.empty() && dr.workload_selector);
    };
    for (const auto& dr : c.destination_rules) {
        const std::string name = dr.meta.ns + "/" + dr.meta.name;
        if (dr.traffic_policy && dr.traffic_policy->tls &&
            unverified(*dr.traffic_policy->tls, dr)) {
            out.push_back(message("IST0128", Level::Warning, "DestinationRule", dr.meta,
                                  "DestinationRule " + name + " in namespace " + dr.meta.ns +
                                      " has TLS mode set to " + dr.traffic_policy->tls->mode +
                                      " but no caCertificates are set to validate server "
                                      "identity for host: " +
                                      dr.host));
        }
        if (!dr.traffic_policy) continue;
        for (const auto& p : dr.traffic_policy->port_level_settings) {
            if (!p.tls || !unverified(*p.tls, dr)) continue;
            out.push_back(message("IST0129", Level::Warning, "DestinationRule", dr.meta,
                                  "DestinationRule " + name + " in namespace " + dr.meta.ns +
                                      " has TLS mode set to " + p.tls->mode +
                                      " but no caCertificates are set to validate server "
                                      "identity for host: " +
                                      dr.host + " at port number:" + std::to_string(p.port)));
        }
    }
}

// serviceentry.Analyzer: a TCP (or undeclared) port needs addresses, unless the control plane
// allocates them (status.addresses, or DNS capture with auto-allocation in the mesh config).
void service_entry_addresses(const Config& c, const Options& options, std::vector<Message>& out) {
    auto meta = [&](const char* key) {
        auto it = options.proxy_metadata.find(key);
        return it != options.proxy_metadata.end() && it->second == "true";
    };
    bool auto_allocated = meta("ISTIO_META_DNS_CAPTURE") && (meta("ISTIO_META_DNS_AUTO_ALLOCATE") ||
                                                             meta("PILOT_ENABLE_IP_AUTOALLOCATE"));
    for (const auto& se : c.service_entries) {
        if (!se.addresses.empty() || se.allocated_addresses || auto_allocated) continue;
        for (const auto& p : se.ports) {
            std::string protocol = p.protocol;
            for (char& ch : protocol)
                ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            if (protocol.empty() || protocol == "TCP") {
                out.push_back(message("IST0134", Level::Warning, "ServiceEntry", se.meta,
                                      "ServiceEntry addresses are required for this protocol."));
            }
        }
    }
}

// serviceentry.ConflictingServiceEntryProtocolAnalyzer: ServiceEntries visible in one scope
// (each exportTo namespace, or everywhere) that give one host and port different protocols
// (IST0177); each ServiceEntry is reported once, for the first such host and port (in host,
// port order; upstream's order is Go's map order).
void conflicting_service_entry_protocols(const Config& c, std::vector<Message>& out) {
    using Key = std::tuple<std::string, std::string, uint32_t>;  // scope, host, port
    std::map<Key, std::vector<std::pair<std::string, const ServiceEntry*>>> index;
    for (const auto& se : c.service_entries) {
        std::set<std::string> scopes;
        if (se.export_to.empty() ||
            std::find(se.export_to.begin(), se.export_to.end(), "*") != se.export_to.end()) {
            scopes.insert("*");
        } else {
            for (const auto& e : se.export_to)
                scopes.insert(e == "." ? se.meta.ns : e);
        }
        for (const auto& scope : scopes) {
            for (const auto& h : se.hosts) {
                for (const auto& p : se.ports)
                    index[{scope, h, p.number}].emplace_back(p.protocol, &se);
            }
        }
    }
    std::set<std::string> reported;  // "ns/name"
    for (const auto& [key, list] : index) {
        const auto& [scope, host, port] = key;
        auto entries = list;
        if (scope != "*") {
            auto wide = index.find({"*", host, port});
            if (wide != index.end())
                entries.insert(entries.end(), wide->second.begin(), wide->second.end());
        }
        std::set<std::string> protocols, names;
        for (const auto& [protocol, se] : entries) {
            std::string upper = protocol;
            for (char& ch : upper)
                ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            protocols.insert(upper);
            names.insert(se->meta.ns + "/" + se->meta.name);
        }
        if (protocols.size() < 2) continue;
        const std::string text =
            "Multiple ServiceEntries (" + join({names.begin(), names.end()}, ", ") +
            ") define the same host " + go_quote(host) + " and port " + std::to_string(port) +
            " with conflicting protocols (" + join({protocols.begin(), protocols.end()}, ", ") +
            ").";
        for (const auto& [protocol, se] : entries) {
            if (!reported.insert(se->meta.ns + "/" + se->meta.name).second) continue;
            out.push_back(message("IST0177", Level::Warning, "ServiceEntry", se->meta, text));
        }
    }
}

// auth.AuthorizationPoliciesAnalyzer: a policy whose selector matches no pod in the mesh (in its
// namespace, or anywhere for the root namespace), and source namespaces no Namespace matches.
void authorization_policies(const Config& c, const Options& options, std::vector<Message>& out) {
    auto label = [](const Labels& l, const char* key) -> std::optional<std::string> {
        auto it = l.find(key);
        if (it == l.end()) return std::nullopt;
        return it->second;
    };
    // Istio's util.PodInMesh, and ambient pods.
    auto in_mesh = [&](const Workload& w) {
        if (w.istio_proxy) return true;
        if (auto v = label(w.labels, "sidecar.istio.io/inject")) return *v == "true";
        if (auto v = label(w.annotations, "sidecar.istio.io/inject")) return *v == "true";
        auto ns = c.namespaces.find(w.ns);
        if (ns != c.namespaces.end())
            return label(ns->second, "istio-injection").value_or("") == "enabled";
        return false;
    };
    std::vector<const Workload*> pods;
    for (const auto& w : c.workloads) {
        if (w.kind != "Pod") continue;
        if (in_mesh(w) ||
            label(w.annotations, "ambient.istio.io/redirection").value_or("") == "enabled") {
            pods.push_back(&w);
        }
    }
    auto namespace_match = [](const std::string& ns, const std::string& exp) {
        auto lower = [](std::string s) {
            for (char& ch : s)
                ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            return s;
        };
        if (exp == "*") return true;
        if (exp.starts_with("*")) return ns.ends_with(exp.substr(1));
        if (exp.ends_with("*")) return ns.starts_with(exp.substr(0, exp.size() - 1));
        return lower(ns) == lower(exp);
    };
    for (const auto& ap : c.authorization_policies) {
        const bool mesh_wide = ap.meta.ns == options.root_namespace;
        std::string selector;
        if (ap.selector) {
            for (const auto& [k, v] : *ap.selector)
                selector += (selector.empty() ? "" : ",") + k + "=" + v;
        }
        bool matched = std::any_of(pods.begin(), pods.end(), [&](const Workload* w) {
            if (!mesh_wide && w->ns != ap.meta.ns) return false;
            return !ap.selector || selects(*ap.selector, w->labels);
        });
        if (!matched && (ap.selector || !mesh_wide)) {
            out.push_back(message(
                "IST0127", Level::Warning, "AuthorizationPolicy", ap.meta,
                "No matching workloads for this resource with the following labels: " + selector));
        }
        if (!ap.rules) continue;
        for (const auto& rule : *ap.rules) {
            for (const auto& from : rule.from) {
                for (const auto* list : {&from.namespaces, &from.not_namespaces}) {
                    for (const auto& exp : *list) {
                        bool found = std::any_of(
                            c.namespaces.begin(), c.namespaces.end(),
                            [&](const auto& ns) { return namespace_match(ns.first, exp); });
                        if (!found) {
                            out.push_back(
                                message("IST0101", Level::Error, "AuthorizationPolicy", ap.meta,
                                        "Referenced namespace not found: " + go_quote(exp)));
                        }
                    }
                }
            }
        }
    }
}

// deprecation.DeprecationAnalyzer (IST0002): deprecated fields Istio still reads or ignores.
void deprecation(const Config& c, std::vector<Message>& out) {
    for (const auto& vs : c.virtual_services) {
        for (const auto& h : vs.http) {
            if (h.fault && h.fault->delay && h.fault->delay->legacy_percent > 0) {
                out.push_back(message("IST0002", Level::Warning, "VirtualService", vs.meta,
                                      "Deprecated: HTTPRoute.fault.delay.percent is deprecated; "
                                      "use HTTPRoute.fault.delay.percentage"));
            }
        }
    }
    for (const auto& sc : c.sidecars) {
        if (sc.outbound_traffic_policy && sc.outbound_traffic_policy->egress_proxy) {
            out.push_back(message("IST0002", Level::Warning, "Sidecar", sc.meta,
                                  "Deprecated: OutboundTrafficPolicy.EgressProxy ignored"));
        }
    }
}

// Istio's host.Name.Matches: `a` matches `b` when one's wildcard covers the other.
bool host_matches(const std::string& a, const std::string& b) {
    bool aw = a.starts_with("*"), bw = b.starts_with("*");
    if (aw && bw) {
        return a.size() < b.size() ? b.substr(1).ends_with(a.substr(1))
                                   : a.substr(1).ends_with(b.substr(1));
    }
    if (aw) return b.ends_with(a.substr(1));
    if (bw) return a.ends_with(b.substr(1));
    return a == b;
}

// Go's %v of a []string: "[a b]".
std::string go_list(const std::vector<std::string>& v) {
    return "[" + join(v, " ") + "]";
}

// A label selector as Kubernetes' labels.SelectorFromSet(...).String() writes it.
std::string selector_string(const Labels& l) {
    std::string out;
    for (const auto& [k, v] : l)
        out += (out.empty() ? "" : ",") + k + "=" + v;
    return out;
}

// virtualservice.GatewayAnalyzer: every gateway a VirtualService names exists (IST0101) and
// serves one of its hosts (IST0132).
void gateway_references(const Config& c, std::vector<Message>& out) {
    for (const auto& vs : c.virtual_services) {
        for (const auto& name : vs.gateways) {
            if (name == "mesh") continue;
            auto slash = name.find('/');
            std::string ns = slash == std::string::npos ? vs.meta.ns : name.substr(0, slash);
            std::string gw_name = slash == std::string::npos ? name : name.substr(slash + 1);
            // The Gateways istiod generates for Gateway API ones (kube.IsInternalGatewayReference).
            if (gw_name.find("~istio-autogenerated-k8s-gateway~") != std::string::npos) {
                out.push_back(message("IST0165", Level::Warning, "VirtualService", vs.meta,
                                      "Gateway reference in VirtualService " + vs.meta.ns + "/" +
                                          vs.meta.name +
                                          " is to an implementation-generated internal Gateway: " +
                                          name + "."));
                continue;
            }
            const Gateway* gw = nullptr;
            for (const auto& g : c.gateways)
                if (g.meta.ns == ns && g.meta.name == gw_name) gw = &g;
            // Else a Gateway API Gateway of that name (vsHostInKubernetesGateway): a listener
            // without hostname takes every host.
            const KubeGateway* kube_gw = nullptr;
            if (!gw) {
                for (const auto& g : c.kube_gateways)
                    if (g.meta.ns == ns && g.meta.name == gw_name) kube_gw = &g;
            }
            if (!gw && !kube_gw) {
                out.push_back(message("IST0101", Level::Error, "VirtualService", vs.meta,
                                      "Referenced gateway not found: " + go_quote(name)));
            }
            // The gateway's hosts as the VirtualService's namespace sees them
            // (sanitizeServerHostNamespace, then host.NamesForNamespace).
            std::vector<std::string> hosts;
            if (kube_gw) {
                for (const auto& l : kube_gw->listeners)
                    hosts.push_back(l.hostname.empty() ? "*" : l.hostname);
            }
            if (gw) {
                for (const auto& server : gw->servers) {
                    std::vector<std::string> server_hosts = server.hosts;
                    for (auto& h : server_hosts) {
                        auto cut = h.find('/');
                        if (cut == std::string::npos) continue;
                        std::string hns = h.substr(0, cut), rest = h.substr(cut + 1);
                        if (hns == ".") {
                            h = gw->meta.ns + "/" + rest;
                        } else if (hns == "*") {
                            if (rest == "*") {
                                server_hosts = {"*"};
                                break;
                            }
                            h = rest;
                        }
                    }
                    for (const auto& h : server_hosts) {
                        auto cut = h.find('/');
                        if (cut == std::string::npos) {
                            hosts.push_back(h);
                        } else if (h.substr(0, cut) == vs.meta.ns || h.substr(0, cut) == "*") {
                            hosts.push_back(h.substr(cut + 1));
                        }
                    }
                }
            }
            bool found = false;
            for (const auto& gh : hosts)
                for (const auto& vh : vs.hosts)
                    found |= host_matches(gh, vh);
            if (!found) {
                out.push_back(message("IST0132", Level::Warning, "VirtualService", vs.meta,
                                      "one or more host " + go_list(vs.hosts) +
                                          " defined in VirtualService " + vs.meta.ns + "/" +
                                          vs.meta.name + " not found in Gateway " + ns + "/" +
                                          gw_name + "."));
            }
        }
    }
}

// gateway.ConflictingGatewayAnalyzer: two Gateways for the same gateway workloads (the same
// selector, or selectors one pod satisfies both) and port define the same host with the same
// bind (IST0145). Upstream's bookkeeping is followed, including model.CheckDuplicates marking a
// server's hosts as known once it found no duplicate.
void conflicting_gateways(const Config& c, std::vector<Message>& out) {
    using HostsBind = std::map<std::string, std::string>;
    // "selector~port" -> gateway "ns/name" -> host -> bind.
    std::map<std::string, std::map<std::string, HostsBind>> known;
    auto key_of = [](const std::string& selector, uint32_t port) {
        return selector + "~" + std::to_string(port);
    };
    for (const auto& gw : c.gateways) {
        const std::string name = gw.meta.ns + "/" + gw.meta.name;
        for (const auto& server : gw.servers) {
            HostsBind hb;
            for (const auto& h : server.hosts)
                hb[h] = server.bind;
            known[key_of(selector_string(gw.selector), server.port.number)][name] = hb;
        }
    }
    auto parse_selector = [](const std::string& s) {
        Labels l;
        std::size_t start = 0;
        while (start < s.size()) {
            std::size_t comma = s.find(',', start);
            std::string pair =
                s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            auto eq = pair.find('=');
            if (eq != std::string::npos && pair.find('=', eq + 1) == std::string::npos)
                l[pair.substr(0, eq)] = pair.substr(eq + 1);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        return l;
    };
    for (const auto& gw : c.gateways) {
        const std::string name = gw.meta.ns + "/" + gw.meta.name;
        const std::string selector = selector_string(gw.selector);
        std::vector<std::string> hit;  // keys of `known` for the same gateway workloads
        for (const auto& [key, _] : known) {
            std::string other = key.substr(0, key.rfind('~'));
            bool matched = other == selector;
            if (!matched && (other.find(selector) != std::string::npos ||
                             selector.find(other) != std::string::npos)) {
                Labels other_labels = parse_selector(other);
                for (const auto& w : c.workloads) {
                    if (w.kind == "Pod" && selects(gw.selector, w.labels) &&
                        selects(other_labels, w.labels)) {
                        matched = true;
                        break;
                    }
                }
            }
            if (matched) hit.push_back(key);
        }
        for (const auto& server : gw.servers) {
            const std::string port = std::to_string(server.port.number);
            std::vector<std::string> gateways;
            for (const auto& key : hit) {
                if (key.substr(key.rfind('~') + 1) != port) continue;
                for (auto& [other, hosts_bind] : known[key]) {
                    if (other == name) continue;
                    bool duplicate = false;
                    for (const auto& h : server.hosts) {
                        auto it = hosts_bind.find(h);
                        duplicate |= it != hosts_bind.end() && it->second == server.bind;
                    }
                    if (!duplicate) {
                        for (const auto& h : server.hosts)
                            hosts_bind[h] = server.bind;
                    } else {
                        gateways.push_back(other);
                    }
                }
            }
            if (gateways.empty()) continue;
            std::sort(gateways.begin(), gateways.end());
            out.push_back(message("IST0145", Level::Error, "Gateway", gw.meta,
                                  "Conflict with gateways " + join(gateways, ",") +
                                      " (workload selector " + selector + ", port " + port +
                                      ", hosts " + join(server.hosts, ",") + ")."));
        }
    }
}

// ---- Kubernetes workloads, Services and Namespaces ------------------------------------------

// A message about a resource that is no Istio resource (a Pod, a Namespace, ...).
Message message_about(const std::string& code, Level level, const std::string& kind,
                      const std::string& ns, const std::string& name, const Location& where,
                      std::string text) {
    Metadata meta;
    meta.ns = ns;
    meta.name = name;
    meta.where = where;
    return message(code, level, kind, meta, std::move(text));
}

// Adds `m` unless the same message (code, resource, text) is there: istioctl reports each once
// (diag.Messages.SortedDedupedCopy).
class Reported {
  public:
    explicit Reported(std::vector<Message>& out) : out_(out) {}
    void add(Message m) {
        if (seen_.insert({m.code, m.kind, m.ns, m.name, m.text}).second)
            out_.push_back(std::move(m));
    }

  private:
    std::vector<Message>& out_;
    std::set<std::tuple<std::string, std::string, std::string, std::string, std::string>> seen_;
};

// Kubernetes' own namespaces, whose resources istioctl leaves out when it reads files
// (inject.IgnoredNamespaces).
bool ignored_namespace(const std::string& ns) {
    return ns == "kube-system" || ns == "kube-public" || ns == "kube-node-lease" ||
           ns == "local-path-storage";
}

std::string label_value(const Labels& l, const std::string& key) {
    auto it = l.find(key);
    return it == l.end() ? std::string() : it->second;
}

// util.IsIstioControlPlane: an `istio` label, or `release: istio`.
bool istio_control_plane(const Labels& object_labels) {
    return object_labels.count("istio") > 0 || label_value(object_labels, "release") == "istio";
}

// istioctl's default ingress gateway pod for files (local/defaults.go): labelled
// istio=ingressgateway, an istio-proxy container without image.
Workload default_ingress_pod(const Options& options) {
    Workload pod;
    pod.kind = "Pod";
    pod.name = "istio-ingressgateway-dummypod";
    pod.ns = options.istio_namespace;
    pod.labels = {{"istio", "ingressgateway"}};
    pod.object_labels = pod.labels;
    pod.istio_proxy = true;
    pod.containers.push_back({"istio-proxy", "", std::nullopt, {}});
    return pod;
}

// Istio's protocol.Parse: whether a port name prefix or appProtocol names a protocol it knows.
bool known_protocol(std::string name) {
    for (char& ch : name)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    static const std::set<std::string> kKnown = {"tcp",   "udp",  "grpc",  "grpc-web",
                                                 "http",  "http_proxy", "http2", "https",
                                                 "tls",   "mongo", "redis", "mysql"};
    return kKnown.count(name) > 0;
}

// kube.ConvertProtocol(...).IsUnsupported(): a UDP port is UDP; else appProtocol (when set)
// replaces the name; Kubernetes' kubernetes.io/h2c, ws and wss are known; "grpc-web[-x]" is
// gRPC-Web; else the name up to its first '-' must be a protocol; well-known ports (SMTP 25,
// DNS 53, MySQL 3306, MongoDB 27017) are TCP. This is istioctl's reading for the message; how
// Remora routes a port is control/translate's kube_port_protocol.
bool unsupported_protocol(const KubeServicePort& p) {
    if (p.protocol == "UDP") return false;
    std::string name = p.name;
    if (!p.app_protocol.empty()) {
        name = p.app_protocol;
        if (name == "kubernetes.io/h2c" || name == "kubernetes.io/ws" ||
            name == "kubernetes.io/wss") {
            return false;
        }
    }
    std::string head = name.substr(0, 8);
    for (char& ch : head)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (head == "grpc-web") return false;
    if (known_protocol(name.substr(0, name.find('-')))) return false;
    return !(p.port == 25 || p.port == 53 || p.port == 3306 || p.port == 27017);
}

// service.PortNameAnalyzer: a Service port whose protocol Istio cannot tell from its name or
// appProtocol (IST0118; protocol detection applies); for an ExternalName Service, such a port or
// one named "tcp" (IST0150). Istio's own Services and managed gateways' are left out.
void port_names(const Config& c, std::vector<Message>& out) {
    for (const auto& svc : c.kube_services) {
        if (ignored_namespace(svc.meta.ns) || istio_control_plane(svc.meta.labels)) continue;
        const std::string managed = label_value(svc.meta.labels, "gateway.istio.io/managed");
        if (managed == "istio.io-gateway-controller" || managed == "istio.io-mesh-controller" ||
            managed == "istio.io-eastwest-controller") {
            continue;
        }
        const bool external_name = svc.type == "ExternalName";
        for (const auto& p : svc.ports) {
            if (!unsupported_protocol(p) && !(p.name == "tcp" && external_name)) continue;
            if (external_name) {
                out.push_back(message("IST0150", Level::Warning, "Service", svc.meta,
                                      "Port name for ExternalName service is invalid. Proxy may "
                                      "prevent tcp named ports and unmatched traffic for ports "
                                      "serving TCP protocol from being forwarded correctly"));
                continue;
            }
            // Go's intstr String(): an absent targetPort is the number 0.
            const std::string target = p.target_port_text.empty() ? "0" : p.target_port_text;
            out.push_back(message("IST0118", Level::Info, "Service", svc.meta,
                                  "Port name " + p.name + " (port: " + std::to_string(p.port) +
                                      ", targetPort: " + target +
                                      ") doesn't follow the naming convention of Istio port."));
        }
    }
}

// gateway.CertificateAnalyzer: two Gateways for the same workloads (the other's selector has
// every label of this one's; an empty selector takes every Gateway) whose TLS servers use the
// same credentialName, or the same serverCertificate and privateKey (IST0138).
void gateway_certificates(const Config& c, std::vector<Message>& out) {
    auto same_certificate = [](const ServerTLSSettings& a, const ServerTLSSettings& b) {
        if (!a.credential_name.empty() && !b.credential_name.empty())
            return a.credential_name == b.credential_name;
        if (a.credential_name.empty() && b.credential_name.empty() &&
            !a.server_certificate.empty() && a.server_certificate == b.server_certificate &&
            !a.private_key.empty() && !b.private_key.empty()) {
            return a.private_key == b.private_key;
        }
        return false;
    };
    Reported reported(out);
    for (const auto& gw : c.gateways) {
        const std::string name = gw.meta.ns + "/" + gw.meta.name;
        for (const auto& other : c.gateways) {
            if (&other == &gw || !selects(gw.selector, other.selector)) continue;
            const std::string other_name = other.meta.ns + "/" + other.meta.name;
            if (other_name == name) continue;
            for (const auto& server : gw.servers) {
                for (const auto& other_server : other.servers) {
                    if (!server.tls || !other_server.tls) continue;
                    if (!same_certificate(*server.tls, *other_server.tls)) continue;
                    reported.add(message("IST0138", Level::Warning, "Gateway", gw.meta,
                                         "Duplicate certificate in multiple gateways " +
                                             go_list({name, other_name}) +
                                             " may cause 404s if clients re-use HTTP2 "
                                             "connections."));
                }
            }
        }
    }
}

// jwt.ToRoutingClaim(...).Match: "@request.auth.claims.a.b" or "@request.auth.claims[a][b]".
bool jwt_claim_header(const std::string& header) {
    static constexpr std::string_view kPrefix = "@request.auth.claims";
    if (header.size() < kPrefix.size()) return false;
    std::string head = header.substr(0, kPrefix.size());
    for (char& ch : head)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (head != kPrefix) return false;
    const std::string rest = header.substr(kPrefix.size());
    if (rest.size() > 1 && rest[0] == '.') return true;
    return rest.size() > 2 && rest.front() == '[' && rest.back() == ']';
}

// virtualservice.JWTClaimRouteAnalyzer: a VirtualService that routes on JWT claims
// (@request.auth.claims headers) through a gateway whose pods no RequestAuthentication (of the
// pod's namespace or istio-system) applies to: there are no claims to route on (IST0149).
void jwt_claim_routes(const Config& c, const Options& options, std::vector<Message>& out) {
    std::map<std::string, std::vector<Labels>> authn_selectors;  // namespace -> matchLabels
    for (const auto& ra : c.request_authentications)
        authn_selectors[ra.meta.ns].push_back(ra.selector.value_or(Labels{}));
    const Workload default_pod = default_ingress_pod(options);
    std::vector<const Workload*> pods = {&default_pod};
    for (const auto& w : c.workloads)
        if (w.kind == "Pod" && !ignored_namespace(w.ns)) pods.push_back(&w);
    Reported reported(out);
    for (const auto& vs : c.virtual_services) {
        std::string key;
        for (const auto& h : vs.http) {
            for (const auto& m : h.match) {
                for (const auto* headers : {&m.headers, &m.without_headers}) {
                    for (const auto& [name, _] : *headers)
                        if (key.empty() && jwt_claim_header(name)) key = name;
                }
            }
        }
        if (key.empty()) continue;
        for (const auto& gw_ref : vs.gateways) {
            if (gw_ref == "mesh") continue;
            auto slash = gw_ref.find('/');
            const std::string ns = slash == std::string::npos ? vs.meta.ns : gw_ref.substr(0, slash);
            const std::string name = slash == std::string::npos ? gw_ref : gw_ref.substr(slash + 1);
            const Gateway* gw = nullptr;
            for (const auto& g : c.gateways)
                if (g.meta.ns == ns && g.meta.name == name) gw = &g;
            if (!gw) continue;  // the GatewayAnalyzer reports it (IST0101)
            for (const Workload* pod : pods) {
                if (!selects(gw->selector, pod->labels)) continue;
                bool authenticated = false;
                for (const std::string& ra_ns : {std::string("istio-system"), pod->ns}) {
                    auto it = authn_selectors.find(ra_ns);
                    if (it == authn_selectors.end()) continue;
                    for (const Labels& s : it->second)
                        authenticated |= selects(s, pod->labels);
                }
                if (authenticated) continue;
                reported.add(message(
                    "IST0149", Level::Error, "VirtualService", vs.meta,
                    "The virtual service uses the JWT claim based routing (key: " + key +
                        ") but found no request authentication for the gateway (" + ns + "/" +
                        name + ") pod (" + pod->name +
                        "). The request authentication must first be applied for the gateway "
                        "pods to validate the JWT token and make the claims available for "
                        "routing."));
            }
        }
    }
}

// deployment.ApplicationUIDAnalyzer (applicationUID.Analyzer): a Pod or Deployment whose pod
// runs as UID 1337, the sidecar proxy's, at pod level or in an application container (IST0144).
void application_uid(const Config& c, std::vector<Message>& out) {
    constexpr int64_t kProxyUid = 1337;
    Reported reported(out);
    for (const auto& w : c.workloads) {
        if (w.kind != "Pod" && w.kind != "Deployment") continue;
        if (ignored_namespace(w.ns) || istio_control_plane(w.object_labels)) continue;
        bool reserved = w.run_as_user == kProxyUid;
        for (const auto& container : w.containers) {
            if (container.name == "istio-proxy" || container.name == "istio-operator") continue;
            reserved |= container.run_as_user == kProxyUid;
        }
        if (!reserved) continue;
        reported.add(message_about("IST0144", Level::Warning, w.kind, w.ns, w.name, w.where,
                                   "User ID (UID) 1337 is reserved for the sidecar proxy."));
    }
}

// injection.Analyzer: Namespaces without an injection label (IST0102, or IST0148 when the
// injector's ConfigMap enables namespaces by default), with more than one kind of injection
// label (IST0123), and Pods of injected namespaces without an istio-proxy container (IST0103).
void injection(const Config& c, std::vector<Message>& out) {
    bool by_default = false;  // as upstream, what the last injector ConfigMap found says
    std::set<std::string> injected;
    for (const auto& [ns, labels] : c.namespaces) {
        if (ns == "istio-system" || ignored_namespace(ns)) continue;
        auto where_it = c.namespace_where.find(ns);
        const Location where = where_it == c.namespace_where.end() ? Location{} : where_it->second;
        auto injection_label = labels.find("istio-injection");
        auto revision = labels.find("istio.io/rev");
        const bool has_injection = injection_label != labels.end();
        const std::string injection = has_injection ? injection_label->second : "";
        std::vector<std::string> istio_labels;
        if (has_injection) istio_labels.push_back("istio-injection=" + injection);
        for (const char* key : {"istio.io/rev", "istio.io/dataplane-mode"}) {
            auto it = labels.find(key);
            if (it != labels.end() && (!has_injection || injection == "enabled"))
                istio_labels.push_back(std::string(key) + "=" + it->second);
        }
        if (istio_labels.size() > 1) {
            out.push_back(message_about("IST0123", Level::Warning, "Namespace", "", ns, where,
                                        "The namespace has more than one type of injection "
                                        "labels " +
                                            go_list(istio_labels) +
                                            ", which may lead to undefined behavior. Make sure "
                                            "only one injection label exists."));
        }
        if (label_value(labels, "istio.io/dataplane-mode") == "ambient") continue;
        const std::string rev = revision == labels.end() ? "" : revision->second;
        const std::string injector = rev.empty() || rev == "default"
                                         ? "istio-sidecar-injector"
                                         : "istio-sidecar-injector-" + rev;
        auto cm = c.injector_namespaces_by_default.find(injector);
        if (cm != c.injector_namespaces_by_default.end()) by_default = cm->second;
        if (injection.empty() && revision == labels.end()) {
            if (by_default) {
                out.push_back(message_about("IST0148", Level::Info, "Namespace", "", ns, where,
                                            "is enabled for Istio injection, as Istio is "
                                            "installed with enableNamespacesByDefault as true."));
                continue;
            }
            out.push_back(message_about(
                "IST0102", Level::Info, "Namespace", "", ns, where,
                "The namespace is not enabled for Istio injection. Run 'kubectl label namespace " +
                    ns + " istio-injection=enabled' to enable it, or 'kubectl label namespace " +
                    ns + " istio-injection=disabled' to explicitly mark it as not needing "
                         "injection."));
            continue;
        }
        if (injection == "enabled") injected.insert(ns);
    }
    for (const auto& w : c.workloads) {
        if (w.kind != "Pod" || !injected.count(w.ns)) continue;
        std::string inject = label_value(w.annotations, "sidecar.istio.io/inject");
        if (w.labels.count("sidecar.istio.io/inject")) inject = w.labels.at("sidecar.istio.io/inject");
        for (char& ch : inject)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (inject == "false" || w.host_network) continue;
        // The first istio-proxy container (containers, then init containers) must have an image.
        std::vector<Container> all = w.containers;
        all.insert(all.end(), w.init_containers.begin(), w.init_containers.end());
        auto proxy = std::find_if(all.begin(), all.end(),
                                  [](const Container& k) { return k.name == "istio-proxy"; });
        if (proxy != all.end() && !proxy->image.empty()) continue;
        out.push_back(message_about("IST0103", Level::Warning, "Pod", w.ns, w.name, w.where,
                                    "The pod " + w.ns + "/" + w.name +
                                        " is missing the Istio proxy. This can often be resolved "
                                        "by restarting or redeploying the workload."));
    }
}

// util.DeploymentInMesh / PodInMesh: an istio-proxy container with an image, else the
// sidecar.istio.io/inject label, then annotation ("true"), else the Namespace's istio-injection
// label (when the Namespace is in the input).
bool workload_in_mesh(const Config& c, const Workload& w, bool with_init_containers) {
    std::vector<Container> all = w.containers;
    if (with_init_containers)
        all.insert(all.end(), w.init_containers.begin(), w.init_containers.end());
    auto proxy = std::find_if(all.begin(), all.end(),
                              [](const Container& k) { return k.name == "istio-proxy"; });
    if (proxy != all.end() && !proxy->image.empty()) return true;
    for (const Labels* l : {&w.labels, &w.annotations}) {
        auto it = l->find("sidecar.istio.io/inject");
        if (it != l->end()) return it->second == "true";
    }
    auto ns = c.namespaces.find(w.ns);
    return ns != c.namespaces.end() && label_value(ns->second, "istio-injection") == "enabled";
}

// deployment.ServiceAssociationAnalyzer (deployment.MultiServiceAnalyzer): the Services that
// select a Deployment's pods (in its namespace, with a selector) in the mesh give one port two
// protocols (IST0116), or one targetPort two ports (IST0137).
void service_association(const Config& c, std::vector<Message>& out) {
    for (const auto& w : c.workloads) {
        if (w.kind != "Deployment" || ignored_namespace(w.ns)) continue;
        if (label_value(w.object_labels, "gateway.istio.io/managed") == "istio.io-mesh-controller")
            continue;  // a waypoint
        if (!workload_in_mesh(c, w, false)) continue;
        // port -> protocol -> Services; targetPort -> port -> Service (the last one)
        std::map<uint32_t, std::map<std::string, std::vector<std::string>>> protocols;
        std::map<std::string, std::map<uint32_t, std::string>> target_ports;
        for (const auto& svc : c.kube_services) {
            if (svc.meta.ns != w.ns || svc.selector.empty() || !selects(svc.selector, w.labels))
                continue;
            const std::string name = svc.meta.ns + "/" + svc.meta.name;
            for (const auto& p : svc.ports) {
                protocols[p.port][p.protocol.empty() ? "TCP" : p.protocol].push_back(name);
                std::string target = p.target_port_text;
                if (target.empty() || target == "0") target = std::to_string(p.port);
                target_ports[target][p.port] = name;
            }
        }
        for (const auto& [port, by_protocol] : protocols) {
            if (by_protocol.size() < 2) continue;
            std::vector<std::string> names;
            for (const auto& [_, list] : by_protocol)
                names.insert(names.end(), list.begin(), list.end());
            std::sort(names.begin(), names.end());
            out.push_back(message_about("IST0116", Level::Warning, "Deployment", w.ns, w.name,
                                        w.where,
                                        "This deployment " + w.name +
                                            " is associated with multiple services using port " +
                                            std::to_string(port) +
                                            " but different protocols: " + go_list(names)));
        }
        for (const auto& [target, by_port] : target_ports) {
            if (by_port.size() < 2) continue;
            std::vector<std::string> names, ports;
            for (const auto& [port, name] : by_port) {
                names.push_back(name);
                ports.push_back(std::to_string(port));
            }
            std::sort(names.begin(), names.end());
            out.push_back(message_about("IST0137", Level::Warning, "Deployment", w.ns, w.name,
                                        w.where,
                                        "This deployment " + w.name +
                                            " is associated with multiple services " +
                                            go_list(names) + " using targetPort " +
                                            go_quote(target) + " but different ports: " +
                                            go_list(ports) + "."));
        }
    }
}

// authn.BlockedCIDRsAnalyzer: RequestAuthentications exist while istiod (a Deployment labelled
// app=istiod) has no BLOCKED_CIDRS_IN_JWKS_URIS, so jwksUri fetches may reach any network
// (IST0175). Remora's control plane fetches no JWKS for RequestAuthentication yet; the message is
// about an Istio control plane in the input.
void blocked_cidrs(const Config& c, std::vector<Message>& out) {
    std::vector<std::string> names;
    for (const auto& ra : c.request_authentications)
        names.push_back(ra.meta.ns + "/" + ra.meta.name);
    if (names.empty()) return;
    std::sort(names.begin(), names.end());
    constexpr std::size_t kShown = 5;
    std::string shown = join({names.begin(), names.begin() + static_cast<std::ptrdiff_t>(
                                                               std::min(kShown, names.size()))},
                             ", ");
    if (names.size() > kShown)
        shown += ", and " + std::to_string(names.size() - kShown) + " more";
    for (const auto& w : c.workloads) {
        if (w.kind != "Deployment" || ignored_namespace(w.ns)) continue;
        if (label_value(w.object_labels, "app") != "istiod") continue;
        bool configured = std::any_of(w.containers.begin(), w.containers.end(),
                                      [](const Container& k) {
                                          auto it = k.env.find("BLOCKED_CIDRS_IN_JWKS_URIS");
                                          return it != k.env.end() && !it->second.empty();
                                      });
        if (configured) continue;
        out.push_back(message_about(
            "IST0175", Level::Warning, "Deployment", w.ns, w.name, w.where,
            "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but " + std::to_string(names.size()) +
                " RequestAuthentication resource(s) exist (" + shown +
                "). Consider configuring it to restrict JWKS URI fetches to trusted networks."));
    }
}

// ---- annotations.K8sAnalyzer ----------------------------------------------------------------

struct IstioAnnotation {
    const char* name;
    bool deprecated;
    const char* resources;  // the kinds it attaches to, ", "-joined; "Any" for every kind
};

constexpr IstioAnnotation kIstioAnnotations[] = {
#include "control/analyze/istio_annotations.inc"
};

// Go's strconv.ParseUint(value, 10, bits) error, or "" when `value` parses.
std::string go_parse_uint_error(const std::string& value, int bits) {
    const std::string quoted = "strconv.ParseUint: parsing " + go_quote(value) + ": ";
    if (value.empty() ||
        !std::all_of(value.begin(), value.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        return quoted + "invalid syntax";
    }
    const uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
    uint64_t v = 0;
    for (char ch : value) {
        uint64_t digit = static_cast<uint64_t>(ch - '0');
        if (v > (max - digit) / 10) return quoted + "value out of range";
        v = v * 10 + digit;
    }
    return "";
}

std::string trim_space(const std::string& s) {
    auto b = s.find_first_not_of(" \t\n\r\v\f");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\n\r\v\f") - b + 1);
}

// inject.parsePorts (comma-separated port numbers; "" is none).
std::string go_port_list_error(const std::string& parameter, const std::string& ports) {
    const std::string list = trim_space(ports);
    if (list.empty()) return "";
    std::size_t start = 0;
    while (true) {
        std::size_t comma = list.find(',', start);
        std::string port = list.substr(start, comma == std::string::npos ? comma : comma - start);
        if (std::string e = go_parse_uint_error(trim_space(port), 16); !e.empty()) {
            return parameter + " invalid: failed parsing port '" + port +
                   "': failed parsing port '" + port + "': " + e;
        }
        if (comma == std::string::npos) return "";
        start = comma + 1;
    }
}

// inject.validateCIDRList: each comma-separated entry a prefix (netip.ParsePrefix; the reasons
// are Go's for the common mistakes, not all of its texts).
std::string go_cidr_list_error(const std::string& parameter, const std::string& cidrs) {
    if (cidrs.empty()) return "";
    std::size_t start = 0;
    while (true) {
        std::size_t comma = cidrs.find(',', start);
        std::string cidr = cidrs.substr(start, comma == std::string::npos ? comma : comma - start);
        std::string reason;
        auto slash = cidr.find('/');
        if (slash == std::string::npos) {
            reason = "no '/'";
        } else {
            const std::string addr = cidr.substr(0, slash), bits = cidr.substr(slash + 1);
            unsigned char buf[16];
            const bool v4 = inet_pton(AF_INET, addr.c_str(), buf) == 1;
            const bool v6 = !v4 && inet_pton(AF_INET6, addr.c_str(), buf) == 1;
            const bool digits =
                !bits.empty() && bits.size() <= 3 &&
                std::all_of(bits.begin(), bits.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
            if (!v4 && !v6) {
                reason = "ParseAddr(" + go_quote(addr) + "): unable to parse IP";
            } else if (!digits || (bits.size() > 1 && bits[0] == '0') ||
                       std::stoi(bits) > (v4 ? 32 : 128)) {
                reason = "bad bits after slash: " + go_quote(bits);
            }
        }
        if (!reason.empty()) {
            return parameter + " invalid: failed parsing cidr '" + cidr +
                   "': netip.ParsePrefix(" + go_quote(cidr) + "): " + reason;
        }
        if (comma == std::string::npos) return "";
        start = comma + 1;
    }
}

// netutil.ValidateInterfaceNames.
std::string go_interface_names_error(const std::string& interfaces) {
    if (interfaces.empty()) return "";
    std::size_t start = 0;
    while (true) {
        std::size_t comma = interfaces.find(',', start);
        std::string name = trim_space(
            interfaces.substr(start, comma == std::string::npos ? comma : comma - start));
        if (name.empty()) return "empty interface name";
        if (name.size() > 15) return "interface name " + go_quote(name) + " too long (max 15 chars)";
        bool ok = std::isalpha(static_cast<unsigned char>(name[0])) &&
                  std::all_of(name.begin(), name.end(), [](char ch) {
                      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
                             ch == '.' || ch == '-';
                  });
        if (!ok) return "interface name " + go_quote(name) + " contains invalid characters";
        if (comma == std::string::npos) return "";
        start = comma + 1;
    }
}

// Kubernetes' resource.ParseQuantity, as far as its syntax goes.
std::string go_quantity_error(const std::string& value) {
    if (std::any_of(value.begin(), value.end(),
                    [](char ch) { return std::iscntrl(static_cast<unsigned char>(ch)); })) {
        return "value contains control characters";
    }
    static const std::string kWrong =
        "quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    std::size_t i = 0;
    if (i < value.size() && (value[i] == '+' || value[i] == '-')) ++i;
    std::size_t digits = 0, dots = 0;
    for (; i < value.size() && (std::isdigit(static_cast<unsigned char>(value[i])) ||
                                value[i] == '.');
         ++i) {
        (value[i] == '.' ? dots : digits)++;
    }
    if (digits == 0 || dots > 1) return kWrong;
    const std::string suffix = value.substr(i);
    static const std::set<std::string> kSuffixes = {"",   "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n",
                                                    "u",  "m",  "k",  "M",  "G",  "T",  "P",  "E"};
    if (kSuffixes.count(suffix)) return "";
    if ((suffix[0] == 'e' || suffix[0] == 'E') && suffix.size() > 1) {
        std::size_t j = 1;
        if (suffix[j] == '+' || suffix[j] == '-') ++j;
        if (j < suffix.size() &&
            std::all_of(suffix.begin() + static_cast<std::ptrdiff_t>(j), suffix.end(),
                        [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
            return "";
        }
    }
    return kWrong;
}

// inject.AnnotationValidation: the problem with an annotation's value, "" when fine (or not
// checked: proxy.istio.io/config, a ProxyConfig, is not validated here).
std::string annotation_value_error(const std::string& name, const std::string& value) {
    if (name == "sidecar.istio.io/interceptionMode") {
        if (value == "REDIRECT" || value == "TPROXY" || value == "NONE") return "";
        return "interceptionMode invalid, use REDIRECT,TPROXY,NONE: " + value;
    }
    if (name == "status.sidecar.istio.io/port") {
        if (std::string e = go_parse_uint_error(trim_space(value), 16); !e.empty())
            return "excludeInboundPorts invalid: failed parsing port '" + value + "': " + e;
        return "";
    }
    if (name == "readiness.status.sidecar.istio.io/initialDelaySeconds" ||
        name == "readiness.status.sidecar.istio.io/periodSeconds" ||
        name == "readiness.status.sidecar.istio.io/failureThreshold") {
        return go_parse_uint_error(value, 32);
    }
    if (name == "traffic.sidecar.istio.io/includeOutboundIPRanges") {
        return value == "*" ? "" : go_cidr_list_error("includeIPRanges", value);
    }
    if (name == "traffic.sidecar.istio.io/excludeOutboundIPRanges") {
        return go_cidr_list_error("excludeIPRanges", value);
    }
    if (name == "traffic.sidecar.istio.io/includeInboundPorts") {
        return value == "*" ? "" : go_port_list_error("includeInboundPorts", value);
    }
    if (name == "traffic.sidecar.istio.io/excludeInboundPorts") {
        return go_port_list_error("excludeInboundPorts", value);
    }
    if (name == "traffic.sidecar.istio.io/excludeOutboundPorts") {
        return go_port_list_error("excludeOutboundPorts", value);
    }
    if (name == "traffic.sidecar.istio.io/excludeInterfaces" ||
        name == "traffic.sidecar.istio.io/kubevirtInterfaces" ||
        name == "istio.io/reroute-virtual-interfaces") {
        return go_interface_names_error(value);
    }
    if (name == "prometheus.istio.io/merge-metrics") {
        static const std::set<std::string> kBools = {"1", "t", "T", "TRUE", "true", "True",
                                                     "0", "f", "F", "FALSE", "false", "False"};
        return kBools.count(value) ? "" : "strconv.ParseBool: parsing " + go_quote(value) +
                                              ": invalid syntax";
    }
    if (name == "sidecar.istio.io/proxyCPU" || name == "sidecar.istio.io/proxyMemory" ||
        name == "sidecar.istio.io/proxyCPULimit" || name == "sidecar.istio.io/proxyMemoryLimit") {
        return go_quantity_error(value);
    }
    return "";
}

// annotations.K8sAnalyzer: Istio annotations (a domain ending in istio.io, and
// kubernetes.io/ingress.class) on Namespaces, Services, Pods and Deployments that Istio does not
// know (IST0108), that belong on another kind (IST0107), that are deprecated (IST0135) or whose
// value is invalid (IST0125).
void annotations(const Config& c, std::vector<Message>& out) {
    Reported reported(out);
    auto check = [&](const std::string& kind, const std::string& ns, const std::string& name,
                     const Location& where, const Labels& annotations, const Labels& labels) {
        for (const auto& [ann, value] : annotations) {
            const std::string domain = ann.substr(0, ann.find('/'));
            if (ann != "kubernetes.io/ingress.class" && !domain.ends_with("istio.io")) continue;
            // Set by Istio itself (maturity.AlwaysIgnoredAnnotations).
            if (ann == "sidecar.istio.io/status" || ann == "gateway.istio.io/controller-version" ||
                ann == "istio.io/rev") {
                continue;
            }
            const IstioAnnotation* def = nullptr;
            for (const auto& a : kIstioAnnotations)
                if (ann == a.name) def = &a;
            auto report = [&](const char* code, Level level, std::string text) {
                reported.add(message_about(code, level, kind, ns, name, where, std::move(text)));
            };
            if (!def) {
                report("IST0108", Level::Warning, "Unknown annotation: " + ann);
                continue;
            }
            if (def->deprecated &&
                !(ann == "sidecar.istio.io/inject" && labels.count("sidecar.istio.io/inject"))) {
                const std::string extra = ann == "sidecar.istio.io/inject"
                                              ? " in favor of the \"sidecar.istio.io/inject\" label"
                                              : "";
                report("IST0135", Level::Info,
                       "Annotation " + go_quote(ann) + " has been deprecated" + extra +
                           " and may not work in future Istio versions.");
            }
            const std::string resources = def->resources;
            std::vector<std::string> kinds;
            for (std::size_t start = 0; start < resources.size();) {
                std::size_t comma = resources.find(", ", start);
                kinds.push_back(resources.substr(start, comma - start));
                if (comma == std::string::npos) break;
                start = comma + 2;
            }
            if (std::find(kinds.begin(), kinds.end(), "Any") != kinds.end()) continue;
            if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
                report("IST0107", Level::Warning,
                       "Misplaced annotation: " + ann + " can only be applied to " + resources);
                continue;
            }
            if (std::string problem = annotation_value_error(ann, value); !problem.empty()) {
                report("IST0125", Level::Warning, "Invalid annotation " + ann + ": " + problem);
            }
        }
    };
    for (const auto& [ns, annotations] : c.namespace_annotations) {
        if (ignored_namespace(ns)) continue;
        auto where = c.namespace_where.find(ns);
        auto labels = c.namespaces.find(ns);
        check("Namespace", "", ns, where == c.namespace_where.end() ? Location{} : where->second,
              annotations, labels == c.namespaces.end() ? Labels{} : labels->second);
    }
    for (const auto& svc : c.kube_services) {
        if (ignored_namespace(svc.meta.ns)) continue;
        check("Service", svc.meta.ns, svc.meta.name, svc.meta.where, svc.meta.annotations,
              svc.meta.labels);
    }
    for (const auto& w : c.workloads) {
        if ((w.kind != "Pod" && w.kind != "Deployment") || ignored_namespace(w.ns)) continue;
        check(w.kind, w.ns, w.name, w.where, w.object_annotations, w.object_labels);
    }
}

// gateway.IngressGatewayPortAnalyzer: a Gateway's selector matches pods (IST0101), and each of
// its server ports is offered by a Service that selects those pods (IST0162): as a target port,
// or as a Service port when the target port is not a number. For files only, istioctl adds a
// default ingress gateway (local/defaults.go): a Pod labelled istio=ingressgateway and the
// istio-ingressgateway Service (80, 443, 31400, 15443) in the istio namespace; so does this.
void ingress_gateway_ports(const Config& c, const Options& options, std::vector<Message>& out) {
    const Workload default_pod = default_ingress_pod(options);
    KubeService default_service;
    default_service.meta.name = "istio-ingressgateway";
    default_service.meta.ns = options.istio_namespace;
    default_service.selector = {{"istio", "ingressgateway"}};
    for (uint32_t p : {80u, 443u, 31400u, 15443u})
        default_service.ports.push_back({"", "TCP", "", p, p, std::to_string(p)});
    std::vector<const Workload*> pods = {&default_pod};
    for (const auto& w : c.workloads)
        if (w.kind == "Pod") pods.push_back(&w);
    std::vector<const KubeService*> services = {&default_service};
    for (const auto& svc : c.kube_services)
        services.push_back(&svc);

    for (const auto& gw : c.gateways) {
        std::set<uint32_t> target_ports, service_ports;
        bool matched = false;
        for (const Workload* pod : pods) {
            if (!selects(gw.selector, pod->labels)) continue;
            matched = true;
            for (const KubeService* svc : services) {
                // Services select pods of their own namespace (an empty selector selects all,
                // as klabels.SelectorFromSet({}) does upstream).
                if (svc->meta.ns != pod->ns || !selects(svc->selector, pod->labels)) continue;
                for (const auto& port : svc->ports) {
                    // Upstream counts TCP ports; a port without protocol is TCP in Kubernetes.
                    if (!port.protocol.empty() && port.protocol != "TCP") continue;
                    if (port.target_port != 0) {
                        target_ports.insert(port.target_port);
                        service_ports.insert(port.port);
                    } else {
                        target_ports.insert(port.port);
                    }
                }
            }
        }
        const std::string selector = selector_string(gw.selector);
        if (!matched) {
            out.push_back(message("IST0101", Level::Error, "Gateway", gw.meta,
                                  "Referenced selector not found: " + go_quote(selector)));
            continue;
        }
        for (const auto& server : gw.servers) {
            const uint32_t number = server.port.number;
            if (target_ports.count(number) || service_ports.count(number)) continue;
            out.push_back(message(
                "IST0162", Level::Warning, "Gateway", gw.meta,
                "The gateway is listening on a target port (port " + std::to_string(number) +
                    ") that is not defined in the Service associated with its workload "
                    "instances (Pod selector " +
                    selector +
                    "). If you need to access the gateway port through the gateway Service, it "
                    "will not be available."));
        }
    }
}

// The resources' names, sorted: how istioctl lists the parties of a conflict.
std::vector<std::string> sorted_names(const std::vector<const Telemetry*>& list) {
    std::vector<std::string> names;
    for (const auto* t : list) names.push_back(t->meta.name);
    std::sort(names.begin(), names.end());
    return names;
}

// telemetry.SelectorAnalyzer: a Telemetry's selector selects pods of its namespace (IST0101), and
// no pod is selected by two Telemetries (IST0159). A selector without labels is left out.
void telemetry_selector(const Config& c, std::vector<Message>& out) {
    std::map<std::pair<std::string, std::string>, std::vector<const Telemetry*>> by_pod;
    for (const auto& t : c.telemetries) {
        if (!t.selector || t.selector->empty()) continue;
        bool found = false;
        for (const auto& w : c.workloads) {
            if (w.kind != "Pod" || w.ns != t.meta.ns || !selects(*t.selector, w.labels)) continue;
            found = true;
            by_pod[{w.ns, w.name}].push_back(&t);
        }
        if (!found) {
            out.push_back(message("IST0101", Level::Error, "Telemetry", t.meta,
                                  "Referenced selector not found: " +
                                      go_quote(selector_string(*t.selector))));
        }
    }
    for (const auto& [pod, list] : by_pod) {
        if (list.size() < 2) continue;
        const std::vector<std::string> names = sorted_names(list);
        for (const auto* t : list) {
            out.push_back(message("IST0159", Level::Error, "Telemetry", t->meta,
                                  "The Telemetries " + go_list(names) + " in namespace " +
                                      go_quote(pod.first) + " select the same workload pod " +
                                      go_quote(pod.second) +
                                      ", which can lead to undefined behavior."));
        }
    }
}

// telemetry.DefaultSelectorAnalyzer: at most one Telemetry without selector per namespace
// (IST0160).
void telemetry_default_selector(const Config& c, std::vector<Message>& out) {
    std::map<std::string, std::vector<const Telemetry*>> by_namespace;
    for (const auto& t : c.telemetries)
        if (!t.selector) by_namespace[t.meta.ns].push_back(&t);
    for (const auto& [ns, list] : by_namespace) {
        if (list.size() < 2) continue;
        const std::vector<std::string> names = sorted_names(list);
        for (const auto* t : list) {
            out.push_back(message("IST0160", Level::Error, "Telemetry", t->meta,
                                  "The Telemetries " + go_list(names) + " in namespace " +
                                      go_quote(ns) +
                                      " have no workload selector, which can lead to undefined "
                                      "behavior."));
        }
    }
}

// sidecar.SelectorAnalyzer: a Sidecar's workloadSelector selects pods of its namespace (IST0101),
// no pod is selected by two Sidecars (IST0110), a namespace has at most one Sidecar without a
// selector (IST0111); in ambient mode a Sidecar has no effect (IST0167).
void sidecar_selector(const Config& c, std::vector<Message>& out) {
    std::map<std::pair<std::string, std::string>, std::vector<const Sidecar*>> by_pod;
    std::map<std::pair<std::string, std::string>, const Workload*> pods;
    std::map<std::string, std::vector<const Sidecar*>> by_namespace;
    for (const auto& sc : c.sidecars) {
        if (!sc.workload_selector || sc.workload_selector->empty()) {
            by_namespace[sc.meta.ns].push_back(&sc);
            continue;
        }
        bool found = false;
        for (const auto& w : c.workloads) {
            if (w.kind != "Pod" || w.ns != sc.meta.ns || !selects(*sc.workload_selector, w.labels))
                continue;
            found = true;
            by_pod[{w.ns, w.name}].push_back(&sc);
            pods[{w.ns, w.name}] = &w;
        }
        if (!found) {
            out.push_back(message("IST0101", Level::Error, "Sidecar", sc.meta,
                                  "Referenced selector not found: " +
                                      go_quote(selector_string(*sc.workload_selector))));
        }
    }
    auto names = [](const std::vector<const Sidecar*>& list) {
        std::vector<std::string> n;
        for (const auto* s : list)
            n.push_back(s->meta.name);
        return go_list(n);
    };
    std::set<const Sidecar*> reported;
    auto ineffective = [&](const Sidecar* sc, const std::string& why) {
        if (!reported.insert(sc).second) return;
        out.push_back(message("IST0167", Level::Warning, "Sidecar", sc->meta,
                              "The policy has no impact: " + why + "."));
    };
    for (const auto& [pod, list] : by_pod) {
        const Workload* w = pods[pod];
        auto redirection = w->annotations.find("ambient.istio.io/redirection");
        bool ambient = redirection != w->annotations.end() && redirection->second == "enabled";
        if (list.size() == 1 && !ambient) continue;
        for (const auto* sc : list) {
            if (ambient) {
                ineffective(sc, "selected workload is in ambient mode, the policy has no impact");
                continue;
            }
            out.push_back(message("IST0110", Level::Error, "Sidecar", sc->meta,
                                  "The Sidecars " + names(list) + " in namespace " +
                                      go_quote(pod.first) + " select the same workload pod " +
                                      go_quote(pod.second) +
                                      ", which can lead to undefined behavior."));
        }
    }
    for (const auto& [ns, list] : by_namespace) {
        auto labels = c.namespaces.find(ns);
        bool ambient = false;
        if (labels != c.namespaces.end()) {
            const Labels& l = labels->second;
            auto get = [&](const char* k) {
                auto it = l.find(k);
                return it == l.end() ? std::string() : it->second;
            };
            ambient = get("istio-injection") != "enabled" && get("istio.io/rev").empty() &&
                      get("istio.io/dataplane-mode") == "ambient";
        }
        if (ambient) {
            for (const auto* sc : list)
                ineffective(sc, "namespace is in ambient mode, the policy has no impact");
            continue;
        }
        if (list.size() < 2) continue;
        for (const auto* sc : list) {
            out.push_back(message("IST0111", Level::Error, "Sidecar", sc->meta,
                                  "The Sidecars " + names(list) + " in namespace " + go_quote(ns) +
                                      " have no workload selector, which can lead to undefined "
                                      "behavior."));
        }
    }
}

// The routing content of a match (its name left out), to find duplicates (upstream's asJSON).
std::string match_key(const HTTPMatchRequest& m) {
    auto sm = [](const std::optional<StringMatch>& x) {
        if (!x) return std::string("-");
        return std::to_string(static_cast<int>(x->type)) + ":" + x->value;
    };
    auto sm_map = [&](const std::map<std::string, StringMatch>& x) {
        std::string out = "{";
        for (const auto& [k, v] : x)
            out += k + "=" + sm(v) + ";";
        return out + "}";
    };
    std::string out = sm(m.uri) + "|" + sm(m.scheme) + "|" + sm(m.method) + "|" + sm(m.authority) +
                      "|" + sm_map(m.headers) + "|" + sm_map(m.query_params) + "|" +
                      sm_map(m.without_headers) + "|" + (m.ignore_uri_case ? "i" : "") + "|" +
                      std::to_string(m.port) + "|" + m.source_namespace + "|" +
                      join(m.gateways, ",") + "|";
    for (const auto& [k, v] : m.source_labels)
        out += k + "=" + v + ";";
    return out;
}

std::string match_key(const L4Match& m) {
    std::string out =
        std::to_string(m.port) + "|" + join(m.sni_hosts, ",") + "|" + m.source_namespace + "|";
    for (const auto& [k, v] : m.source_labels)
        out += k + "=" + v + ";";
    return out;
}

// Upstream's genMatchHTTPRoutes: a prefix-URI match, for the overlap check.
struct PrefixMatch {
    std::string route, match, prefix;
    uint32_t port = 0;
    std::string method, authority;
    std::map<std::string, std::string> headers, query_params, without_headers;
};

std::string exact_or_prefix(const std::optional<StringMatch>& m) {
    if (!m || m->value.empty()) return "";
    if (m->type == StringMatch::Type::Exact) return "exact:" + m->value;
    if (m->type == StringMatch::Type::Prefix) return "prefix:" + m->value;
    return "";
}

// coveredValidation: `a` (earlier) covers `b`.
bool covers(const PrefixMatch& a, const PrefixMatch& b) {
    if (!b.prefix.starts_with(a.prefix)) return false;
    if (b.port != a.port) return false;
    if (a.method != b.method && !a.method.starts_with(b.method)) return false;
    if (a.authority != b.authority && !a.authority.starts_with(b.authority)) return false;
    auto maps = [](const std::map<std::string, std::string>& x,
                   const std::map<std::string, std::string>& y) {
        if (x.size() != y.size()) return false;
        for (const auto& [k, v] : x) {
            auto it = y.find(k);
            if (it == y.end()) return false;
            if (v != it->second && !v.starts_with(it->second)) return false;
        }
        return true;
    };
    return maps(a.headers, b.headers) && maps(a.query_params, b.query_params) &&
           maps(a.without_headers, b.without_headers);
}

// IST0130 / IST0131: rules no request can reach, matches an earlier rule already takes (Istio's
// VirtualService validation, reported by the schema analyzer).
void unreachable_rules(const Config& c, std::vector<Message>& out) {
    for (const auto& vs : c.virtual_services) {
        auto unused = [&](const std::string& rule, const std::string& reason) {
            out.push_back(message("IST0130", Level::Warning, "VirtualService", vs.meta,
                                  "VirtualService rule " + rule + " not used (" + reason + ")."));
        };
        auto ineffective = [&](const std::string& rule, const std::string& match,
                               const std::string& dup) {
            out.push_back(message("IST0131", Level::Info, "VirtualService", vs.meta,
                                  "VirtualService rule " + rule + " match " + match +
                                      " is not used (duplicate/overlapping match in rule " + dup +
                                      ")."));
        };
        auto http_name = [&](std::size_t i) {
            const auto& r = vs.http[i];
            return r.name.empty() ? "#" + std::to_string(i) : go_quote(r.name);
        };
        std::map<std::string, std::size_t> seen;
        int empty_at = -1;
        std::vector<PrefixMatch> prefixes;
        for (std::size_t rn = 0; rn < vs.http.size(); ++rn) {
            const HTTPRoute& route = vs.http[rn];
            if (route.match.empty()) {
                if (empty_at >= 0) unused(http_name(rn), "only the last rule can have no matches");
                empty_at = static_cast<int>(rn);
                continue;
            }
            std::size_t duplicates = 0;
            for (std::size_t mn = 0; mn < route.match.size(); ++mn) {
                const HTTPMatchRequest& m = route.match[mn];
                if (empty_at >= 0) {
                    unused(http_name(rn), "route without matches defined before");
                    continue;
                }
                std::string key = match_key(m);
                auto it = seen.find(key);
                const std::string match_name =
                    m.name.empty() ? "#" + std::to_string(mn) : go_quote(m.name);
                if (it != seen.end()) {
                    ineffective(http_name(rn), match_name, http_name(it->second));
                    ++duplicates;
                    continue;
                }
                seen.emplace(key, rn);
                if (m.uri && m.uri->type == StringMatch::Type::Prefix && !m.uri->value.empty()) {
                    PrefixMatch p;
                    p.route = http_name(rn);
                    p.match = match_name;
                    p.prefix = m.uri->value;
                    p.port = m.port;
                    p.method = exact_or_prefix(m.method);
                    if (p.method.empty()) p.method = "exact:GET";
                    p.authority = exact_or_prefix(m.authority);
                    for (const auto& [k, v] : m.headers)
                        p.headers[k] = exact_or_prefix(v);
                    for (const auto& [k, v] : m.query_params)
                        p.query_params[k] = exact_or_prefix(v);
                    for (const auto& [k, v] : m.without_headers)
                        p.without_headers[k] = exact_or_prefix(v);
                    prefixes.push_back(std::move(p));
                }
            }
            if (duplicates == route.match.size()) {
                unused(http_name(rn), "all matches used by prior rules");
            }
        }
        for (std::size_t a = 0; a < prefixes.size(); ++a) {
            for (std::size_t b = a + 1; b < prefixes.size(); ++b) {
                if (prefixes[b].prefix == prefixes[a].prefix) continue;
                if (covers(prefixes[a], prefixes[b])) {
                    ineffective(prefixes[b].route,
                                prefixes[b].match + " of prefix " + prefixes[b].prefix,
                                prefixes[a].match + " of prefix " + prefixes[a].prefix + " on " +
                                    prefixes[a].route);
                }
            }
        }
        for (const auto* l4 : {&vs.tcp, &vs.tls}) {
            std::map<std::string, std::size_t> l4_seen;
            int l4_empty = -1;
            for (std::size_t rn = 0; rn < l4->size(); ++rn) {
                const L4Route& route = (*l4)[rn];
                const std::string name = "#" + std::to_string(rn);
                if (route.match.empty()) {
                    if (l4_empty >= 0) unused(name, "only the last rule can have no matches");
                    l4_empty = static_cast<int>(rn);
                    continue;
                }
                std::size_t duplicates = 0;
                for (std::size_t mn = 0; mn < route.match.size(); ++mn) {
                    if (l4_empty >= 0) {
                        unused(name, "route without matches defined before");
                        continue;
                    }
                    auto [it, fresh] = l4_seen.emplace(match_key(route.match[mn]), rn);
                    if (!fresh) {
                        ineffective(name, "#" + std::to_string(mn),
                                    "#" + std::to_string(it->second));
                        ++duplicates;
                    }
                }
                if (duplicates == route.match.size()) {
                    unused(name, "all matches used by prior rules");
                }
            }
        }
    }
}

// IST0106 for the validation errors, IST0133 for the warnings Istio's validation also gives
// (deprecated settings, ...); Remora's own warnings are not Istio messages.
void schema_validation(const Config& c, std::vector<Message>& out) {
    for (const Diagnostic& diagnostic : c.diagnostics) {
        const Diagnostic* d = &diagnostic;
        bool error = d->severity == Severity::Error;
        if (!error && (d->severity != Severity::Warning || d->remora)) continue;
        Message m;
        m.code = error ? "IST0106" : "IST0133";
        m.level = error ? Level::Error : Level::Warning;
        m.kind = d->kind;
        m.ns = d->ns;
        m.name = d->name;
        m.where = d->kind.empty() ? d->where : d->resource_where;
        if (d->kind.empty()) m.where.column = 0;
        std::string at = d->where.file;
        if (d->where.line > 0) {
            at += ":" + std::to_string(d->where.line) + ":" + std::to_string(d->where.column);
        }
        m.text = std::string(error ? "Schema validation error: " : "Schema validation warning: ") +
                 at + ": " + (d->path.empty() ? "" : d->path + ": ") + d->message;
        out.push_back(std::move(m));
    }
}

}  // namespace

const char* level_name(Level l) {
    switch (l) {
        case Level::Error:
            return "Error";
        case Level::Warning:
            return "Warning";
        case Level::Info:
            return "Info";
    }
    return "Error";
}

int severity(Level l) {
    return l == Level::Error ? 2 : l == Level::Warning ? 1 : 0;
}

std::optional<Level> level_from_name(std::string name) {
    for (char& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "error") return Level::Error;
    if (name == "warning") return Level::Warning;
    if (name == "info") return Level::Info;
    return std::nullopt;
}

const char* analyzer_description(Analyzer a) {
    switch (a) {
        case Analyzer::SchemaValidation:
            return "Runs schema validation as Istio's webhook does (IST0106, IST0133; IST0130, "
                   "IST0131 for unreachable VirtualService rules and matches)";
        case Analyzer::DestinationHost:
            return "Checks the destination hosts and ports of VirtualServices (IST0101, IST0112)";
        case Analyzer::DestinationRule:
            return "Checks the subsets VirtualServices route to exist (IST0101)";
        case Analyzer::ConflictingMeshGatewayHosts:
            return "Checks no two VirtualServices of the mesh gateway define one host (IST0109)";
        case Analyzer::PodNotSelected:
            return "Checks DestinationRule hosts exist and subsets select pods (IST0173, IST0174)";
        case Analyzer::CaCertificate:
            return "Checks caCertificates is set when TLS mode is SIMPLE/MUTUAL (IST0128, IST0129)";
        case Analyzer::ServiceEntryAddresses:
            return "Checks ServiceEntries with TCP ports have addresses (IST0134)";
        case Analyzer::AuthorizationPolicies:
            return "Checks AuthorizationPolicies select workloads and name namespaces that exist "
                   "(IST0127, IST0101)";
        case Analyzer::Deprecation:
            return "Checks for deprecated Istio fields (IST0002)";
        case Analyzer::Gateway:
            return "Checks the gateways VirtualServices name exist and serve their hosts "
                   "(IST0101, IST0132)";
        case Analyzer::ConflictingGateways:
            return "Checks Gateways of the same workloads and port define no host twice (IST0145)";
        case Analyzer::SidecarSelector:
            return "Checks Sidecar workload selectors select pods, and no pod or namespace has "
                   "two Sidecars (IST0101, IST0110, IST0111, IST0167)";
        case Analyzer::IngressGatewayPort:
            return "Checks a Gateway's selector matches pods and its ports are on the gateway's "
                   "Kubernetes Service (IST0101, IST0162)";
        case Analyzer::TelemetrySelector:
            return "Checks Telemetry selectors select pods, and no pod has two Telemetries "
                   "(IST0101, IST0159)";
        case Analyzer::TelemetryDefaultSelector:
            return "Checks a namespace has at most one Telemetry without selector (IST0160)";
        case Analyzer::PortName:
            return "Checks Service port names or appProtocols name a protocol (IST0118, IST0150)";
        case Analyzer::GatewayCertificate:
            return "Checks no two Gateways of the same workloads share a certificate (IST0138)";
        case Analyzer::JwtClaimRoute:
            return "Checks a VirtualService routing on JWT claims through a gateway has a "
                   "RequestAuthentication for the gateway's pods (IST0149)";
        case Analyzer::ApplicationUid:
            return "Checks no Pod or Deployment runs an application as UID 1337 (IST0144)";
        case Analyzer::ServiceEntryProtocols:
            return "Checks ServiceEntries visible together give a host and port one protocol "
                   "(IST0177)";
        case Analyzer::ServiceAssociation:
            return "Checks the Services of a mesh Deployment's pods give a port one protocol and "
                   "a targetPort one port (IST0116, IST0137)";
        case Analyzer::BlockedCidrs:
            return "Checks istiod restricts JWKS URI fetches (BLOCKED_CIDRS_IN_JWKS_URIS) when "
                   "RequestAuthentications exist (IST0175)";
        case Analyzer::Annotations:
            return "Checks Istio annotations on Namespaces, Services, Pods and Deployments are "
                   "known, in place, current and valid (IST0107, IST0108, IST0125, IST0135)";
        case Analyzer::Injection:
            return "Checks Namespaces are labelled for injection and their Pods have the sidecar "
                   "(IST0102, IST0103, IST0123, IST0148)";
    }
    return "";
}

std::string Message::origin() const {
    if (kind.empty()) return "";
    return kind + " " + (ns.empty() ? "" : ns + "/") + name;
}

std::string Message::str() const {
    std::string origin = this->origin();
    if (!origin.empty()) origin += " ";
    origin += where.file;
    if (where.line > 0) origin += ":" + std::to_string(where.line);
    return std::string(level_name(level)) + " [" + code + "] (" + origin + ") " + text;
}

bool has_errors(const std::vector<Message>& messages) {
    return std::any_of(messages.begin(), messages.end(),
                       [](const Message& m) { return m.level == Level::Error; });
}

const char* analyzer_name(Analyzer a) {
    switch (a) {
        case Analyzer::SchemaValidation:
            return "schema.ValidationAnalyzer";
        case Analyzer::DestinationHost:
            return "virtualservice.DestinationHostAnalyzer";
        case Analyzer::DestinationRule:
            return "virtualservice.DestinationRuleAnalyzer";
        case Analyzer::ConflictingMeshGatewayHosts:
            return "virtualservice.ConflictingMeshGatewayHostsAnalyzer";
        case Analyzer::PodNotSelected:
            return "destinationrule.SubsetSelectPodAnalyzer";
        case Analyzer::CaCertificate:
            return "destinationrule.CaCertificateAnalyzer";
        case Analyzer::ServiceEntryAddresses:
            return "serviceentry.Analyzer";
        case Analyzer::AuthorizationPolicies:
            return "auth.AuthorizationPoliciesAnalyzer";
        case Analyzer::Deprecation:
            return "deprecation.DeprecationAnalyzer";
        case Analyzer::Gateway:
            return "virtualservice.GatewayAnalyzer";
        case Analyzer::ConflictingGateways:
            return "gateway.ConflictingGatewayAnalyzer";
        case Analyzer::SidecarSelector:
            return "sidecar.SelectorAnalyzer";
        case Analyzer::IngressGatewayPort:
            return "gateway.IngressGatewayPortAnalyzer";
        case Analyzer::TelemetrySelector:
            return "telemetry.SelectorAnalyzer";
        case Analyzer::TelemetryDefaultSelector:
            return "telemetry.DefaultSelectorAnalyzer";
        case Analyzer::PortName:
            return "service.PortNameAnalyzer";
        case Analyzer::GatewayCertificate:
            return "gateway.CertificateAnalyzer";
        case Analyzer::JwtClaimRoute:
            return "virtualservice.JWTClaimRouteAnalyzer";
        case Analyzer::ApplicationUid:
            return "applicationUID.Analyzer";
        case Analyzer::Injection:
            return "injection.Analyzer";
        case Analyzer::Annotations:
            return "annotations.K8sAnalyzer";
        case Analyzer::ServiceEntryProtocols:
            return "serviceentry.ConflictingServiceEntryProtocolAnalyzer";
        case Analyzer::ServiceAssociation:
            return "deployment.MultiServiceAnalyzer";
        case Analyzer::BlockedCidrs:
            return "authn.BlockedCIDRsAnalyzer";
    }
    return "";
}

std::vector<Analyzer> all_analyzers() {
    return {Analyzer::SchemaValidation,      Analyzer::DestinationHost,
            Analyzer::DestinationRule,       Analyzer::ConflictingMeshGatewayHosts,
            Analyzer::PodNotSelected,        Analyzer::CaCertificate,
            Analyzer::ServiceEntryAddresses, Analyzer::AuthorizationPolicies,
            Analyzer::Deprecation,           Analyzer::Gateway,
            Analyzer::ConflictingGateways,   Analyzer::SidecarSelector,
            Analyzer::IngressGatewayPort,    Analyzer::TelemetrySelector,
            Analyzer::TelemetryDefaultSelector, Analyzer::PortName,
            Analyzer::GatewayCertificate,    Analyzer::JwtClaimRoute,
            Analyzer::ApplicationUid,        Analyzer::Injection,
            Analyzer::Annotations,           Analyzer::ServiceEntryProtocols,
            Analyzer::ServiceAssociation,    Analyzer::BlockedCidrs};
}

std::vector<Message> analyze(const Config& config, const Options& options) {
    auto on = [&](Analyzer a) { return options.only.empty() || options.only.count(a); };
    std::vector<Message> out;
    if (on(Analyzer::SchemaValidation)) {
        schema_validation(config, out);
        unreachable_rules(config, out);
    }
    if (on(Analyzer::DestinationHost)) destination_host(config, out);
    if (on(Analyzer::DestinationRule)) destination_rule(config, out);
    if (on(Analyzer::ConflictingMeshGatewayHosts)) conflicting_mesh_gateway_hosts(config, out);
    if (on(Analyzer::PodNotSelected)) pod_not_selected(config, out);
    if (on(Analyzer::CaCertificate)) ca_certificate(config, out);
    if (on(Analyzer::ServiceEntryAddresses)) service_entry_addresses(config, options, out);
    if (on(Analyzer::AuthorizationPolicies)) authorization_policies(config, options, out);
    if (on(Analyzer::Deprecation)) deprecation(config, out);
    if (on(Analyzer::Gateway)) gateway_references(config, out);
    if (on(Analyzer::ConflictingGateways)) conflicting_gateways(config, out);
    if (on(Analyzer::SidecarSelector)) sidecar_selector(config, out);
    if (on(Analyzer::IngressGatewayPort)) ingress_gateway_ports(config, options, out);
    if (on(Analyzer::TelemetrySelector)) telemetry_selector(config, out);
    if (on(Analyzer::TelemetryDefaultSelector)) telemetry_default_selector(config, out);
    if (on(Analyzer::PortName)) port_names(config, out);
    if (on(Analyzer::GatewayCertificate)) gateway_certificates(config, out);
    if (on(Analyzer::JwtClaimRoute)) jwt_claim_routes(config, options, out);
    if (on(Analyzer::ApplicationUid)) application_uid(config, out);
    if (on(Analyzer::Injection)) injection(config, out);
    if (on(Analyzer::Annotations)) annotations(config, out);
    if (on(Analyzer::ServiceEntryProtocols)) conflicting_service_entry_protocols(config, out);
    if (on(Analyzer::ServiceAssociation)) service_association(config, out);
    if (on(Analyzer::BlockedCidrs)) blocked_cidrs(config, out);
    std::stable_sort(out.begin(), out.end(), [](const Message& a, const Message& b) {
        return std::tie(a.where.file, a.where.line, a.code) <
               std::tie(b.where.file, b.where.line, b.code);
    });
    return out;
}

}  // namespace remora::control::analyze
