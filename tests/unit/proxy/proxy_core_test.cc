// Proxy building blocks: error mapping, counters, renewal timing, outbound resolution.
#include <doctest/doctest.h>

#include "proxy/request/local_reply.h"
#include "proxy/net/detect.h"
#include "proxy/tcp/tcp_proxy.h"
#include "proxy/identity/identity_agent.h"
#include "proxy/routing/resolve.h"
#include "proxy/stats/stats.h"
#include "control/model/model.h"
#include "control/translate/translate.h"

#include <random>

using namespace remora::proxy;
using std::chrono::hours;

TEST_CASE("proxy-made errors map to Envoy's statuses and response flags") {
    CHECK(reply_for(ProxyError::no_route).status == 404);
    CHECK(reply_for(ProxyError::no_route).flag == "NR");
    CHECK(reply_for(ProxyError::no_healthy_upstream).status == 503);
    CHECK(reply_for(ProxyError::no_healthy_upstream).flag == "UH");
    CHECK(reply_for(ProxyError::connect_failure).status == 503);
    CHECK(reply_for(ProxyError::connect_failure).flag == "UF");
    CHECK(reply_for(ProxyError::upstream_reset).status == 503);
    CHECK(reply_for(ProxyError::upstream_reset).flag == "UC");
    CHECK(reply_for(ProxyError::bad_request).status == 400);
    CHECK(reply_for(ProxyError::headers_too_large).status == 431);
    CHECK(reply_for(ProxyError::header_timeout).status == 408);
}

TEST_CASE("per-worker counters sum when rendered") {
    WorkerStats a, b;
    a.inc(Counter::downstream_rq_total, 3);
    b.inc(Counter::downstream_rq_total, 4);
    a.tls_failure("untrusted_chain");
    b.tls_failure("untrusted_chain");
    b.tls_failure("no_certificate");
    std::string text = render_stats({&a, &b}, false);
    CHECK(text.find("remora.downstream_rq_total: 7\n") != std::string::npos);
    CHECK(text.find("remora.tls_handshake_fail: 3\n") != std::string::npos);
    CHECK(text.find("remora.tls_handshake_fail.untrusted_chain: 2\n") != std::string::npos);
    CHECK(text.find("remora.tls_handshake_fail.no_certificate: 1\n") != std::string::npos);
    std::string json = render_stats({&a, &b}, true);
    CHECK(json.find("\"remora.downstream_rq_total\":7") != std::string::npos);
}

TEST_CASE("renewal is due at half of the remaining life, within 1% jitter") {
    auto nb = std::chrono::system_clock::from_time_t(1767225600);
    auto na = nb + hours(24);
    CHECK(IdentityAgent::renewal_time(nb, na, 0.5) == nb + hours(12));
    auto early = IdentityAgent::renewal_time(nb, na, 0.0);
    auto late = IdentityAgent::renewal_time(nb, na, 1.0);
    CHECK(early < nb + hours(12));
    CHECK(late > nb + hours(12));
    CHECK(nb + hours(12) - early <= std::chrono::minutes(15));  // 1% of 24 h is 14.4 min
    CHECK(late - (nb + hours(12)) <= std::chrono::minutes(15));
    // A short-lived certificate (the CA backdates NotBefore by 2 minutes) renews in the future,
    // never in a loop.
    CHECK(IdentityAgent::renewal_time(nb, nb + std::chrono::seconds(20), 0.5) ==
          nb + std::chrono::seconds(10));
    CHECK(IdentityAgent::renewal_time(nb, nb + std::chrono::seconds(1), 0.5) ==
          nb + std::chrono::seconds(1));
}

namespace {

const char* kRegistry = R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hello, namespace: default}
spec:
  hosts: [hello.default.svc.cluster.local]
  addresses: [198.19.0.10]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: hello}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: hello-1, namespace: default}
spec:
  address: 198.18.1.2
  labels: {app: hello, security.istio.io/tlsMode: istio}
  serviceAccount: hello
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: hello-2, namespace: default}
spec:
  address: 198.18.1.3
  labels: {app: hello}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: empty, namespace: default}
spec:
  hosts: [empty.default.svc.cluster.local]
  addresses: [198.19.0.11]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  workloadSelector: {labels: {app: nobody}}
)";

// A static proxy's --registry file goes through the same translation and route table as
// --config and remora-control's snapshots (one way to route).
ProxyConfig config_with_registry() {
    remora::control::model::Config istio;
    remora::control::model::load_yaml(istio, kRegistry, "mem.yaml");
    for (const auto* e : istio.errors()) FAIL_CHECK(e->str());
    remora::control::translate::WorkloadRef client{"default", "client", {{"app", "client"}}};
    ProxyConfig c;
    c.routes = std::make_shared<const RouteTable>(remora::control::translate::translate(istio, client, {}));
    return c;
}

boost::asio::ip::tcp::endpoint ep(const char* ip, unsigned short port) {
    return {boost::asio::ip::make_address(ip), port};
}

struct Head final : RequestView {
    explicit Head(std::string_view a) {
        method = "GET";
        path = "/";
        authority = a;
    }
    std::optional<std::string_view> header(std::string_view) const override { return std::nullopt; }
};

}  // namespace

TEST_CASE("a --registry file routes by host and original destination, round robin, with identity") {
    ProxyConfig c = config_with_registry();
    WorkerBalancer balancer;
    std::mt19937_64 rng(7);
    auto resolve = [&](std::string_view host, boost::asio::ip::tcp::endpoint dst) {
        return resolve_route(*c.routes, Head(host), dst, balancer, rng);
    };
    RouteResult first = resolve("hello:8080", ep("198.19.0.10", 8080));
    REQUIRE(first.target);
    RouteResult second = resolve("hello", ep("198.19.0.10", 8080));
    REQUIRE(second.target);
    CHECK(first.target->address != second.target->address);
    CHECK(first.target->address.port() == 8080);
    // hello-1 runs a sidecar with a known service account; hello-2 has no tlsMode label.
    const UpstreamTarget& meshed = first.target->mtls ? *first.target : *second.target;
    const UpstreamTarget& plain = first.target->mtls ? *second.target : *first.target;
    CHECK(meshed.expected_identity == "spiffe://cluster.local/ns/default/sa/hello");
    CHECK_FALSE(plain.mtls);
    CHECK(first.target->cluster == "outbound|8080||hello.default.svc.cluster.local");
    // The route carries Istio's default retries, as every sidecar's does.
    REQUIRE(first.route);
    CHECK(first.route->retries.attempts == 2);

    // An unknown Host still routes by where the app connected.
    CHECK(resolve("unknown.example", ep("198.19.0.10", 8080)).target);
    CHECK(resolve("unknown.example", ep("203.0.113.1", 80)).error == ProxyError::no_route);
    CHECK(resolve("empty", ep("198.19.0.11", 80)).error == ProxyError::no_healthy_upstream);
}

TEST_CASE("only mesh services are proxied; everything else passes through") {
    ProxyConfig c = config_with_registry();
    CHECK(is_mesh_destination(c, ep("198.19.0.10", 8080)));
    CHECK(is_mesh_destination(c, ep("198.18.1.2", 8080)));
    CHECK_FALSE(is_mesh_destination(c, ep("198.19.0.10", 9999)));
    CHECK_FALSE(is_mesh_destination(c, ep("198.18.9.9", 8080)));
    ProxyConfig none;
    CHECK_FALSE(is_mesh_destination(none, ep("198.19.0.10", 8080)));
}

TEST_CASE("protocol detection from the first bytes") {
    CHECK(classify_first_bytes("GET / HTTP/1.1\r\n") == Protocol::http1);
    CHECK(classify_first_bytes("POST /x HTTP/1.1") == Protocol::http1);
    CHECK(classify_first_bytes("OPTIONS * HTTP/1.1") == Protocol::http1);
    CHECK_FALSE(classify_first_bytes("GE"));  // could still be GET
    CHECK_FALSE(classify_first_bytes("P"));   // POST, PUT, PATCH or the HTTP/2 preface
    CHECK_FALSE(classify_first_bytes("PRI * HTTP/2.0\r\n"));
    CHECK(classify_first_bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == Protocol::http2);
    CHECK(classify_first_bytes(std::string("\x16\x03\x01\x02\x00", 5)) == Protocol::tls);
    CHECK_FALSE(classify_first_bytes("\x16"));
    CHECK(classify_first_bytes("*1\r\n$4\r\nPING\r\n") == Protocol::tcp);              // Redis
    CHECK(classify_first_bytes(std::string("\0\0\0\x08\x04\xd2\x16\x2f", 8)) == Protocol::tcp);  // Postgres
    CHECK(classify_first_bytes("GETX") == Protocol::tcp);  // a method needs its space
    CHECK(classify_first_bytes("get / HTTP/1.1") == Protocol::tcp);  // methods are case-sensitive
    CHECK(classify_first_bytes(std::string(kDetectBytes, 'z')) == Protocol::tcp);
}

TEST_CASE("declared port protocols, case-insensitively") {
    CHECK(declared_protocol("HTTP") == Protocol::http1);
    CHECK(declared_protocol("http") == Protocol::http1);
    CHECK(declared_protocol("GRPC") == Protocol::http2);
    CHECK(declared_protocol("HTTP2") == Protocol::http2);
    CHECK(declared_protocol("TCP") == Protocol::tcp);
    CHECK(declared_protocol("MONGO") == Protocol::tcp);
    CHECK(declared_protocol("Redis") == Protocol::tcp);
    CHECK(declared_protocol("TLS") == Protocol::tls);
    CHECK(declared_protocol("HTTPS") == Protocol::tls);
    CHECK(declared_protocol("GRPC-Web") == Protocol::unknown);
    CHECK(declared_protocol("") == Protocol::unknown);
}

TEST_CASE("the metadata exchange preamble round-trips and refuses what is not one") {
    const std::string pre = peer_exchange_preamble("wl=client;ns=default", "store.default.svc.cluster.local");
    PeerExchange mx;
    for (size_t cut = 0; cut < pre.size(); ++cut) {
        CAPTURE(cut);
        auto used = parse_peer_exchange(std::string_view(pre).substr(0, cut), mx);
        REQUIRE(used);
        CHECK(*used == 0);  // more bytes needed
    }
    auto used = parse_peer_exchange(pre + "app bytes", mx);
    REQUIRE(used);
    CHECK(*used == pre.size());
    REQUIRE(mx.peer);
    CHECK(mx.peer->name == "client");
    CHECK(mx.service_host == "store.default.svc.cluster.local");
    CHECK_FALSE(parse_peer_exchange("HELLO", mx));
    std::string huge = "RMX1";
    huge += std::string("\x7f\xff\xff\xff", 4);
    CHECK_FALSE(parse_peer_exchange(huge, mx));  // over kMaxPeerExchangeBytes
}
