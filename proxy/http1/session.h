// HTTP/1.1 proxying on a downstream connection (Beast): outbound (app → mesh) and inbound
// (mesh → app), streamed bodies, routing, retries, mirroring, authorization and telemetry.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <string_view>

#include "proxy/server/context.h"

namespace remora::proxy {

// Serves requests until the connection closes. `prefix`: bytes already read from the connection
// (by protocol detection), parsed before anything new is read.
boost::asio::awaitable<void> serve_http1(PlainStream& down, Downstream& info, WorkerContext& ctx,
                                         std::string_view prefix = {});
boost::asio::awaitable<void> serve_http1(TlsStream& down, Downstream& info, WorkerContext& ctx,
                                         std::string_view prefix = {});

}  // namespace remora::proxy
