// The analyzer on Istio's own analyzer inputs (shared/istio-samples, README.txt lists what
// upstream istioctl reports for each, one analyzer at a time as upstream's tests run them), and
// the message format.
#include "control/analyze/analyzer.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace remora::control;
using analyze::Analyzer;

namespace {

std::filesystem::path samples_dir() {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir != nullptr, "REMORA_ISTIO_SAMPLES is not set");
    return dir;
}

std::vector<analyze::Message> run(const std::string& file, std::set<Analyzer> only = {}) {
    model::Config c;
    model::load_path(c, samples_dir() / file);
    return analyze::analyze(c, {std::move(only)});
}

// "CODE ns/name", sorted, one entry per message.
std::vector<std::string> codes(const std::vector<analyze::Message>& messages) {
    std::vector<std::string> out;
    for (const auto& m : messages)
        out.push_back(m.code + " " + m.ns + "/" + m.name);
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

TEST_CASE("analyzer input virtualservice_destinationrules.yaml") {
    auto m = run("virtualservice_destinationrules.yaml", {Analyzer::DestinationRule});
    CHECK(codes(m) == sorted({"IST0101 default/reviews-bogussubset",
                              "IST0101 default/reviews-mirror-bogussubset"}));
    std::vector<std::string> lines;
    for (const auto& msg : m)
        lines.push_back(msg.str());
    std::string file = (samples_dir() / "virtualservice_destinationrules.yaml").string();
    CHECK(lines ==
          std::vector<std::string>{
              "Error [IST0101] (VirtualService default/reviews-bogussubset " + file +
                  ":26) Referenced host+subset in destinationrule not found: "
                  "\"reviews+bogus\"",
              "Error [IST0101] (VirtualService default/reviews-mirror-bogussubset " + file +
                  ":65) Referenced mirror+subset in destinationrule not found: "
                  "\"reviews+bogus\""});
}

TEST_CASE("analyzer input virtualservice_destinationhosts.yaml") {
    auto m = run("virtualservice_destinationhosts.yaml", {Analyzer::DestinationHost});
    CHECK(codes(m) ==
          sorted({"IST0101 default/reviews-bogushost", "IST0101 default/reviews-bogushost",
                  "IST0101 default/reviews-bookinfo-other",
                  "IST0101 default/reviews-mirror-bogushost", "IST0101 default/reviews-bogusport",
                  "IST0101 istio-system/cross-namespace-details",
                  "IST0101 hello/hello-export-to-bogus", "IST0112 default/reviews-2port-missing"}));
    std::vector<std::string> texts;
    for (const auto& msg : m)
        texts.push_back(msg.text);
    auto has = [&](const std::string& t) {
        return std::find(texts.begin(), texts.end(), t) != texts.end();
    };
    CHECK(has("Referenced host not found: \"\""));
    CHECK(has("Referenced host not found: \"reviews-bogus\""));
    CHECK(has("Referenced mirror host not found: \"reviews-bogus\""));
    CHECK(has("Referenced host:port not found: \"reviews:999\""));
    CHECK(
        has("This VirtualService routes to a service \"reviews-2port\" that exposes multiple "
            "ports [80 443]. Specifying a port in the destination is required to "
            "disambiguate."));
}

TEST_CASE("analyzer input virtualservice_conflictingmeshgatewayhosts.yaml") {
    auto m = run("virtualservice_conflictingmeshgatewayhosts.yaml",
                 {Analyzer::ConflictingMeshGatewayHosts});
    CHECK(codes(m) ==
          sorted({"IST0109 team3/ratings", "IST0109 team4/ratings", "IST0109 foo/ratings",
                  "IST0109 bar/ratings", "IST0109 foo/productpage", "IST0109 foo/bogus-productpage",
                  "IST0109 team2/ratings"}));
    REQUIRE(!m.empty());
    CHECK(m[0].str().ends_with(
        "(VirtualService foo/productpage " +
        (samples_dir() / "virtualservice_conflictingmeshgatewayhosts.yaml").string() +
        ":2) The VirtualServices foo/bogus-productpage,foo/productpage associated with mesh "
        "gateway define the same host */productpage.foo.svc.cluster.local which can lead to "
        "undefined behavior. This can be fixed by merging the conflicting VirtualServices into "
        "a single resource."));
}

TEST_CASE("analyzer input destinationrule-subsets-not-select-pods.yaml") {
    auto m = run("destinationrule-subsets-not-select-pods.yaml", {Analyzer::PodNotSelected});
    CHECK(codes(m) == std::vector<std::string>{"IST0173 default/subsets-not-select-pods"});
    REQUIRE(m.size() == 1);
    CHECK(m[0].level == analyze::Level::Error);
    CHECK(m[0].text ==
          "The Subset fake defined in the DestinationRule does not select any pods. "
          "Which may lead to 503 UH (NoHealthyUpstream).");
    // All analyzers together find nothing else in this file.
    CHECK(codes(run("destinationrule-subsets-not-select-pods.yaml")) == codes(m));
}

TEST_CASE("analyzer: subsets select Deployment, Pod and WorkloadEntry labels") {
    model::Config c = model::load_yaml(R"(apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 9080, name: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: reviews, version: v1}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2, namespace: shop, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: shop}
spec:
  address: 10.0.0.9
  labels: {app: reviews, version: v3}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v4, namespace: elsewhere}
spec:
  template:
    metadata:
      labels: {app: reviews, version: v4}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: v4, labels: {version: v4}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: shop}
spec:
  host: ghost.example.com
)",
                                       "mesh.yaml");
    auto m = analyze::analyze(c);
    CHECK(codes(m) == sorted({"IST0173 shop/reviews", "IST0174 shop/ghost"}));
    for (const auto& msg : m) {
        if (msg.code == "IST0173") CHECK(msg.text.starts_with("The Subset v4 "));
        if (msg.code == "IST0174") {
            CHECK(msg.str() ==
                  "Warning [IST0174] (DestinationRule shop/ghost mesh.yaml:46) The "
                  "host ghost.example.com defined in the DestinationRule does not "
                  "match any services in the mesh.");
        }
    }
}

TEST_CASE("analyzer: schema errors become IST0106 on the resource") {
    model::Config c = model::load_yaml(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    retries: {attempts: 3, retryOn: 5xxx}
)",
                                       "bad.yaml");
    auto m = analyze::analyze(c, {{Analyzer::SchemaValidation}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].str() ==
          "Error [IST0106] (VirtualService default/reviews bad.yaml:1) Schema "
          "validation error: bad.yaml:9:37: spec.http[0].retries.retryOn: unknown "
          "retry condition \"5xxx\"");
    CHECK(analyze::has_errors(m));
}

TEST_CASE("analyzer: Istio's validation warnings become IST0133, remora's stay out") {
    model::Config c = model::load_yaml(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    mirror: {host: reviews}
    mirrorPercent: 5
    corsPolicy: {allowOrigins: [{exact: a.com}]}
)",
                                       "warn.yaml");
    auto m = analyze::analyze(c, {{Analyzer::SchemaValidation}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].str() ==
          "Warning [IST0133] (VirtualService default/reviews warn.yaml:1) Schema "
          "validation warning: warn.yaml:10:20: spec.http[0].mirrorPercent: using "
          "deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead");
    CHECK(!analyze::has_errors(m));
    REQUIRE(c.warnings().size() == 2);
    CHECK(c.warnings()[1]->remora);
}

TEST_CASE("analyzer: a consistent bookinfo has no messages") {
    model::Config c;
    for (const char* f :
         {"bookinfo.yaml", "destination-rule-reviews.yaml", "virtual-service-reviews-80-20.yaml"}) {
        model::load_path(c, samples_dir() / f);
    }
    auto m = analyze::analyze(c);
    std::vector<std::string> lines;
    for (const auto& msg : m)
        lines.push_back(msg.str());
    CHECK(lines == std::vector<std::string>{});
}

TEST_CASE("analyzer: Gateway ports on the gateway's Service (IngressGatewayPortAnalyzer)") {
    const std::string yaml =
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        "metadata: {name: gw, namespace: edge}\n"
        "spec:\n  selector: {app: edge-gw}\n  servers:\n"
        "  - port: {number: 8443, name: https, protocol: HTTPS}\n    hosts: ['*']\n"
        "    tls: {mode: PASSTHROUGH}\n"
        "  - port: {number: 9000, name: http, protocol: HTTP}\n    hosts: ['*']\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: edge-gw-1\n  namespace: edge\n"
        "  labels: {app: edge-gw}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: edge-gw, namespace: edge}\n"
        "spec:\n  selector: {app: edge-gw}\n  ports:\n"
        // no protocol: TCP, as Kubernetes defaults it; targetPort 8443 offers the server port
        "  - {name: https, port: 443, targetPort: 8443}\n"
        "  - {name: udp, port: 9000, protocol: UDP}\n";
    model::Config c = model::load_yaml(yaml, "gw.yaml");
    REQUIRE(!c.has_errors());
    auto m = analyze::analyze(c, {{Analyzer::IngressGatewayPort}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].str() ==
          "Warning [IST0162] (Gateway edge/gw gw.yaml:1) The gateway is listening on a target "
          "port (port 9000) that is not defined in the Service associated with its workload "
          "instances (Pod selector app=edge-gw). If you need to access the gateway port through "
          "the gateway Service, it will not be available.");
    // A selector no pod has: IST0101, and no port messages.
    c = model::load_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
        "spec:\n  selector: {istio: ingress, app: x}\n  servers:\n"
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n",
        "gw.yaml");
    m = analyze::analyze(c, {{Analyzer::IngressGatewayPort}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].str() ==
          "Error [IST0101] (Gateway default/gw gw.yaml:1) Referenced selector not found: "
          "\"app=x,istio=ingress\"");
    // istioctl's default ingress gateway (files only) lives in --istioNamespace.
    c = model::load_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']\n"
        "    tls: {mode: PASSTHROUGH}\n",
        "gw.yaml");
    CHECK(analyze::analyze(c, {{Analyzer::IngressGatewayPort}}).empty());
}

TEST_CASE("analyzer: Service port names (PortNameAnalyzer) beyond upstream's cases") {
    model::Config c = model::load_yaml(R"(apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports:
  - {name: web, port: 8080, appProtocol: http}   # appProtocol names the protocol: exempt
  - {name: http, port: 8081, appProtocol: h2c}   # appProtocol replaces the name: h2c is unknown
  - {name: grpc-web-ui, port: 8082}              # grpc-web is a protocol of its own
  - {name: dns, port: 53}                        # a well-known port is TCP
  - {name: stats, port: 9125, protocol: UDP}     # UDP is UDP, whatever its name
  - {name: HTTP2-x, port: 8083}                  # the prefix is read in any case
  - {name: admin, port: 8084, targetPort: admin-port}
)",
                                       "svc.yaml");
    REQUIRE(!c.has_errors());
    std::vector<std::string> lines;
    for (const auto& m : analyze::analyze(c, {{Analyzer::PortName}}))
        lines.push_back(m.str());
    CHECK(lines == std::vector<std::string>{
                       "Info [IST0118] (Service shop/api svc.yaml:1) Port name http (port: 8081, "
                       "targetPort: 0) doesn't follow the naming convention of Istio port.",
                       "Info [IST0118] (Service shop/api svc.yaml:1) Port name admin (port: "
                       "8084, targetPort: admin-port) doesn't follow the naming convention of "
                       "Istio port."});
}

TEST_CASE("analyzer: JWT claim routes need a RequestAuthentication on the gateway's pods") {
    const std::string base = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: claims, namespace: web}
spec:
  hosts: [app.example.com]
  gateways: [edge/gw]
  http:
  - match:
    - withoutHeaders:
        "@request.auth.claims[group]": {exact: admin}
    route:
    - destination: {host: app.web.svc.cluster.local}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  selector: {app: edge}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/app.example.com"]
---
apiVersion: v1
kind: Pod
metadata: {name: edge-1, namespace: edge, labels: {app: edge}}
)";
    model::Config c = model::load_yaml(base, "vs.yaml");
    auto m = analyze::analyze(c, {{Analyzer::JwtClaimRoute}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].str() ==
          "Error [IST0149] (VirtualService web/claims vs.yaml:1) The virtual service uses the JWT "
          "claim based routing (key: @request.auth.claims[group]) but found no request "
          "authentication for the gateway (edge/gw) pod (edge-1). The request authentication "
          "must first be applied for the gateway pods to validate the JWT token and make the "
          "claims available for routing.");
    // A RequestAuthentication in istio-system (any selector matching the pod) is enough; one in
    // a third namespace is not.
    const std::string ra = "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                           "metadata: {name: jwt, namespace: NS}\nspec:\n"
                           "  selector: {matchLabels: {app: edge}}\n"
                           "  jwtRules: [{issuer: https://issuer.example.com}]\n";
    auto with_ra = [&](const std::string& ns) {
        std::string doc = ra;
        doc.replace(doc.find("NS"), 2, ns);
        model::Config cfg = model::load_yaml(base + doc, "vs.yaml");
        REQUIRE(!cfg.has_errors());
        return analyze::analyze(cfg, {{Analyzer::JwtClaimRoute}}).size();
    };
    CHECK(with_ra("istio-system") == 0);
    CHECK(with_ra("edge") == 0);
    CHECK(with_ra("web") == 1);
}

TEST_CASE("analyzer: injection and the proxy's UID on Namespaces, Pods and Deployments") {
    model::Config c = model::load_yaml(R"(apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: with-proxy, namespace: shop}
spec:
  initContainers:
  - {name: istio-proxy, image: remora/proxy}    # a native sidecar counts
  containers:
  - {name: app, image: app}
---
apiVersion: v1
kind: Pod
metadata: {name: proxy-uid-ok, namespace: shop}
spec:
  containers:
  - {name: app, image: app, securityContext: {runAsUser: 1000}}
  - {name: istio-proxy, image: remora/proxy, securityContext: {runAsUser: 1337}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: shop, labels: {istio: pilot}}
spec:
  template:
    spec:
      securityContext: {runAsUser: 1337}        # Istio's own control plane is left out
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  template:
    spec:
      securityContext: {runAsUser: 1337}        # upstream reads Pods and Deployments only
)",
                                       "ns.yaml");
    REQUIRE(!c.has_errors());
    CHECK(analyze::analyze(c, {{Analyzer::Injection, Analyzer::ApplicationUid}}).empty());
    // A Namespace message names no namespace.
    c = model::load_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n", "ns.yaml");
    auto m = analyze::analyze(c, {{Analyzer::Injection}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].origin() == "Namespace plain");
    CHECK(m[0].str().starts_with("Info [IST0102] (Namespace plain ns.yaml:1) The namespace is "
                                 "not enabled for Istio injection."));
}

TEST_CASE("analyzer: Istio annotation values (annotations.K8sAnalyzer) as the injector checks them") {
    auto problems = [](const std::string& annotations, const std::string& labels = "{}") {
        model::Config c = model::load_yaml("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
                                           "  namespace: shop\n  labels: " +
                                               labels + "\n  annotations:\n" + annotations,
                                           "pod.yaml");
        std::vector<std::string> out;
        for (const auto& m : analyze::analyze(c, {{Analyzer::Annotations}}))
            out.push_back(m.code + " " + m.text);
        return out;
    };
    using V = std::vector<std::string>;
    CHECK(problems("    traffic.sidecar.istio.io/includeInboundPorts: '*'\n"
                   "    traffic.sidecar.istio.io/excludeOutboundPorts: ' 80, 443'\n"
                   "    traffic.sidecar.istio.io/includeOutboundIPRanges: 10.0.0.0/8,fd00::/8\n"
                   "    sidecar.istio.io/proxyCPU: 100m\n"
                   "    sidecar.istio.io/proxyMemoryLimit: 1Gi\n"
                   "    prometheus.istio.io/merge-metrics: 'False'\n"
                   "    sidecar.istio.io/interceptionMode: TPROXY\n"
                   "    traffic.sidecar.istio.io/excludeInterfaces: eth1,net-2\n"
                   "    example.com/other: x\n")
              .empty());
    CHECK(problems("    traffic.sidecar.istio.io/excludeInboundPorts: 80, http\n") ==
          V{"IST0125 Invalid annotation traffic.sidecar.istio.io/excludeInboundPorts: "
            "excludeInboundPorts invalid: failed parsing port ' http': failed parsing port "
            "' http': strconv.ParseUint: parsing \"http\": invalid syntax"});
    CHECK(problems("    status.sidecar.istio.io/port: '70000'\n") ==
          V{"IST0125 Invalid annotation status.sidecar.istio.io/port: excludeInboundPorts "
            "invalid: failed parsing port '70000': strconv.ParseUint: parsing \"70000\": value "
            "out of range"});
    CHECK(problems("    traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.0.0.1\n") ==
          V{"IST0125 Invalid annotation traffic.sidecar.istio.io/excludeOutboundIPRanges: "
            "excludeIPRanges invalid: failed parsing cidr '10.0.0.1': "
            "netip.ParsePrefix(\"10.0.0.1\"): no '/'"});
    CHECK(problems("    sidecar.istio.io/interceptionMode: redirect\n") ==
          V{"IST0125 Invalid annotation sidecar.istio.io/interceptionMode: interceptionMode "
            "invalid, use REDIRECT,TPROXY,NONE: redirect"});
    CHECK(problems("    sidecar.istio.io/proxyMemory: 1 GB\n").size() == 1);
    // Deprecated: the annotation, unless the replacing label is there too.
    CHECK(problems("    sidecar.istio.io/inject: 'true'\n") ==
          V{"IST0135 Annotation \"sidecar.istio.io/inject\" has been deprecated in favor of the "
            "\"sidecar.istio.io/inject\" label and may not work in future Istio versions."});
    CHECK(problems("    sidecar.istio.io/inject: 'true'\n", "{sidecar.istio.io/inject: 'true'}")
              .empty());
    // Set by Istio itself: not the user's to fix, even where it does not belong.
    model::Config c = model::load_yaml(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n"
        "    sidecar.istio.io/status: '{}'\n    istio.io/rev: canary\n"
        "    sidecar.istio.io/proxyCPU: 100m\n",
        "svc.yaml");
    auto m = analyze::analyze(c, {{Analyzer::Annotations}});
    REQUIRE(m.size() == 1);
    CHECK(m[0].text ==
          "Misplaced annotation: sidecar.istio.io/proxyCPU can only be applied to Pod");
}

TEST_CASE("analyzer: a ServiceEntry exported everywhere conflicts with one visible in a namespace") {
    auto se = [](const std::string& name, const std::string& ns, const std::string& protocol,
                 const std::string& export_to) {
        return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name +
               ", namespace: " + ns + "}\nspec:\n  hosts: [api.example.com]\n  ports:\n"
               "  - {number: 8443, name: p, protocol: " +
               protocol + "}\n  resolution: DNS\n  exportTo: " + export_to + "\n---\n";
    };
    model::Config c = model::load_yaml(se("local", "ns1", "https", "[.]") +
                                           se("wide", "ns2", "TLS", "['*']") +
                                           se("same", "ns3", "HTTPS", "[ns1]"),
                                       "se.yaml");
    REQUIRE(!c.has_errors());
    std::vector<std::string> got;
    for (const auto& m : analyze::analyze(c, {{Analyzer::ServiceEntryProtocols}}))
        got.push_back(m.ns + "/" + m.name + ": " + m.text);
    // Protocols compare in any case: only wide's TLS differs.
    const std::string text = "Multiple ServiceEntries (ns1/local, ns2/wide, ns3/same) define the "
                             "same host \"api.example.com\" and port 8443 with conflicting "
                             "protocols (HTTPS, TLS).";
    CHECK(sorted(got) == sorted({"ns1/local: " + text, "ns2/wide: " + text, "ns3/same: " + text}));
}

TEST_CASE("analyzer: a mesh Deployment's Services (MultiServiceAnalyzer); no selector selects none") {
    auto run_with = [](const std::string& second_selector) {
        model::Config c = model::load_yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dns, namespace: shop}\n"
            "spec:\n  template:\n    metadata:\n"
            "      labels: {app: dns}\n"
            "      annotations: {sidecar.istio.io/inject: 'true'}\n"  // the pod's, not the Deployment's
            "    spec:\n      containers: [{name: dns, image: dns}]\n---\n"
            "apiVersion: v1\nkind: Service\nmetadata: {name: dns-tcp, namespace: shop}\n"
            "spec:\n  selector: {app: dns}\n  ports: [{name: tcp-dns, port: 53}]\n---\n"
            "apiVersion: v1\nkind: Service\nmetadata: {name: dns-udp, namespace: shop}\n"
            "spec:\n" +
                second_selector + "  ports: [{name: udp-dns, port: 53, protocol: UDP}]\n",
            "dns.yaml");
        std::vector<std::string> out;
        for (const auto& m : analyze::analyze(c, {{Analyzer::ServiceAssociation}}))
            out.push_back(m.code + " " + m.text);
        return out;
    };
    CHECK(run_with("").empty());
    CHECK(run_with("  selector: {app: dns}\n") ==
          std::vector<std::string>{
              "IST0116 This deployment dns is associated with multiple services using port 53 "
              "but different protocols: [shop/dns-tcp shop/dns-udp]"});
}

TEST_CASE("analyzer: IST0175 names five RequestAuthentications and counts the rest") {
    std::string yaml =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: istiod\n"
        "  namespace: istio-system\n  labels: {app: istiod}\nspec:\n  template:\n    spec:\n"
        "      containers:\n      - name: discovery\n        env:\n"
        "        - {name: BLOCKED_CIDRS_IN_JWKS_URIS, valueFrom: {configMapKeyRef: {name: x}}}\n";
    for (int i = 1; i <= 7; ++i) {
        yaml += "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: "
                "{name: ra-" +
                std::to_string(i) + "}\nspec: {}\n";
    }
    model::Config c = model::load_yaml(yaml, "ra.yaml");
    auto m = analyze::analyze(c, {{Analyzer::BlockedCidrs}});
    REQUIRE(m.size() == 1);  // an env var without a value is not configured
    CHECK(m[0].text == "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but 7 RequestAuthentication "
                       "resource(s) exist (default/ra-1, default/ra-2, default/ra-3, default/ra-4, "
                       "default/ra-5, and 2 more). Consider configuring it to restrict JWKS URI "
                       "fetches to trusted networks.");
}
