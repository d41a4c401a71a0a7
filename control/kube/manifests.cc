// Install manifests: each object is built as JSON from the values; docs/kubernetes.md says why
// each one is there.
#include "control/kube/manifests.h"

#include "control/store/yaml_json.h"

#include "control/kube/base64.h"

#include <boost/json.hpp>

#include <algorithm>
#include <set>

namespace remora::control::kube {

namespace json = boost::json;

namespace {

// Every key, with the default profile's value.
const std::vector<std::pair<std::string, std::string>> kDefaults = {
    {"namespace", "remora-system"},
    {"hub", "localhost"},
    {"tag", "0.1.0"},
    {"trustDomain", "cluster.local"},
    {"control.replicas", "1"},
    {"control.resources.requests.cpu", "500m"},
    {"control.resources.requests.memory", "256Mi"},
    {"control.maxCertTtl", "90d"},
    // remora-control --kube: Services, EndpointSlices, Pods and the Istio CRDs from the API
    // server (the ClusterRole below lets it list and watch them).
    {"control.kubeApi", "true"},
    {"crds.enabled", "true"},
    {"injector.enabled", "true"},
    {"injector.failurePolicy", "Fail"},
    {"injector.reinvocationPolicy", "Never"},
    {"injector.timeoutSeconds", "10"},
    {"injector.nativeSidecar", "false"},
    {"injector.holdApplicationUntilProxyStarts", "true"},
    {"rootCertNamespaces", "default"},
};

const std::map<std::string, std::string> kAliases = {
    {"values.pilot.replicaCount", "control.replicas"},
    {"values.global.hub", "hub"},
    {"values.global.tag", "tag"},
    {"values.global.istioNamespace", "namespace"},
    {"values.pilot.resources.requests.cpu", "control.resources.requests.cpu"},
    {"values.pilot.resources.requests.memory", "control.resources.requests.memory"},
    {"values.sidecarInjectorWebhook.enableNamespacesByDefault", ""},
    {"values.global.proxy.holdApplicationUntilProxyStarts",
     "injector.holdApplicationUntilProxyStarts"},
    {"values.pilot.env.ENABLE_NATIVE_SIDECARS", "injector.nativeSidecar"},
    {"components.pilot.enabled", ""},
    {"meshConfig.trustDomain", "trustDomain"},
};

const std::set<std::string> kBoolKeys = {"crds.enabled", "injector.enabled", "control.kubeApi",
                                         "injector.nativeSidecar",
                                         "injector.holdApplicationUntilProxyStarts"};
const std::set<std::string> kNumberKeys = {"control.replicas", "injector.timeoutSeconds"};

bool is_dns_label(const std::string& s) {
    if (s.empty() || s.size() > 63) return false;
    if (!std::isalnum(static_cast<unsigned char>(s.front())) ||
        !std::isalnum(static_cast<unsigned char>(s.back())))
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t comma = s.find(',', start);
        if (comma == std::string::npos) comma = s.size();
        if (comma > start) out.push_back(s.substr(start, comma - start));
        start = comma + 1;
    }
    return out;
}

}  // namespace

InstallValues::InstallValues(const std::string& profile) : profile_(profile) {
    for (const auto& [k, v] : kDefaults)
        values_[k] = v;
    if (profile == "default") return;
    if (profile == "minimal") {
        // The CA and config distribution only: pods are injected with remoractl kube-inject.
        values_["injector.enabled"] = "false";
        return;
    }
    if (profile == "demo") {
        // As Istio's demo: every request logged and traced, small requests for a laptop.
        values_["control.resources.requests.cpu"] = "10m";
        values_["control.resources.requests.memory"] = "100Mi";
        mesh_["accessLogFile"] = "/dev/stdout";
        mesh_["defaultConfig.tracing.sampling"] = "100";
        return;
    }
    throw ValuesError("unknown profile \"" + profile + "\": default, minimal or demo");
}

std::vector<std::string> InstallValues::profiles() {
    return {"default", "minimal", "demo"};
}

std::vector<std::string> InstallValues::known_keys() {
    std::vector<std::string> out;
    for (const auto& kv : kDefaults)
        out.push_back(kv.first);
    out.push_back("meshConfig.<field>");
    return out;
}

void InstallValues::set(const std::string& assignment) {
    size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0)
        throw ValuesError("--set \"" + assignment + "\": expected key=value");
    std::string key = assignment.substr(0, eq);
    std::string value = assignment.substr(eq + 1);
    if (auto a = kAliases.find(key); a != kAliases.end()) {
        if (a->second.empty())
            throw ValuesError("--set " + key + ": Istio value that Remora does not use");
        key = a->second;
    }
    if (key.starts_with("meshConfig.") && key.size() > 11) {
        mesh_[key.substr(11)] = value;
        return;
    }
    auto it = values_.find(key);
    if (it == values_.end()) {
        std::string known;
        for (const std::string& k : known_keys())
            known += (known.empty() ? "" : ", ") + k;
        throw ValuesError("--set " + key + ": unknown value (known: " + known + ")");
    }
    if (kBoolKeys.count(key) && value != "true" && value != "false")
        throw ValuesError("--set " + key + "=" + value + ": expected true or false");
    if (kNumberKeys.count(key)) {
        bool digits = !value.empty() && value.size() < 6 &&
                      std::all_of(value.begin(), value.end(), ::isdigit);
        if (!digits) throw ValuesError("--set " + key + "=" + value + ": expected a number");
    }
    if (key == "injector.failurePolicy" && value != "Fail" && value != "Ignore")
        throw ValuesError("--set " + key + "=" + value + ": expected Fail or Ignore");
    if (key == "injector.reinvocationPolicy" && value != "Never" && value != "IfNeeded")
        throw ValuesError("--set " + key + "=" + value + ": expected Never or IfNeeded");
    if (key == "namespace" && !is_dns_label(value))
        throw ValuesError("--set namespace=" + value + ": not a DNS label");
    if (key == "rootCertNamespaces")
        for (const std::string& ns : split_list(value))
            if (!is_dns_label(ns))
                throw ValuesError("--set rootCertNamespaces: \"" + ns + "\" is not a DNS label");
    it->second = value;
}

std::string InstallValues::get(const std::string& key) const {
    return values_.at(key);
}
bool InstallValues::flag(const std::string& key) const {
    return values_.at(key) == "true";
}
long long InstallValues::number(const std::string& key) const {
    return std::stoll(values_.at(key));
}

InjectOptions InstallValues::inject_options() const {
    InjectOptions o;
    o.proxy_image = get("hub") + "/remora-proxy:" + get("tag");
    o.control_address = "remora-control." + get("namespace") + ".svc:15012";
    o.trust_domain = get("trustDomain");
    o.native_sidecar = flag("injector.nativeSidecar");
    o.hold_application_until_proxy_starts = flag("injector.holdApplicationUntilProxyStarts");
    return o;
}

namespace {

// "a.b.c" = v into nested objects, typed as YAML would type the plain scalar.
void set_path(json::object& root, const std::string& dotted, const std::string& value) {
    json::object* cur = &root;
    size_t start = 0;
    for (;;) {
        size_t dot = dotted.find('.', start);
        std::string part = dotted.substr(start, dot == std::string::npos ? dot : dot - start);
        if (dot == std::string::npos) {
            json::value typed = store::yaml_to_json(value);
            (*cur)[part] = typed.is_null() ? json::value(json::string(value)) : typed;
            return;
        }
        json::value& next = (*cur)[part];
        if (!next.is_object()) next = json::object();
        cur = &next.as_object();
        start = dot + 1;
    }
}

json::object meta(const std::string& name, const std::string& ns = "") {
    json::object m = {
        {"name", name},
        {"labels", {{"app", "remora-control"}, {"app.kubernetes.io/part-of", "remora"}}}};
    if (!ns.empty()) m["namespace"] = ns;
    return m;
}

struct CrdKind {
    const char* group;
    const char* kind;
    const char* plural;
    const char* short_name;
    std::vector<const char*> versions;
};

// The Istio kinds Remora reads (and those it accepts and reports unimplemented), so that
// `kubectl apply` of Istio YAML works unmodified.
const std::vector<CrdKind> kCrds = {
    {"networking.istio.io",
     "VirtualService",
     "virtualservices",
     "vs",
     {"v1", "v1beta1", "v1alpha3"}},
    {"networking.istio.io",
     "DestinationRule",
     "destinationrules",
     "dr",
     {"v1", "v1beta1", "v1alpha3"}},
    {"networking.istio.io", "ServiceEntry", "serviceentries", "se", {"v1", "v1beta1", "v1alpha3"}},
    {"networking.istio.io",
     "WorkloadEntry",
     "workloadentries",
     "we",
     {"v1", "v1beta1", "v1alpha3"}},
    {"networking.istio.io", "WorkloadGroup", "workloadgroups", "wg", {"v1", "v1beta1", "v1alpha3"}},
    {"networking.istio.io", "Gateway", "gateways", "gw", {"v1", "v1beta1", "v1alpha3"}},
    {"networking.istio.io", "Sidecar", "sidecars", "", {"v1", "v1beta1", "v1alpha3"}},
    {"security.istio.io", "PeerAuthentication", "peerauthentications", "pa", {"v1", "v1beta1"}},
    {"security.istio.io", "AuthorizationPolicy", "authorizationpolicies", "ap", {"v1", "v1beta1"}},
    {"security.istio.io",
     "RequestAuthentication",
     "requestauthentications",
     "ra",
     {"v1", "v1beta1"}},
};

json::object crd(const CrdKind& k) {
    json::array versions;
    for (const char* v : k.versions) {
        versions.push_back(json::object{
            {"name", v},
            {"served", true},
            {"storage", std::string(v) == "v1"},
            {"subresources", {{"status", json::object{}}}},
            {"schema",
             {{"openAPIV3Schema",
               {{"type", "object"},
                {"properties",
                 {{"spec", {{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}},
                  {"status",
                   {{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}}}}}}}}});
    }
    std::string group = k.group;
    json::array categories = {"istio-io", group.substr(0, group.find('.')) + "-istio-io"};
    json::object names = {
        {"kind", k.kind},
        {"listKind", std::string(k.kind) + "List"},
        {"plural", k.plural},
        {"singular",
         [&] {
             std::string s = k.kind;
             for (char& c : s)
                 c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
             return s;
         }()},
        {"categories", categories}};
    if (*k.short_name) names["shortNames"] = json::array{k.short_name};
    json::object m = {{"name", std::string(k.plural) + "." + k.group},
                      {"labels", {{"app.kubernetes.io/part-of", "remora"}}}};
    return {
        {"apiVersion", "apiextensions.k8s.io/v1"},
        {"kind", "CustomResourceDefinition"},
        {"metadata", m},
        {"spec",
         {{"group", k.group}, {"names", names}, {"scope", "Namespaced"}, {"versions", versions}}}};
}

json::object webhook(const std::string& name, json::object namespace_selector,
                     json::object object_selector, const InstallValues& v, const InstallCa& ca) {
    return {{"name", name},
            {"admissionReviewVersions", {"v1"}},
            {"clientConfig",
             {{"service",
               {{"name", "remora-control"},
                {"namespace", v.get("namespace")},
                {"path", "/inject"},
                {"port", 443}}},
              {"caBundle", base64(ca.root_cert_pem)}}},
            {"failurePolicy", v.get("injector.failurePolicy")},
            {"reinvocationPolicy", v.get("injector.reinvocationPolicy")},
            {"sideEffects", "None"},
            {"timeoutSeconds", v.number("injector.timeoutSeconds")},
            {"rules",
             {{{"operations", {"CREATE"}},
               {"apiGroups", {""}},
               {"apiVersions", {"v1"}},
               {"resources", {"pods"}}}}},
            {"namespaceSelector", std::move(namespace_selector)},
            {"objectSelector", std::move(object_selector)}};
}

json::object expr(const char* key, const char* op, std::vector<std::string> values = {}) {
    json::object e = {{"key", key}, {"operator", op}};
    if (!values.empty()) {
        json::array a;
        for (auto& s : values)
            a.push_back(json::string(s));
        e["values"] = std::move(a);
    }
    return e;
}

}  // namespace

std::string mesh_config_yaml(const InstallValues& values) {
    json::object mesh = {{"trustDomain", values.get("trustDomain")},
                         {"rootNamespace", values.get("namespace")}};
    for (const auto& [k, v] : values.mesh_config())
        set_path(mesh, k, v);
    return store::json_to_yaml(mesh);
}

std::vector<json::value> generate_manifests(const InstallValues& v, const InstallCa& ca) {
    const std::string ns = v.get("namespace");
    const bool injector = v.flag("injector.enabled");
    std::vector<json::value> out;

    out.push_back(
        json::object{{"apiVersion", "v1"},
                     {"kind", "Namespace"},
                     {"metadata", {{"name", ns}, {"labels", {{"istio-injection", "disabled"}}}}}});
    if (v.flag("crds.enabled"))
        for (const CrdKind& k : kCrds)
            out.push_back(crd(k));

    out.push_back(json::object{{"apiVersion", "v1"},
                               {"kind", "ServiceAccount"},
                               {"metadata", meta("remora-control", ns)}});
    json::array rules = {
        {{"apiGroups", {""}},
         {"resources", {"pods", "services", "endpoints", "namespaces", "nodes", "serviceaccounts"}},
         {"verbs", {"get", "list", "watch"}}},
        {{"apiGroups", {"discovery.k8s.io"}},
         {"resources", {"endpointslices"}},
         {"verbs", {"get", "list", "watch"}}},
        {{"apiGroups", {"networking.istio.io", "security.istio.io"}},
         {"resources", {"*"}},
         {"verbs", {"get", "list", "watch"}}},
        {{"apiGroups", {"networking.istio.io", "security.istio.io"}},
         {"resources", {"*/status"}},
         {"verbs", {"get", "update", "patch"}}},
        // The root certificate ConfigMap in every namespace, as istiod's namespace controller.
        {{"apiGroups", {""}},
         {"resources", {"configmaps"}},
         {"verbs", {"get", "list", "watch", "create", "update", "patch"}}},
        {{"apiGroups", {"authentication.k8s.io"}},
         {"resources", {"tokenreviews"}},
         {"verbs", {"create"}}},
    };
    if (injector) {
        rules.push_back(json::object{{"apiGroups", {"admissionregistration.k8s.io"}},
                                     {"resources", {"mutatingwebhookconfigurations"}},
                                     {"verbs", {"get", "list", "watch", "update", "patch"}}});
    }
    out.push_back(json::object{{"apiVersion", "rbac.authorization.k8s.io/v1"},
                               {"kind", "ClusterRole"},
                               {"metadata", meta("remora-control")},
                               {"rules", rules}});
    json::array subjects = {
        {{"kind", "ServiceAccount"}, {"name", "remora-control"}, {"namespace", ns}}};
    out.push_back(json::object{{"apiVersion", "rbac.authorization.k8s.io/v1"},
                               {"kind", "ClusterRoleBinding"},
                               {"metadata", meta("remora-control")},
                               {"roleRef",
                                {{"apiGroup", "rbac.authorization.k8s.io"},
                                 {"kind", "ClusterRole"},
                                 {"name", "remora-control"}}},
                               {"subjects", subjects}});

    out.push_back(json::object{{"apiVersion", "v1"},
                               {"kind", "ConfigMap"},
                               {"metadata", meta("remora", ns)},
                               {"data", {{"mesh", mesh_config_yaml(v)}}}});
    // The mesh CA (as Istio's cacerts plug-in Secret): every replica signs with the same root.
    out.push_back(json::object{{"apiVersion", "v1"},
                               {"kind", "Secret"},
                               {"metadata", meta("remora-cacerts", ns)},
                               {"type", "Opaque"},
                               {"stringData",
                                {{"ca-cert.pem", ca.ca_cert_pem},
                                 {"ca-key.pem", ca.ca_key_pem},
                                 {"root-cert.pem", ca.root_cert_pem}}}});
    if (!ca.cluster_jwks.empty()) {
        out.push_back(json::object{{"apiVersion", "v1"},
                                   {"kind", "ConfigMap"},
                                   {"metadata", meta("remora-cluster-jwks", ns)},
                                   {"data", {{"jwks.json", ca.cluster_jwks}}}});
    }
    std::vector<std::string> root_namespaces = {ns};
    for (const std::string& n : split_list(v.get("rootCertNamespaces")))
        if (std::find(root_namespaces.begin(), root_namespaces.end(), n) == root_namespaces.end())
            root_namespaces.push_back(n);
    for (const std::string& n : root_namespaces) {
        out.push_back(json::object{{"apiVersion", "v1"},
                                   {"kind", "ConfigMap"},
                                   {"metadata", meta("remora-ca-root-cert", n)},
                                   {"data", {{"root-cert.pem", ca.root_cert_pem}}}});
    }

    InjectOptions io = v.inject_options();
    json::array args = {"remora-control",
                        "--state-dir",
                        "/var/lib/remora",
                        "--listen",
                        "0.0.0.0:15012",
                        "--monitoring",
                        "0.0.0.0:15014",
                        "--mesh-config",
                        "/etc/remora/mesh/mesh",
                        "--ca-cert",
                        "/etc/remora/cacerts/ca-cert.pem",
                        "--ca-key",
                        "/etc/remora/cacerts/ca-key.pem",
                        "--root-cert",
                        "/etc/remora/cacerts/root-cert.pem",
                        "--max-ttl",
                        v.get("control.maxCertTtl")};
    if (v.flag("control.kubeApi")) args.push_back("--kube");
    json::array mounts = {
        {{"name", "state"}, {"mountPath", "/var/lib/remora"}},
        {{"name", "mesh"}, {"mountPath", "/etc/remora/mesh"}, {"readOnly", true}},
        {{"name", "cacerts"}, {"mountPath", "/etc/remora/cacerts"}, {"readOnly", true}}};
    json::array volumes = {{{"name", "state"}, {"emptyDir", json::object{}}},
                           {{"name", "mesh"}, {"configMap", {{"name", "remora"}}}},
                           {{"name", "cacerts"}, {"secret", {{"secretName", "remora-cacerts"}}}}};
    if (!ca.cluster_jwks.empty()) {
        args.push_back("--jwks");
        args.push_back("/etc/remora/jwks/jwks.json");
        mounts.push_back(json::object{
            {"name", "cluster-jwks"}, {"mountPath", "/etc/remora/jwks"}, {"readOnly", true}});
        volumes.push_back(json::object{{"name", "cluster-jwks"},
                                       {"configMap", {{"name", "remora-cluster-jwks"}}}});
    }
    json::array ports = {
        {{"name", "tls-api"}, {"containerPort", 15012}, {"protocol", "TCP"}},
        {{"name", "http-monitoring"}, {"containerPort", 15014}, {"protocol", "TCP"}}};
    if (injector) {
        for (const char* a : {"--webhook", "0.0.0.0:15017", "--inject-image"})
            args.push_back(a);
        args.push_back(json::string(io.proxy_image));
        args.push_back("--inject-control-address");
        args.push_back(json::string(io.control_address));
        if (io.native_sidecar) args.push_back("--inject-native-sidecar");
        if (!io.hold_application_until_proxy_starts) args.push_back("--inject-no-hold");
        ports.push_back(
            json::object{{"name", "https-webhook"}, {"containerPort", 15017}, {"protocol", "TCP"}});
    }
    json::object pod_labels = {{"app", "remora-control"},
                               {"sidecar.istio.io/inject", "false"},
                               {"app.kubernetes.io/part-of", "remora"}};
    json::object container = {{"name", "remora-control"},
                              {"image", v.get("hub") + "/remora-control:" + v.get("tag")},
                              {"args", args},
                              {"ports", ports},
                              {"readinessProbe",
                               {{"httpGet", {{"path", "/healthz"}, {"port", 15014}}},
                                {"periodSeconds", 3},
                                {"timeoutSeconds", 5}}},
                              {"resources",
                               {{"requests",
                                 {{"cpu", v.get("control.resources.requests.cpu")},
                                  {"memory", v.get("control.resources.requests.memory")}}}}},
                              {"securityContext",
                               {{"allowPrivilegeEscalation", false},
                                {"capabilities", {{"drop", {"ALL"}}}},
                                {"readOnlyRootFilesystem", true},
                                {"runAsNonRoot", true},
                                {"runAsUser", 1337},
                                {"runAsGroup", 1337}}},
                              {"volumeMounts", mounts}};
    out.push_back(json::object{{"apiVersion", "apps/v1"},
                               {"kind", "Deployment"},
                               {"metadata", meta("remora-control", ns)},
                               {"spec",
                                {{"replicas", v.number("control.replicas")},
                                 {"selector", {{"matchLabels", {{"app", "remora-control"}}}}},
                                 {"template",
                                  {{"metadata", {{"labels", pod_labels}}},
                                   {"spec",
                                    {{"serviceAccountName", "remora-control"},
                                     // The state dir's emptyDir is written by uid 1337.
                                     {"securityContext", {{"fsGroup", 1337}}},
                                     {"containers", {container}},
                                     {"volumes", volumes}}}}}}}});

    json::array service_ports = {
        {{"name", "tls-api"}, {"port", 15012}, {"targetPort", 15012}, {"protocol", "TCP"}},
        {{"name", "http-monitoring"}, {"port", 15014}, {"targetPort", 15014}, {"protocol", "TCP"}}};
    if (injector) {
        service_ports.push_back(json::object{
            {"name", "https-webhook"}, {"port", 443}, {"targetPort", 15017}, {"protocol", "TCP"}});
    }
    out.push_back(json::object{
        {"apiVersion", "v1"},
        {"kind", "Service"},
        {"metadata", meta("remora-control", ns)},
        {"spec", {{"selector", {{"app", "remora-control"}}}, {"ports", service_ports}}}});

    if (injector) {
        // Istio's selectors: a namespace labelled istio-injection=enabled (or Remora's own
        // remora-injection=enabled) injects every pod that does not opt out; elsewhere a pod
        // opts in with the label sidecar.istio.io/inject=true. The control plane's namespace
        // and kube-system are never injected.
        auto never = expr("kubernetes.io/metadata.name", "NotIn", {ns, "kube-system"});
        json::array hooks = {
            webhook("namespace.sidecar-injector.remora.io",
                    {{"matchExpressions", {expr("istio-injection", "In", {"enabled"}), never}}},
                    {{"matchExpressions", {expr("sidecar.istio.io/inject", "NotIn", {"false"})}}},
                    v, ca),
            webhook("remora-namespace.sidecar-injector.remora.io",
                    {{"matchExpressions",
                      {expr("remora-injection", "In", {"enabled"}),
                       expr("istio-injection", "DoesNotExist"), never}}},
                    {{"matchExpressions", {expr("sidecar.istio.io/inject", "NotIn", {"false"})}}},
                    v, ca),
            webhook("object.sidecar-injector.remora.io",
                    {{"matchExpressions",
                      {expr("istio-injection", "DoesNotExist"),
                       expr("remora-injection", "DoesNotExist"), never}}},
                    {{"matchExpressions", {expr("sidecar.istio.io/inject", "In", {"true"})}}}, v,
                    ca)};
        out.push_back(json::object{{"apiVersion", "admissionregistration.k8s.io/v1"},
                                   {"kind", "MutatingWebhookConfiguration"},
                                   {"metadata", meta("remora-sidecar-injector")},
                                   {"webhooks", hooks}});
    }
    return out;
}

}  // namespace remora::control::kube
