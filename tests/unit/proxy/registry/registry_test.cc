// Tests for the service registry: parsing Istio ServiceEntry/WorkloadEntry YAML, lookups by host
// and by original destination, and the exact location of every validation error.
#include "proxy/registry/registry.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

using remora::proxy::ConfigError;
using remora::proxy::Endpoint;
using remora::proxy::Registry;
using remora::proxy::Service;
namespace ip = boost::asio::ip;

namespace {

// The demo cluster: two in-mesh services backed by WorkloadEntries, an entry with inline
// endpoints, external wildcard entries, and Kubernetes objects the registry has no use for.
const std::string kMesh = R"(# Services of the demo cluster.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: hello
  namespace: default
spec:
  hosts:
  - hello.default.svc.cluster.local
  addresses:
  - 198.19.0.10
  ports:
  - number: 8080
    name: http
    protocol: http
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels:
      app: hello
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: hello-1
  namespace: default
spec:
  address: 198.18.1.2
  labels:
    app: hello
    security.istio.io/tlsMode: istio
  serviceAccount: hello
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: hello-2
  namespace: default
spec:
  address: 198.18.1.3
  ports:
    http: 18080
  labels:
    app: hello
    version: v2
    security.istio.io/tlsMode: istio
  serviceAccount: hello
  weight: 3
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews.bookinfo.svc.cluster.local
  - ratings-legacy
  addresses:
  - 198.19.0.20
  ports:
  - number: 9080
    name: http
    protocol: HTTP
    targetPort: 9081
  - number: 9443
    name: grpc-admin
    protocol: GRPC
  workloadSelector:
    labels:
      app: reviews
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
  name: reviews-vm
  namespace: bookinfo
spec:
  address: 198.18.2.5
  labels:
    app: reviews
---
# Labelled app=hello, but in another namespace: no ServiceEntry there selects it.
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: stray
  namespace: other
spec:
  address: 198.18.9.9
  labels:
    app: hello
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: db
  namespace: default
spec:
  hosts:
  - db.internal
  ports:
  - number: 5432
    name: tcp
    protocol: TCP
  endpoints:
  - address: 198.18.3.7
    ports:
      tcp: 15432
    labels:
      role: primary
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: example-wildcard
  namespace: default
spec:
  hosts:
  - "*.example.com"
  location: MESH_EXTERNAL
  ports:
  - number: 443
    name: tls
    protocol: TLS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: example-eu
  namespace: default
spec:
  hosts:
  - "*.eu.example.com"
  - api.example.com
  location: MESH_EXTERNAL
  ports:
  - number: 443
    name: https
    protocol: HTTPS
---
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
spec:
  ports:
  - port: 9080
)";

const Registry& mesh() {
    static const Registry r = Registry::parse(kMesh, "mesh.yaml");
    return r;
}

std::string error_of(const std::string& yaml) {
    try {
        Registry::parse(yaml, "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

std::string name_of(const Service* s) {
    return s ? s->ns + "/" + s->name : "(none)";
}

const Endpoint* endpoint_at(const Service& s, const char* address) {
    for (const Endpoint& e : s.endpoints) {
        if (e.address == ip::make_address(address)) return &e;
    }
    return nullptr;
}

// Every ServiceEntry error test starts from this head; the spec body begins on line 6.
const std::string kSe =
    "apiVersion: networking.istio.io/v1\n"  // 1
    "kind: ServiceEntry\n"                  // 2
    "metadata:\n"                           // 3
    "  name: hello\n"                       // 4
    "spec:\n";                              // 5
const std::string kWe =
    "apiVersion: networking.istio.io/v1\n"  // 1
    "kind: WorkloadEntry\n"                 // 2
    "metadata:\n"                           // 3
    "  name: hello-1\n"                     // 4
    "spec:\n";                              // 5

std::filesystem::path samples_dir() {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir != nullptr,
                    "REMORA_ISTIO_SAMPLES is not set; run this test through `meson test`");
    REQUIRE_MESSAGE(std::filesystem::is_directory(dir),
                    "REMORA_ISTIO_SAMPLES=" << std::string(dir)
                                            << " is not a directory (shared/istio-samples)");
    return dir;
}

}  // namespace

TEST_CASE("a realistic file yields its ServiceEntries with their endpoints") {
    const auto& services = mesh().services();
    REQUIRE(services.size() == 5);

    const Service& hello = services[0];
    CHECK(hello.name == "hello");
    CHECK(hello.ns == "default");
    CHECK(hello.hosts == std::vector<std::string>{"hello.default.svc.cluster.local"});
    REQUIRE(hello.addresses.size() == 1);
    CHECK(hello.addresses[0] == ip::make_address("198.19.0.10"));
    REQUIRE(hello.ports.size() == 1);
    CHECK(hello.ports[0].number == 8080);
    CHECK(hello.ports[0].name == "http");
    CHECK(hello.ports[0].protocol == "HTTP");  // written lowercase, stored uppercase
    CHECK(hello.ports[0].target_port == 0);
    CHECK(hello.location == "MESH_INTERNAL");
    CHECK(hello.resolution == "STATIC");
    REQUIRE(hello.workload_selector.has_value());
    CHECK(*hello.workload_selector == std::map<std::string, std::string>{{"app", "hello"}});
    REQUIRE(hello.endpoints.size() == 2);  // the stray app=hello entry lives in another namespace
    CHECK(hello.endpoints[0].address == ip::make_address("198.18.1.2"));
    CHECK(hello.endpoints[0].name == "hello-1");
    CHECK(hello.endpoints[0].ns == "default");
    CHECK(hello.endpoints[0].service_account == "hello");
    CHECK(hello.endpoints[0].labels.at("security.istio.io/tlsMode") == "istio");
    CHECK(hello.endpoints[1].address == ip::make_address("198.18.1.3"));
    CHECK(hello.endpoints[1].ports == std::map<std::string, uint32_t>{{"http", 18080}});
    CHECK(hello.endpoints[1].weight == 3);

    const Service& reviews = services[1];
    CHECK(reviews.ns == "bookinfo");
    CHECK(reviews.resolution == "STATIC");  // defaulted: it has a workload selector
    REQUIRE(reviews.ports.size() == 2);
    CHECK(reviews.ports[0].target_port == 9081);
    CHECK(reviews.ports[1].protocol == "GRPC");
    REQUIRE(reviews.endpoints.size() == 1);
    CHECK(reviews.endpoints[0].ns == "bookinfo");

    const Service& db = services[2];
    CHECK(db.resolution == "STATIC");  // defaulted: it has endpoints
    CHECK_FALSE(db.workload_selector.has_value());
    REQUIRE(db.endpoints.size() == 1);
    CHECK(db.endpoints[0].ns == "default");  // inline endpoints take the entry's namespace
    CHECK(db.endpoints[0].name == "");
    CHECK(db.endpoints[0].labels.at("role") == "primary");

    CHECK(services[3].location == "MESH_EXTERNAL");
    CHECK(services[3].resolution == "NONE");  // defaulted: no endpoints, no selector
    CHECK(services[4].resolution == "NONE");
}

TEST_CASE(
    "find_by_host resolves short, namespaced, svc and full names from the client's namespace") {
    const Registry& r = mesh();
    CHECK(name_of(r.find_by_host("hello")) == "default/hello");
    CHECK(name_of(r.find_by_host("hello", "default")) == "default/hello");
    CHECK(r.find_by_host("hello", "bookinfo") == nullptr);  // hello.bookinfo.svc.cluster.local
    CHECK(name_of(r.find_by_host("hello.default", "bookinfo")) == "default/hello");
    CHECK(name_of(r.find_by_host("hello.default.svc", "bookinfo")) == "default/hello");
    CHECK(name_of(r.find_by_host("hello.default.svc.cluster.local")) == "default/hello");
    CHECK(name_of(r.find_by_host("reviews", "bookinfo")) == "bookinfo/reviews");
    CHECK(r.find_by_host("reviews", "default") == nullptr);
    CHECK(name_of(r.find_by_host("reviews.bookinfo")) == "bookinfo/reviews");
}

TEST_CASE("find_by_host ignores the port, case and a trailing dot") {
    const Registry& r = mesh();
    CHECK(name_of(r.find_by_host("hello:8080")) == "default/hello");
    CHECK(name_of(r.find_by_host("hello.default.svc.cluster.local:8080")) == "default/hello");
    CHECK(name_of(r.find_by_host("HELLO.Default.SVC.Cluster.Local")) == "default/hello");
    CHECK(name_of(r.find_by_host("Hello:8080")) == "default/hello");
    CHECK(name_of(r.find_by_host("hello.default.svc.cluster.local.")) == "default/hello");
    CHECK(name_of(r.find_by_host("DB.internal:5432")) == "default/db");
}

TEST_CASE("find_by_host matches a short name written in the entry from any namespace") {
    const Registry& r = mesh();
    CHECK(name_of(r.find_by_host("ratings-legacy", "default")) == "bookinfo/reviews");
    CHECK(name_of(r.find_by_host("ratings-legacy:9080", "elsewhere")) == "bookinfo/reviews");
}

TEST_CASE("find_by_host matches wildcard hosts, most specific first, exact before wildcard") {
    const Registry& r = mesh();
    CHECK(name_of(r.find_by_host("www.example.com")) == "default/example-wildcard");
    CHECK(name_of(r.find_by_host("a.b.example.com:443")) == "default/example-wildcard");
    CHECK(name_of(r.find_by_host("shop.eu.example.com")) == "default/example-eu");
    CHECK(name_of(r.find_by_host("api.example.com")) == "default/example-eu");
    CHECK(r.find_by_host("example.com") == nullptr);  // "*." needs at least one more label
    CHECK(r.find_by_host("eu.example.com") != nullptr);
}

TEST_CASE("find_by_host returns null for unknown and empty hosts") {
    const Registry& r = mesh();
    CHECK(r.find_by_host("unknown") == nullptr);
    CHECK(r.find_by_host("unknown.default.svc.cluster.local") == nullptr);
    CHECK(r.find_by_host("") == nullptr);
    CHECK(r.find_by_host(":8080") == nullptr);
    CHECK(r.find_by_host("[::1]:8080") == nullptr);
}

TEST_CASE("find_by_address matches VIP:port and endpoint:endpoint-port") {
    const Registry& r = mesh();
    auto find = [&](const char* a, uint16_t port) {
        return name_of(r.find_by_address(ip::make_address(a), port));
    };
    CHECK(find("198.19.0.10", 8080) == "default/hello");
    CHECK(find("198.19.0.10", 9080) == "(none)");  // a VIP only answers on the entry's ports
    CHECK(find("198.19.0.20", 9080) == "bookinfo/reviews");
    CHECK(find("198.19.0.20", 9443) == "bookinfo/reviews");
    CHECK(find("198.18.1.2", 8080) == "default/hello");   // no endpoint port: the service port
    CHECK(find("198.18.1.3", 18080) == "default/hello");  // the WorkloadEntry's named port
    CHECK(find("198.18.1.3", 8080) == "(none)");
    CHECK(find("198.18.2.5", 9081) == "bookinfo/reviews");  // targetPort
    CHECK(find("198.18.2.5", 9080) == "(none)");
    CHECK(find("198.18.2.5", 9443) == "bookinfo/reviews");
    CHECK(find("198.18.3.7", 15432) == "default/db");  // inline endpoint port
    CHECK(find("198.18.3.7", 5432) == "(none)");
    CHECK(find("198.18.9.9", 8080) == "(none)");                 // selected by no entry
    CHECK(find("::ffff:198.19.0.10", 8080) == "default/hello");  // IPv4-mapped from a v6 socket
}

TEST_CASE("endpoint_port: the endpoint's named port, else targetPort, else the service port") {
    const auto& services = mesh().services();
    const Service& hello = services[0];
    const Service& reviews = services[1];
    const Service& db = services[2];
    CHECK(hello.endpoint_port(hello.endpoints[0], hello.ports[0]) == 8080);
    CHECK(hello.endpoint_port(hello.endpoints[1], hello.ports[0]) == 18080);
    CHECK(reviews.endpoint_port(reviews.endpoints[0], reviews.ports[0]) == 9081);
    CHECK(reviews.endpoint_port(reviews.endpoints[0], reviews.ports[1]) == 9443);
    CHECK(db.endpoint_port(db.endpoints[0], db.ports[0]) == 15432);

    // A named endpoint port wins over targetPort.
    Endpoint e;
    e.ports["http"] = 7000;
    CHECK(reviews.endpoint_port(e, reviews.ports[0]) == 7000);
    CHECK(reviews.endpoint_port(e, reviews.ports[1]) == 9443);

    CHECK(reviews.find_port(9443) == &reviews.ports[1]);
    CHECK(reviews.find_port(9081) == nullptr);  // targetPort is not a service port
}

TEST_CASE("spiffe_id and in_mesh follow the WorkloadEntry's account and tlsMode label") {
    const auto& services = mesh().services();
    const Endpoint* hello1 = endpoint_at(services[0], "198.18.1.2");
    REQUIRE(hello1 != nullptr);
    CHECK(hello1->in_mesh());
    CHECK(hello1->spiffe_id("cluster.local") == "spiffe://cluster.local/ns/default/sa/hello");
    CHECK(hello1->spiffe_id("example.org") == "spiffe://example.org/ns/default/sa/hello");

    const Endpoint* vm = endpoint_at(services[1], "198.18.2.5");
    REQUIRE(vm != nullptr);
    CHECK_FALSE(vm->in_mesh());
    CHECK_FALSE(vm->spiffe_id("cluster.local").has_value());

    Endpoint plain;
    plain.labels["security.istio.io/tlsMode"] = "disabled";
    CHECK_FALSE(plain.in_mesh());
}

TEST_CASE("notes name skipped kinds and WorkloadEntries no entry selects") {
    auto notes = mesh().notes();
    auto has = [&](const std::string& n) {
        return std::find(notes.begin(), notes.end(), n) != notes.end();
    };
    CHECK(has("skipped Deployment default/hello (not a ServiceEntry/WorkloadEntry)"));
    CHECK(has("skipped Service bookinfo/reviews (not a ServiceEntry/WorkloadEntry)"));
    CHECK(has("WorkloadEntry other/stray is selected by no ServiceEntry"));
    CHECK(notes.size() == 3);
}

TEST_CASE("empty documents and files are fine; conflicts become notes") {
    CHECK(Registry::parse("", "e.yaml").services().empty());
    CHECK(Registry::parse("---\n# only a comment\n---\n", "e.yaml").services().empty());

    auto r = Registry::parse(kSe +
                                 "  hosts: [a.example.com]\n"
                                 "---\n"
                                 "apiVersion: networking.istio.io/v1\n"
                                 "kind: ServiceEntry\n"
                                 "metadata:\n"
                                 "  name: hello\n"
                                 "  namespace: other\n"  // same name, other namespace: fine
                                 "spec:\n"
                                 "  hosts: [A.example.com]\n",
                             "t.yaml");
    REQUIRE(r.services().size() == 2);
    CHECK(name_of(r.find_by_host("a.example.com")) == "default/hello");
    CHECK(r.notes() == std::vector<std::string>{
                           "host a.example.com is defined by default/hello and other/hello; "
                           "default/hello wins"});
}

TEST_CASE("real Istio samples: egress-rule-google-apis.yaml") {
    auto path = samples_dir() / "egress-rule-google-apis.yaml";
    REQUIRE_MESSAGE(std::filesystem::exists(path), path.string() << " is missing");
    Registry r = Registry::load_file(path.string());
    REQUIRE(r.services().size() == 1);
    const Service& s = r.services()[0];
    CHECK(s.name == "googleapis");
    CHECK(s.ns == "default");
    CHECK(s.hosts == std::vector<std::string>{"www.googleapis.com"});
    REQUIRE(s.ports.size() == 2);
    CHECK(s.ports[0].number == 80);
    CHECK(s.ports[0].name == "http");
    CHECK(s.ports[0].protocol == "HTTP");
    CHECK(s.ports[1].number == 443);
    CHECK(s.ports[1].name == "https");
    CHECK(s.ports[1].protocol == "HTTPS");
    CHECK(s.resolution == "DNS");
    CHECK(s.location == "MESH_INTERNAL");
    CHECK(s.endpoints.empty());
    CHECK(r.find_by_host("www.googleapis.com:443") == &s);
    CHECK(r.notes() == std::vector<std::string>{
                           "skipped VirtualService default/rewrite-port-for-googleapis (not a "
                           "ServiceEntry/WorkloadEntry)",
                           "skipped DestinationRule default/originate-tls-for-googleapis (not a "
                           "ServiceEntry/WorkloadEntry)"});
}

TEST_CASE("real Istio samples: inline endpoints, detected protocol, testdata") {
    auto dir = samples_dir();
    Registry strict = Registry::load_file((dir / "strict.yaml").string());
    REQUIRE(strict.services().size() == 1);
    const Service& s = strict.services()[0];
    REQUIRE(s.ports.size() == 4);
    CHECK(s.ports[3].protocol == "");  // protocol: "" asks for detection
    CHECK(s.find_port(7070)->protocol == "TCP");
    CHECK(strict.find_by_address(ip::make_address("1.1.1.1"), 9090) == &s);

    Registry fault = Registry::load_file((dir / "testdata" / "rule-fault-injection.yaml").string());
    REQUIRE(fault.services().size() == 1);
    const Service& f = fault.services()[0];
    CHECK(f.ns == "testns");
    REQUIRE(f.endpoints.size() == 2);
    CHECK(f.endpoint_port(f.endpoints[1], f.ports[0]) == 8081);
    CHECK(f.endpoints[1].labels.at("version") == "v2");
    CHECK(fault.find_by_address(ip::make_address("127.0.0.3"), 8081) == &f);
    CHECK(fault.find_by_host("FAULT.test.istio.io:8080", "testns") == &f);

    Registry all = Registry::load_file((dir / "testdata" / "destination-rule-all.yaml").string());
    REQUIRE(all.services().size() == 1);
    CHECK(all.find_by_host("destall.default", "testns") == &all.services()[0]);
}

TEST_CASE("real Istio samples: a host \"*\" is rejected as Istio's webhook rejects it") {
    auto path = samples_dir() / "virtualservice_destinationhosts.yaml";
    try {
        Registry::load_file(path.string());
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()) == path.string() +
                                           ":54:5: spec.hosts[0]: \"*\" is not allowed in a "
                                           "ServiceEntry");
    }
}

TEST_CASE("load_file reports an unreadable file") {
    CHECK_THROWS_WITH_AS(Registry::load_file("/nonexistent/registry.yaml"),
                         "/nonexistent/registry.yaml: cannot read: No such file or directory",
                         ConfigError);
    CHECK_THROWS_WITH_AS(Registry::load_file("/"), "/: cannot read: is a directory", ConfigError);
}

// One test per validation rule, each asserting file:line:col and the field path.

TEST_CASE("error: invalid YAML") {
    CHECK(error_of("a: [1,\nb: c\n") == "t.yaml:3:1: yaml: end of sequence flow not found");
}

TEST_CASE("error: a document that is not a mapping") {
    CHECK(error_of("- a\n- b\n") ==
          "t.yaml:1:1: document: must be a mapping (a Kubernetes resource)");
}

TEST_CASE("error: a document without kind") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nmetadata:\n  name: x\n") ==
          "t.yaml:1:1: kind: required");
    CHECK(error_of("---\nmetadata:\n  name: x\nkind:\n") == "t.yaml:4:1: kind: required");
}

TEST_CASE("error: unsupported apiVersion") {
    CHECK(error_of("apiVersion: networking.istio.io/v2\nkind: ServiceEntry\n") ==
          "t.yaml:1:13: apiVersion: \"networking.istio.io/v2\" is not networking.istio.io/v1, "
          "v1beta1 or v1alpha3");
}

TEST_CASE("error: metadata.name missing or invalid; metadata.namespace invalid") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
                   "  namespace: default\nspec: {}\n") == "t.yaml:3:1: metadata.name: required");
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
                   "  name: Hello_World\n") ==
          "t.yaml:4:9: metadata.name: \"Hello_World\" is not a DNS-1123 subdomain (lowercase "
          "letters, digits, '-', '.')");
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
                   "  name: hello\n  namespace: My.NS\n") ==
          "t.yaml:5:14: metadata.namespace: \"My.NS\" is not a DNS-1123 label (lowercase "
          "letters, digits, '-')");
}

TEST_CASE("error: spec missing") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
                   "  name: hello\n") == "t.yaml:1:1: spec: required");
}

TEST_CASE("error: unknown fields at the top, in spec, in ports, in endpoints") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspex: {}\n") ==
          "t.yaml:3:1: spex: unknown field");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  hostz: [b]\n") ==
          "t.yaml:7:3: spec.hostz: unknown field");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: 80\n    nmae: http\n") ==
          "t.yaml:9:5: spec.ports[0].nmae: unknown field");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  endpoints:\n  - address: 10.0.0.1\n"
                         "    zone: a\n") == "t.yaml:9:5: spec.endpoints[0].zone: unknown field");
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  servicAccount: hello\n") ==
          "t.yaml:7:3: spec.servicAccount: unknown field");
}

TEST_CASE("error: a duplicate field") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  hosts: [b.example.com]\n") ==
          "t.yaml:7:3: spec.hosts: duplicate field");
}

TEST_CASE("error: hosts missing, not a list, empty, or with a bad entry") {
    CHECK(error_of(kSe + "  location: MESH_EXTERNAL\n") == "t.yaml:5:1: spec.hosts: required");
    CHECK(error_of(kSe + "  hosts:\n  location: MESH_EXTERNAL\n") ==
          "t.yaml:6:3: spec.hosts: required");
    CHECK(error_of(kSe + "  hosts: a.example.com\n") == "t.yaml:6:10: spec.hosts: must be a list");
    CHECK(error_of(kSe + "  hosts: []\n") ==
          "t.yaml:6:10: spec.hosts: must list at least one host");
    CHECK(error_of(kSe + "  hosts:\n  - a.example.com\n  - \"\"\n") ==
          "t.yaml:8:5: spec.hosts[1]: must not be empty");
    CHECK(error_of(kSe + "  hosts:\n  - [a]\n") == "t.yaml:7:5: spec.hosts[0]: must be a string");
    CHECK(error_of(kSe + "  hosts: [\"*\"]\n") ==
          "t.yaml:6:11: spec.hosts[0]: \"*\" is not allowed in a ServiceEntry");
    CHECK(error_of(kSe + "  hosts: [bad_host.example.com]\n") ==
          "t.yaml:6:11: spec.hosts[0]: \"bad_host.example.com\" is not a DNS name (label "
          "\"bad_host\")");
    CHECK(error_of(kSe + "  hosts: [10.0.0.1]\n") ==
          "t.yaml:6:11: spec.hosts[0]: \"10.0.0.1\" is not a DNS name (all-digit top-level label; "
          "IP addresses go in spec.addresses)");
}

TEST_CASE("error: ports[].number out of range, not a number, or missing") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: 0\n    name: http\n") ==
          "t.yaml:8:13: spec.ports[0].number: must be 1-65535");
    CHECK(
        error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: 65536\n    name: http\n") ==
        "t.yaml:8:13: spec.ports[0].number: must be 1-65535");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: -1\n    name: http\n") ==
          "t.yaml:8:13: spec.ports[0].number: must be 1-65535");
    CHECK(
        error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: http\n    name: http\n") ==
        "t.yaml:8:13: spec.ports[0].number: must be 1-65535");
    CHECK(error_of(kSe +
                   "  hosts: [a.example.com]\n  ports:\n  - number: \"80\"\n    name: http\n") ==
          "t.yaml:8:13: spec.ports[0].number: must be 1-65535, not a quoted string");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - name: http\n") ==
          "t.yaml:8:5: spec.ports[0].number: required");
}

TEST_CASE("error: ports[].name missing or invalid") {
    CHECK(error_of(kSe +
                   "  hosts: [a.example.com]\n  ports:\n  - number: 80\n    protocol: HTTP\n") ==
          "t.yaml:8:5: spec.ports[0].name: required");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: 80\n    name: \"\"\n") ==
          "t.yaml:9:11: spec.ports[0].name: must not be empty");
    CHECK(error_of(kSe +
                   "  hosts: [a.example.com]\n  ports:\n  - number: 80\n    name: http_web\n") ==
          "t.yaml:9:11: spec.ports[0].name: \"http_web\" is not a valid port name (letters, "
          "digits, '-'; at most 63)");
}

TEST_CASE("error: ports[].protocol not one of Istio's") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: 21\n    name: ftp\n"
                         "    protocol: FTP\n") ==
          "t.yaml:10:15: spec.ports[0].protocol: \"FTP\" is not one of HTTP, HTTPS, GRPC, HTTP2, "
          "MONGO, TCP, TLS");
}

TEST_CASE("error: ports[].targetPort out of range") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - number: 80\n    name: http\n"
                         "    targetPort: 70000\n") ==
          "t.yaml:10:17: spec.ports[0].targetPort: must be 1-65535");
}

TEST_CASE("error: duplicate port number or name") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - {number: 80, name: http}\n"
                         "  - {number: 80, name: web}\n") ==
          "t.yaml:9:14: spec.ports[1].number: 80 is already used by spec.ports[0]");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - {number: 80, name: http}\n"
                         "  - {number: 81, name: http}\n") ==
          "t.yaml:9:24: spec.ports[1].name: \"http\" is already used by spec.ports[0]");
}

TEST_CASE("error: addresses must be IPs, not CIDRs") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  addresses:\n  - 198.19.0.0/16\n") ==
          "t.yaml:8:5: spec.addresses[0]: \"198.19.0.0/16\" is a CIDR range; only single IP "
          "addresses are supported");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  addresses: [198.19.0.1, vip.local]\n") ==
          "t.yaml:7:27: spec.addresses[1]: \"vip.local\" is not an IP address (addresses are "
          "VIPs)");
}

TEST_CASE("error: location and resolution values") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  location: EXTERNAL\n") ==
          "t.yaml:7:13: spec.location: \"EXTERNAL\" is not MESH_INTERNAL or MESH_EXTERNAL");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  resolution: dns\n") ==
          "t.yaml:7:15: spec.resolution: \"dns\" is not NONE, STATIC, DNS or DNS_ROUND_ROBIN");
}

TEST_CASE("error: endpoints[].address must be an IP address") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  resolution: DNS\n  endpoints:\n"
                         "  - address: db.example.com\n") ==
          "t.yaml:9:14: spec.endpoints[0].address: \"db.example.com\" is not an IP address "
          "(hostnames are not supported)");
    CHECK(error_of(kSe +
                   "  hosts: [a.example.com]\n  endpoints:\n  - address: unix:///var/db.sock\n") ==
          "t.yaml:8:14: spec.endpoints[0].address: unix domain sockets are not supported");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  endpoints:\n  - labels: {app: db}\n") ==
          "t.yaml:8:5: spec.endpoints[0].address: required");
}

TEST_CASE("error: endpoints[].ports must name a port of the entry") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  ports:\n  - {number: 5432, name: tcp}\n"
                         "  endpoints:\n  - address: 10.0.0.1\n    ports:\n      pg: 15432\n") ==
          "t.yaml:12:7: spec.endpoints[0].ports.pg: is not the name of a port in spec.ports");
}

TEST_CASE("error: workloadSelector and endpoints together") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  workloadSelector:\n    labels: {app: a}\n"
                         "  endpoints:\n  - address: 10.0.0.1\n") ==
          "t.yaml:9:3: spec.endpoints: only one of workloadSelector or endpoints can be set");
}

TEST_CASE("error: workloadSelector labels") {
    CHECK(error_of(kSe +
                   "  hosts: [a.example.com]\n  workloadSelector:\n    labels: {app: \"*\"}\n") ==
          "t.yaml:8:19: spec.workloadSelector.labels.app: wildcards are not supported in a "
          "selector");
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  workloadSelector:\n    app: a\n") ==
          "t.yaml:8:5: spec.workloadSelector.app: unknown field");
}

TEST_CASE("error: resolution NONE with endpoints") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n  resolution: NONE\n  endpoints:\n"
                         "  - address: 10.0.0.1\n") ==
          "t.yaml:8:3: spec.endpoints: resolution NONE takes no endpoints");
}

TEST_CASE("error: resolution DNS without endpoints needs host names, not wildcards") {
    CHECK(error_of(kSe + "  hosts: [a.example.com, \"*.example.com\"]\n  resolution: DNS\n") ==
          "t.yaml:6:26: spec.hosts[1]: resolution DNS without endpoints needs a host name, not a "
          "wildcard");
}

TEST_CASE("error: duplicate ServiceEntry name in one namespace") {
    CHECK(error_of(kSe + "  hosts: [a.example.com]\n---\n" + kSe + "  hosts: [b.example.com]\n") ==
          "t.yaml:11:9: metadata.name: ServiceEntry default/hello is already defined at line 4");
}

TEST_CASE("error: WorkloadEntry address missing or not an IP") {
    CHECK(error_of(kWe + "  labels: {app: hello}\n") == "t.yaml:5:1: spec.address: required");
    CHECK(error_of(kWe + "  address: vm1.corp.example.com\n") ==
          "t.yaml:6:12: spec.address: \"vm1.corp.example.com\" is not an IP address (hostnames "
          "are not supported)");
}

TEST_CASE("error: WorkloadEntry labels must be a map of strings") {
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  labels: [app, hello]\n") ==
          "t.yaml:7:11: spec.labels: must be a mapping");
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  labels:\n    app: [hello]\n") ==
          "t.yaml:8:10: spec.labels.app: must be a string");
    CHECK(
        error_of(kWe + "  address: 10.0.0.1\n  labels:\n    security.istio.io/tlsMode: {a: b}\n") ==
        "t.yaml:8:32: spec.labels[\"security.istio.io/tlsMode\"]: must be a string");
}

TEST_CASE("error: WorkloadEntry serviceAccount must be a service account name") {
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  serviceAccount: [hello]\n") ==
          "t.yaml:7:19: spec.serviceAccount: must be a string");
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  serviceAccount: Hello/SA\n") ==
          "t.yaml:7:19: spec.serviceAccount: \"Hello/SA\" is not a Kubernetes service account "
          "name (DNS-1123 subdomain)");
}

TEST_CASE("error: WorkloadEntry ports must map names to port numbers") {
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  ports:\n    http: 0\n") ==
          "t.yaml:8:11: spec.ports.http: must be 1-65535");
    CHECK(error_of(kWe + "  address: 10.0.0.1\n  ports: [8080]\n") ==
          "t.yaml:7:10: spec.ports: must be a mapping");
}

TEST_CASE("error: duplicate WorkloadEntry name in one namespace") {
    CHECK(error_of(kWe + "  address: 10.0.0.1\n---\n" + kWe + "  address: 10.0.0.2\n") ==
          "t.yaml:11:9: metadata.name: WorkloadEntry default/hello-1 is already defined at line 4");
}

TEST_CASE("skipped kinds are not validated beyond kind") {
    auto r = Registry::parse(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews, namespace: bookinfo}\n"
        "spec: {hosts: [\"*\"], whatever: 1}\n",
        "t.yaml");
    CHECK(r.services().empty());
    CHECK(r.notes() == std::vector<std::string>{"skipped VirtualService bookinfo/reviews (not a "
                                                "ServiceEntry/WorkloadEntry)"});
}

TEST_CASE("error: an alias bomb or an alias cycle, with the line counted from the file's start") {
    std::string bomb = "a: &a [x,x,x,x,x,x,x,x]\n";
    std::string prev = "a";
    for (char c = 'b'; c <= 'i'; ++c) {
        bomb += std::string(1, c) + ": &" + c + " [";
        for (int i = 0; i < 8; ++i)
            bomb += (i ? ",*" : "*") + prev;
        bomb += "]\n";
        prev = std::string(1, c);
    }
    CHECK(error_of("kind: Namespace\n---\n" + bomb) ==
          "t.yaml:8:8: yaml: alias expands to 37449 nodes, more than the limit of 10000 nodes "
          "per alias expansion");
    CHECK(error_of("x: &x [*x]\n") ==
          "t.yaml:1:8: yaml: alias refers to a node that contains it (a cycle)");
}
