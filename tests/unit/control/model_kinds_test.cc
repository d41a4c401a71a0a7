// The kinds Remora reads and validates but does not (all) enforce yet: Sidecar, Gateway,
// Telemetry, RequestAuthentication, ProxyConfig. Each case checks the whole message (file:line:
// col, resource, field path, text) against Istio's validation (pkg/config/validation).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

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
        r + "6:3: warning: Sidecar prod/sc: spec: not supported by remora (proxies are not yet "
            "scoped by Sidecar resources)",
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
