// Outlier detection's bookkeeping (ejection, return, maxEjectionPercent, minHealthPercent), the
// load balancers skipping ejected endpoints, state kept across route tables, the retry budget.
// Time comes from an injected clock: nothing here sleeps.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <vector>

#include "proxy/routing/cluster_state.h"
#include "proxy/routing/load_balancer.h"
#include "proxy/routing/route_table.h"

using namespace remora::proxy;
namespace snap = remora::proxy::snapshot;
using namespace std::chrono_literals;
using Verdict = ClusterHealth::Verdict;

namespace {

struct FakeClock {
    std::shared_ptr<SteadyTime> t = std::make_shared<SteadyTime>(SteadyTime{} + 1h);
    void advance(std::chrono::milliseconds d) { *t += d; }
    std::shared_ptr<ClusterStates> states() const {
        auto t_ = t;
        return std::make_shared<ClusterStates>([t_] { return *t_; });
    }
};

snap::Cluster cluster(size_t n, snap::OutlierDetection od, std::string policy = "ROUND_ROBIN") {
    snap::Cluster c;
    c.name = "outbound|80||svc.default.svc.cluster.local";
    c.service_host = "svc.default.svc.cluster.local";
    c.port = 80;
    c.load_balancer.simple = std::move(policy);
    c.outlier_detection = od;
    for (size_t i = 0; i < n; ++i) c.endpoints.push_back({"198.18.0." + std::to_string(10 + i), 80, {}, "", false, 0});
    return c;
}

snap::OutlierDetection od(uint32_t consecutive_5xx, uint32_t max_percent = 100) {
    snap::OutlierDetection o;
    o.consecutive_5xx_errors = consecutive_5xx;
    o.interval = 1000ms;
    o.base_ejection_time = 5000ms;
    o.max_ejection_percent = max_percent;
    return o;
}

Verdict fail(const ClusterHealth& h, size_t i, int times, unsigned status = 503) {
    Verdict v = Verdict::none;
    for (int k = 0; k < times; ++k) v = h.report(i, status);
    return v;
}

}  // namespace

TEST_CASE("consecutive 5xx: ejected on the Nth in a row, a success starts the count again") {
    FakeClock clock;
    auto c = cluster(3, od(3));
    ClusterHealth h(c, clock.states()->cluster(c.name), clock.states());
    CHECK(fail(h, 0, 2) == Verdict::none);
    CHECK(h.report(0, 200) == Verdict::none);  // resets
    CHECK(fail(h, 0, 2, 500) == Verdict::none);
    CHECK_FALSE(h.ejected(0));
    CHECK(h.report(0, 500) == Verdict::ejected);
    CHECK(h.ejected(0));
    CHECK(h.state().ejected == 1);
    CHECK(h.state().ejections_total == 1);
    CHECK(h.report(1, 404) == Verdict::none);  // 4xx is not an error here
    CHECK_FALSE(h.ejected(1));
}

TEST_CASE("ejection lasts baseEjectionTime x times ejected, ends at a sweep, shrinks when healthy") {
    FakeClock clock;
    auto states = clock.states();
    auto c = cluster(3, od(2));
    ClusterHealth h(c, states->cluster(c.name), states);
    h.sweep();  // starts the sweep clock
    CHECK(fail(h, 1, 2) == Verdict::ejected);
    for (int s = 0; s < 4; ++s) {  // 4 s of sweeps: still out (5 s)
        clock.advance(1000ms);
        h.sweep();
        CHECK(h.ejected(1));
    }
    clock.advance(1000ms);
    h.sweep();
    CHECK_FALSE(h.ejected(1));
    CHECK(h.state().ejected == 0);
    // Ejected again right away: twice the base time.
    CHECK(fail(h, 1, 2) == Verdict::ejected);
    clock.advance(9000ms);
    h.sweep();
    CHECK(h.ejected(1));
    clock.advance(1000ms);
    h.sweep();
    CHECK_FALSE(h.ejected(1));
    // Two healthy intervals bring the multiplier from 2 back to 0: the next ejection is 5 s again.
    clock.advance(1000ms);
    h.sweep();
    clock.advance(1000ms);
    h.sweep();
    CHECK(fail(h, 1, 2) == Verdict::ejected);
    clock.advance(5000ms);
    h.sweep();
    CHECK_FALSE(h.ejected(1));
}

TEST_CASE("no sweep, no return: between sweeps an expired ejection stays until the next one") {
    FakeClock clock;
    auto states = clock.states();
    auto c = cluster(2, od(1));
    c.outlier_detection->interval = 10000ms;
    ClusterHealth h(c, states->cluster(c.name), states);
    h.sweep();
    CHECK(h.report(0, 503) == Verdict::ejected);
    clock.advance(6000ms);  // past the 5 s ejection, before the 10 s sweep
    h.sweep();
    CHECK(h.ejected(0));
    clock.advance(4000ms);
    h.sweep();
    CHECK_FALSE(h.ejected(0));
}

TEST_CASE("maxEjectionPercent bounds the ejected share; one endpoint may always go") {
    FakeClock clock;
    auto states = clock.states();
    auto c = cluster(10, od(1, 30));
    ClusterHealth h(c, states->cluster(c.name), states);
    for (size_t i = 0; i < 3; ++i) CHECK(h.report(i, 503) == Verdict::ejected);
    CHECK(h.report(3, 503) == Verdict::overflow);
    CHECK_FALSE(h.ejected(3));
    CHECK(h.state().ejected == 3);
    CHECK(h.state().ejections_overflow == 1);

    auto two = cluster(2, od(1, 10));  // Istio's default 10% of 2 is 0: still one
    two.name = "two";
    ClusterHealth h2(two, states->cluster(two.name), states);
    CHECK(h2.report(0, 503) == Verdict::ejected);
    CHECK(h2.report(1, 503) == Verdict::overflow);
}

TEST_CASE("consecutiveGatewayErrors counts 502/503/504 only; consecutive5xxErrors 0 is off") {
    FakeClock clock;
    auto states = clock.states();
    auto o = od(0);
    o.consecutive_gateway_errors = 3;
    auto c = cluster(3, o);
    ClusterHealth h(c, states->cluster(c.name), states);
    CHECK(fail(h, 0, 10, 500) == Verdict::none);  // 500s: not gateway errors, 5xx counting is off
    CHECK(h.report(0, 502) == Verdict::none);
    CHECK(h.report(0, 504) == Verdict::none);
    CHECK(h.report(0, 500) == Verdict::none);  // breaks the gateway run
    CHECK(fail(h, 0, 2) == Verdict::none);
    CHECK(h.report(0, 504) == Verdict::ejected);
}

TEST_CASE("every load balancer skips an ejected endpoint") {
    FakeClock clock;
    auto states = clock.states();
    std::mt19937_64 rng(11);
    for (const char* policy : {"ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"}) {
        CAPTURE(policy);
        auto c = cluster(3, od(1), policy);
        c.name = policy;
        ClusterHealth h(c, states->cluster(c.name), states);
        WorkerBalancer b;
        REQUIRE(h.report(1, 503) == Verdict::ejected);
        std::map<size_t, int> hits;
        for (int i = 0; i < 300; ++i) ++hits[*b.pick(c, nullptr, nullptr, rng, std::nullopt, &h)];
        CHECK(hits[1] == 0);
        CHECK(hits[0] > 50);
        CHECK(hits[2] > 50);
        // A retry that must avoid endpoint 0 has only endpoint 2 left.
        for (int i = 0; i < 20; ++i) CHECK(b.pick(c, nullptr, nullptr, rng, size_t{0}, &h) == 2);
    }
    // The hash ring: keys of the ejected endpoint move to others, the rest stay where they were.
    auto c = cluster(4, od(1), "LEAST_REQUEST");
    c.name = "ring";
    c.load_balancer.hash_header = "x-user";
    HashRing ring(c.endpoints);
    ClusterHealth h(c, states->cluster(c.name), states);
    WorkerBalancer b;
    struct Req final : RequestView {
        std::string user;
        std::optional<std::string_view> header(std::string_view) const override { return std::string_view(user); }
    };
    std::map<std::string, size_t> before;
    for (int k = 0; k < 200; ++k) {
        Req r;
        r.user = "user-" + std::to_string(k);
        before[r.user] = *b.pick(c, &ring, &r, rng, std::nullopt, &h);
    }
    REQUIRE(h.report(2, 503) == Verdict::ejected);
    for (const auto& [user, was] : before) {
        Req r;
        r.user = user;
        size_t now = *b.pick(c, &ring, &r, rng, std::nullopt, &h);
        CHECK(now != 2);
        if (was != 2) CHECK(now == was);
    }
}

TEST_CASE("minHealthPercent: below it, ejections are ignored and every endpoint takes traffic") {
    FakeClock clock;
    auto states = clock.states();
    std::mt19937_64 rng(13);
    auto o = od(1, 100);
    o.min_health_percent = 60;
    auto c = cluster(4, o);
    ClusterHealth h(c, states->cluster(c.name), states);
    WorkerBalancer b;
    REQUIRE(h.report(0, 503) == Verdict::ejected);  // 75% healthy: filtering
    CHECK(h.filtering());
    REQUIRE(h.report(1, 503) == Verdict::ejected);  // 50% < 60%: panic
    CHECK_FALSE(h.filtering());
    std::map<size_t, int> hits;
    for (int i = 0; i < 400; ++i) ++hits[*b.pick(c, nullptr, nullptr, rng, std::nullopt, &h)];
    for (size_t i = 0; i < 4; ++i) CHECK(hits[i] == 100);

    // Without it (Istio's default 0), every endpoint ejected means no endpoint at all (UH).
    auto all = cluster(2, od(1, 100));
    all.name = "all";
    ClusterHealth ha(all, states->cluster(all.name), states);
    REQUIRE(ha.report(0, 503) == Verdict::ejected);
    REQUIRE(ha.report(1, 503) == Verdict::ejected);
    CHECK_FALSE(b.pick(all, nullptr, nullptr, rng, std::nullopt, &ha).has_value());
}

TEST_CASE("a new route table keeps ejections and breaker counts by cluster name and address") {
    FakeClock clock;
    auto states = clock.states();
    snap::Snapshot s;
    s.clusters.push_back(cluster(3, od(1)));
    auto first = std::make_unique<RouteTable>(s, states);
    const snap::Cluster& c1 = s.clusters[0];
    (void)c1;
    const snap::Cluster* t1c = first->cluster(s.clusters[0].name);
    REQUIRE(first->health(*t1c).report(1, 503) == Verdict::ejected);
    first->state(*t1c).requests = 7;

    // The same cluster with its endpoints in another order, plus a new one.
    snap::Snapshot s2 = s;
    std::swap(s2.clusters[0].endpoints[0], s2.clusters[0].endpoints[1]);
    s2.clusters[0].endpoints.push_back({"198.18.0.99", 80, {}, "", false, 0});
    RouteTable second(s2, first->states());
    first.reset();
    const snap::Cluster* t2c = second.cluster(s.clusters[0].name);
    CHECK(second.health(*t2c).ejected(0));  // 198.18.0.11, now first
    CHECK_FALSE(second.health(*t2c).ejected(1));
    CHECK_FALSE(second.health(*t2c).ejected(3));
    CHECK(second.state(*t2c).requests == 7);
    CHECK(states->ejections_active() == 1);

    // The ejected endpoint leaves the configuration: it no longer counts as ejected.
    snap::Snapshot s3 = s2;
    s3.clusters[0].endpoints.erase(s3.clusters[0].endpoints.begin());
    RouteTable third(s3, states);
    CHECK(states->ejections_active() == 0);
    // A table without the cluster drops its state; one with it again starts afresh.
    RouteTable empty(snap::Snapshot{}, states);
    CHECK(states->clusters().empty());
}

TEST_CASE("retries in flight: maxRetries alone by default (Istio's 2^32 - 1), a retryBudget when set") {
    snap::ConnectionLimits istio;  // no retryBudget
    CHECK(retry_budget(0, istio) == UINT32_MAX);
    CHECK(retry_budget(100, istio) == UINT32_MAX);
    istio.max_retries = 5;
    CHECK(retry_budget(1000, istio) == 5);

    snap::ConnectionLimits b;  // retryBudget {percent: 20, minRetryConcurrency: 3}
    b.retry_budget_percent = 20;
    CHECK(retry_budget(0, b) == 3);
    CHECK(retry_budget(10, b) == 3);
    CHECK(retry_budget(15, b) == 3);
    CHECK(retry_budget(20, b) == 4);
    CHECK(retry_budget(100, b) == 20);
    CHECK(retry_budget(1001, b) == 200);
    CHECK(retry_budget(UINT32_MAX, b) == UINT32_MAX / 5);
    b.max_retries = 5;
    CHECK(retry_budget(100, b) == 5);
    b.max_retries = 0;
    CHECK(retry_budget(100, b) == 0);
    snap::ConnectionLimits half;
    half.retry_budget_percent = 50.5;
    half.retry_budget_min_concurrency = 0;
    CHECK(retry_budget(1, half) == 0);
    CHECK(retry_budget(200, half) == 101);
}

TEST_CASE("the pending queue: a slot given back goes to the first waiter, in order; one that left is skipped") {
    ClusterState cs;
    std::vector<int> woken;
    auto waiter = [&](int id) {
        auto w = std::make_shared<ClusterState::Waiter>();
        w->wake = [&woken, id] { woken.push_back(id); };
        return w;
    };
    // Two slots, both taken.
    REQUIRE(take_below(cs.requests, 2));
    REQUIRE(take_below(cs.requests, 2));
    auto a = waiter(1), b = waiter(2), c = waiter(3);
    CHECK_FALSE(cs.take_or_queue(2, a));
    CHECK_FALSE(cs.take_or_queue(2, b));
    CHECK_FALSE(cs.take_or_queue(2, c));
    CHECK(cs.leave_queue(b));  // b gives up before any slot frees: it holds none
    cs.release_request(2);     // handed to a, not given back
    CHECK(woken == std::vector<int>{1});
    CHECK(a->granted);
    CHECK(cs.requests.load() == 2);
    CHECK_FALSE(cs.leave_queue(a));  // too late to leave: a holds the slot
    cs.release_request(2);
    CHECK(woken == std::vector<int>{1, 3});
    cs.release_request(2);  // nobody waits: the count goes down
    cs.release_request(2);
    CHECK(cs.requests.load() == 0);
    // Below the limit a waiter takes its slot at once and is not queued.
    auto d = waiter(4);
    CHECK(cs.take_or_queue(2, d));
    CHECK(cs.requests.load() == 1);
    cs.release_request(2);
    CHECK(woken == std::vector<int>{1, 3});
}
