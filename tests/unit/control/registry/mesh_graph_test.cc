// The live service graph: Prometheus text read as the proxies write it, histogram quantiles as
// Prometheus computes them, rates between scrapes, and the scraper over the registry.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "control/server/mesh_graph.h"

using namespace remora::control;
using namespace remora::control::server;
namespace json = boost::json;

namespace {

std::string sample(const std::string& code, const std::string& policy, double n) {
    const std::string labels = "reporter=\"destination\",source_workload=\"productpage-v1\",source_workload_namespace="
                               "\"default\",destination_workload=\"reviews-v1\",destination_workload_namespace=\"default\","
                               "destination_service=\"reviews.default.svc.cluster.local\",response_code=\"" + code +
                               "\",connection_security_policy=\"" + policy + "\"";
    std::string out = "istio_requests_total{" + labels + "} " + std::to_string(n) + "\n";
    // Every request took under 10 ms; a tenth of them under 5 ms.
    out += "istio_request_duration_milliseconds_bucket{" + labels + ",le=\"5\"} " + std::to_string(n / 10) + "\n";
    out += "istio_request_duration_milliseconds_bucket{" + labels + ",le=\"10\"} " + std::to_string(n) + "\n";
    out += "istio_request_duration_milliseconds_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(n) + "\n";
    return out;
}

const std::string kSourceSide =
    "# TYPE istio_requests_total counter\n"
    "istio_requests_total{reporter=\"source\",source_workload=\"productpage-v1\",response_code=\"200\"} 999\n";

}  // namespace

TEST_CASE("histogram_quantile as Prometheus computes it") {
    std::map<double, double> b{{5, 10}, {10, 100}, {std::numeric_limits<double>::infinity(), 100}};
    CHECK(histogram_quantile(0.99, b) == doctest::Approx(5 + 5 * (99.0 - 10) / 90));
    CHECK(histogram_quantile(0.05, b) == doctest::Approx(2.5));
    std::map<double, double> slow{{5, 0}, {10, 0}, {std::numeric_limits<double>::infinity(), 4}};
    CHECK(histogram_quantile(0.99, slow) == 10);  // in +Inf: the highest finite bound
    CHECK(histogram_quantile(0.99, {}) == 0);
}

TEST_CASE("edges: the destination's reports, rates between scrapes, errors and mTLS shares") {
    EdgeTotals before, now;
    add_metrics(before, kSourceSide + sample("200", "mutual_tls", 100) + sample("500", "mutual_tls", 10));
    add_metrics(now, kSourceSide + sample("200", "mutual_tls", 140) + sample("500", "mutual_tls", 20) + "garbage{\n");
    REQUIRE(now.size() == 1);  // the source side's report is not an edge of its own
    json::array edges = graph_edges(before, now, 2.0);
    REQUIRE(edges.size() == 1);
    const json::object& e = edges[0].as_object();
    CHECK(e.at("source").as_string() == "productpage-v1.default");
    CHECK(e.at("destination").as_string() == "reviews-v1.default");
    CHECK(e.at("service").as_string() == "reviews.default.svc.cluster.local");
    CHECK(e.at("rps").as_double() == doctest::Approx(25.0));  // 50 requests in 2 s
    CHECK(e.at("errorRate").as_double() == doctest::Approx(0.2));
    CHECK(e.at("mtls").as_double() == doctest::Approx(1.0));
    CHECK(e.at("p99Ms").as_double() > 5);
    CHECK(e.at("p99Ms").as_double() <= 10);
    EdgeTotals plain;
    add_metrics(plain, sample("200", "none", 10));
    CHECK(graph_edges({}, plain, 1.0)[0].at("mtls").as_double() == 0);
    // Nothing new: no edge; a restarted proxy (counters went down) counts from zero.
    CHECK(graph_edges(now, now, 2.0).empty());
    CHECK(graph_edges(now, before, 2.0)[0].at("rps").as_double() == doctest::Approx(55.0));
}

TEST_CASE("the scraper reads every registered proxy and says which it could not reach") {
    registry::ProxyRegistry reg([] { return std::chrono::steady_clock::now(); },
                                [] { return std::chrono::system_clock::now(); }, std::chrono::milliseconds(1000));
    registry::Registration a{"reviews-v1", "reviews-v1", "198.18.0.3", {{"app", "reviews"}}, {}, "remora-proxy"};
    registry::Registration b{"ratings-v1", "ratings-v1", "198.18.0.6", {{"app", "ratings"}}, {}, "remora-proxy"};
    reg.poll_started("default", "bookinfo-reviews", a, {});
    reg.poll_started("default", "bookinfo-ratings", b, {});
    double n = 100;
    MeshGraph graph(reg, std::chrono::milliseconds(50), [&](const std::string& ip) {
        return ip == "198.18.0.3" ? sample("200", "mutual_tls", n) : std::string();
    });
    graph.scrape_once();
    n = 200;
    graph.scrape_once();
    json::object g = json::parse(graph.graph_json()).as_object();
    REQUIRE(g.at("edges").as_array().size() == 1);
    CHECK(g.at("edges").as_array()[0].at("rps").as_double() > 0);
    const json::array& proxies = g.at("proxies").as_array();
    REQUIRE(proxies.size() == 2);
    for (const auto& p : proxies) {
        CHECK(p.at("metrics").as_bool() == (p.at("podIp").as_string() == "198.18.0.3"));
    }
}
