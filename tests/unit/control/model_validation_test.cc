// Broken variants of Istio resources: one case per validation rule, each checking the whole
// message (file:line:col, resource, field path, text); plus the "not supported by remora" warnings.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "control/model/model.h"
#include "control/model/yaml_read.h"

using namespace remora::control::model;

namespace {

std::vector<std::string> messages(const std::string& yaml, Severity severity) {
    Config c = load_yaml(yaml, "t.yaml");
    std::vector<std::string> out;
    for (const auto& d : c.diagnostics) {
        if (d.severity == severity) out.push_back(d.str());
    }
    return out;
}

// The only error of a document ("" when valid, "<n errors>" plus the first when several).
std::string error_of(const std::string& yaml) {
    auto errors = messages(yaml, Severity::Error);
    if (errors.empty()) return "";
    if (errors.size() == 1) return errors[0];
    std::string all = std::to_string(errors.size()) + " errors:";
    for (const auto& e : errors)
        all += "\n  " + e;
    return all;
}

std::vector<std::string> warnings_of(const std::string& yaml) {
    return messages(yaml, Severity::Warning);
}

// A VirtualService whose spec.http list starts on line 8.
std::string vs(const std::string& http) {
    return "apiVersion: networking.istio.io/v1\n"
           "kind: VirtualService\n"
           "metadata:\n"
           "  name: reviews\n"
           "spec:\n"
           "  hosts: [reviews]\n"
           "  http:\n" +
           http;
}

// A DestinationRule whose spec continues on line 7.
std::string dr(const std::string& rest) {
    return "apiVersion: networking.istio.io/v1beta1\n"
           "kind: DestinationRule\n"
           "metadata:\n"
           "  name: reviews\n"
           "spec:\n"
           "  host: reviews\n" +
           rest;
}

// A ServiceEntry whose spec continues on line 7.
std::string se(const std::string& rest) {
    return "apiVersion: networking.istio.io/v1alpha3\n"
           "kind: ServiceEntry\n"
           "metadata:\n"
           "  name: ext\n"
           "spec:\n"
           "  hosts: [api.example.com]\n" +
           rest;
}

// An AuthorizationPolicy whose spec continues on line 6.
std::string ap(const std::string& spec) {
    return "apiVersion: security.istio.io/v1\n"
           "kind: AuthorizationPolicy\n"
           "metadata:\n"
           "  name: policy\n"
           "spec:\n" +
           spec;
}

const std::string kRoute =
    "  - route:\n"
    "    - destination:\n"
    "        host: reviews\n";

}  // namespace

TEST_CASE("valid: a plain VirtualService has no diagnostics but none") {
    CHECK(error_of(vs(kRoute)) == "");
    CHECK(warnings_of(vs(kRoute)).empty());
}

TEST_CASE("VirtualService: unknown retry condition") {
    CHECK(error_of(vs(kRoute + "    retries:\n      attempts: 3\n      retryOn: 5xx,5xxx\n")) ==
          "t.yaml:13:16: VirtualService default/reviews: spec.http[0].retries.retryOn: unknown "
          "retry condition \"5xxx\"");
}

TEST_CASE("VirtualService: retry vocabulary and numeric codes are accepted") {
    CHECK(error_of(vs(kRoute +
                      "    retries:\n      attempts: 3\n      retryOn: "
                      "gateway-error,reset,connect-failure,envoy-ratelimited,refused-stream,"
                      "retriable-4xx,retriable-status-codes,retriable-headers,cancelled,"
                      "deadline-exceeded,internal,resource-exhausted,unavailable,503\n")) == "");
}

TEST_CASE("VirtualService: attempts 0 with perTryTimeout") {
    CHECK(error_of(vs(kRoute + "    retries:\n      attempts: 0\n      perTryTimeout: 2s\n")) ==
          "t.yaml:12:17: VirtualService default/reviews: spec.http[0].retries.attempts: http "
          "retry policy configured when attempts are set to 0 (disabled)");
}

TEST_CASE("VirtualService: negative attempts") {
    CHECK(error_of(vs(kRoute + "    retries:\n      attempts: -1\n")) ==
          "t.yaml:12:17: VirtualService default/reviews: spec.http[0].retries.attempts: attempts "
          "cannot be negative");
}

TEST_CASE("VirtualService: durations below 1ms") {
    CHECK(error_of(vs(kRoute + "    retries:\n      attempts: 2\n      perTryTimeout: 500us\n")) ==
          "t.yaml:13:22: VirtualService default/reviews: spec.http[0].retries.perTryTimeout: "
          "duration must be greater than 1ms (is \"500us\")");
    CHECK(error_of(vs(kRoute + "    timeout: 0s\n")) ==
          "t.yaml:11:14: VirtualService default/reviews: spec.http[0].timeout: duration must be "
          "greater than 1ms (is \"0s\")");
}

TEST_CASE("VirtualService: malformed duration") {
    CHECK(error_of(vs(kRoute + "    timeout: 1.5ss\n")) ==
          "t.yaml:11:14: VirtualService default/reviews: spec.http[0].timeout: \"1.5ss\" is not a "
          "duration (e.g. \"10ms\", \"1.5s\", \"1m\", \"1h\")");
}

TEST_CASE("VirtualService: durations are kept to the millisecond") {
    CHECK(error_of(vs(kRoute + "    timeout: 1.0005s\n")) ==
          "t.yaml:11:14: VirtualService default/reviews: spec.http[0].timeout: only durations to "
          "ms precision are supported (is \"1.0005s\")");
    Config c = load_yaml(vs(kRoute + "    timeout: 1m30s\n"), "t.yaml");
    REQUIRE(c.virtual_services.size() == 1);
    CHECK(c.virtual_services[0].http[0].timeout == std::chrono::seconds(90));
}

TEST_CASE("VirtualService: negative weight") {
    CHECK(
        error_of(vs("  - route:\n    - destination:\n        host: reviews\n      weight: -5\n")) ==
        "t.yaml:11:15: VirtualService default/reviews: spec.http[0].route[0].weight: weight -5 "
        "< 0");
}

TEST_CASE("VirtualService: zero total weight among several destinations") {
    CHECK(error_of(vs("  - route:\n"
                      "    - destination: {host: reviews, subset: v1}\n"
                      "      weight: 0\n"
                      "    - destination: {host: reviews, subset: v2}\n")) ==
          "t.yaml:9:5: VirtualService default/reviews: spec.http[0].route: total destination "
          "weight = 0");
}

TEST_CASE("VirtualService: weights are relative and need not sum to 100") {
    Config c = load_yaml(vs("  - route:\n"
                            "    - destination: {host: reviews, subset: v1}\n"
                            "      weight: 1\n"
                            "    - destination: {host: reviews, subset: v2}\n"
                            "      weight: 3\n"),
                         "t.yaml");
    CHECK(!c.has_errors());
    CHECK(c.virtual_services[0].http[0].route[1].weight == 3);
}

TEST_CASE("VirtualService: header match keys are lowercase") {
    CHECK(error_of(vs("  - match:\n"
                      "    - headers:\n"
                      "        End-User:\n"
                      "          exact: jason\n"
                      "    route:\n"
                      "    - destination:\n"
                      "        host: reviews\n")) ==
          "t.yaml:10:9: VirtualService default/reviews: spec.http[0].match[0].headers.End-User: "
          "header match key \"End-User\" must be lowercase");
}

TEST_CASE("VirtualService: JWT claim routes only at gateways, as Istio validates them") {
    const std::string match = "  - match:\n"
                              "    - headers:\n"
                              "        \"@request.auth.claims.groups\":\n"
                              "          exact: admin\n"
                              "    route:\n"
                              "    - destination:\n"
                              "        host: reviews\n";
    // Bound to the mesh (no gateways): there are no claims to route on.
    CHECK(error_of(vs(match)) ==
          "t.yaml:10:9: VirtualService default/reviews: "
          "spec.http[0].match[0].headers[\"@request.auth.claims.groups\"]: JWT claim based "
          "routing (key: @request.auth.claims.groups) is only supported for gateway, found no "
          "gateways: []");
    // Bound to a gateway only: valid (the [a][b] form too); with mesh among them: not.
    auto with_gateways = [&](const std::string& gateways, const std::string& key) {
        std::string doc = vs(match);
        doc.replace(doc.find("  http:\n"), 0, "  gateways: " + gateways + "\n");
        doc.replace(doc.find("@request.auth.claims.groups"), 27, key);
        return error_of(doc);
    };
    CHECK(with_gateways("[edge/gw]", "@request.auth.claims.groups") == "");
    CHECK(with_gateways("[edge/gw]", "@request.auth.claims[groups][0]") == "");
    CHECK(with_gateways("[edge/gw, mesh]", "@request.auth.claims.groups")
              .ends_with("found no gateways: [edge/gw mesh]"));
}

TEST_CASE("VirtualService: regexes compile with RE2") {
    std::string e =
        error_of(vs("  - match:\n"
                    "    - uri:\n"
                    "        regex: \"/api/(v1\"\n"
                    "    route:\n"
                    "    - destination:\n"
                    "        host: reviews\n"));
    CHECK(
        e.starts_with("t.yaml:10:16: VirtualService default/reviews: spec.http[0].match[0].uri."
                      "regex: invalid regex \"/api/(v1\": missing ): /api/(v1"));
    // Perl look-ahead is not RE2.
    CHECK(error_of(vs("  - match:\n"
                      "    - headers:\n"
                      "        x-id:\n"
                      "          regex: \"(?=a)b\"\n"
                      "    route:\n"
                      "    - destination:\n"
                      "        host: reviews\n")) != "");
}

TEST_CASE("VirtualService: unknown fields name their path") {
    CHECK(error_of(vs(kRoute + "    retries:\n      attemps: 3\n")) ==
          "t.yaml:12:7: VirtualService default/reviews: spec.http[0].retries.attemps: unknown "
          "field");
}

TEST_CASE("VirtualService: fault percentage out of range") {
    CHECK(error_of(vs(kRoute +
                      "    fault:\n      delay:\n        fixedDelay: 5s\n        percentage:\n"
                      "          value: 150\n")) ==
          "t.yaml:15:18: VirtualService default/reviews: spec.http[0].fault.delay.percentage."
          "value: percentage 150 is neither 0.0, nor in range [0.0001, 100.0]");
}

TEST_CASE("VirtualService: fault needs a delay or an abort") {
    CHECK(error_of(vs(kRoute + "    fault: {}\n")) ==
          "t.yaml:11:12: VirtualService default/reviews: spec.http[0].fault: HTTP fault injection "
          "must have an abort and/or a delay");
}

TEST_CASE("VirtualService: abort status out of range") {
    CHECK(error_of(vs(kRoute + "    fault:\n      abort:\n        httpStatus: 700\n")) ==
          "t.yaml:13:21: VirtualService default/reviews: spec.http[0].fault.abort.httpStatus: HTTP "
          "status 700 is not in range 200-599");
}

TEST_CASE("VirtualService: route and redirect together") {
    CHECK(error_of(vs(kRoute + "    redirect:\n      uri: /v2\n")) ==
          "t.yaml:8:5: VirtualService default/reviews: spec.http[0]: HTTP route cannot contain "
          "both route and redirect");
}

TEST_CASE("VirtualService: a rule needs a route, redirect or direct response") {
    CHECK(error_of(vs("  - timeout: 1s\n")) ==
          "t.yaml:8:5: VirtualService default/reviews: spec.http[0]: HTTP route, redirect or "
          "direct_response is required");
}

TEST_CASE("VirtualService: wildcard * host on the mesh gateway") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                   "  name: all\nspec:\n  hosts:\n  - \"*\"\n  http:\n" +
                   kRoute) ==
          "t.yaml:7:5: VirtualService default/all: spec.hosts[0]: wildcard host * is not allowed "
          "for virtual services bound to the mesh gateway");
}

TEST_CASE("VirtualService: mirror and mirrors together") {
    CHECK(error_of(vs(kRoute + "    mirror:\n      host: reviews\n    mirrors:\n"
                               "    - destination:\n        host: ratings\n")) ==
          "t.yaml:8:5: VirtualService default/reviews: spec.http[0]: HTTP route cannot contain "
          "both mirror and mirrors");
}

TEST_CASE("VirtualService: mirror percentage above 100") {
    CHECK(error_of(vs(kRoute + "    mirror:\n      host: reviews\n    mirrorPercentage:\n"
                               "      value: 101\n")) ==
          "t.yaml:14:14: VirtualService default/reviews: spec.http[0].mirrorPercentage.value: "
          "mirror_percentage must have a max value of 100 (it has 101.000000)");
}

TEST_CASE("VirtualService: empty prefix for a method") {
    CHECK(error_of(vs("  - match:\n"
                      "    - method:\n"
                      "        prefix: \"\"\n"
                      "    route:\n"
                      "    - destination:\n"
                      "        host: reviews\n")) ==
          "t.yaml:10:9: VirtualService default/reviews: spec.http[0].match[0].method.prefix: "
          "prefix string match should not be empty");
}

TEST_CASE("VirtualService: exportTo entries") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                   "  name: reviews\nspec:\n  hosts: [reviews]\n  exportTo: [\".\", default]\n"
                   "  http:\n" +
                   kRoute) ==
          "t.yaml:7:19: VirtualService default/reviews: spec.exportTo[1]: duplicate entries in "
          "exportTo for entry default");
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                   "  name: reviews\nspec:\n  hosts: [reviews]\n  exportTo: [\"*\", team1]\n"
                   "  http:\n" +
                   kRoute) ==
          "t.yaml:7:13: VirtualService default/reviews: spec.exportTo: cannot have both public (*) "
          "and non-public exportTo values for a resource");
}

TEST_CASE("VirtualService: integers are not strings") {
    CHECK(error_of(vs(
              "  - route:\n    - destination:\n        host: reviews\n      weight: \"50\"\n")) ==
          "t.yaml:11:15: VirtualService default/reviews: spec.http[0].route[0].weight: must be an "
          "integer, not the string \"50\"");
}

TEST_CASE("VirtualService: destination host is required") {
    CHECK(error_of(vs("  - route:\n    - destination:\n        subset: v1\n")) ==
          "t.yaml:10:9: VirtualService default/reviews: spec.http[0].route[0].destination.host: "
          "required");
}

TEST_CASE("VirtualService: subset names are DNS labels") {
    CHECK(error_of(
              vs("  - route:\n    - destination:\n        host: reviews\n        subset: V1\n")) ==
          "t.yaml:11:17: VirtualService default/reviews: spec.http[0].route[0].destination.subset: "
          "subset name is invalid: V1");
}

TEST_CASE("VirtualService: redirect codes are 3xx") {
    CHECK(error_of(vs("  - redirect:\n      uri: /new\n      redirectCode: 200\n")) ==
          "t.yaml:10:21: VirtualService default/reviews: spec.http[0].redirect.redirectCode: 200 "
          "is not a valid redirect code, must be 3xx");
}

TEST_CASE("VirtualService: hosts are DNS names") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                   "  name: r\nspec:\n  hosts: [\"bad_host\"]\n  http:\n" +
                   kRoute) ==
          "t.yaml:6:11: VirtualService default/r: spec.hosts[0]: domain name \"bad_host\" invalid "
          "(label \"bad_host\" invalid)");
}

TEST_CASE("DestinationRule: duplicate subset names") {
    CHECK(error_of(dr("  subsets:\n  - name: v1\n    labels: {version: v1}\n"
                      "  - name: v1\n    labels: {version: v2}\n")) ==
          "t.yaml:10:11: DestinationRule default/reviews: spec.subsets[1].name: duplicate subset "
          "names: v1");
}

TEST_CASE("DestinationRule: load balancer enum") {
    CHECK(error_of(dr("  trafficPolicy:\n    loadBalancer:\n      simple: FASTEST\n")) ==
          "t.yaml:9:15: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.simple: "
          "\"FASTEST\" is not one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, "
          "LEAST_REQUEST");
}

TEST_CASE("DestinationRule: tls mode enum") {
    CHECK(error_of(dr("  trafficPolicy:\n    tls:\n      mode: ISTIO_MTLS\n")) ==
          "t.yaml:9:13: DestinationRule default/reviews: spec.trafficPolicy.tls.mode: "
          "\"ISTIO_MTLS\" is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL");
}

TEST_CASE("DestinationRule: MUTUAL needs a client certificate and key") {
    auto errors = messages(dr("  trafficPolicy:\n    tls:\n      mode: MUTUAL\n"), Severity::Error);
    REQUIRE(errors.size() == 2);
    CHECK(errors[0] ==
          "t.yaml:9:7: DestinationRule default/reviews: "
          "spec.trafficPolicy.tls.clientCertificate: client certificate required for "
          "mutual tls");
}

TEST_CASE("DestinationRule: outlier percentages") {
    CHECK(
        error_of(dr("  trafficPolicy:\n    outlierDetection:\n      maxEjectionPercent: 120\n")) ==
        "t.yaml:9:27: DestinationRule default/reviews: "
        "spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 120 is not in range "
        "0..100");
}

TEST_CASE("DestinationRule: empty connection pool and traffic policy") {
    CHECK(error_of(dr("  trafficPolicy:\n    connectionPool: {}\n")) ==
          "t.yaml:8:21: DestinationRule default/reviews: spec.trafficPolicy.connectionPool: "
          "connection pool must have at least one field");
    CHECK(error_of(dr("  trafficPolicy: {}\n")) ==
          "t.yaml:7:18: DestinationRule default/reviews: spec.trafficPolicy: traffic policy must "
          "have at least one field");
}

TEST_CASE("DestinationRule: negative connection limits") {
    CHECK(error_of(dr("  trafficPolicy:\n    connectionPool:\n      tcp:\n"
                      "        maxConnections: -1\n")) ==
          "t.yaml:10:25: DestinationRule default/reviews: "
          "spec.trafficPolicy.connectionPool.tcp.maxConnections: max connections must be "
          "non-negative");
}

TEST_CASE("DestinationRule: cookie hashing needs a name") {
    CHECK(error_of(dr("  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
                      "        httpCookie:\n          ttl: 0s\n")) ==
          "t.yaml:11:11: DestinationRule default/reviews: "
          "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: name required for "
          "HttpCookie");
}

TEST_CASE("ServiceEntry: resolution and location enums") {
    CHECK(error_of(se("  resolution: DYNAMIC\n")) ==
          "t.yaml:7:15: ServiceEntry default/ext: spec.resolution: \"DYNAMIC\" is not one of NONE, "
          "STATIC, DNS, DNS_ROUND_ROBIN");
    CHECK(error_of(se("  location: OUTSIDE\n")) ==
          "t.yaml:7:13: ServiceEntry default/ext: spec.location: \"OUTSIDE\" is not one of "
          "MESH_EXTERNAL, MESH_INTERNAL");
}

TEST_CASE("ServiceEntry: duplicate port numbers") {
    CHECK(error_of(se("  ports:\n  - {number: 443, name: https, protocol: TLS}\n"
                      "  - {number: 443, name: https2, protocol: TLS}\n")) ==
          "t.yaml:9:14: ServiceEntry default/ext: spec.ports[1].number: service entry port 443 "
          "already defined");
}

TEST_CASE("ServiceEntry: endpoints with resolution NONE") {
    CHECK(error_of(se("  endpoints:\n  - address: 10.0.0.1\n")) ==
          "t.yaml:8:3: ServiceEntry default/ext: spec.endpoints: no endpoints should be provided "
          "for resolution type none");
}

TEST_CASE("WorkloadEntry: address is required") {
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n"
                   "  name: vm\nspec:\n  labels: {app: vm}\n") ==
          "t.yaml:6:3: WorkloadEntry default/vm: spec.address: address is required");
}

TEST_CASE("PeerAuthentication: mTLS mode enum and port-level mTLS without selector") {
    std::string head =
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n"
        "  name: default\nspec:\n";
    CHECK(error_of(head + "  mtls:\n    mode: STRICTT\n") ==
          "t.yaml:7:11: PeerAuthentication default/default: spec.mtls.mode: \"STRICTT\" is not one "
          "of UNSET, DISABLE, PERMISSIVE, STRICT");
    CHECK(error_of(head + "  portLevelMtls:\n    8080:\n      mode: DISABLE\n") ==
          "t.yaml:7:5: PeerAuthentication default/default: spec.portLevelMtls: mesh/namespace peer "
          "authentication cannot have port level mTLS");
}

TEST_CASE("AuthorizationPolicy: CUSTOM needs a provider") {
    CHECK(error_of(ap("  action: CUSTOM\n  rules:\n  - {}\n")) ==
          "t.yaml:6:3: AuthorizationPolicy default/policy: spec.provider.name: `provider.name` "
          "must not be empty");
}

TEST_CASE("AuthorizationPolicy: provider only with CUSTOM") {
    CHECK(error_of(ap("  action: DENY\n  provider:\n    name: ext\n  rules:\n  - {}\n")) ==
          "t.yaml:8:5: AuthorizationPolicy default/policy: spec.provider: `provider` must not be "
          "with non CUSTOM action, found DENY");
}

TEST_CASE("AuthorizationPolicy: DENY without rules") {
    CHECK(error_of(ap("  action: DENY\n")) ==
          "t.yaml:6:11: AuthorizationPolicy default/policy: spec.action: DENY action without "
          "`rules` is meaningless as it will never be triggered, add an empty rule `{}` if you "
          "want it be triggered for every request");
}

TEST_CASE("AuthorizationPolicy: empty from source") {
    CHECK(error_of(ap("  rules:\n  - from:\n    - source: {}\n")) ==
          "t.yaml:8:15: AuthorizationPolicy default/policy: spec.rules[0].from[0].source: "
          "`from.source` must not be empty, found at rule 0");
    CHECK(error_of(ap("  rules:\n  - from: []\n")) ==
          "t.yaml:7:11: AuthorizationPolicy default/policy: spec.rules[0].from: `from` must not be "
          "empty, found at rule 0");
}

TEST_CASE("AuthorizationPolicy: unknown condition key, bad IPs and ports") {
    CHECK(error_of(ap("  rules:\n  - when:\n    - key: source.country\n      values: [fr]\n")) ==
          "t.yaml:8:12: AuthorizationPolicy default/policy: spec.rules[0].when[0].key: invalid "
          "`value` for `key` source.country: unknown attribute: source.country");
    CHECK(error_of(ap("  rules:\n  - from:\n    - source:\n        ipBlocks: [10.0.0.0/33]\n")) ==
          "t.yaml:9:20: AuthorizationPolicy default/policy: "
          "spec.rules[0].from[0].source.ipBlocks[0]: invalid IP address or CIDR range: "
          "10.0.0.0/33");
    CHECK(
        error_of(ap("  rules:\n  - to:\n    - operation:\n        ports: [http]\n")) ==
        "t.yaml:9:17: AuthorizationPolicy default/policy: spec.rules[0].to[0].operation.ports[0]: "
        "invalid port: http");
}

TEST_CASE("AuthorizationPolicy: action enum") {
    CHECK(error_of(ap("  action: REJECT\n")) ==
          "t.yaml:6:11: AuthorizationPolicy default/policy: spec.action: \"REJECT\" is not one of "
          "ALLOW, DENY, AUDIT, CUSTOM");
}

TEST_CASE("documents: YAML syntax, apiVersion, metadata and duplicate keys") {
    CHECK(error_of("kind: VirtualService\nmetadata: [\n") != "");
    CHECK(error_of("kind: VirtualService\nmetadata: [\n").starts_with("t.yaml:3:1: YAML syntax"));
    CHECK(error_of("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata:\n"
                   "  name: r\nspec:\n  hosts: [r]\n  http:\n" +
                   kRoute) ==
          "t.yaml:1:13: VirtualService default/r: apiVersion: \"networking.istio.io/v2\" does not "
          "serve VirtualService (use networking.istio.io/v1, v1beta1 or v1alpha3)");
    CHECK(error_of("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                   "  namespace: x\nspec:\n  hosts: [r]\n  http:\n" +
                   kRoute) == "t.yaml:4:3: VirtualService x/: metadata.name: required");
    CHECK(error_of(vs(kRoute + "    timeout: 1s\n    timeout: 2s\n")) ==
          "t.yaml:12:5: VirtualService default/reviews: spec.http[0].timeout: duplicate field");
}

TEST_CASE("kind: List: each item is read as a resource, at its own line") {
    const std::string list =
        "apiVersion: v1\n"
        "kind: List\n"
        "items:\n"
        "- apiVersion: networking.istio.io/v1\n"  // line 4
        "  kind: VirtualService\n"
        "  metadata: {name: a, namespace: prod}\n"
        "  spec:\n"
        "    hosts: [a]\n"
        "    http:\n"
        "    - route:\n"
        "      - destination: {host: a}\n"
        "- apiVersion: v1\n"  // line 12
        "  kind: Service\n"
        "  metadata: {name: a, namespace: prod}\n"
        "  spec:\n"
        "    ports: [{port: 80, name: http}]\n"
        "- apiVersion: networking.istio.io/v1\n"  // line 17
        "  kind: DestinationRule\n"
        "  metadata: {name: a}\n"
        "  spec:\n"
        "    host: a\n"
        "    trafficPolicy: {loadBalancer: {simple: FASTEST}}\n";
    Config c = load_yaml(list, "t.yaml");
    REQUIRE(c.virtual_services.size() == 1);
    CHECK(c.virtual_services[0].meta.name == "a");
    CHECK(c.virtual_services[0].meta.ns == "prod");
    CHECK(c.virtual_services[0].meta.where.line == 4);
    REQUIRE(c.kube_services.size() == 1);
    CHECK(c.kube_services[0].meta.where.line == 12);
    // An invalid item is refused with its own file, line and field; the others stay.
    REQUIRE(c.destination_rules.size() == 1);
    CHECK(!c.destination_rules[0].meta.valid);
    CHECK(error_of(list).starts_with("t.yaml:22:44: DestinationRule default/a: "
                                     "spec.trafficPolicy.loadBalancer.simple: "));
    // A typed list (what `kubectl get virtualservices -o yaml` writes) and a List inside a List.
    c = load_yaml("apiVersion: networking.istio.io/v1\nkind: VirtualServiceList\nitems:\n"
                  "- apiVersion: v1\n  kind: List\n  items:\n"
                  "  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: prod}\n",
                  "t.yaml");
    CHECK(!c.has_errors());
    CHECK(c.namespaces.count("prod") == 1);
    // An empty List is nothing; a malformed one is an error naming the field.
    CHECK(error_of("apiVersion: v1\nkind: List\nitems: []\n") == "");
    CHECK(error_of("apiVersion: v1\nkind: List\n") == "");
    CHECK(error_of("apiVersion: v1\nkind: List\nitems: {a: 1}\n") ==
          "t.yaml:3:8: List /: items: must be a list of resources (istioctl: malformed items "
          "field)");
    CHECK(error_of("apiVersion: v1\nkind: List\nitems:\n- 3\n") ==
          "t.yaml:4:3: List /: items[0]: must be a mapping (a Kubernetes resource)");
}

TEST_CASE("other kinds are skipped with a note, not an error") {
    Config c = load_yaml(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n"
        "  name: ef\nspec:\n  anything: 1\n",
        "t.yaml");
    CHECK(!c.has_errors());
    REQUIRE(c.diagnostics.size() == 1);
    CHECK(c.diagnostics[0].str() ==
          "t.yaml:1:1: note: EnvoyFilter default/ef: skipped EnvoyFilter "
          "default/ef (not a resource remora reads)");
}

TEST_CASE("warnings: valid Istio features remora does not implement") {
    auto w =
        warnings_of(vs(kRoute + "    corsPolicy:\n      allowOrigins:\n      - exact: a.com\n"));
    REQUIRE(w.size() == 1);
    CHECK(w[0] ==
          "t.yaml:12:7: warning: VirtualService default/reviews: spec.http[0].corsPolicy: "
          "not supported by remora");
    w = warnings_of(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
        "  name: r\nspec:\n  hosts: [r.example.com]\n  gateways: [istio-system/gw]\n"
        "  tcp:\n  - route:\n    - destination:\n        host: r\n");
    REQUIRE(w.size() == 1);  // tcp routes are implemented: no warning for them
    CHECK(w[0] ==
          "t.yaml:7:14: warning: VirtualService default/r: spec.gateways[0]: not "
          "supported by remora (gateway \"istio-system/gw\"; only the mesh gateway)");
    // mirror is implemented: no warning.
    CHECK(warnings_of(vs(kRoute + "    mirror:\n      host: reviews\n    mirrorPercentage:\n"
                                  "      value: 10\n"))
              .empty());
    w = warnings_of(vs("  - delegate:\n      name: reviews-v1\n"));
    REQUIRE(w.size() == 1);
    CHECK(w[0] ==
          "t.yaml:9:7: warning: VirtualService default/reviews: spec.http[0].delegate: not "
          "supported by remora");
}

// ---- no input throws ---------------------------------------------------------------------

TEST_CASE("Services valid in Kubernetes load: spec: {}, headless without ports, no spec") {
    // yaml-cpp's operator[] on a missing key took remora-control down on each of these.
    for (const char* spec : {"spec: {}\n", "spec:\n  clusterIP: None\n  selector: {app: a}\n", "",
                             "spec: null\n", "spec: just-a-string\n", "spec: [1, 2]\n",
                             "spec:\n  ports: 9080\n"}) {
        CAPTURE(spec);
        Config c;
        REQUIRE_NOTHROW(c = load_yaml(std::string("apiVersion: v1\nkind: Service\nmetadata:\n"
                                                  "  name: a\n") +
                                          spec,
                                      "svc.yaml"));
        CHECK(!c.has_errors());
        REQUIRE(c.kube_services.size() == 1);
        CHECK(c.kube_services[0].ports.empty());
        CHECK(c.kube_services[0].cluster_ips.empty());
    }
    Config c = load_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIPs: [None, "
        "198.19.0.1]\n  ports:\n  - {port: 80, name: http}\n",
        "svc.yaml");
    REQUIRE(c.kube_services.size() == 1);
    CHECK(c.kube_services[0].cluster_ips == std::vector<std::string>{"198.19.0.1"});
    REQUIRE(c.kube_services[0].ports.size() == 1);
    CHECK(c.kube_services[0].ports[0].port == 80);
}

TEST_CASE("a Service port outside 1-65535 (or none) is an error naming file, line and field") {
    const std::string head = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n";
    CHECK(error_of(head + "  ports:\n  - {port: 80, name: http}\n  - {port: 70000}\n") ==
          "t.yaml:7:12: Service default/a: spec.ports[1].port: \"70000\" is not a port number "
          "(1-65535)");
    CHECK(error_of(head + "  ports:\n  - port: 0\n") ==
          "t.yaml:6:11: Service default/a: spec.ports[0].port: \"0\" is not a port number "
          "(1-65535)");
    CHECK(error_of(head + "  ports:\n  - {port: 80, targetPort: 65536}\n") ==
          "t.yaml:6:28: Service default/a: spec.ports[0].targetPort: \"65536\" is not a port "
          "number (1-65535)");
    CHECK(error_of(head + "  ports: [{}, {port: x}, 1]\n").starts_with("3 errors"));
    // A named targetPort is a container port's name.
    CHECK(error_of(head + "  ports:\n  - {port: 80, targetPort: http}\n") == "");
    CHECK(load_yaml(head + "  ports:\n  - port: 70000\n", "svc.yaml").kube_services.empty());
}

TEST_CASE("odd shapes in any field are diagnostics, and the next document still loads") {
    const char* odd[] = {
        "kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: a-string\n",
        "kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: [1]\nspec: 3\n",
        "kind: [VirtualService]\napiVersion: {a: b}\n",
        "kind: DestinationRule\napiVersion: networking.istio.io/v1\nmetadata: {name: d}\n"
        "spec:\n  host: [a]\n  subsets: {a: b}\n  trafficPolicy: [1]\n",
        "kind: AuthorizationPolicy\napiVersion: security.istio.io/v1\nmetadata: {name: p}\n"
        "spec:\n  rules: [[1], {from: 1}, {to: [{operation: 1}]}]\n  selector: x\n",
        "kind: ServiceEntry\napiVersion: networking.istio.io/v1\nmetadata: {name: s}\n"
        "spec:\n  hosts: [{a: 1}, a.com]\n  addresses: [[1], 1.2.3]\n  ports: 1\n",
        "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec: 1\n",
        "kind: Pod\napiVersion: v1\nmetadata: {labels: [a]}\n",
        "? [a, b]\n: c\nkind: PeerAuthentication\n",
        // yaml-cpp's LoadAll looped forever on this, allocating (found by tests/fuzz).
        "  - a:\n    b:\n , c:\n",
        ",\n",
        "kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: {name: v}\n"
        "spec:\n  hosts: [a]\n  http:\n  - timeout: 99999999999999999999999999999999999999999999"
        "99999999999999999999999999999999999999999999999999999999999999999999999999999999999"
        "99999999999999999999999999999999999999999999999999999999999999999999999999999999999"
        "99999999999999999999999999999999999999999999999999999999999999999999999999999999999"
        "99999999999999999999999999999999999999999999999999999999999999999999999999999999999"
        "9999999999999999999999999999999999999999999999999999999999999999999999999999999999s\n"
        "    route: [{destination: {host: a}}]\n",
    };
    const std::string good =
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: ok\n"
        "spec:\n  host: reviews\n";
    for (const char* doc : odd) {
        CAPTURE(doc);
        Config c;
        REQUIRE_NOTHROW(c = load_yaml(std::string(doc) + "---\n" + good, "odd.yaml"));
        REQUIRE(!c.destination_rules.empty());
        CHECK(c.destination_rules.back().meta.name == "ok");
        CHECK(c.destination_rules.back().meta.valid);
    }
}

TEST_CASE("a syntax error costs only its own document; lines count from the file's start") {
    Config c = load_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n"
        "kind: [\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata:\n  name: d\nspec:\n  host: d\n  bogus: 1\n",
        "multi.yaml");
    CHECK(c.kube_services.size() == 1);
    REQUIRE(c.destination_rules.size() == 1);
    auto errors = c.errors();
    REQUIRE(errors.size() == 2);
    CHECK(errors[0]->str().starts_with("multi.yaml:6:1: YAML syntax error: "));
    CHECK(errors[1]->str() ==
          "multi.yaml:13:3: DestinationRule default/d: spec.bogus: unknown field");
}

TEST_CASE("reading a document does not change it (no key is added by a lookup)") {
    YAML::Node doc = YAML::Load("kind: Service\nspec: {}\n");
    CHECK(!field(doc, {"spec", "ports"}).IsDefined());
    CHECK(!field(doc, {"metadata", "name"}).IsDefined());
    CHECK(!field(doc, {"kind", "x"}).IsDefined());  // a scalar has no keys
    CHECK(doc.size() == 2);
    CHECK(doc["spec"].size() == 0);
    CHECK(scalar_text(field(doc, "kind")) == "Service");
    CHECK(!item(doc, 0).IsDefined());
}

// ---- every field of Istio's CRDs -----------------------------------------------------------

TEST_CASE("every spec field of Istio's CRDs is known for the kinds remora reads") {
    const char* dir = std::getenv("REMORA_TESTDATA");
    REQUIRE_MESSAGE(dir != nullptr, "REMORA_TESTDATA is not set");
    Config c;
    load_path(c, std::filesystem::path(dir) / "istio_every_field.yaml");
    CHECK(c.virtual_services.size() == 1);
    CHECK(c.destination_rules.size() == 1);
    CHECK(c.service_entries.size() == 1);
    CHECK(c.workload_entries.size() == 1);
    CHECK(c.peer_authentications.size() == 1);
    CHECK(c.authorization_policies.size() == 1);
    CHECK(c.sidecars.size() == 1);
    CHECK(c.gateways.size() == 1);
    CHECK(c.request_authentications.size() == 1);
    CHECK(c.telemetries.size() == 1);
    CHECK(c.proxy_configs.size() == 1);
    for (const auto& d : c.diagnostics) {
        CAPTURE(d.str());
        CHECK(d.message != "unknown field");
    }
}

TEST_CASE("fields added to Istio's CRDs: validated, and a warning where remora does not enforce") {
    auto w =
        warnings_of(dr("  trafficPolicy:\n    connectionPool:\n      http:\n"
                       "        http2KeepAlive:\n          interval: 10s\n"
                       "          timeout: 3s\n"));
    REQUIRE(w.size() == 1);
    CHECK(w[0] ==
          "t.yaml:11:11: warning: DestinationRule default/reviews: "
          "spec.trafficPolicy.connectionPool.http.http2KeepAlive: not supported by remora");
    CHECK(error_of(dr("  trafficPolicy:\n    connectionPool:\n      http:\n"
                      "        http2KeepAlive:\n          interval: 10x\n")) ==
          "t.yaml:11:21: DestinationRule default/reviews: "
          "spec.trafficPolicy.connectionPool.http.http2KeepAlive.interval: \"10x\" is not a "
          "duration (e.g. \"10ms\", \"1.5s\", \"1m\", \"1h\")");
    CHECK(error_of(dr("  trafficPolicy:\n    retryBudget:\n      percent: 120\n")) ==
          "t.yaml:9:16: DestinationRule default/reviews: spec.trafficPolicy.retryBudget.percent: "
          "percent must be in range [0, 100]");
    CHECK(error_of(dr("  trafficPolicy:\n    outlierDetection:\n"
                      "      outlierDetectionHttpErrorCodes: [503, 99]\n")) ==
          "t.yaml:9:45: DestinationRule default/reviews: "
          "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[1]: 99 is not in "
          "100..599");
}

TEST_CASE("flow sequences hold strings as Kubernetes reads them: [1.2.3.4, 2001:db8::]") {
    Config c = load_yaml(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata:\n  name: se\nspec:\n  hosts: [a.example.com]\n"
        "  addresses: [1.2.3.4, 2001:db8::]\n  ports:\n"
        "  - {number: 80, name: http, protocol: HTTP}\n  resolution: STATIC\n"
        "  endpoints:\n  - address: 1.2.3.4\n",
        "t.yaml");
    CHECK(!c.has_errors());
    REQUIRE(c.service_entries.size() == 1);
    CHECK(c.service_entries[0].addresses == std::vector<std::string>{"1.2.3.4", "2001:db8::"});
}

namespace {

// The "billion laughs" shape: nine levels of eight aliases under `status:` (8^9 nodes once
// expanded, 502 bytes of text), as `kubectl get -o yaml` output could carry it.
std::string alias_bomb_vs() {
    std::string y =
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bomb\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n"
        "        host: reviews\nstatus:\n"
        "  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
    std::string prev = "a";
    for (char c = 'b'; c <= 'i'; ++c) {
        y += std::string("  ") + c + ": &" + c + " [";
        for (int i = 0; i < 8; ++i)
            y += (i ? ",*" : "*") + prev;
        y += "]\n";
        prev = std::string(1, c);
    }
    return y;
}

}  // namespace

TEST_CASE("an alias bomb is refused as it would be materialised, naming file and line") {
    // Line 17: the alias (level f, 8^5 nodes) that first stands for more than 10,000 nodes.
    CHECK(error_of(alias_bomb_vs()) ==
          "t.yaml:17:10: alias expands to 37449 nodes, more than the limit of 10000 nodes per "
          "alias expansion; the document is refused");
    Config c = load_yaml(alias_bomb_vs(), "t.yaml");
    CHECK(c.virtual_services.empty());
    // The same bomb later in a file: lines count from the file's start.
    Config later = load_yaml(
        "kind: Namespace\napiVersion: v1\nmetadata: {name: x}\n---\n" + alias_bomb_vs(), "t.yaml");
    REQUIRE(later.errors().size() == 1);
    CHECK(later.errors()[0]->str().starts_with("t.yaml:21:10: alias expands to 37449 nodes"));
}

TEST_CASE("an alias inside its own anchor (a cycle) is refused, not walked forever") {
    CHECK(error_of("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  x: &a [*a]\n") ==
          "t.yaml:5:10: alias refers to a node that contains it (a cycle); the document is "
          "refused");
}

TEST_CASE("load_document: aliases within the limits load; each limit is named") {
    YAML::Node ok = load_document("a: &a [1, 2]\nb: [*a, *a]\nc: \"*\"\n");
    CHECK(ok["b"].size() == 2);
    YamlLimits small;
    small.max_alias_nodes = 2;
    CHECK_THROWS_WITH_AS(load_document("a: &a [1, 2]\nb: *a\n", small),
                         "yaml-cpp: error at line 2, column 4: alias expands to 3 nodes, more than "
                         "the limit of 2 nodes per alias expansion",
                         YamlLimitError);
    YamlLimits nodes;
    nodes.max_expanded_nodes = 10;
    CHECK_THROWS_AS(load_document("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", nodes), YamlLimitError);
    YamlLimits bytes;
    bytes.max_expanded_bytes = 100;
    CHECK_THROWS_AS(load_document("a: &a [" + std::string(40, 'x') + "]\nb: [*a, *a]\n", bytes),
                    YamlLimitError);
}
