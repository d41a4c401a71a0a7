// Endpoint selection: simple policies, least request by two random choices, ring hash.
#include "proxy/routing/load_balancer.h"

#include <algorithm>

#include "proxy/routing/cluster_state.h"
#include "proxy/routing/route_table.h"

namespace remora::proxy {

uint64_t stable_hash(std::string_view s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    // FNV's low bits are weak for short keys; a murmur-style finalizer spreads them.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

HashRing::HashRing(const std::vector<snapshot::Endpoint>& endpoints, size_t per) {
    if (endpoints.empty()) return;
    points_.reserve(per * endpoints.size());
    for (size_t i = 0; i < endpoints.size(); ++i) {
        // Points depend on the endpoint's address only, so the others' points never move.
        const std::string base = endpoints[i].address + ":" + std::to_string(endpoints[i].port) + "_";
        for (size_t v = 0; v < per; ++v) points_.emplace_back(stable_hash(base + std::to_string(v)), static_cast<uint32_t>(i));
    }
    std::sort(points_.begin(), points_.end());
}

std::optional<size_t> HashRing::pick(uint64_t key_hash, const std::function<bool(size_t)>& usable) const {
    if (points_.empty()) return std::nullopt;
    auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(key_hash, uint32_t{0}));
    for (size_t walked = 0; walked < points_.size(); ++walked, ++it) {
        if (it == points_.end()) it = points_.begin();
        if (!usable || usable(it->second)) return it->second;
    }
    return std::nullopt;
}

namespace {

std::optional<std::string_view> cookie(std::string_view header, std::string_view name) {
    while (!header.empty()) {
        size_t semi = header.find(';');
        std::string_view pair = header.substr(0, semi);
        while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
        size_t eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == name) return pair.substr(eq + 1);
        if (semi == std::string_view::npos) break;
        header.remove_prefix(semi + 1);
    }
    return std::nullopt;
}

std::optional<std::string_view> query(std::string_view path, std::string_view name) {
    size_t q = path.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    std::string_view qs = path.substr(q + 1);
    while (!qs.empty()) {
        size_t amp = qs.find('&');
        std::string_view pair = qs.substr(0, amp);
        size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
        if (amp == std::string_view::npos) break;
        qs.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::string> hash_key(const snapshot::LoadBalancer& lb, const RequestView& req) {
    if (!lb.hash_header.empty()) {
        if (auto v = req.header(lb.hash_header)) return std::string(*v);
    } else if (!lb.hash_cookie.empty()) {
        if (auto h = req.header("cookie")) {
            if (auto v = cookie(*h, lb.hash_cookie)) return std::string(*v);
        }
    } else if (!lb.hash_query_parameter.empty()) {
        if (auto v = query(req.path, lb.hash_query_parameter)) return std::string(*v);
    } else if (lb.hash_source_ip && !req.source_ip.empty()) {
        return std::string(req.source_ip);
    }
    return std::nullopt;
}

std::vector<uint32_t>& WorkerBalancer::counts(const snapshot::Cluster& c) {
    auto& v = active_[c.name];
    if (v.size() != c.endpoints.size()) v.assign(c.endpoints.size(), 0);  // a new snapshot
    return v;
}

void WorkerBalancer::started(const snapshot::Cluster& c, size_t i) {
    auto& v = counts(c);
    if (i < v.size()) ++v[i];
}

void WorkerBalancer::finished(const snapshot::Cluster& c, size_t i) {
    auto& v = counts(c);
    if (i < v.size() && v[i] > 0) --v[i];
}

uint32_t WorkerBalancer::active(const snapshot::Cluster& c, size_t i) const {
    auto it = active_.find(c.name);
    return it == active_.end() || i >= it->second.size() ? 0 : it->second[i];
}

std::optional<size_t> WorkerBalancer::pick(const snapshot::Cluster& c, const HashRing* ring,
                                           const RequestView* req, std::mt19937_64& rng,
                                           std::optional<size_t> avoid, const ClusterHealth* health) {
    const size_t n = c.endpoints.size();
    if (health && health->size() != n) health = nullptr;  // not this cluster's: ignore it
    if (n == 0) return std::nullopt;
    const bool filter = health && health->filtering();
    auto in_service = [&](size_t i) { return !filter || !health->ejected(i); };
    if (n == 1) return in_service(0) ? std::optional<size_t>(0) : std::nullopt;
    const std::string& policy = c.load_balancer.simple;
    if (filter) {
        // Some endpoints are ejected: the policy chooses among the others (rare, so a list).
        std::vector<size_t> ok;
        for (size_t i = 0; i < n; ++i) {
            if (in_service(i) && (!avoid || i != *avoid)) ok.push_back(i);
        }
        if (ok.empty() && avoid && in_service(*avoid)) ok.push_back(*avoid);
        if (ok.empty()) return std::nullopt;
        if (ring && req && !avoid) {
            if (auto key = hash_key(c.load_balancer, *req)) return ring->pick(stable_hash(*key), in_service);
        }
        if (ok.size() == 1) return ok.front();
        if (policy == "RANDOM") return ok[rng() % ok.size()];
        if (policy == "ROUND_ROBIN" || policy == "PASSTHROUGH") return ok[next_[c.name]++ % ok.size()];
        auto& v = counts(c);
        size_t a = rng() % ok.size(), b = rng() % (ok.size() - 1);
        if (b >= a) ++b;
        return v[ok[b]] < v[ok[a]] ? ok[b] : ok[a];
    }
    auto usable = [&](size_t i) { return !avoid || i != *avoid; };
    if (ring && req && !avoid) {
        if (auto key = hash_key(c.load_balancer, *req)) {
            if (auto i = ring->pick(stable_hash(*key))) return *i;
        }
    }
    if (policy == "RANDOM") {
        size_t i = rng() % n;
        return usable(i) ? i : (i + 1) % n;
    }
    if (policy == "ROUND_ROBIN" || policy == "PASSTHROUGH") {
        size_t& next = next_[c.name];
        size_t i = next++ % n;
        return usable(i) ? i : next++ % n;
    }
    // LEAST_REQUEST: the less busy of two random endpoints.
    auto& v = counts(c);
    size_t a = rng() % n, b = rng() % (n - 1);
    if (b >= a) ++b;
    if (!usable(a)) return b;
    if (!usable(b)) return a;
    return v[b] < v[a] ? b : a;
}

}  // namespace remora::proxy
