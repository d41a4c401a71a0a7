// The workload registry: registrations live while polls do and a grace period after, the
// generation moves only when endpoints would, and ACK/NACK give proxy-status its word.
#include <doctest/doctest.h>

#include "control/registry/proxy_registry.h"

using namespace remora::control::registry;
using namespace std::chrono_literals;

namespace {

struct Clocks {
    std::chrono::steady_clock::time_point steady{};
    ProxyRegistry make() {
        return ProxyRegistry([this] { return steady; },
                             [] { return std::chrono::system_clock::time_point(1000s); }, 3000ms);
    }
};

Registration pod(const std::string& name, const std::string& ip, const std::string& version = "v1") {
    Registration r;
    r.pod_name = name;
    r.pod_ip = ip;
    r.labels = {{"app", "reviews"}, {"version", version}};
    return r;
}

}  // namespace

TEST_CASE("a registration lasts while a poll is open and for the grace period after") {
    Clocks c;
    ProxyRegistry reg = c.make();
    uint64_t g0 = reg.generation();
    CHECK(reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {}));
    CHECK(reg.generation() > g0);
    c.steady += 60s;  // a long poll: still there
    CHECK(reg.expire().empty());
    reg.poll_ended("r1.default");
    c.steady += 2s;
    CHECK(reg.expire().empty());
    // The proxy polls again in time: the same registration, no endpoint change.
    uint64_t g1 = reg.generation();
    CHECK_FALSE(reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {}));
    CHECK(reg.generation() == g1);
    reg.poll_ended("r1.default");
    c.steady += 3001ms;
    CHECK(reg.expire() == std::vector<std::string>{"r1.default"});
    CHECK(reg.generation() > g1);
    CHECK(reg.list().empty());
}

TEST_CASE("new labels or a new address change the generation") {
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    uint64_t g = reg.generation();
    CHECK(reg.poll_started("default", "reviews", pod("r1", "198.18.0.5", "v2"), {}));
    CHECK(reg.generation() > g);
    g = reg.generation();
    CHECK(reg.poll_started("default", "reviews", pod("r1", "198.18.0.6", "v2"), {}));
    CHECK(reg.generation() > g);
}

TEST_CASE("SYNCED, STALE and NACK follow what was sent and what the proxy said") {
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    CHECK(reg.find("r1.default")->status() == SyncStatus::NotSent);
    reg.sent("r1.default", "aaaa", 3, std::make_shared<const std::string>("{}"));
    CHECK(reg.find("r1")->status() == SyncStatus::Stale);
    reg.report("r1.default", "aaaa", "");
    CHECK(reg.find("r1")->status() == SyncStatus::Synced);
    reg.sent("r1.default", "bbbb", 4, std::make_shared<const std::string>("{}"));
    reg.report("r1.default", "bbbb", "route reviews:8080: regex \"(\": missing )");
    auto r = reg.find("r1.default");
    CHECK(r->status() == SyncStatus::Nack);
    CHECK(r->acked_version == "aaaa");  // the snapshot still in use
    CHECK(r->nack_error.find("missing )") != std::string::npos);
    CHECK(std::string(sync_status_name(r->status())) == "NACK");
}

TEST_CASE("find by pod name only when unambiguous") {
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    reg.poll_started("shop", "reviews", pod("r1", "198.18.0.6"), {});
    CHECK_FALSE(reg.find("r1"));
    CHECK(reg.find("r1.shop")->reg.pod_ip == "198.18.0.6");
    CHECK_FALSE(reg.find("nobody"));
}

TEST_CASE("registered pods become WorkloadEntries with the sidecar's tlsMode label") {
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "bookinfo-reviews", pod("r1", "198.18.0.5", "v2"), {});
    auto wes = reg.workload_entries();
    REQUIRE(wes.size() == 1);
    CHECK(wes[0].meta.ns == "default");
    CHECK(wes[0].meta.valid);
    CHECK(wes[0].spec.address == "198.18.0.5");
    CHECK(wes[0].spec.service_account == "bookinfo-reviews");
    CHECK(wes[0].spec.labels.at("version") == "v2");
    CHECK(wes[0].spec.labels.at("security.istio.io/tlsMode") == "istio");
}

TEST_CASE("with --kube, registrations are not endpoints (EndpointSlices are)") {
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    CHECK(reg.workload_entries().size() == 1);
    reg.set_endpoints_from_registrations(false);
    CHECK(reg.workload_entries().empty());
    CHECK(reg.list().size() == 1);  // still registered: proxy-status shows it
}

TEST_CASE("other replicas' proxies (etcd) give endpoints; this replica's own record wins") {
    Clocks c;
    ProxyRegistry reg = c.make();
    CHECK_FALSE(reg.take_remote_change());
    uint64_t g0 = reg.generation();
    std::map<std::string, RemoteProxy> remote;
    remote["r2.default"] = {"r2.default", "default", "reviews", pod("r2", "198.18.0.6", "v2")};
    remote["r1.default"] = {"r1.default", "default", "reviews", pod("r1", "198.18.0.99")};
    CHECK(reg.set_remote(remote));
    CHECK(reg.generation() > g0);
    CHECK(reg.take_remote_change());
    CHECK_FALSE(reg.take_remote_change());  // once
    CHECK_FALSE(reg.set_remote(remote));    // the same: no new generation
    CHECK(reg.list().empty());              // proxy-status shows this replica's own only

    auto entries = reg.workload_entries();
    REQUIRE(entries.size() == 2);
    CHECK(entries[1].meta.name == "r2");
    CHECK(entries[1].spec.address == "198.18.0.6");
    CHECK(entries[1].spec.labels.at("security.istio.io/tlsMode") == "istio");

    // r1 moved here: its own registration (address .5) wins over the stale remote one (.99).
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    entries = reg.workload_entries();
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].meta.name == "r1");
    CHECK(entries[0].spec.address == "198.18.0.5");

    // The other replica died: its lease took r2 away.
    CHECK(reg.set_remote({}));
    CHECK(reg.workload_entries().size() == 1);
}

TEST_CASE("a draining proxy stays registered but its pod is no longer an endpoint") {
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    reg.poll_started("default", "reviews", pod("r2", "198.18.0.6"), {});
    CHECK(reg.workload_entries().size() == 2);
    const uint64_t g = reg.generation();
    Registration draining = pod("r2", "198.18.0.6");
    draining.draining = true;
    CHECK(reg.poll_started("default", "reviews", draining, {}));  // a change: others are pushed
    CHECK(reg.generation() > g);
    auto entries = reg.workload_entries();
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].spec.address == "198.18.0.5");
    CHECK(reg.find("r2.default").has_value());  // proxy-status still lists it
    CHECK_FALSE(reg.poll_started("default", "reviews", draining, {}));  // the same again: no change
}

TEST_CASE("time the control plane could not run does not count against the grace") {
    // Its threads were busy translating a push for 10 s: the proxy's next poll waited in the
    // control plane's own queue, unread. The sweep, late by as much, says so.
    Clocks c;
    ProxyRegistry reg = c.make();
    reg.poll_started("default", "reviews", pod("r1", "198.18.0.5"), {});
    reg.poll_ended("r1.default");
    c.steady += 10s;
    CHECK(reg.expire(9s).empty());  // 1 s of grace used, not 10
    c.steady += 1s;
    CHECK(reg.expire().empty());    // 2 s
    c.steady += 1001ms;
    CHECK(reg.expire() == std::vector<std::string>{"r1.default"});  // past 3 s of running time
    // A proxy with a poll in flight is never expired, stall or not.
    reg.poll_started("default", "reviews", pod("r2", "198.18.0.6"), {});
    c.steady += 60s;
    CHECK(reg.expire(30s).empty());
}
