// Translation on Istio's bookinfo samples: clusters per subset, routes in order with weights and
// matches, merged DestinationRule policy, inbound mTLS inheritance; deterministic.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "control/translate/translate.h"
#include "proxy/snapshot/snapshot_json.h"

using namespace remora::control;
namespace snap = remora::proxy::snapshot;

namespace {

std::filesystem::path samples() {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir, "REMORA_ISTIO_SAMPLES must point at shared/istio-samples");
    return dir;
}

// One meshed pod per reviews version, as the local cluster registers them.
const char* kReviewsPods = R"(
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1-pod, namespace: default}
spec:
  address: 198.18.0.11
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2-pod, namespace: default}
spec:
  address: 198.18.0.12
  labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3-pod, namespace: default}
spec:
  address: 198.18.0.13
  ports: {http: 19080}
  labels: {app: reviews, version: v3}
  serviceAccount: bookinfo-reviews
)";

model::Config bookinfo(std::initializer_list<const char*> files, const char* extra = "") {
    model::Config c;
    model::load_path(c, samples() / "bookinfo.yaml");
    for (const char* f : files) model::load_path(c, samples() / f);
    model::load_yaml(c, kReviewsPods, "pods.yaml");
    if (*extra) model::load_yaml(c, extra, "extra.yaml");
    for (const auto* e : c.errors()) FAIL_CHECK(e->str());
    return c;
}

translate::WorkloadRef productpage() { return {"default", "bookinfo-productpage", {{"app", "productpage"}, {"version", "v1"}}}; }

const snap::Cluster* cluster(const snap::Snapshot& s, const std::string& name) {
    for (const auto& c : s.clusters) {
        if (c.name == name) return &c;
    }
    return nullptr;
}

const snap::VirtualHost* vhost(const snap::Snapshot& s, const std::string& name) {
    for (const auto& v : s.virtual_hosts) {
        if (v.name == name) return &v;
    }
    return nullptr;
}

const std::string kReviews = "reviews.default.svc.cluster.local";

}  // namespace

TEST_CASE("a cluster per service port and per subset, endpoints picked by subset labels") {
    auto s = translate::translate(bookinfo({"destination-rule-all.yaml"}), productpage());
    const auto* all = cluster(s, "outbound|9080||" + kReviews);
    REQUIRE(all);
    CHECK(all->endpoints.size() == 3);
    const auto* v2 = cluster(s, "outbound|9080|v2|" + kReviews);
    REQUIRE(v2);
    REQUIRE(v2->endpoints.size() == 1);
    CHECK(v2->endpoints[0].address == "198.18.0.12");
    CHECK(v2->endpoints[0].port == 9080);
    CHECK(v2->endpoints[0].mtls);
    CHECK(v2->endpoints[0].identity == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews");
    const auto* v3 = cluster(s, "outbound|9080|v3|" + kReviews);
    REQUIRE(v3);
    REQUIRE(v3->endpoints.size() == 1);
    CHECK(v3->endpoints[0].port == 19080);  // the WorkloadEntry's named port
    CHECK_FALSE(v3->endpoints[0].mtls);      // no sidecar label: plaintext, as auto mTLS does
    CHECK(v3->endpoints[0].identity.empty());
    CHECK(cluster(s, "outbound|9080|v1|ratings.default.svc.cluster.local"));
    CHECK(cluster(s, "outbound|9080||productpage.default.svc.cluster.local"));
    CHECK(v2->load_balancer.simple == "LEAST_REQUEST");
    CHECK(v2->tls_mode == "ISTIO_MUTUAL");
    CHECK_FALSE(v2->outlier_detection);
}

TEST_CASE("no VirtualService: one default route to the whole service, Istio's default retries") {
    auto s = translate::translate(bookinfo({}), productpage());
    const auto* vh = vhost(s, kReviews + ":9080");
    REQUIRE(vh);
    for (const char* d : {"reviews", "reviews:9080", "reviews.default", "reviews.default.svc:9080",
                          "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080"}) {
        CAPTURE(d);
        CHECK(std::find(vh->domains.begin(), vh->domains.end(), d) != vh->domains.end());
    }
    REQUIRE(vh->routes.size() == 1);
    const auto& r = vh->routes[0];
    CHECK(r.matches.empty());
    REQUIRE(r.clusters.size() == 1);
    CHECK(r.clusters[0].cluster == "outbound|9080||" + kReviews);
    CHECK(r.retries.attempts == 2);
    CHECK(r.retries.retry_on == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes");
    CHECK(r.retries.retriable_status_codes == std::vector<uint32_t>{503});
    CHECK_FALSE(r.timeout);
}

TEST_CASE("a short name resolves only in the caller's own namespace") {
    auto s = translate::translate(bookinfo({}), {"other", "sa", {}});
    const auto* vh = vhost(s, kReviews + ":9080");
    REQUIRE(vh);
    CHECK(std::find(vh->domains.begin(), vh->domains.end(), "reviews") == vh->domains.end());
    CHECK(std::find(vh->domains.begin(), vh->domains.end(), "reviews.default") != vh->domains.end());
}

TEST_CASE("weighted canary: 80/20 between subsets") {
    auto s = translate::translate(bookinfo({"destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml"}),
                                  productpage());
    const auto* vh = vhost(s, kReviews + ":9080");
    REQUIRE(vh);
    REQUIRE(vh->routes.size() == 1);
    const auto& c = vh->routes[0].clusters;
    REQUIRE(c.size() == 2);
    CHECK(c[0].cluster == "outbound|9080|v1|" + kReviews);
    CHECK(c[0].weight == 80);
    CHECK(c[1].cluster == "outbound|9080|v2|" + kReviews);
    CHECK(c[1].weight == 20);
}

TEST_CASE("rules in order: jason's header match first, then everyone else") {
    auto s = translate::translate(
        bookinfo({"destination-rule-all.yaml", "virtual-service-reviews-jason-v2-v3.yaml"}), productpage());
    const auto* vh = vhost(s, kReviews + ":9080");
    REQUIRE(vh);
    REQUIRE(vh->routes.size() == 2);
    REQUIRE(vh->routes[0].matches.size() == 1);
    REQUIRE(vh->routes[0].matches[0].headers.size() == 1);
    CHECK(vh->routes[0].matches[0].headers[0].first == "end-user");
    CHECK(vh->routes[0].matches[0].headers[0].second.value == "jason");
    CHECK(vh->routes[0].matches[0].headers[0].second.kind == snap::StringMatcher::Kind::exact);
    CHECK(vh->routes[0].clusters[0].cluster == "outbound|9080|v2|" + kReviews);
    CHECK(vh->routes[1].matches.empty());
    CHECK(vh->routes[1].clusters[0].cluster == "outbound|9080|v3|" + kReviews);
}

TEST_CASE("fault, timeout and retries carried over; numeric retryOn codes") {
    auto s = translate::translate(bookinfo({"destination-rule-all.yaml"}, R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - fault:
      abort: {httpStatus: 500, percentage: {value: 10}}
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 200ms, retryOn: "5xx,503,429"}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 25}
    route:
    - destination: {host: ratings, subset: v1}
)"),
                                  productpage());
    const auto* vh = vhost(s, "ratings.default.svc.cluster.local:9080");
    REQUIRE(vh);
    REQUIRE(vh->routes.size() == 1);
    const auto& r = vh->routes[0];
    REQUIRE(r.fault);
    CHECK(r.fault->abort_status == 500u);
    CHECK(r.fault->abort_percent == 10);
    CHECK(r.fault->delay == snap::Millis(7000));
    CHECK(r.timeout == snap::Millis(1500));
    CHECK(r.retries.attempts == 3);
    CHECK(r.retries.per_try_timeout == snap::Millis(200));
    CHECK(r.retries.retry_on == "5xx,retriable-status-codes");
    CHECK(r.retries.retriable_status_codes == std::vector<uint32_t>{503, 429});
    REQUIRE(r.mirrors.size() == 1);
    CHECK(r.mirrors[0].cluster == "outbound|9080|v3|" + kReviews);
    CHECK(r.mirrors[0].percent == 25);
}

TEST_CASE("DestinationRule policy: host level, then port level, then the subset's") {
    auto s = translate::translate(bookinfo({}, R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms, idleTimeout: 90s}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 10, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 15s, maxEjectionPercent: 100}
    retryBudget: {percent: 25}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
      tls: {mode: DISABLE}
)"),
                                  productpage());
    const auto* all = cluster(s, "outbound|9080||" + kReviews);
    REQUIRE(all);
    CHECK(all->load_balancer.simple == "RANDOM");  // port level beats host level
    CHECK(all->limits.max_connections == 1);
    CHECK(all->limits.connect_timeout == snap::Millis(250));
    CHECK(all->limits.tcp_idle_timeout == snap::Millis(90000));  // the TCP proxy's, apart from HTTP's
    CHECK(all->limits.idle_timeout == snap::Millis(30000));
    CHECK(all->limits.http1_max_pending_requests == 1);
    CHECK(all->limits.max_requests_per_connection == 10);
    CHECK(all->limits.retry_budget_percent == 25.0);
    CHECK(all->limits.retry_budget_min_concurrency == 3);  // Envoy's default minimum
    REQUIRE(all->outlier_detection);
    CHECK(all->outlier_detection->consecutive_5xx_errors == 3);
    CHECK(all->outlier_detection->base_ejection_time == snap::Millis(15000));
    CHECK(all->outlier_detection->max_ejection_percent == 100);
    const auto* v1 = cluster(s, "outbound|9080|v1|" + kReviews);
    REQUIRE(v1);
    CHECK(v1->load_balancer.hash_header == "x-user");
    CHECK(v1->limits.max_connections == 1);  // inherited from the host level
    CHECK(v1->limits.retry_budget_percent == 25.0);
    CHECK(v1->tls_mode == "DISABLE");
    REQUIRE(v1->endpoints.size() == 1);
    CHECK_FALSE(v1->endpoints[0].mtls);  // DISABLE: plaintext even to a sidecar
}

TEST_CASE("PeerAuthentication: workload over namespace over mesh; UNSET inherits; port level") {
    const char* policies = R"(
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: remora-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: legacy}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pp, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  mtls: {mode: UNSET}
  portLevelMtls:
    9080: {mode: DISABLE}
)";
    auto c = bookinfo({}, policies);
    auto pp = translate::translate(c, productpage());
    CHECK(pp.inbound.mtls_mode == "STRICT");  // UNSET at the workload: the mesh's STRICT
    CHECK(pp.inbound.port_mtls.at(9080) == "DISABLE");
    auto legacy = translate::translate(c, {"legacy", "sa", {{"app", "old"}}});
    CHECK(legacy.inbound.mtls_mode == "PERMISSIVE");
    CHECK(legacy.inbound.port_mtls.empty());
    auto none = translate::translate(bookinfo({}), productpage());
    CHECK(none.inbound.mtls_mode == "PERMISSIVE");  // Istio's default with no policy at all
}

TEST_CASE("translation is deterministic and skips invalid resources with a note") {
    auto c = bookinfo({"destination-rule-all.yaml", "virtual-service-reviews-90-10.yaml"});
    auto a = translate::translate(c, productpage());
    auto b = translate::translate(c, productpage());
    REQUIRE(a.clusters.size() == b.clusters.size());
    for (size_t i = 0; i < a.clusters.size(); ++i) CHECK(a.clusters[i].name == b.clusters[i].name);
    REQUIRE(a.virtual_hosts.size() == b.virtual_hosts.size());
    for (size_t i = 0; i < a.virtual_hosts.size(); ++i) CHECK(a.virtual_hosts[i].name == b.virtual_hosts[i].name);
    CHECK(std::is_sorted(a.clusters.begin(), a.clusters.end(),
                         [](const auto& x, const auto& y) { return x.name < y.name; }));
    CHECK(a.notes.empty());

    model::Config bad = c;
    model::load_yaml(bad, R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [details]
  http:
  - route:
    - destination: {host: details}
    retries: {attempts: 0, perTryTimeout: 1s}
)", "broken.yaml");
    REQUIRE(bad.has_errors());
    auto t = translate::translate(bad, productpage());
    REQUIRE(t.notes.size() == 1);
    CHECK(t.notes[0] == "1 invalid resource(s) left out");
    const auto* vh = vhost(t, "details.default.svc.cluster.local:9080");
    REQUIRE(vh);
    CHECK(vh->routes[0].name == "default");  // the broken VirtualService is not used
}

TEST_CASE("sourceLabels and sourceNamespace are decided for the workload at translation") {
    auto c = bookinfo({"destination-rule-all.yaml"}, R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{sourceNamespace: test}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
)");
    for (const auto* w : c.warnings()) CHECK_MESSAGE(w->str().find("source") == std::string::npos, w->str());
    auto pp = translate::translate(c, productpage());
    const auto* vh = vhost(pp, kReviews + ":9080");
    REQUIRE(vh);
    REQUIRE(vh->routes.size() == 2);  // the sourceNamespace rule is not for productpage
    CHECK(vh->routes[0].clusters[0].cluster == "outbound|9080|v2|" + kReviews);
    CHECK(vh->routes[0].matches.size() == 1);
    auto other = translate::translate(c, {"test", "sa", {{"app", "ratings"}}});
    const auto* vh2 = vhost(other, kReviews + ":9080");
    REQUIRE(vh2);
    REQUIRE(vh2->routes.size() == 2);  // the sourceLabels rule is not for ratings
    CHECK(vh2->routes[0].clusters[0].cluster == "outbound|9080|v3|" + kReviews);
}

TEST_CASE("a Kubernetes Service's clusterIP is one of its virtual host's names; names are recorded") {
    auto s = translate::translate(bookinfo({"destination-rule-all.yaml", "virtual-service-all-v1.yaml"},
                                           R"(
apiVersion: v1
kind: Service
metadata: {name: details2, namespace: default}
spec:
  clusterIP: 198.19.0.44
  clusterIPs: [198.19.0.44, "fd00::44"]
  selector: {app: details}
  ports: [{name: http, port: 9080}]
)"),
                                  productpage());
    const auto* vh = vhost(s, "details2.default.svc.cluster.local:9080");
    REQUIRE(vh);
    for (const char* d : {"198.19.0.44", "198.19.0.44:9080", "fd00::44"}) {
        CAPTURE(d);
        CHECK(std::find(vh->domains.begin(), vh->domains.end(), d) != vh->domains.end());
    }
    const auto* v1 = cluster(s, "outbound|9080|v1|" + kReviews);
    REQUIRE(v1);
    CHECK(v1->destination_rule == "reviews.default");
    const auto* reviews = vhost(s, kReviews + ":9080");
    REQUIRE(reviews);
    CHECK(reviews->routes.at(0).virtual_service == "reviews.default");
}

TEST_CASE("port protocols as istiod reads them: appProtocol, then the name's prefix; tcp routes") {
    auto s = translate::translate(bookinfo({}, R"(
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 198.19.0.50
  selector: {app: db}
  ports:
  - {name: tcp-postgres, port: 5432}
  - {name: redis, port: 6379}
  - {name: metrics, port: 9090}
  - {name: web, port: 8080, appProtocol: http}
  - {name: http-but-h2c, port: 8081, appProtocol: kubernetes.io/h2c}
  - {name: grpc-web-ui, port: 8082}
  - {name: grpc-api, port: 8083}
  - {port: 8084}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [mongo.example]
  addresses: [198.19.0.51]
  ports: [{number: 27017, name: db, protocol: MONGO}, {number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 198.18.0.60}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 6379}]
    route:
    - {destination: {host: db, port: {number: 5432}}, weight: 30}
    - {destination: {host: db, port: {number: 6379}}, weight: 70}
)"),
                                  productpage());
    auto protocol = [&](const std::string& vh_name) {
        const auto* vh = vhost(s, vh_name);
        REQUIRE_MESSAGE(vh, vh_name);
        return vh->protocol;
    };
    const std::string db = "db.default.svc.cluster.local:";
    CHECK(protocol(kReviews + ":9080") == "HTTP");
    CHECK(protocol(db + "5432") == "TCP");
    CHECK(protocol(db + "6379") == "Redis");
    CHECK(protocol(db + "9090") == "");  // no known prefix: detected by the proxy
    CHECK(protocol(db + "8080") == "HTTP");
    CHECK(protocol(db + "8081") == "HTTP2");  // appProtocol wins over the name
    CHECK(protocol(db + "8082") == "GRPC-Web");
    CHECK(protocol(db + "8083") == "GRPC");
    CHECK(protocol(db + "8084") == "");
    CHECK(protocol("mongo.example:27017") == "Mongo");
    CHECK(protocol("mongo.example:443") == "TLS");

    const auto* routed = vhost(s, db + "6379");
    REQUIRE(routed->tcp_clusters.size() == 2);
    CHECK(routed->tcp_virtual_service == "db.default");
    CHECK(routed->tcp_clusters[0].cluster == "outbound|5432||db.default.svc.cluster.local");
    CHECK(routed->tcp_clusters[0].weight == 30);
    CHECK(routed->tcp_clusters[1].weight == 70);
    // A port no tcp route names: its own cluster.
    const auto* plain = vhost(s, db + "5432");
    REQUIRE(plain->tcp_clusters.size() == 1);
    CHECK(plain->tcp_clusters[0].cluster == "outbound|5432||db.default.svc.cluster.local");
    CHECK(plain->tcp_virtual_service.empty());
    // The VirtualService has tcp[] routes only: HTTP ports keep their default route.
    const auto* web = vhost(s, db + "8080");
    REQUIRE(web->routes.size() == 1);
    CHECK(web->routes[0].name == "default");
}

TEST_CASE("tls[] routes: sniHosts per port and caller, in order, with weighted destinations") {
    auto s = translate::translate(bookinfo({}, R"(
apiVersion: v1
kind: Service
metadata: {name: store, namespace: default}
spec:
  clusterIP: 198.19.0.70
  selector: {app: store}
  ports: [{name: tls, port: 443}, {name: https-alt, port: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: store-b, namespace: default}
spec:
  clusterIP: 198.19.0.71
  selector: {app: store-b}
  ports: [{name: tls, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: store, namespace: default}
spec:
  hosts: [store]
  tls:
  - match: [{port: 443, sniHosts: [b.store.example, "*.b.example"]}]
    route: [{destination: {host: store-b}}]
  - match: [{sniHosts: [split.store.example]}]
    route:
    - {destination: {host: store}, weight: 90}
    - {destination: {host: store-b}, weight: 10}
  - match: [{port: 443, sniHosts: [other.store.example], sourceLabels: {app: nobody}}]
    route: [{destination: {host: store-b}}]
)"),
                                  productpage());
    const auto* vh = vhost(s, "store.default.svc.cluster.local:443");
    REQUIRE(vh);
    CHECK(vh->tls_virtual_service == "store.default");
    REQUIRE(vh->tls_routes.size() == 2);  // the third names another caller
    CHECK(vh->tls_routes[0].sni_hosts == std::vector<std::string>{"b.store.example", "*.b.example"});
    REQUIRE(vh->tls_routes[0].clusters.size() == 1);
    CHECK(vh->tls_routes[0].clusters[0].cluster == "outbound|443||store-b.default.svc.cluster.local");
    CHECK(vh->tls_routes[0].clusters[0].weight == 100);
    REQUIRE(vh->tls_routes[1].clusters.size() == 2);
    CHECK(vh->tls_routes[1].clusters[0].weight == 90);
    // Connections whose server name no route names keep the port's own cluster.
    REQUIRE(vh->tcp_clusters.size() == 1);
    CHECK(vh->tcp_clusters[0].cluster == "outbound|443||store.default.svc.cluster.local");
    // Port 8443: only the block without a port applies.
    const auto* alt = vhost(s, "store.default.svc.cluster.local:8443");
    REQUIRE(alt);
    REQUIRE(alt->tls_routes.size() == 1);
    CHECK(alt->tls_routes[0].sni_hosts == std::vector<std::string>{"split.store.example"});
    // Through the snapshot's JSON form (what remora-control sends) and back.
    auto again = remora::proxy::snapshot::from_json(remora::proxy::snapshot::to_json(s));
    const auto* vh2 = vhost(again, "store.default.svc.cluster.local:443");
    REQUIRE(vh2);
    REQUIRE(vh2->tls_routes.size() == 2);
    CHECK(vh2->tls_routes[1].sni_hosts == vh->tls_routes[1].sni_hosts);
    CHECK(vh2->tls_routes[1].clusters[1].weight == 10);
    CHECK(vh2->tls_virtual_service == "store.default");
}

TEST_CASE("exportTo: a resource is in the snapshots of the namespaces it is exported to only") {
    auto c = bookinfo({}, R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-here, namespace: default}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http:
  - timeout: 3s
    route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  exportTo: [".", team-b]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-lb, namespace: default}
spec:
  host: reviews
  exportTo: [team-c]
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: v1
kind: Service
metadata:
  name: hidden
  namespace: default
  annotations: {networking.istio.io/exportTo: "."}
spec:
  ports: [{name: http, port: 80}]
)");
    auto here = translate::translate(c, productpage());
    auto there = translate::translate(c, {"team-b", "sa", {}});
    auto elsewhere = translate::translate(c, {"team-c", "sa", {}});
    // The VirtualService: its own namespace only.
    REQUIRE(vhost(here, kReviews + ":9080"));
    CHECK(vhost(here, kReviews + ":9080")->routes.front().virtual_service == "reviews-here.default");
    REQUIRE(vhost(there, kReviews + ":9080"));
    CHECK(vhost(there, kReviews + ":9080")->routes.front().virtual_service.empty());
    // The ServiceEntry: default and team-b.
    CHECK(vhost(here, "api.example.com:443"));
    CHECK(vhost(there, "api.example.com:443"));
    CHECK_FALSE(vhost(elsewhere, "api.example.com:443"));
    // The DestinationRule exported to team-c only: not in its own namespace's snapshots.
    REQUIRE(cluster(here, "outbound|9080||" + kReviews));
    CHECK(cluster(here, "outbound|9080||" + kReviews)->destination_rule.empty());
    REQUIRE(cluster(elsewhere, "outbound|9080||" + kReviews));
    CHECK(cluster(elsewhere, "outbound|9080||" + kReviews)->destination_rule == "reviews-lb.default");
    // The Service's annotation.
    CHECK(vhost(here, "hidden.default.svc.cluster.local:80"));
    CHECK_FALSE(vhost(there, "hidden.default.svc.cluster.local:80"));
    CHECK(translate::exported_to("a", {}, "b"));
    CHECK(translate::exported_to("a", {"*"}, "b"));
    CHECK_FALSE(translate::exported_to("a", {"."}, "b"));
    CHECK(translate::exported_to("a", {"."}, "a"));
    CHECK_FALSE(translate::exported_to("a", {"~"}, "a"));
}

namespace {

// Three namespaces of services, a ServiceEntry, and a VirtualService in prod routing to a
// service of shared; each test adds the Sidecars it is about.
const char* kScopedMesh = R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: http-admin, port: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shared}
spec:
  selector: {app: cache}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: auth, namespace: shared}
spec:
  selector: {app: auth}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: dev}
spec:
  selector: {app: other}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: prod}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: prod}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /cache}}]
    route: [{destination: {host: cache.shared.svc.cluster.local}}]
  - route: [{destination: {host: web}}]
)";

model::Config scoped_mesh(const std::string& sidecars) {
    model::Config c;
    model::load_yaml(c, kScopedMesh, "mesh.yaml");
    if (!sidecars.empty()) model::load_yaml(c, sidecars, "sidecars.yaml");
    for (const auto* e : c.errors()) FAIL_CHECK(e->str());
    return c;
}

std::set<std::string> vhost_names(const snap::Snapshot& s) {
    std::set<std::string> out;
    for (const auto& v : s.virtual_hosts) out.insert(v.name);
    return out;
}

std::set<std::string> cluster_names(const snap::Snapshot& s) {
    std::set<std::string> out;
    for (const auto& c : s.clusters) out.insert(c.name);
    return out;
}

const std::string kWeb = "web.prod.svc.cluster.local", kDb = "db.prod.svc.cluster.local",
                  kCache = "cache.shared.svc.cluster.local", kAuth = "auth.shared.svc.cluster.local",
                  kOther = "other.dev.svc.cluster.local";

}  // namespace

TEST_CASE("Sidecar egress: a scoped snapshot holds the hosts its listeners import, as Istio") {
    // No Sidecar: the whole mesh.
    auto all = translate::translate(scoped_mesh(""), {"prod", "sa", {{"app", "web"}}});
    CHECK(vhost_names(all).size() == 7);
    CHECK(translate::sidecar_for(scoped_mesh(""), "prod", {}, {}) == nullptr);

    // The namespace's default: its own namespace and one host of shared.
    auto c = scoped_mesh(R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: prod}
spec:
  egress:
  - hosts: ["./*", "shared/auth.shared.svc.cluster.local"]
)");
    auto s = translate::translate(c, {"prod", "sa", {{"app", "web"}}});
    CHECK(vhost_names(s) == std::set<std::string>{kWeb + ":80", kWeb + ":9000", kDb + ":5432",
                                                  "api.example.com:443", kAuth + ":80"});
    // cache is left out as a virtual host but keeps its cluster: web's imported VirtualService
    // routes to it (istiod adds a VirtualService's destinations to the scope).
    CHECK(cluster_names(s) ==
          std::set<std::string>{"outbound|80||" + kWeb, "outbound|9000||" + kWeb, "outbound|5432||" + kDb,
                                "outbound|443||api.example.com", "outbound|80||" + kAuth,
                                "outbound|80||" + kCache});
    CHECK(vhost(s, kWeb + ":80")->routes.front().virtual_service == "web.prod");
    CHECK(std::find_if(s.notes.begin(), s.notes.end(), [](const std::string& n) {
              return n == "Sidecar prod/default scopes egress: 5 service port(s) imported, 2 left out";
          }) != s.notes.end());
    // dev has no Sidecar and there is no mesh default: the whole mesh.
    CHECK(vhost_names(translate::translate(c, {"dev", "sa", {}})).size() == 7);
}

TEST_CASE("Sidecar selection: workloadSelector, then the namespace's, then the root namespace's") {
    auto c = scoped_mesh(R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: remora-system}
spec:
  egress:
  - hosts: ["./*", "remora-system/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: prod}
spec:
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web-only, namespace: prod}
spec:
  workloadSelector: {labels: {app: web}}
  egress:
  - hosts: ["shared/*"]
)");
    translate::Options o;
    CHECK(translate::sidecar_for(c, "prod", {{"app", "web"}}, o)->meta.name == "web-only");
    CHECK(translate::sidecar_for(c, "prod", {{"app", "db"}}, o)->meta.name == "default");
    CHECK(translate::sidecar_for(c, "prod", {{"app", "db"}}, o)->meta.ns == "prod");
    CHECK(translate::sidecar_for(c, "dev", {}, o)->meta.ns == "remora-system");
    // The workload's own: shared alone.
    CHECK(vhost_names(translate::translate(c, {"prod", "sa", {{"app", "web"}}})) ==
          std::set<std::string>{kCache + ":80", kAuth + ":80"});
    // The namespace's: prod alone (with cache's cluster through web's VirtualService).
    auto db = translate::translate(c, {"prod", "sa", {{"app", "db"}}});
    CHECK(vhost_names(db) == std::set<std::string>{kWeb + ":80", kWeb + ":9000", kDb + ":5432",
                                                   "api.example.com:443"});
    // The root namespace's default, where "." is the workload's own namespace: dev's services.
    CHECK(vhost_names(translate::translate(c, {"dev", "sa", {}})) == std::set<std::string>{kOther + ":80"});
    CHECK(vhost_names(translate::translate(c, {"shared", "sa", {}})) ==
          std::set<std::string>{kCache + ":80", kAuth + ":80"});
}

TEST_CASE("Sidecar egress: port-scoped listeners, wildcards, ~ and */") {
    auto with = [](const std::string& spec, translate::WorkloadRef w = {"dev", "sa", {}}) {
        auto c = scoped_mesh("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: "
                             "default, namespace: dev}\nspec:\n" + spec);
        return vhost_names(translate::translate(c, w));
    };
    // Port 80 takes prod's services, every other port the catch-all listener's (shared).
    CHECK(with("  egress:\n  - port: {number: 80, protocol: HTTP, name: http}\n    hosts: [\"prod/*\"]\n"
               "  - hosts: [\"*/api.example.com\"]\n") ==
          std::set<std::string>{kWeb + ":80", "api.example.com:443"});
    // Without a catch-all listener nothing on another port is imported.
    CHECK(with("  egress:\n  - port: {number: 9000, protocol: HTTP, name: admin}\n    hosts: [\"*/*\"]\n") ==
          std::set<std::string>{kWeb + ":9000"});
    // A wildcard dnsName in any namespace.
    CHECK(with("  egress:\n  - hosts: [\"*/*.shared.svc.cluster.local\"]\n") ==
          std::set<std::string>{kCache + ":80", kAuth + ":80"});
    // ~/* imports nothing.
    CHECK(with("  egress:\n  - hosts: [\"~/*\"]\n").empty());
    // A ServiceEntry host belongs to the ServiceEntry's namespace.
    CHECK(with("  egress:\n  - hosts: [\"dev/api.example.com\"]\n").empty());
    CHECK(with("  egress:\n  - hosts: [\"prod/api.example.com\"]\n") == std::set<std::string>{"api.example.com:443"});
    // A Sidecar without egress (here: only outboundTrafficPolicy) imports */*.
    CHECK(with("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n").size() == 7);
}

TEST_CASE("Sidecar outboundTrafficPolicy: its mode goes in the snapshot of the proxies it applies to") {
    auto c = scoped_mesh(R"(
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: prod}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web-only, namespace: prod}
spec:
  workloadSelector: {labels: {app: web}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shared}
spec:
  egress:
  - hosts: ["./*"]
)");
    CHECK(translate::translate(c, {"prod", "sa", {{"app", "db"}}}).outbound_traffic_policy == "REGISTRY_ONLY");
    CHECK(translate::translate(c, {"prod", "sa", {{"app", "web"}}}).outbound_traffic_policy == "ALLOW_ANY");
    // A Sidecar without the field, or none at all: absent, the mesh's mode applies.
    CHECK(translate::translate(c, {"shared", "sa", {}}).outbound_traffic_policy.empty());
    CHECK(translate::translate(c, {"dev", "sa", {}}).outbound_traffic_policy.empty());
}
