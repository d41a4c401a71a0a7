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

#include <openssl/bio.h>
#include <openssl/ssl.h>

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
ProxyConfig config_with_registry(const char* yaml = kRegistry) {
    remora::control::model::Config istio;
    remora::control::model::load_yaml(istio, yaml, "mem.yaml");
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

TEST_CASE("a wildcard ServiceEntry host matches by suffix, the longest first, exact hosts before") {
    ProxyConfig c = config_with_registry(R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wide, namespace: default}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 198.18.5.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: narrow, namespace: default}
spec:
  hosts: ["*.eu.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 198.18.5.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: exact, namespace: default}
spec:
  hosts: ["api.eu.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 198.18.5.3}]
)");
    WorkerBalancer balancer;
    std::mt19937_64 rng(7);
    auto to = [&](std::string_view host) {
        RouteResult r = resolve_route(*c.routes, Head(host), std::nullopt, balancer, rng);
        return r.target ? r.target->address.address().to_string() : std::string("none");
    };
    CHECK(to("www.example.com") == "198.18.5.1");
    CHECK(to("WWW.Example.com:80") == "198.18.5.1");
    CHECK(to("a.eu.example.com") == "198.18.5.2");
    CHECK(to("api.eu.example.com") == "198.18.5.3");
    CHECK(to("example.com") == "none");  // "*.example.com" needs a label before the suffix
    CHECK(to("example.org") == "none");
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

namespace {

// A real ClientHello, as OpenSSL's client writes it.
std::string client_hello(const char* sni, const std::vector<std::string>& alpn) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(ctx);
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out);
    if (sni) SSL_set_tlsext_host_name(ssl, sni);
    std::string wire;
    for (const auto& p : alpn) wire += static_cast<char>(p.size()) + p;
    if (!wire.empty()) SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()), wire.size());
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl);  // writes the ClientHello, then wants the server's answer
    char* data = nullptr;
    const long n = BIO_get_mem_data(out, &data);
    std::string hello(data, static_cast<size_t>(n));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return hello;
}

}  // namespace

TEST_CASE("a TLS ClientHello's server name and ALPN protocols, however it arrives") {
    using Status = ClientHelloParse::Status;
    const std::string hello = client_hello("api.example.com", {"h2", "http/1.1"});
    REQUIRE(hello.size() > 100);
    ClientHelloParse p = parse_client_hello(hello);
    REQUIRE(p.status == Status::complete);
    CHECK(p.hello.sni == "api.example.com");
    CHECK(p.hello.alpn == std::vector<std::string>{"h2", "http/1.1"});
    CHECK_FALSE(offers_mesh_alpn(p.hello));
    // Every shorter prefix asks for more; nothing is read past the hello.
    for (size_t n = 0; n < hello.size(); n += 7) CHECK(parse_client_hello(hello.substr(0, n)).status == Status::need_more);
    CHECK(parse_client_hello(hello + "trailing application bytes").status == Status::complete);
    // The same handshake message split over two records.
    const std::string body = hello.substr(5);
    auto record = [](std::string_view b) {
        std::string r = {'\x16', '\x03', '\x01', static_cast<char>(b.size() >> 8), static_cast<char>(b.size() & 0xff)};
        return r + std::string(b);
    };
    const std::string split = record(std::string_view(body).substr(0, 40)) + record(std::string_view(body).substr(40));
    ClientHelloParse q = parse_client_hello(split);
    REQUIRE(q.status == Status::complete);
    CHECK(q.hello.sni == "api.example.com");
    CHECK(parse_client_hello(split.substr(0, 50)).status == Status::need_more);
    // No SNI, no ALPN.
    ClientHelloParse bare = parse_client_hello(client_hello(nullptr, {}));
    REQUIRE(bare.status == Status::complete);
    CHECK(bare.hello.sni.empty());
    CHECK(bare.hello.alpn.empty());
    // A sidecar's mTLS is marked.
    ClientHelloParse mesh = parse_client_hello(client_hello("x", {"istio-h2", "h2"}));
    REQUIRE(mesh.status == Status::complete);
    CHECK(offers_mesh_alpn(mesh.hello));
    CHECK(offers_mesh_alpn(parse_client_hello(client_hello(nullptr, {"istio-peer-exchange", "istio"})).hello));
    CHECK_FALSE(offers_mesh_alpn(parse_client_hello(client_hello(nullptr, {"istiox"})).hello));
    // Not TLS, or not a ClientHello.
    CHECK(parse_client_hello("GET / HTTP/1.1\r\n\r\n").status == Status::invalid);
    std::string not_hello = hello;
    not_hello[5] = '\x02';  // a ServerHello
    CHECK(parse_client_hello(not_hello).status == Status::invalid);
    // An extensions length past the end of the hello is invalid, never read out of bounds.
    std::string lying = hello;
    const size_t sid = static_cast<uint8_t>(lying[5 + 4 + 2 + 32]);
    const size_t at = 5 + 4 + 2 + 32 + 1 + sid;
    const size_t suites = (static_cast<uint8_t>(lying[at]) << 8) | static_cast<uint8_t>(lying[at + 1]);
    const size_t comp_at = at + 2 + suites;
    const size_t ext_len_at = comp_at + 1 + static_cast<uint8_t>(lying[comp_at]);
    lying[ext_len_at] = '\xff';
    lying[ext_len_at + 1] = '\xff';
    CHECK(parse_client_hello(lying).status == Status::invalid);
}

TEST_CASE("sniHosts match exactly or by a wildcard's suffix, case-insensitively") {
    CHECK(sni_matches("api.example.com", "API.example.com"));
    CHECK_FALSE(sni_matches("api.example.com", "www.example.com"));
    CHECK(sni_matches("*.example.com", "a.b.example.com"));
    CHECK_FALSE(sni_matches("*.example.com", "example.com"));
    CHECK_FALSE(sni_matches("*.example.com", "badexample.com"));
    CHECK(sni_matches("*", "anything"));
    CHECK_FALSE(sni_matches("*", ""));
}
