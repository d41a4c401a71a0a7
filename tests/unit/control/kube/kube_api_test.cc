// Unit tests for control/kube/kube_api: watch event parsing, the reflector's list/watch/relist
// logic, rendering objects into store documents (ready endpoints only), kubeconfig and
// in-cluster settings, and the store's Kube origin.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "control/kube/base64.h"
#include "control/kube/kube_api.h"
#include "control/store/store.h"

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace remora::control;
using namespace remora::control::kube;

namespace {

std::string svc_json(const std::string& name, const std::string& rv, const std::string& ip) {
    return R"({"metadata":{"name":")" + name + R"(","namespace":"default","resourceVersion":")" +
           rv + R"("},"spec":{"clusterIP":")" + ip + R"(","selector":{"app":")" + name +
           R"("},"ports":[{"name":"http","port":8080}]}})";
}

std::string event(const std::string& type, const std::string& object) {
    return R"({"type":")" + type + R"(","object":)" + object + "}";
}

fs::path temp_dir(const std::string& name) {
    fs::path d =
        fs::temp_directory_path() / ("remora-kube-test-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

void write(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
}

}  // namespace

TEST_CASE("watch events: the four object types and ERROR's Status code") {
    WatchEvent a = parse_watch_event(event("ADDED", svc_json("reviews", "11", "10.0.0.1")));
    CHECK(a.type == WatchEvent::Type::Added);
    CHECK(a.resource_version == "11");
    CHECK(json::value_to<std::string>(a.object.at("metadata").at("name")) == "reviews");
    CHECK(parse_watch_event(event("MODIFIED", svc_json("r", "12", "10.0.0.1"))).type ==
          WatchEvent::Type::Modified);
    CHECK(parse_watch_event(event("DELETED", svc_json("r", "13", "10.0.0.1"))).type ==
          WatchEvent::Type::Deleted);
    // A bookmark's object carries only its kind and metadata.resourceVersion.
    WatchEvent b = parse_watch_event(
        R"({"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1","metadata":{"resourceVersion":"20"}}})");
    CHECK(b.type == WatchEvent::Type::Bookmark);
    CHECK(b.resource_version == "20");
    WatchEvent e = parse_watch_event(
        R"({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 [20]","reason":"Expired","code":410}})");
    CHECK(e.type == WatchEvent::Type::Error);
    CHECK(e.code == 410);
    CHECK(e.message == "too old resource version: 5 [20]");

    CHECK_THROWS_WITH(parse_watch_event("{not json"), doctest::Contains("not JSON"));
    CHECK_THROWS_WITH(parse_watch_event(R"({"type":"RENAMED","object":{}})"),
                      doctest::Contains("unknown type"));
    CHECK_THROWS_WITH(parse_watch_event(R"({"type":"ADDED"})"),
                      doctest::Contains("without an object"));
    CHECK_THROWS_WITH(parse_watch_event(R"({"type":"ADDED","object":{"metadata":{}}})"),
                      doctest::Contains("metadata.name"));
}

TEST_CASE("take_lines: whole lines only, a partial line waits for the rest") {
    std::string buf = "{\"a\":1}\n{\"b\"";
    auto lines = take_lines(buf);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "{\"a\":1}");
    CHECK(buf == "{\"b\"");
    buf += ":2}\r\n\n";
    lines = take_lines(buf);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "{\"b\":2}");
    CHECK(buf.empty());
}

TEST_CASE("reflector: list pages, watch from the list's version, events move the version") {
    Reflector r("Service", "v1");
    CHECK(r.needs_list());
    CHECK_FALSE(r.synced());
    CHECK(r.list_target("/api/v1/services", "", 500) == "/api/v1/services?limit=500");
    std::string cont = r.on_list_page(
        R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"10","continue":"tok/1="},"items":[)" +
        svc_json("a", "3", "10.0.0.1") + "]}");
    CHECK(cont == "tok/1=");
    CHECK(r.list_target("/api/v1/services", cont, 500) ==
          "/api/v1/services?limit=500&continue=tok%2F1%3D");
    CHECK(r.objects().empty());  // not until the last page
    CHECK(r.on_list_page(R"({"metadata":{"resourceVersion":"11"},"items":[)" +
                         svc_json("b", "4", "10.0.0.2") + "]}") == "");
    CHECK(r.synced());
    CHECK_FALSE(r.needs_list());
    CHECK(r.objects().size() == 2);
    CHECK(r.resource_version() == "10");  // every page is the first page's snapshot
    // List items come without kind and apiVersion; the cache has them.
    CHECK(json::value_to<std::string>(r.objects().at("default/a").at("kind")) == "Service");
    CHECK(
        r.watch_target("/api/v1/services", 300) ==
        "/api/v1/services?watch=1&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=300");

    using Step = Reflector::Step;
    CHECK(r.on_event(parse_watch_event(event("ADDED", svc_json("c", "12", "10.0.0.3")))) ==
          Step::Changed);
    CHECK(r.on_event(parse_watch_event(event("MODIFIED", svc_json("c", "12", "10.0.0.3")))) ==
          Step::Unchanged);
    CHECK(r.on_event(parse_watch_event(event("MODIFIED", svc_json("c", "13", "10.0.0.9")))) ==
          Step::Changed);
    CHECK(r.on_event(parse_watch_event(event("DELETED", svc_json("a", "14", "10.0.0.1")))) ==
          Step::Changed);
    CHECK(r.objects().size() == 2);
    CHECK(
        r.on_event(parse_watch_event(
            R"({"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1","metadata":{"resourceVersion":"30"}}})")) ==
        Step::Unchanged);
    // A dropped connection resumes from the last version seen, bookmarks included.
    CHECK(r.resource_version() == "30");
    CHECK_FALSE(r.needs_list());
}

TEST_CASE("reflector: 410 Gone relists, and the cache stays until the new list replaces it") {
    Reflector r("Service", "v1");
    r.on_list_page(R"({"metadata":{"resourceVersion":"5"},"items":[)" +
                   svc_json("a", "1", "10.0.0.1") + "," + svc_json("b", "2", "10.0.0.2") + "]}");
    WatchEvent gone = parse_watch_event(
        R"({"type":"ERROR","object":{"kind":"Status","status":"Failure","reason":"Expired","code":410}})");
    CHECK(r.on_event(gone) == Reflector::Step::Relist);
    CHECK(r.needs_list());
    CHECK(r.objects().size() == 2);  // state kept meanwhile
    // Another ERROR is not a relist: watch again from the same version.
    WatchEvent other =
        parse_watch_event(R"({"type":"ERROR","object":{"code":500,"message":"boom"}})");
    Reflector r2("Service", "v1");
    r2.on_list_page(R"({"metadata":{"resourceVersion":"5"},"items":[]})");
    CHECK(r2.on_event(other) == Reflector::Step::Failed);
    CHECK_FALSE(r2.needs_list());
    CHECK(r2.resource_version() == "5");

    // The relist: b deleted and c added while the watch was gone.
    r.on_list_page(R"({"metadata":{"resourceVersion":"40"},"items":[)" +
                   svc_json("a", "1", "10.0.0.1") + "," + svc_json("c", "39", "10.0.0.3") + "]}");
    CHECK(r.last_list_changed());
    CHECK_FALSE(r.needs_list());
    CHECK(r.resource_version() == "40");
    CHECK(r.objects().count("default/b") == 0);
    CHECK(r.objects().count("default/c") == 1);
    // The same list again changes nothing.
    r.on_gone();
    CHECK(r.needs_list());
    r.on_list_page(R"({"metadata":{"resourceVersion":"41"},"items":[)" +
                   svc_json("a", "1", "10.0.0.1") + "," + svc_json("c", "39", "10.0.0.3") + "]}");
    CHECK_FALSE(r.last_list_changed());
    CHECK_THROWS_WITH(r.on_list_page(R"({"kind":"Status","code":403})"),
                      doctest::Contains("no items"));
}

TEST_CASE("render: ready EndpointSlice addresses become WorkloadEntries with their Pod's labels") {
    Reflector svcs("Service", "v1"), slices("EndpointSlice", "discovery.k8s.io/v1"),
        pods("Pod", "v1"), vss("VirtualService", "networking.istio.io/v1");
    svcs.on_list_page(R"({"metadata":{"resourceVersion":"1"},"items":[)" +
                      svc_json("reviews", "1", "10.96.0.30") + "]}");
    pods.on_list_page(R"({"metadata":{"resourceVersion":"1"},"items":[
      {"metadata":{"name":"reviews-v1","namespace":"default","labels":{"app":"reviews","version":"v1"}},
       "spec":{"serviceAccountName":"reviews"}},
      {"metadata":{"name":"reviews-v2","namespace":"default","labels":{"app":"reviews","version":"v2"}},
       "spec":{"serviceAccountName":"reviews"}}]})");
    slices.on_list_page(R"({"metadata":{"resourceVersion":"1"},"items":[
      {"metadata":{"name":"reviews-abc","namespace":"default","labels":{"kubernetes.io/service-name":"reviews"}},
       "addressType":"IPv4","ports":[{"name":"http","port":9080,"protocol":"TCP"}],
       "endpoints":[
         {"addresses":["198.18.0.5"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","name":"reviews-v1","namespace":"default"}},
         {"addresses":["198.18.0.6"],"conditions":{"ready":false},"targetRef":{"kind":"Pod","name":"reviews-v2","namespace":"default"}},
         {"addresses":["198.18.0.7"]}]}]})");
    vss.on_list_page(R"({"metadata":{"resourceVersion":"1"},"items":[
      {"metadata":{"name":"reviews","namespace":"default","resourceVersion":"7","managedFields":[{"x":1}]},
       "spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]},
       "status":{"observedGeneration":1}}]})");
    auto docs = render({{"Service", &svcs.objects()},
                        {"EndpointSlice", &slices.objects()},
                        {"Pod", &pods.objects()},
                        {"VirtualService", &vss.objects()}});
    std::map<std::string, RenderedDoc> by;
    for (auto& d : docs)
        by[d.kind + " " + d.ns + "/" + d.name] = d;
    REQUIRE(by.count("Service default/reviews"));
    REQUIRE(by.count("VirtualService default/reviews"));
    const std::string& vs = by["VirtualService default/reviews"].yaml;
    CHECK(vs.find("status") == std::string::npos);
    CHECK(vs.find("managedFields") == std::string::npos);
    CHECK(vs.find("resourceVersion") == std::string::npos);
    CHECK(by["VirtualService default/reviews"].source == "kube:VirtualService default/reviews");
    // Ready: with its pod's labels and service account, and the slice's port by name.
    REQUIRE(by.count("WorkloadEntry default/kube-endpoint-reviews-v1"));
    const std::string& v1 = by["WorkloadEntry default/kube-endpoint-reviews-v1"].yaml;
    CHECK(v1.find("198.18.0.5") != std::string::npos);
    CHECK(v1.find("version: v1") != std::string::npos);
    CHECK(v1.find("serviceAccount: reviews") != std::string::npos);
    CHECK(v1.find("http: 9080") != std::string::npos);
    // Not ready: left out.
    CHECK(by.count("WorkloadEntry default/kube-endpoint-reviews-v2") == 0);
    for (auto& d : docs)
        CHECK(d.yaml.find("198.18.0.6") == std::string::npos);
    // Ready by default (no conditions), no Pod: the Service's selector, so the Service picks it.
    REQUIRE(by.count("WorkloadEntry default/kube-endpoint-198-18-0-7"));
    CHECK(by["WorkloadEntry default/kube-endpoint-198-18-0-7"].yaml.find("app: reviews") !=
          std::string::npos);

    // The documents are what the store reads: Service + entries give the service endpoints.
    std::vector<store::SourceFile> files;
    for (auto& d : docs)
        files.push_back({d.source, d.yaml});
    fs::path dir = temp_dir("render");
    store::ConfigStore st(
        dir, [] { return std::chrono::system_clock::now(); }, [](const std::string&) {});
    store::ChangeResult res = st.set_owned(store::Origin::Kube, files);
    INFO(res.error, " ", res.messages.empty() ? "" : res.messages[0]);
    REQUIRE(res.ok());
    CHECK(st.snapshot()->config.workload_entries.size() == 2);
    CHECK(st.snapshot()->config.kube_services.size() == 1);
    fs::remove_all(dir);
}

TEST_CASE("store: resources from the Kubernetes API are read-only over the config API") {
    fs::path dir = temp_dir("origin");
    store::ConfigStore st(
        dir, [] { return std::chrono::system_clock::now(); }, [](const std::string&) {});
    const std::string vs =
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: "
        "default}\nspec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n";
    REQUIRE(st.set_owned(store::Origin::Kube, {{"kube:VirtualService default/r", vs}}).ok());
    auto snap = st.snapshot();
    REQUIRE(snap->resources.size() == 1);
    CHECK(snap->resources.begin()->second.origin == store::Origin::Kube);
    CHECK(std::string(store::origin_name(store::Origin::Kube)) == "kube");
    store::ChangeResult a = st.apply(vs, "r.yaml");
    CHECK(a.status == 409);
    REQUIRE_FALSE(a.messages.empty());
    CHECK(a.messages[0].find("managed by the Kubernetes API") != std::string::npos);
    store::ChangeResult d = st.remove(vs, "r.yaml");
    CHECK(d.status == 409);
    // --config-dir cannot take a key --kube holds: its document is skipped, the rest goes on.
    store::ChangeResult c = st.set_config_dir({{"/cm/r.yaml", vs}});
    CHECK(c.ok());
    REQUIRE_FALSE(c.items.empty());
    CHECK(c.items[0].action == "skipped");
    CHECK(st.snapshot()->resources.begin()->second.origin == store::Origin::Kube);
    // Gone from the cluster: gone from the store.
    REQUIRE(st.set_owned(store::Origin::Kube, {}).ok());
    CHECK(st.snapshot()->resources.empty());
    fs::remove_all(dir);
}

TEST_CASE("kubeconfig: server, CA data, token or client certificate; errors name the field") {
    fs::path dir = temp_dir("kubeconfig");
    write(dir / "ca.pem", "CA PEM\n");
    write(dir / "config", R"(apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: c1, user: u1}
- name: other
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster: {server: "https://10.1.2.3:6443", certificate-authority: ca.pem}
- name: c2
  cluster:
    server: http://[::1]:8080
    certificate-authority-data: )" +
                              base64("DATA CA") + R"(
users:
- name: u1
  user: {token: abc123}
- name: u2
  user:
    client-certificate-data: )" +
                              base64("CERT") + R"(
    client-key-data: )" + base64("KEY") +
                              R"(
)");
    ApiServer s = load_kubeconfig(dir / "config");
    CHECK(s.host == "10.1.2.3");
    CHECK(s.port == "6443");
    CHECK(s.tls);
    CHECK(s.ca_pem == "CA PEM\n");
    CHECK(s.authorization() == "Bearer abc123");
    ApiServer o = load_kubeconfig(dir / "config", "other");
    CHECK(o.host == "::1");
    CHECK(o.port == "8080");
    CHECK_FALSE(o.tls);
    CHECK(o.url() == "http://[::1]:8080");
    CHECK(o.ca_pem == "DATA CA");
    CHECK(o.client_cert_pem == "CERT");
    CHECK(o.client_key_pem == "KEY");
    CHECK(o.authorization().empty());

    CHECK_THROWS_WITH(load_kubeconfig(dir / "config", "nope"),
                      doctest::Contains("contexts: no entry named \"nope\""));
    write(dir / "bad",
          "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
          "clusters:\n- name: c\n  cluster: {server: ftp://x}\n");
    CHECK_THROWS_WITH(load_kubeconfig(dir / "bad"),
                      doctest::Contains("clusters[c].cluster.server"));
    CHECK_THROWS_WITH(load_kubeconfig(dir / "missing"), doctest::Contains("cannot read"));
    fs::remove_all(dir);
}

TEST_CASE("in-cluster: service host and port from the environment, token and CA from the mount") {
    fs::path dir = temp_dir("incluster");
    write(dir / "token", "tok-1\n");
    write(dir / "ca.crt", "CLUSTER CA");
    std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                              {"KUBERNETES_SERVICE_PORT", "443"}};
    auto getenv = [&](const std::string& k) -> std::optional<std::string> {
        auto it = env.find(k);
        return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    ApiServer s = in_cluster(dir, getenv);
    CHECK(s.url() == "https://10.96.0.1:443");
    CHECK(s.ca_pem == "CLUSTER CA");
    CHECK(s.authorization() == "Bearer tok-1");
    write(dir / "token", "tok-2\n");  // projected tokens rotate: read again each time
    CHECK(s.authorization() == "Bearer tok-2");
    env.erase("KUBERNETES_SERVICE_HOST");
    CHECK_THROWS_WITH(in_cluster(dir, getenv), doctest::Contains("KUBERNETES_SERVICE_HOST"));
    fs::remove_all(dir);
}

TEST_CASE("watched kinds: core, discovery and the Istio CRDs at v1 then v1beta1") {
    auto kinds = watched_kinds();
    std::map<std::string, WatchedKind> by;
    for (auto& k : kinds)
        by[k.kind] = k;
    for (const char* k :
         {"Service", "EndpointSlice", "Pod", "Namespace", "VirtualService", "DestinationRule",
          "ServiceEntry", "WorkloadEntry", "PeerAuthentication", "AuthorizationPolicy"}) {
        CHECK(by.count(k) == 1);
    }
    CHECK(by["EndpointSlice"].paths.at(0) == "/apis/discovery.k8s.io/v1/endpointslices");
    CHECK(by["VirtualService"].paths.at(0) == "/apis/networking.istio.io/v1/virtualservices");
    CHECK(by["VirtualService"].paths.at(1) == "/apis/networking.istio.io/v1beta1/virtualservices");
    CHECK(by["AuthorizationPolicy"].api_versions.at(0) == "security.istio.io/v1");
}

TEST_CASE("object_yaml: the same object is the same text, whichever order its keys came in") {
    // A list item is stamped with kind and apiVersion after the rest; a watch event has them
    // first. Different text would be a store change (a push to every proxy) after each relist.
    Reflector listed("VirtualService", "networking.istio.io/v1");
    listed.on_list_page(R"({"metadata":{"resourceVersion":"1"},"items":[
      {"metadata":{"name":"r","namespace":"default","resourceVersion":"1"},"spec":{"hosts":["r"]}}]})");
    Reflector watched("VirtualService", "networking.istio.io/v1");
    watched.on_list_page(R"({"metadata":{"resourceVersion":"0"},"items":[]})");
    watched.on_event(parse_watch_event(
        R"({"type":"ADDED","object":{"kind":"VirtualService","apiVersion":"networking.istio.io/v1","spec":{"hosts":["r"]},"metadata":{"namespace":"default","name":"r","resourceVersion":"2"},"status":{"x":1}}})"));
    std::string a = object_yaml(listed.objects().at("default/r"));
    std::string b = object_yaml(watched.objects().at("default/r"));
    CHECK(a == b);
    CHECK(a.rfind("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:", 0) == 0);
}
