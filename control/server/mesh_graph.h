// The live service graph remora-control serves on its monitoring port (GET /mesh/graph.json): who
// calls whom, with requests per second, error rate, p99 latency and mTLS on each edge, computed
// from the Istio metrics of the proxies it knows (each registered pod's :15090/stats/prometheus,
// scraped in the background), and the proxies with their sync state, certificate and NACKs.
#pragma once

#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "control/registry/proxy_registry.h"

namespace remora::control::server {

// One edge as the destination's sidecar reports it (reporter="destination").
struct EdgeKey {
    std::string source_workload, source_namespace, destination_workload, destination_namespace, service;
    auto tie() const {
        return std::tie(source_workload, source_namespace, destination_workload, destination_namespace, service);
    }
    bool operator<(const EdgeKey& o) const { return tie() < o.tie(); }
};

// Counters of one edge at one scrape: requests, 5xx, those over mTLS, and the duration
// histogram's cumulative buckets (le in ms → count).
struct EdgeCounts {
    double requests = 0, errors = 0, mtls = 0;
    std::map<double, double> buckets;
};

using EdgeTotals = std::map<EdgeKey, EdgeCounts>;

// Adds the istio_requests_total and istio_request_duration_milliseconds_bucket series of one
// proxy's Prometheus text (reporter="destination" only) to `totals`. Malformed lines are skipped.
void add_metrics(EdgeTotals& totals, const std::string& prometheus_text);

// Prometheus' histogram_quantile over cumulative buckets (le → count, +Inf included): linear
// within the bucket; the highest finite bound when the rank falls in +Inf; 0 with no counts.
double histogram_quantile(double q, const std::map<double, double>& buckets);

// The edges between two scrapes `seconds` apart: rps, errorRate, p99Ms, mtls (share of requests).
// Counters that went down (a proxy restarted) count from zero.
boost::json::array graph_edges(const EdgeTotals& before, const EdgeTotals& now, double seconds);

class MeshGraph {
  public:
    using Fetch = std::function<std::string(const std::string& pod_ip)>;  // "" when unreachable
    // `fetch` defaults to GET http://<pod ip>:15090/stats/prometheus with a 1 s deadline.
    MeshGraph(registry::ProxyRegistry& registry, std::chrono::milliseconds interval, Fetch fetch = {});
    ~MeshGraph();
    MeshGraph(const MeshGraph&) = delete;
    MeshGraph& operator=(const MeshGraph&) = delete;

    void start();  // the background scraper
    void stop();
    // {"edges": [...], "proxies": [...], "scrapedAt": unix seconds, "intervalSeconds": ...}
    std::string graph_json() const;
    // One scrape now (the background thread's step; tests call it directly).
    void scrape_once();

  private:
    registry::ProxyRegistry& registry_;
    std::chrono::milliseconds interval_;
    Fetch fetch_;
    mutable std::mutex mu_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
    EdgeTotals last_;
    std::chrono::steady_clock::time_point last_at_{};
    boost::json::array edges_;
    int64_t scraped_at_ = 0;
    std::map<std::string, bool> reachable_;  // by proxy id
};

}  // namespace remora::control::server
