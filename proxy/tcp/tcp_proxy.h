// Opaque TCP: connections to mesh services carried over mTLS to the peer sidecar (Envoy's
// tcp_proxy with Istio's metadata exchange), the peer's side forwarding them to the app, and
// passthrough for destinations outside the mesh. Bytes are copied both ways as they come, with
// half-closes passed on and an idle timeout.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "proxy/server/context.h"
#include "proxy/telemetry/workload.h"

namespace remora::proxy {

// Istio's default idle timeout for TCP connections (DestinationRule connectionPool.tcp.idleTimeout).
inline constexpr std::chrono::hours kDefaultTcpIdleTimeout{1};

// The app's connection to a mesh service port carried as TCP. `prefix`: bytes detection has
// already read from it; they go first.
boost::asio::awaitable<void> outbound_tcp(boost::asio::ip::tcp::socket down, std::string prefix,
                                          Downstream& info, WorkerContext& ctx);

// A connection to a destination outside the mesh, byte for byte (Istio's PassthroughCluster).
boost::asio::awaitable<void> passthrough(boost::asio::ip::tcp::socket down, std::string prefix,
                                         Downstream& info, WorkerContext& ctx);

// A peer's TCP connection to this pod, to the app's port: over mTLS (`peer_exchange` when the
// ALPN agreed on the metadata exchange), or plaintext (PERMISSIVE, DISABLE).
boost::asio::awaitable<void> inbound_tcp(TlsStream& down, std::string prefix, bool peer_exchange,
                                         Downstream& info, WorkerContext& ctx);
boost::asio::awaitable<void> inbound_tcp(PlainStream& down, std::string prefix, Downstream& info,
                                         WorkerContext& ctx);

// The metadata exchange's preamble, sent by each side first: "RMX1", a 4-byte big-endian length,
// then the sender's peer metadata (encode_peer_metadata), a newline and the destination
// service's host (the client's; empty from the server).
inline constexpr std::string_view kPeerExchangeMagic = "RMX1";
inline constexpr size_t kMaxPeerExchangeBytes = 4096;
std::string peer_exchange_preamble(std::string_view metadata, std::string_view service_host);

struct PeerExchange {
    std::optional<WorkloadInfo> peer;
    std::string service_host;
};
// Parses a preamble at the start of `bytes`: the number of bytes it took (0: more are needed),
// or nullopt when the bytes are not one.
std::optional<size_t> parse_peer_exchange(std::string_view bytes, PeerExchange& out);

}  // namespace remora::proxy
