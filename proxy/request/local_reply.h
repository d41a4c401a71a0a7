// Replies the proxy makes itself (errors, fault aborts, direct responses, redirects), written once
// for every protocol: a plain response for HTTP/1.1 and HTTP/2, and for a gRPC request a
// trailers-only response (HTTP 200, grpc-status and grpc-message in the head), as Envoy answers.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string_view>

#include "proxy/http/stream.h"
#include "proxy/request/error.h"
#include "proxy/stats/stats.h"
#include "proxy/telemetry/telemetry.h"

namespace remora::proxy {

struct LocalReply {
    uint32_t status = 0;
    std::string_view flag;  // Envoy's response flag, "" for none
    std::string_view body;
    std::string_view location;             // a redirect's Location
    std::optional<uint32_t> grpc_status;  // for a gRPC request; derived from status when none
};

LocalReply reply_for(ProxyError e);

void count_status(WorkerStats& stats, unsigned status);
void count_flag(WorkerStats& stats, std::string_view flag);

// Answers `down` with `reply`, recording status, flag and sizes in `rec` and the counters.
boost::asio::awaitable<void> send_local_reply(http::ServerStream& down, const LocalReply& reply,
                                              RequestRecord& rec, WorkerStats& stats);

}  // namespace remora::proxy
