// translate_shared: clusters made once and shared among the classes translated from the same
// inputs give, for every class, the text translate() gives; a cluster is made once even when
// classes are translated at the same time.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include "control/translate/translate.h"
#include "proxy/snapshot/snapshot_json.h"

using namespace remora::control;
namespace snap = remora::proxy::snapshot;

namespace {

// What can make one host's clusters differ between classes: a DestinationRule of the client's
// namespace (exported to it only) over the service's own, a Kubernetes Service visible to its
// namespace only and a ServiceEntry of the same host visible elsewhere, a Sidecar, and
// registered pods (more_workloads) beside WorkloadEntries.
const char* kExtra = R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-from-other, namespace: other}
spec:
  host: reviews.default.svc.cluster.local
  exportTo: [.]
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}
  subsets: [{name: only-v2, labels: {version: v2}}]
---
apiVersion: v1
kind: Service
metadata:
  name: ledger
  namespace: bank
  annotations: {networking.istio.io/exportTo: "."}
spec:
  selector: {app: ledger}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger-outside, namespace: other}
spec:
  hosts: [ledger.bank.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 198.18.9.9}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ledger-1, namespace: bank}
spec:
  address: 198.18.5.1
  labels: {app: ledger, security.istio.io/tlsMode: istio}
  serviceAccount: ledger
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: scoped}
spec:
  egress: [{hosts: ["default/reviews.default.svc.cluster.local", "bank/*"]}]
)";

model::Config inputs() {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir, "REMORA_ISTIO_SAMPLES must point at shared/istio-samples");
    model::Config c;
    model::load_path(c, std::filesystem::path(dir) / "bookinfo.yaml");
    model::load_path(c, std::filesystem::path(dir) / "destination-rule-all.yaml");
    model::load_path(c, std::filesystem::path(dir) / "virtual-service-reviews-80-20.yaml");
    model::load_yaml(c, kExtra, "extra.yaml");
    for (const auto* e : c.errors()) FAIL_CHECK(e->str());
    return c;
}

std::vector<model::WorkloadEntry> registered() {
    model::Config c;
    model::load_yaml(c, R"(
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2-pod, namespace: default}
spec:
  address: 198.18.0.12
  labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}
  serviceAccount: bookinfo-reviews
)", "pods.yaml");
    return c.workload_entries;
}

const std::vector<translate::WorkloadRef> kClasses = {
    {"default", "bookinfo-productpage", {{"app", "productpage"}, {"version", "v1"}}},
    {"default", "bookinfo-reviews", {{"app", "reviews"}, {"version", "v2"}}},
    {"other", "sa", {}},
    {"other", "sa", {{"app", "tool"}}},
    {"bank", "ledger", {{"app", "ledger"}}},
    {"scoped", "default", {}},
};

std::string shared_text(const translate::SharedTranslation& t) {
    std::vector<std::string_view> texts;
    for (const auto& c : t.clusters) texts.push_back(c->json);
    return snap::to_json_text(t.snapshot, texts);
}

}  // namespace

TEST_CASE("shared clusters: every class's text is translate()'s, and clusters are shared") {
    const model::Config config = inputs();
    const std::vector<model::WorkloadEntry> pods = registered();
    translate::ClusterTexts texts;
    std::size_t clusters = 0;
    for (const auto& w : kClasses) {
        CAPTURE(w.ns);
        const snap::Snapshot plain = translate::translate(config, w, {}, pods);
        const translate::SharedTranslation shared = translate::translate_shared(config, w, {}, pods, texts);
        CHECK(shared.snapshot.clusters.empty());
        REQUIRE(shared.clusters.size() == plain.clusters.size());
        for (std::size_t i = 0; i < plain.clusters.size(); ++i) {
            CHECK(shared.clusters[i]->name == plain.clusters[i].name);
            CHECK(shared.clusters[i]->service_host == plain.clusters[i].service_host);
            CHECK(shared.clusters[i]->json == snap::cluster_json_text(plain.clusters[i]));
        }
        CHECK(shared_text(shared) == snap::to_json_text(plain));
        clusters += plain.clusters.size();
    }
    // The classes differ where they should: the client namespace's rule, the Service or the
    // ServiceEntry of one host.
    auto find = [&](const translate::WorkloadRef& w, const std::string& name) -> std::string {
        for (const auto& c : translate::translate(config, w, {}, pods).clusters) {
            if (c.name == name) return snap::cluster_json_text(c);
        }
        return "";
    };
    const std::string reviews = "outbound|9080||reviews.default.svc.cluster.local";
    CHECK(find(kClasses[0], reviews) != find(kClasses[2], reviews));
    const std::string ledger = "outbound|8080||ledger.bank.svc.cluster.local";
    CHECK(find(kClasses[4], ledger).find("198.18.5.1") != std::string::npos);
    CHECK(find(kClasses[2], ledger).find("198.18.9.9") != std::string::npos);

    const translate::ClusterTexts::Stats s = texts.stats();
    CHECK(s.made + s.reused == clusters);
    CHECK(s.reused > s.made);  // bookinfo's clusters are the same for most classes
}

TEST_CASE("shared clusters: classes translated at once make each cluster once") {
    const model::Config config = inputs();
    const std::vector<model::WorkloadEntry> pods = registered();
    std::vector<std::string> expected;
    for (const auto& w : kClasses) expected.push_back(snap::to_json_text(translate::translate(config, w, {}, pods)));
    translate::ClusterTexts serial;
    for (const auto& w : kClasses) (void)translate::translate_shared(config, w, {}, pods, serial);
    const uint64_t distinct = serial.stats().made;

    for (int round = 0; round < 20; ++round) {
        translate::ClusterTexts texts;
        std::vector<std::vector<std::string>> got(4, std::vector<std::string>(kClasses.size()));
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                std::vector<std::size_t> order(kClasses.size());
                for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
                std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<unsigned>(round * 4 + t)));
                for (std::size_t i : order) {
                    got[t][i] = shared_text(translate::translate_shared(config, kClasses[i], {}, pods, texts));
                }
            });
        }
        for (auto& th : threads) th.join();
        for (int t = 0; t < 4; ++t) CHECK(got[t] == expected);
        CHECK(texts.stats().made == distinct);
    }
}
