// Multi-document YAML in, typed resources out: apiVersion/kind dispatch, metadata, Kubernetes
// Services and pod labels for the analyzer, files and directories.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "control/model/checks.h"
#include "control/model/model.h"
#include "control/model/parsers.h"
#include "control/model/walk.h"
#include "control/model/yaml_read.h"

namespace remora::control::model {

namespace {

using detail::Obj;
using detail::Reporter;
using detail::Value;

// The apiVersions that serve each Istio kind read here (Istio's CRDs), and how to say so.
struct ServedVersions {
    const char* kind;
    const char* versions[3];
    const char* hint;
};

constexpr const char* kNetworkingHint = "networking.istio.io/v1, v1beta1 or v1alpha3";
constexpr const char* kSecurityHint = "security.istio.io/v1 or v1beta1";
#define REMORA_NETWORKING \
    {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}
#define REMORA_SECURITY {"security.istio.io/v1", "security.istio.io/v1beta1", nullptr}
constexpr ServedVersions kServed[] = {
    {"VirtualService", REMORA_NETWORKING, kNetworkingHint},
    {"DestinationRule", REMORA_NETWORKING, kNetworkingHint},
    {"ServiceEntry", REMORA_NETWORKING, kNetworkingHint},
    {"WorkloadEntry", REMORA_NETWORKING, kNetworkingHint},
    {"Sidecar", REMORA_NETWORKING, kNetworkingHint},
    {"Gateway", REMORA_NETWORKING, kNetworkingHint},
    {"ProxyConfig", {"networking.istio.io/v1beta1", nullptr, nullptr},
     "networking.istio.io/v1beta1"},
    {"PeerAuthentication", REMORA_SECURITY, kSecurityHint},
    {"AuthorizationPolicy", REMORA_SECURITY, kSecurityHint},
    {"RequestAuthentication", REMORA_SECURITY, kSecurityHint},
    {"Telemetry", {"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1", nullptr},
     "telemetry.istio.io/v1 or v1alpha1"},
};
#undef REMORA_NETWORKING
#undef REMORA_SECURITY

const ServedVersions* served_versions(const std::string& kind) {
    for (const ServedVersions& s : kServed)
        if (kind == s.kind) return &s;
    return nullptr;
}

std::string format_location(const Location& l) {
    std::string s = l.file;
    if (l.line > 0) s += ":" + std::to_string(l.line);
    if (l.line > 0 && l.column > 0) s += ":" + std::to_string(l.column);
    return s;
}

// Lenient reads for Kubernetes objects (their schema is not ours to check).
std::string scalar_at(const yaml::Node& n, std::initializer_list<std::string_view> path) {
    return scalar_text(field(n, path));
}

Labels labels_at(const yaml::Node& n, std::initializer_list<std::string_view> path) {
    yaml::Node cur = field(n, path);
    Labels out;
    if (!cur.IsMap()) return out;
    for (auto it = cur.begin(); it != cur.end(); ++it) {
        if (it->first.IsScalar() && it->second.IsScalar()) {
            out[it->first.Scalar()] = it->second.Scalar();
        }
    }
    return out;
}

// A TCP port number, 1-65535, written in decimal.
std::optional<uint32_t> port_number(const std::string& text) {
    uint64_t number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || number == 0 ||
        number > 65535) {
        return std::nullopt;
    }
    return static_cast<uint32_t>(number);
}

class DocumentLoader {
  public:
    DocumentLoader(Config& config, const std::string& file, int line_offset,
                   const std::string* text)
        : config_(config), file_(file), line_offset_(line_offset), text_(text) {}

    // One document. Whatever goes wrong inside stays inside: an exception (a bug, since every
    // input problem is meant to be a diagnostic) refuses this resource, naming file, line and
    // the field being read, and the next documents still load.
    void load(const yaml::Node& doc) {
        if (!doc.IsDefined() || doc.IsNull()) return;
        Reporter reporter(config_.diagnostics, file_, line_offset_);
        reporter.set_text(text_);
        if (is_list(doc)) {
            load_list(reporter, doc);
            return;
        }
        Sizes before = sizes();
        try {
            load_document(reporter, doc);
        } catch (const std::exception& e) {
            truncate(before);
            YAML::Mark at = reporter.visited_mark();
            const auto* yaml_error = dynamic_cast<const YAML::Exception*>(&e);
            if (yaml_error && !yaml_error->mark.is_null()) at = yaml_error->mark;
            if (at.is_null()) at = doc.Mark();
            reporter.error(at, reporter.visited_path(),
                           std::string("cannot be read (") + e.what() +
                               "); the resource is refused, the others are kept");
        }
    }

  private:
    // `kind: List` (what `kubectl get -o yaml` writes) and the typed lists (`GatewayList`, ...)
    // hold their resources in items[]; kubectl and istioctl read each item as a document of its
    // own, at its own line.
    static bool is_list(const yaml::Node& doc) {
        if (!doc.IsMap()) return false;
        const std::string kind = scalar_at(doc, {"kind"});
        if (kind == "List") return true;
        return kind.size() > 4 && kind.ends_with("List") && field(doc, "items").IsDefined();
    }

    void load_list(Reporter& reporter, const yaml::Node& doc) {
        const std::string kind = scalar_at(doc, {"kind"});
        reporter.set_resource(kind, "", "", reporter.location(doc.Mark()));
        yaml::Node items = field(doc, "items");
        if (!items.IsDefined() || items.IsNull()) return;  // an empty List
        if (!items.IsSequence()) {
            reporter.error(items.Mark(), "items",
                           "must be a list of resources (istioctl: malformed items field)");
            return;
        }
        for (std::size_t i = 0; i < items.size(); ++i) {
            yaml::Node resource = item(items, i);
            if (!resource.IsMap()) {
                reporter.error(mark_of(resource), detail::at_index("items", i),
                               "must be a mapping (a Kubernetes resource)");
                continue;
            }
            load(resource);
        }
    }

    struct Sizes {
        std::size_t vs, dr, se, we, pa, ap, svc, workloads, sidecars, gateways, ras, telemetries,
            proxy_configs, kube_gateways;
    };
    Sizes sizes() const {
        return {config_.virtual_services.size(),     config_.destination_rules.size(),
                config_.service_entries.size(),      config_.workload_entries.size(),
                config_.peer_authentications.size(), config_.authorization_policies.size(),
                config_.kube_services.size(),        config_.workloads.size(),
                config_.sidecars.size(),             config_.gateways.size(),
                config_.request_authentications.size(), config_.telemetries.size(),
                config_.proxy_configs.size(),       config_.kube_gateways.size()};
    }
    void truncate(const Sizes& s) {
        auto cut = [](auto& v, std::size_t n) {
            if (v.size() > n) v.resize(n);
        };
        cut(config_.virtual_services, s.vs);
        cut(config_.destination_rules, s.dr);
        cut(config_.service_entries, s.se);
        cut(config_.workload_entries, s.we);
        cut(config_.peer_authentications, s.pa);
        cut(config_.authorization_policies, s.ap);
        cut(config_.kube_services, s.svc);
        cut(config_.workloads, s.workloads);
        cut(config_.sidecars, s.sidecars);
        cut(config_.gateways, s.gateways);
        cut(config_.request_authentications, s.ras);
        cut(config_.telemetries, s.telemetries);
        cut(config_.proxy_configs, s.proxy_configs);
        cut(config_.kube_gateways, s.kube_gateways);
    }

    void load_document(Reporter& reporter, const yaml::Node& doc) {
        Reporter& reporter_ = reporter;
        if (!doc.IsMap()) {
            reporter_.error(doc.Mark(), "document", "must be a mapping (a Kubernetes resource)");
            return;
        }
        std::string kind = scalar_at(doc, {"kind"});
        std::string api = scalar_at(doc, {"apiVersion"});
        Location where = reporter_.location(doc.Mark());
        where.column = 0;
        std::string name = scalar_at(doc, {"metadata", "name"});
        std::string ns = scalar_at(doc, {"metadata", "namespace"});
        if (ns.empty()) ns = config_.default_namespace;
        reporter_.set_resource(kind, ns, name, where);

        const ServedVersions* served_by = served_versions(kind);
        // Kubernetes Gateway API's Gateway (gateway.networking.k8s.io) is another kind.
        if (kind == "Gateway" && !api.empty() && !api.starts_with("networking.istio.io/")) {
            served_by = nullptr;
        }
        if (!served_by) {
            load_kubernetes(reporter, doc, kind, api, name, ns);
            return;
        }
        std::size_t errors_before = reporter_.error_count();
        {
            Obj top(reporter_, doc, "");
            if (kind.empty()) top.require("kind");
            top.skip("kind");
            top.skip("status");
            auto api_value = top.get("apiVersion");
            if (!api_value) {
                top.require("apiVersion");
            } else {
                bool served = false;
                for (const char* v : served_by->versions)
                    served |= v != nullptr && api == v;
                if (!served) {
                    reporter_.error(api_value->mark(), "apiVersion",
                                    detail::in_quotes(api) + " does not serve " + kind + " (use " +
                                        served_by->hint + ")");
                }
            }
            Metadata meta;
            meta.ns = config_.default_namespace;
            meta.api_version = api;
            meta.where = where;
            if (!top.has("metadata")) top.require("metadata");
            top.object("metadata", [&](Obj& m) { parse_metadata(reporter, m, meta); });
            if (!check_unique(reporter, kind, meta, api_value ? api_value->mark() : doc.Mark())) {
                return;
            }

            yaml::Node empty = yaml::Node::empty_map();
            auto spec_value = top.get("spec");
            Value spec_v = spec_value ? *spec_value : Value{empty, "spec"};
            {
                Obj spec(reporter_, spec_v);
                if (kind == "VirtualService") {
                    VirtualService vs;
                    vs.meta = meta;
                    detail::parse_virtual_service(spec, vs);
                    config_.virtual_services.push_back(std::move(vs));
                } else if (kind == "DestinationRule") {
                    DestinationRule dr;
                    dr.meta = meta;
                    detail::parse_destination_rule(spec, dr);
                    config_.destination_rules.push_back(std::move(dr));
                } else if (kind == "ServiceEntry") {
                    ServiceEntry se;
                    se.meta = meta;
                    detail::parse_service_entry(spec, se);
                    yaml::Node allocated = field(doc, {"status", "addresses"});
                    se.allocated_addresses = allocated.IsSequence() && allocated.size() > 0;
                    config_.service_entries.push_back(std::move(se));
                } else if (kind == "WorkloadEntry") {
                    WorkloadEntry we;
                    we.meta = meta;
                    detail::parse_workload_entry(spec, we.spec, false);
                    Workload w;
                    w.kind = kind;
                    w.name = meta.name;
                    w.ns = meta.ns;
                    w.labels = we.spec.labels;
                    w.object_labels = meta.labels;
                    w.where = meta.where;
                    config_.workloads.push_back(std::move(w));
                    config_.workload_entries.push_back(std::move(we));
                } else if (kind == "Sidecar") {
                    Sidecar sc;
                    sc.meta = meta;
                    detail::parse_sidecar(spec, sc);
                    config_.sidecars.push_back(std::move(sc));
                } else if (kind == "Gateway") {
                    Gateway gw;
                    gw.meta = meta;
                    auto semantics = meta.annotations.find("internal.istio.io/gateway-semantics");
                    detail::parse_gateway(spec, gw,
                                          semantics != meta.annotations.end() &&
                                              semantics->second == "gateway");
                    config_.gateways.push_back(std::move(gw));
                } else if (kind == "RequestAuthentication") {
                    RequestAuthentication ra;
                    ra.meta = meta;
                    detail::parse_request_authentication(spec, ra);
                    config_.request_authentications.push_back(std::move(ra));
                } else if (kind == "Telemetry") {
                    Telemetry t;
                    t.meta = meta;
                    detail::parse_telemetry(spec, t);
                    config_.telemetries.push_back(std::move(t));
                } else if (kind == "ProxyConfig") {
                    ProxyConfig pc;
                    pc.meta = meta;
                    detail::parse_proxy_config(spec, pc);
                    config_.proxy_configs.push_back(std::move(pc));
                } else if (kind == "PeerAuthentication") {
                    PeerAuthentication pa;
                    pa.meta = meta;
                    detail::parse_peer_authentication(spec, pa);
                    config_.peer_authentications.push_back(std::move(pa));
                } else {
                    AuthorizationPolicy ap;
                    ap.meta = meta;
                    detail::parse_authorization_policy(spec, ap);
                    config_.authorization_policies.push_back(std::move(ap));
                }
            }
        }  // unknown top-level fields are reported as `top` goes out of scope
        if (reporter_.error_count() > errors_before) mark_invalid(kind);
    }

    void parse_metadata(Reporter& reporter_, Obj& m, Metadata& meta) {
        auto name = m.get("name");
        if (!name) {
            m.require("name");
        } else if (m.str("name", meta.name) && !detail::is_dns1123_subdomain(meta.name)) {
            reporter_.error(
                name->mark(), name->path,
                detail::in_quotes(meta.name) +
                    " is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')");
        }
        if (auto ns = m.get("namespace")) {
            if (m.str("namespace", meta.ns) && !detail::is_dns1123_label(meta.ns)) {
                reporter_.error(ns->mark(), ns->path,
                                detail::in_quotes(meta.ns) +
                                    " is not a DNS-1123 label (lowercase letters, digits, '-')");
            }
        }
        detail::read_labels(m, "labels", meta.labels);
        m.string_map("annotations", meta.annotations);
        // The rest of metadata (uid, resourceVersion, ...) belongs to Kubernetes.
        for (const char* k :
             {"generateName", "uid", "resourceVersion", "generation", "creationTimestamp",
              "deletionTimestamp", "managedFields", "ownerReferences", "finalizers", "selfLink"}) {
            m.skip(k);
        }
    }

    // A second definition of the same resource replaces the first, as `kubectl apply` would.
    bool check_unique(Reporter& reporter_, const std::string& kind, const Metadata& meta,
                      const YAML::Mark& at) {
        if (meta.name.empty()) return true;
        if (config_.defined_names.insert(kind + " " + meta.ns + "/" + meta.name).second) {
            return true;  // the first of that name
        }
        auto drop = [&](auto& v) {
            auto same = [&](const auto& r) {
                return r.meta.ns == meta.ns && r.meta.name == meta.name;
            };
            auto it = std::find_if(v.begin(), v.end(), same);
            if (it == v.end()) return;
            reporter_.warning(at, "metadata.name",
                              "replaces the " + kind + " of the same name defined at " +
                                  format_location(it->meta.where) + " (as kubectl apply would)",
                              true);
            std::erase_if(v, same);
        };
        if (kind == "VirtualService") drop(config_.virtual_services);
        if (kind == "DestinationRule") drop(config_.destination_rules);
        if (kind == "ServiceEntry") drop(config_.service_entries);
        if (kind == "WorkloadEntry") {
            drop(config_.workload_entries);
            std::erase_if(config_.workloads, [&](const Workload& w) {
                return w.kind == kind && w.ns == meta.ns && w.name == meta.name;
            });
        }
        if (kind == "PeerAuthentication") drop(config_.peer_authentications);
        if (kind == "AuthorizationPolicy") drop(config_.authorization_policies);
        if (kind == "Sidecar") drop(config_.sidecars);
        if (kind == "Gateway") drop(config_.gateways);
        if (kind == "RequestAuthentication") drop(config_.request_authentications);
        if (kind == "Telemetry") drop(config_.telemetries);
        if (kind == "ProxyConfig") drop(config_.proxy_configs);
        return true;
    }

    void mark_invalid(const std::string& kind) {
        auto mark = [](auto& v) {
            if (!v.empty()) v.back().meta.valid = false;
        };
        if (kind == "VirtualService") mark(config_.virtual_services);
        if (kind == "DestinationRule") mark(config_.destination_rules);
        if (kind == "ServiceEntry") mark(config_.service_entries);
        if (kind == "WorkloadEntry") mark(config_.workload_entries);
        if (kind == "PeerAuthentication") mark(config_.peer_authentications);
        if (kind == "AuthorizationPolicy") mark(config_.authorization_policies);
        if (kind == "Sidecar") mark(config_.sidecars);
        if (kind == "Gateway") mark(config_.gateways);
        if (kind == "RequestAuthentication") mark(config_.request_authentications);
        if (kind == "Telemetry") mark(config_.telemetries);
        if (kind == "ProxyConfig") mark(config_.proxy_configs);
    }

    void load_kubernetes(Reporter& reporter_, const yaml::Node& doc, const std::string& kind,
                         const std::string& api, const std::string& name, const std::string& ns) {
        Metadata meta;
        meta.api_version = api;
        meta.name = name;
        meta.ns = ns;
        meta.labels = labels_at(doc, {"metadata", "labels"});
        meta.annotations = labels_at(doc, {"metadata", "annotations"});
        meta.where = reporter_.location(doc.Mark());
        meta.where.column = 0;
        std::string what = (kind.empty() ? std::string("document without kind") : kind) +
                           (name.empty() ? "" : " " + ns + "/" + name);
        if (kind == "Service" && api == "v1") {
            if (name.empty()) {
                // Kubernetes refuses it; the store would keep a Service nobody can name.
                reporter_.error(doc.Mark(), "metadata.name", "required");
                return;
            }
            KubeService svc;
            svc.meta = meta;
            svc.selector = labels_at(doc, {"spec", "selector"});
            svc.type = scalar_at(doc, {"spec", "type"});
            // spec: {}, a headless Service without ports, ExternalName ...: all valid Kubernetes.
            auto add_ip = [&](const std::string& ip) {
                if (!ip.empty() && ip != "None" &&
                    std::find(svc.cluster_ips.begin(), svc.cluster_ips.end(), ip) ==
                        svc.cluster_ips.end()) {
                    svc.cluster_ips.push_back(ip);
                }
            };
            add_ip(scalar_at(doc, {"spec", "clusterIP"}));
            yaml::Node ips = field(doc, {"spec", "clusterIPs"});
            if (ips.IsSequence()) {
                for (const auto& ip : ips)
                    add_ip(scalar_text(ip));
            }
            yaml::Node ports = field(doc, {"spec", "ports"});
            bool bad_port = false;
            for (std::size_t i = 0; ports.IsSequence() && i < ports.size(); ++i) {
                yaml::Node p = item(ports, i);
                const std::string at = "spec.ports[" + std::to_string(i) + "]";
                KubeServicePort port;
                port.name = scalar_at(p, {"name"});
                port.protocol = scalar_at(p, {"protocol"});
                port.app_protocol = scalar_at(p, {"appProtocol"});
                // Kubernetes refuses a Service whose port is missing or outside 1-65535; so does
                // everything that reads it here (analyze, apply, the proxy's --config).
                yaml::Node number_node = field(p, "port");
                auto number = port_number(scalar_text(number_node));
                if (!number) {
                    reporter_.error(number_node.IsDefined() ? number_node.Mark() : mark_of(p),
                                    at + ".port",
                                    number_node.IsDefined()
                                        ? detail::in_quotes(scalar_text(number_node)) +
                                              " is not a port number (1-65535)"
                                        : "required");
                    bad_port = true;
                    continue;
                }
                // targetPort: a number in range, or a named container port.
                yaml::Node target = field(p, "targetPort");
                std::string target_text = scalar_text(target);
                if (!target_text.empty() && std::isdigit(static_cast<unsigned char>(target_text[0])) &&
                    !port_number(target_text)) {
                    reporter_.error(target.Mark(), at + ".targetPort",
                                    detail::in_quotes(target_text) +
                                        " is not a port number (1-65535)");
                    bad_port = true;
                }
                port.port = *number;
                port.target_port_text = target_text;
                if (auto t = port_number(target_text)) port.target_port = *t;
                svc.ports.push_back(port);
            }
            if (bad_port) return;  // refused whole, as Kubernetes would
            config_.kube_services.push_back(std::move(svc));
            reporter_.note(doc.Mark(), "", "read " + what + " for host and port lookups");
            return;
        }
        if (kind == "Gateway" && api.starts_with("gateway.networking.k8s.io/") && !name.empty()) {
            // Its listeners' hostnames, for the VirtualServices that name it (Istio's analyzers
            // read them so); Kubernetes validates the rest.
            KubeGateway gw;
            gw.meta = meta;
            yaml::Node listeners = field(doc, {"spec", "listeners"});
            for (std::size_t i = 0; listeners.IsSequence() && i < listeners.size(); ++i) {
                yaml::Node l = item(listeners, i);
                KubeGateway::Listener listener;
                listener.name = scalar_at(l, {"name"});
                listener.hostname = scalar_at(l, {"hostname"});
                listener.protocol = scalar_at(l, {"protocol"});
                listener.port = port_number(scalar_at(l, {"port"})).value_or(0);
                gw.listeners.push_back(std::move(listener));
            }
            std::erase_if(config_.kube_gateways, [&](const KubeGateway& g) {
                return g.meta.ns == ns && g.meta.name == name;  // a redefinition replaces it
            });
            config_.kube_gateways.push_back(std::move(gw));
            reporter_.note(doc.Mark(), "",
                           "read " + what + " (Gateway API) for VirtualService gateway lookups");
            return;
        }
        static const std::vector<std::string> kTemplated = {"Deployment", "StatefulSet",
                                                            "DaemonSet", "ReplicaSet", "Job"};
        if (std::find(kTemplated.begin(), kTemplated.end(), kind) != kTemplated.end()) {
            Workload w;
            w.kind = kind;
            w.name = name;
            w.ns = ns;
            w.labels = labels_at(doc, {"spec", "template", "metadata", "labels"});
            w.annotations = labels_at(doc, {"spec", "template", "metadata", "annotations"});
            w.object_labels = meta.labels;
            w.object_annotations = meta.annotations;
            w.where = meta.where;
            read_pod_spec(field(doc, {"spec", "template", "spec"}), w);
            config_.workloads.push_back(std::move(w));
            reporter_.note(doc.Mark(), "", "read " + what + " pod template labels");
            return;
        }
        if (kind == "Pod" && api == "v1") {
            Workload pod;
            pod.kind = kind;
            pod.name = name;
            pod.ns = ns;
            pod.labels = meta.labels;
            pod.node = scalar_at(doc, {"spec", "nodeName"});
            pod.annotations = meta.annotations;
            pod.object_labels = meta.labels;
            pod.object_annotations = meta.annotations;
            pod.where = meta.where;
            read_pod_spec(field(doc, {"spec"}), pod);
            for (const auto* list : {&pod.containers, &pod.init_containers}) {
                for (const auto& c : *list)
                    pod.istio_proxy |= c.name == "istio-proxy" && !c.image.empty();
            }
            config_.workloads.push_back(std::move(pod));
            reporter_.note(doc.Mark(), "", "read " + what + " labels");
            return;
        }
        if (kind == "Namespace" && api == "v1" && !name.empty()) {
            config_.namespaces[name] = meta.labels;
            config_.namespace_where[name] = meta.where;
            config_.namespace_annotations[name] = meta.annotations;
            reporter_.note(doc.Mark(), "", "read Namespace " + name + " labels");
            return;
        }
        if (kind == "Node" && api == "v1" && !name.empty()) {
            config_.node_labels[name] = meta.labels;
            reporter_.note(doc.Mark(), "", "read Node " + name + " topology labels");
            return;
        }
        if (kind == "ConfigMap" && api == "v1" && name.starts_with("istio-sidecar-injector")) {
            // The injector's Helm values (JSON, which YAML reads): whether namespaces without an
            // injection label are injected (the injection analyzer's IST0148).
            bool by_default = false;
            try {
                YAML::Node values = YAML::Load(scalar_at(doc, {"data", "values"}));
                by_default = scalar_text(field(values, {"sidecarInjectorWebhook",
                                                        "enableNamespacesByDefault"})) == "true";
            } catch (const YAML::Exception&) {
                by_default = false;  // istioctl reads unreadable values as false, too
            }
            config_.injector_namespaces_by_default[name] = by_default;
            reporter_.note(doc.Mark(), "", "read " + what + " injection defaults");
            return;
        }
        reporter_.note(doc.Mark(), "", "skipped " + what + " (not a resource remora reads)");
    }

    // The parts of a pod spec the analyzers read; Kubernetes validates the rest.
    static void read_pod_spec(const yaml::Node& spec, Workload& w) {
        auto uid = [](const yaml::Node& n) -> std::optional<int64_t> {
            std::string text = scalar_at(n, {"securityContext", "runAsUser"});
            int64_t v = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
            if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
                return std::nullopt;
            }
            return v;
        };
        w.run_as_user = uid(spec);
        w.host_network = scalar_at(spec, {"hostNetwork"}) == "true";
        for (auto [list, out] : {std::pair{"containers", &w.containers},
                                 std::pair{"initContainers", &w.init_containers}}) {
            yaml::Node containers = field(spec, {list});
            for (std::size_t i = 0; containers.IsSequence() && i < containers.size(); ++i) {
                yaml::Node c = item(containers, i);
                Container k{scalar_at(c, {"name"}), scalar_at(c, {"image"}), uid(c), {}};
                yaml::Node env = field(c, {"env"});
                for (std::size_t j = 0; env.IsSequence() && j < env.size(); ++j) {
                    yaml::Node e = item(env, j);
                    k.env[scalar_at(e, {"name"})] = scalar_at(e, {"value"});
                }
                out->push_back(std::move(k));
            }
        }
    }

    Config& config_;
    std::string file_;
    int line_offset_ = 0;
    const std::string* text_ = nullptr;
};

}  // namespace

std::string Diagnostic::str() const {
    std::string s = format_location(where) + ": ";
    if (severity == Severity::Warning) s += "warning: ";
    if (severity == Severity::Note) s += "note: ";
    if (!kind.empty()) s += kind + " " + ns + "/" + name + ": ";
    if (!path.empty()) s += path + ": ";
    return s + message;
}

bool VirtualService::applies_to_mesh() const {
    return gateways.empty() ||
           std::find(gateways.begin(), gateways.end(), "mesh") != gateways.end();
}

void erase_files(Config& config, const std::unordered_set<std::string>& files) {
    if (files.empty()) return;
    auto from = [&](const Location& where) { return files.count(where.file) > 0; };
    auto erase = [&](auto& v, const char* kind) {
        std::erase_if(v, [&](const auto& r) {
            if (!from(r.meta.where)) return false;
            config.defined_names.erase(std::string(kind) + " " + r.meta.ns + "/" + r.meta.name);
            return true;
        });
    };
    erase(config.virtual_services, "VirtualService");
    erase(config.destination_rules, "DestinationRule");
    erase(config.service_entries, "ServiceEntry");
    erase(config.workload_entries, "WorkloadEntry");
    erase(config.peer_authentications, "PeerAuthentication");
    erase(config.authorization_policies, "AuthorizationPolicy");
    erase(config.sidecars, "Sidecar");
    erase(config.gateways, "Gateway");
    erase(config.request_authentications, "RequestAuthentication");
    erase(config.telemetries, "Telemetry");
    erase(config.proxy_configs, "ProxyConfig");
    std::erase_if(config.kube_services, [&](const KubeService& s) { return from(s.meta.where); });
    std::erase_if(config.kube_gateways, [&](const KubeGateway& g) { return from(g.meta.where); });
    std::erase_if(config.workloads, [&](const Workload& w) { return from(w.where); });
    std::erase_if(config.diagnostics, [&](const Diagnostic& d) { return from(d.where); });
}

void sort_by_name(Config& config) {
    auto sort = [](auto& v, auto meta) {
        auto less = [&](const auto& a, const auto& b) {
            const auto& [ans, aname] = meta(a);
            const auto& [bns, bname] = meta(b);
            return ans != bns ? ans < bns : aname < bname;
        };
        if (!std::is_sorted(v.begin(), v.end(), less)) std::stable_sort(v.begin(), v.end(), less);
    };
    auto by_meta = [](const auto& r) { return std::tie(r.meta.ns, r.meta.name); };
    sort(config.virtual_services, by_meta);
    sort(config.destination_rules, by_meta);
    sort(config.service_entries, by_meta);
    sort(config.workload_entries, by_meta);
    sort(config.peer_authentications, by_meta);
    sort(config.authorization_policies, by_meta);
    sort(config.sidecars, by_meta);
    sort(config.gateways, by_meta);
    sort(config.request_authentications, by_meta);
    sort(config.telemetries, by_meta);
    sort(config.proxy_configs, by_meta);
    sort(config.kube_services, by_meta);
    sort(config.kube_gateways, by_meta);
    sort(config.workloads, [](const Workload& w) { return std::tie(w.ns, w.name); });
}

bool Config::has_errors() const {
    return std::any_of(diagnostics.begin(), diagnostics.end(),
                       [](const Diagnostic& d) { return d.severity == Severity::Error; });
}

std::vector<const Diagnostic*> Config::errors() const {
    std::vector<const Diagnostic*> out;
    for (const auto& d : diagnostics) {
        if (d.severity == Severity::Error) out.push_back(&d);
    }
    return out;
}

std::vector<const Diagnostic*> Config::warnings() const {
    std::vector<const Diagnostic*> out;
    for (const auto& d : diagnostics) {
        if (d.severity == Severity::Warning) out.push_back(&d);
    }
    return out;
}

void load_yaml(Config& config, const std::string& yaml_text, const std::string& file_name) {
    // One document at a time (see yaml_documents): a syntax error costs only its own document.
    for (const auto& [first_line, text] : yaml_documents(yaml_text)) {
        yaml::Document doc;
        try {
            doc = yaml::load(text);
        } catch (const YamlLimitError& e) {
            Reporter r(config.diagnostics, file_name, first_line - 1);
            r.error(e.mark, "", e.msg + "; the document is refused");
            continue;
        } catch (const YAML::Exception& e) {
            Reporter r(config.diagnostics, file_name, first_line - 1);
            r.error(e.mark, "", "YAML syntax error: " + e.msg);
            continue;
        }
        DocumentLoader loader(config, file_name, first_line - 1, &text);
        loader.load(doc.root());
    }
}

Config load_yaml(const std::string& yaml_text, const std::string& file_name) {
    Config config;
    load_yaml(config, yaml_text, file_name);
    return config;
}

void load_path(Config& config, const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        std::vector<fs::path> files;
        for (auto it = fs::recursive_directory_iterator(path, ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            auto ext = it->path().extension();
            if (it->is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
                files.push_back(it->path());
            }
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files)
            load_path(config, f);
        if (!ec) return;
    }
    std::ifstream in(path, std::ios::binary);
    std::string text;
    if (in) {
        // One read of the whole file into one string (a stream's rdbuf() copied it twice).
        in.seekg(0, std::ios::end);
        const auto size = in.tellg();
        in.seekg(0, std::ios::beg);
        if (size > 0) {
            text.resize(static_cast<std::size_t>(size));
            in.read(text.data(), static_cast<std::streamsize>(text.size()));
        } else {  // not seekable (a pipe) or empty
            in.clear();
            std::ostringstream all;
            all << in.rdbuf();
            text = all.str();
        }
    }
    if (!in) {
        Reporter r(config.diagnostics, path.string());
        r.error(YAML::Mark::null_mark(), "", "cannot read file");
        return;
    }
    load_yaml(config, text, path.string());
}

}  // namespace remora::control::model
