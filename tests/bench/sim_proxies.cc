// Many simulated proxies' config subscriptions in one process, for tests/bench/control_plane.py.
//
// Each simulated proxy does what remora-proxy's ConfigSubscriber does (proxy/subscription/): one
// mTLS connection with its namespace's SVID (certs' connect_control: the control plane's SVID is
// verified before anything is written), kept across polls (HTTP/1.1 keep-alive, as
// certs::ControlConnection), POST /v1/proxies/subscribe with its node (pod, workload, IP,
// labels, ports), the version it holds and the ACK of the snapshot it received last, waits for
// the answer and reads all of it, then polls again at once; a new connection when the server
// closed it; backoff with jitter after a failure. It does not build a route table (config_ready.py measures that) and keeps only the
// first bytes of an answer (the version), so a thousand 17 MB answers in flight do not need
// 17 GB. One io_context per --threads, proxies spread over them.
//
//   sim_proxies SPEC.json [--threads N] [--new-connection-per-poll] [--identity]
// --identity asks for answers without gzip (remora-proxy asks for gzip, and so does this by
// default; only the first bytes of an answer, the version, are inflated).
// --new-connection-per-poll opens a new connection for every poll, as remora-proxy did before it
// kept its control connection (every push then costs the control plane a handshake per proxy).
// (--keep-alive, the default, is accepted for old command lines.)
// SPEC: {"bundle": "root.pem", "trustDomain": "cluster.local", "waitSeconds": 60,
//        "identities": {"ns-0": "DIR with cert-chain.pem and key.pem", ...},
//        "proxies": [{"name": "p-0", "workload": "p", "ip": "127.18.0.1", "labels": {...},
//                     "ports": [8080], "identity": "ns-0", "control": "127.0.0.1:15012"}, ...]}
// Writes one line per event on stdout, times in CLOCK_MONOTONIC seconds (Python's
// time.monotonic()):
//   got INDEX VERSION BYTES T WIRE   a 200 answer was read whole: the message's bytes, and the
//                                    bytes that came (fewer when gzip)
//   ack INDEX VERSION T         the poll carrying the ACK of VERSION has been written
//   err INDEX WHY               a poll failed (the proxy backs off and retries)
// Runs until killed.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "certs/ca_client_async.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace ssl = asio::ssl;
using remora::certs::CaClientOptions;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kHeadBytes = 256;  // enough for "version" at the start of the answer

// A response body that counts its bytes and keeps the first kHeadBytes of the message: as they
// came, or inflated when the answer is gzip (as remora-proxy asks for), with the message's size
// from gzip's trailer (ISIZE: the size modulo 2^32).
struct CountingBody {
    struct value_type {
        std::size_t size = 0;  // bytes on the wire
        std::string head;      // the message's first bytes
        bool gzip = false;
        z_stream z{};
        bool inflating = false;
        unsigned char tail[4] = {0, 0, 0, 0};  // the last four bytes (gzip's ISIZE)
        value_type() = default;
        value_type(const value_type&) = delete;
        value_type& operator=(const value_type&) = delete;
        ~value_type() {
            if (inflating) inflateEnd(&z);
        }
        // The message's size: the bytes, or what the gzip trailer says they inflate to.
        std::size_t message_size() const {
            if (!gzip) return size;
            return static_cast<std::size_t>(tail[0]) | static_cast<std::size_t>(tail[1]) << 8 |
                   static_cast<std::size_t>(tail[2]) << 16 | static_cast<std::size_t>(tail[3]) << 24;
        }
    };
    struct reader {
        value_type& body;
        std::function<bool()> gzip;  // whether the head says Content-Encoding: gzip
        // (Made with the parser, before the head is read: init() looks at it.)
        template <bool isRequest, class Fields>
        reader(http::header<isRequest, Fields>& h, value_type& b)
            : body(b), gzip([&h] { return beast::iequals(h[http::field::content_encoding], "gzip"); }) {}
        void init(const boost::optional<std::uint64_t>&, beast::error_code& ec) {
            ec = {};
            body.gzip = gzip();
            if (body.gzip && !body.inflating) body.inflating = inflateInit2(&body.z, 15 + 16) == Z_OK;
        }
        template <class Buffers>
        std::size_t put(const Buffers& buffers, beast::error_code& ec) {
            ec = {};
            std::size_t n = 0;
            for (auto b : beast::buffers_range_ref(buffers)) {
                const auto* data = static_cast<const unsigned char*>(b.data());
                if (body.head.size() < kHeadBytes && !body.gzip) {
                    body.head.append(reinterpret_cast<const char*>(data), std::min(b.size(), kHeadBytes - body.head.size()));
                } else if (body.head.size() < kHeadBytes && body.inflating) {
                    // Only the head is inflated; the rest is counted.
                    char out[kHeadBytes];
                    body.z.next_in = const_cast<unsigned char*>(data);
                    body.z.avail_in = static_cast<uInt>(b.size());
                    while (body.z.avail_in > 0 && body.head.size() < kHeadBytes) {
                        body.z.next_out = reinterpret_cast<Bytef*>(out);
                        body.z.avail_out = static_cast<uInt>(kHeadBytes - body.head.size());
                        const int rc = inflate(&body.z, Z_NO_FLUSH);
                        body.head.append(out, kHeadBytes - body.head.size() - body.z.avail_out);
                        if (rc != Z_OK) break;
                    }
                }
                for (std::size_t i = b.size() >= 4 ? b.size() - 4 : 0; i < b.size(); ++i) {
                    std::memmove(body.tail, body.tail + 1, 3);
                    body.tail[3] = data[i];
                }
                n += b.size();
            }
            body.size += n;
            return n;
        }
        void finish(beast::error_code& ec) { ec = {}; }
    };
};

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::mutex out_mu;
void emit(const std::string& line) {
    std::lock_guard lock(out_mu);
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

struct SimProxy {
    std::size_t index = 0;
    json::object node;
    CaClientOptions options;  // control address, SVID, bundle
    std::shared_ptr<ssl::context> tls;
};

// The version at the start of a snapshot message ({"version":"...", ...}).
std::string version_of(const std::string& head) {
    std::size_t at = head.find("\"version\":\"");
    if (at == std::string::npos) return "";
    at += 11;
    std::size_t end = head.find('"', at);
    return end == std::string::npos ? "" : head.substr(at, end - at);
}

asio::awaitable<void> run_proxy(SimProxy& p, int wait_seconds, bool keep_alive, bool gzip, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto backoff = std::chrono::milliseconds(200);
    std::string held, report;
    auto executor = co_await asio::this_coro::executor;
    bool reconnect_now = false;  // the kept connection failed after serving polls
    for (;;) {
        std::string why;
        std::size_t served = 0;
        try {
            beast::ssl_stream<beast::tcp_stream> stream(executor, *p.tls);
            SSL_set_tlsext_host_name(stream.native_handle(), p.options.host.c_str());
            co_await remora::certs::connect_control(stream, p.options);
            beast::flat_buffer buffer;
            for (bool again = true; again;) {
                json::object body;
                body["node"] = p.node;
                body["version"] = held;
                if (!report.empty())
                    body["applied"] = json::object{{"version", report}, {"error", ""}};
                body["waitSeconds"] = wait_seconds;
                http::request<http::string_body> req{http::verb::post, "/v1/proxies/subscribe", 11};
                req.set(http::field::host, p.options.host);
                req.set(http::field::user_agent, "remoractl");
                req.set(http::field::content_type, "application/json");
                if (gzip) req.set(http::field::accept_encoding, "gzip");
                req.keep_alive(keep_alive);
                req.body() = json::serialize(body);
                req.prepare_payload();
                beast::get_lowest_layer(stream).expires_after(p.options.timeout);
                auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
                if (wec) throw std::runtime_error("sending the poll failed: " + wec.message());
                if (!report.empty()) {
                    emit("ack " + std::to_string(p.index) + " " + report + " " +
                         std::to_string(now_s()));
                    report.clear();
                }
                http::response_parser<CountingBody> parser;
                parser.body_limit(boost::none);
                beast::get_lowest_layer(stream).expires_after(p.options.timeout);
                auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
                if (rec) throw std::runtime_error("reading the answer failed: " + rec.message());
                int status = static_cast<int>(parser.get().result_int());
                served += 1;
                reconnect_now = false;
                again = keep_alive && parser.get().keep_alive();
                if (!again) {
                    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
                    co_await stream.async_shutdown(use_nothrow);
                }
                if (status == 200) {
                    const auto& b = parser.get().body();
                    held = version_of(b.head);
                    report = held;  // ACKed on the next poll, as the proxy reports what it applied
                    emit("got " + std::to_string(p.index) + " " + held + " " +
                         std::to_string(b.message_size()) + " " + std::to_string(now_s()) + " " +
                         std::to_string(b.size));
                } else if (status != 304) {
                    why = "HTTP " + std::to_string(status);
                    break;
                }
            }
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (why.empty()) {
            backoff = std::chrono::milliseconds(200);
            continue;
        }
        // As certs::ControlConnection: a kept connection that ends after serving polls (the
        // server closed it) is replaced at once, once, without an error.
        if (keep_alive && served > 0 && !reconnect_now) {
            reconnect_now = true;
            continue;
        }
        reconnect_now = false;
        emit("err " + std::to_string(p.index) + " " + why);
        asio::steady_timer timer(executor);
        timer.expires_after(std::chrono::milliseconds(
            static_cast<int64_t>(static_cast<double>(backoff.count()) * jitter(rng))));
        co_await timer.async_wait(use_nothrow);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: sim_proxies SPEC.json [--threads N] [--new-connection-per-poll] [--identity]\n";
        return 2;
    }
    int threads = 1;
    bool keep_alive = true;
    bool gzip = true;
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) {
            threads = std::max(1, std::atoi(argv[++i]));
        } else if (a == "--keep-alive") {
            keep_alive = true;
        } else if (a == "--new-connection-per-poll") {
            keep_alive = false;
        } else if (a == "--identity") {
            gzip = false;
        } else {
            std::cerr << "sim_proxies: unknown argument " << a << "\n";
            return 2;
        }
    }
    try {
        json::value spec = json::parse(slurp(argv[1]));
        const json::object& o = spec.as_object();
        auto bundle = remora::certs::TrustBundle::from_pem(
            slurp(json::value_to<std::string>(o.at("bundle"))));
        if (!bundle) throw std::runtime_error("bundle: " + bundle.error().message());
        std::string trust_domain = o.contains("trustDomain")
                                       ? json::value_to<std::string>(o.at("trustDomain"))
                                       : std::string("cluster.local");
        int wait_seconds = o.contains("waitSeconds")
                               ? static_cast<int>(o.at("waitSeconds").to_number<double>())
                               : 60;

        // One TLS context per identity, as each proxy has its own; shared by the proxies that
        // hold the same SVID.
        std::map<std::string, std::pair<CaClientOptions, std::shared_ptr<ssl::context>>> identities;
        for (const auto& [ns, dir_v] : o.at("identities").as_object()) {
            std::string dir = json::value_to<std::string>(dir_v);
            CaClientOptions opts;
            opts.bundle = *bundle;
            opts.trust_domain = trust_domain;
            auto chain = remora::certs::Certificate::chain_from_pem(slurp(dir + "/cert-chain.pem"));
            if (!chain)
                throw std::runtime_error(dir + "/cert-chain.pem: " + chain.error().message());
            auto key = remora::certs::PrivateKey::from_pem(slurp(dir + "/key.pem"));
            if (!key) throw std::runtime_error(dir + "/key.pem: " + key.error().message());
            opts.client_chain = std::move(*chain);
            opts.client_key = std::move(*key);
            opts.timeout = std::chrono::seconds(wait_seconds + 10);  // as the proxy's subscriber
            auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
            remora::certs::configure_client_context(*ctx, opts);
            identities.emplace(std::string(ns), std::make_pair(std::move(opts), ctx));
        }

        std::vector<SimProxy> proxies;
        for (const json::value& pv : o.at("proxies").as_array()) {
            const json::object& po = pv.as_object();
            SimProxy p;
            p.index = proxies.size();
            const auto& id = identities.at(json::value_to<std::string>(po.at("identity")));
            p.options = id.first;
            p.tls = id.second;
            std::string control = json::value_to<std::string>(po.at("control"));
            auto addr = remora::certs::parse_control_addresses(control).front();
            p.options.host = addr.host;
            p.options.port = addr.port;
            p.node["podName"] = po.at("name");
            p.node["workloadName"] = po.at("workload");
            p.node["podIp"] = po.at("ip");
            p.node["proxyVersion"] = "sim";
            p.node["labels"] = po.at("labels");
            p.node["ports"] = po.contains("ports") ? po.at("ports") : json::array{8080};
            proxies.push_back(std::move(p));
        }

        std::vector<std::unique_ptr<asio::io_context>> ios;
        for (int t = 0; t < threads; ++t)
            ios.push_back(std::make_unique<asio::io_context>(1));
        for (SimProxy& p : proxies) {
            asio::co_spawn(*ios[p.index % ios.size()],
                           run_proxy(p, wait_seconds, keep_alive, gzip, p.index + 1),
                           [&p](std::exception_ptr e) {
                               if (!e) return;
                               try {
                                   std::rethrow_exception(e);
                               } catch (const std::exception& x) {
                                   emit("err " + std::to_string(p.index) + " stopped: " + x.what());
                               }
                           });
        }
        std::vector<std::thread> workers;
        for (int t = 1; t < threads; ++t)
            workers.emplace_back([&ios, t] { ios[t]->run(); });
        ios[0]->run();
        for (auto& w : workers)
            w.join();
    } catch (const std::exception& e) {
        std::cerr << "sim_proxies: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
