// Upstream protocol choice and exchange set-up.
#include "proxy/request/upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include "proxy/http1/client_stream.h"
#include "proxy/http2/streams.h"
#include "proxy/upstream/connect.h"

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

http::Protocol choose_upstream_protocol(const UpstreamTarget& target, const snapshot::Cluster* cluster,
                                        const ProxyConfig& config, http::Protocol client, bool upgrade) {
    if (upgrade) return http::Protocol::http11;
    // HTTP/2 and gRPC stay HTTP/2: trailers and streams have no HTTP/1.1 form.
    if (client == http::Protocol::http2) return http::Protocol::http2;
    const std::string_view policy = cluster ? std::string_view(cluster->limits.h2_upgrade_policy) : "";
    if (cluster && cluster->limits.use_client_protocol) return http::Protocol::http11;
    if (policy == "UPGRADE") return http::Protocol::http2;
    if (policy == "DO_NOT_UPGRADE") return http::Protocol::http11;
    // DEFAULT or unset: the mesh's default, which only applies between sidecars (an endpoint
    // outside the mesh may not speak HTTP/2).
    if (target.mtls && config.h2_upgrade_default) return http::Protocol::http2;
    return http::Protocol::http11;
}

Protocol declared_protocol_at(const ProxyConfig& config, const asio::ip::tcp::endpoint& dst) {
    if (config.routes) {
        if (const snapshot::VirtualHost* vh = config.routes->find_address(dst)) return declared_protocol(vh->protocol);
    }
    return Protocol::unknown;
}

namespace {

// What a sidecar offers its peer over mTLS. "istio-h2" and "istio-http/1.1" mark the connection as
// the mesh's (Istio's values), so that a PERMISSIVE peer tells it from an app's own TLS, which it
// passes through; the peer then agrees to "h2", or to nothing (HTTP/1.1).
inline constexpr std::string_view kAlpnH2 = "\x08istio-h2\x02h2";
inline constexpr std::string_view kAlpnH1Mesh = "\x0eistio-http/1.1";

// An upstream connection as the HTTP/2 codec's byte stream; it keeps the TLS context alive.
class ConnByteStream final : public http2::ByteStream {
public:
    explicit ConnByteStream(std::unique_ptr<UpstreamConn> c) : c_(std::move(c)) {
        std::visit(
            [](auto& s) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
                    beast::get_lowest_layer(s).expires_never();  // the codec keeps its own time
                }
            },
            c_->stream);
    }
    asio::any_io_executor get_executor() override {
        return std::visit(
            [](auto& s) -> asio::any_io_executor {
                if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
                    return {};
                } else {
                    return s.get_executor();
                }
            },
            c_->stream);
    }
    asio::awaitable<IoResult> read_some(asio::mutable_buffer buffer) override {
        if (auto* p = std::get_if<PlainStream>(&c_->stream)) {
            auto [ec, n] = co_await p->async_read_some(buffer, asio::as_tuple(asio::use_awaitable));
            co_return IoResult{ec, n};
        }
        auto& t = std::get<TlsStream>(c_->stream);
        auto [ec, n] = co_await t.async_read_some(buffer, asio::as_tuple(asio::use_awaitable));
        co_return IoResult{ec, n};
    }
    asio::awaitable<IoResult> write(asio::const_buffer buffer) override {
        if (auto* p = std::get_if<PlainStream>(&c_->stream)) {
            auto [ec, n] = co_await asio::async_write(*p, buffer, asio::as_tuple(asio::use_awaitable));
            co_return IoResult{ec, n};
        }
        auto& t = std::get<TlsStream>(c_->stream);
        auto [ec, n] = co_await asio::async_write(t, buffer, asio::as_tuple(asio::use_awaitable));
        co_return IoResult{ec, n};
    }
    void close() noexcept override {
        std::visit(
            [](auto& s) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
                    error_code ec;
                    auto& sock = beast::get_lowest_layer(s).socket();
                    sock.shutdown(sock.shutdown_both, ec);
                    sock.close(ec);
                }
            },
            c_->stream);
    }

private:
    std::unique_ptr<UpstreamConn> c_;
};

// An HTTP/2 stream to `target` on the worker's pool. The pool calls connect() only from
// send_head(), while the request (which owns the target and limits) is waiting on it: the
// function captures `this`, small enough for std::function to hold without allocating.
class MeshH2Stream final : public http2::ClientStreamAdapter {
public:
    MeshH2Stream(const UpstreamTarget& target, const Limits& limits, uint64_t conn_id, WorkerContext& ctx,
                 uint32_t max_requests_per_connection)
        : ClientStreamAdapter(*ctx.h2pool, target.pool_key(), [this] { return connect(); },
                              max_requests_per_connection),
          target_(target),
          limits_(limits),
          conn_id_(conn_id),
          ctx_(ctx) {}

private:
    asio::awaitable<http2::ConnectResult> connect() {
        http2::ConnectResult r;
        std::unique_ptr<UpstreamConn> conn =
            co_await connect_upstream(target_, limits_, conn_id_, ctx_, target_.mtls ? kAlpnH2 : std::string_view{});
        if (!conn) {
            r.error = asio::error::connection_refused;
            co_return r;
        }
        if (auto* t = std::get_if<TlsStream>(&conn->stream); t && negotiated_alpn(t->native_handle()) != "h2") {
            ctx_.stats.inc(Counter::upstream_cx_connect_fail);
            ctx_.log("conn=" + std::to_string(conn_id_) + " upstream " + endpoint_text(target_.address) + " (" +
                     target_.cluster + "): the peer did not agree to HTTP/2 (ALPN)");
            r.error = asio::error::no_protocol_option;
            co_return r;
        }
        ctx_.stats.inc(Counter::upstream_cx_http2);
        r.stream = std::make_unique<ConnByteStream>(std::move(conn));
        co_return r;
    }

    const UpstreamTarget& target_;
    const Limits& limits_;
    uint64_t conn_id_;
    WorkerContext& ctx_;
};

}  // namespace

asio::awaitable<std::unique_ptr<http::ClientStream>> open_upstream(const UpstreamTarget& target,
                                                                  http::Protocol protocol,
                                                                  uint32_t max_requests_per_connection,
                                                                  const Limits& limits, uint64_t conn_id,
                                                                  WorkerContext& ctx,
                                                                  std::chrono::steady_clock::duration budget) {
    if (protocol == http::Protocol::http2) {
        // Many requests share a few connections: made on demand by the pool, which keeps them.
        co_return std::make_unique<MeshH2Stream>(target, limits, conn_id, ctx, max_requests_per_connection);
    }
    std::unique_ptr<UpstreamConn> conn = ctx.pool.take(target.pool_key());
    if (conn) {
        ctx.stats.inc(Counter::upstream_cx_pool_hit);
    } else {
        conn = co_await connect_upstream(target, limits, conn_id, ctx, target.mtls ? kAlpnH1Mesh : std::string_view{},
                                         budget);
        if (!conn) co_return nullptr;
    }
    co_return std::make_unique<http1::ClientStream>(std::move(conn), ctx.pool, max_requests_per_connection,
                                                    limits.stream_idle_timeout, limits.max_request_header_bytes);
}

}  // namespace remora::proxy
