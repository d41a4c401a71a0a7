// App probes: the injector's ISTIO_KUBE_APP_PROBERS read back, and probes run against real
// loopback servers (an HTTP app answering 200 or 500, an HTTPS one, a TCP listener, a closed port,
// a silent one; gRPC probes against servers that are not gRPC). gRPC's SERVING / NOT_SERVING
// against a real grpcio server: tests/system/test_kube.py.
#include <doctest/doctest.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include "certs/issuer.h"
#include "common/http_server.h"

#include <atomic>
#include <string>
#include <thread>

#include "proxy/agent/app_prober.h"

using namespace remora::proxy::agent;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// A loopback server on port 0 that answers each connection with `reply` (nothing when empty)
// and keeps the request line it read.
class TinyServer {
  public:
    explicit TinyServer(std::string reply)
        : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          reply_(std::move(reply)) {
        thread_ = std::thread([this] { loop(); });
    }
    ~TinyServer() {
        stop_ = true;
        boost::system::error_code ec;
        // Wake the accept with a connection of our own.
        tcp::socket s(io_);
        s.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
    }
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::string last_request() {
        std::lock_guard<std::mutex> l(mu_);
        return last_;
    }

  private:
    void loop() {
        while (!stop_) {
            boost::system::error_code ec;
            tcp::socket s = acceptor_.accept(ec);
            if (ec || stop_) break;
            if (reply_.empty()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1500));
                continue;
            }
            char buf[4096];
            size_t n = s.read_some(asio::buffer(buf), ec);
            {
                std::lock_guard<std::mutex> l(mu_);
                last_.assign(buf, ec ? 0 : n);
            }
            asio::write(s, asio::buffer(reply_), ec);
        }
    }

    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::string reply_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mu_;
    std::string last_;
};

const char* k200 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const char* k500 = "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const char* k302 = "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";

// A loopback HTTPS server on port 0 with a self-signed certificate, answering each connection
// with `reply` after the handshake.
class TinyTlsServer {
  public:
    explicit TinyTlsServer(std::string reply)
        : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          reply_(std::move(reply)) {
        auto key = remora::certs::PrivateKey::generate_p256();
        auto cert = remora::certs::make_root_certificate(
            key, "app.example", std::chrono::system_clock::now(), std::chrono::hours(1));
        tls_ = remora::common::make_server_tls_context({cert}, key);
        thread_ = std::thread([this] { loop(); });
    }
    ~TinyTlsServer() {
        stop_ = true;
        boost::system::error_code ec;
        tcp::socket s(io_);
        s.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
    }
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::string last_request() {
        std::lock_guard<std::mutex> l(mu_);
        return last_;
    }

  private:
    void loop() {
        while (!stop_) {
            boost::system::error_code ec;
            tcp::socket s = acceptor_.accept(ec);
            if (ec || stop_) break;
            asio::ssl::stream<tcp::socket> tls(std::move(s), *tls_);
            tls.handshake(asio::ssl::stream_base::server, ec);
            if (ec) continue;
            char buf[4096];
            size_t n = tls.read_some(asio::buffer(buf), ec);
            {
                std::lock_guard<std::mutex> l(mu_);
                last_.assign(buf, ec ? 0 : n);
            }
            asio::write(tls, asio::buffer(reply_), ec);
            tls.shutdown(ec);
        }
    }

    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::shared_ptr<asio::ssl::context> tls_;
    std::string reply_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mu_;
    std::string last_;
};

uint16_t closed_port() {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return a.local_endpoint().port();  // closed again when `a` goes
}

}  // namespace

TEST_CASE("the injector's probers parse; bad ones are refused naming the probe") {
    AppProbers p = AppProbers::parse(R"({
        "/app-health/web/livez": {"httpGet": {"path": "/live", "port": 8080,
            "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "timeoutSeconds": 3},
        "/app-health/web/readyz": {"tcpSocket": {"port": 8080}},
        "/app-health/web/startupz": {"httpGet": {"port": 8443, "scheme": "HTTPS"}},
        "/app-health/grpc/livez": {"grpc": {"port": 9090, "service": "shop.Cart"}},
        "/app-health/grpc/readyz": {"grpc": {"port": 9090, "service": null}}})");
    CHECK(p.size() == 5);
    const AppProbe* live = p.find("/app-health/web/livez");
    REQUIRE(live);
    CHECK(live->kind == AppProbe::Kind::http);
    CHECK(live->port == 8080);
    CHECK(live->path == "/live");
    CHECK(live->timeout == std::chrono::milliseconds(3000));
    REQUIRE(live->headers.size() == 1);
    CHECK(live->headers[0].first == "X-Probe");
    CHECK(!live->https);
    CHECK(p.find("/app-health/web/readyz")->kind == AppProbe::Kind::tcp);
    const AppProbe* tls = p.find("/app-health/web/startupz");
    REQUIRE(tls);
    CHECK(tls->kind == AppProbe::Kind::http);
    CHECK(tls->https);
    CHECK(tls->path == "/");
    const AppProbe* grpc = p.find("/app-health/grpc/livez");
    REQUIRE(grpc);
    CHECK(grpc->kind == AppProbe::Kind::grpc);
    CHECK(grpc->port == 9090);
    CHECK(grpc->grpc_service == "shop.Cart");
    CHECK(p.find("/app-health/grpc/readyz")->grpc_service.empty());
    CHECK(p.find("/app-health/other/livez") == nullptr);
    CHECK(AppProbers::parse("").empty());

    for (const char* bad :
         {"[1]", "not json", R"({"/elsewhere": {"tcpSocket": {"port": 1}}})",
          R"({"/app-health/a/livez": {"httpGet": {"port": "http"}}})",
          R"({"/app-health/a/livez": {"tcpSocket": {"port": 70000}}})",
          R"({"/app-health/a/livez": {"exec": {}}})",
          R"({"/app-health/a/livez": {"grpc": {"service": "x"}}})",
          R"({"/app-health/a/livez": {"httpGet": {"port": 1, "scheme": "FTP"}}})"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(AppProbers::parse(bad), std::invalid_argument);
    }
}

TEST_CASE("probes against real servers answer as kubelet would judge") {
    TinyServer ok(k200), failing(k500), redirect(k302), silent("");
    AppProbe p;
    p.port = ok.port();
    p.path = "/live";
    p.headers = {{"X-Probe", "yes"}};
    CHECK(run_probe(p) == 200);
    CHECK(ok.last_request().starts_with("GET /live HTTP/1.1\r\n"));
    CHECK(ok.last_request().find("X-Probe: yes") != std::string::npos);
    p.port = redirect.port();
    CHECK(run_probe(p) == 200);  // 3xx counts as success for kubelet
    p.port = failing.port();
    CHECK(run_probe(p) == 503);
    p.port = closed_port();
    CHECK(run_probe(p) == 503);
    // A server that accepts and never answers: bounded by the probe's timeout.
    p.port = silent.port();
    p.timeout = std::chrono::milliseconds(300);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(run_probe(p) == 503);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1200));

    AppProbe tcp_probe;
    tcp_probe.kind = AppProbe::Kind::tcp;
    tcp_probe.port = failing.port();  // any listener: a TCP probe only connects
    CHECK(run_probe(tcp_probe) == 200);
    tcp_probe.port = closed_port();
    CHECK(run_probe(tcp_probe) == 503);
}

TEST_CASE("HTTPS probes: TLS to the app without verifying its certificate") {
    TinyTlsServer ok(k200), failing(k500);
    AppProbe p;
    p.https = true;
    p.port = ok.port();
    p.path = "/healthz";
    CHECK(run_probe(p) == 200);
    CHECK(ok.last_request().starts_with("GET /healthz HTTP/1.1\r\n"));
    p.port = failing.port();
    CHECK(run_probe(p) == 503);
    // Plaintext HTTP where TLS was expected fails the probe (no handshake), as kubelet's would.
    TinyServer plain(k200);
    p.port = plain.port();
    p.timeout = std::chrono::milliseconds(1000);
    CHECK(run_probe(p) == 503);
    p.port = closed_port();
    CHECK(run_probe(p) == 503);
}

TEST_CASE("gRPC probes fail, bounded, against what is not a gRPC health service") {
    AppProbe p;
    p.kind = AppProbe::Kind::grpc;
    p.timeout = std::chrono::milliseconds(500);
    p.port = closed_port();
    CHECK(run_probe(p) == 503);
    // An HTTP/1.1 server reads the HTTP/2 preface as a bad request: no answer we accept.
    TinyServer http1(k200);
    p.port = http1.port();
    CHECK(run_probe(p) == 503);
    CHECK(http1.last_request().starts_with("PRI * HTTP/2.0"));
    // A server that never answers: the probe's timeout ends it.
    TinyServer silent("");
    p.port = silent.port();
    CHECK(run_probe(p) == 503);
}
