// Per-proxy upstream state that outlives any one configuration: circuit-breaker counters, the
// retry budget's inputs and outlier detection (passive health), kept by cluster name and endpoint
// address so a new RouteTable (a config push) finds the state the old one left. Shared by every
// worker through relaxed atomics; the one lock guards lookups made when a table is built and
// admin reads, never the request path.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/snapshot/snapshot.h"

namespace remora::proxy {

using SteadyTime = std::chrono::steady_clock::time_point;
using SteadyClock = std::function<SteadyTime()>;

// How many retries may be in flight to a cluster with `active` requests (and pending ones): the
// DestinationRule's http.maxRetries (Istio's default 2^32 - 1: istiod raises Envoy's default of 3
// because it made rolling updates fail), and, when the DestinationRule sets a retryBudget, at
// most its percent of `active`, never fewer than its minimum (Envoy's retry_budget).
uint32_t retry_budget(uint32_t active, const snapshot::ConnectionLimits& limits);

// Takes one unit of `counter` if it is below `limit` (a breaker, budget or ejection admission).
bool take_below(std::atomic<uint32_t>& counter, uint32_t limit);

// A unit taken from a counter (take_below), given back when released or destroyed.
struct CounterSlot {
    std::atomic<uint32_t>* counter = nullptr;
    void release() {
        if (counter) counter->fetch_sub(1, std::memory_order_relaxed);
        counter = nullptr;
    }
    ~CounterSlot() { release(); }
};

// Envoy's max_ejection_time default: an endpoint ejected again and again is never out longer than
// this (or the base ejection time, if larger).
constexpr std::chrono::milliseconds kMaxEjectionTime{300000};

// One endpoint of one cluster, as outlier detection sees it.
struct EndpointHealth {
    std::atomic<uint32_t> consecutive_5xx{0};
    std::atomic<uint32_t> consecutive_gateway{0};
    std::atomic<int64_t> ejected_until{0};  // steady-clock nanoseconds; 0 = in service
    std::atomic<uint32_t> times_ejected{0};  // the multiplier of baseEjectionTime
    std::atomic<bool> removed{false};        // gone from the configuration: never ejected again
    bool ejected() const { return ejected_until.load(std::memory_order_relaxed) != 0; }
};

// One cluster (by name), across configurations.
struct ClusterState {
    // Circuit breaking (DestinationRule connectionPool) and the retry budget.
    std::atomic<uint32_t> requests{0};  // in flight (each holds one HTTP/1.1 connection)
    std::atomic<uint32_t> pending{0};   // waiting for a connection under maxConnections

    // The pending queue, first come first served across workers: a request over the `requests`
    // limit waits here, and a slot given back goes straight to the first waiter.
    struct Waiter {
        std::function<void()> wake;  // called once when granted (it posts to the waiter's thread)
        bool granted = false;        // guarded by the queue's lock
    };
    // Under the lock: takes a slot below `limit` now (true), else queues `w` (false).
    bool take_or_queue(uint32_t limit, const std::shared_ptr<Waiter>& w);
    // The waiter gives up: false if it had been granted a slot meanwhile (then it holds one).
    bool leave_queue(const std::shared_ptr<Waiter>& w);
    // Gives back a `requests` slot; with waiters queued, the first one below `limit` takes it.
    void release_request(uint32_t limit);
    std::atomic<uint32_t> retries{0};   // retries in flight (from the decision to the attempt's end)
    std::atomic<uint32_t> connections{0};  // TCP connections open (tcp.maxConnections)
    // Outlier detection.
    std::atomic<uint32_t> ejected{0};           // endpoints ejected now
    std::atomic<uint64_t> ejections_total{0};   // ejections enforced since the proxy started
    std::atomic<uint64_t> ejections_overflow{0};  // wanted, refused by maxEjectionPercent
    std::atomic<int64_t> next_sweep{0};         // steady-clock nanoseconds of the next sweep

    // The endpoint's health record (created on first use); for table builds and admin only.
    std::shared_ptr<EndpointHealth> endpoint(const std::string& address_port);
    // Drops endpoints not in `keep`, returning the ejected ones among them to service.
    void retain(const std::vector<std::string>& keep);
    // Address:port → health, sorted, for /clusters.
    std::map<std::string, std::shared_ptr<const EndpointHealth>> endpoints() const;

private:
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<EndpointHealth>> endpoints_;
    std::mutex queue_mu_;
    std::deque<std::shared_ptr<Waiter>> queue_;
    std::atomic<uint32_t> queued_{0};  // queue_.size(), read without the lock on release
};

// A `requests` slot of a cluster, given back (or handed to a waiter) when released or destroyed.
struct RequestSlot {
    ClusterState* state = nullptr;
    uint32_t limit = 0;
    void release() {
        if (state) state->release_request(limit);
        state = nullptr;
    }
    ~RequestSlot() { release(); }
};

// The proxy's clusters by name. One per proxy, shared by every RouteTable it builds.
class ClusterStates {
public:
    explicit ClusterStates(SteadyClock clock = [] { return std::chrono::steady_clock::now(); })
        : clock_(std::move(clock)) {}
    SteadyTime now() const { return clock_(); }
    // The cluster's state, created on first use.
    std::shared_ptr<ClusterState> cluster(const std::string& name);
    // Forgets clusters no longer configured (tables still using them keep their own reference).
    void retain(const std::vector<std::string>& names);
    std::map<std::string, std::shared_ptr<const ClusterState>> clusters() const;
    uint64_t ejections_active() const;

private:
    SteadyClock clock_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<ClusterState>> clusters_;
};

// One cluster of one RouteTable: its policy, its state and its endpoints' health in the
// snapshot's endpoint order. Outlier detection as Envoy does it for consecutive errors: a 5xx
// (or a connect failure or reset, counted as 503; a timeout as 504) adds to the endpoint's
// consecutive 5xx count and, for 502/503/504, its gateway-error count; anything else resets
// both. Reaching consecutive5xxErrors or consecutiveGatewayErrors ejects the endpoint at once for
// baseEjectionTime × times ejected (at most max(300 s, base)), unless that would eject more than
// maxEjectionPercent of the endpoints (one is always allowed). A sweep every `interval` returns
// endpoints whose time is up and lowers the multiplier of those that stayed in service. When
// fewer than minHealthPercent of the endpoints are in service, ejections are ignored and every
// endpoint takes traffic (Envoy's panic threshold, which Istio sets from minHealthPercent).
class ClusterHealth {
public:
    ClusterHealth(const snapshot::Cluster& cluster, std::shared_ptr<ClusterState> state,
                  std::shared_ptr<ClusterStates> owner);
    ClusterState& state() const { return *state_; }
    const std::optional<snapshot::OutlierDetection>& policy() const { return policy_; }
    size_t size() const { return endpoints_.size(); }
    // Is endpoint `i` out of the load-balancing set now? Runs a due sweep first.
    bool ejected(size_t i) const;
    // Should load balancing skip ejected endpoints now (some are, and not in panic)?
    bool filtering() const;
    // The outcome of a request to endpoint `i`: an HTTP status, 503 for a connect failure or a
    // reset, 504 for a timeout. Says whether it ejected the endpoint, or would have but for
    // maxEjectionPercent.
    enum class Verdict { none, ejected, overflow };
    Verdict report(size_t i, unsigned status) const;
    // Returns endpoints whose ejection ended, if a sweep is due.
    void sweep() const;
    // Forgets the state of this cluster's endpoints that this table no longer has (called once
    // the table is known to be good, so a refused configuration changes nothing).
    void retain_endpoints() const;

private:
    Verdict eject(EndpointHealth& h, int64_t now_ns) const;
    std::optional<snapshot::OutlierDetection> policy_;
    std::shared_ptr<ClusterState> state_;
    std::shared_ptr<ClusterStates> owner_;
    std::vector<std::shared_ptr<EndpointHealth>> endpoints_;
    std::vector<std::string> keys_;  // address:port, in endpoint order
};

}  // namespace remora::proxy
