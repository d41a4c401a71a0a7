// Translation of AuthorizationPolicy: which policies a workload gets (selector, namespace, root
// namespace), the fields carried over, serviceAccounts as principals, notes for what remora
// leaves out; and, through the proxy's evaluator, the decisions Istio documents for the samples.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "control/translate/translate.h"
#include "proxy/authz/authz.h"

using namespace remora::control;
namespace snap = remora::proxy::snapshot;
namespace authz = remora::proxy::authz;

namespace {

std::filesystem::path samples_dir() {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir, "REMORA_ISTIO_SAMPLES must point at shared/istio-samples");
    return dir;
}

model::Config load_sample(const std::string& file) {
    model::Config c;
    model::load_path(c, samples_dir() / file);
    REQUIRE_MESSAGE(!c.has_errors(), file);
    return c;
}

snap::Snapshot for_workload(const model::Config& c, const std::string& ns, model::Labels labels = {}) {
    translate::WorkloadRef w;
    w.ns = ns;
    w.labels = std::move(labels);
    return translate::translate(c, w);
}

std::vector<std::string> names(const snap::Snapshot& s) {
    std::vector<std::string> out;
    for (const auto& p : s.inbound.authz) out.push_back(p.action + " " + p.name);
    return out;
}

bool has_note(const snap::Snapshot& s, const std::string& part) {
    return std::any_of(s.notes.begin(), s.notes.end(), [&](const std::string& n) { return n.find(part) != std::string::npos; });
}

struct Req final : authz::Request {
    std::map<std::string, std::string> headers;
    explicit Req(std::optional<std::string_view> peer, std::string_view m = "GET", std::string_view p = "/") {
        principal = peer;
        method = m;
        path = p;
        host = "httpbin:8000";
        source_ip = boost::asio::ip::make_address("198.18.0.5");
        destination_port = 8000;
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        auto it = headers.find(std::string(name));
        if (it == headers.end()) return std::nullopt;
        return std::string_view(it->second);
    }
};

bool allowed(const snap::Snapshot& s, const authz::Request& r) {
    authz::Engine e(s.inbound.authz);
    return e.evaluate(r).decision == authz::Decision::allow;
}

const char* kRootPolicies = R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny-debug, namespace: remora-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/debug*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: v1-only-get, namespace: remora-system}
spec:
  selector: {matchLabels: {version: v1}}
  rules:
  - to:
    - operation: {methods: ["GET"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: other}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{}]
)";

}  // namespace

TEST_CASE("deny-and-allow-in.yaml: DENY by principal first, then ALLOW by principal") {
    snap::Snapshot s = for_workload(load_sample("deny-and-allow-in.yaml"), "foo");
    CHECK(names(s) == std::vector<std::string>{"DENY httpbin-deny.foo", "ALLOW httpbin-allow.foo"});
    REQUIRE(s.inbound.authz[0].rules.size() == 1);
    CHECK(s.inbound.authz[0].rules[0].from.at(0).principals == std::vector<std::string>{"deny"});
    CHECK(allowed(s, Req("allow")));
    CHECK_FALSE(allowed(s, Req("deny")));
    CHECK_FALSE(allowed(s, Req("someone-else")));
    CHECK_FALSE(allowed(s, Req(std::nullopt)));
    // Another namespace's workloads are not affected.
    CHECK(for_workload(load_sample("deny-and-allow-in.yaml"), "bar").inbound.authz.empty());
}

TEST_CASE("security-v1-AuthorizationPolicy.yaml: the selector picks httpbin v1 in its namespace only") {
    model::Config c = load_sample("security-v1-AuthorizationPolicy.yaml");
    snap::Snapshot v1 = for_workload(c, "default", {{"app", "httpbin"}, {"version", "v1"}});
    REQUIRE(v1.inbound.authz.size() == 1);
    const snap::AuthzRule& r = v1.inbound.authz[0].rules.at(0);
    CHECK(r.from.size() == 2);
    CHECK(r.to.size() == 2);
    CHECK(r.to[0].methods == std::vector<std::string>{"GET"});
    CHECK(r.to[0].paths == std::vector<std::string>{"/info*"});
    CHECK(r.when.at(0).key == "request.auth.claims[iss]");
    // No JWT in remora: the iss claim is never present, so (as in Istio without a token) the
    // ALLOW rule never matches and the workload denies everything.
    CHECK(has_note(v1, "need RequestAuthentication (JWT)"));
    CHECK_FALSE(allowed(v1, Req("cluster.local/ns/default/sa/sleep", "GET", "/info")));
    CHECK(for_workload(c, "default", {{"app", "httpbin"}, {"version", "v2"}}).inbound.authz.empty());
    CHECK(for_workload(c, "test", {{"app", "httpbin"}, {"version", "v1"}}).inbound.authz.empty());
}

TEST_CASE("authz-valid.yaml: every field carried over; serviceAccounts become principals") {
    model::Config c = load_sample("authz-valid.yaml");
    snap::Snapshot s = for_workload(c, "default", {{"app", "httpbin"}});
    CHECK(names(s) == std::vector<std::string>{"ALLOW full.default", "ALLOW service-account-and-namespace-principal-split.default"});
    const snap::AuthzSource& src = s.inbound.authz[0].rules.at(0).from.at(0);
    CHECK(src.principals.size() == 4);
    CHECK(src.not_request_principals.size() == 4);
    CHECK(src.ip_blocks == std::vector<std::string>{"1.2.3.4", "5.6.0.0/16"});
    CHECK(src.not_remote_ip_blocks == std::vector<std::string>{"9.0.0.1", "9.2.0.0/16"});
    CHECK(src.trust_domains.size() == 4);
    const snap::AuthzOperation& op = s.inbound.authz[0].rules[0].to.at(0);
    CHECK(op.ports == std::vector<uint32_t>{80, 90});
    CHECK(op.not_ports == std::vector<uint32_t>{8000, 9000});
    CHECK(op.paths.at(4) == "/path/template/{*}");
    CHECK(s.inbound.authz[0].rules[0].when.size() == 15);
    CHECK(has_note(s, "connection.sni and experimental.*"));
    // Every value compiles in the proxy.
    CHECK_NOTHROW(authz::Engine(s.inbound.authz));

    const auto& from = s.inbound.authz[1].rules.at(0).from;
    REQUIRE(from.size() == 3);
    CHECK(from[0].principals ==
          std::vector<std::string>{"cluster.local/ns/baz/sa/sa", "cluster.local/ns/default/sa/sa"});
    CHECK(allowed(s, Req("cluster.local/ns/baz/sa/sa")));
    CHECK(allowed(s, Req("cluster.local/ns/bar/sa/anything")));  // namespaces: ["bar"]
    CHECK(allowed(s, Req("bar")));
    CHECK_FALSE(allowed(s, Req("cluster.local/ns/baz/sa/other")));
}

TEST_CASE("the authorization_policy.proto examples: allow-nothing, allow-all, AUDIT, dry-run, CUSTOM") {
    model::Config c = load_sample("api-examples/authorization_policy.examples.yaml");
    snap::Snapshot foo = for_workload(c, "foo", {{"app", "httpbin"}});
    // In foo: the httpbin policies (the last of the same name wins), allow-nothing and allow-all.
    bool allow_nothing = false, allow_all = false;
    for (const auto& p : foo.inbound.authz) {
        if (p.name == "allow-nothing.foo") allow_nothing = p.rules.empty() && p.action == "ALLOW";
        if (p.name == "allow-all.foo") allow_all = p.rules.size() == 1 && p.rules[0].from.empty() && p.rules[0].to.empty();
    }
    CHECK(allow_nothing);
    CHECK(allow_all);
    // allow-all's rule {} lets through what the DENY on POST :8080 does not catch.
    CHECK(allowed(foo, Req("cluster.local/ns/x/sa/y", "GET", "/anything")));

    snap::Snapshot bar = for_workload(c, "bar", {{"app", "httpbin"}});
    CHECK(names(bar) == std::vector<std::string>{"ALLOW allow-nothing.bar"});
    CHECK_FALSE(allowed(bar, Req("cluster.local/ns/bar/sa/sleep")));
    CHECK(for_workload(c, "bar", {{"app", "other"}}).inbound.authz.empty());

    snap::Snapshot ns1 = for_workload(c, "ns1", {{"app", "myapi"}});
    CHECK(names(ns1) == std::vector<std::string>{"AUDIT anyname.ns1"});
    CHECK(allowed(ns1, Req(std::nullopt, "GET", "/user/profile/7")));  // AUDIT never denies

    // dry-run: not enforced, said so.
    snap::Snapshot dflt = for_workload(c, "default", {{"app", "httpbin"}});
    CHECK(dflt.inbound.authz.empty());
    CHECK(has_note(dflt, "dry-run-example: istio.io/dry-run: not enforced"));
}

TEST_CASE("root namespace policies apply mesh-wide; CUSTOM is left out with a note") {
    model::Config c = model::load_yaml(kRootPolicies, "root.yaml");
    REQUIRE_FALSE(c.has_errors());
    snap::Snapshot v1 = for_workload(c, "default", {{"app", "reviews"}, {"version", "v1"}});
    CHECK(names(v1) == std::vector<std::string>{"DENY mesh-deny-debug.remora-system", "ALLOW v1-only-get.remora-system"});
    CHECK(has_note(v1, "AuthorizationPolicy default/ext: action CUSTOM is not supported by remora"));
    CHECK(allowed(v1, Req(std::nullopt, "GET", "/reviews/1")));
    CHECK_FALSE(allowed(v1, Req(std::nullopt, "POST", "/reviews/1")));
    CHECK_FALSE(allowed(v1, Req(std::nullopt, "GET", "/debug/vars")));

    snap::Snapshot v2 = for_workload(c, "prod", {{"app", "reviews"}, {"version", "v2"}});
    CHECK(names(v2) == std::vector<std::string>{"DENY mesh-deny-debug.remora-system"});
    CHECK(allowed(v2, Req(std::nullopt, "POST", "/reviews/1")));

    translate::Options o;
    o.root_namespace = "other";  // MeshConfig rootNamespace decides which namespace is mesh-wide
    translate::WorkloadRef w;
    w.ns = "prod";
    CHECK(names(translate::translate(c, w, o)) == std::vector<std::string>{"ALLOW elsewhere.other"});
}

TEST_CASE("auto mTLS follows the server's PeerAuthentication: plaintext to a DISABLE port") {
    const std::string service = R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  ports: [{number: 8000, name: http, protocol: HTTP}, {number: 9090, name: http-alt, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-1, namespace: foo}
spec:
  address: 198.18.0.9
  labels: {app: httpbin, security.istio.io/tlsMode: istio}
  serviceAccount: httpbin
)";
    const std::string port_disable = R"(
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9090: {mode: DISABLE}
)";
    auto mtls_to = [](const snap::Snapshot& s, uint32_t port) {
        for (const auto& c : s.clusters) {
            if (c.name == "outbound|" + std::to_string(port) + "||httpbin.foo.svc.cluster.local") {
                REQUIRE(c.endpoints.size() == 1);
                return c.endpoints[0].mtls;
            }
        }
        FAIL("no cluster for port " << port);
        return false;
    };
    snap::Snapshot none = for_workload(model::load_yaml(service, "s.yaml"), "bar");
    CHECK(mtls_to(none, 8000));
    CHECK(mtls_to(none, 9090));

    snap::Snapshot ports = for_workload(model::load_yaml(service + port_disable, "s.yaml"), "bar");
    CHECK(mtls_to(ports, 8000));
    CHECK_FALSE(mtls_to(ports, 9090));
    CHECK(ports.clusters.at(1).endpoints.at(0).identity.empty());

    snap::Snapshot ns = for_workload(model::load_yaml(service + R"(
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {mtls: {mode: DISABLE}}
)", "s.yaml"), "bar");
    CHECK_FALSE(mtls_to(ns, 8000));
    CHECK_FALSE(mtls_to(ns, 9090));

    // A DestinationRule that asks for ISTIO_MUTUAL is obeyed: auto mTLS no longer decides.
    snap::Snapshot dr = for_workload(model::load_yaml(service + port_disable + R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: foo}
spec:
  host: httpbin.foo.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
)", "s.yaml"), "bar");
    CHECK(mtls_to(dr, 9090));
}
