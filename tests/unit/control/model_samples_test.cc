// Every Istio resource in shared/istio-samples loads as Istio reads it; the documents Istio itself
// rejects are listed with the reason. Spot checks that fields and defaults land in the structs.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "control/model/model.h"

namespace fs = std::filesystem;
using namespace remora::control::model;

namespace {

fs::path samples_dir() {
    const char* dir = std::getenv("REMORA_ISTIO_SAMPLES");
    REQUIRE_MESSAGE(dir != nullptr, "REMORA_ISTIO_SAMPLES is not set");
    return dir;
}

Config load_sample(const std::string& rel) {
    Config c;
    load_path(c, samples_dir() / rel);
    return c;
}

std::vector<std::string> documents(const std::string& rel) {
    std::ifstream in(samples_dir() / rel);
    std::stringstream text;
    text << in.rdbuf();
    std::vector<std::string> docs;
    std::string all = text.str(), sep = "\n---";
    std::size_t start = 0;
    while (true) {
        std::size_t at = all.find(sep, start);
        docs.push_back(all.substr(start, at == std::string::npos ? std::string::npos : at - start));
        if (at == std::string::npos) return docs;
        start = at + 1;
    }
}

template <class T>
const T& find(const std::vector<T>& v, const std::string& ns, const std::string& name) {
    for (const auto& r : v) {
        if (r.meta.ns == ns && r.meta.name == name) return r;
    }
    FAIL("no resource " << ns << "/" << name);
    throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("samples: every Istio resource loads, except those Istio rejects") {
    // "file|Kind ns/name" -> the error, which Istio (or Kubernetes) reports as well.
    const std::map<std::string, std::string> expected = {
        {"api-examples/virtual_service.examples.yaml|VirtualService nsA/productpage",
         // Kubernetes namespaces are DNS-1123 labels: the doc comment's "nsA" cannot exist.
         "metadata.namespace: \"nsA\" is not a DNS-1123 label"},
        {"api-examples/virtual_service.examples.yaml|VirtualService nsB/reviews",
         "metadata.namespace: \"nsB\" is not a DNS-1123 label"},
        {"api-examples/virtual_service.examples.yaml|VirtualService default/foo-redirect",
         // HTTPRedirect has no prefix_rewrite field (Envoy's name leaked into the example).
         "spec.http[0].redirect.prefix_rewrite: unknown field"},
        {"virtualservice_destinationhosts.yaml|ServiceEntry default-ignore/service-entry-ignore",
         // Istio's ValidateServiceEntry: a full wildcard host is not allowed.
         "spec.hosts[0]: invalid host *"},
        {"virtualservice_destinationhosts.yaml|VirtualService default/reviews-bogushost",
         // The analyzer input routes to `{}`: Istio says "destination is required".
         "spec.http[0].route[0].destination: destination is required"},
    };
    Config all;
    std::size_t files = 0;
    for (const fs::path& sub : {fs::path(), fs::path("api-examples"), fs::path("testdata")}) {
        for (const auto& entry : fs::directory_iterator(samples_dir() / sub)) {
            if (entry.path().extension() != ".yaml") continue;
            load_path(all, entry.path());
            ++files;
        }
    }
    CHECK(files >= 40);
    std::map<std::string, std::set<std::string>> rejected;
    for (const Diagnostic* d : all.errors()) {
        std::string rel = fs::relative(d->where.file, samples_dir()).string();
        rejected[rel + "|" + d->kind + " " + d->ns + "/" + d->name].insert(d->str());
    }
    std::set<std::string> got, want;
    for (const auto& [k, v] : rejected)
        got.insert(k);
    for (const auto& [k, v] : expected)
        want.insert(k);
    CHECK(got == want);
    for (const auto& [key, reason] : expected) {
        INFO(key);
        bool found = false;
        for (const auto& msg : rejected[key])
            found |= msg.find(reason) != std::string::npos;
        CHECK(found);
    }
    // Everything was seen: the six kinds and the Kubernetes objects.
    CHECK(all.virtual_services.size() >= 45);  // same-named ones replace each other
    CHECK(all.destination_rules.size() >= 15);
    CHECK(all.service_entries.size() >= 8);
    CHECK(all.peer_authentications.size() >= 8);
    CHECK(all.authorization_policies.size() >= 12);
    CHECK(all.kube_services.size() >= 8);
    CHECK(all.workloads.size() >= 8);
}

TEST_CASE("samples: weights, subsets and match blocks of bookinfo") {
    Config c = load_sample("virtual-service-reviews-80-20.yaml");
    REQUIRE(!c.has_errors());
    const auto& vs = find(c.virtual_services, "default", "reviews");
    CHECK(vs.meta.api_version == "networking.istio.io/v1");
    CHECK(vs.hosts == std::vector<std::string>{"reviews"});
    CHECK(vs.applies_to_mesh());
    REQUIRE(vs.http.size() == 1);
    REQUIRE(vs.http[0].route.size() == 2);
    CHECK(vs.http[0].route[0].destination.subset == "v1");
    CHECK(vs.http[0].route[0].weight == 80);
    CHECK(vs.http[0].route[1].weight == 20);
    CHECK(!vs.http[0].retries);

    Config j = load_sample("virtual-service-reviews-jason-v2-v3.yaml");
    const auto& jv = find(j.virtual_services, "default", "reviews");
    REQUIRE(jv.http.size() == 2);
    REQUIRE(jv.http[0].match.size() == 1);
    const auto& m = jv.http[0].match[0];
    REQUIRE(m.headers.count("end-user"));
    CHECK(m.headers.at("end-user").type == StringMatch::Type::Exact);
    CHECK(m.headers.at("end-user").value == "jason");

    Config d = load_sample("destination-rule-all.yaml");
    REQUIRE(!d.has_errors());
    const auto& dr = find(d.destination_rules, "default", "reviews");
    CHECK(dr.host == "reviews");
    REQUIRE(dr.subsets.size() == 3);
    CHECK(dr.subsets[2].name == "v3");
    CHECK(dr.subsets[2].labels.at("version") == "v3");
}

TEST_CASE("samples: faults, retries, timeouts and mirrors") {
    Config f = load_sample("virtual-service-ratings-test-delay.yaml");
    const auto& vs = find(f.virtual_services, "default", "ratings");
    REQUIRE(vs.http[0].fault);
    REQUIRE(vs.http[0].fault->delay);
    CHECK(vs.http[0].fault->delay->fixed_delay == std::chrono::seconds(7));
    CHECK(vs.http[0].fault->delay->percentage == 100.0);

    Config a = load_sample("virtual-service-ratings-test-abort.yaml");
    const auto& av = find(a.virtual_services, "default", "ratings");
    REQUIRE(av.http[0].fault->abort);
    CHECK(av.http[0].fault->abort->http_status == 500);

    // The examples reuse names; load each document alone so none replaces another.
    std::vector<VirtualService> examples;
    for (const std::string& doc : documents("api-examples/virtual_service.examples.yaml")) {
        Config one = load_yaml(doc, "example.yaml");
        for (auto& v : one.virtual_services)
            examples.push_back(v);
    }
    CHECK(examples.size() >= 19);
    bool saw_retry = false, saw_timeout = false;
    for (const auto& v : examples) {
        for (const auto& h : v.http) {
            if (h.retries && h.retries->attempts == 3) {
                saw_retry = true;
                CHECK(h.retries->per_try_timeout == std::chrono::seconds(2));
            }
            saw_timeout |= h.timeout == std::chrono::seconds(5);
        }
    }
    CHECK(saw_retry);
    CHECK(saw_timeout);

    Config m = load_sample("virtualservice_destinationrules.yaml");
    const auto& mv = find(m.virtual_services, "default", "reviews-mirror-bogussubset");
    REQUIRE(mv.http[0].mirror);
    CHECK(mv.http[0].mirror->host == "reviews");
    CHECK(mv.http[0].mirror->subset == "bogus");
    CHECK(!mv.http[0].mirror_percentage);
}

TEST_CASE("samples: connection pools, outlier detection and consistent hashing") {
    Config c = load_sample("testdata/destination-rule-all.yaml");
    REQUIRE(!c.has_errors());
    const DestinationRule* with_pool = nullptr;
    for (const auto& dr : c.destination_rules) {
        if (dr.traffic_policy && dr.traffic_policy->connection_pool) with_pool = &dr;
    }
    REQUIRE(with_pool);
    const auto& cp = *with_pool->traffic_policy->connection_pool;
    REQUIRE(cp.tcp);
    CHECK(cp.tcp->max_connections.has_value());
    bool hashed = false;
    for (const auto& dr : c.destination_rules) {
        for (const auto& s : dr.subsets) {
            if (s.traffic_policy && s.traffic_policy->load_balancer &&
                s.traffic_policy->load_balancer->consistent_hash) {
                hashed = true;
            }
        }
    }
    CHECK(hashed);
}

TEST_CASE("samples: security policies") {
    Config p = load_sample("peer-authn-strict-and-disable-port-mtls-in.yaml");
    REQUIRE(!p.has_errors());
    REQUIRE(p.peer_authentications.size() == 1);
    const auto& pa = p.peer_authentications[0];
    CHECK(pa.mtls_mode == "STRICT");
    CHECK(!pa.port_level_mtls.empty());

    Config a = load_sample("authz-valid.yaml");
    REQUIRE(!a.has_errors());
    const auto& full = find(a.authorization_policies, "default", "full");
    CHECK(full.action == "ALLOW");
    REQUIRE(full.rules);
    REQUIRE(full.rules->size() == 1);
    const Rule& rule = (*full.rules)[0];
    REQUIRE(rule.from.size() == 1);
    CHECK(rule.from[0].ip_blocks == std::vector<std::string>{"1.2.3.4", "5.6.0.0/16"});
    CHECK(rule.from[0].trust_domains.size() == 4);
    REQUIRE(rule.to.size() == 1);
    CHECK(rule.to[0].ports == std::vector<std::string>{"80", "90"});
    CHECK(rule.when.size() >= 10);

    Config d = load_sample("deny-and-allow-in.yaml");
    REQUIRE(!d.has_errors());
    bool deny = false;
    for (const auto& ap : d.authorization_policies)
        deny |= ap.action == "DENY";
    CHECK(deny);
}

TEST_CASE("samples: Kubernetes objects are read for the analyzer, with notes") {
    Config c = load_sample("bookinfo.yaml");
    CHECK(!c.has_errors());
    CHECK(c.virtual_services.empty());
    CHECK(c.kube_services.size() == 4);
    bool reviews_v3 = false;
    for (const auto& w : c.workloads) {
        reviews_v3 |= w.kind == "Deployment" && w.labels.count("version") &&
                      w.labels.at("app") == "reviews" && w.labels.at("version") == "v3";
    }
    CHECK(reviews_v3);
    bool skipped_sa = false;
    for (const auto& d : c.diagnostics) {
        skipped_sa |= d.severity == Severity::Note &&
                      d.message.find("skipped ServiceAccount") != std::string::npos;
    }
    CHECK(skipped_sa);
}
