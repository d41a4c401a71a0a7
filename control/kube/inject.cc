// Sidecar injection: the pod template rewrite that Istio's injector does, with Remora's images,
// arguments and ports (see docs/kubernetes.md for each field and why it is there).
#include "control/kube/inject.h"

#include "control/store/yaml_json.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <map>
#include <set>

namespace remora::control::kube {

namespace json = boost::json;

const char* outcome_name(InjectOutcome o) {
    switch (o) {
        case InjectOutcome::injected:
            return "injected";
        case InjectOutcome::already_injected:
            return "already injected";
        case InjectOutcome::opted_out:
            return "opted out";
        case InjectOutcome::not_a_workload:
            return "not a workload";
    }
    return "?";
}

namespace {

constexpr const char* kProxyName = "remora-proxy";
constexpr const char* kInitName = "remora-init";
constexpr int kHealthPort = 15021;
constexpr int kMetricsPort = 15090;
constexpr const char* kTokenDir = "/var/run/secrets/tokens";
constexpr const char* kTokenFile = "remora-token";
constexpr const char* kRootCertDir = "/var/run/secrets/remora";
constexpr const char* kStatusAnnotation = "sidecar.istio.io/status";

json::object& object_at(json::object& o, std::string_view key) {
    json::value& v = o[key];
    if (!v.is_object()) v = json::object();
    return v.as_object();
}

json::array& array_at(json::object& o, std::string_view key) {
    json::value& v = o[key];
    if (!v.is_array()) v = json::array();
    return v.as_array();
}

// "10", "0.5": what flags and Kubernetes quantities read (Boost.JSON would write 1E1).
std::string decimal(double d) {
    std::string s = std::to_string(d);
    while (s.find('.') != std::string::npos && (s.back() == '0' || s.back() == '.'))
        s.pop_back();
    return s;
}

// A scalar as text: annotations written unquoted (`inject: false`) arrive as booleans.
std::optional<std::string> text_of(const json::value* v) {
    if (!v) return std::nullopt;
    if (v->is_string()) return std::string(v->get_string());
    if (v->is_bool()) return v->get_bool() ? "true" : "false";
    if (v->is_int64()) return std::to_string(v->get_int64());
    if (v->is_uint64()) return std::to_string(v->get_uint64());
    if (v->is_double()) return decimal(v->get_double());
    return std::nullopt;
}

std::optional<std::string> text_at(const json::object& o, std::string_view key) {
    return text_of(o.if_contains(key));
}

std::string lower(std::string s) {
    for (char& c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool is_false(const std::optional<std::string>& v) {
    if (!v) return false;
    std::string l = lower(*v);
    return l == "false" || l == "n" || l == "no" || l == "off" || l == "0";
}

std::optional<bool> bool_of(const std::optional<std::string>& v) {
    if (!v) return std::nullopt;
    std::string l = lower(*v);
    if (l == "true" || l == "y" || l == "yes" || l == "on" || l == "1") return true;
    if (is_false(v)) return false;
    return std::nullopt;
}

std::optional<long long> whole_number(const json::value* v) {
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64() && v->get_uint64() <= uint64_t(std::numeric_limits<long long>::max()))
        return static_cast<long long>(v->get_uint64());
    return std::nullopt;  // fractions and non-numbers
}

json::object field_env(std::string_view name, std::string_view field_path) {
    return {{"name", name}, {"valueFrom", {{"fieldRef", {{"fieldPath", field_path}}}}}};
}

json::object value_env(std::string_view name, std::string_view value) {
    return {{"name", name}, {"value", value}};
}

// proxy.istio.io/config: the ProxyConfig fields a pod may set for its own proxy.
struct PodProxyConfig {
    json::object raw;
    std::optional<long long> concurrency;
    std::optional<std::string> drain_duration;
    std::optional<bool> hold;
    std::optional<double> sampling;
    std::optional<std::string> zipkin_address;
};

PodProxyConfig parse_proxy_config(const std::optional<std::string>& text) {
    PodProxyConfig pc;
    if (!text || text->find_first_not_of(" \t\r\n") == std::string::npos) return pc;
    json::value v;
    try {
        v = store::yaml_to_json(*text);
    } catch (const std::exception& e) {
        throw InjectError("annotation proxy.istio.io/config: " + std::string(e.what()));
    }
    if (!v.is_object()) throw InjectError("annotation proxy.istio.io/config: not a mapping");
    pc.raw = v.as_object();
    if (const json::value* c = pc.raw.if_contains("concurrency")) {
        pc.concurrency = whole_number(c);
        if (!pc.concurrency)
            throw InjectError("proxy.istio.io/config: concurrency: not a whole number");
    }
    pc.drain_duration = text_at(pc.raw, "terminationDrainDuration");
    if (auto h = text_at(pc.raw, "holdApplicationUntilProxyStarts")) {
        pc.hold = bool_of(h);
        if (!pc.hold) {
            throw InjectError("proxy.istio.io/config: holdApplicationUntilProxyStarts: \"" + *h +
                              "\" is not a boolean");
        }
    }
    if (const json::value* t = pc.raw.if_contains("tracing"); t && t->is_object()) {
        if (const json::value* s = t->as_object().if_contains("sampling"); s && s->is_number())
            pc.sampling = s->to_number<double>();
        if (const json::value* z = t->as_object().if_contains("zipkin"); z && z->is_object())
            pc.zipkin_address = text_at(z->as_object(), "address");
    }
    return pc;
}

// A named port ("http") resolved against the container's ports; numbers pass through.
std::optional<long long> resolve_port(const json::value& port, const json::object& container) {
    if (port.is_number()) return whole_number(&port);
    if (!port.is_string()) return std::nullopt;
    std::string name(port.get_string());
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) return std::stoll(name);
    if (const json::value* ports = container.if_contains("ports"); ports && ports->is_array()) {
        for (const json::value& p : ports->get_array()) {
            if (p.is_object() && text_at(p.as_object(), "name") == name) {
                return whole_number(p.as_object().if_contains("containerPort"));
            }
        }
    }
    return std::nullopt;
}

// Rewrites an app container's httpGet (HTTP and HTTPS), tcpSocket and grpc probes to the proxy's
// health port, as Istio's rewriteAppHTTPProbers does: kubelet's probes come from outside the pod
// without a mesh certificate and would be refused under STRICT mTLS. The original probes go to
// the proxy in ISTIO_KUBE_APP_PROBERS; exec probes run inside the container and stay.
void rewrite_probes(json::object& container, json::object& probers) {
    std::string cname = text_at(container, "name").value_or("");
    static const std::pair<const char*, const char*> kinds[] = {
        {"livenessProbe", "livez"}, {"readinessProbe", "readyz"}, {"startupProbe", "startupz"}};
    for (const auto& [field, suffix] : kinds) {
        json::value* pv = container.if_contains(field);
        if (!pv || !pv->is_object()) continue;
        json::object& probe = pv->as_object();
        json::object original;
        if (json::value* h = probe.if_contains("httpGet"); h && h->is_object()) {
            json::object get = h->as_object();
            std::string scheme = text_at(get, "scheme").value_or("HTTP");
            if (scheme != "HTTP" && scheme != "HTTPS") continue;  // the API server refuses others
            const json::value* port = get.if_contains("port");
            std::optional<long long> n = port ? resolve_port(*port, container) : std::nullopt;
            if (!n || *n == kHealthPort) continue;
            get["port"] = *n;
            if (!get.contains("path")) get["path"] = "/";
            original["httpGet"] = std::move(get);
            probe.erase("httpGet");
        } else if (json::value* t = probe.if_contains("tcpSocket"); t && t->is_object()) {
            const json::value* port = t->as_object().if_contains("port");
            std::optional<long long> n = port ? resolve_port(*port, container) : std::nullopt;
            if (!n) continue;
            original["tcpSocket"] = json::object{{"port", *n}};
            probe.erase("tcpSocket");
        } else if (json::value* g = probe.if_contains("grpc"); g && g->is_object()) {
            std::optional<long long> port = whole_number(g->as_object().if_contains("port"));
            if (!port) continue;
            const json::value* service = g->as_object().if_contains("service");
            original["grpc"] = json::object{
                {"port", *port}, {"service", service && service->is_string() ? *service : nullptr}};
            probe.erase("grpc");
        } else {
            continue;  // exec probes run inside the container, where kubelet runs them
        }
        if (const json::value* t = probe.if_contains("timeoutSeconds"))
            original["timeoutSeconds"] = *t;
        std::string path = "/app-health/" + cname + "/" + suffix;
        probe["httpGet"] = json::object{{"path", path}, {"port", kHealthPort}, {"scheme", "HTTP"}};
        probers[path] = std::move(original);
    }
}

json::object resources_of(const json::object& annotations) {
    auto get = [&](const char* key, const char* fallback) {
        return text_at(annotations, key).value_or(fallback);
    };
    return {{"limits",
             {{"cpu", get("sidecar.istio.io/proxyCPULimit", "2")},
              {"memory", get("sidecar.istio.io/proxyMemoryLimit", "1Gi")}}},
            {"requests",
             {{"cpu", get("sidecar.istio.io/proxyCPU", "100m")},
              {"memory", get("sidecar.istio.io/proxyMemory", "128Mi")}}}};
}

json::object init_container(const json::object& annotations, const InjectOptions& options) {
    auto ann = [&](const char* key, const char* fallback) {
        return text_at(annotations, key).value_or(fallback);
    };
    std::string exclude_in = "15090,15021,15020";
    if (auto extra = text_at(annotations, "traffic.sidecar.istio.io/excludeInboundPorts");
        extra && !extra->empty())
        exclude_in += "," + *extra;
    json::array args = {kInitName,
                        "-p",
                        "15001",
                        "-z",
                        "15006",
                        "-u",
                        "1337",
                        "-g",
                        "1337",
                        "-m",
                        ann("sidecar.istio.io/interceptionMode", "REDIRECT"),
                        "-i",
                        ann("traffic.sidecar.istio.io/includeOutboundIPRanges", "*"),
                        "-x",
                        ann("traffic.sidecar.istio.io/excludeOutboundIPRanges", ""),
                        "-b",
                        ann("traffic.sidecar.istio.io/includeInboundPorts", "*"),
                        "-d",
                        exclude_in};
    if (auto o = text_at(annotations, "traffic.sidecar.istio.io/excludeOutboundPorts")) {
        args.push_back("-o");
        args.push_back(json::string(*o));
    }
    if (auto q = text_at(annotations, "traffic.sidecar.istio.io/includeOutboundPorts")) {
        args.push_back("-q");
        args.push_back(json::string(*q));
    }
    return {{"name", kInitName},
            {"image", options.proxy_image},
            {"args", std::move(args)},
            {"resources", resources_of(annotations)},
            {"securityContext",
             {{"allowPrivilegeEscalation", false},
              {"capabilities", {{"add", {"NET_ADMIN", "NET_RAW"}}, {"drop", {"ALL"}}}},
              {"privileged", false},
              {"readOnlyRootFilesystem", false},
              {"runAsGroup", 0},
              {"runAsNonRoot", false},
              {"runAsUser", 0}}}};
}

std::string join_labels(const json::object& labels) {
    std::string out;
    for (const auto& kv : labels) {
        auto v = text_of(&kv.value());
        if (!v) continue;
        if (!out.empty()) out += ",";
        out += std::string(kv.key()) + "=" + *v;
    }
    return out;
}

struct ProxyPlan {
    bool native;
    bool hold;
    json::object probers;
};

json::object proxy_container(const json::object& metadata, const json::array& app_containers,
                             const PodProxyConfig& pc, const ProxyPlan& plan,
                             const InjectOptions& options, const std::string& workload_name,
                             const std::string& owner) {
    const json::object empty;
    const json::value* av = metadata.if_contains("annotations");
    const json::object& annotations = av && av->is_object() ? av->as_object() : empty;
    const json::value* lv = metadata.if_contains("labels");
    const json::object& labels = lv && lv->is_object() ? lv->as_object() : empty;

    json::array args = {kProxyName,
                        "--control",
                        "$(CA_ADDR)",
                        "--token-file",
                        std::string(kTokenDir) + "/" + kTokenFile,
                        "--trust-bundle",
                        std::string(kRootCertDir) + "/root-cert.pem",
                        "--trust-domain",
                        options.trust_domain,
                        "--namespace",
                        "$(POD_NAMESPACE)",
                        "--service-account",
                        "$(SERVICE_ACCOUNT)",
                        "--pod-name",
                        "$(POD_NAME)",
                        "--pod-ip",
                        "$(INSTANCE_IP)",
                        "--workload-name",
                        workload_name};
    // Istio's status port: a Job's app POSTs /quitquitquit here when it is done.
    args.push_back("--agent");
    args.push_back("0.0.0.0:15020");
    if (std::string l = join_labels(labels); !l.empty()) {
        args.push_back("--labels");
        args.push_back(json::string(l));
    }
    if (pc.concurrency) {
        args.push_back("--concurrency");
        args.push_back(json::string(std::to_string(*pc.concurrency)));
    }
    if (pc.drain_duration) {
        args.push_back("--drain-duration");
        args.push_back(json::string(*pc.drain_duration));
    }
    if (pc.sampling) {
        args.push_back("--trace-sampling");
        args.push_back(json::string(decimal(*pc.sampling)));
    }
    if (pc.zipkin_address) {
        args.push_back("--zipkin-address");
        args.push_back(json::string(*pc.zipkin_address));
    }

    json::array pod_ports;
    std::string app_names;
    for (const json::value& c : app_containers) {
        if (!c.is_object()) continue;
        if (!app_names.empty()) app_names += ",";
        app_names += text_at(c.as_object(), "name").value_or("");
        if (const json::value* ps = c.as_object().if_contains("ports"); ps && ps->is_array())
            for (const json::value& p : ps->get_array())
                pod_ports.push_back(p);
    }

    json::array env = {value_env("CA_ADDR", options.control_address),
                       field_env("POD_NAME", "metadata.name"),
                       field_env("POD_NAMESPACE", "metadata.namespace"),
                       field_env("INSTANCE_IP", "status.podIP"),
                       field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                       field_env("HOST_IP", "status.hostIP"),
                       value_env("PROXY_CONFIG", json::serialize(pc.raw)),
                       value_env("ISTIO_META_POD_PORTS", json::serialize(pod_ports)),
                       value_env("ISTIO_META_APP_CONTAINERS", app_names),
                       value_env("ISTIO_META_CLUSTER_ID", "Kubernetes"),
                       value_env("ISTIO_META_INTERCEPTION_MODE", "REDIRECT"),
                       value_env("ISTIO_META_WORKLOAD_NAME", workload_name),
                       value_env("ISTIO_META_OWNER", owner),
                       value_env("ISTIO_META_MESH_ID", options.trust_domain),
                       value_env("TRUST_DOMAIN", options.trust_domain)};
    if (auto level = text_at(annotations, "sidecar.istio.io/logLevel"))
        env.push_back(value_env("REMORA_LOG_LEVEL", *level));
    if (!plan.probers.empty())
        env.push_back(value_env("ISTIO_KUBE_APP_PROBERS", json::serialize(plan.probers)));

    json::object ready_get = {{"path", "/healthz/ready"}, {"port", kHealthPort}};
    json::object c = {
        {"name", kProxyName},
        {"image", options.proxy_image},
        {"args", std::move(args)},
        {"env", std::move(env)},
        {"ports",
         {{{"containerPort", kMetricsPort}, {"name", "http-envoy-prom"}, {"protocol", "TCP"}}}},
        {"readinessProbe",
         {{"failureThreshold", 4},
          {"httpGet", ready_get},
          {"periodSeconds", 15},
          {"timeoutSeconds", 3}}},
        {"startupProbe",
         {{"failureThreshold", 600},
          {"httpGet", ready_get},
          {"periodSeconds", 1},
          {"timeoutSeconds", 3}}},
        {"resources", resources_of(annotations)},
        {"securityContext",
         {{"allowPrivilegeEscalation", false},
          {"capabilities", {{"drop", {"ALL"}}}},
          {"privileged", false},
          {"readOnlyRootFilesystem", true},
          {"runAsGroup", 1337},
          {"runAsNonRoot", true},
          {"runAsUser", 1337}}},
        {"volumeMounts",
         {{{"mountPath", kRootCertDir}, {"name", "remora-ca-root-cert"}},
          {{"mountPath", "/var/lib/remora"}, {"name", "remora-data"}},
          {{"mountPath", kTokenDir}, {"name", "remora-token"}},
          {{"mountPath", "/etc/remora/pod"}, {"name", "remora-podinfo"}}}}};
    if (plan.native) {
        c["restartPolicy"] = "Always";
    } else if (plan.hold) {
        // The kubelet starts the next container only when this hook returns: the app's first
        // connection finds its proxy ready.
        c["lifecycle"] = {{"postStart", {{"exec", {{"command", {"remora-agent", "wait"}}}}}}};
    }
    return c;
}

json::array sidecar_volumes(const InjectOptions& options) {
    return {
        {{"name", "remora-data"}, {"emptyDir", {{"medium", "Memory"}}}},
        {{"name", "remora-podinfo"},
         {"downwardAPI",
          {{"items",
            {{{"fieldRef", {{"fieldPath", "metadata.labels"}}}, {"path", "labels"}},
             {{"fieldRef", {{"fieldPath", "metadata.annotations"}}}, {"path", "annotations"}}}}}}},
        {{"name", "remora-token"},
         {"projected",
          {{"sources",
            {{{"serviceAccountToken",
               {{"audience", options.token_audience},
                {"expirationSeconds", 43200},
                {"path", kTokenFile}}}}}}}}},
        {{"name", "remora-ca-root-cert"}, {"configMap", {{"name", options.root_cert_configmap}}}}};
}

json::array names_of(const json::array& items) {
    json::array out;
    for (const json::value& i : items)
        if (i.is_object())
            if (auto n = text_at(i.as_object(), "name")) out.push_back(json::string(*n));
    return out;
}

}  // namespace

InjectOutcome inject_pod(json::object& metadata, json::object& spec, const InjectOptions& options,
                         const std::string& workload_name, const std::string& owner) {
    // Decide before changing anything: an opted-out, injected or refused pod stays as it came.
    const json::object no_members;
    const json::value* av = metadata.if_contains("annotations");
    const json::value* lv = metadata.if_contains("labels");
    const json::object& old_annotations = av && av->is_object() ? av->as_object() : no_members;
    const json::object& old_labels = lv && lv->is_object() ? lv->as_object() : no_members;
    // The label wins over the annotation, as in Istio.
    auto inject_flag = text_at(old_labels, "sidecar.istio.io/inject");
    if (!inject_flag) inject_flag = text_at(old_annotations, "sidecar.istio.io/inject");
    const json::value* host_network = spec.if_contains("hostNetwork");
    if (is_false(inject_flag) ||
        (host_network && host_network->is_bool() && host_network->get_bool()))
        return InjectOutcome::opted_out;
    if (old_annotations.contains(kStatusAnnotation)) return InjectOutcome::already_injected;
    for (const char* field : {"containers", "initContainers"}) {
        if (const json::value* cs = spec.if_contains(field); cs && cs->is_array()) {
            for (const json::value& c : cs->get_array()) {
                if (c.is_object() && (text_at(c.as_object(), "name") == kProxyName ||
                                      text_at(c.as_object(), "name") == kInitName))
                    return InjectOutcome::already_injected;
            }
        }
    }
    PodProxyConfig pc = parse_proxy_config(text_at(old_annotations, "proxy.istio.io/config"));

    // Every member is made before any reference is taken: inserting into a json::object or
    // erasing from it moves its other members.
    for (const char* k : {"annotations", "labels"})
        object_at(metadata, k);
    for (const char* k : {"containers", "initContainers", "volumes"})
        array_at(spec, k);
    json::object& annotations = metadata.at("annotations").as_object();
    json::object& labels = metadata.at("labels").as_object();

    ProxyPlan plan;
    plan.native = options.native_sidecar;
    if (auto n = bool_of(text_at(annotations, "sidecar.istio.io/nativeSidecar"))) plan.native = *n;
    plan.hold = pc.hold.value_or(options.hold_application_until_proxy_starts);

    json::array& containers = spec.at("containers").as_array();
    if (!is_false(text_at(annotations, "sidecar.istio.io/rewriteAppHTTPProbers"))) {
        for (json::value& c : containers)
            if (c.is_object()) rewrite_probes(c.as_object(), plan.probers);
    }

    // Labels first: the proxy's --labels carries them for telemetry.
    auto first_of = [&](std::initializer_list<const char*> keys) -> std::optional<std::string> {
        for (const char* k : keys)
            if (auto v = text_at(labels, k)) return v;
        return std::nullopt;
    };
    std::string canonical_name =
        first_of({"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"})
            .value_or(workload_name);
    std::string canonical_rev =
        first_of({"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"})
            .value_or("latest");
    labels["security.istio.io/tlsMode"] = "istio";
    labels["service.istio.io/canonical-name"] = canonical_name;
    labels["service.istio.io/canonical-revision"] = canonical_rev;

    json::object proxy =
        proxy_container(metadata, containers, pc, plan, options, workload_name, owner);
    std::string default_container;
    if (!containers.empty() && containers.front().is_object())
        default_container = text_at(containers.front().as_object(), "name").value_or("");

    json::array& inits = spec.at("initContainers").as_array();
    json::array new_inits = {init_container(annotations, options)};
    if (plan.native) new_inits.push_back(std::move(proxy));
    for (json::value& c : inits)
        new_inits.push_back(std::move(c));
    inits = std::move(new_inits);
    if (!plan.native) {
        if (plan.hold) {
            containers.insert(containers.begin(), std::move(proxy));
        } else {
            containers.push_back(std::move(proxy));
        }
    }
    json::array& volumes = spec.at("volumes").as_array();
    for (json::value& v : sidecar_volumes(options))
        volumes.push_back(std::move(v));

    if (!default_container.empty()) {
        annotations["kubectl.kubernetes.io/default-container"] = default_container;
        annotations["kubectl.kubernetes.io/default-logs-container"] = default_container;
    }
    // An app that declares its own scrape target keeps it: the proxy does not merge app metrics
    // into its own as Istio's agent does (docs/kubernetes.md).
    if (!annotations.contains("prometheus.io/scrape") &&
        !annotations.contains("prometheus.io/port")) {
        annotations["prometheus.io/path"] = "/stats/prometheus";
        annotations["prometheus.io/port"] = std::to_string(kMetricsPort);
        annotations["prometheus.io/scrape"] = "true";
    }
    annotations["istio.io/rev"] = "default";
    json::array sidecar_inits = {kInitName};
    json::value sidecar_containers = nullptr;
    if (plan.native) {
        sidecar_inits.push_back(kProxyName);
    } else {
        sidecar_containers = json::array{kProxyName};
    }
    json::object status = {{"initContainers", sidecar_inits},
                           {"containers", sidecar_containers},
                           {"volumes", names_of(sidecar_volumes(options))},
                           {"imagePullSecrets", nullptr},
                           {"revision", "default"}};
    annotations[kStatusAnnotation] = json::serialize(status);
    return InjectOutcome::injected;
}

namespace {

std::string plural_of(const std::string& kind) {
    std::string l = lower(kind);
    return l + "s";
}

// The Deployment behind a ReplicaSet-owned pod ("hello-5d4f8c7b9" → "hello"), as Istio names
// workloads in telemetry.
std::pair<std::string, std::string> workload_of_pod(const json::object& metadata,
                                                    const std::string& ns) {
    std::string name = text_at(metadata, "name").value_or("");
    if (const json::value* refs = metadata.if_contains("ownerReferences");
        refs && refs->is_array()) {
        for (const json::value& r : refs->get_array()) {
            if (!r.is_object()) continue;
            std::string kind = text_at(r.as_object(), "kind").value_or("");
            std::string owner = text_at(r.as_object(), "name").value_or("");
            std::string api = text_at(r.as_object(), "apiVersion").value_or("v1");
            if (kind == "ReplicaSet" && owner.rfind('-') != std::string::npos) {
                std::string dep = owner.substr(0, owner.rfind('-'));
                return {dep, "kubernetes://apis/apps/v1/namespaces/" + ns + "/deployments/" + dep};
            }
            if (!owner.empty()) {
                return {owner, "kubernetes://apis/" + api + "/namespaces/" + ns + "/" +
                                   plural_of(kind) + "/" + owner};
            }
        }
    }
    if (name.empty()) {
        name = text_at(metadata, "generateName").value_or("");
        while (!name.empty() && name.back() == '-')
            name.pop_back();
    }
    return {name, "kubernetes://apis/v1/namespaces/" + ns + "/pods/" + name};
}

// inject_pod on `holder`'s metadata and spec, made if absent and removed again if nothing was
// injected, so that a pod left alone comes back as it was.
InjectOutcome inject_into(json::object& holder, const char* spec_key, const InjectOptions& options,
                          const std::string& workload, const std::string& owner) {
    bool had_metadata = holder.contains("metadata");
    bool had_spec = holder.contains(spec_key);
    object_at(holder, "metadata");
    object_at(holder, spec_key);
    InjectOutcome r = inject_pod(holder.at("metadata").as_object(), holder.at(spec_key).as_object(),
                                 options, workload, owner);
    if (r != InjectOutcome::injected) {
        if (!had_metadata) holder.erase("metadata");
        if (!had_spec) holder.erase(spec_key);
    }
    return r;
}

}  // namespace

InjectOutcome inject_object(json::value& object, const InjectOptions& options,
                            const std::string& ns_hint) {
    if (!object.is_object()) return InjectOutcome::not_a_workload;
    json::object& o = object.as_object();
    std::string kind = text_at(o, "kind").value_or("");
    if (kind == "List") {
        InjectOutcome result = InjectOutcome::not_a_workload;
        if (json::value* items = o.if_contains("items"); items && items->is_array()) {
            for (json::value& item : items->as_array()) {
                InjectOutcome r = inject_object(item, options, ns_hint);
                if (r == InjectOutcome::injected) result = r;
            }
        }
        return result;
    }
    json::value* spec = o.if_contains("spec");
    if (!spec || !spec->is_object()) return InjectOutcome::not_a_workload;
    const json::value* mv = o.if_contains("metadata");
    json::object metadata = mv && mv->is_object() ? mv->as_object() : json::object();
    std::string name = text_at(metadata, "name").value_or("");
    std::string ns = text_at(metadata, "namespace").value_or(ns_hint.empty() ? "default" : ns_hint);
    std::string api = text_at(o, "apiVersion").value_or("v1");

    if (kind == "Pod") {
        auto [workload, owner] = workload_of_pod(metadata, ns);
        return inject_into(o, "spec", options, workload, owner);
    }
    json::value* template_ = nullptr;
    static const std::set<std::string> with_template = {
        "Deployment", "StatefulSet",           "DaemonSet",       "ReplicaSet",
        "Job",        "ReplicationController", "DeploymentConfig"};
    if (with_template.count(kind)) {
        template_ = spec->as_object().if_contains("template");
    } else if (kind == "CronJob") {
        if (json::value* jt = spec->as_object().if_contains("jobTemplate"); jt && jt->is_object())
            if (json::value* js = jt->as_object().if_contains("spec"); js && js->is_object())
                template_ = js->as_object().if_contains("template");
    }
    if (!template_ || !template_->is_object()) return InjectOutcome::not_a_workload;
    json::object& t = template_->as_object();
    std::string owner =
        "kubernetes://apis/" + api + "/namespaces/" + ns + "/" + plural_of(kind) + "/" + name;
    return inject_into(t, "spec", options, name, owner);
}

std::string inject_yaml(const std::string& yaml_text, const std::string& source_name,
                        const InjectOptions& options) {
    std::vector<json::value> docs;
    try {
        docs = store::yaml_documents_to_json(yaml_text);
    } catch (const store::YamlSyntaxError& e) {
        throw InjectError(source_name + ":" + std::to_string(e.line) + ":" +
                          std::to_string(e.column) + ": not YAML: " + e.what());
    }
    std::string out;
    for (json::value& doc : docs) {
        if (doc.is_null()) continue;
        try {
            inject_object(doc, options);
        } catch (const InjectError& e) {
            std::string what;
            if (doc.is_object()) {
                const json::object& d = doc.as_object();
                what = text_at(d, "kind").value_or("?");
                if (const json::value* m = d.if_contains("metadata"); m && m->is_object())
                    what += "/" + text_at(m->as_object(), "name").value_or("");
            }
            throw InjectError(source_name + ": " + what + ": " + e.what());
        }
        out += store::json_to_yaml(doc);
        out += "---\n";
    }
    return out;
}

}  // namespace remora::control::kube
