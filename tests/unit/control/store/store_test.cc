// ConfigStore: apply/replace/delete, versions, refusals that keep the old config, persistence
// across reopening, waiters, the --config-dir watcher, kind names, YAML as JSON.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <unistd.h>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/files.h"
#include "control/store/config_dir.h"
#include "control/store/store.h"
#include "control/store/yaml_json.h"

namespace fs = std::filesystem;
using namespace remora::control::store;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/store-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

struct Fixture {
    TempDir tmp;
    std::chrono::system_clock::time_point now =
        std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    std::vector<std::string> logs;
    std::unique_ptr<ConfigStore> store;

    Fixture() { reopen(); }
    void reopen() {
        store.reset();
        store = std::make_unique<ConfigStore>(
            tmp.path / "config", [this] { return now; },
            [this](const std::string& m) { logs.push_back(m); });
    }
};

const std::string kReviewsV1 = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
)";

const std::string kReviewsV2 = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
)";

const std::string kReviewsDr = R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
)";

// retryOn "5xxx" is unknown: an IST0106 error at line 13, column 16.
const std::string kBadRetry = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    retries:
      retryOn: 5xxx
      attempts: 3
)";

const ResourceKey kVsKey{Kind::VirtualService, "default", "reviews"};
const ResourceKey kDrKey{Kind::DestinationRule, "shop", "reviews"};

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
}

}  // namespace

TEST_CASE("apply creates, replaces and leaves identical resources alone") {
    Fixture f;
    CHECK(f.store->version() == 0);
    ChangeResult r = f.store->apply(kReviewsV1 + "---\n" + kReviewsDr, "bookinfo.yaml");
    REQUIRE(r.ok());
    CHECK(r.version == 1);
    REQUIRE(r.items.size() == 2);
    CHECK(r.items[0].action == "created");
    CHECK(r.items[1].key == kDrKey);
    auto snap = f.store->snapshot();
    CHECK(snap->resources.size() == 2);
    CHECK(snap->config.virtual_services.size() == 1);
    CHECK(snap->config.destination_rules.size() == 1);
    CHECK(snap->resources.at(kVsKey).yaml == kReviewsV1);
    CHECK(snap->resources.at(kVsKey).source == "bookinfo.yaml");

    r = f.store->apply(kReviewsV1, "again.yaml");
    CHECK(r.ok());
    CHECK(r.items.at(0).action == "unchanged");
    CHECK(f.store->version() == 1);

    f.now += std::chrono::seconds(60);
    r = f.store->apply(kReviewsV2, "v2.yaml");
    REQUIRE(r.ok());
    CHECK(r.items.at(0).action == "configured");
    CHECK(r.version == 2);
    const Resource& vs = f.store->snapshot()->resources.at(kVsKey);
    CHECK(vs.yaml == kReviewsV2);
    CHECK(vs.updated == vs.created + 60);
    CHECK(vs.resource_version == 2);
    CHECK(f.store->snapshot()
              ->config.virtual_services.at(0)
              .http.at(0)
              .route.at(0)
              .destination.subset == "v2");
}

TEST_CASE("other kinds are skipped; input without any stored kind is refused") {
    Fixture f;
    std::string deploy =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: reviews\nspec:\n"
        "  replicas: 1\n";
    ChangeResult r = f.store->apply(deploy + "---\n" + kReviewsV1, "mixed.yaml");
    REQUIRE(r.ok());
    REQUIRE(r.items.size() == 2);
    CHECK(r.items[1].action == "skipped");
    CHECK(r.items[1].detail.find("Deployment default/reviews") != std::string::npos);
    CHECK(f.store->snapshot()->resources.size() == 1);

    r = f.store->apply(deploy, "deploy.yaml");
    CHECK(r.status == 400);
    CHECK(r.error.find("no VirtualService") != std::string::npos);
    CHECK(f.store->version() == 1);
}

TEST_CASE("a Sidecar is stored and parsed; an invalid one is refused with Istio's message") {
    Fixture f;
    const std::string sc =
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n"
        "  namespace: prod\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n";
    ChangeResult r = f.store->apply(sc, "sidecar.yaml");
    REQUIRE(r.ok());
    CHECK(r.items.at(0).action == "created");
    CHECK(f.store->snapshot()->resources.count({Kind::Sidecar, "prod", "default"}) == 1);
    REQUIRE(f.store->snapshot()->config.sidecars.size() == 1);
    CHECK(f.store->snapshot()->config.sidecars[0].egress.at(0).hosts.at(1) == "istio-system/*");
    // egress[] is enforced (translation scopes proxies by it): no warning.
    CHECK(r.warnings.empty());

    r = f.store->apply("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n"
                       "  name: bad\nspec:\n  egress:\n  - hosts: [bookinfo.com]\n",
                       "bad.yaml");
    CHECK(r.status == 400);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0].find("bad.yaml:7:13: spec.egress[0].hosts[0]: host must be of form "
                             "namespace/dnsName") != std::string::npos);
    CHECK(f.store->snapshot()->config.sidecars.size() == 1);
}

TEST_CASE("Kubernetes Services (core v1) are stored; another group's Service is skipped") {
    Fixture f;
    std::string svc =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n"
        "  clusterIP: 198.19.0.9\n  selector: {app: reviews}\n  ports:\n  - port: 9080\n";
    ChangeResult r = f.store->apply(svc, "svc.yaml");
    REQUIRE(r.ok());
    CHECK(r.items.at(0).action == "created");
    CHECK(r.items.at(0).key.kind == Kind::Service);
    const auto& ks = f.store->snapshot()->config.kube_services;
    REQUIRE(ks.size() == 1);
    CHECK(ks[0].cluster_ips == std::vector<std::string>{"198.19.0.9"});
    CHECK(ks[0].selector.at("app") == "reviews");
    CHECK(kind_from_name("svc") == Kind::Service);
    CHECK(kind_from_name("services") == Kind::Service);
    r = f.store->apply("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: k\n",
                       "kn.yaml");
    CHECK(r.status == 400);
    CHECK(f.store->snapshot()->resources.size() == 1);
}

TEST_CASE("Services valid in Kubernetes are taken, and no document shape throws") {
    Fixture f;
    // spec: {} and a headless Service without ports are valid Kubernetes objects.
    ChangeResult r = f.store->apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec: {}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: headless\nspec:\n"
        "  clusterIP: None\n  selector: {app: db}\n",
        "svc.yaml");
    REQUIRE(r.ok());
    CHECK(f.store->snapshot()->config.kube_services.size() == 2);
    // metadata as a string threw out of the store (the API answered with a truncated stream).
    for (const char* odd : {"kind: VirtualService\nmetadata: a-string\n",
                            "kind: Service\napiVersion: v1\nmetadata: [a]\n",
                            "kind: {a: b}\nmetadata: {name: [x]}\n"}) {
        CAPTURE(odd);
        REQUIRE_NOTHROW(r = f.store->apply(odd, "odd.yaml"));
        CHECK_FALSE(r.ok());
    }
    CHECK(f.store->snapshot()->resources.size() == 2);
}

TEST_CASE("status and metadata.managedFields (kubectl get -o yaml) are not stored") {
    Fixture f;
    const std::string got =
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata:\n  managedFields:\n  - manager: kubectl\n"
        "    fieldsV1:\n      f:spec: {}\n  name: reviews\n"
        "spec:\n  hosts:\n  - reviews\n  http:\n  - route:\n"
        "    - destination:\n        host: reviews\n"
        "status:\n  observedGeneration: 2\n  conditions:\n  - type: Ready\n";
    ChangeResult r = f.store->apply(got, "got.yaml");
    REQUIRE(r.ok());
    const std::string& stored = f.store->snapshot()->resources.at(kVsKey).yaml;
    CHECK(stored ==
          "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
          "  name: reviews\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n"
          "    - destination:\n        host: reviews\n");
    REQUIRE(f.store->snapshot()->config.virtual_services.size() == 1);
}

TEST_CASE("an invalid change is refused with analyze's messages and the old config stays") {
    Fixture f;
    REQUIRE(f.store->apply(kReviewsV1, "good.yaml").ok());
    ChangeResult r = f.store->apply(kReviewsDr + "---\n" + kBadRetry, "bad.yaml");
    CHECK(r.status == 400);
    CHECK_FALSE(r.ok());
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0] ==
          "Error [IST0106] (VirtualService default/reviews bad.yaml:13) Schema validation error: "
          "bad.yaml:25:16: spec.http[0].retries.retryOn: unknown retry condition \"5xxx\"");
    CHECK(r.version == 1);
    CHECK(f.store->version() == 1);
    // All or nothing: the valid DestinationRule in the same input was not taken either.
    CHECK(f.store->snapshot()->resources.size() == 1);
    CHECK(f.store->snapshot()->resources.at(kVsKey).yaml == kReviewsV1);
}

TEST_CASE("YAML syntax errors are refused with file:line:col") {
    Fixture f;
    ChangeResult r = f.store->apply("kind: VirtualService\nmetadata: [\n", "broken.yaml");
    CHECK(r.status == 400);
    REQUIRE_FALSE(r.messages.empty());
    CHECK(r.messages[0].find("broken.yaml:") != std::string::npos);
}

TEST_CASE("delete removes what is named; a missing resource is an error naming it") {
    Fixture f;
    REQUIRE(f.store->apply(kReviewsV1 + "---\n" + kReviewsDr, "b.yaml").ok());
    std::string missing =
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: nope\n";
    ChangeResult r = f.store->remove(kReviewsDr + "---\n" + missing, "del.yaml");
    CHECK(r.status == 404);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0] == "VirtualService default/nope not found");
    CHECK(f.store->snapshot()->resources.size() == 2);  // nothing deleted
    CHECK(f.store->version() == 1);

    r = f.store->remove(kReviewsDr, "del.yaml");
    REQUIRE(r.ok());
    CHECK(r.version == 2);
    REQUIRE(r.items.size() == 1);
    CHECK(r.items[0].action == "deleted");
    CHECK(r.items[0].key == kDrKey);
    CHECK(f.store->snapshot()->resources.count(kDrKey) == 0);
    CHECK(f.store->snapshot()->config.destination_rules.empty());
}

TEST_CASE("the store survives reopening: resources, times and the version") {
    Fixture f;
    REQUIRE(f.store->apply(kReviewsV1, "a.yaml").ok());
    REQUIRE(f.store->apply(kReviewsDr, "b.yaml").ok());
    REQUIRE(f.store->remove(kReviewsDr, "b.yaml").ok());
    CHECK(fs::exists(f.tmp.path / "config" / kStoreFile));
    CHECK((fs::status(f.tmp.path / "config" / kStoreFile).permissions() & fs::perms::others_read) ==
          fs::perms::none);
    f.reopen();
    CHECK(f.store->version() == 3);
    auto snap = f.store->snapshot();
    REQUIRE(snap->resources.size() == 1);
    CHECK(snap->resources.at(kVsKey).yaml == kReviewsV1);
    CHECK(snap->resources.at(kVsKey).source == "a.yaml");
    CHECK(snap->resources.at(kVsKey).created == 1'800'000'000);
    CHECK(snap->config.virtual_services.size() == 1);
    // Versions keep growing after a restart.
    REQUIRE(f.store->apply(kReviewsV2, "a.yaml").ok());
    CHECK(f.store->version() == 4);
}

TEST_CASE("a damaged store file is an error naming it, never an empty store") {
    TempDir tmp;
    fs::create_directories(tmp.path / "config");
    write_text(tmp.path / "config" / kStoreFile, "{\"version\": 3, \"resources\": [{}]}");
    auto clock = [] { return std::chrono::system_clock::now(); };
    try {
        ConfigStore s(tmp.path / "config", clock, [](const std::string&) {});
        FAIL("opened a damaged store");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("store.json: damaged config store") != std::string::npos);
    }
    write_text(tmp.path / "config" / kStoreFile, "not json");
    CHECK_THROWS_WITH_AS(ConfigStore(tmp.path / "config", clock, [](const std::string&) {}),
                         doctest::Contains("not JSON"), std::runtime_error);
}

TEST_CASE("waiters: at once when newer, after the next change otherwise, cancellable") {
    Fixture f;
    std::vector<uint64_t> seen;
    // Nothing newer than 0 yet: queued.
    uint64_t id = f.store->on_newer(0, [&](SnapshotPtr s) { seen.push_back(s->version); });
    CHECK(id != 0);
    uint64_t cancelled = f.store->on_newer(0, [&](SnapshotPtr) { seen.push_back(999); });
    CHECK(f.store->cancel_waiter(cancelled));
    CHECK_FALSE(f.store->cancel_waiter(cancelled));
    CHECK(seen.empty());
    REQUIRE(f.store->apply(kReviewsV1, "a.yaml").ok());
    CHECK(seen == std::vector<uint64_t>{1});
    CHECK_FALSE(f.store->cancel_waiter(id));  // fired already
    // A refused or unchanged apply wakes nobody.
    f.store->on_newer(1, [&](SnapshotPtr s) { seen.push_back(s->version); });
    f.store->apply(kBadRetry, "bad.yaml");
    f.store->apply(kReviewsV1, "a.yaml");
    CHECK(seen.size() == 1);
    // Newer than 0 exists: called at once, on this thread.
    CHECK(f.store->on_newer(0, [&](SnapshotPtr s) { seen.push_back(s->version + 100); }) == 0);
    CHECK(seen == std::vector<uint64_t>{1, 101});
    REQUIRE(f.store->apply(kReviewsV2, "a.yaml").ok());
    CHECK(seen == std::vector<uint64_t>{1, 101, 2});
}

TEST_CASE("wait_newer blocks until another thread changes the store, or times out") {
    Fixture f;
    CHECK(f.store->wait_newer(0, std::chrono::milliseconds(20)) == nullptr);
    std::thread writer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        f.store->apply(kReviewsV1, "a.yaml");
    });
    SnapshotPtr s = f.store->wait_newer(0, std::chrono::seconds(10));
    writer.join();
    REQUIRE(s != nullptr);
    CHECK(s->version == 1);
    CHECK(s->resources.count(kVsKey) == 1);
}

TEST_CASE(
    "config-dir resources: owned by the directory, read-only over the API, not in store.json") {
    Fixture f;
    REQUIRE(f.store->apply(kReviewsDr, "api.yaml").ok());  // version 1
    ChangeResult r = f.store->set_config_dir({{"/cm/reviews.yaml", kReviewsV1}});
    REQUIRE(r.ok());
    CHECK(r.version == 2);
    CHECK(f.store->snapshot()->resources.at(kVsKey).origin == Origin::ConfigDir);
    CHECK(f.store->snapshot()->resources.at(kVsKey).source == "/cm/reviews.yaml");
    // The same directory again changes nothing.
    CHECK(f.store->set_config_dir({{"/cm/reviews.yaml", kReviewsV1}}).items.empty());
    CHECK(f.store->version() == 2);

    r = f.store->apply(kReviewsV2, "api.yaml");
    CHECK(r.status == 409);
    CHECK(r.messages.at(0).find("managed by --config-dir (/cm/reviews.yaml)") != std::string::npos);
    CHECK(f.store->remove(kReviewsV1, "api.yaml").status == 409);

    // An invalid directory state is refused and the last good one stays.
    r = f.store->set_config_dir({{"/cm/reviews.yaml", kBadRetry}});
    CHECK(r.status == 400);
    CHECK(r.messages.at(0).find("/cm/reviews.yaml:13:16") != std::string::npos);
    CHECK(f.store->snapshot()->resources.at(kVsKey).yaml == kReviewsV1);

    // The directory takes over a resource the API created.
    r = f.store->set_config_dir({{"/cm/reviews.yaml", kReviewsV1}, {"/cm/dr.yaml", kReviewsDr}});
    REQUIRE(r.ok());
    CHECK(f.store->snapshot()->resources.at(kDrKey).origin == Origin::ConfigDir);

    // store.json holds only API resources; the directory's come back from the directory.
    r = f.store->set_config_dir({{"/cm/dr.yaml", kReviewsDr}});
    REQUIRE(r.ok());
    CHECK(f.store->snapshot()->resources.count(kVsKey) == 0);
    uint64_t v = f.store->version();
    f.reopen();
    CHECK(f.store->version() == v);
    CHECK(f.store->snapshot()->resources.empty());
}

TEST_CASE("read_config_dir reads a ConfigMap mount once, skipping ..data and hidden files") {
    TempDir tmp;
    fs::path ts = tmp.path / "..2026_01_01_00_00_00.000";
    fs::create_directories(ts);
    write_text(ts / "reviews.yaml", kReviewsV1);
    write_text(ts / "notes.txt", "not yaml");
    fs::create_directory_symlink(ts.filename(), tmp.path / "..data");
    fs::create_symlink(fs::path("..data") / "reviews.yaml", tmp.path / "reviews.yaml");
    write_text(tmp.path / ".hidden.yaml", kBadRetry);
    auto files = read_config_dir(tmp.path);
    REQUIRE(files.size() == 1);
    CHECK(files[0].path == (tmp.path / "reviews.yaml").string());
    CHECK(files[0].text == kReviewsV1);
    CHECK_THROWS_AS(read_config_dir(tmp.path / "absent"), std::runtime_error);
}

TEST_CASE("the watcher loads the directory at start and follows a ConfigMap-style swap") {
    Fixture f;
    TempDir dir;
    auto swap_in = [&](const std::string& stamp, const std::string& text) {
        fs::path ts = dir.path / stamp;
        fs::create_directories(ts);
        write_text(ts / "reviews.yaml", text);
        fs::create_directory_symlink(stamp, dir.path / "..data_tmp");
        fs::rename(dir.path / "..data_tmp", dir.path / "..data");  // atomic, as the kubelet does
    };
    swap_in("..1", kReviewsV1);
    fs::create_symlink(fs::path("..data") / "reviews.yaml", dir.path / "reviews.yaml");
    std::vector<std::string> logs;
    ConfigDirWatcher w(
        dir.path, *f.store, [&](const std::string& m) { logs.push_back(m); },
        std::chrono::seconds(30));  // rescans must not be what finds the change
    REQUIRE(w.start());
    CHECK(f.store->version() == 1);
    uint64_t v = f.store->version();
    swap_in("..2", kReviewsV2);
    SnapshotPtr s = f.store->wait_newer(v, std::chrono::seconds(3));
    REQUIRE(s != nullptr);
    CHECK(s->resources.at(kVsKey).yaml == kReviewsV2);
    // An invalid state is logged with its position and the last good config stays.
    v = s->version;
    swap_in("..3", kBadRetry);
    CHECK(f.store->wait_newer(v, std::chrono::milliseconds(1500)) == nullptr);
    w.stop();
    bool logged = false;
    for (const auto& l : logs)
        logged |= l.find("reviews.yaml:13:16") != std::string::npos;
    CHECK(logged);
    CHECK(f.store->snapshot()->resources.at(kVsKey).yaml == kReviewsV2);
}

TEST_CASE("kind names as kubectl and istioctl accept them") {
    CHECK(kind_from_name("vs") == Kind::VirtualService);
    CHECK(kind_from_name("VirtualServices") == Kind::VirtualService);
    CHECK(kind_from_name("virtualservice.networking.istio.io") == Kind::VirtualService);
    CHECK(kind_from_name("dr") == Kind::DestinationRule);
    CHECK(kind_from_name("serviceentries") == Kind::ServiceEntry);
    CHECK(kind_from_name("we") == Kind::WorkloadEntry);
    CHECK(kind_from_name("pa") == Kind::PeerAuthentication);
    CHECK(kind_from_name("AuthorizationPolicies") == Kind::AuthorizationPolicy);
    CHECK(kind_from_name("ap") == Kind::AuthorizationPolicy);
    CHECK(kind_from_name("sidecars") == Kind::Sidecar);
    CHECK(kind_from_name("sidecar.networking.istio.io") == Kind::Sidecar);
    CHECK_FALSE(kind_from_name("").has_value());  // Sidecar has no short name
    CHECK(std::string(kind_group(Kind::PeerAuthentication)) == "security.istio.io");
}

TEST_CASE("YAML as JSON keeps quoted scalars strings and types plain ones") {
    auto v =
        yaml_to_json("a: \"50\"\nb: 50\nc: true\nd: ~\ne: 1.5\nf: [x, '1']\ng: 1e3\nh: 10ms\n");
    const auto& o = v.as_object();
    CHECK(o.at("a").as_string() == "50");
    CHECK(o.at("b").to_number<int>() == 50);
    CHECK(o.at("c").as_bool());
    CHECK(o.at("d").is_null());
    CHECK(o.at("e").as_double() == 1.5);
    CHECK(o.at("f").as_array().at(1).as_string() == "1");
    CHECK(o.at("g").as_double() == 1000.0);
    CHECK(o.at("h").as_string() == "10ms");
}

namespace {

// Nine levels of eight aliases (8^9 nodes expanded) in a one-line flow mapping, where the store
// cannot cut `status` out by lines.
std::string flow_alias_bomb() {
    std::string y =
        "{apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: reviews}, "
        "spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}, "
        "status: {a: &a [lol,lol,lol,lol,lol,lol,lol,lol]";
    std::string prev = "a";
    for (char c = 'b'; c <= 'i'; ++c) {
        y += std::string(", ") + c + ": &" + c + " [";
        for (int i = 0; i < 8; ++i)
            y += (i ? ",*" : "*") + prev;
        y += "]";
        prev = std::string(1, c);
    }
    return y + "}}\n";
}

}  // namespace

TEST_CASE("an alias bomb is refused with file:line, and nothing of it is stored") {
    Fixture f;
    ChangeResult r = f.store->apply(flow_alias_bomb(), "bomb.yaml");
    CHECK(r.status == 400);
    REQUIRE_FALSE(r.messages.empty());
    CHECK(r.messages[0].find("bomb.yaml:1:") != std::string::npos);
    CHECK(r.messages[0].find("nodes per alias expansion") != std::string::npos);
    CHECK(f.store->snapshot()->resources.empty());
    // A cycle (an alias inside its own anchor) in a Service, whose unknown fields are kept.
    r = f.store->apply("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  x: &a [*a]\n",
                       "cycle.yaml");
    CHECK(r.status == 400);
    CHECK(f.store->snapshot()->resources.empty());
    // Every reader of stored YAML is bounded too.
    CHECK_THROWS_AS(yaml_to_json(flow_alias_bomb()), std::runtime_error);
    CHECK_THROWS_AS(yaml_documents_to_json("a: 1\n---\n" + flow_alias_bomb()), YamlSyntaxError);
}

TEST_CASE("status and managedFields are not stored from a flow-style document either") {
    Fixture f;
    ChangeResult r = f.store->apply(
        "{apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: reviews, "
        "managedFields: [{manager: kubectl}]}, spec: {hosts: [reviews], http: [{route: "
        "[{destination: {host: reviews}}]}]}, status: {observedGeneration: 2}}\n",
        "flow.yaml");
    REQUIRE(r.ok());
    const std::string& stored = f.store->snapshot()->resources.at(kVsKey).yaml;
    CHECK(stored.find("status") == std::string::npos);
    CHECK(stored.find("managedFields") == std::string::npos);
    CHECK(stored.find("reviews") != std::string::npos);
    REQUIRE(f.store->snapshot()->config.virtual_services.size() == 1);
    CHECK(yaml_to_json(stored).as_object().at("spec").as_object().contains("http"));
}

TEST_CASE("YAML documents as JSON: lines count from the stream's start") {
    try {
        (void)yaml_documents_to_json("a: 1\n---\nb: [\n");
        FAIL("no error");
    } catch (const YamlSyntaxError& e) {
        CHECK(e.line >= 3);
    }
    CHECK(yaml_documents_to_json("a: 1\n---\nb: 2\n").size() == 2);
    CHECK(yaml_documents_to_json("---\na: 1\n").size() == 1);
}

namespace {

// What a model holds, resource by resource, in order: names, where each was read, validity, a
// field of its content; the diagnostics as a sorted list (their order is the log's, not kept).
std::string model_digest(const remora::control::model::Config& c) {
    std::ostringstream o;
    auto list = [&](const char* what, const auto& v, auto content) {
        o << what << ":";
        for (const auto& r : v) {
            o << " " << r.meta.ns << "/" << r.meta.name << "@" << r.meta.where.file << ":"
              << r.meta.where.line << (r.meta.valid ? "" : "!") << "=" << content(r);
        }
        o << "\n";
    };
    auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v)
            s += x + ",";
        return s;
    };
    list("vs", c.virtual_services, [&](const auto& r) { return join(r.hosts) + std::to_string(r.http.size()); });
    list("dr", c.destination_rules, [&](const auto& r) { return r.host + std::to_string(r.subsets.size()); });
    list("se", c.service_entries, [&](const auto& r) { return join(r.hosts); });
    list("we", c.workload_entries, [&](const auto& r) { return r.spec.address; });
    list("svc", c.kube_services, [&](const auto& r) { return std::to_string(r.ports.size()); });
    list("sc", c.sidecars, [&](const auto&) { return std::string(); });
    list("pa", c.peer_authentications, [&](const auto&) { return std::string(); });
    o << "workloads:";
    for (const auto& w : c.workloads)
        o << " " << w.kind << " " << w.ns << "/" << w.name;
    std::vector<std::string> diags, names(c.defined_names.begin(), c.defined_names.end());
    for (const auto& d : c.diagnostics)
        diags.push_back(d.str());
    std::sort(diags.begin(), diags.end());
    std::sort(names.begin(), names.end());
    o << "\ndiagnostics:\n" << join(diags) << "\ndefined: " << join(names) << "\n";
    return o.str();
}

std::string random_resource(std::mt19937& rng, int i, int version) {
    const std::string ns = "ns-" + std::to_string(rng() % 3);
    const std::string name = "r-" + std::to_string(i);
    const std::string v = std::to_string(version);
    switch (i % 6) {
        case 0:
            return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " +
                   name + ", namespace: " + ns + "}\nspec:\n  hosts: [h" + v +
                   "]\n  http:\n  - route:\n    - destination: {host: h" + v + "}\n";
        case 1:
            return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " +
                   name + ", namespace: " + ns + "}\nspec:\n  host: h" + v +
                   "\n  subsets:\n  - {name: v" + v + ", labels: {version: v" + v + "}}\n";
        case 2:
            return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " +
                   name + ", namespace: " + ns + "}\nspec:\n  hosts: [e" + v +
                   ".example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
                   "  resolution: DNS\n";
        case 3:
            return "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: " +
                   name + ", namespace: " + ns + "}\nspec:\n  address: 198.18.0." + v +
                   "\n  labels: {app: a" + v + "}\n";
        case 4:
            return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: " + ns +
                   "}\nspec:\n  selector: {app: a" + v + "}\n  ports:\n  - {name: http, port: 80}\n" +
                   (version % 2 ? "  - {name: grpc, port: 81}\n" : "");
        default:
            // A DestinationRule with a field remora warns about (kept, with its warning).
            return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " +
                   name + ", namespace: " + ns + "}\nspec:\n  host: w" + v +
                   "\n  trafficPolicy:\n    loadBalancer:\n      warmupDurationSecs: " +
                   std::to_string(10 + version) + "s\n";
    }
}

}  // namespace

TEST_CASE("a change reads again only what it changed, and makes the model a reread makes") {
    Fixture f;
    std::mt19937 rng(15);
    std::map<int, std::string> live;  // what is applied, by resource number
    for (int round = 0; round < 40; ++round) {
        std::string yaml, removed;
        std::set<int> touched;  // a resource is applied or deleted once a round
        const int count = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < count; ++k) {
            const int i = static_cast<int>(rng() % 24);
            if (!touched.insert(i).second) continue;
            auto it = live.find(i);
            if (it != live.end() && rng() % 3 == 0) {
                removed += "---\n" + it->second;
                live.erase(it);
                continue;
            }
            std::string text = random_resource(rng, i, round);
            if (it != live.end()) {
                // Another namespace would make another resource: keep the first one's.
                const std::string& old = it->second;
                text.replace(text.find("namespace: "), 15, old.substr(old.find("namespace: "), 15));
            }
            yaml += "---\n" + text;
            live[i] = text;
        }
        if (!removed.empty()) {
            ChangeResult r = f.store->remove(removed, "round-" + std::to_string(round) + ".yaml");
            REQUIRE_MESSAGE(r.ok(), r.error);
        }
        if (!yaml.empty()) {
            ChangeResult r = f.store->apply(yaml, "round-" + std::to_string(round) + ".yaml");
            REQUIRE_MESSAGE(r.ok(), r.error, " ", r.messages.empty() ? "" : r.messages.front());
        }
        const std::string incremental = model_digest(f.store->snapshot()->config);
        f.reopen();  // reads every resource again
        CHECK_MESSAGE(model_digest(f.store->snapshot()->config) == incremental, "round ", round);
    }
    // The rounds did change, delete and re-create resources of every kind.
    CHECK(f.store->snapshot()->config.kube_services.size() > 0);
    CHECK(f.store->snapshot()->config.workloads.size() > 0);
    CHECK(f.store->snapshot()->config.diagnostics.size() > 0);
}
