// Route table: lookups by Host and by dialled address, Istio's match semantics, weighted picks.
#include <doctest/doctest.h>

#include <map>
#include <stdexcept>

#include "proxy/routing/resolve.h"
#include "proxy/routing/route_table.h"

using namespace remora::proxy;
namespace snap = remora::proxy::snapshot;

namespace {

struct Req final : RequestView {
    std::map<std::string, std::string> headers;
    Req(std::string_view m, std::string_view p, std::string_view a = "reviews:9080") {
        method = m;
        path = p;
        authority = a;
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        auto it = headers.find(std::string(name));
        if (it == headers.end()) return std::nullopt;
        return std::string_view(it->second);
    }
};

snap::StringMatcher sm(snap::StringMatcher::Kind k, std::string v, bool ic = false) { return {k, std::move(v), ic}; }
using K = snap::StringMatcher::Kind;

snap::Route route(std::string name, std::vector<snap::RouteMatch> matches, std::string cluster) {
    snap::Route r;
    r.name = std::move(name);
    r.matches = std::move(matches);
    r.clusters.push_back({std::move(cluster), 100, {}, {}});
    return r;
}

snap::Snapshot bookinfo() {
    snap::Snapshot s;
    for (std::string subset : {"", "v1", "v2"}) {
        snap::Cluster c;
        c.subset = subset;
        c.name = "outbound|9080|" + subset + "|reviews.default.svc.cluster.local";
        c.service_host = "reviews.default.svc.cluster.local";
        c.port = 9080;
        if (subset != "v2") c.endpoints.push_back({"198.18.0.11", 9080, {}, "spiffe://cluster.local/ns/default/sa/reviews", true, 0});
        if (subset != "v1") c.endpoints.push_back({"198.18.0.12", 9080, {}, "spiffe://cluster.local/ns/default/sa/reviews", true, 0});
        s.clusters.push_back(c);
    }
    snap::VirtualHost vh;
    vh.name = "reviews.default.svc.cluster.local:9080";
    vh.domains = {"reviews", "reviews:9080", "reviews.default.svc.cluster.local", "198.19.0.20:9080"};
    snap::RouteMatch jason;
    jason.headers.emplace_back("end-user", sm(K::exact, "jason"));
    snap::RouteMatch api;
    api.uri = sm(K::prefix, "/API/", true);
    api.method = sm(K::exact, "POST");
    snap::RouteMatch exact;
    exact.uri = sm(K::exact, "/health");
    snap::RouteMatch regex;
    regex.uri = sm(K::regex, "/reviews/[0-9]+");
    regex.query_params.emplace_back("debug", sm(K::exact, "1"));
    snap::RouteMatch not_beta;
    not_beta.uri = sm(K::prefix, "/beta");
    not_beta.without_headers.emplace_back("x-tester", sm(K::regex, ".*"));
    vh.routes.push_back(route("jason", {jason}, "outbound|9080|v2|reviews.default.svc.cluster.local"));
    vh.routes.push_back(route("api-or-health", {api, exact}, "outbound|9080|v1|reviews.default.svc.cluster.local"));
    vh.routes.push_back(route("regex", {regex}, "outbound|9080|v2|reviews.default.svc.cluster.local"));
    vh.routes.push_back(route("beta-testers-only", {not_beta}, "outbound|9080|v1|reviews.default.svc.cluster.local"));
    snap::Route rest;
    rest.name = "canary";
    rest.clusters = {{"outbound|9080|v1|reviews.default.svc.cluster.local", 90, {}, {}},
                     {"outbound|9080|v2|reviews.default.svc.cluster.local", 10, {}, {}}};
    vh.routes.push_back(rest);
    s.virtual_hosts.push_back(vh);
    return s;
}

std::string matched(const RouteTable& t, const Req& r) {
    const auto* vh = t.find_host(r.authority);
    REQUIRE(vh);
    const auto* route = t.match(*vh, r);
    return route ? route->name : "(none)";
}

}  // namespace

TEST_CASE("virtual hosts by Host header, any case, and by the dialled address") {
    RouteTable t(bookinfo());
    CHECK(t.find_host("reviews"));
    CHECK(t.find_host("REVIEWS:9080"));
    CHECK(t.find_host("reviews.default.svc.cluster.local"));
    CHECK_FALSE(t.find_host("ratings"));
    auto vip = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("198.19.0.20"), 9080);
    CHECK(t.find_address(vip));
    auto pod = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("198.18.0.12"), 9080);
    CHECK(t.find_address(pod));  // an endpoint dialled directly
    auto other = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("198.18.0.12"), 9090);
    CHECK_FALSE(t.find_address(other));
    CHECK(t.cluster("outbound|9080|v1|reviews.default.svc.cluster.local"));
}

TEST_CASE("HTTP ports: where Istio has an HTTP listener for any address (REGISTRY_ONLY's block_all)") {
    snap::Snapshot s = bookinfo();  // reviews:9080, undeclared: detected, so HTTP may come
    snap::VirtualHost db;
    db.name = "db.default.svc.cluster.local:5432";
    db.protocol = "TCP";
    s.virtual_hosts.push_back(db);
    snap::VirtualHost grpc;
    grpc.name = "greeter.default.svc.cluster.local:50051";
    grpc.protocol = "GRPC";
    s.virtual_hosts.push_back(grpc);
    RouteTable t(std::move(s));
    CHECK(t.http_port(9080));
    CHECK(t.http_port(50051));
    CHECK_FALSE(t.http_port(5432));  // TCP: its listener has no HTTP side
    CHECK_FALSE(t.http_port(8080));  // no service has it
}

TEST_CASE("first matching rule wins; blocks ORed, conditions ANDed") {
    RouteTable t(bookinfo());
    Req jason("GET", "/api/x");
    jason.headers["end-user"] = "jason";
    CHECK(matched(t, jason) == "jason");  // first rule, before the API rule
    CHECK(matched(t, Req("POST", "/api/x")) == "api-or-health");  // ignoreUriCase prefix
    CHECK(matched(t, Req("GET", "/api/x")) == "canary");           // method not POST
    CHECK(matched(t, Req("GET", "/health?probe=1")) == "api-or-health");  // exact ignores the query
    CHECK(matched(t, Req("GET", "/healthz")) == "canary");
    CHECK(matched(t, Req("GET", "/reviews/42?debug=1")) == "regex");
    CHECK(matched(t, Req("GET", "/reviews/42")) == "canary");        // query param missing
    CHECK(matched(t, Req("GET", "/reviews/4x?debug=1")) == "canary"); // regex is a full match
    CHECK(matched(t, Req("GET", "/beta/page")) == "beta-testers-only");
    Req tester("GET", "/beta/page");
    tester.headers["x-tester"] = "yes";
    CHECK(matched(t, tester) == "canary");  // withoutHeaders excludes it
    Req other_user("GET", "/x");
    other_user.headers["end-user"] = "JASON";
    CHECK(matched(t, other_user) == "canary");  // header values are case-sensitive
}

TEST_CASE("trace: the same decision as match, with each earlier block's first failed condition") {
    RouteTable t(bookinfo());
    const auto* vh = t.find_host("reviews");
    REQUIRE(vh);
    Req get("GET", "/api/x?debug=0");
    get.headers["end-user"] = "alice";
    auto trace = t.trace(*vh, get);
    REQUIRE(trace.size() == 5);  // every rule up to canary, the first that matches
    CHECK(trace.back().matched);
    CHECK(trace.back().route == t.match(*vh, get));
    using F = MatchMiss::Field;
    REQUIRE(trace[0].misses.size() == 1);
    CHECK(trace[0].misses[0].field == F::header);
    CHECK(trace[0].misses[0].name == "end-user");
    CHECK(trace[0].misses[0].got == std::optional<std::string_view>("alice"));
    CHECK(trace[0].misses[0].want->value == "jason");
    REQUIRE(trace[1].misses.size() == 2);        // two blocks: both missed
    CHECK(trace[1].misses[0].field == F::method);  // the URI prefix matched, the method did not
    CHECK(trace[1].misses[0].got == std::optional<std::string_view>("GET"));
    CHECK(trace[1].misses[1].field == F::uri);
    CHECK(trace[1].misses[1].got == std::optional<std::string_view>("/api/x"));  // exact: no query
    CHECK(trace[2].misses[0].field == F::uri);
    Req beta("GET", "/beta/page?debug=1");
    beta.headers["x-tester"] = "yes";
    trace = t.trace(*vh, beta);
    REQUIRE(trace.size() == 5);
    CHECK(trace[3].misses[0].field == F::without_header);
    CHECK(trace[3].misses[0].name == "x-tester");
    Req missing("GET", "/reviews/1");
    trace = t.trace(*vh, missing);
    CHECK(trace[2].misses[0].field == F::query_param);
    CHECK_FALSE(trace[2].misses[0].got);  // absent
    Req first("GET", "/");
    first.headers["end-user"] = "jason";
    trace = t.trace(*vh, first);
    REQUIRE(trace.size() == 1);
    CHECK(trace[0].matched);
    CHECK(trace[0].misses.empty());
}

TEST_CASE("inbound: the service a request was sent to, by Host or by this pod's endpoint address") {
    RouteTable t(bookinfo());
    auto by_host = inbound_service(t, "reviews:9080", std::nullopt);
    REQUIRE(by_host);
    CHECK(by_host->host == "reviews.default.svc.cluster.local");
    CHECK(by_host->name == "reviews");
    CHECK(by_host->ns == "default");
    auto pod = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("198.18.0.12"), 9080);
    auto by_address = inbound_service(t, "198.18.0.12:9080", pod);
    REQUIRE(by_address);
    CHECK(by_address->host == "reviews.default.svc.cluster.local");
    CHECK_FALSE(inbound_service(t, "elsewhere", std::nullopt));
    auto external = service_names("api.example.com");
    CHECK(external.name == "api");
    CHECK(external.ns.empty());
}

TEST_CASE("rewrite and redirect as the route says") {
    snap::Route r;
    snap::RouteMatch m;
    m.uri = sm(K::prefix, "/v1/");
    r.matches.push_back(m);
    r.rewrite_uri = "/";
    CHECK(rewritten_path(r, "/v1/users?x=1") == "/users?x=1");
    CHECK(rewritten_path(r, "/other?y") == "/?y");
    r.redirect = true;
    r.redirect_uri = "/new";
    r.redirect_port = 8080;
    CHECK(redirect_location(r, "reviews:9080", "/old") == "http://reviews:8080/new");
}

TEST_CASE("weights: share = weight / sum, measured over many picks") {
    RouteTable t(bookinfo());
    const auto& canary = t.snapshot().virtual_hosts[0].routes.back();
    std::mt19937_64 rng(42);
    int v2 = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) v2 += pick_weighted(canary.clusters, rng)->cluster.find("|v2|") != std::string::npos;
    CHECK(v2 > n * 0.085);
    CHECK(v2 < n * 0.115);
    std::vector<snap::WeightedCluster> zero = {{"a", 0, {}, {}}, {"b", 0, {}, {}}};
    CHECK(pick_weighted(zero, rng)->cluster == "a");
    CHECK(pick_weighted({}, rng) == nullptr);
}

TEST_CASE("resolve_route: endpoint, identity and labels for telemetry; NR and UH") {
    RouteTable t(bookinfo());
    WorkerBalancer rr;
    std::mt19937_64 rng(1);
    Req jason("GET", "/");
    jason.headers["end-user"] = "jason";
    auto r = resolve_route(t, jason, std::nullopt, rr, rng);
    REQUIRE(r.target);
    CHECK(r.target->cluster == "outbound|9080|v2|reviews.default.svc.cluster.local");
    CHECK(r.target->address.address().to_string() == "198.18.0.12");
    CHECK(r.target->mtls);
    CHECK(r.target->expected_identity == "spiffe://cluster.local/ns/default/sa/reviews");
    CHECK(r.target->service_name == "reviews");
    CHECK(r.target->service_ns == "default");
    CHECK(r.target->service_port == 9080);
    CHECK(resolve_route(t, Req("GET", "/", "ratings:9080"), std::nullopt, rr, rng).error == ProxyError::no_route);

    snap::Snapshot empty = bookinfo();
    for (auto& c : empty.clusters) c.endpoints.clear();
    RouteTable te(std::move(empty));
    CHECK(resolve_route(te, jason, std::nullopt, rr, rng).error == ProxyError::no_healthy_upstream);
}

TEST_CASE("a regex that does not compile names its route") {
    snap::Snapshot s = bookinfo();
    snap::RouteMatch bad;
    bad.uri = sm(K::regex, "/(unclosed");
    s.virtual_hosts[0].routes.push_back(route("broken", {bad}, "x"));
    CHECK_THROWS_WITH_AS(RouteTable(std::move(s)),
                         doctest::Contains("reviews.default.svc.cluster.local:9080 route broken: regex \"/(unclosed\""),
                         std::invalid_argument);
}

namespace {

snap::Cluster cluster_of(size_t n, std::string policy = "LEAST_REQUEST") {
    snap::Cluster c;
    c.name = "outbound|80||svc";
    c.load_balancer.simple = std::move(policy);
    for (size_t i = 0; i < n; ++i) c.endpoints.push_back({"198.18.0." + std::to_string(10 + i), 80, {}, "", false, 0});
    return c;
}

}  // namespace

TEST_CASE("ROUND_ROBIN takes turns; RANDOM spreads; a retry avoids the endpoint it came from") {
    WorkerBalancer b;
    std::mt19937_64 rng(3);
    auto c = cluster_of(3, "ROUND_ROBIN");
    std::vector<size_t> order;
    for (int i = 0; i < 6; ++i) order.push_back(*b.pick(c, nullptr, nullptr, rng));
    CHECK(order == std::vector<size_t>{0, 1, 2, 0, 1, 2});
    auto r = cluster_of(4, "RANDOM");
    std::vector<int> hits(4);
    for (int i = 0; i < 4000; ++i) ++hits[*b.pick(r, nullptr, nullptr, rng)];
    for (int h : hits) CHECK(h > 800);
    for (const char* policy : {"ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"}) {
        auto x = cluster_of(2, policy);
        for (int i = 0; i < 50; ++i) CHECK(b.pick(x, nullptr, nullptr, rng, size_t{1}) == 0);
    }
}

TEST_CASE("LEAST_REQUEST prefers the endpoint with fewer requests in flight") {
    WorkerBalancer b;
    std::mt19937_64 rng(5);
    auto c = cluster_of(2);
    for (int i = 0; i < 5; ++i) b.started(c, 0);  // endpoint 0 is busy
    for (int i = 0; i < 100; ++i) CHECK(b.pick(c, nullptr, nullptr, rng) == 1);
    for (int i = 0; i < 5; ++i) b.finished(c, 0);
    CHECK(b.active(c, 0) == 0);
    std::vector<int> hits(2);
    for (int i = 0; i < 1000; ++i) ++hits[*b.pick(c, nullptr, nullptr, rng)];
    CHECK(hits[0] > 300);  // idle again: both get traffic
    CHECK(hits[1] > 300);
}

TEST_CASE("consistent hashing: a key stays on one endpoint; adding one moves about 1/N of keys") {
    WorkerBalancer b;
    std::mt19937_64 rng(7);
    auto c = cluster_of(4);
    c.load_balancer.hash_header = "x-user";
    HashRing ring(c.endpoints);
    Req alice("GET", "/");
    alice.headers["x-user"] = "alice";
    size_t first = *b.pick(c, &ring, &alice, rng);
    for (int i = 0; i < 50; ++i) CHECK(b.pick(c, &ring, &alice, rng) == first);

    auto bigger = cluster_of(5);
    HashRing ring5(bigger.endpoints);
    int moved = 0;
    const int keys = 10000;
    for (int k = 0; k < keys; ++k) {
        uint64_t h = stable_hash("user-" + std::to_string(k));
        size_t before = *ring.pick(h), after = *ring5.pick(h);
        // Endpoints keep their index (the fifth is appended): a key moves only to the new one.
        if (before != after) {
            ++moved;
            CHECK(after == 4);
        }
    }
    CHECK(moved > keys / 5 * 0.6);  // ~1/5 of the keys go to the new endpoint
    CHECK(moved < keys / 5 * 1.4);
}

TEST_CASE("hash keys from a header, a cookie, a query parameter or the source IP") {
    snap::LoadBalancer lb;
    Req r("GET", "/p?session=abc&x=1");
    r.headers["cookie"] = "theme=dark; session-id=s123";
    r.source_ip = "198.18.0.4";
    lb.hash_cookie = "session-id";
    CHECK(hash_key(lb, r) == "s123");
    lb.hash_cookie.clear();
    lb.hash_query_parameter = "session";
    CHECK(hash_key(lb, r) == "abc");
    lb.hash_query_parameter.clear();
    lb.hash_source_ip = true;
    CHECK(hash_key(lb, r) == "198.18.0.4");
    lb.hash_source_ip = false;
    lb.hash_header = "x-user";
    CHECK_FALSE(hash_key(lb, r));  // no such header: the simple policy decides
    CHECK(stable_hash("abc") == stable_hash("abc"));
    CHECK(stable_hash("abc") != stable_hash("abd"));
}
