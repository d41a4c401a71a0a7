// The AuthorizationPolicy evaluator: Istio's string forms, every source, operation and condition
// field with its not-form, DENY before ALLOW, the empty-rules semantics, AUDIT.
#include <doctest/doctest.h>

#include <map>

#include "proxy/authz/authz.h"

namespace snap = remora::proxy::snapshot;
namespace authz = remora::proxy::authz;
using authz::Decision;

namespace {

struct Req final : authz::Request {
    std::map<std::string, std::string> headers;
    Req() {
        method = "GET";
        path = "/";
        host = "httpbin.foo.svc.cluster.local:8000";
        principal = "cluster.local/ns/default/sa/sleep";
        source_ip = boost::asio::ip::make_address("10.1.2.3");
        destination_ip = boost::asio::ip::make_address("10.9.9.9");
        destination_port = 8000;
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        auto it = headers.find(std::string(name));
        if (it == headers.end()) return std::nullopt;
        return std::string_view(it->second);
    }
    Req& from(std::optional<std::string_view> p) {
        principal = p;
        return *this;
    }
};

snap::AuthzRule rule_from(snap::AuthzSource s) {
    snap::AuthzRule r;
    r.from.push_back(std::move(s));
    return r;
}

snap::AuthzRule rule_to(snap::AuthzOperation o) {
    snap::AuthzRule r;
    r.to.push_back(std::move(o));
    return r;
}

snap::AuthzRule rule_when(std::string key, std::vector<std::string> values, std::vector<std::string> not_values = {}) {
    snap::AuthzRule r;
    r.when.push_back({std::move(key), std::move(values), std::move(not_values)});
    return r;
}

snap::AuthzPolicy policy(std::string action, std::vector<snap::AuthzRule> rules, std::string name = "p.foo") {
    return {std::move(name), std::move(action), std::move(rules)};
}

// Whether a single ALLOW policy with this rule lets the request through.
bool allows(const snap::AuthzRule& rule, const authz::Request& req) {
    authz::Engine e({policy("ALLOW", {rule})});
    return e.evaluate(req).decision == Decision::allow;
}

}  // namespace

TEST_CASE("Istio's string forms: exact, prefix*, *suffix, * (present)") {
    CHECK(authz::istio_string_match("abc", "abc"));
    CHECK_FALSE(authz::istio_string_match("abc", "abcd"));
    CHECK_FALSE(authz::istio_string_match("abc", "ABC"));
    CHECK(authz::istio_string_match("abc", "ABC", true));
    CHECK(authz::istio_string_match("abc*", "abc"));
    CHECK(authz::istio_string_match("abc*", "abcdef"));
    CHECK_FALSE(authz::istio_string_match("abc*", "xabc"));
    CHECK(authz::istio_string_match("*abc", "xyzabc"));
    CHECK(authz::istio_string_match("*abc", "abc"));
    CHECK_FALSE(authz::istio_string_match("*abc", "abcx"));
    CHECK(authz::istio_string_match("*", "anything"));
    CHECK(authz::istio_string_match("*", ""));
    // "*" is checked first, then a leading "*": "*abc*" is the suffix "abc*", literally.
    CHECK(authz::istio_string_match("*abc*", "xabc*"));
    CHECK_FALSE(authz::istio_string_match("*abc*", "xabcx"));
}

TEST_CASE("no policy allows; ALLOW with no rules denies everything; a rule {} allows everything") {
    Req req;
    authz::Engine none({});
    CHECK(none.empty());
    CHECK(none.evaluate(req).decision == Decision::allow);

    authz::Engine allow_nothing({policy("ALLOW", {}, "allow-nothing.foo")});
    authz::Result r = allow_nothing.evaluate(req);
    CHECK(r.decision == Decision::deny);
    CHECK(r.policy.empty());  // denied because no ALLOW policy matched
    CHECK(allow_nothing.evaluate(Req().from(std::nullopt)).decision == Decision::deny);

    authz::Engine allow_all({policy("ALLOW", {snap::AuthzRule{}}, "allow-all.foo")});
    r = allow_all.evaluate(req);
    CHECK(r.decision == Decision::allow);
    CHECK(r.policy == "allow-all.foo");
    CHECK(r.rule == 0);
    CHECK(allow_all.evaluate(Req().from(std::nullopt)).decision == Decision::allow);
}

TEST_CASE("order: a matching DENY wins over a matching ALLOW; a DENY that does not match changes nothing") {
    snap::AuthzSource sleep;
    sleep.principals = {"cluster.local/ns/default/sa/sleep"};
    snap::AuthzSource other;
    other.principals = {"cluster.local/ns/default/sa/other"};
    Req req;

    authz::Engine deny_wins({policy("ALLOW", {rule_from(sleep)}, "allow.foo"), policy("DENY", {rule_from(sleep)}, "deny.foo")});
    authz::Result r = deny_wins.evaluate(req);
    CHECK(r.decision == Decision::deny);
    CHECK(r.policy == "deny.foo");

    authz::Engine deny_misses({policy("DENY", {rule_from(other)}, "deny.foo")});
    CHECK(deny_misses.evaluate(req).decision == Decision::allow);  // no ALLOW policy: allowed

    authz::Engine allow_misses({policy("DENY", {rule_from(other)}), policy("ALLOW", {rule_from(other)})});
    CHECK(allow_misses.evaluate(req).decision == Decision::deny);  // an ALLOW applies, none matches

    // The second rule of the second ALLOW policy is the one that decided.
    authz::Engine second({policy("ALLOW", {rule_from(other)}, "a.foo"),
                          policy("ALLOW", {rule_from(other), rule_from(sleep)}, "b.foo")});
    r = second.evaluate(req);
    CHECK(r.decision == Decision::allow);
    CHECK(r.policy == "b.foo");
    CHECK(r.rule == 1);
}

TEST_CASE("AUDIT never denies and does not count as an ALLOW policy") {
    snap::AuthzOperation admin;
    admin.paths = {"/admin*"};
    authz::Engine e({policy("AUDIT", {rule_to(admin)}, "audit-admin.foo")});
    Req req;
    req.path = "/admin/users";
    authz::Result r = e.evaluate(req);
    CHECK(r.decision == Decision::allow);
    CHECK(r.audit_policy == "audit-admin.foo");
    req.path = "/public";
    r = e.evaluate(req);
    CHECK(r.decision == Decision::allow);
    CHECK(r.audit_policy.empty());
    // With an ALLOW that does not match, AUDIT does not rescue the request.
    authz::Engine both({policy("AUDIT", {snap::AuthzRule{}}), policy("ALLOW", {rule_to(admin)})});
    r = both.evaluate(req);
    CHECK(r.decision == Decision::deny);
    CHECK_FALSE(r.audit_policy.empty());
}

TEST_CASE("source.principals and notPrincipals: a plaintext peer has no principal") {
    snap::AuthzSource s;
    s.principals = {"cluster.local/ns/default/sa/sleep"};
    CHECK(allows(rule_from(s), Req()));
    CHECK_FALSE(allows(rule_from(s), Req().from("cluster.local/ns/default/sa/other")));
    CHECK_FALSE(allows(rule_from(s), Req().from(std::nullopt)));
    s.principals = {"cluster.local/ns/default/*"};
    CHECK(allows(rule_from(s), Req().from("cluster.local/ns/default/sa/x")));
    CHECK_FALSE(allows(rule_from(s), Req().from("cluster.local/ns/prod/sa/x")));
    s.principals = {"*/sa/sleep"};
    CHECK(allows(rule_from(s), Req()));
    s.principals = {"*"};  // any authenticated peer
    CHECK(allows(rule_from(s), Req()));
    CHECK_FALSE(allows(rule_from(s), Req().from(std::nullopt)));

    snap::AuthzSource n;
    n.not_principals = {"*"};  // "no mTLS identity": the plaintext peer
    CHECK_FALSE(allows(rule_from(n), Req()));
    CHECK(allows(rule_from(n), Req().from(std::nullopt)));
    n.not_principals = {"cluster.local/ns/default/sa/sleep"};
    CHECK_FALSE(allows(rule_from(n), Req()));
    CHECK(allows(rule_from(n), Req().from("cluster.local/ns/default/sa/other")));
}

TEST_CASE("source.namespaces and notNamespaces come from the peer's identity") {
    snap::AuthzSource s;
    s.namespaces = {"default"};
    CHECK(allows(rule_from(s), Req()));
    CHECK_FALSE(allows(rule_from(s), Req().from("cluster.local/ns/prod/sa/sleep")));
    CHECK_FALSE(allows(rule_from(s), Req().from(std::nullopt)));
    s.namespaces = {"prod-*", "*-test"};
    CHECK(allows(rule_from(s), Req().from("cluster.local/ns/prod-eu/sa/a")));
    CHECK(allows(rule_from(s), Req().from("cluster.local/ns/app-test/sa/a")));
    CHECK_FALSE(allows(rule_from(s), Req()));
    snap::AuthzSource n;
    n.not_namespaces = {"default"};
    CHECK_FALSE(allows(rule_from(n), Req()));
    CHECK(allows(rule_from(n), Req().from("cluster.local/ns/prod/sa/sleep")));
    CHECK(allows(rule_from(n), Req().from(std::nullopt)));  // no namespace: not "default"
    // A principal that is not a workload identity has no namespace.
    CHECK_FALSE(allows(rule_from(s), Req().from("cluster.local/something-else")));
}

TEST_CASE("source.trustDomains and notTrustDomains") {
    snap::AuthzSource s;
    s.trust_domains = {"cluster.local"};
    CHECK(allows(rule_from(s), Req()));
    CHECK_FALSE(allows(rule_from(s), Req().from("other.example/ns/default/sa/sleep")));
    snap::AuthzSource n;
    n.not_trust_domains = {"other.*"};
    CHECK(allows(rule_from(n), Req()));
    CHECK_FALSE(allows(rule_from(n), Req().from("other.example/ns/default/sa/sleep")));
}

TEST_CASE("source.ipBlocks, notIpBlocks, remoteIpBlocks: addresses and CIDRs, IPv4 and IPv6") {
    snap::AuthzSource s;
    s.ip_blocks = {"10.1.0.0/16"};
    Req req;
    CHECK(allows(rule_from(s), req));
    req.source_ip = boost::asio::ip::make_address("10.2.0.1");
    CHECK_FALSE(allows(rule_from(s), req));
    s.ip_blocks = {"10.2.0.1"};  // a single address
    CHECK(allows(rule_from(s), req));
    req.source_ip = boost::asio::ip::make_address("::ffff:10.2.0.1");  // from a dual-stack socket
    CHECK(allows(rule_from(s), req));
    s.ip_blocks = {"fd00::/8"};
    CHECK_FALSE(allows(rule_from(s), req));
    req.source_ip = boost::asio::ip::make_address("fd12::1");
    CHECK(allows(rule_from(s), req));
    s.ip_blocks = {"0.0.0.0/0"};
    req.source_ip = boost::asio::ip::make_address("198.18.0.7");
    CHECK(allows(rule_from(s), req));

    snap::AuthzSource n;
    n.not_ip_blocks = {"198.18.0.0/24"};
    CHECK_FALSE(allows(rule_from(n), req));
    req.source_ip = boost::asio::ip::make_address("198.18.1.7");
    CHECK(allows(rule_from(n), req));

    snap::AuthzSource remote;
    remote.remote_ip_blocks = {"198.18.1.0/24"};
    CHECK(allows(rule_from(remote), req));
    remote.remote_ip_blocks.clear();
    remote.not_remote_ip_blocks = {"198.18.1.0/24"};
    CHECK_FALSE(allows(rule_from(remote), req));
}

TEST_CASE("requestPrincipals: no request carries a JWT principal in remora") {
    snap::AuthzSource s;
    s.request_principals = {"*"};
    CHECK_FALSE(allows(rule_from(s), Req()));
    snap::AuthzSource n;
    n.not_request_principals = {"*"};  // Istio's "require a JWT" DENY idiom denies everyone here
    authz::Engine e({policy("DENY", {rule_from(n)})});
    CHECK(e.evaluate(Req()).decision == Decision::deny);
}

TEST_CASE("fields of one source are ANDed, values ORed; from entries ORed") {
    snap::AuthzSource s;
    s.principals = {"cluster.local/ns/default/sa/sleep", "cluster.local/ns/default/sa/curl"};
    s.ip_blocks = {"10.1.0.0/16"};
    Req req;
    CHECK(allows(rule_from(s), req));
    CHECK(allows(rule_from(s), Req().from("cluster.local/ns/default/sa/curl")));
    req.source_ip = boost::asio::ip::make_address("10.2.0.1");
    CHECK_FALSE(allows(rule_from(s), req));  // principal matches, IP does not

    snap::AuthzRule two;
    snap::AuthzSource ns;
    ns.namespaces = {"test"};
    snap::AuthzSource p;
    p.principals = {"cluster.local/ns/default/sa/sleep"};
    two.from = {ns, p};
    CHECK(allows(two, Req()));
    CHECK(allows(two, Req().from("cluster.local/ns/test/sa/any")));
    CHECK_FALSE(allows(two, Req().from("cluster.local/ns/prod/sa/any")));
}

TEST_CASE("to.operation: methods, paths (query ignored, templates), ports, hosts and their not-forms") {
    Req req;
    snap::AuthzOperation o;
    o.methods = {"GET", "HEAD"};
    CHECK(allows(rule_to(o), req));
    req.method = "POST";
    CHECK_FALSE(allows(rule_to(o), req));
    o = {};
    o.not_methods = {"POST"};
    CHECK_FALSE(allows(rule_to(o), req));
    req.method = "GET";
    CHECK(allows(rule_to(o), req));

    o = {};
    o.paths = {"/info*", "/data"};
    req.path = "/info/123?x=1";
    CHECK(allows(rule_to(o), req));
    req.path = "/data?debug=true";
    CHECK(allows(rule_to(o), req));
    req.path = "/data/x";
    CHECK_FALSE(allows(rule_to(o), req));
    o = {};
    o.paths = {"*.png"};
    req.path = "/img/a.png";
    CHECK(allows(rule_to(o), req));
    o = {};
    o.not_paths = {"/admin*"};
    req.path = "/admin/x";
    CHECK_FALSE(allows(rule_to(o), req));
    req.path = "/public";
    CHECK(allows(rule_to(o), req));

    o = {};
    o.paths = {"/users/{*}/profile", "/static/{**}"};
    req.path = "/users/alice/profile";
    CHECK(allows(rule_to(o), req));
    req.path = "/users/alice/bob/profile";  // {*} is one segment
    CHECK_FALSE(allows(rule_to(o), req));
    req.path = "/users//profile";
    CHECK_FALSE(allows(rule_to(o), req));
    req.path = "/static/css/site.css";  // {**} spans segments
    CHECK(allows(rule_to(o), req));
    req.path = "/users.alice/profile";  // the literal parts are literal, not regex
    CHECK_FALSE(allows(rule_to(o), req));
    req.path = "/static/";  // {**} may be empty
    CHECK(allows(rule_to(o), req));
    o.paths = {"/img/{*}.png", "/{**}/edit"};
    req.path = "/img/cat.png";
    CHECK(allows(rule_to(o), req));
    req.path = "/img/.png";  // {*} takes at least one character
    CHECK_FALSE(allows(rule_to(o), req));
    req.path = "/img/a/b.png";
    CHECK_FALSE(allows(rule_to(o), req));
    req.path = "/docs/7/edit";
    CHECK(allows(rule_to(o), req));
    req.path = "/docs/7/edit/more";
    CHECK_FALSE(allows(rule_to(o), req));

    o = {};
    o.ports = {8000, 9000};
    CHECK(allows(rule_to(o), req));
    req.destination_port = 8080;
    CHECK_FALSE(allows(rule_to(o), req));
    o = {};
    o.not_ports = {8080};
    CHECK_FALSE(allows(rule_to(o), req));
    req.destination_port = 8000;
    CHECK(allows(rule_to(o), req));

    o = {};
    o.hosts = {"httpbin.foo.svc.cluster.local:8000"};
    CHECK(allows(rule_to(o), req));
    req.host = "HTTPBIN.foo.svc.cluster.local:8000";  // case-insensitive
    CHECK(allows(rule_to(o), req));
    req.host = "httpbin:8000";
    CHECK_FALSE(allows(rule_to(o), req));
    o.hosts = {"httpbin*"};
    CHECK(allows(rule_to(o), req));
    o = {};
    o.not_hosts = {"*.evil.com"};
    CHECK(allows(rule_to(o), req));
    req.host = "x.EVIL.com";
    CHECK_FALSE(allows(rule_to(o), req));

    // Fields of one operation are ANDed.
    o = {};
    o.methods = {"GET"};
    o.paths = {"/info*"};
    req.path = "/info";
    req.method = "GET";
    CHECK(allows(rule_to(o), req));
    req.method = "POST";
    CHECK_FALSE(allows(rule_to(o), req));
}

TEST_CASE("a rule needs one from, one to and every when") {
    snap::AuthzRule r;
    snap::AuthzSource s;
    s.principals = {"cluster.local/ns/default/sa/sleep"};
    snap::AuthzOperation o;
    o.methods = {"GET"};
    r.from = {s};
    r.to = {o};
    r.when = {{"request.headers[x-token]", {"admin"}, {}}};
    Req req;
    req.headers["x-token"] = "admin";
    CHECK(allows(r, req));
    req.method = "PUT";
    CHECK_FALSE(allows(r, req));
    req.method = "GET";
    req.headers["x-token"] = "guest";
    CHECK_FALSE(allows(r, req));
    req.headers["x-token"] = "admin";
    CHECK_FALSE(allows(r, Req().from("cluster.local/ns/default/sa/other")));
}

TEST_CASE("when: request.headers with values and notValues; an absent header") {
    Req req;
    CHECK_FALSE(allows(rule_when("request.headers[X-Version]", {"v1*"}), req));  // absent
    CHECK(allows(rule_when("request.headers[X-Version]", {}, {"v1"}), req));     // absent: not v1
    CHECK_FALSE(allows(rule_when("request.headers[X-Version]", {"*"}), req));    // "*" = present
    req.headers["x-version"] = "v1.2";
    CHECK(allows(rule_when("request.headers[X-Version]", {"v1*"}), req));
    CHECK(allows(rule_when("request.headers[x-version]", {"*"}), req));
    CHECK_FALSE(allows(rule_when("request.headers[x-version]", {"v2*"}), req));
    CHECK_FALSE(allows(rule_when("request.headers[x-version]", {}, {"*.2"}), req));
    // values and notValues together: one of the values and none of the notValues.
    CHECK(allows(rule_when("request.headers[x-version]", {"v1*"}, {"v1.0"}), req));
    CHECK_FALSE(allows(rule_when("request.headers[x-version]", {"v1*"}, {"v1.2"}), req));
}

TEST_CASE("when: source.ip, source.namespace, source.principal, destination.ip, destination.port") {
    Req req;
    CHECK(allows(rule_when("source.ip", {"10.1.0.0/16"}), req));
    CHECK_FALSE(allows(rule_when("source.ip", {}, {"10.1.2.3"}), req));
    CHECK(allows(rule_when("remote.ip", {"10.1.2.3"}), req));
    CHECK(allows(rule_when("source.namespace", {"default"}), req));
    CHECK_FALSE(allows(rule_when("source.namespace", {"default"}), Req().from(std::nullopt)));
    CHECK_FALSE(allows(rule_when("source.namespace", {}, {"def*"}), req));
    CHECK(allows(rule_when("source.principal", {"*/sa/sleep"}), req));
    CHECK_FALSE(allows(rule_when("source.principal", {"*"}), Req().from(std::nullopt)));
    CHECK(allows(rule_when("source.principal", {}, {"*"}), Req().from(std::nullopt)));
    CHECK(allows(rule_when("source.serviceAccount", {"default/sleep"}), req));
    CHECK_FALSE(allows(rule_when("source.serviceAccount", {"prod/sleep"}), req));
    CHECK(allows(rule_when("destination.ip", {"10.9.0.0/16"}), req));
    CHECK(allows(rule_when("destination.port", {"8000"}), req));
    CHECK_FALSE(allows(rule_when("destination.port", {"9000"}), req));
    CHECK_FALSE(allows(rule_when("destination.port", {}, {"8000"}), req));
}

TEST_CASE("when: JWT attributes are never present; attributes remora cannot know match only in DENY") {
    Req req;
    CHECK_FALSE(allows(rule_when("request.auth.claims[iss]", {"*"}), req));
    CHECK(allows(rule_when("request.auth.claims[iss]", {}, {"https://accounts.google.com"}), req));
    CHECK_FALSE(allows(rule_when("connection.sni", {"*"}), req));
    authz::Engine deny({policy("DENY", {rule_when("connection.sni", {"x.example.com"})})});
    CHECK(deny.evaluate(req).decision == Decision::deny);
}

TEST_CASE("a value that cannot be compiled names the policy") {
    snap::AuthzSource s;
    s.ip_blocks = {"10.0.0.0/33"};
    CHECK_THROWS_WITH_AS(authz::Engine({policy("ALLOW", {rule_from(s)}, "bad.foo")}),
                         "AuthorizationPolicy bad.foo: ipBlocks \"10.0.0.0/33\": not an IP address or CIDR range",
                         std::invalid_argument);
    CHECK_THROWS_AS(authz::Engine({policy("CUSTOM", {})}), std::invalid_argument);
}

TEST_CASE("TCP connections: a rule needing an HTTP attribute never matches in ALLOW, always in DENY") {
    Req tcp;
    tcp.tcp = true;
    tcp.method = tcp.path = tcp.host = "";
    snap::AuthzOperation get;
    get.methods = {"GET"};
    snap::AuthzOperation port;
    port.ports = {8000};
    // ALLOW: the L4 rule allows, the HTTP-only one does not.
    CHECK(allows(rule_to(port), tcp));
    CHECK_FALSE(allows(rule_to(get), tcp));
    snap::AuthzRule headers = rule_when("request.headers[x-user]", {"alice"});
    CHECK_FALSE(allows(headers, tcp));
    // DENY: the HTTP-only condition counts as matching, so the rule's L4 parts decide.
    snap::AuthzSource sleep;
    sleep.principals = {"cluster.local/ns/default/sa/sleep"};
    snap::AuthzRule deny_get_from_sleep = rule_from(sleep);
    deny_get_from_sleep.to.push_back(get);
    authz::Engine e({policy("DENY", {deny_get_from_sleep})});
    CHECK(e.evaluate(tcp).decision == Decision::deny);
    CHECK(e.evaluate(Req(tcp).from("cluster.local/ns/default/sa/other")).decision == Decision::allow);
    // The same rule on an HTTP request: only GET is denied.
    Req post;
    post.method = "POST";
    CHECK(e.evaluate(post).decision == Decision::allow);
}
