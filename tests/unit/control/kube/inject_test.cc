// Sidecar injection: Istio's golden hello.yaml.injected structure, every workload kind, the
// annotations a pod can set, idempotence, opting out and bad input.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "control/kube/inject.h"
#include "control/store/yaml_json.h"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace remora::control;
using kube::InjectOptions;
using kube::InjectOutcome;

namespace {

std::string read_sample(const std::string& name) {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir != nullptr, "REMORA_ISTIO_SAMPLES is not set");
    std::ifstream f(fs::path(dir) / name);
    REQUIRE(f);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

json::value first_doc(const std::string& yaml) {
    auto docs = store::yaml_documents_to_json(yaml);
    REQUIRE(!docs.empty());
    return docs.front();
}

// Injects `yaml` (one document) through the YAML text path and reads the result back.
json::value inject(const std::string& yaml, const InjectOptions& options = {}) {
    return first_doc(kube::inject_yaml(yaml, "test.yaml", options));
}

const json::object& at(const json::value& v, std::initializer_list<const char*> path) {
    const json::value* cur = &v;
    for (const char* p : path) {
        REQUIRE_MESSAGE(cur->is_object(), p);
        cur = cur->as_object().if_contains(p);
        REQUIRE_MESSAGE(cur != nullptr, p);
    }
    REQUIRE(cur->is_object());
    return cur->as_object();
}

const json::array& arr(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    REQUIRE_MESSAGE((v && v->is_array()), key);
    return v->as_array();
}

const json::object& named(const json::array& items, const std::string& name) {
    for (const json::value& i : items)
        if (i.is_object() && i.as_object().contains("name") &&
            i.as_object().at("name").as_string() == name)
            return i.as_object();
    FAIL("no item named " << name);
    static json::object none;
    return none;
}

std::set<std::string> keys(const json::object& o) {
    std::set<std::string> out;
    for (const auto& kv : o)
        // Go's marshalling writes empty structs ("resources: {}"); they carry nothing.
        if (!(kv.value().is_object() && kv.value().as_object().empty()))
            out.insert(std::string(kv.key()));
    return out;
}

std::string env_value(const json::object& container, const std::string& name) {
    for (const json::value& e : arr(container, "env"))
        if (e.as_object().at("name").as_string() == name)
            return std::string(e.as_object().at("value").as_string());
    return "<unset>";
}

bool has_arg_pair(const json::object& container, const std::string& flag,
                  const std::string& value) {
    const json::array& a = arr(container, "args");
    for (size_t i = 0; i + 1 < a.size(); ++i)
        if (a[i].as_string() == flag && a[i + 1].as_string() == value) return true;
    return false;
}

const char* kDeployment = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, version: v2}
      annotations: ANNOTATIONS
    spec:
      containers:
      - name: web
        image: web:1
        ports:
        - {name: http, containerPort: 8080}
        livenessProbe:
          httpGet: {path: /live, port: http}
          timeoutSeconds: 2
        readinessProbe:
          tcpSocket: {port: 8080}
        startupProbe:
          exec: {command: [true]}
)";

std::string deployment(const std::string& annotations = "{}") {
    std::string s = kDeployment;
    s.replace(s.find("ANNOTATIONS"), 11, annotations);
    return s;
}

}  // namespace

TEST_CASE("hello.yaml injected has the structure of Istio's hello.yaml.injected") {
    InjectOptions native;
    native.native_sidecar = true;  // the golden was made with native sidecars
    json::value ours = inject(read_sample("hello.yaml"), native);
    json::value golden = first_doc(read_sample("hello.yaml.injected"));

    const json::object& our_meta = at(ours, {"spec", "template", "metadata"});
    const json::object& gold_meta = at(golden, {"spec", "template", "metadata"});
    CHECK(our_meta.at("labels") == gold_meta.at("labels"));
    const json::object& our_ann = our_meta.at("annotations").as_object();
    const json::object& gold_ann = gold_meta.at("annotations").as_object();
    CHECK(keys(our_ann) == keys(gold_ann));
    for (const auto& kv : gold_ann) {
        std::string k(kv.key());
        if (k == "prometheus.io/port") {
            CHECK(our_ann.at(k).as_string() == "15090");  // Remora's metrics port, not the agent's
        } else if (k != "sidecar.istio.io/status") {
            CHECK_MESSAGE(our_ann.at(k) == kv.value(), k);
        }
    }
    json::value status = json::parse(our_ann.at("sidecar.istio.io/status").as_string());
    json::value gold_status = json::parse(gold_ann.at("sidecar.istio.io/status").as_string());
    CHECK(keys(status.as_object()) == keys(gold_status.as_object()));
    CHECK(json::serialize(status.at("initContainers")) == R"(["remora-init","remora-proxy"])");
    CHECK(status.at("containers").is_null());

    const json::object& our_spec = at(ours, {"spec", "template", "spec"});
    const json::object& gold_spec = at(golden, {"spec", "template", "spec"});
    CHECK(keys(our_spec) == keys(gold_spec));
    // The app container is untouched.
    REQUIRE(arr(our_spec, "containers").size() == 1);
    CHECK(keys(arr(our_spec, "containers")[0].as_object()) ==
          keys(arr(gold_spec, "containers")[0].as_object()));

    const json::array& our_inits = arr(our_spec, "initContainers");
    const json::array& gold_inits = arr(gold_spec, "initContainers");
    REQUIRE(our_inits.size() == gold_inits.size());
    const json::object& init = our_inits[0].as_object();
    const json::object& gold_init = gold_inits[0].as_object();
    CHECK(init.at("name") == "remora-init");
    CHECK(keys(init) == keys(gold_init));
    CHECK(init.at("securityContext") == gold_init.at("securityContext"));
    CHECK(init.at("resources") == gold_init.at("resources"));
    // istio-iptables' flags with the same values, plus the explicit -g the contract names.
    const json::array& gold_args = gold_init.at("args").as_array();
    for (size_t i = 1; i + 1 < gold_args.size(); ++i)
        if (gold_args[i].as_string().starts_with("-") &&
            !gold_args[i].as_string().starts_with("--"))
            CHECK_MESSAGE(has_arg_pair(init, std::string(gold_args[i].as_string()),
                                       std::string(gold_args[i + 1].as_string())),
                          gold_args[i].as_string());
    CHECK(has_arg_pair(init, "-g", "1337"));

    const json::object& proxy = our_inits[1].as_object();
    const json::object& gold_proxy = gold_inits[1].as_object();
    CHECK(proxy.at("name") == "remora-proxy");
    std::set<std::string> gold_keys = keys(gold_proxy);
    gold_keys.erase("lifecycle");  // Istio's preStop drain: remora-proxy drains on SIGTERM itself
    CHECK(keys(proxy) == gold_keys);
    for (const char* k : {"securityContext", "resources", "readinessProbe", "startupProbe",
                          "restartPolicy", "ports"})
        CHECK_MESSAGE(proxy.at(k) == gold_proxy.at(k), k);
    CHECK(env_value(proxy, "ISTIO_META_WORKLOAD_NAME") == "hello");
    CHECK(env_value(proxy, "ISTIO_META_OWNER") ==
          "kubernetes://apis/apps/v1/namespaces/default/deployments/hello");
    CHECK(env_value(proxy, "ISTIO_META_APP_CONTAINERS") == "hello");
    CHECK(json::parse(env_value(proxy, "ISTIO_META_POD_PORTS")) ==
          json::parse(R"([{"name":"http","containerPort":80}])"));

    // Every volume the proxy mounts exists, and each kind of Istio's volume that Remora needs
    // (memory emptyDir, pod info, the projected token, the root cert ConfigMap) is there.
    std::set<std::string> volume_names;
    for (const json::value& v : arr(our_spec, "volumes"))
        volume_names.insert(std::string(v.as_object().at("name").as_string()));
    for (const json::value& m : arr(proxy, "volumeMounts"))
        CHECK(volume_names.count(std::string(m.as_object().at("name").as_string())) == 1);
    const json::array& gold_vols = arr(gold_spec, "volumes");
    const json::array& our_vols = arr(our_spec, "volumes");
    CHECK(named(our_vols, "remora-data").at("emptyDir") ==
          named(gold_vols, "istio-envoy").at("emptyDir"));
    CHECK(named(our_vols, "remora-podinfo").at("downwardAPI") ==
          named(gold_vols, "istio-podinfo").at("downwardAPI"));
    json::object token = named(our_vols, "remora-token").at("projected").as_object();
    json::object gold_token = named(gold_vols, "istio-token").at("projected").as_object();
    auto& sat = token["sources"].as_array()[0].as_object()["serviceAccountToken"].as_object();
    CHECK(sat.at("audience") == "remora-ca");
    sat["audience"] = "istio-ca";
    sat["path"] = "istio-token";
    CHECK(token == gold_token);
    CHECK(named(our_vols, "remora-ca-root-cert").at("configMap").at("name") ==
          "remora-ca-root-cert");
}

TEST_CASE("every workload kind is injected where its pod template is; other kinds pass through") {
    const char* pod_spec = R"({"containers": [{"name": "app", "image": "app:1"}]})";
    struct Case {
        std::string kind;
        std::string body;
        std::vector<const char*> path;
    };
    std::string tmpl = std::string(R"({"template": {"metadata": {}, "spec": )") + pod_spec + "}}";
    std::vector<Case> cases = {
        {"Deployment", tmpl, {"spec", "template", "spec"}},
        {"StatefulSet", tmpl, {"spec", "template", "spec"}},
        {"DaemonSet", tmpl, {"spec", "template", "spec"}},
        {"ReplicaSet", tmpl, {"spec", "template", "spec"}},
        {"Job", tmpl, {"spec", "template", "spec"}},
        {"CronJob",
         R"({"schedule": "* * * * *", "jobTemplate": {"spec": )" + tmpl + "}}",
         {"spec", "jobTemplate", "spec", "template", "spec"}},
        {"Pod", pod_spec, {"spec"}},
    };
    for (const Case& c : cases) {
        CAPTURE(c.kind);
        json::value v = json::parse(R"({"apiVersion": "v1", "kind": ")" + c.kind +
                                    R"(", "metadata": {"name": "x"}, "spec": )" + c.body + "}");
        CHECK(kube::inject_object(v, {}) == InjectOutcome::injected);
        const json::value* cur = &v;
        for (const char* p : c.path)
            cur = &cur->as_object().at(p);
        const json::object& spec = cur->as_object();
        // Hold-until-ready by default: the proxy is the first container.
        CHECK(arr(spec, "containers")[0].as_object().at("name") == "remora-proxy");
        CHECK(arr(spec, "containers")[1].as_object().at("name") == "app");
        CHECK(arr(spec, "initContainers")[0].as_object().at("name") == "remora-init");
    }
    for (
        const char* other :
        {R"({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})",
         R"({"apiVersion": "x.io/v1", "kind": "Frobnicator", "spec": {"template": {"spec": {}}}})",
         R"({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}})"}) {
        json::value v = json::parse(other);
        json::value before = v;
        CHECK(kube::inject_object(v, {}) == InjectOutcome::not_a_workload);
        CHECK(v == before);
    }
    // ... and through the YAML path, unknown kinds come back with the same content.
    std::string text =
        "apiVersion: x.io/v1\nkind: Frobnicator\nmetadata: {name: f}\nspec:\n"
        "  replicas: \"3\"\n  count: 3\n  enabled: true\n  note: |\n    two\n    lines\n";
    CHECK(first_doc(kube::inject_yaml(text, "f.yaml", {})) == first_doc(text));
}

TEST_CASE("injecting twice is a no-op; sidecar.istio.io/inject false leaves the pod alone") {
    std::string once = kube::inject_yaml(deployment(), "d.yaml", {});
    CHECK(kube::inject_yaml(once, "d.yaml", {}) == once);

    json::value v = first_doc(once);
    CHECK(kube::inject_object(v, {}) == InjectOutcome::already_injected);

    for (std::string opt_out : {std::string(R"({"sidecar.istio.io/inject": "false"})")}) {
        std::string text = deployment(opt_out);
        json::value d = first_doc(text);
        json::value before = d;
        CHECK(kube::inject_object(d, {}) == InjectOutcome::opted_out);
        CHECK(d == before);
    }
    std::string labelled = deployment();
    labelled.replace(labelled.find("version: v2"), 11,
                     "version: v2, sidecar.istio.io/inject: 'false'");
    json::value d = first_doc(labelled);
    CHECK(kube::inject_object(d, {}) == InjectOutcome::opted_out);
}

TEST_CASE("probes go through the proxy's health port, the originals to the proxy") {
    json::value v = inject(deployment());
    const json::object& spec = at(v, {"spec", "template", "spec"});
    const json::object& web = named(arr(spec, "containers"), "web");
    CHECK(web.at("livenessProbe").at("httpGet") ==
          json::parse(R"({"path": "/app-health/web/livez", "port": 15021, "scheme": "HTTP"})"));
    CHECK(web.at("livenessProbe").at("timeoutSeconds") == 2);
    CHECK(web.at("readinessProbe").at("httpGet").at("path") == "/app-health/web/readyz");
    CHECK(!web.at("readinessProbe").as_object().contains("tcpSocket"));
    CHECK(web.at("startupProbe").as_object().contains("exec"));  // exec probes stay
    const json::object& proxy = named(arr(spec, "containers"), "remora-proxy");
    json::value probers = json::parse(env_value(proxy, "ISTIO_KUBE_APP_PROBERS"));
    CHECK(probers.at("/app-health/web/livez") ==
          json::parse(R"({"httpGet": {"path": "/live", "port": 8080}, "timeoutSeconds": 2})"));
    CHECK(probers.at("/app-health/web/readyz") == json::parse(R"({"tcpSocket": {"port": 8080}})"));

    // HTTPS httpGet and gRPC probes too, as Istio rewrites them; the agent speaks TLS or gRPC.
    std::string tls_grpc = deployment();
    tls_grpc.replace(tls_grpc.find("httpGet: {path: /live, port: http}"), 34,
                     "httpGet: {path: /live, port: 8443, scheme: HTTPS}");
    tls_grpc.replace(tls_grpc.find("tcpSocket: {port: 8080}"), 23,
                     "grpc: {port: 9090, service: shop.Cart}");
    tls_grpc.replace(tls_grpc.find("exec: {command: [true]}"), 23, "grpc: {port: 9090}");
    json::value tg = inject(tls_grpc);
    const json::object& tg_spec = at(tg, {"spec", "template", "spec"});
    const json::object& tg_web = named(arr(tg_spec, "containers"), "web");
    for (const char* field : {"livenessProbe", "readinessProbe", "startupProbe"}) {
        CAPTURE(field);
        const json::object& probe = tg_web.at(field).as_object();
        CHECK(probe.at("httpGet").at("port") == 15021);
        CHECK(probe.at("httpGet").at("scheme") == "HTTP");  // kubelet to the proxy: plaintext
        CHECK(!probe.contains("grpc"));
    }
    json::value tg_probers = json::parse(
        env_value(named(arr(tg_spec, "containers"), "remora-proxy"), "ISTIO_KUBE_APP_PROBERS"));
    CHECK(tg_probers.at("/app-health/web/livez") ==
          json::parse(R"({"httpGet": {"path": "/live", "port": 8443, "scheme": "HTTPS"},
                          "timeoutSeconds": 2})"));
    CHECK(tg_probers.at("/app-health/web/readyz") ==
          json::parse(R"({"grpc": {"port": 9090, "service": "shop.Cart"}})"));
    CHECK(tg_probers.at("/app-health/web/startupz") ==
          json::parse(R"({"grpc": {"port": 9090, "service": null}})"));

    json::value kept = inject(deployment(R"({"sidecar.istio.io/rewriteAppHTTPProbers": "false"})"));
    const json::object& kept_web =
        named(arr(at(kept, {"spec", "template", "spec"}), "containers"), "web");
    CHECK(kept_web.at("livenessProbe").at("httpGet").at("port") == "http");
}

TEST_CASE("annotations: traffic ports and ranges, resources, proxy config, log level, native") {
    json::value v = inject(deployment(R"({
        "traffic.sidecar.istio.io/includeInboundPorts": "8080",
        "traffic.sidecar.istio.io/excludeInboundPorts": "9000",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/8",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "198.19.0.0/16",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
        "sidecar.istio.io/proxyCPU": "50m", "sidecar.istio.io/proxyMemoryLimit": "256Mi",
        "sidecar.istio.io/logLevel": "debug",
        "prometheus.io/scrape": "true", "prometheus.io/port": "9102",
        "proxy.istio.io/config": "concurrency: 4\nterminationDrainDuration: 20s\nholdApplicationUntilProxyStarts: false\ntracing:\n  sampling: 10\n  zipkin: {address: 'zipkin.obs:9411'}\n"})"));
    const json::object& meta = at(v, {"spec", "template", "metadata"});
    const json::object& spec = at(v, {"spec", "template", "spec"});
    const json::object& init = named(arr(spec, "initContainers"), "remora-init");
    CHECK(has_arg_pair(init, "-b", "8080"));
    CHECK(has_arg_pair(init, "-d", "15090,15021,15020,9000"));
    CHECK(has_arg_pair(init, "-x", "10.0.0.0/8"));
    CHECK(has_arg_pair(init, "-i", "198.19.0.0/16"));
    CHECK(has_arg_pair(init, "-o", "5432"));
    const json::array& containers = arr(spec, "containers");
    // holdApplicationUntilProxyStarts: false puts the proxy last, without the postStart hook.
    const json::object& proxy = containers.back().as_object();
    CHECK(proxy.at("name") == "remora-proxy");
    CHECK(!proxy.contains("lifecycle"));
    CHECK(proxy.at("resources").at("requests").at("cpu") == "50m");
    CHECK(proxy.at("resources").at("limits").at("memory") == "256Mi");
    CHECK(proxy.at("resources").at("limits").at("cpu") == "2");
    CHECK(has_arg_pair(proxy, "--concurrency", "4"));
    CHECK(has_arg_pair(proxy, "--drain-duration", "20s"));
    CHECK(has_arg_pair(proxy, "--trace-sampling", "10"));
    CHECK(has_arg_pair(proxy, "--zipkin-address", "zipkin.obs:9411"));
    CHECK(has_arg_pair(proxy, "--workload-name", "web"));
    CHECK(has_arg_pair(proxy, "--agent", "0.0.0.0:15020"));  // the status port, /quitquitquit
    CHECK(env_value(proxy, "REMORA_LOG_LEVEL") == "debug");
    CHECK(env_value(proxy, "ISTIO_META_OWNER") ==
          "kubernetes://apis/apps/v1/namespaces/shop/deployments/web");
    // The app's own scrape target is kept.
    CHECK(meta.at("annotations").at("prometheus.io/port") == "9102");
    CHECK(meta.at("labels").at("service.istio.io/canonical-revision") == "v2");

    json::value hold = inject(deployment());
    const json::object& first =
        arr(at(hold, {"spec", "template", "spec"}), "containers")[0].as_object();
    CHECK(first.at("name") == "remora-proxy");
    CHECK(first.at("lifecycle").at("postStart").at("exec").at("command") ==
          json::parse(R"(["remora-agent", "wait"])"));
    CHECK(!first.contains("restartPolicy"));

    json::value native = inject(deployment(R"({"sidecar.istio.io/nativeSidecar": "true"})"));
    const json::object& nspec = at(native, {"spec", "template", "spec"});
    CHECK(arr(nspec, "containers").size() == 1);
    const json::object& nproxy = named(arr(nspec, "initContainers"), "remora-proxy");
    CHECK(nproxy.at("restartPolicy") == "Always");
}

TEST_CASE("bad input names the line; a bad proxy.istio.io/config names the workload") {
    std::string text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [oops\nspec: {}\n";
    try {
        kube::inject_yaml(text, "pod.yaml", {});
        FAIL("accepted YAML with an unclosed flow sequence");
    } catch (const kube::InjectError& e) {
        std::string what = e.what();
        CHECK_MESSAGE(what.starts_with("pod.yaml:"), what);
        CHECK_MESSAGE(what.find("not YAML") != std::string::npos, what);
        int line = std::stoi(what.substr(9));
        CHECK(line >= 4);
        CHECK(line <= 5);
    }
    try {
        kube::inject_yaml(deployment(R"({"proxy.istio.io/config": "concurrency: [1"})"), "d.yaml",
                          {});
        FAIL("accepted a bad proxy.istio.io/config");
    } catch (const kube::InjectError& e) {
        std::string what = e.what();
        CHECK_MESSAGE(what.find("Deployment/web") != std::string::npos, what);
        CHECK_MESSAGE(what.find("proxy.istio.io/config") != std::string::npos, what);
    }
    // A fractional concurrency is refused by name, not by a number-conversion exception.
    try {
        kube::inject_yaml(deployment(R"({"proxy.istio.io/config": "concurrency: 1.5"})"), "d.yaml",
                          {});
        FAIL("accepted concurrency: 1.5");
    } catch (const kube::InjectError& e) {
        CHECK_MESSAGE(
            std::string(e.what()).find("concurrency: not a whole number") != std::string::npos,
            e.what());
    }
    // Documents that are not objects, and empty ones, do not crash the injector.
    CHECK_NOTHROW(kube::inject_yaml("--- 3\n---\n- a\n---\n", "x.yaml", {}));
}
