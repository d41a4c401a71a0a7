// The snapshot cache by proxy class: a change drops exactly the classes it can touch (exportTo,
// namespaces, selectors, the root namespace), and after any sequence of changes to the store and
// the registry every class's cached snapshot is the one a fresh translation gives.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <random>
#include <set>

#include "control/server/snapshot_cache.h"
#include "proxy/snapshot/snapshot_json.h"

namespace fs = std::filesystem;
using namespace remora::control;
using server::ProxyClass;
using server::SnapshotCache;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/snapshot-cache-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

struct Fixture {
    TempDir tmp;
    store::ConfigStore store{tmp.path / "config",
                             [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000)); },
                             [](const std::string&) {}};
    std::vector<model::WorkloadEntry> registered;
    uint64_t generation = 1;
    translate::Options options;
    SnapshotCache cache{options};

    void apply(const std::string& yaml) {
        auto r = store.apply(yaml, "test.yaml");
        std::string why = r.error + (r.messages.empty() ? "" : ": " + r.messages.front());
        REQUIRE_MESSAGE(r.ok(), why);
    }
    void remove(const std::string& yaml) {
        auto r = store.remove(yaml, "test.yaml");
        REQUIRE_MESSAGE(r.ok(), r.error);
    }
    void set_registered(std::vector<model::WorkloadEntry> pods) {
        registered = std::move(pods);
        generation += 1;
    }
    void update() {
        cache.update(store.snapshot(), generation, [this] { return registered; });
    }
    // What a fresh translation gives the class now.
    std::string fresh_version(const ProxyClass& c) const {
        model::Config config = store.snapshot()->config;
        for (const auto& we : registered) config.workload_entries.push_back(we);
        return remora::proxy::snapshot::version_of(
            translate::translate(config, {c.ns, c.service_account, c.labels}, options));
    }
    // Gets the class and says whether the cache had to translate it.
    bool computed(const ProxyClass& c) {
        uint64_t before = cache.stats().computes;
        auto r = cache.get(c);
        CHECK(r.entry->version == fresh_version(c));
        return cache.stats().computes > before;
    }
};

model::WorkloadEntry pod(const std::string& ns, const std::string& name, const std::string& ip,
                         model::Labels labels) {
    model::WorkloadEntry we;
    we.meta.ns = ns;
    we.meta.name = name;
    we.spec.address = ip;
    we.spec.labels = std::move(labels);
    we.spec.service_account = "default";
    return we;
}

const std::string kServices = R"(apiVersion: v1
kind: Service
metadata: {name: svc-a, namespace: a}
spec:
  selector: {app: x}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-b, namespace: b}
spec:
  selector: {app: x}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: svc-c
  namespace: c
  annotations: {networking.istio.io/exportTo: "."}
spec:
  selector: {app: z}
  ports: [{name: http, port: 9090}]
)";

std::string virtual_service(const std::string& ns, const std::string& name, const std::string& host,
                            const std::string& export_to, int timeout_ms) {
    return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name +
           ", namespace: " + ns + "}\nspec:\n  hosts: [" + host + "]\n" +
           (export_to.empty() ? "" : "  exportTo: [" + export_to + "]\n") +
           "  http:\n  - timeout: " + std::to_string(timeout_ms) + "ms\n    route:\n    - destination: {host: " +
           host + "}\n";
}

std::string sidecar(const std::string& ns, const std::string& name, const std::string& selector,
                    const std::string& hosts) {
    return "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: " + name +
           ", namespace: " + ns + "}\nspec:\n" +
           (selector.empty() ? "" : "  workloadSelector: {labels: {" + selector + "}}\n") +
           "  egress: [{hosts: [" + hosts + "]}]\n";
}

const ProxyClass kA{"a", "default", {{"app", "x"}}};
const ProxyClass kA2{"a", "other", {{"app", "y"}}};
const ProxyClass kB{"b", "default", {{"app", "x"}}};
const ProxyClass kB0{"b", "default", {}};
const ProxyClass kC{"c", "default", {{"app", "z"}}};
const std::vector<ProxyClass> kClasses = {kA, kA2, kB, kB0, kC};

}  // namespace

TEST_CASE("a snapshot is translated once per class and shared by its proxies") {
    Fixture f;
    f.apply(kServices);
    f.update();
    CHECK(f.computed(kA));
    CHECK_FALSE(f.computed(kA));
    CHECK(f.computed(kB));
    auto one = f.cache.get(kA), two = f.cache.get(kA);
    CHECK(one.entry == two.entry);  // the same serialized JSON, not a copy
    CHECK(one.config_version == f.store.version());
    CHECK(f.cache.stats().classes == 2);
}

TEST_CASE("classes translated from the same inputs share their clusters; new inputs make them anew") {
    Fixture f;
    f.apply(kServices);
    f.set_registered({pod("a", "p1", "198.18.0.1", {{"app", "x"}}), pod("b", "p2", "198.18.0.2", {{"app", "x"}})});
    f.update();
    CHECK(f.computed(kA));
    const auto first = f.cache.stats();
    CHECK(first.clusters_made > 0);
    CHECK(first.clusters_shared == 0);
    CHECK(f.computed(kA2));  // the same services: every cluster taken from kA's translation
    const auto second = f.cache.stats();
    CHECK(second.clusters_made == first.clusters_made);
    CHECK(second.clusters_shared == first.clusters_made);
    // A pod moves: the clusters of a's service hold it now, and are made again (computed()
    // checks the text against a fresh translation).
    f.set_registered({pod("a", "p1", "198.18.0.9", {{"app", "x"}}), pod("b", "p2", "198.18.0.2", {{"app", "x"}})});
    f.update();
    CHECK(f.computed(kA));
    CHECK(f.cache.get(kA).entry->json->find("198.18.0.9") != std::string::npos);
    CHECK(f.cache.stats().clusters_made > second.clusters_made);
    // A config change, the same.
    f.apply(virtual_service("a", "svc-a", "svc-a", "", 1500));
    f.update();
    CHECK(f.computed(kB));
    const auto third = f.cache.stats();
    // After a push the kept clusters are let go: the next class makes its own.
    f.cache.drop_shared_clusters();
    CHECK(f.computed(kB0));
    CHECK(f.cache.stats().clusters_made > third.clusters_made);
    CHECK(f.cache.stats().clusters_shared == third.clusters_shared);
}

TEST_CASE("a VirtualService in a exported to a touches a's classes, not b's or c's") {
    Fixture f;
    f.apply(kServices);
    f.update();
    for (const auto& c : kClasses) f.computed(c);
    f.apply(virtual_service("a", "svc-a", "svc-a", "\".\"", 1500));
    f.update();
    CHECK(f.computed(kA));
    CHECK(f.computed(kA2));
    CHECK_FALSE(f.computed(kB));
    CHECK_FALSE(f.computed(kB0));
    CHECK_FALSE(f.computed(kC));
    // Exported everywhere instead: everyone.
    f.apply(virtual_service("a", "svc-a", "svc-a", "", 1500));
    f.update();
    for (const auto& c : kClasses) CHECK(f.computed(c));
    // Moved from everywhere to b only: everyone (a loses it, b keeps it, c loses it).
    f.apply(virtual_service("a", "svc-a", "svc-a", "b", 1500));
    f.update();
    for (const auto& c : kClasses) CHECK(f.computed(c));
    // Changed while exported to b only: b's classes alone.
    f.apply(virtual_service("a", "svc-a", "svc-a", "b", 2500));
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK(f.computed(kB));
    CHECK(f.computed(kB0));
    CHECK_FALSE(f.computed(kC));
}

TEST_CASE("scopes: policies by namespace and selector, the root namespace, registered pods") {
    Fixture f;
    f.apply(kServices);
    f.update();
    for (const auto& c : kClasses) f.computed(c);

    // A PeerAuthentication picking app=y in a: kA2 alone.
    f.apply(R"(apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict-y, namespace: a}
spec:
  selector: {matchLabels: {app: y}}
  mtls: {mode: STRICT}
)");
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK(f.computed(kA2));
    CHECK_FALSE(f.computed(kB));

    // An AuthorizationPolicy for all of b: b's classes.
    f.apply(R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: b}
spec: {}
)");
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK(f.computed(kB));
    CHECK(f.computed(kB0));
    CHECK_FALSE(f.computed(kC));

    // One in the root namespace: everyone.
    f.apply(R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: remora-system}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}]
)");
    f.update();
    for (const auto& c : kClasses) CHECK(f.computed(c));

    // A pod registering in c, picked by svc-c which is exported to c alone: c's classes.
    f.set_registered({pod("c", "z-1", "198.18.0.30", {{"app", "z"}})});
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK_FALSE(f.computed(kB));
    CHECK(f.computed(kC));
    // A pod no service selects: nobody.
    auto pods = f.registered;
    pods.push_back(pod("b", "lonely-1", "198.18.0.31", {{"app", "nobody"}}));
    f.set_registered(pods);
    f.update();
    for (const auto& c : kClasses) CHECK_FALSE(f.computed(c));
    // A pod of svc-a (exported everywhere): everyone.
    pods.push_back(pod("a", "x-1", "198.18.0.32", {{"app", "x"}}));
    f.set_registered(pods);
    f.update();
    for (const auto& c : kClasses) CHECK(f.computed(c));

    // Nothing changed (same generation, same store version): nothing dropped.
    uint64_t dropped = f.cache.stats().dropped;
    f.update();
    CHECK(f.cache.stats().dropped == dropped);
}

TEST_CASE("scope_of_change names what it touches") {
    Fixture f;
    f.apply(kServices);
    auto before = f.store.snapshot();
    f.apply(virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "a,c", 100));
    auto s = server::scope_of_change(*before, {}, *f.store.snapshot(), {}, f.options);
    CHECK(s.str() == "virtual services of b for a,c where imported");
    before = f.store.snapshot();
    f.remove(virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "a,c", 100));
    s = server::scope_of_change(*before, {}, *f.store.snapshot(), {}, f.options);
    CHECK(s.str() == "virtual services of b for a,c where imported");
    before = f.store.snapshot();
    f.apply(virtual_service("a", "svc-a", "svc-a", "", 100));
    s = server::scope_of_change(*before, {}, *f.store.snapshot(), {}, f.options);
    CHECK(s.str() == "virtual services of a for all where imported");
    CHECK(server::scope_of_change(*before, {}, *before, {}, f.options).empty());
    before = f.store.snapshot();
    f.apply(sidecar("a", "default", "", "\"./*\""));
    s = server::scope_of_change(*before, {}, *f.store.snapshot(), {}, f.options);
    CHECK(s.str() == "sidecars a/default");
}

TEST_CASE("a Sidecar change recomputes exactly the classes it scopes, before or after") {
    Fixture f;
    f.apply(kServices);
    f.update();
    auto all_cached = [&] { for (const auto& c : kClasses) f.computed(c); };
    all_cached();
    // The root namespace's default: every class (none has a Sidecar of its own).
    f.apply(sidecar("remora-system", "default", "", "\"./*\""));
    f.update();
    for (const auto& c : kClasses) CHECK(f.computed(c));
    CHECK(f.cache.get(kB).entry->sidecar == "remora-system/default");
    // b's own default: b's classes take it over from the root's.
    f.apply(sidecar("b", "default", "", "\"a/*\""));
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK_FALSE(f.computed(kA2));
    CHECK(f.computed(kB));
    CHECK(f.computed(kB0));
    CHECK_FALSE(f.computed(kC));
    CHECK(f.cache.get(kB).entry->sidecar == "b/default");
    // A selector in a picking app=y: kA2 alone.
    f.apply(sidecar("a", "y", "app: y", "\"c/*\""));
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK(f.computed(kA2));
    CHECK_FALSE(f.computed(kB));
    CHECK_FALSE(f.computed(kC));
    // The root default changed: a and c, which still use it; not b (its own) nor kA2.
    f.apply(sidecar("remora-system", "default", "", "\"./*\", \"b/*\""));
    f.update();
    CHECK(f.computed(kA));
    CHECK_FALSE(f.computed(kA2));
    CHECK_FALSE(f.computed(kB));
    CHECK_FALSE(f.computed(kB0));
    CHECK(f.computed(kC));
    // The selector moves from app=y to app=x: both kA (now picked) and kA2 (no longer).
    f.apply(sidecar("a", "y", "app: x", "\"c/*\""));
    f.update();
    CHECK(f.computed(kA));
    CHECK(f.computed(kA2));
    CHECK_FALSE(f.computed(kB));
    CHECK_FALSE(f.computed(kC));
    // b's removed: b's classes fall back to the root's.
    f.remove(sidecar("b", "default", "", "\"a/*\""));
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK(f.computed(kB));
    CHECK(f.computed(kB0));
    CHECK_FALSE(f.computed(kC));
    CHECK(f.cache.get(kB).entry->sidecar == "remora-system/default");
}

// Istio's SidecarScope: a VirtualService is imported by an egress host naming its namespace, so
// a change exported everywhere recomputes unscoped classes and those whose Sidecar imports its
// namespace, not the others.
TEST_CASE("a VirtualService change recomputes only the classes whose Sidecar imports its namespace") {
    Fixture f;
    f.apply(kServices);
    f.apply(sidecar("a", "default", "", "\"./*\""));               // kA, kA2: a's only
    f.apply(sidecar("b", "default", "", "\"./*\", \"a/*\""));      // kB, kB0: b's and a's
    // c: none (unscoped)
    f.update();
    for (const auto& c : kClasses) f.computed(c);
    CHECK(f.cache.get(kB).entry->sidecar_imports == std::set<std::string>{"a", "b"});
    CHECK(f.cache.get(kC).entry->sidecar_imports.empty());
    // In b, exported everywhere: b's classes (import b) and c's (unscoped), not a's.
    f.apply(virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "", 300));
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK_FALSE(f.computed(kA2));
    CHECK(f.computed(kB));
    CHECK(f.computed(kB0));
    CHECK(f.computed(kC));
    // In a, exported everywhere: everyone imports a.
    f.apply(virtual_service("a", "svc-a", "svc-a", "", 400));
    f.update();
    for (const auto& c : kClasses) CHECK(f.computed(c));
    // In a, exported to c only: c alone.
    f.apply(virtual_service("a", "svc-a", "svc-a", "c", 500));
    f.update();
    CHECK(f.computed(kA));  // it was exported to a before the change
    CHECK(f.computed(kB));
    CHECK(f.computed(kC));
    f.apply(virtual_service("a", "svc-a", "svc-a", "c", 600));
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK_FALSE(f.computed(kB));
    CHECK(f.computed(kC));
    // A Sidecar importing `*/*`: every VirtualService.
    f.apply(sidecar("a", "default", "", "\"*/*\""));
    f.update();
    for (const auto& c : {kA, kA2}) CHECK(f.computed(c));
    f.apply(virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "", 700));
    f.update();
    CHECK(f.computed(kA));
    CHECK(f.computed(kB));
    CHECK(f.computed(kC));
}

TEST_CASE("a scoped snapshot holds its Sidecar's hosts only") {
    Fixture f;
    f.apply(kServices);
    f.apply(sidecar("a", "default", "", "\"./*\""));
    f.update();
    const std::string& json = *f.cache.get(kA).entry->json;
    CHECK(json.find("svc-a.a.svc.cluster.local") != std::string::npos);
    CHECK(json.find("svc-b.b.svc.cluster.local") == std::string::npos);
    const std::string& unscoped = *f.cache.get(kB).entry->json;
    CHECK(unscoped.find("svc-a.a.svc.cluster.local") != std::string::npos);
    CHECK(unscoped.find("svc-b.b.svc.cluster.local") != std::string::npos);
    CHECK(json.size() < unscoped.size());
}

TEST_CASE("a registered pod recomputes only the classes whose snapshot holds its namespace's services") {
    Fixture f;
    f.apply(kServices);
    f.apply(sidecar("a", "default", "", "\"./*\""));  // a's classes import a's services alone
    f.update();
    for (const auto& c : kClasses) f.computed(c);
    CHECK(f.cache.get(kA).entry->service_namespaces == std::set<std::string>{"a"});
    // A pod of svc-b (exported everywhere): every class that holds svc-b, not a's.
    f.set_registered({pod("b", "x-1", "198.18.0.40", {{"app", "x"}})});
    f.update();
    CHECK_FALSE(f.computed(kA));
    CHECK_FALSE(f.computed(kA2));
    CHECK(f.computed(kB));
    CHECK(f.computed(kB0));
    CHECK(f.computed(kC));  // c sees svc-a and svc-b (exported everywhere)
    // A pod of svc-a: a's classes too.
    auto pods = f.registered;
    pods.push_back(pod("a", "x-2", "198.18.0.41", {{"app", "x"}}));
    f.set_registered(pods);
    f.update();
    CHECK(f.computed(kA));
    CHECK(f.computed(kB));
    // Gone again: the same.
    pods.pop_back();
    f.set_registered(pods);
    f.update();
    CHECK(f.computed(kA));
}

// Random changes to the store and the registry; after each, every class's cached snapshot must
// be what a fresh translation gives, and classes a change does not touch stay cached.
TEST_CASE("after any sequence of changes no class keeps a stale snapshot") {
    Fixture f;
    f.apply(kServices);
    std::vector<std::string> docs = {
        virtual_service("a", "svc-a", "svc-a", "\".\"", 100),
        virtual_service("a", "svc-a", "svc-a", "", 200),
        virtual_service("a", "svc-a", "svc-a", "b", 300),
        virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "\".\"", 400),
        virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "a,c", 500),
        R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild, namespace: c}
spec:
  hosts: ["*.example.com"]
  http:
  - timeout: 600ms
    route:
    - destination: {host: api.example.com}
)",
        R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-b, namespace: b}
spec:
  host: svc-b
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}]
)",
        R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-b, namespace: b}
spec:
  host: svc-b
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
)",
        R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all-a, namespace: remora-system}
spec:
  host: "*.a.svc.cluster.local"
  trafficPolicy: {tls: {mode: DISABLE}}
)",
        R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: a}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
)",
        R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: a}
spec:
  hosts: [api.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: DNS
)",
        R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: b}
spec:
  hosts: [vm.b.internal]
  exportTo: ["."]
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: vm}}
)",
        R"(apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: b}
spec: {address: 198.18.1.1, labels: {app: vm}}
)",
        R"(apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: b}
spec: {address: 198.18.1.2, labels: {app: vm}}
)",
        R"(apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: z-vm, namespace: c}
spec: {address: 198.18.1.3, labels: {app: z}}
)",
        R"(apiVersion: v1
kind: Service
metadata: {name: svc-c, namespace: c}
spec:
  selector: {app: z}
  ports: [{name: http, port: 9090}]
)",
        R"(apiVersion: v1
kind: Service
metadata:
  name: svc-c
  namespace: c
  annotations: {networking.istio.io/exportTo: "c,a"}
spec:
  selector: {app: z}
  ports: [{name: grpc, port: 9090}]
)",
        R"(apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict-y, namespace: a}
spec:
  selector: {matchLabels: {app: y}}
  mtls: {mode: STRICT}
)",
        R"(apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict-y, namespace: a}
spec:
  selector: {matchLabels: {app: x}}
  mtls: {mode: DISABLE}
)",
        R"(apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: remora-system}
spec: {mtls: {mode: STRICT}}
)",
        R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: b}
spec: {}
)",
        R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: b}
spec:
  selector: {matchLabels: {app: x}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
)",
        R"(apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: remora-system}
spec:
  egress: [{hosts: ["./*"]}]
)",
        R"(apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: remora-system}
spec:
  egress: [{hosts: ["./*", "a/*"]}]
)",
        R"(apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  egress: [{hosts: ["b/*"]}]
)",
        R"(apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: x-only, namespace: a}
spec:
  workloadSelector: {labels: {app: x}}
  egress: [{port: {number: 9090, name: grpc, protocol: GRPC}, hosts: ["*/*"]}, {hosts: ["./*"]}]
)",
        R"(apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: x-only, namespace: a}
spec:
  workloadSelector: {labels: {app: y}}
  egress: [{hosts: ["c/*"]}]
)",
    };
    std::vector<model::WorkloadEntry> pod_pool = {
        pod("a", "x-1", "198.18.0.10", {{"app", "x"}}),
        pod("a", "x-1", "198.18.0.11", {{"app", "x"}, {"version", "v2"}}),
        pod("b", "x-2", "198.18.0.12", {{"app", "x"}, {"version", "v1"}}),
        pod("c", "z-1", "198.18.0.13", {{"app", "z"}}),
        pod("b", "vm-pod", "198.18.0.14", {{"app", "vm"}}),
        pod("a", "y-1", "198.18.0.15", {{"app", "y"}}),
    };
    std::mt19937 rng(15);  // fixed: the same sequence on every run
    f.update();
    uint64_t steps_with_kept = 0;
    for (int step = 0; step < 150; ++step) {
        for (const auto& c : kClasses) f.cache.get(c);  // every class cached
        uint64_t kept = f.cache.stats().kept;
        const int what = static_cast<int>(rng() % 3);
        if (what == 0) {
            f.apply(docs[rng() % docs.size()]);
        } else if (what == 1) {
            // Delete one present resource (by applying then removing its text, whichever it is).
            const std::string& doc = docs[rng() % docs.size()];
            f.apply(doc);
            f.update();
            f.remove(doc);
        } else {
            std::vector<model::WorkloadEntry> pods;
            std::set<std::string> names;
            for (const auto& p : pod_pool) {
                if (rng() % 2 && names.insert(p.meta.ns + "/" + p.meta.name).second) pods.push_back(p);
            }
            f.set_registered(pods);
        }
        f.update();
        if (f.cache.stats().kept > kept) steps_with_kept += 1;
        for (const auto& c : kClasses) {
            INFO("step " << step << " class " << c.ns << "/" << c.service_account);
            CHECK(f.cache.get(c).entry->version == f.fresh_version(c));
        }
    }
    // The cache did its job too: many changes left some classes alone.
    CHECK(steps_with_kept > 30);
}

// Classes translate without the cache's lock: readers on several threads while the store
// changes must still end with every class current, and a class is translated by one of them
// at a time (the others take its result).
TEST_CASE("concurrent gets while the store changes end current") {
    Fixture f;
    f.apply(kServices);
    f.update();
    std::atomic<bool> stop{false};
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t) {
        readers.emplace_back([&, t] {
            for (std::size_t i = t; !stop.load(); ++i) f.cache.get(kClasses[i % kClasses.size()]);
        });
    }
    for (int k = 0; k < 30; ++k) {
        f.apply(virtual_service("a", "svc-a", "svc-a", k % 2 ? "" : "\".\"", 100 + k));
        f.update();
    }
    stop = true;
    for (auto& t : readers) t.join();
    for (const auto& c : kClasses) CHECK(f.cache.get(c).entry->version == f.fresh_version(c));
    // Five classes, many gets: translations are few (once per class per change at most).
    CHECK(f.cache.stats().computes <= 5 * 31 + f.cache.stats().stale);
}

// A new poll's first answer (get with RegistrationsMayLag) takes the class's newest snapshot
// when registrations alone made it out of date, without translating; never when the config
// changed, and never for a class not translated yet.
TEST_CASE("a first answer may lag registrations, never the config") {
    Fixture f;
    f.apply(kServices);
    f.update();
    const std::string before = f.cache.get(kA).entry->version;
    using S = SnapshotCache::Staleness;
    // A pod of svc-a registers: a's snapshot is out of date (its endpoints).
    f.set_registered({pod("a", "x-1", "198.18.0.41", {{"app", "x"}})});
    f.update();
    uint64_t computes = f.cache.stats().computes;
    auto lag = f.cache.get(kA, S::RegistrationsMayLag);
    CHECK(lag.lagging);
    CHECK(lag.entry->version == before);
    CHECK(lag.entry->version != f.fresh_version(kA));
    CHECK(f.cache.stats().computes == computes);
    CHECK(f.cache.stats().lagging == 1);
    // Current: translated anew, and from then on the lagging answer is the current one.
    CHECK(f.computed(kA));
    auto now = f.cache.get(kA, S::RegistrationsMayLag);
    CHECK_FALSE(now.lagging);
    CHECK(now.entry->version == f.fresh_version(kA));
    // A class never translated is translated, lagging allowed or not.
    auto first = f.cache.get(kB, S::RegistrationsMayLag);
    CHECK_FALSE(first.lagging);
    CHECK(first.entry->version == f.fresh_version(kB));
    // Registrations, then a config change for a: the lagging snapshot held a's old config and
    // is gone; a first answer translates.
    f.set_registered({pod("a", "x-1", "198.18.0.41", {{"app", "x"}}), pod("a", "x-2", "198.18.0.42", {{"app", "x"}})});
    f.update();
    CHECK(f.cache.get(kA, S::RegistrationsMayLag).lagging);
    f.apply(virtual_service("a", "svc-a", "svc-a", "\".\"", 700));
    f.update();
    computes = f.cache.stats().computes;
    auto after_config = f.cache.get(kA, S::RegistrationsMayLag);
    CHECK_FALSE(after_config.lagging);
    CHECK(after_config.entry->version == f.fresh_version(kA));
    CHECK(f.cache.stats().computes == computes + 1);
    // A config change that does not touch b keeps b's lagging snapshot (its config is current).
    const std::string b_version = f.cache.get(kB).entry->version;
    f.set_registered({pod("b", "x-3", "198.18.0.43", {{"app", "x"}})});
    f.update();
    f.apply(virtual_service("a", "svc-a", "svc-a", "\".\"", 800));
    f.update();
    auto b_lag = f.cache.get(kB, S::RegistrationsMayLag);
    CHECK(b_lag.lagging);
    CHECK(b_lag.entry->version == b_version);
}

// Registrations arriving while classes translate (a start-up storm): translations whose
// endpoints moved meanwhile are not cached but answered, lagging answers never wait, and once
// the registrations stop every class ends current.
TEST_CASE("a start-up storm of registrations ends with every class current") {
    Fixture f;
    f.apply(kServices);
    f.update();
    std::atomic<bool> stop{false};
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t) {
        readers.emplace_back([&, t] {
            for (std::size_t i = t; !stop.load(); ++i) {
                auto staleness = i % 2 ? SnapshotCache::Staleness::RegistrationsMayLag : SnapshotCache::Staleness::Current;
                f.cache.get(kClasses[i % kClasses.size()], staleness);
            }
        });
    }
    std::vector<model::WorkloadEntry> pods;
    for (int k = 0; k < 60; ++k) {
        const std::string ns = k % 3 == 0 ? "a" : k % 3 == 1 ? "b" : "c";
        pods.push_back(pod(ns, "p-" + std::to_string(k), "198.18.1." + std::to_string(k + 1),
                           {{"app", ns == "c" ? "z" : "x"}}));
        f.set_registered(pods);
        const std::vector<model::WorkloadEntry> copy = pods;  // the readers' threads read it
        f.cache.update(f.store.snapshot(), f.generation, [copy] { return copy; });
        if (k == 30) {
            f.apply(virtual_service("b", "to-a", "svc-a.a.svc.cluster.local", "\".\"", 450));
            f.cache.update(f.store.snapshot(), f.generation, [copy] { return copy; });
        }
    }
    stop = true;
    for (auto& t : readers) t.join();
    for (const auto& c : kClasses) {
        CHECK(f.cache.get(c).entry->version == f.fresh_version(c));
        auto r = f.cache.get(c, SnapshotCache::Staleness::RegistrationsMayLag);
        CHECK_FALSE(r.lagging);
        CHECK(r.entry->version == f.fresh_version(c));
    }
}

// A registration while a class translates: the result misses it, so it is answered but not
// cached (the next get translates again); a registration elsewhere leaves it cacheable.
TEST_CASE("a translation that a registration overtakes is answered, not cached") {
    Fixture f;
    f.apply(kServices);
    f.apply(sidecar("a", "default", "", "\"./*\""));  // a's classes hold a's services alone
    f.update();
    std::vector<model::WorkloadEntry> next;
    f.cache.on_translate([&](const ProxyClass&) {
        if (next.empty()) return;
        f.set_registered(std::exchange(next, {}));
        const auto copy = f.registered;
        f.cache.update(f.store.snapshot(), f.generation, [copy] { return copy; });
    });
    // A pod of c registers meanwhile: a's snapshot does not hold c's services, cached.
    next = {pod("c", "z-1", "198.18.0.50", {{"app", "z"}})};
    auto r = f.cache.get(kA);
    CHECK_FALSE(r.lagging);
    CHECK_FALSE(f.computed(kA));
    // A pod of a registers meanwhile: answered as the newest a has, not cached.
    next = f.registered;
    next.push_back(pod("a", "x-1", "198.18.0.51", {{"app", "x"}}));
    f.apply(virtual_service("a", "svc-a", "svc-a", "\".\"", 900));
    f.update();
    r = f.cache.get(kA);
    CHECK(r.lagging);
    CHECK(r.entry->version != f.fresh_version(kA));
    auto lag = f.cache.get(kA, SnapshotCache::Staleness::RegistrationsMayLag);
    CHECK(lag.lagging);
    CHECK(lag.entry == r.entry);
    CHECK(f.computed(kA));
    // The config changing meanwhile: translated once more from the new config.
    f.cache.on_translate([&, once = true](const ProxyClass&) mutable {
        if (!once) return;
        once = false;
        f.apply(virtual_service("a", "svc-a", "svc-a", "\".\"", 950));
        f.update();
    });
    const uint64_t computes = f.cache.stats().computes;
    r = f.cache.get(kB);
    CHECK_FALSE(r.lagging);
    CHECK(f.cache.stats().computes == computes + 2);
    CHECK(r.entry->version == f.fresh_version(kB));
}
