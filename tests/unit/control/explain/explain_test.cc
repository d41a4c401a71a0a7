// remoractl explain's core: requests parsed as curl takes them, verdicts and shares for the task
// recipes (routing by header, weights, no endpoint, deny policy, faults, mTLS mismatch), outlier
// state from the proxy's admin, and every response flag the proxy emits documented.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "control/explain/explain.h"
#include "proxy/request/error.h"

using namespace remora::control;
namespace json = boost::json;

namespace {

// A file under the directory the environment variable `dir_var` names (set by meson).
std::string read_text(const char* dir_var, const std::string& path) {
    const char* dir = std::getenv(dir_var);
    REQUIRE(dir);
    std::ifstream f(std::string(dir) + "/" + path);
    REQUIRE(f.good());
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string example_yaml() { return read_text("REMORA_EXAMPLES", "explain/mesh.yaml"); }

std::shared_ptr<const model::Config> config_of(const std::string& extra = "") {
    auto c = std::make_shared<model::Config>();
    model::load_yaml(*c, example_yaml(), "mesh.yaml");
    if (!extra.empty()) model::load_yaml(*c, extra, "extra.yaml");
    for (const auto* e : c->errors()) FAIL(e->str());
    return c;
}

json::object run(const std::shared_ptr<const model::Config>& config, const std::string& from, const std::string& url,
                 const std::string& method = "GET", const std::vector<std::string>& headers = {},
                 std::function<void(explain::Inputs&)> adjust = {}) {
    auto client = explain::find_workload(*config, from, "");
    REQUIRE(client);
    explain::Inputs in = explain::offline_inputs(config, *client, {}, "test");
    if (adjust) adjust(in);
    return explain::explain(in, explain::parse_request(url, method, headers));
}

const json::object& verdict(const json::object& r) { return r.at("verdict").as_object(); }
std::string summary(const json::object& r) { return std::string(verdict(r).at("summary").as_string()); }
const json::array& outcomes(const json::object& r) { return verdict(r).at("outcomes").as_array(); }

double share_of(const json::object& r, const std::string& where_part) {
    double s = 0;
    for (const auto& o : outcomes(r)) {
        if (std::string(o.at("where").as_string()).find(where_part) != std::string::npos) s += o.at("share").as_double();
    }
    return s;
}

}  // namespace

TEST_CASE("requests are read as curl sends them") {
    auto r = explain::parse_request("http://Reviews:9080/a/b?x=1", "POST", {"End-User:  jason ", "x-b: 2"});
    CHECK(r.host == "reviews");
    CHECK(r.port == 9080);
    CHECK(r.authority() == "reviews:9080");
    CHECK(r.path == "/a/b?x=1");
    CHECK(r.method == "POST");
    REQUIRE(r.headers.size() == 2);
    CHECK(r.headers[0] == std::make_pair(std::string("end-user"), std::string("jason")));
    auto plain = explain::parse_request("reviews", "", {});
    CHECK(plain.authority() == "reviews");  // port 80 is not written
    CHECK(plain.path == "/");
    CHECK(plain.method == "GET");
    auto host = explain::parse_request("http://198.19.1.4:9080/", "GET", {"Host: ratings:9080"});
    CHECK(host.authority() == "ratings:9080");
    CHECK_THROWS_AS(explain::parse_request("ftp://x/", "GET", {}), std::invalid_argument);
    CHECK_THROWS_AS(explain::parse_request("http://x:99999/", "GET", {}), std::invalid_argument);
    CHECK_THROWS_AS(explain::parse_request("http://x/", "GET", {"no colon"}), std::invalid_argument);
}

TEST_CASE("request routing: jason's rule matches; others miss it, with the reason, and take the weights") {
    auto config = config_of();
    auto jason = run(config, "productpage", "http://reviews:9080/", "GET", {"end-user: jason"});
    CHECK(explain::served(jason));
    CHECK(share_of(jason, "reviews-v2") == doctest::Approx(1.0));
    const auto& rules = jason.at("routing").as_object().at("rules").as_array();
    REQUIRE(rules.size() == 1);
    CHECK(rules[0].at("matched").as_bool());

    auto alice = run(config, "productpage", "http://reviews:9080/", "GET", {"end-user: alice"});
    CHECK(explain::served(alice));
    const auto& tried = alice.at("routing").as_object().at("rules").as_array();
    REQUIRE(tried.size() == 2);
    CHECK_FALSE(tried[0].at("matched").as_bool());
    CHECK(std::string(tried[0].at("whyNot").as_array()[0].as_string()) ==
          "header end-user: \"alice\" is not exact \"jason\"");
    CHECK(tried[1].at("matched").as_bool());
    CHECK(share_of(alice, "reviews-v1") == doctest::Approx(0.9));
    CHECK(share_of(alice, "reviews-v3") == doctest::Approx(0.1));
    auto none = run(config, "productpage", "http://reviews:9080/");
    CHECK(std::string(none.at("routing").as_object().at("rules").as_array()[0].at("whyNot").as_array()[0].as_string()) ==
          "header end-user: absent (the rule wants exact \"jason\")");
}

TEST_CASE("AuthorizationPolicy: the deny policy and rule first, exit status refused") {
    auto config = config_of();
    auto admin = run(config, "reviews-v2", "http://ratings:9080/admin/users", "DELETE");
    CHECK_FALSE(explain::served(admin));
    CHECK(summary(admin) == "403 RBAC by default/deny-admin rule 0");
    CHECK(explain::render_text(admin).rfind("403 RBAC by default/deny-admin rule 0\n", 0) == 0);
    auto ok = run(config, "reviews-v2", "http://ratings:9080/ratings/0");
    CHECK(explain::served(ok));
    // The server's mTLS: STRICT from the mesh-wide PeerAuthentication; the client sends mTLS.
    const auto& ep = ok.at("destinations").as_array()[0].at("endpoints").as_array()[0].as_object();
    CHECK(ep.at("mtls").as_bool());
    CHECK(ep.at("server").at("mtlsMode").as_string() == "STRICT");
    CHECK(ep.at("server").at("peerAuthentications").as_array()[0].as_string() == "remora-system/default");
}

TEST_CASE("ALLOW policies that do not match deny by default; principals come from the client's identity") {
    auto config = config_of(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-only, namespace: default}
spec:
  selector:
    matchLabels: {app: ratings}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-reviews"]
)");
    CHECK(explain::served(run(config, "reviews-v1", "http://ratings:9080/")));
    auto other = run(config, "productpage", "http://ratings:9080/");
    CHECK_FALSE(explain::served(other));
    CHECK(summary(other) == "403 RBAC by default (ALLOW policies apply and none matched)");
}

TEST_CASE("no endpoint is 503 UH; an unknown host passes through, or is refused under REGISTRY_ONLY") {
    auto config = config_of();
    auto details = run(config, "productpage", "http://details:9080/");
    CHECK_FALSE(explain::served(details));
    CHECK(summary(details).rfind("503 UH no healthy upstream", 0) == 0);
    auto outside = run(config, "productpage", "http://example.com/");
    CHECK(explain::served(outside));
    auto blocked = run(config, "productpage", "http://example.com/", "GET", {},
                       [](explain::Inputs& in) { in.registry_only = true; });
    CHECK_FALSE(explain::served(blocked));
    CHECK(summary(blocked).rfind("502 ", 0) == 0);
    CHECK(summary(blocked).find("(the mesh's)") != std::string::npos);
}

TEST_CASE("a Sidecar's outboundTrafficPolicy replaces the mesh's, either way") {
    const char* sidecar = R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: %s}
)";
    char buf[256];
    std::snprintf(buf, sizeof buf, sidecar, "REGISTRY_ONLY");
    auto strict = config_of(buf);
    auto blocked = run(strict, "productpage", "http://example.com/");  // the mesh: ALLOW_ANY
    CHECK_FALSE(explain::served(blocked));
    CHECK(summary(blocked).rfind("502 ", 0) == 0);
    CHECK(summary(blocked).find("(the Sidecar's)") != std::string::npos);
    std::snprintf(buf, sizeof buf, sidecar, "ALLOW_ANY");
    auto open = run(config_of(buf), "productpage", "http://example.com/", "GET", {},
                    [](explain::Inputs& in) { in.registry_only = true; });  // the mesh: REGISTRY_ONLY
    CHECK(explain::served(open));
}

TEST_CASE("a fault abort's share is refused with FI; a missing subset is UH; a rule with no match is NR") {
    auto config = config_of(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match:
    - uri: {prefix: /only}
    fault:
      abort: {httpStatus: 500, percentage: {value: 25}}
    route:
    - destination: {host: ratings}
  - match:
    - uri: {prefix: /v9}
    route:
    - destination: {host: ratings, subset: v9}
)");
    auto abort = run(config, "reviews-v1", "http://ratings:9080/only/x");
    CHECK_FALSE(explain::served(abort));
    REQUIRE(outcomes(abort).size() == 2);
    CHECK(outcomes(abort)[0].at("status").as_uint64() == 500);
    CHECK(outcomes(abort)[0].at("flag").as_string() == "FI");
    CHECK(outcomes(abort)[0].at("share").as_double() == doctest::Approx(0.25));
    CHECK(outcomes(abort)[1].at("share").as_double() == doctest::Approx(0.75));
    auto subset = run(config, "reviews-v1", "http://ratings:9080/v9");
    CHECK(summary(subset).rfind("503 UH cluster outbound|9080|v9|ratings", 0) == 0);
    auto nr = run(config, "reviews-v1", "http://ratings:9080/elsewhere");
    CHECK(summary(nr).rfind("404 NR", 0) == 0);
    const auto& tried = nr.at("routing").as_object().at("rules").as_array();
    CHECK(tried.size() == 2);
    CHECK(std::string(tried[0].at("whyNot").as_array()[0].as_string()) == "uri: \"/elsewhere\" is not prefix \"/only\"");
}

TEST_CASE("a gRPC fault abort is refused though its HTTP status is 200") {
    auto config = config_of(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    route:
    - destination: {host: ratings}
)");
    auto r = run(config, "reviews-v1", "http://ratings:9080/ratings.Ratings/Get", "POST");
    CHECK_FALSE(explain::served(r));
    CHECK(summary(r).find("grpc-status 14") != std::string::npos);
}

TEST_CASE("mTLS both sides: plaintext to a STRICT server is cut (503 UC)") {
    auto config = config_of(R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-plain, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    tls: {mode: DISABLE}
)");
    auto r = run(config, "reviews-v1", "http://ratings:9080/");
    CHECK_FALSE(explain::served(r));
    CHECK(outcomes(r)[0].at("status").as_uint64() == 503);
    CHECK(outcomes(r)[0].at("flag").as_string() == "UC");
}

TEST_CASE("outlier state from the proxy's admin: ejected endpoints are skipped, all ejected is UH") {
    auto ejected = explain::parse_admin_clusters(
        "outbound|9080||ratings.default.svc.cluster.local::default_priority::max_connections::1\n"
        "outbound|9080||ratings.default.svc.cluster.local::198.18.0.6:9080::health_flags::/failed_outlier_check\n"
        "outbound|9080|v1|reviews.default.svc.cluster.local::198.18.0.3:9080::health_flags::healthy\n");
    REQUIRE(ejected.size() == 2);
    CHECK(ejected.at("outbound|9080||ratings.default.svc.cluster.local::198.18.0.6:9080"));
    CHECK_FALSE(ejected.at("outbound|9080|v1|reviews.default.svc.cluster.local::198.18.0.3:9080"));
    auto config = config_of();
    auto r = run(config, "reviews-v1", "http://ratings:9080/", "GET", {},
                 [&](explain::Inputs& in) { in.ejected = ejected; });
    CHECK_FALSE(explain::served(r));
    CHECK(summary(r).find("every endpoint of outbound|9080||ratings.default.svc.cluster.local is ejected") != std::string::npos);
}

TEST_CASE("every response flag the proxy emits is explained, with causes and checks") {
    using remora::proxy::ProxyError;
    for (ProxyError e : {ProxyError::no_route, ProxyError::no_healthy_upstream, ProxyError::connect_failure,
                         ProxyError::upstream_reset, ProxyError::refused_stream, ProxyError::bad_request,
                         ProxyError::headers_too_large, ProxyError::upstream_timeout, ProxyError::overflow,
                         ProxyError::rbac_denied, ProxyError::downstream_disconnect, ProxyError::upstream_mid_body,
                         ProxyError::stream_idle_timeout, ProxyError::response_idle_timeout}) {
        std::string flag(remora::proxy::describe(e).flag);
        CAPTURE(flag);
        const explain::FlagDoc* doc = explain::find_flag(flag);
        REQUIRE(doc);
        CHECK_FALSE(doc->causes.empty());
        CHECK_FALSE(doc->checks.empty());
    }
    for (const char* f : {"URX", "DI", "FI", "DC", "uf"}) CHECK(explain::find_flag(f));
    CHECK_FALSE(explain::find_flag("ZZ"));
    CHECK(explain::render_flag(*explain::find_flag("UO")).rfind("UO (503): ", 0) == 0);
}

TEST_CASE("docs/response-flags.md says what explain --flag says, for every flag") {
    const std::string doc = read_text("REMORA_DOCS", "response-flags.md");
    for (const explain::FlagDoc& d : explain::response_flags()) {
        CAPTURE(d.flag);
        CHECK(doc.find("\n## " + d.flag + "\n") != std::string::npos);
        CHECK(doc.find(d.meaning) != std::string::npos);
        for (const auto& c : d.causes) CHECK(doc.find(c) != std::string::npos);
    }
}
