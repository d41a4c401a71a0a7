// The snapshot's JSON form: every field survives a round trip, versions follow content, and a
// malformed document is refused with the path of the wrong field.
#include <doctest/doctest.h>

#include <set>

#include <boost/json.hpp>

#include "proxy/snapshot/snapshot_json.h"

namespace snap = remora::proxy::snapshot;
namespace json = boost::json;

namespace {

// A snapshot with every field away from its default.
snap::Snapshot full() {
    snap::Snapshot s;
    s.workload_namespace = "shop";
    s.workload_labels = {{"app", "cart"}, {"version", "v2"}};
    snap::Cluster c;
    c.name = "outbound|9080|v1|reviews.default.svc.cluster.local";
    c.service_host = "reviews.default.svc.cluster.local";
    c.port = 9080;
    c.subset = "v1";
    c.destination_rule = "reviews.default";
    c.load_balancer = {"ROUND_ROBIN", "x-user", "session", "q", true};
    c.limits.max_connections = 1;
    c.limits.connect_timeout = snap::Millis(250);
    c.limits.http1_max_pending_requests = 2;
    c.limits.http2_max_requests = 3;
    c.limits.max_requests_per_connection = 4;
    c.limits.max_retries = 5;
    c.limits.idle_timeout = snap::Millis(6000);
    c.limits.tcp_idle_timeout = snap::Millis(7000);
    c.limits.retry_budget_percent = 12.5;
    c.limits.retry_budget_min_concurrency = 4;
    c.outlier_detection = snap::OutlierDetection{7, 8, snap::Millis(900), snap::Millis(1100), 50, 20};
    c.tls_mode = "DISABLE";
    c.endpoints.push_back({"198.18.0.11", 9080, {{"version", "v1"}}, "spiffe://cluster.local/ns/default/sa/r", true, 3});
    s.clusters.push_back(c);
    snap::VirtualHost vh;
    vh.name = "reviews.default.svc.cluster.local:9080";
    vh.domains = {"reviews", "reviews:9080"};
    snap::Route r;
    r.name = "jason";
    r.virtual_service = "reviews.default";
    snap::RouteMatch m;
    m.uri = snap::StringMatcher{snap::StringMatcher::Kind::prefix, "/api", true};
    m.scheme = snap::StringMatcher{snap::StringMatcher::Kind::exact, "http", false};
    m.method = snap::StringMatcher{snap::StringMatcher::Kind::regex, "GET|HEAD", false};
    m.authority = snap::StringMatcher{snap::StringMatcher::Kind::exact, "reviews", false};
    m.headers = {{"end-user", {snap::StringMatcher::Kind::exact, "jason", false}}};
    m.query_params = {{"debug", {snap::StringMatcher::Kind::prefix, "1", false}}};
    m.without_headers = {{"x-canary", {snap::StringMatcher::Kind::exact, "", false}}};
    m.port = 9080;
    m.source_labels = {{"app", "productpage"}};
    m.source_namespace = "default";
    r.matches.push_back(m);
    snap::WeightedCluster wc{c.name, 90, {}, {}};
    wc.request.set = {{"x-a", "1"}};
    wc.response.add = {{"x-b", "2"}};
    wc.response.remove = {"server"};
    r.clusters.push_back(wc);
    r.clusters.push_back({"outbound|9080|v2|reviews.default.svc.cluster.local", 10, {}, {}});
    r.direct_response = std::make_pair(418u, std::string("teapot"));
    r.redirect = true;
    r.redirect_uri = "/new";
    r.redirect_authority = "elsewhere";
    r.redirect_scheme = "https";
    r.redirect_port = 8443;
    r.redirect_code = 308;
    r.rewrite_uri = "/v2";
    r.rewrite_authority = "reviews-v2";
    r.timeout = snap::Millis(1500);
    r.retries.attempts = 4;
    r.retries.per_try_timeout = snap::Millis(300);
    r.retries.retry_on = "5xx,reset";
    r.retries.retriable_status_codes = {502, 504};
    r.fault = snap::Fault{snap::Millis(700), 12.5, 503u, 33.0};
    r.mirrors.push_back({"outbound|9080|v3|reviews.default.svc.cluster.local", 25.5});
    r.request_headers.remove = {"cookie"};
    r.response_headers.set = {{"x-served-by", "remora"}};
    vh.routes.push_back(r);
    s.virtual_hosts.push_back(vh);
    s.inbound.mtls_mode = "STRICT";
    s.inbound.port_mtls = {{8080, "DISABLE"}};
    snap::AuthzPolicy deny{"deny-admin.default", "DENY", {}};
    snap::AuthzRule rule;
    snap::AuthzSource src;
    src.principals = {"cluster.local/ns/default/sa/sleep"};
    src.not_principals = {"a"};
    src.request_principals = {"b"};
    src.not_request_principals = {"c"};
    src.namespaces = {"foo*"};
    src.not_namespaces = {"*bar"};
    src.trust_domains = {"cluster.local"};
    src.not_trust_domains = {"other"};
    src.ip_blocks = {"10.0.0.0/8"};
    src.not_ip_blocks = {"10.1.0.0/16"};
    src.remote_ip_blocks = {"1.2.3.4"};
    src.not_remote_ip_blocks = {"5.6.7.8"};
    rule.from.push_back(src);
    snap::AuthzOperation op;
    op.hosts = {"a.example"};
    op.not_hosts = {"b.example"};
    op.ports = {8080};
    op.not_ports = {9090};
    op.methods = {"GET"};
    op.not_methods = {"POST"};
    op.paths = {"/admin*"};
    op.not_paths = {"/admin/ok"};
    rule.to.push_back(op);
    rule.when.push_back({"request.headers[x-token]", {"yes"}, {"no"}});
    deny.rules.push_back(rule);
    s.inbound.authz = {deny, snap::AuthzPolicy{"allow-nothing.default", "ALLOW", {}}};
    s.notes = {"a note"};
    return s;
}

std::string text(const snap::Snapshot& s) { return json::serialize(snap::to_json(s)); }

std::string error_of(const std::string& doc) {
    try {
        snap::from_json(json::parse(doc));
    } catch (const snap::SnapshotFormatError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("every field survives JSON and back") {
    snap::Snapshot s = full();
    std::string once = text(s);
    snap::Snapshot back = snap::from_json(json::parse(once));
    CHECK(text(back) == once);
    // Spot checks on the struct itself, not only on the re-serialised text.
    REQUIRE(back.clusters.size() == 1);
    CHECK(back.clusters[0].outlier_detection->base_ejection_time == snap::Millis(1100));
    CHECK(back.clusters[0].limits.idle_timeout == snap::Millis(6000));
    CHECK(back.clusters[0].limits.tcp_idle_timeout == snap::Millis(7000));
    CHECK(back.clusters[0].limits.retry_budget_percent == 12.5);
    CHECK(back.clusters[0].limits.retry_budget_min_concurrency == 4);
    CHECK(back.clusters[0].endpoints[0].mtls);
    const snap::Route& r = back.virtual_hosts.at(0).routes.at(0);
    CHECK(r.matches.at(0).method->kind == snap::StringMatcher::Kind::regex);
    CHECK(r.matches.at(0).uri->ignore_case);
    CHECK(r.fault->abort_status == 503u);
    CHECK(r.fault->delay_percent == doctest::Approx(12.5));
    CHECK(r.direct_response->first == 418u);
    CHECK(r.retries.retriable_status_codes == std::vector<uint32_t>{502, 504});
    CHECK(back.inbound.port_mtls.at(8080) == "DISABLE");
    REQUIRE(back.inbound.authz.size() == 2);
    CHECK(back.inbound.authz[0].action == "DENY");
    CHECK(back.inbound.authz[0].rules.at(0).to.at(0).not_ports == std::vector<uint32_t>{9090});
    CHECK(back.inbound.authz[0].rules.at(0).from.at(0).not_remote_ip_blocks.at(0) == "5.6.7.8");
    CHECK(back.inbound.authz[0].rules.at(0).when.at(0).not_values.at(0) == "no");
    CHECK(back.inbound.authz[1].rules.empty());  // ALLOW with no rules: stays "matches nothing"
}

TEST_CASE("a Sidecar's outboundTrafficPolicy: carried when set, absent (the mesh's) otherwise") {
    snap::Snapshot s = full();
    CHECK(text(s).find("outbound_traffic_policy") == std::string::npos);
    CHECK(snap::from_json(json::parse(text(s))).outbound_traffic_policy.empty());
    s.outbound_traffic_policy = "REGISTRY_ONLY";
    CHECK(snap::from_json(json::parse(text(s))).outbound_traffic_policy == "REGISTRY_ONLY");
    CHECK(snap::version_of(s) != snap::version_of(full()));
    CHECK(error_of(R"({"outbound_traffic_policy":"DENY"})") ==
          "snapshot.outbound_traffic_policy: expected REGISTRY_ONLY or ALLOW_ANY");
}

TEST_CASE("an authorization policy's action must be one the proxy enforces") {
    CHECK(error_of(R"({"inbound":{"authz":[{"name":"x","action":"CUSTOM"}]}})") ==
          "snapshot.inbound.authz[0].action: \"CUSTOM\" is not ALLOW, DENY or AUDIT");
    CHECK(error_of(R"({"inbound":{"authz":[{"rules":[{"to":[{"ports":["80"]}]}]}]}})") ==
          "snapshot.inbound.authz[0].rules[0].to[0].ports[0]: expected an unsigned 32-bit integer");
}

TEST_CASE("missing fields take the defaults; an empty object is the empty snapshot") {
    snap::Snapshot s = snap::from_json(json::parse("{}"));
    CHECK(s.clusters.empty());
    CHECK(s.inbound.mtls_mode == "PERMISSIVE");
    snap::Snapshot r = snap::from_json(json::parse(R"({"virtual_hosts":[{"name":"a","routes":[{"name":"x"}]}]})"));
    CHECK(r.virtual_hosts.at(0).routes.at(0).retries.attempts == 2);  // Istio's default policy
    CHECK(r.virtual_hosts.at(0).routes.at(0).retries.retriable_status_codes == std::vector<uint32_t>{503});
}

TEST_CASE("the version follows the content") {
    snap::Snapshot a = full();
    snap::Snapshot b = full();
    CHECK(snap::version_of(a) == snap::version_of(b));
    CHECK(snap::version_of(a).size() == 16);
    b.clusters[0].endpoints[0].address = "198.18.0.12";
    CHECK(snap::version_of(a) != snap::version_of(b));
}

TEST_CASE("version_of_text: the version of the text, the same on every machine and build") {
    snap::Snapshot a = full();
    CHECK(snap::version_of_text(snap::to_json_text(a)) == snap::version_of(a));
    // Pinned: replicas of different builds hand out the same version for the same content only
    // while the hash stays this one.
    CHECK(snap::version_of_text("") == "836e528cb96be96d");
    CHECK(snap::version_of_text("{\"workload_namespace\":\"default\"}") == "634102d19c37da58");
    // One byte changed anywhere (first word, a word's last byte, the tail) changes it; so does
    // the length alone.
    const std::string text = snap::to_json_text(a);
    std::set<std::string> seen{snap::version_of_text(text)};
    for (std::size_t at : {std::size_t{0}, std::size_t{7}, std::size_t{8}, text.size() / 2, text.size() - 1}) {
        std::string changed = text;
        changed[at] = static_cast<char>(changed[at] ^ 1);
        CHECK(seen.insert(snap::version_of_text(changed)).second);
    }
    CHECK(seen.insert(snap::version_of_text(text + std::string(1, '\0'))).second);
    CHECK(seen.insert(snap::version_of_text(std::string_view(text).substr(0, text.size() - 1))).second);
}

TEST_CASE("a malformed document names the field that is wrong") {
    CHECK(error_of("[]") == "snapshot: expected an object");
    CHECK(error_of(R"({"clusters":[{"name":"a"},{"port":-1}]})") ==
          "snapshot.clusters[1].port: expected an unsigned 32-bit integer");
    CHECK(error_of(R"({"clusters":[{"endpoints":[{"mtls":"yes"}]}]})") ==
          "snapshot.clusters[0].endpoints[0].mtls: expected true or false");
    CHECK(error_of(R"({"virtual_hosts":[{"routes":[{"matches":[{"uri":{"kind":"glob"}}]}]}]})") ==
          "snapshot.virtual_hosts[0].routes[0].matches[0].uri.kind: \"glob\" is not exact, prefix or regex");
    CHECK(error_of(R"({"inbound":{"port_mtls":{"http":"STRICT"}}})") ==
          "snapshot.inbound.port_mtls.http: expected a port number as the key");
    CHECK(error_of(R"({"workload_labels":{"app":1}})") == "snapshot.workload_labels.app: expected a string");
}

// The control plane writes snapshots with to_json_text (a cluster and a virtual host at a time)
// and versions hash that text: it must be the tree's serialization exactly, with every field
// set, with several elements (the commas between them), and empty.
TEST_CASE("to_json_text is serialize(to_json) byte for byte") {
    snap::Snapshot s = full();
    CHECK(snap::to_json_text(s) == json::serialize(snap::to_json(s)));
    s.clusters.push_back(s.clusters.at(0));
    s.clusters.back().name = "outbound|9080|v2|reviews.default.svc.cluster.local";
    s.clusters.back().endpoints.push_back(s.clusters.back().endpoints.at(0));
    // Endpoints are written straight: strings that need escapes, no labels, a cluster without
    // endpoints.
    s.clusters.back().endpoints.back().labels = {{"a\"b", "tab\there"}, {"z", "\x7f\\ é"}};
    s.clusters.back().endpoints.back().identity = "spiffe://cluster.local/ns/\x1f/sa/x";
    s.clusters.back().endpoints.back().mtls = !s.clusters.back().endpoints.back().mtls;
    s.clusters.back().endpoints.back().weight = 4294967295u;
    s.clusters.back().endpoints.push_back(snap::Endpoint{});
    s.clusters.push_back(s.clusters.at(0));
    s.clusters.back().endpoints.clear();
    s.virtual_hosts.push_back(s.virtual_hosts.at(0));
    s.virtual_hosts.back().name = "quote \" and \\ and \x01 and é";
    s.outbound_traffic_policy = "REGISTRY_ONLY";
    s.notes = {"one", "two"};
    CHECK(snap::to_json_text(s) == json::serialize(snap::to_json(s)));
    CHECK(snap::to_json_text(snap::Snapshot{}) == json::serialize(snap::to_json(snap::Snapshot{})));
    CHECK(snap::version_of(s) != snap::version_of(full()));
}
