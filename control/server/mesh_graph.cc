// Prometheus text → edge counters, deltas between scrapes → the graph, and the background scraper.
#include "control/server/mesh_graph.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <cmath>
#include <limits>
#include <sstream>

namespace remora::control::server {

namespace json = boost::json;

namespace {

// `name{k="v",...} value` → labels and value; false for anything else (comments, other shapes).
bool parse_sample(std::string_view line, std::string_view& name, std::map<std::string, std::string>& labels,
                  double& value) {
    size_t brace = line.find('{');
    if (brace == std::string_view::npos) return false;
    name = line.substr(0, brace);
    size_t i = brace + 1;
    labels.clear();
    while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return false;
        std::string key(line.substr(i, eq - i));
        std::string v;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
            if (line[j] == '\\' && j + 1 < line.size()) {
                ++j;
                v.push_back(line[j] == 'n' ? '\n' : line[j]);
            } else {
                v.push_back(line[j]);
            }
        }
        if (j >= line.size()) return false;
        labels[key] = std::move(v);
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    std::string rest(line.substr(i + 1));
    char* end = nullptr;
    value = std::strtod(rest.c_str(), &end);
    return end != rest.c_str();
}

const std::string& label(const std::map<std::string, std::string>& l, const char* key) {
    static const std::string unknown = "unknown";
    auto it = l.find(key);
    return it == l.end() ? unknown : it->second;
}

}  // namespace

void add_metrics(EdgeTotals& totals, const std::string& text) {
    std::istringstream in(text);
    std::string line;
    std::map<std::string, std::string> labels;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        const bool requests = line.starts_with("istio_requests_total{");
        const bool bucket = line.starts_with("istio_request_duration_milliseconds_bucket{");
        if (!requests && !bucket) continue;
        std::string_view name;
        double value = 0;
        if (!parse_sample(line, name, labels, value) || label(labels, "reporter") != "destination") continue;
        EdgeKey key{label(labels, "source_workload"), label(labels, "source_workload_namespace"),
                    label(labels, "destination_workload"), label(labels, "destination_workload_namespace"),
                    label(labels, "destination_service")};
        EdgeCounts& c = totals[key];
        if (requests) {
            c.requests += value;
            if (label(labels, "response_code").starts_with("5")) c.errors += value;
            if (label(labels, "connection_security_policy") == "mutual_tls") c.mtls += value;
        } else {
            const std::string& le = label(labels, "le");
            const double bound = le == "+Inf" ? std::numeric_limits<double>::infinity() : std::strtod(le.c_str(), nullptr);
            c.buckets[bound] += value;
        }
    }
}

double histogram_quantile(double q, const std::map<double, double>& buckets) {
    if (buckets.empty()) return 0;
    const double total = buckets.rbegin()->second;
    if (total <= 0) return 0;
    const double rank = q * total;
    double lower = 0, below = 0;
    for (const auto& [le, count] : buckets) {
        if (count >= rank) {
            if (std::isinf(le)) return lower;  // Prometheus: the highest finite bound
            if (count == below) return le;
            return lower + (le - lower) * (rank - below) / (count - below);
        }
        lower = le;
        below = count;
    }
    return lower;
}

json::array graph_edges(const EdgeTotals& before, const EdgeTotals& now, double seconds) {
    json::array out;
    for (const auto& [key, c] : now) {
        EdgeCounts d = c;
        auto it = before.find(key);
        if (it != before.end() && it->second.requests <= c.requests) {
            d.requests -= it->second.requests;
            d.errors -= it->second.errors;
            d.mtls -= it->second.mtls;
            for (auto& [le, n] : d.buckets) {
                auto b = it->second.buckets.find(le);
                if (b != it->second.buckets.end()) n -= b->second;
            }
        }
        if (d.requests <= 0) continue;
        json::object e{{"source", key.source_workload + "." + key.source_namespace},
                       {"destination", key.destination_workload + "." + key.destination_namespace},
                       {"service", key.service},
                       {"rps", seconds > 0 ? d.requests / seconds : 0.0},
                       {"errorRate", d.errors / d.requests},
                       {"p99Ms", histogram_quantile(0.99, d.buckets)},
                       {"mtls", d.mtls / d.requests}};
        out.push_back(std::move(e));
    }
    return out;
}

namespace {

std::string fetch_metrics(const std::string& ip) {
    namespace beast = boost::beast;
    try {
        boost::asio::io_context io;
        beast::tcp_stream stream(io);
        stream.expires_after(std::chrono::seconds(1));
        stream.connect({boost::asio::ip::make_address(ip), 15090});
        beast::http::request<beast::http::empty_body> req{beast::http::verb::get, "/stats/prometheus", 11};
        req.set(beast::http::field::host, ip);
        beast::http::write(stream, req);
        beast::flat_buffer buf;
        beast::http::response_parser<beast::http::string_body> parser;
        parser.body_limit(32 * 1024 * 1024);
        beast::http::read(stream, buf, parser);
        return parser.get().result_int() == 200 ? parser.get().body() : std::string();
    } catch (const std::exception&) {
        return "";
    }
}

}  // namespace

MeshGraph::MeshGraph(registry::ProxyRegistry& registry, std::chrono::milliseconds interval, Fetch fetch)
    : registry_(registry), interval_(interval), fetch_(fetch ? std::move(fetch) : Fetch(fetch_metrics)) {}

MeshGraph::~MeshGraph() { stop(); }

void MeshGraph::start() {
    thread_ = std::thread([this] {
        std::unique_lock lock(mu_);
        while (!stopping_) {
            lock.unlock();
            scrape_once();
            lock.lock();
            wake_.wait_for(lock, interval_, [this] { return stopping_; });
        }
    });
}

void MeshGraph::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void MeshGraph::scrape_once() {
    EdgeTotals totals;
    std::map<std::string, bool> reachable;
    for (const auto& r : registry_.list()) {
        if (r.reg.pod_ip.empty()) continue;
        std::string text = fetch_(r.reg.pod_ip);
        reachable[r.id] = !text.empty();
        add_metrics(totals, text);
    }
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    if (last_at_ != std::chrono::steady_clock::time_point{}) {
        edges_ = graph_edges(last_, totals, std::chrono::duration<double>(now - last_at_).count());
    }
    last_ = std::move(totals);
    last_at_ = now;
    scraped_at_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    reachable_ = std::move(reachable);
}

std::string MeshGraph::graph_json() const {
    json::array proxies;
    std::lock_guard lock(mu_);
    for (const auto& r : registry_.list()) {
        auto it = reachable_.find(r.id);
        proxies.push_back(json::object{{"name", r.id},
                                       {"workload", r.reg.workload_name + "." + r.ns},
                                       {"podIp", r.reg.pod_ip},
                                       {"status", registry::sync_status_name(r.status())},
                                       {"version", r.acked_version},
                                       {"nack", r.nack_error},
                                       {"identity", r.cert.spiffe_id},
                                       {"certNotAfter", r.cert.not_after},
                                       {"metrics", it != reachable_.end() && it->second}});
    }
    json::object o{{"edges", edges_},
                   {"proxies", std::move(proxies)},
                   {"scrapedAt", scraped_at_},
                   {"intervalSeconds", std::chrono::duration<double>(interval_).count()}};
    return json::serialize(o) + "\n";
}

}  // namespace remora::control::server
