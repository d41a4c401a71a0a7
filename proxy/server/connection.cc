// Accepted connections: redirect checks, REGISTRY_ONLY, PeerAuthentication's mode, the TLS
// handshake, and the protocol decision (port declaration, ALPN, detection) → HTTP/1.1 or TCP.
#include "proxy/server/connection.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "proxy/http1/session.h"
#include "proxy/http2/server.h"
#include "proxy/http2/streams.h"
#include "proxy/request/request_path.h"
#include "proxy/request/upstream.h"
#include "proxy/net/detect.h"
#include "proxy/net/original_dst.h"
#include "proxy/tcp/tcp_proxy.h"
#include "proxy/upstream/connect.h"

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

// Peeks at the first byte without consuming it: 0x16 starts a TLS handshake.
asio::awaitable<int> peek_first_byte(tcp::socket& s, std::chrono::seconds timeout) {
    asio::steady_timer t(s.get_executor());
    t.expires_after(timeout);
    auto r = co_await (s.async_wait(tcp::socket::wait_read, use_nothrow) || t.async_wait(use_nothrow));
    if (r.index() != 0) co_return -1;
    unsigned char b = 0;
    ssize_t n = ::recv(s.native_handle(), &b, 1, MSG_PEEK);
    co_return n == 1 ? b : -1;
}

struct Detected {
    Protocol protocol = Protocol::tcp;
    std::string prefix;  // the bytes read to decide; they go first on whichever path serves it
    bool closed = false;  // the client went away before deciding
};

// Reads the first bytes of an undeclared port's connection until they say what it speaks, or
// the detection timeout passes (then TCP: a server-first protocol waits for the server).
// `http_only`: the port is declared HTTP, and the bytes only choose between HTTP/1.1 and HTTP/2
// (anything else, or nothing in time, is left to the HTTP/1.1 codec); not counted as detection.
asio::awaitable<Detected> detect(tcp::socket& s, const Downstream& info, WorkerContext& ctx, bool http_only = false) {
    Detected d;
    asio::steady_timer deadline(s.get_executor());
    deadline.expires_after(info.config->limits.protocol_detection_timeout);
    std::array<char, kDetectBytes> buf;
    for (;;) {
        auto r = co_await (s.async_read_some(asio::buffer(buf.data(), kDetectBytes - d.prefix.size()), use_nothrow) ||
                           deadline.async_wait(use_nothrow));
        if (r.index() == 1) {
            if (http_only) {
                d.protocol = Protocol::http1;
                co_return d;
            }
            ctx.stats.inc(Counter::downstream_cx_detect_timeout);
            d.protocol = Protocol::tcp;
            co_return d;
        }
        auto [ec, n] = std::get<0>(r);
        d.prefix.append(buf.data(), n);
        if (ec) {
            // Closed (or half-closed) before deciding: what came is passed on as TCP.
            d.closed = d.prefix.empty();
            d.protocol = Protocol::tcp;
            co_return d;
        }
        if (auto p = classify_first_bytes(d.prefix)) {
            if (http_only) {
                d.protocol = *p == Protocol::http2 ? Protocol::http2 : Protocol::http1;
                co_return d;
            }
            d.protocol = *p;
            switch (*p) {
                case Protocol::http1: ctx.stats.inc(Counter::downstream_cx_detected_http1); break;
                case Protocol::http2: ctx.stats.inc(Counter::downstream_cx_detected_http2); break;
                case Protocol::tls: ctx.stats.inc(Counter::downstream_cx_detected_tls); break;
                default: ctx.stats.inc(Counter::downstream_cx_detected_tcp); break;
            }
            co_return d;
        }
    }
}

// A connection as the HTTP/2 codec's byte stream, with the bytes detection already read first.
template <class S>
class PrefixedByteStream final : public http2::ByteStream {
public:
    PrefixedByteStream(S s, std::string prefix) : s_(std::move(s)), prefix_(std::move(prefix)) {
        beast::get_lowest_layer(s_).expires_never();  // the codec keeps its own time
    }
    asio::any_io_executor get_executor() override { return s_.get_executor(); }
    asio::awaitable<IoResult> read_some(asio::mutable_buffer buffer) override {
        if (offset_ < prefix_.size()) {
            const size_t n = std::min(buffer.size(), prefix_.size() - offset_);
            std::memcpy(buffer.data(), prefix_.data() + offset_, n);
            offset_ += n;
            co_return IoResult{{}, n};
        }
        auto [ec, n] = co_await s_.async_read_some(buffer, use_nothrow);
        co_return IoResult{ec, n};
    }
    asio::awaitable<IoResult> write(asio::const_buffer buffer) override {
        auto [ec, n] = co_await asio::async_write(s_, buffer, use_nothrow);
        co_return IoResult{ec, n};
    }
    void close() noexcept override {
        boost::system::error_code ec;
        auto& sock = beast::get_lowest_layer(s_).socket();
        sock.shutdown(tcp::socket::shutdown_both, ec);
        sock.close(ec);
    }

private:
    S s_;
    std::string prefix_;
    size_t offset_ = 0;
};

// Serves an HTTP/2 connection (h2c from the app or a plaintext client, h2 over mTLS from a peer
// sidecar): each stream is one request through the request path. Returns once the connection
// and every stream's request have ended (they share `info`).
template <class S>
asio::awaitable<void> serve_http2(S stream, std::string prefix, Downstream& info, WorkerContext& ctx) {
    ctx.stats.inc(Counter::downstream_cx_http2);
    // Streams still being served; when the connection has ended, the last one to finish wakes
    // the wait below (no polling).
    struct Live {
        size_t streams = 0;
        asio::steady_timer* ended = nullptr;
    };
    auto live = std::make_shared<Live>();
    http2::ServerConnection conn(
        std::make_unique<PrefixedByteStream<S>>(std::move(stream), std::move(prefix)),
        [&info, &ctx, live, &conn](std::shared_ptr<http2::ServerStream> s) -> asio::awaitable<void> {
            ++live->streams;
            // Draining: this stream is served, and GOAWAY tells the client to open its next
            // streams elsewhere (Envoy's drain sequence on a request; streams above it are refused
            // and retried by the client on a new connection).
            if (ctx.draining.load(std::memory_order_relaxed)) conn.goaway();
            struct Done {
                std::shared_ptr<Live> live;
                ~Done() {
                    if (--live->streams == 0 && live->ended) live->ended->cancel();
                }
            } done{live};
            http2::ServerStreamAdapter down(std::move(s));
            co_await serve_request(down, info, ctx);
        },
        ctx.h2limits, ctx.h2stats);
    co_await conn.run();
    if (live->streams > 0) {
        asio::steady_timer ended(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
        live->ended = &ended;
        while (live->streams > 0) co_await ended.async_wait(use_nothrow);
        live->ended = nullptr;
    }
}

// Reads (and keeps in `prefix`) the rest of a TLS ClientHello that `prefix` starts, within the
// protocol detection timeout; nullopt when it is not one, too long, or does not come in time.
asio::awaitable<std::optional<ClientHello>> read_client_hello(tcp::socket& s, std::string& prefix,
                                                              const Downstream& info) {
    asio::steady_timer deadline(s.get_executor());
    deadline.expires_after(info.config->limits.protocol_detection_timeout);
    std::array<char, 4096> buf;
    for (;;) {
        ClientHelloParse parsed = parse_client_hello(prefix);
        if (parsed.status == ClientHelloParse::Status::complete) co_return std::move(parsed.hello);
        if (parsed.status == ClientHelloParse::Status::invalid || prefix.size() >= 2 * kMaxClientHelloBytes) {
            co_return std::nullopt;
        }
        auto r = co_await (s.async_read_some(asio::buffer(buf), use_nothrow) || deadline.async_wait(use_nothrow));
        if (r.index() == 1) co_return std::nullopt;
        auto [ec, n] = std::get<0>(r);
        prefix.append(buf.data(), n);
        if (ec) co_return std::nullopt;
    }
}

// Peeks (without consuming: the TLS handshake reads it next) at a whole TLS ClientHello, within
// the protocol detection timeout; nullopt when it is not one or does not come in time.
asio::awaitable<std::optional<ClientHello>> peek_client_hello(tcp::socket& s, const Downstream& info) {
    asio::steady_timer wait(s.get_executor());
    const auto deadline = std::chrono::steady_clock::now() + info.config->limits.protocol_detection_timeout;
    std::string buf(2 * kMaxClientHelloBytes, '\0');
    size_t last = 0;
    for (;;) {
        const ssize_t n = ::recv(s.native_handle(), buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) co_return std::nullopt;  // closed
        if (n > 0) {
            ClientHelloParse parsed = parse_client_hello(std::string_view(buf.data(), static_cast<size_t>(n)));
            if (parsed.status == ClientHelloParse::Status::complete) co_return std::move(parsed.hello);
            if (parsed.status == ClientHelloParse::Status::invalid || static_cast<size_t>(n) == buf.size()) {
                co_return std::nullopt;
            }
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            co_return std::nullopt;
        }
        if (std::chrono::steady_clock::now() >= deadline) co_return std::nullopt;
        // More is on its way (a hello in two segments): wait for the socket to be readable when
        // nothing has come, else a moment (readable stays true while the first part sits there).
        if (n <= 0 || static_cast<size_t>(n) == last) {
            if (n <= 0) {
                co_await s.async_wait(tcp::socket::wait_read, use_nothrow);
            } else {
                wait.expires_after(std::chrono::milliseconds(2));
                co_await wait.async_wait(use_nothrow);
            }
        }
        last = n > 0 ? static_cast<size_t>(n) : 0;
    }
}

// The protocol an outbound connection to a mesh destination is declared with, if any.
Protocol outbound_declared(const Downstream& info) {
    return info.original_dst ? declared_protocol_at(*info.config, *info.original_dst) : Protocol::unknown;
}

// Outbound to a mesh service: HTTP/1.1 and HTTP/2 (h2c, gRPC) through the request path; everything
// else (TCP, TLS the app originated) as a TCP tunnel over mTLS to the peer sidecar.
asio::awaitable<void> serve_outbound(tcp::socket socket, Downstream& info, WorkerContext& ctx) {
    Protocol p = outbound_declared(info);
    std::string prefix;
    if (p == Protocol::unknown || p == Protocol::http1) {
        // Undeclared: detect. Declared HTTP: HTTP/1.1 or, with prior knowledge, HTTP/2 (h2c), as
        // Envoy's HTTP listeners take either; the first bytes tell which.
        Detected d = co_await detect(socket, info, ctx, p == Protocol::http1);
        if (d.closed) co_return;
        p = d.protocol;
        prefix = std::move(d.prefix);
    }
    if (p == Protocol::http1) {
        PlainStream down(std::move(socket));
        co_await serve_http1(down, info, ctx, prefix);
        boost::system::error_code ignored;
        down.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
    }
    if (p == Protocol::http2) {
        co_await serve_http2(PlainStream(std::move(socket)), std::move(prefix), info, ctx);
        co_return;
    }
    if (info.block_unknown_hosts) {
        // Not HTTP, to an address outside the registry: the TCP side of the port's listener
        // goes to the BlackHoleCluster.
        ctx.stats.inc(Counter::downstream_cx_blackhole);
        ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + " to " + endpoint_text(*info.original_dst) +
                ": not HTTP, not a mesh service and outboundTrafficPolicy is REGISTRY_ONLY; closed (BlackHoleCluster)");
        co_return;
    }
    if (p == Protocol::tls && info.config->routes) {
        // A VirtualService's tls[] routes choose by the ClientHello's server name: read it whole
        // (it is passed on untouched, as everything read here).
        const snapshot::VirtualHost* vh = info.config->routes->find_address(*info.original_dst);
        if (vh && !vh->tls_routes.empty()) {
            if (auto hello = co_await read_client_hello(socket, prefix, info)) info.sni = std::move(hello->sni);
        }
    }
    co_await outbound_tcp(std::move(socket), std::move(prefix), info, ctx);
}

// Inbound plaintext (PERMISSIVE or DISABLE): HTTP/1.1 requests through the inbound HTTP path,
// anything else to the app as TCP.
asio::awaitable<void> serve_inbound_plaintext(tcp::socket socket, Downstream& info, WorkerContext& ctx) {
    Detected d = co_await detect(socket, info, ctx);
    if (d.closed) co_return;
    PlainStream down(std::move(socket));
    if (d.protocol == Protocol::http1) {
        co_await serve_http1(down, info, ctx, d.prefix);
        co_return;
    }
    if (d.protocol == Protocol::http2) {
        co_await serve_http2(std::move(down), std::move(d.prefix), info, ctx);
        co_return;
    }
    co_await inbound_tcp(down, std::move(d.prefix), info, ctx);
}

// Inbound: PeerAuthentication's mode, the TLS handshake, then ALPN or detection.
asio::awaitable<void> serve_inbound(tcp::socket socket, ListenerKind kind, Downstream& info, WorkerContext& ctx) {
    // Inbound: PeerAuthentication's mode for the port the peer dialled. STRICT takes mTLS only,
    // PERMISSIVE mTLS or plaintext, DISABLE plaintext only: TLS is not terminated, so a peer that
    // talks TLS to it fails as it does with Envoy.
    const MtlsMode mode = kind == ListenerKind::inbound_explicit
                              ? MtlsMode::strict
                              : info.config->inbound_mode_for(info.original_dst ? info.original_dst->port() : 0);
    if (mode == MtlsMode::disable) {
        co_await serve_inbound_plaintext(std::move(socket), info, ctx);
        co_return;
    }
    int first = co_await peek_first_byte(socket, info.config->limits.request_header_timeout);
    if (first < 0) co_return;
    if (first != 0x16) {
        if (mode == MtlsMode::strict) {
            ctx.stats.inc(Counter::downstream_cx_refused_plaintext);
            ctx.log("conn=" + std::to_string(info.id) + " " + info.remote +
                    " refused: plaintext under STRICT mTLS");
            co_return;
        }
        co_await serve_inbound_plaintext(std::move(socket), info, ctx);
        co_return;
    }
    if (mode == MtlsMode::permissive) {
        // PERMISSIVE takes the app's own TLS too (a client outside the mesh speaking HTTPS to
        // the app): a ClientHello that offers no mesh ALPN ("istio", "istio-*", which every
        // Remora and Istio sidecar sends) is passed to the app untouched, as Istio's inbound
        // passthrough filter chain does.
        auto hello = co_await peek_client_hello(socket, info);
        if (hello && !offers_mesh_alpn(*hello)) {
            ctx.stats.inc(Counter::downstream_cx_tls_passthrough);
            info.sni = std::move(hello->sni);
            PlainStream down(std::move(socket));
            co_await inbound_tcp(down, {}, info, ctx);
            co_return;
        }
    }
    info.tls = ctx.tls.current();
    if (!info.tls) {
        ctx.stats.tls_failure("no_certificate_yet");
        co_return;  // until the proxy has its certificate, every handshake is refused
    }
    TlsStream down(PlainStream(std::move(socket)), *info.tls->server);
    beast::get_lowest_layer(down).expires_after(info.config->limits.tls_handshake_timeout);
    auto [hec] = co_await down.async_handshake(asio::ssl::stream_base::server, use_nothrow);
    if (hec) {
        certs::error_code why = last_verify_error();
        ctx.stats.tls_failure(why ? std::string(certs::reason_token(why)) : "handshake_error");
        ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + " TLS handshake refused: " +
                (why ? why.message() : hec.message()));
        co_return;
    }
    ctx.stats.inc(Counter::tls_handshake_ok);
    info.peer_identity = peer_spiffe_id(down.native_handle());
    // What the peer sidecar carries, as the ALPN agreed: a TCP tunnel, else HTTP/1.1.
    const std::string_view alpn = negotiated_alpn(down.native_handle());
    if (alpn == kAlpnPeerExchange || alpn == kAlpnIstio) {
        beast::get_lowest_layer(down).expires_never();
        const bool peer_exchange = alpn == kAlpnPeerExchange;
        co_await inbound_tcp(down, {}, peer_exchange, info, ctx);
        co_return;
    }
    if (alpn == "h2") {
        // A peer sidecar multiplexing requests (its app's HTTP/1.1 or HTTP/2) on one connection.
        co_await serve_http2(std::move(down), {}, info, ctx);
        co_return;
    }
    co_await serve_http1(down, info, ctx);
    beast::get_lowest_layer(down).expires_after(std::chrono::seconds(2));
    co_await down.async_shutdown(use_nothrow);
}

}  // namespace

asio::awaitable<void> serve_connection(tcp::socket socket, ListenerKind kind, WorkerContext& ctx) {
    Downstream info;
    info.id = ctx.next_connection_id++;
    info.kind = kind;
    info.config_generation = ctx.config.generation();
    info.config = ctx.config.current();
    boost::system::error_code ec;
    tcp::endpoint remote = socket.remote_endpoint(ec);
    info.remote = ec ? "unknown" : endpoint_text(remote);
    tcp::endpoint local_ep = socket.local_endpoint(ec);
    if (!ec) info.local = endpoint_text(local_ep);
    if (info.remote != "unknown") info.remote_ip = remote.address();
    socket.set_option(tcp::no_delay(true), ec);
    ctx.stats.inc(Counter::downstream_cx_total);
    ctx.stats.inc(Counter::downstream_cx_active);
    struct ActiveGuard {
        WorkerStats& s;
        ~ActiveGuard() { s.dec(Counter::downstream_cx_active); }
    } guard{ctx.stats};

    if (kind == ListenerKind::outbound_capture || kind == ListenerKind::inbound_capture) {
        info.original_dst = original_destination(socket.native_handle());
        tcp::endpoint local = socket.local_endpoint(ec);
        if (!info.original_dst || *info.original_dst == local) {
            // Dialled directly, not redirected: forwarding it would loop back here.
            ctx.log("conn=" + std::to_string(info.id) + " " + info.remote +
                    " was not redirected by iptables; closing");
            co_return;
        }
    }

    if (kind == ListenerKind::outbound_capture) {
        if (!is_mesh_destination(*info.config, *info.original_dst)) {
            if (info.config->registry_only && info.config->routes &&
                info.config->routes->http_port(info.original_dst->port())) {
                info.block_unknown_hosts = true;
                co_await serve_outbound(std::move(socket), info, ctx);
                co_return;
            }
            if (info.config->registry_only) {
                ctx.stats.inc(Counter::downstream_cx_blackhole);
                ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + " to " +
                        endpoint_text(*info.original_dst) +
                        ": not a mesh service and outboundTrafficPolicy is REGISTRY_ONLY; closed "
                        "(BlackHoleCluster)");
                co_return;
            }
            co_await passthrough(std::move(socket), {}, info, ctx);
            co_return;
        }
        co_await serve_outbound(std::move(socket), info, ctx);
        co_return;
    }
    if (kind == ListenerKind::outbound_explicit) {
        PlainStream down(std::move(socket));
        co_await serve_http1(down, info, ctx);
        boost::system::error_code ignored;
        down.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
    }

    co_await serve_inbound(std::move(socket), kind, info, ctx);
}

}  // namespace remora::proxy
