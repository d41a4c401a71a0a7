// A downstream connection from accept to close: original destination, outbound or inbound, mTLS
// termination, and the choice of protocol (declared for the port, negotiated by ALPN with the
// peer sidecar, or detected from the first bytes) that decides which path serves it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "proxy/server/context.h"

namespace remora::proxy {

boost::asio::awaitable<void> serve_connection(boost::asio::ip::tcp::socket socket, ListenerKind kind,
                                              WorkerContext& ctx);

}  // namespace remora::proxy
