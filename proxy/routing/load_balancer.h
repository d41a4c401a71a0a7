// Picking an endpoint of a cluster: Istio's LEAST_REQUEST (power of two choices, the default),
// ROUND_ROBIN, RANDOM, and consistentHash (a ring of virtual nodes, so adding or removing an
// endpoint moves only about 1/N of the keys). The per-worker state (positions, requests in
// flight) needs no lock.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/snapshot/snapshot.h"

namespace remora::proxy {

struct RequestView;
class ClusterHealth;

// 64-bit FNV-1a with a final mix: stable across runs and machines (unlike std::hash).
uint64_t stable_hash(std::string_view s);

class HashRing {
public:
    // The same number of points for every endpoint, derived from its address alone: another
    // endpoint joining or leaving never moves the others' points (ketama-style).
    explicit HashRing(const std::vector<snapshot::Endpoint>& endpoints, size_t points_per_endpoint = 256);
    // The endpoint index owning `key_hash`; nullopt for an empty ring. With `usable`, the first
    // owner clockwise that it accepts (an ejected endpoint's keys move to the next endpoints on
    // the ring and come back when it does); nullopt when it accepts none.
    std::optional<size_t> pick(uint64_t key_hash, const std::function<bool(size_t)>& usable = nullptr) const;

private:
    std::vector<std::pair<uint64_t, uint32_t>> points_;  // sorted by hash
};

// The consistent-hash key of a request under the cluster's policy; nullopt when the request has
// none (no such header, cookie or parameter): then the simple policy decides.
std::optional<std::string> hash_key(const snapshot::LoadBalancer& lb, const RequestView& req);

class WorkerBalancer {
public:
    // Index into cluster.endpoints. `avoid` (a retry's previous endpoint) is skipped when the
    // cluster has another. With `health`, endpoints ejected by outlier detection are skipped by
    // every policy (unless too few are left: then all take traffic); nullopt when every endpoint
    // is ejected or the cluster has none.
    std::optional<size_t> pick(const snapshot::Cluster& cluster, const HashRing* ring,
                               const RequestView* req, std::mt19937_64& rng,
                               std::optional<size_t> avoid = std::nullopt,
                               const ClusterHealth* health = nullptr);
    // Requests in flight to an endpoint, as LEAST_REQUEST weighs them.
    void started(const snapshot::Cluster& cluster, size_t index);
    void finished(const snapshot::Cluster& cluster, size_t index);
    uint32_t active(const snapshot::Cluster& cluster, size_t index) const;

private:
    std::vector<uint32_t>& counts(const snapshot::Cluster& cluster);
    std::unordered_map<std::string, size_t> next_;
    std::unordered_map<std::string, std::vector<uint32_t>> active_;
};

}  // namespace remora::proxy
