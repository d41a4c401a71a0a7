// Opening an upstream connection: TCP connect, then for mesh endpoints the mTLS handshake (with
// the ALPN that tells the peer sidecar what the connection carries) and the SPIFFE identity check.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/server/context.h"

namespace remora::proxy {

// ALPN lists (wire format) the outbound side offers the peer sidecar, as Istio's do: a TCP
// tunnel with the in-band metadata exchange, or plain TCP.
inline constexpr std::string_view kAlpnTcp = "\x13istio-peer-exchange\x05istio";
inline constexpr std::string_view kAlpnPeerExchange = "istio-peer-exchange";
inline constexpr std::string_view kAlpnIstio = "istio";

// Null on failure (counted in upstream_cx_connect_fail and logged). `alpn`: the protocols to
// offer in wire format; empty offers none (HTTP/1.1, as before ALPN was used). `budget`: the time
// the request has left (its route timeout), which bounds the connect and the TLS handshake below
// the connect timeouts.
boost::asio::awaitable<std::unique_ptr<UpstreamConn>> connect_upstream(
    const UpstreamTarget& target, const Limits& limits, uint64_t conn_id, WorkerContext& ctx,
    std::string_view alpn = {},
    std::chrono::steady_clock::duration budget = std::chrono::steady_clock::duration::max());

// The protocol the TLS handshake on `ssl` agreed on; "" when none.
std::string_view negotiated_alpn(SSL* ssl);

}  // namespace remora::proxy
