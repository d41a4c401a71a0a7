// Cluster state by name and endpoint, outlier detection's bookkeeping, the retry budget.
#include "proxy/routing/cluster_state.h"

#include <algorithm>
#include <unordered_set>

namespace remora::proxy {

namespace {

int64_t nanos(SteadyTime t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// 0 means "not ejected", so a real instant never encodes as 0.
int64_t instant(SteadyTime t) { return std::max<int64_t>(nanos(t), 1); }

// Returns an ejected endpoint to service; true if this call did it.
bool uneject(EndpointHealth& h, ClusterState& state) {
    if (h.ejected_until.exchange(0) == 0) return false;
    state.ejected.fetch_sub(1, std::memory_order_relaxed);
    return true;
}

}  // namespace

bool take_below(std::atomic<uint32_t>& counter, uint32_t limit) {
    uint32_t v = counter.load(std::memory_order_relaxed);
    while (v < limit) {
        if (counter.compare_exchange_weak(v, v + 1, std::memory_order_relaxed)) return true;
    }
    return false;
}

bool ClusterState::take_or_queue(uint32_t limit, const std::shared_ptr<Waiter>& w) {
    // queued_ goes up before the retry under the lock, and release_request() reads it after
    // giving its slot back: one of the two always sees the other, so no slot is left idle while
    // a request waits.
    queued_.fetch_add(1, std::memory_order_seq_cst);
    std::lock_guard lock(queue_mu_);
    if (take_below(requests, limit)) {
        queued_.fetch_sub(1, std::memory_order_relaxed);
        return true;
    }
    queue_.push_back(w);
    return false;
}

bool ClusterState::leave_queue(const std::shared_ptr<Waiter>& w) {
    std::lock_guard lock(queue_mu_);
    if (w->granted) return false;
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (*it == w) {
            queue_.erase(it);
            queued_.fetch_sub(1, std::memory_order_relaxed);
            break;
        }
    }
    return true;
}

void ClusterState::release_request(uint32_t limit) {
    requests.fetch_sub(1, std::memory_order_seq_cst);
    if (queued_.load(std::memory_order_seq_cst) == 0) return;
    std::vector<std::shared_ptr<Waiter>> woken;
    {
        std::lock_guard lock(queue_mu_);
        while (!queue_.empty() && take_below(requests, limit)) {
            queue_.front()->granted = true;
            woken.push_back(std::move(queue_.front()));
            queue_.pop_front();
            queued_.fetch_sub(1, std::memory_order_relaxed);
        }
    }
    for (auto& w : woken) w->wake();
}

uint32_t retry_budget(uint32_t active, const snapshot::ConnectionLimits& limits) {
    if (!limits.retry_budget_percent) return limits.max_retries;
    const auto share = static_cast<uint64_t>(static_cast<double>(active) * *limits.retry_budget_percent / 100.0);
    const uint64_t budget = std::max<uint64_t>(limits.retry_budget_min_concurrency, share);
    return static_cast<uint32_t>(std::min<uint64_t>(budget, limits.max_retries));
}

std::shared_ptr<EndpointHealth> ClusterState::endpoint(const std::string& address_port) {
    std::lock_guard lock(mu_);
    auto& h = endpoints_[address_port];
    if (!h) h = std::make_shared<EndpointHealth>();
    return h;
}

void ClusterState::retain(const std::vector<std::string>& keep) {
    std::unordered_set<std::string> wanted(keep.begin(), keep.end());
    std::lock_guard lock(mu_);
    for (auto it = endpoints_.begin(); it != endpoints_.end();) {
        if (wanted.count(it->first)) {
            ++it;
            continue;
        }
        // Marked before it is returned: an old table's late ejection sees the mark and undoes
        // itself, so `ejected` cannot keep counting an endpoint nobody sweeps any more.
        it->second->removed.store(true);
        uneject(*it->second, *this);
        it = endpoints_.erase(it);
    }
}

std::map<std::string, std::shared_ptr<const EndpointHealth>> ClusterState::endpoints() const {
    std::lock_guard lock(mu_);
    return {endpoints_.begin(), endpoints_.end()};
}

std::shared_ptr<ClusterState> ClusterStates::cluster(const std::string& name) {
    std::lock_guard lock(mu_);
    auto& c = clusters_[name];
    if (!c) c = std::make_shared<ClusterState>();
    return c;
}

void ClusterStates::retain(const std::vector<std::string>& names) {
    std::unordered_set<std::string> wanted(names.begin(), names.end());
    std::lock_guard lock(mu_);
    std::erase_if(clusters_, [&](const auto& kv) { return !wanted.count(kv.first); });
}

std::map<std::string, std::shared_ptr<const ClusterState>> ClusterStates::clusters() const {
    std::lock_guard lock(mu_);
    return {clusters_.begin(), clusters_.end()};
}

uint64_t ClusterStates::ejections_active() const {
    std::lock_guard lock(mu_);
    uint64_t n = 0;
    for (const auto& [name, c] : clusters_) n += c->ejected.load(std::memory_order_relaxed);
    return n;
}

ClusterHealth::ClusterHealth(const snapshot::Cluster& cluster, std::shared_ptr<ClusterState> state,
                             std::shared_ptr<ClusterStates> owner)
    : policy_(cluster.outlier_detection), state_(std::move(state)), owner_(std::move(owner)) {
    for (const snapshot::Endpoint& e : cluster.endpoints) {
        keys_.push_back(e.address + ":" + std::to_string(e.port));
        endpoints_.push_back(state_->endpoint(keys_.back()));
    }
}

void ClusterHealth::retain_endpoints() const { state_->retain(keys_); }

void ClusterHealth::sweep() const {
    if (!policy_) return;
    const int64_t now = instant(owner_->now());
    int64_t due = state_->next_sweep.load(std::memory_order_relaxed);
    if (now < due) return;
    const int64_t next = now + std::chrono::duration_cast<std::chrono::nanoseconds>(policy_->interval).count();
    // One worker runs each sweep; the others go on without waiting.
    if (!state_->next_sweep.compare_exchange_strong(due, next, std::memory_order_relaxed)) return;
    if (due == 0) return;  // the first look only starts the clock
    for (const auto& h : endpoints_) {
        const int64_t until = h->ejected_until.load(std::memory_order_relaxed);
        if (until == 0) {
            // A whole interval in service: the next ejection is one base time shorter.
            uint32_t t = h->times_ejected.load(std::memory_order_relaxed);
            while (t > 0 && !h->times_ejected.compare_exchange_weak(t, t - 1, std::memory_order_relaxed)) {
            }
        } else if (until <= now) {
            int64_t expected = until;
            if (h->ejected_until.compare_exchange_strong(expected, 0)) {
                state_->ejected.fetch_sub(1, std::memory_order_relaxed);
            }
        }
    }
}

bool ClusterHealth::filtering() const {
    if (!policy_) return false;
    sweep();
    if (state_->ejected.load(std::memory_order_relaxed) == 0) return false;
    size_t out = 0;
    for (const auto& h : endpoints_) out += h->ejected();
    if (out == 0) return false;
    // Panic: too few left in service, so every endpoint takes traffic again.
    const size_t healthy = endpoints_.size() - out;
    return healthy * 100 >= size_t{policy_->min_health_percent} * endpoints_.size();
}

bool ClusterHealth::ejected(size_t i) const { return i < endpoints_.size() && endpoints_[i]->ejected(); }

ClusterHealth::Verdict ClusterHealth::report(size_t i, unsigned status) const {
    if (!policy_ || i >= endpoints_.size()) return Verdict::none;
    EndpointHealth& h = *endpoints_[i];
    if (status < 500) {
        // Only write when there is something to reset: most answers are fine, and a store would
        // bounce the cache line between workers for nothing.
        if (h.consecutive_5xx.load(std::memory_order_relaxed)) h.consecutive_5xx.store(0, std::memory_order_relaxed);
        if (h.consecutive_gateway.load(std::memory_order_relaxed)) h.consecutive_gateway.store(0, std::memory_order_relaxed);
        return Verdict::none;
    }
    bool trip = false;
    if (status == 502 || status == 503 || status == 504) {
        const uint32_t g = h.consecutive_gateway.fetch_add(1, std::memory_order_relaxed) + 1;
        trip = policy_->consecutive_gateway_errors > 0 && g >= policy_->consecutive_gateway_errors;
    } else if (h.consecutive_gateway.load(std::memory_order_relaxed)) {
        h.consecutive_gateway.store(0, std::memory_order_relaxed);
    }
    const uint32_t c = h.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1;
    trip = trip || (policy_->consecutive_5xx_errors > 0 && c >= policy_->consecutive_5xx_errors);
    if (!trip) return Verdict::none;
    h.consecutive_5xx.store(0, std::memory_order_relaxed);
    h.consecutive_gateway.store(0, std::memory_order_relaxed);
    return eject(h, instant(owner_->now()));
}

ClusterHealth::Verdict ClusterHealth::eject(EndpointHealth& h, int64_t now) const {
    if (h.ejected() || h.removed.load()) return Verdict::none;
    const size_t n = endpoints_.size();
    const uint32_t allowed = static_cast<uint32_t>(std::max<size_t>(1, size_t{policy_->max_ejection_percent} * n / 100));
    if (!take_below(state_->ejected, allowed)) {
        state_->ejections_overflow.fetch_add(1, std::memory_order_relaxed);
        return Verdict::overflow;
    }
    const uint32_t times = h.times_ejected.fetch_add(1, std::memory_order_relaxed) + 1;
    const auto base = policy_->base_ejection_time;
    const auto cap = std::max<std::chrono::milliseconds>(kMaxEjectionTime, base);
    const auto lasts = std::min<std::chrono::milliseconds>(base * times, cap);
    int64_t expected = 0;
    if (!h.ejected_until.compare_exchange_strong(expected, now + std::chrono::duration_cast<std::chrono::nanoseconds>(lasts).count())) {
        // Another worker ejected it first.
        h.times_ejected.fetch_sub(1, std::memory_order_relaxed);
        state_->ejected.fetch_sub(1, std::memory_order_relaxed);
        return Verdict::none;
    }
    if (h.removed.load()) {
        uneject(h, *state_);
        return Verdict::none;
    }
    state_->ejections_total.fetch_add(1, std::memory_order_relaxed);
    return Verdict::ejected;
}

}  // namespace remora::proxy
