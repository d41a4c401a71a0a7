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
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <atomic>
#include <cstring>
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
            if (const json::value* sc = get.if_contains("scheme"); sc && sc->is_string()) {
                std::string scheme(sc->get_string());
                if (scheme != "HTTP" && scheme != "HTTPS")
                    throw std::invalid_argument("ISTIO_KUBE_APP_PROBERS: " + path +
                                                ".httpGet.scheme: HTTP or HTTPS, not \"" + scheme +
                                                "\"");
                p.https = scheme == "HTTPS";
            }
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
        } else if (const json::value* g = o.if_contains("grpc"); g && g->is_object()) {
            p.kind = AppProbe::Kind::grpc;
            p.port = port_of(g->as_object(), path + ".grpc");
            if (const json::value* sv = g->as_object().if_contains("service");
                sv && sv->is_string())
                p.grpc_service = std::string(sv->get_string());
        } else {
            throw std::invalid_argument("ISTIO_KUBE_APP_PROBERS: " + path +
                                        ": neither httpGet, tcpSocket nor grpc");
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

namespace {

http::request<http::empty_body> probe_request(
    const std::string& host, uint16_t port, const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers) {
    http::request<http::empty_body> req{http::verb::get, path, 11};
    req.set(http::field::host, host + ":" + std::to_string(port));
    req.set(http::field::user_agent, "remora-agent");
    req.set(http::field::connection, "close");
    for (const auto& [name, value] : headers)
        req.set(name, value);
    return req;
}

}  // namespace

std::optional<unsigned> http_get(const std::string& host, uint16_t port, const std::string& path,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 std::chrono::milliseconds timeout) {
    return exchange(host, port, probe_request(host, port, path, headers), timeout);
}

std::optional<unsigned> https_get(const std::string& host, uint16_t port, const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  std::chrono::milliseconds timeout) {
    asio::io_context io;
    asio::ssl::context tls(asio::ssl::context::tls_client);
    tls.set_verify_mode(asio::ssl::verify_none);
    std::optional<unsigned> result;
    auto req = probe_request(host, port, path, headers);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            beast::ssl_stream<beast::tcp_stream> stream(io, tls);
            beast::get_lowest_layer(stream).expires_after(timeout);  // covers the whole exchange
            boost::system::error_code ec;
            auto address = asio::ip::make_address(host, ec);
            if (ec) co_return;
            auto token = asio::redirect_error(asio::use_awaitable, ec);
            co_await beast::get_lowest_layer(stream).async_connect(tcp::endpoint(address, port),
                                                                   token);
            if (ec) co_return;
            co_await stream.async_handshake(asio::ssl::stream_base::client, token);
            if (ec) co_return;
            co_await http::async_write(stream, req, token);
            if (ec) co_return;
            beast::flat_buffer buffer;
            http::response_parser<http::string_body> parser;
            parser.body_limit(64 * 1024);
            co_await http::async_read_header(stream, buffer, parser, token);
            if (ec) co_return;
            result = parser.get().result_int();
        },
        asio::detached);
    io.run();
    return result;
}

namespace {

// One unary gRPC call's state, shared with nghttp2's callbacks.
struct GrpcCall {
    std::string request;  // the length-prefixed HealthCheckRequest
    size_t sent = 0;
    std::string response;
    unsigned http_status = 0;
    std::optional<int> grpc_status;
    bool closed = false;
    static constexpr size_t kMaxResponse = 64 * 1024;
};

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

// HealthCheckResponse { ServingStatus status = 1; } from one length-prefixed message; the
// absent field is UNKNOWN (0), as proto3 reads it.
std::optional<int> serving_status_of(const std::string& body) {
    if (body.size() < 5 || body[0] != 0) return std::nullopt;  // compressed or short
    uint32_t len = (uint32_t(uint8_t(body[1])) << 24) | (uint32_t(uint8_t(body[2])) << 16) |
                   (uint32_t(uint8_t(body[3])) << 8) | uint32_t(uint8_t(body[4]));
    if (body.size() != 5 + size_t(len)) return std::nullopt;
    int status = 0;
    size_t i = 5;
    auto varint = [&](uint64_t& v) {
        v = 0;
        for (int shift = 0; i < body.size() && shift < 64; shift += 7) {
            uint8_t b = uint8_t(body[i++]);
            v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return true;
        }
        return false;
    };
    while (i < body.size()) {
        uint64_t key = 0, v = 0;
        if (!varint(key)) return std::nullopt;
        switch (key & 7) {
            case 0:
                if (!varint(v)) return std::nullopt;
                if (key >> 3 == 1) status = static_cast<int>(v);
                break;
            case 2:
                if (!varint(v) || v > body.size() - i) return std::nullopt;
                i += v;
                break;
            case 1:
                if (body.size() - i < 8) return std::nullopt;
                i += 8;
                break;
            case 5:
                if (body.size() - i < 4) return std::nullopt;
                i += 4;
                break;
            default:
                return std::nullopt;
        }
    }
    return status;
}

nghttp2_nv header(const char* name, const std::string& value) {
    return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
            reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), std::strlen(name),
            value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::optional<int> grpc_health_check(const std::string& host, uint16_t port,
                                     const std::string& service,
                                     std::chrono::milliseconds timeout) {
    GrpcCall call;
    std::string message;
    if (!service.empty()) {
        message.push_back(0x0a);  // field 1, length-delimited
        put_varint(message, service.size());
        message += service;
    }
    call.request.push_back(0);  // not compressed
    for (int shift = 24; shift >= 0; shift -= 8)
        call.request.push_back(static_cast<char>((message.size() >> shift) & 0xff));
    call.request += message;

    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0) return std::nullopt;
    std::unique_ptr<nghttp2_session_callbacks, decltype(&nghttp2_session_callbacks_del)> cbs_owner(
        cbs, nghttp2_session_callbacks_del);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs,
        [](nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t namelen,
           const uint8_t* value, size_t valuelen, uint8_t, void* user) -> int {
            auto* c = static_cast<GrpcCall*>(user);
            std::string_view n(reinterpret_cast<const char*>(name), namelen);
            std::string v(reinterpret_cast<const char*>(value), valuelen);
            try {
                if (n == ":status") c->http_status = static_cast<unsigned>(std::stoul(v));
                if (n == "grpc-status") c->grpc_status = std::stoi(v);
            } catch (const std::exception&) {
                c->grpc_status = -1;
            }
            return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs,
        [](nghttp2_session*, uint8_t, int32_t, const uint8_t* data, size_t len, void* user) -> int {
            auto* c = static_cast<GrpcCall*>(user);
            if (c->response.size() + len > GrpcCall::kMaxResponse)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            c->response.append(reinterpret_cast<const char*>(data), len);
            return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t, uint32_t, void* user) -> int {
            static_cast<GrpcCall*>(user)->closed = true;
            return 0;
        });
    nghttp2_session* raw = nullptr;
    if (nghttp2_session_client_new(&raw, cbs, &call) != 0) return std::nullopt;
    std::unique_ptr<nghttp2_session, decltype(&nghttp2_session_del)> session(raw,
                                                                             nghttp2_session_del);
    const std::string authority = host + ":" + std::to_string(port);
    const std::string post = "POST", scheme = "http", rpc = "/grpc.health.v1.Health/Check",
                      content_type = "application/grpc", te = "trailers", agent = "remora-agent";
    nghttp2_nv nva[] = {header(":method", post),
                        header(":scheme", scheme),
                        header(":path", rpc),
                        header(":authority", authority),
                        header("content-type", content_type),
                        header("te", te),
                        header("user-agent", agent)};
    nghttp2_data_provider body;
    body.source.ptr = &call;
    body.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                            nghttp2_data_source* src, void*) -> ssize_t {
        auto* c = static_cast<GrpcCall*>(src->ptr);
        size_t n = std::min(length, c->request.size() - c->sent);
        std::memcpy(buf, c->request.data() + c->sent, n);
        c->sent += n;
        if (c->sent == c->request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
        return static_cast<ssize_t>(n);
    };
    if (nghttp2_submit_settings(session.get(), NGHTTP2_FLAG_NONE, nullptr, 0) != 0 ||
        nghttp2_submit_request(session.get(), nullptr, nva, std::size(nva), &body, nullptr) < 0)
        return std::nullopt;

    asio::io_context io;
    bool failed = true;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            beast::tcp_stream stream(io);
            stream.expires_after(timeout);  // the whole call
            boost::system::error_code ec;
            auto address = asio::ip::make_address(host, ec);
            if (ec) co_return;
            auto token = asio::redirect_error(asio::use_awaitable, ec);
            co_await stream.async_connect(tcp::endpoint(address, port), token);
            if (ec) co_return;
            std::array<char, 16 * 1024> buf;
            while (!call.closed) {
                std::string out;
                const uint8_t* data = nullptr;
                ssize_t n;
                while ((n = nghttp2_session_mem_send(session.get(), &data)) > 0)
                    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
                if (n < 0) co_return;
                if (!out.empty()) {
                    co_await asio::async_write(stream, asio::buffer(out), token);
                    if (ec) co_return;
                }
                if (call.closed) break;
                size_t got = co_await stream.async_read_some(asio::buffer(buf), token);
                if (ec) co_return;
                if (nghttp2_session_mem_recv(session.get(), reinterpret_cast<uint8_t*>(buf.data()),
                                             got) < 0)
                    co_return;
            }
            failed = false;
        },
        asio::detached);
    io.run();
    if (failed || call.http_status != 200 || call.grpc_status != 0) return std::nullopt;
    return serving_status_of(call.response);
}

unsigned run_probe(const AppProbe& probe) {
    constexpr int kServing = 1;
    std::optional<unsigned> status;
    switch (probe.kind) {
        case AppProbe::Kind::tcp:
            status = exchange("127.0.0.1", probe.port, std::nullopt, probe.timeout);
            break;
        case AppProbe::Kind::grpc:
            return grpc_health_check("127.0.0.1", probe.port, probe.grpc_service, probe.timeout) ==
                           kServing
                       ? 200
                       : 503;
        case AppProbe::Kind::http:
            status =
                probe.https
                    ? https_get("127.0.0.1", probe.port, probe.path, probe.headers, probe.timeout)
                    : http_get("127.0.0.1", probe.port, probe.path, probe.headers, probe.timeout);
            break;
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
