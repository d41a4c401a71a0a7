// App probes and the readiness GET, each on its own short-lived io_context so that a slow app
// never holds the proxy's threads.
#include "proxy/agent/app_prober.h"

#include "common/http_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

namespace remora::proxy::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using asio::ip::tcp;

namespace {

uint16_t port_of(const json::object& o, const std::string& where) {
    const json::value* p = o.if_contains("port");
    if (!p || !p->is_number()) throw std::invalid_argument(where + ": port must be a number");
    long long n = p->to_number<long long>();
    if (n < 1 || n > 65535) throw std::invalid_argument(where + ": port out of range");
    return static_cast<uint16_t>(n);
}

}  // namespace

AppProbers AppProbers::parse(std::string_view json_text) {
    AppProbers out;
    if (json_text.find_first_not_of(" \t\r\n") == std::string_view::npos) return out;
    boost::system::error_code ec;
    json::value v = json::parse(json_text, ec);
    if (ec || !v.is_object())
        throw std::invalid_argument("ISTIO_KUBE_APP_PROBERS: not a JSON object");
    for (const auto& kv : v.as_object()) {
        std::string path(kv.key());
        if (!path.starts_with("/app-health/") || !kv.value().is_object())
            throw std::invalid_argument("ISTIO_KUBE_APP_PROBERS: " + path + ": not an app probe");
        const json::object& o = kv.value().as_object();
        AppProbe p;
        if (const json::value* t = o.if_contains("timeoutSeconds"); t && t->is_number())
            p.timeout = std::chrono::milliseconds(
                std::clamp<long long>(t->to_number<long long>(), 1, 600) * 1000);
        if (const json::value* h = o.if_contains("httpGet"); h && h->is_object()) {
            const json::object& get = h->as_object();
            p.port = port_of(get, path + ".httpGet");
            if (const json::value* pa = get.if_contains("path"); pa && pa->is_string())
                p.path = std::string(pa->get_string());
            if (p.path.empty() || p.path.front() != '/') p.path = "/" + p.path;
            if (const json::value* hs = get.if_contains("httpHeaders"); hs && hs->is_array()) {
                for (const json::value& hv : hs->get_array()) {
                    if (!hv.is_object()) continue;
                    const json::value* n = hv.as_object().if_contains("name");
                    const json::value* val = hv.as_object().if_contains("value");
                    if (n && n->is_string() && val && val->is_string())
                        p.headers.emplace_back(std::string(n->get_string()),
                                               std::string(val->get_string()));
                }
            }
        } else if (const json::value* t = o.if_contains("tcpSocket"); t && t->is_object()) {
            p.kind = AppProbe::Kind::tcp;
            p.port = port_of(t->as_object(), path + ".tcpSocket");
        } else {
            throw std::invalid_argument("ISTIO_KUBE_APP_PROBERS: " + path +
                                        ": neither httpGet nor tcpSocket");
        }
        out.probes_[path] = std::move(p);
    }
    return out;
}

const AppProbe* AppProbers::find(std::string_view path) const {
    auto it = probes_.find(path);
    return it == probes_.end() ? nullptr : &it->second;
}

namespace {

// One exchange on its own io_context, bounded as a whole by `timeout` (the stream's deadline is
// set once, before the first operation, and covers connect, write and read).
std::optional<unsigned> exchange(const std::string& host, uint16_t port,
                                 const std::optional<http::request<http::empty_body>>& req,
                                 std::chrono::milliseconds timeout) {
    asio::io_context io;
    std::optional<unsigned> result;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            beast::tcp_stream stream(io);
            stream.expires_after(timeout);
            boost::system::error_code ec;
            auto address = asio::ip::make_address(host, ec);
            if (ec) co_return;
            auto token = asio::redirect_error(asio::use_awaitable, ec);
            co_await stream.async_connect(tcp::endpoint(address, port), token);
            if (ec) co_return;
            if (!req) {
                result = 200;
                co_return;
            }
            co_await http::async_write(stream, *req, token);
            if (ec) co_return;
            beast::flat_buffer buffer;
            http::response_parser<http::string_body> parser;
            parser.body_limit(64 * 1024);
            co_await http::async_read_header(stream, buffer, parser, token);
            if (ec) co_return;
            result = parser.get().result_int();
            boost::system::error_code ignored;
            stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        },
        asio::detached);
    io.run();
    return result;
}

}  // namespace

std::optional<unsigned> http_get(const std::string& host, uint16_t port, const std::string& path,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 std::chrono::milliseconds timeout) {
    http::request<http::empty_body> req{http::verb::get, path, 11};
    req.set(http::field::host, host + ":" + std::to_string(port));
    req.set(http::field::user_agent, "remora-agent");
    req.set(http::field::connection, "close");
    for (const auto& [name, value] : headers)
        req.set(name, value);
    return exchange(host, port, req, timeout);
}

unsigned run_probe(const AppProbe& probe) {
    std::optional<unsigned> status;
    if (probe.kind == AppProbe::Kind::tcp) {
        status = exchange("127.0.0.1", probe.port, std::nullopt, probe.timeout);
    } else {
        status = http_get("127.0.0.1", probe.port, probe.path, probe.headers, probe.timeout);
    }
    return status && *status >= 200 && *status < 400 ? 200 : 503;
}

void serve_app_probes(common::HttpServer& health, std::shared_ptr<const AppProbers> probers) {
    auto in_flight = std::make_shared<std::atomic<int>>(0);
    health.defer("/app-health/", [probers, in_flight](const common::HttpRequest& req,
                                                      const common::PeerInfo&,
                                                      std::shared_ptr<common::Responder> r) {
        std::string_view target = req.target();
        const AppProbe* probe = probers->find(target.substr(0, target.find('?')));
        if (!probe) {
            r->respond(
                common::json_response(404, R"({"error":"no such app probe"})", req.version()));
            return;
        }
        if (in_flight->fetch_add(1) >= kMaxProbesInFlight) {
            in_flight->fetch_sub(1);
            r->respond(common::json_response(503, R"({"error":"too many probes in flight"})",
                                             req.version()));
            return;
        }
        unsigned version = req.version();
        std::thread([probers, probe, r, in_flight, version] {
            unsigned status = run_probe(*probe);
            r->respond(common::json_response(
                status, status == 200 ? R"({"status":"ok"})" : R"({"status":"app probe failed"})",
                version));
            in_flight->fetch_sub(1);
        }).detach();
    });
}

}  // namespace remora::proxy::agent
