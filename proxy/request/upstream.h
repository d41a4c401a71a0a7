// The upstream side of a request: which protocol an exchange with an endpoint speaks (Istio's
// h2UpgradePolicy and useClientProtocol, the client's protocol, Upgrade requests), and opening
// that exchange: an HTTP/1.1 connection from the worker's pool (or a new one), or a stream on a
// multiplexed HTTP/2 connection (ALPN h2 over mTLS to a peer sidecar, h2c to an app).
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>

#include "proxy/http/stream.h"
#include "proxy/net/detect.h"
#include "proxy/server/context.h"

namespace remora::proxy {

// The header that carries an HTTP/1.x request's version across an HTTP/2 hop between sidecars;
// the inbound sidecar restores the version and removes the header before the app sees it.
inline constexpr std::string_view kOrigProtoHeader = "x-remora-orig-proto";

struct UpstreamChoice {
    http::Protocol protocol = http::Protocol::http11;
};

// `cluster` may be null (explicit mode, the inbound app). `client`: the downstream request's
// protocol; `upgrade`: the request asks for an HTTP/1.1 Upgrade (WebSocket), which stays HTTP/1.1.
http::Protocol choose_upstream_protocol(const UpstreamTarget& target, const snapshot::Cluster* cluster,
                                        const ProxyConfig& config, http::Protocol client, bool upgrade);

// The protocol a port is declared with (Service port name/appProtocol, ServiceEntry protocol), by
// the address dialled: a service VIP:port (outbound) or an endpoint's address:port (inbound, the
// pod's own port). From the route table, else the --registry file; unknown when undeclared.
Protocol declared_protocol_at(const ProxyConfig& config, const boost::asio::ip::tcp::endpoint& dst);

// An exchange with `target` in `protocol`. Null when an HTTP/1.1 connection could not be made
// (counted and logged by connect_upstream): a connect failure. HTTP/2 connects on send_head().
// `budget` (the request's time left) bounds an HTTP/1.1 connect; HTTP/2's wait for a connection
// is bounded by the wait for the response header. `target` and `limits` must outlive the
// stream's send_head() (an HTTP/2 connection is made from there).
boost::asio::awaitable<std::unique_ptr<http::ClientStream>> open_upstream(
    const UpstreamTarget& target, http::Protocol protocol, uint32_t max_requests_per_connection,
    const Limits& limits, uint64_t conn_id, WorkerContext& ctx,
    std::chrono::steady_clock::duration budget = std::chrono::steady_clock::duration::max());

}  // namespace remora::proxy
