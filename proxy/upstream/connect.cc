// Upstream connection set-up: connect, mTLS handshake with ALPN, peer identity check.
#include "proxy/upstream/connect.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <algorithm>

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

std::string_view negotiated_alpn(SSL* ssl) {
    const unsigned char* data = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &data, &len);
    return data ? std::string_view(reinterpret_cast<const char*>(data), len) : std::string_view();
}

// A new upstream connection. Null on failure (counted).
asio::awaitable<std::unique_ptr<UpstreamConn>> connect_upstream(const UpstreamTarget& target,
                                                                const Limits& limits,
                                                                uint64_t conn_id,
                                                                WorkerContext& ctx,
                                                                std::string_view alpn,
                                                                std::chrono::steady_clock::duration budget) {
    auto exec = co_await asio::this_coro::executor;
    auto conn = std::make_unique<UpstreamConn>();
    conn->key = target.pool_key();
    const auto started = std::chrono::steady_clock::now();
    const std::chrono::steady_clock::duration connect_timeout = std::min(
        target.connect_timeout.count() > 0 ? std::chrono::steady_clock::duration(target.connect_timeout)
                                           : std::chrono::steady_clock::duration(limits.connect_timeout),
        budget);
    ctx.stats.inc(Counter::upstream_cx_total);
    auto fail = [&](const std::string& why) {
        ctx.stats.inc(Counter::upstream_cx_connect_fail);
        ctx.log("conn=" + std::to_string(conn_id) + " upstream " + endpoint_text(target.address) +
                " (" + target.cluster + "): " + why);
    };
    if (!target.mtls) {
        auto& s = conn->stream.emplace<PlainStream>(exec);
        s.expires_after(connect_timeout);
        auto [ec] = co_await s.async_connect(target.address, use_nothrow);
        if (ec) {
            fail("connect failed: " + ec.message());
            co_return nullptr;
        }
        s.socket().set_option(tcp::no_delay(true), ec);
        co_return conn;
    }
    conn->tls = ctx.tls.current();
    if (!conn->tls) {
        fail("no certificate yet: mTLS is not possible");
        co_return nullptr;
    }
    auto& s = conn->stream.emplace<TlsStream>(exec, *conn->tls->client);
    if (!alpn.empty()) {
        SSL_set_alpn_protos(s.native_handle(), reinterpret_cast<const unsigned char*>(alpn.data()),
                            static_cast<unsigned>(alpn.size()));
    }
    beast::get_lowest_layer(s).expires_after(connect_timeout);
    auto [ec] = co_await beast::get_lowest_layer(s).async_connect(target.address, use_nothrow);
    if (ec) {
        fail("connect failed: " + ec.message());
        co_return nullptr;
    }
    beast::get_lowest_layer(s).socket().set_option(tcp::no_delay(true), ec);
    std::chrono::steady_clock::duration handshake_timeout = limits.tls_handshake_timeout;
    if (budget != std::chrono::steady_clock::duration::max()) {
        handshake_timeout = std::min(handshake_timeout,
                                     std::max(budget - (std::chrono::steady_clock::now() - started),
                                              std::chrono::steady_clock::duration(std::chrono::milliseconds(1))));
    }
    beast::get_lowest_layer(s).expires_after(handshake_timeout);
    auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::client, use_nothrow);
    if (hec) {
        certs::error_code why = last_verify_error();
        ctx.stats.tls_failure(why ? std::string(certs::reason_token(why)) : "handshake_error");
        fail("TLS handshake failed: " + (why ? why.message() : hec.message()));
        co_return nullptr;
    }
    ctx.stats.inc(Counter::tls_handshake_ok);
    if (target.expected_identity) {
        auto peer = peer_spiffe_id(s.native_handle());
        if (!peer || *peer != *target.expected_identity) {
            ctx.stats.tls_failure("identity_mismatch");
            fail("server identity " + peer.value_or("(none)") + " is not the expected " +
                 *target.expected_identity);
            co_return nullptr;
        }
    }
    co_return conn;
}

}  // namespace remora::proxy
