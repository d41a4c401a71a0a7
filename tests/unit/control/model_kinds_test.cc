// The kinds Remora reads and validates but does not (all) enforce yet: Sidecar, Gateway,
// Telemetry, RequestAuthentication, ProxyConfig. Each case checks the whole message (file:line:
// col, resource, field path, text) against Istio's validation (pkg/config/validation).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "control/model/checks.h"
#include "control/model/model.h"

using namespace remora::control::model;

namespace {

std::vector<std::string> messages(const Config& c, Severity severity) {
    std::vector<std::string> out;
    for (const auto& d : c.diagnostics) {
        if (d.severity == severity) out.push_back(d.str());
    }
    return out;
}

std::string errors_of(const std::string& yaml) {
    std::string all;
    for (const auto& e : messages(load_yaml(yaml, "t.yaml"), Severity::Error))
        all += e + "\n";
    return all;
}

std::vector<std::string> warnings_of(const std::string& yaml) {
    return messages(load_yaml(yaml, "t.yaml"), Severity::Warning);
}

// A Sidecar in namespace "prod" whose spec continues on line 6.
std::string sidecar(const std::string& spec) {
    return "apiVersion: networking.istio.io/v1\n"
           "kind: Sidecar\n"
           "metadata:\n"
           "  {name: sc, namespace: prod}\n"
           "spec:\n" +
           spec;
}

const char* kScoped =
    "  workloadSelector:\n"
    "    labels: {app: ratings}\n"
    "  ingress:\n"
    "  - port: {number: 9080, protocol: HTTP, name: somename}\n"
    "    defaultEndpoint: 127.0.0.1:8080\n"
    "  egress:\n"
    "  - port: {number: 9080, protocol: HTTP, name: egresshttp}\n"
    "    hosts: [\"prod-us1/*\"]\n"
    "  - hosts: [\"istio-system/*\", \"./*.example.com\", \"~/*\"]\n"
    "  outboundTrafficPolicy:\n"
    "    mode: REGISTRY_ONLY\n";

}  // namespace

TEST_CASE("Sidecar: the fields that scope a proxy land in model::Sidecar") {
    Config c = load_yaml(sidecar(kScoped), "t.yaml");
    CHECK(errors_of(sidecar(kScoped)) == "");
    REQUIRE(c.sidecars.size() == 1);
    const Sidecar& sc = c.sidecars[0];
    CHECK(sc.meta.ns == "prod");
    CHECK(sc.meta.valid);
    REQUIRE(sc.workload_selector);
    CHECK(sc.workload_selector->at("app") == "ratings");
    REQUIRE(sc.ingress.size() == 1);
    CHECK(sc.ingress[0].port.number == 9080);
    CHECK(sc.ingress[0].port.protocol == "HTTP");
    CHECK(sc.ingress[0].default_endpoint == "127.0.0.1:8080");
    REQUIRE(sc.egress.size() == 2);
    REQUIRE(sc.egress[0].port);
    CHECK(sc.egress[0].port->number == 9080);
    CHECK(sc.egress[0].hosts == std::vector<std::string>{"prod-us1/*"});
    CHECK_FALSE(sc.egress[1].port);  // the catch-all listener
    CHECK(sc.egress[1].hosts ==
          std::vector<std::string>{"istio-system/*", "./*.example.com", "~/*"});
    CHECK(sc.egress[1].where.line == 14);
    REQUIRE(sc.outbound_traffic_policy);
    CHECK(sc.outbound_traffic_policy->mode == "REGISTRY_ONLY");
    CHECK_FALSE(sc.inbound_connection_pool);

    // Without outboundTrafficPolicy the mesh's mode applies; with it but no mode, REGISTRY_ONLY
    // (the enum's zero value).
    Config plain = load_yaml(sidecar("  egress:\n  - hosts: [\"./*\"]\n"), "t.yaml");
    REQUIRE(plain.sidecars.size() == 1);
    CHECK_FALSE(plain.sidecars[0].outbound_traffic_policy);
    CHECK_FALSE(plain.sidecars[0].workload_selector);
    Config empty_mode = load_yaml(sidecar("  outboundTrafficPolicy: {}\n"), "t.yaml");
    REQUIRE(empty_mode.sidecars.size() == 1);
    CHECK(empty_mode.sidecars[0].outbound_traffic_policy->mode == "REGISTRY_ONLY");
}

TEST_CASE("Sidecar: Istio's validation errors, with file, line and field") {
    const std::string p = "t.yaml:";
    const std::string r = ": Sidecar prod/sc: ";
    CHECK(errors_of(sidecar("  workloadSelector: {labels: {app: x}}\n")) ==
          p + "6:3" + r + "spec: sidecar: empty configuration provided\n");
    CHECK(errors_of(sidecar("  egress:\n  - hosts: [bookinfo.com]\n")) ==
          p + "7:13" + r + "spec.egress[0].hosts[0]: host must be of form namespace/dnsName\n");
    CHECK(errors_of(sidecar("  egress:\n  - hosts: [\"foo/bar\"]\n")) ==
          p + "7:13" + r + "spec.egress[0].hosts[0]: short names (non FQDN) are not allowed\n");
    CHECK(errors_of(sidecar("  egress:\n  - hosts: [\"bad_ns/*\"]\n")) ==
          p + "7:13" + r +
              "spec.egress[0].hosts[0]: invalid namespace value \"bad_ns\" in sidecar\n");
    CHECK(errors_of(sidecar("  egress:\n  - hosts: [\"ns/*bar.com\"]\n")) ==
          p + "7:13" + r + "spec.egress[0].hosts[0]: partial wildcard \"*bar.com\" not allowed\n");
    CHECK(errors_of(sidecar("  egress:\n  - port: {number: 80}\n")) ==
          p + "7:5" + r +
              "spec.egress[0].hosts: sidecar: egress listener must contain at least "
              "one host\n");
    CHECK(errors_of(sidecar("  egress:\n  - hosts: [\"./*\"]\n  - hosts: [\"ns/*\"]\n"
                            "    port: {number: 80}\n")) ==
          p + "7:5" + r +
              "spec.egress[0]: sidecar: the egress listener with empty port should "
              "be the last listener in the list\n");
    CHECK(errors_of(sidecar("  egress:\n  - {port: {number: 80}, hosts: [\"./*\"]}\n"
                            "  - {port: {number: 80}, hosts: [\"ns/*\"]}\n")) ==
          p + "8:21" + r +
              "spec.egress[1].port.number: sidecar: ports on IP bound listeners "
              "must be unique\n");
    CHECK(errors_of(sidecar("  egress:\n  - {port: {number: 0}, hosts: [\"./*\"]}\n")) ==
          p + "7:5" + r +
              "spec.egress[0].bind: sidecar: ports with 0 value must have a unix "
              "domain socket bind address\n");
    CHECK(errors_of(sidecar("  egress:\n  - {port: {number: 0}, bind: \"unix://rel\", "
                            "hosts: [\"./*\"]}\n")) ==
          p + "7:31" + r + "spec.egress[0].bind: rel is not an absolute path to a file\n");
    CHECK(errors_of(sidecar("  egress:\n  - {port: {number: 70000}, hosts: [\"./*\"]}\n")) ==
          p + "7:21" + r +
              "spec.egress[0].port.number: port number 70000 must be in the range "
              "1..65535\n");
    CHECK(errors_of(sidecar("  egress:\n  - {port: {number: 80, protocol: bogus}, "
                            "hosts: [\"./*\"]}\n")) ==
          p + "7:35" + r + "spec.egress[0].port.protocol: unsupported protocol: bogus\n");
    CHECK(errors_of(sidecar("  egress:\n  - {port: {number: 80}, bind: 10.1.1, "
                            "hosts: [\"./*\"]}\n")) ==
          p + "7:32" + r + "spec.egress[0].bind: 10.1.1 is not a valid IP\n");
    CHECK(errors_of(sidecar("  ingress:\n  - defaultEndpoint: 127.0.0.1:80\n")) ==
          p + "7:5" + r +
              "spec.ingress[0].port: sidecar: port is required for ingress "
              "listeners\n");
    CHECK(errors_of(sidecar("  ingress:\n  - port: {number: 80, targetPort: 8080}\n")) ==
          p + "7:36" + r +
              "spec.ingress[0].port.targetPort: targetPort has no impact on "
              "Sidecars\n");
    CHECK(errors_of(sidecar("  ingress:\n  - port: {number: 80}\n    defaultEndpoint: "
                            "10.0.0.1:80\n")) ==
          p + "8:22" + r +
              "spec.ingress[0].defaultEndpoint: sidecar: defaultEndpoint must be of "
              "form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
              "unix://filepath or unset\n");
    CHECK(errors_of(sidecar("  ingress:\n  - port: {number: 80}\n    defaultEndpoint: "
                            "\"[::1]:x\"\n")) ==
          p + "8:22" + r +
              "spec.ingress[0].defaultEndpoint: sidecar: defaultEndpoint port (x) "
              "is not a number: strconv.Atoi: parsing \"x\": invalid syntax\n");
    CHECK(errors_of(sidecar("  ingress:\n  - port: {number: 80, protocol: HTTP}\n"
                            "    tls: {mode: SIMPLE, credentialName: c}\n")) ==
          p + "8:10" + r +
              "spec.ingress[0].tls: sidecar: credentialName is not currently "
              "supported\n" +
              p + "8:10" + r +
              "spec.ingress[0].tls: server cannot have TLS settings for non "
              "HTTPS/TLS ports\n");
    CHECK(errors_of(sidecar("  ingress:\n  - port: {number: 443, protocol: HTTPS}\n"
                            "    tls: {mode: ISTIO_MUTUAL}\n")) ==
          p + "8:10" + r +
              "spec.ingress[0].tls: configuration is invalid: cannot set mode to "
              "ISTIO_MUTUAL in sidecar ingress tls\n");
    CHECK(errors_of(sidecar("  ingress:\n  - port: {number: 443, protocol: HTTPS}\n"
                            "    tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}\n")) ==
          p + "8:10" + r + "spec.ingress[0].tls: MUTUAL TLS requires a client CA bundle\n");
    CHECK(errors_of(sidecar("  outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}\n")) ==
          p + "6:33" + r +
              "spec.outboundTrafficPolicy.mode: sidecar: ALLOW_ANY_DYNAMIC_DNS mode "
              "is only supported in MeshConfig, not in Sidecar resource\n");
    CHECK(errors_of(sidecar("  outboundTrafficPolicy:\n    egressProxy: {host: foo.bar, port: "
                            "{number: 80}}\n")) ==
          p + "7:18" + r +
              "spec.outboundTrafficPolicy.egressProxy: sidecar: egress_proxy must "
              "be set only with ALLOW_ANY outbound_traffic_policy mode\n");
    CHECK(errors_of(sidecar("  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: "
                            "{host: foo.bar}}\n")) ==
          p + "6:57" + r +
              "spec.outboundTrafficPolicy.egressProxy.port: sidecar: egress_proxy "
              "port must be non-nil\n");
    CHECK(errors_of(sidecar("  workloadSelector: {labels: {app: \"*\"}}\n  egress:\n"
                            "  - hosts: [\"./*\"]\n")) ==
          p + "6:30" + r +
              "spec.workloadSelector.labels.app: wildcard is not supported in "
              "selector: \"app=*\"\n");
}

TEST_CASE("Sidecar: Istio's warnings and Remora's") {
    auto w =
        warnings_of(sidecar("  workloadSelector: {}\n  egress:\n"
                            "  - hosts: [\"ns/*\", \"ns/a.b.c\", \"*/*\"]\n"));
    const std::string r = "t.yaml:";
    const std::vector<std::string> want = {
        r + "6:21: warning: Sidecar prod/sc: spec.workloadSelector: sidecar: workload selector "
            "specified without labels, will be applied to all services in namespace",
        r + "8:21: warning: Sidecar prod/sc: spec.egress[0].hosts[1]: duplicated egress host: "
            "ns/a.b.c",
        r + "8:12: warning: Sidecar prod/sc: spec.egress[0].hosts: `*/*` host select all "
            "resources, no other hosts can be added",
    };
    for (std::size_t i = 0; i < std::max(w.size(), want.size()); ++i)
        CHECK((i < w.size() ? w[i] : "") == (i < want.size() ? want[i] : ""));
    // Listener features no proxy implements get their own line.
    auto tls =
        warnings_of(sidecar("  ingress:\n  - port: {number: 443, protocol: HTTPS}\n"
                            "    tls: {mode: SIMPLE, serverCertificate: /c, privateKey: "
                            "/k}\n    captureMode: NONE\n"));
    REQUIRE(tls.size() == 3);
    CHECK(tls[0] ==
          "t.yaml:8:10: warning: Sidecar prod/sc: spec.ingress[0].tls: not supported by "
          "remora (TLS termination on a Sidecar ingress listener)");
    CHECK(tls[1] ==
          "t.yaml:9:18: warning: Sidecar prod/sc: spec.ingress[0].captureMode: not "
          "supported by remora");
    // egress[] and the outboundTrafficPolicy override are enforced (translation scopes each
    // proxy and carries the mode in its snapshot); ingress listeners are not.
    CHECK(tls[2] ==
          "t.yaml:7:3: warning: Sidecar prod/sc: spec.ingress: not supported by remora (ingress "
          "listeners: the proxy accepts inbound traffic on every port, to 127.0.0.1:<port>)");
    CHECK(warnings_of(sidecar("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")).empty());
}

TEST_CASE("Sidecar: a second definition replaces the first; a broken one stays, marked invalid") {
    Config c = load_yaml(sidecar("  egress:\n  - hosts: [\"./*\"]\n") + "---\n" +
                             sidecar("  egress:\n  - hosts: [\"istio-system/*\"]\n") + "---\n" +
                             "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n"
                             "  name: broken\nspec:\n  egress:\n  - hosts: [nope]\n",
                         "t.yaml");
    REQUIRE(c.sidecars.size() == 2);
    CHECK(c.sidecars[0].egress[0].hosts[0] == "istio-system/*");
    CHECK(c.sidecars[1].meta.name == "broken");
    CHECK_FALSE(c.sidecars[1].meta.valid);
    // A served apiVersion only.
    CHECK(errors_of("apiVersion: security.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n"
                    "spec: {egress: [{hosts: [\"./*\"]}]}\n") ==
          "t.yaml:1:13: Sidecar default/a: apiVersion: \"security.istio.io/v1\" does not serve "
          "Sidecar (use networking.istio.io/v1, v1beta1 or v1alpha3)\n");
}

namespace {

// A Gateway in namespace "istio-system" whose spec continues on line 6.
std::string gateway(const std::string& spec) {
    return "apiVersion: networking.istio.io/v1\n"
           "kind: Gateway\n"
           "metadata:\n"
           "  {name: gw, namespace: istio-system}\n"
           "spec:\n" +
           spec;
}

}  // namespace

TEST_CASE("Gateway: servers land in model::Gateway; Istio's validation errors") {
    const std::string ok = gateway(
        "  selector: {istio: ingressgateway}\n"
        "  servers:\n"
        "  - port: {number: 80, name: http, protocol: HTTP}\n"
        "    hosts: [\"bookinfo.com\", \"ns1/*.example.com\"]\n"
        "    tls: {httpsRedirect: true}\n"
        "  - port: {number: 443, name: https, protocol: HTTPS}\n"
        "    hosts: [\"*\"]\n"
        "    tls: {mode: SIMPLE, credentialName: bookinfo-cert}\n");
    CHECK(errors_of(ok) == "");
    Config c = load_yaml(ok, "t.yaml");
    REQUIRE(c.gateways.size() == 1);
    const Gateway& gw = c.gateways[0];
    CHECK(gw.selector.at("istio") == "ingressgateway");
    REQUIRE(gw.servers.size() == 2);
    CHECK(gw.servers[0].port.number == 80);
    CHECK(gw.servers[0].hosts[1] == "ns1/*.example.com");
    CHECK(gw.servers[0].tls->https_redirect);
    CHECK(gw.servers[1].tls->mode == "SIMPLE");
    CHECK(gw.servers[1].tls->credential_name == "bookinfo-cert");
    CHECK(warnings_of(ok) ==
          std::vector<std::string>{"t.yaml:6:3: warning: Gateway istio-system/gw: spec: not "
                                   "supported by remora (no gateway proxy: VirtualServices bound "
                                   "to it are not served)"});

    const std::string p = "t.yaml:";
    const std::string r = ": Gateway istio-system/gw: ";
    CHECK(errors_of(gateway("  selector: {app: x}\n")) ==
          p + "6:3" + r + "spec.servers: gateway must have at least one server\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n")) ==
          p + "7:5" + r + "spec.servers[0].hosts: server config must contain at least one host\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n"
                            "    hosts: [\"bad_ns/foo.com\"]\n")) ==
          p + "8:13" + r +
              "spec.servers[0].hosts[0]: invalid namespace value \"bad_ns\" in "
              "gateway\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n"
                            "    hosts: [foo]\n")) ==
          p + "8:13" + r + "spec.servers[0].hosts[0]: short names (non FQDN) are not allowed\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, protocol: HTTP}\n"
                            "    hosts: [\"*\"]\n")) ==
          p + "7:11" + r +
              "spec.servers[0].port.name: port name must be set: number:80 "
              "protocol:\"HTTP\"\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, name: x, protocol: FOO}\n"
                            "    hosts: [\"*\"]\n")) ==
          p + "7:43" + r +
              "spec.servers[0].port.protocol: invalid protocol \"FOO\", supported "
              "protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 443, name: x, protocol: HTTPS}\n"
                            "    hosts: [\"*\"]\n")) ==
          p + "7:5" + r +
              "spec.servers[0].tls: server must have TLS settings for HTTPS/TLS "
              "protocols\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, name: x, protocol: HTTP}\n"
                            "    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: c}\n")) ==
          p + "9:10" + r +
              "spec.servers[0].tls: server cannot have TLS settings for plain text "
              "HTTP ports\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 443, name: x, protocol: HTTPS}\n"
                            "    hosts: [\"*\"]\n    tls: {mode: SIMPLE}\n")) ==
          p + "9:10" + r + "spec.servers[0].tls: SIMPLE TLS requires a server certificate\n" + p +
              "9:10" + r + "spec.servers[0].tls: SIMPLE TLS requires a private key\n");
    CHECK(errors_of(gateway("  servers:\n  - port: {number: 80, name: a, protocol: HTTP}\n"
                            "    hosts: [\"*\"]\n  - port: {number: 81, name: a, protocol: HTTP}\n"
                            "    hosts: [\"*\"]\n")) ==
          p + "9:5" + r +
              "spec.servers[1].port.name: port names in servers must be unique: "
              "duplicate name a\n");
    // cipherSuites: names BoringSSL (Envoy's TLS library) knows, as Istio's ValidCipherSuites;
    // Istio warns and drops the others and the duplicates.
    const std::string tls =
        "  servers:\n  - port: {number: 443, name: x, protocol: HTTPS}\n"
        "    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n      credentialName: c\n"
        "      cipherSuites:\n";
    CHECK(warnings_of(gateway(tls + "      - ECDHE-RSA-AES128-GCM-SHA256\n      - ALL\n"
                                    "      - -AES128-SHA\n      - '[AES128-SHA|AES256-SHA]'\n"))
              .size() == 1);  // only remora's "no gateway proxy"
    auto w = warnings_of(gateway(tls + "      - ECDHE-RSA-AES128-GCM-SHA256\n"
                                       "      - TLS_AES_128_GCM_SHA256\n"
                                       "      - ECDHE-RSA-AES128-GCM-SHA256\n"
                                       "      - RC4-SHA\n"));
    REQUIRE(w.size() == 3);
    CHECK(w[0] == p + "14:9: warning" + r +
                      "spec.servers[0].tls.cipherSuites: ignoring invalid cipher suites: "
                      "[RC4-SHA TLS_AES_128_GCM_SHA256]");
    CHECK(w[1] == p + "15:9: warning" + r +
                      "spec.servers[0].tls.cipherSuites: ignoring duplicate cipher suites: "
                      "[ECDHE-RSA-AES128-GCM-SHA256]");
    // Kubernetes Gateway API's Gateway is another kind: skipped, not refused.
    Config k8s = load_yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        "metadata: {name: gw}\nspec: {gatewayClassName: istio}\n",
        "t.yaml");
    CHECK_FALSE(k8s.has_errors());
    CHECK(k8s.gateways.empty());
    // Its listeners are read for the analyzers (a VirtualService may name it).
    k8s = load_yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        "metadata: {name: gw, namespace: edge}\nspec:\n  gatewayClassName: istio\n"
        "  listeners:\n  - {name: http, hostname: example.com, port: 80, protocol: HTTP}\n"
        "  - {name: any, port: 8080, protocol: HTTP}\n",
        "t.yaml");
    REQUIRE(k8s.kube_gateways.size() == 1);
    CHECK(k8s.kube_gateways[0].meta.ns == "edge");
    REQUIRE(k8s.kube_gateways[0].listeners.size() == 2);
    CHECK(k8s.kube_gateways[0].listeners[0].hostname == "example.com");
    CHECK(k8s.kube_gateways[0].listeners[1].hostname == "");
    CHECK(k8s.kube_gateways[0].listeners[1].port == 8080);
}

TEST_CASE("RequestAuthentication: JWT rules read and validated as Istio does") {
    const std::string head =
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: jwt, namespace: foo}\nspec:\n";
    const std::string ok = head +
                           "  selector: {matchLabels: {app: httpbin}}\n"
                           "  jwtRules:\n"
                           "  - issuer: testing@secure.istio.io\n"
                           "    jwksUri: https://example.com/jwks.json\n"
                           "    fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}]\n"
                           "    outputClaimToHeaders: [{header: x-sub, claim: sub}]\n";
    CHECK(errors_of(ok) == "");
    Config c = load_yaml(ok, "t.yaml");
    REQUIRE(c.request_authentications.size() == 1);
    const auto& ra = c.request_authentications[0];
    REQUIRE(ra.jwt_rules.size() == 1);
    CHECK(ra.jwt_rules[0].issuer == "testing@secure.istio.io");
    CHECK(ra.jwt_rules[0].from_headers[0].second == "Bearer ");
    CHECK(ra.jwt_rules[0].output_claim_to_headers[0].second == "x-sub");

    const std::string r = ": RequestAuthentication foo/jwt: ";
    CHECK(errors_of(head + "  jwtRules:\n  - audiences: [a]\n") ==
          "t.yaml:6:5" + r + "spec.jwtRules[0]: issuer or jwksUri must be non-empty string\n");
    CHECK(errors_of(head + "  jwtRules:\n  - {issuer: i, jwksUri: \"ftp://x/k\"}\n") ==
          "t.yaml:6:26" + r + "spec.jwtRules[0].jwksUri: URI scheme \"ftp\" is not supported\n");
    CHECK(errors_of(head + "  jwtRules:\n  - {issuer: i, audiences: [\"\"]}\n") ==
          "t.yaml:6:29" + r +
              "spec.jwtRules[0].audiences[0]: audience must be non-empty "
              "string\n");
    CHECK(errors_of(head + "  jwtRules:\n  - {issuer: i, outputClaimToHeaders: [{claim: c, "
                           "header: \"a b\"}]}\n") ==
          "t.yaml:6:40" + r +
              "spec.jwtRules[0].outputClaimToHeaders[0].header: header name a b "
              "is not a valid header name\n");
    CHECK(errors_of(head + "  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Service, "
                           "name: a}\n") ==
          "t.yaml:5:3" + r + "spec: only one of targetRefs or workloadSelector can be set\n");
    CHECK(errors_of(head + "  targetRefs:\n  - {kind: Pod, name: a}\n") ==
          "t.yaml:6:5" + r +
              "spec.targetRefs[0]: targetRef must be to one of [core/v1/Service "
              "networking.istio.io/v1/ServiceEntry "
              "gateway.networking.k8s.io/v1/Gateway "
              "gateway.networking.k8s.io/v1/GatewayClass] but was /Pod\n");
}

TEST_CASE("RequestAuthentication: inline jwks parsed as Istio's validation (jwx) parses it") {
    const std::string head =
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: jwt, namespace: foo}\nspec:\n  jwtRules:\n  - issuer: foo.com\n"
        "    jwks: '";
    auto with = [&](const std::string& jwks) { return errors_of(head + jwks + "'\n"); };
    // Istio's "jwks ok" case (an RSA key), an EC key, a sole key, an OKP key.
    const std::string rsa =
        R"({"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA",)"
        R"("n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9Vsw"})";
    CHECK(with(R"({ "keys":[ )" + rsa + "]}") == "");
    CHECK(with(R"({"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6K)"
               R"(PAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]})") == "");
    CHECK(with(rsa) == "");
    CHECK(with(R"({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})") ==
          "");
    const std::string at = "t.yaml:7:11: RequestAuthentication foo/jwt: spec.jwtRules[0].jwks: "
                           "jwks parse error: failed to unmarshal JWK set: ";
    // Istio's "jwks error" case.
    CHECK(with("foo") == at + "not valid JSON (syntax error)\n");
    CHECK(with("[1]") == at + "a JWK set must be a JSON object\n");
    CHECK(with(R"({"keys":[]})") ==
          at + "failed to parse sole key in key set: invalid key type from JSON ()\n");
    CHECK(with(R"({"keys":[{"kty":"RSA","e":"AQAB"}]})") ==
          at + "key #1 (of 1): required field n is missing\n");
    CHECK(with(R"({"keys":[)" + rsa + R"(,{"kty":"DSA"}]})") ==
          at + "key #2 (of 2): invalid key type from JSON (DSA)\n");
    CHECK(with(R"({"keys":[{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}]})") ==
          at + "key #1 (of 1): invalid curve \"P-192\" (P-256, P-384 or P-521)\n");
    CHECK(with(R"({"keys":[{"kty":"RSA","e":"AQAB","n":"not base64!"}]})") ==
          at + "key #1 (of 1): failed to decode value for key n (not base64url)\n");
    CHECK(with(R"({"keys":[{"kty":"RSA","e":1,"n":"AA"}]})") ==
          at + "key #1 (of 1): field e must be a string\n");
    // Private key material: valid, with Istio's warning naming the key's index.
    auto w = warnings_of(head + R"({"keys":[)" + rsa + R"(,{"kty":"oct","k":"c2VjcmV0"}]})" +
                         "'\n");
    REQUIRE(w.size() == 2);  // and remora's "not supported" on spec
    CHECK(w[0] == "t.yaml:7:11: warning: RequestAuthentication foo/jwt: spec.jwtRules[0].jwks: "
                  "jwks key at index 1 contains private key material; only public keys are used "
                  "for verification");
}

TEST_CASE("Telemetry: accessLogging filter expressions are CEL, as Istio parses them") {
    const std::string head =
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
        "metadata: {name: t, namespace: istio-system}\nspec:\n  accessLogging:\n"
        "  - providers: [{name: envoy}]\n";
    // Istio's TestValidateTelemetryFilter cases and its message prefix.
    CHECK(errors_of(head + "    filter: {expression: \"response.code >= 400\"}\n") == "");
    CHECK(errors_of(head + "    filter:\n      expression: \"connection.mtls && "
                           "request.url_path.contains('v1beta3')\"\n") == "");
    CHECK(errors_of(head + "    filter: {expression: response.code}\n") == "");
    CHECK(errors_of(head + "    filter: {expression: \")++++\"}\n") ==
          "t.yaml:7:26: Telemetry istio-system/t: spec.accessLogging[0].filter.expression: must "
          "be a valid CEL expression, ERROR: <input>:1:1: Syntax error: unexpected ')'\n");
    // A filter without expression is an empty one: cel-go refuses it too.
    CHECK(errors_of(head + "    filter: {}\n") ==
          "t.yaml:7:13: Telemetry istio-system/t: spec.accessLogging[0].filter.expression: must "
          "be a valid CEL expression, ERROR: <input>:1:1: Syntax error: unexpected end of "
          "expression\n");

    using detail::cel_syntax_problem;
    for (const char* ok :
         {"response.code >= 400 && response.code < 500", "!(request.headers['x-a'] == 'b')",
          "request.headers[\"user-agent\"].startsWith(\"curl\")", "size(request.path) > 3u",
          "request.method in ['GET', 'HEAD',]", "{'a': 1, 'b': 2.5e3}['a'] == 1",
          "has(request.headers.foo) ? 1 : -9223372036854775808", "x.all(h, h > 0x1F)",
          "[1, 2].map(i, i * 2).exists(j, j % 2 == 0)",
          "r'\\d+' + b'\\x00' + '''a\nb''' + '\\u00e9' + \"\\101\"",
          "google.protobuf.Duration{seconds: 5} < duration('10s')", ".f(1) // a comment",
          "-.5 <= 1.0 || null == null || true != false"}) {
        CAPTURE(ok);
        CHECK(cel_syntax_problem(ok) == "");
    }
    const std::vector<std::pair<const char*, const char*>> bad = {
        {"", "1:1: Syntax error: unexpected end of expression"},
        {"response.code >=", "1:17: Syntax error: unexpected end of expression"},
        {"a +* b", "1:4: Syntax error: unexpected '*'"},
        {"(a", "1:3: Syntax error: missing ')' at end of expression"},
        {"a.b(", "1:5: Syntax error: unexpected end of expression"},
        {"a.", "1:3: Syntax error: unexpected end of expression"},
        {"a b", "1:3: Syntax error: unexpected 'b'"},
        {"'abc", "1:1: Syntax error: unterminated string literal"},
        {"'\\q'", "1:1: Syntax error: invalid escape sequence '\\q'"},
        {"a # b", "1:3: Syntax error: token recognition error at: '#'"},
        {"if", "1:1: Syntax error: reserved identifier: if"},
        {"has(a)", "1:1: Syntax error: invalid argument to has() macro"},
        {"l.all(x.y, true)", "1:3: Syntax error: argument must be a simple name"},
        {"a.?b", "1:3: Syntax error: unsupported syntax '.?'"},
        {"9223372036854775808", "1:1: Syntax error: invalid int literal"},
        {"a ==\n  = b", "2:3: Syntax error: token recognition error at: '='"},
        {"a ==\n  ) b", "2:3: Syntax error: unexpected ')'"},
    };
    for (const auto& [expression, want] : bad) {
        CAPTURE(expression);
        CHECK(cel_syntax_problem(expression) == std::string("ERROR: <input>:") + want);
    }
    // cel-go's recursion limit (250), not the stack, ends a deep expression.
    CHECK(cel_syntax_problem(std::string(100000, '(')).find("recursion limit exceeded") !=
          std::string::npos);
}

TEST_CASE("Telemetry and ProxyConfig: read and validated as Istio does") {
    const std::string head =
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
        "metadata: {name: t, namespace: istio-system}\nspec:\n";
    const std::string ok = head +
                           "  tracing:\n  - randomSamplingPercentage: 10.5\n"
                           "    providers: [{name: zipkin}]\n"
                           "  accessLogging:\n  - providers: [{name: envoy}]\n"
                           "    filter: {expression: \"response.code >= 400\"}\n";
    CHECK(errors_of(ok) == "");
    Config c = load_yaml(ok, "t.yaml");
    REQUIRE(c.telemetries.size() == 1);
    CHECK(*c.telemetries[0].tracing.at(0).random_sampling_percentage == 10.5);
    CHECK(c.telemetries[0].tracing[0].providers == std::vector<std::string>{"zipkin"});
    CHECK(c.telemetries[0].access_logging.at(0).filter == "response.code >= 400");
    const std::string r = ": Telemetry istio-system/t: ";
    CHECK(errors_of(head + "  tracing:\n  - randomSamplingPercentage: 101\n") ==
          "t.yaml:6:31" + r +
              "spec.tracing[0].randomSamplingPercentage: "
              "randomSamplingPercentage must be in range [0.0, 100.0]\n");
    CHECK(errors_of(head + "  metrics:\n  - providers: [{}]\n") ==
          "t.yaml:6:17" + r + "spec.metrics[0].providers[0]: providers.name may not be empty\n");
    CHECK(errors_of(head + "  metrics:\n  - overrides:\n    - tagOverrides:\n"
                           "        request_host: {operation: REMOVE, value: x}\n") ==
          "t.yaml:8:23" + r +
              "spec.metrics[0].overrides[0].tagOverrides.request_host: "
              "tagOverrides.value may only be set when operation is UPSERT\n");
    CHECK(errors_of(head + "  tracing:\n  - customTags:\n      my: {literal: {}}\n") ==
          "t.yaml:7:21" + r +
              "spec.tracing[0].customTags.my.literal: literal tag value may not "
              "be empty\n");

    const std::string pc =
        "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\n"
        "metadata: {name: pc, namespace: default}\nspec:\n";
    Config p = load_yaml(pc + "  concurrency: 0\n  environmentVariables: {A: b}\n", "t.yaml");
    CHECK_FALSE(p.has_errors());
    REQUIRE(p.proxy_configs.size() == 1);
    CHECK(*p.proxy_configs[0].concurrency == 0);
    CHECK(p.proxy_configs[0].environment_variables.at("A") == "b");
    CHECK(errors_of(pc + "  concurrency: -1\n") ==
          "t.yaml:5:16: ProxyConfig default/pc: spec.concurrency: concurrency must be greater "
          "than or equal to 0\n");
    // ProxyConfig is served as v1beta1 only.
    CHECK(errors_of("apiVersion: networking.istio.io/v1\nkind: ProxyConfig\nmetadata: {name: a}\n"
                    "spec: {}\n") ==
          "t.yaml:1:13: ProxyConfig default/a: apiVersion: \"networking.istio.io/v1\" does not "
          "serve ProxyConfig (use networking.istio.io/v1beta1)\n");
}

TEST_CASE("fields Remora does not enforce are still validated as Istio does") {
    const std::string dr =
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: r}\nspec:\n  host: reviews\n  trafficPolicy:\n"
        "    loadBalancer:\n";
    const std::string r = ": DestinationRule default/r: spec.trafficPolicy.loadBalancer.warmup";
    CHECK(errors_of(dr + "      warmup: {duration: 10x}\n") ==
          "t.yaml:8:26" + r +
              ".duration: \"10x\" is not a duration (e.g. \"10ms\", \"1.5s\", "
              "\"1m\", \"1h\")\n");
    CHECK(errors_of(dr + "      warmup: {aggression: 2}\n") ==
          "t.yaml:8:15" + r + ".duration: duration is required\n");
    CHECK(errors_of(dr + "      warmup: {duration: 10s, minimumPercent: 120, aggression: 0}\n") ==
          "t.yaml:8:47" + r +
              ".minimumPercent: minimumPercent value should be less than or "
              "equal to 100\n" +
              "t.yaml:8:64" + r + ".aggression: aggression should be greater than 0\n");
    CHECK(errors_of(dr + "      warmup: {duration: 10s}\n") == "");
    CHECK(warnings_of(dr + "      warmup: {duration: 10s}\n") ==
          std::vector<std::string>{"t.yaml:8:15: warning: DestinationRule default/r: "
                                   "spec.trafficPolicy.loadBalancer.warmup: not supported by "
                                   "remora"});

    const std::string we =
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: w}\nspec:\n";
    CHECK(errors_of(we + "  address: unix://relative.sock\n") ==
          "t.yaml:5:12: WorkloadEntry default/w: spec.address: relative.sock is not an absolute "
          "path to a file\n");
    CHECK(errors_of(we + "  address: unix:///var/run/a.sock\n  ports: {http: 80}\n") ==
          "t.yaml:6:10: WorkloadEntry default/w: spec.ports: unix endpoint "
          "unix:///var/run/a.sock must not include ports\n");
    CHECK(errors_of(we + "  address: unix:///var/run/a.sock\n") == "");
    CHECK(errors_of(we + "  address: \"unix://@abstract\"\n") == "");
    const std::string se =
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n"
        "  hosts: [a.example.com]\n  resolution: STATIC\n  ports:\n"
        "  - {number: 80, name: http, protocol: HTTP}\n  - {number: 81, name: b, protocol: HTTP}\n"
        "  endpoints:\n  - address: unix:///var/run/a.sock\n";
    CHECK(errors_of(se) ==
          "t.yaml:11:5: ServiceEntry default/s: spec.endpoints[0].address: "
          "exactly 1 service port required for unix endpoints\n");
}
