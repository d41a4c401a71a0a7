// The request path, written once for every HTTP protocol: one request from a ServerStream
// (HTTP/1.1 message or HTTP/2 stream, outbound from the app or inbound from a peer sidecar)
// through Istio's phases, in the order Envoy's filter chain applies them:
//
//   begin       telemetry, trace context, request id, the peer sidecar's workload
//   route       (outbound) VirtualService match, weighted destination, endpoint
//   fault       (outbound) delay, then abort
//   answer      (outbound) direct response, redirect, or no route
//   authorize   (inbound) AuthorizationPolicy, XFCC
//   rewrite     rewrite.uri/authority, header operations, hop-by-hop, protocol hand-over
//   copy        whether the body streamed to the first attempt is also copied for a retry or a
//               mirror (up to 1 MiB, past it dropped: no retry)
//   mirror      copies to mirror clusters (after the first attempt has the whole body)
//   admit       circuit breakers (requests, pending)
//   forward     attempts with retries, per-try and route timeouts, outlier detection
//   respond     response header operations, body and trailers streamed back
//
// Each phase is a function of its own in request_path.cc over one RequestState.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "proxy/http/stream.h"
#include "proxy/request/error.h"
#include "proxy/server/context.h"

namespace remora::proxy {

// Serves one request on `down` and ends its response (or resets it).
boost::asio::awaitable<void> serve_request(http::ServerStream& down, Downstream& info, WorkerContext& ctx);

// A request the codec could not even read (malformed, too large, too slow): answered with the
// error and logged like any request.
boost::asio::awaitable<void> refuse_request(http::ServerStream& down, ProxyError why, Downstream& info,
                                            WorkerContext& ctx);

}  // namespace remora::proxy
