// Mirroring (VirtualService mirror/mirrors): a copy of a request, authority "-shadow", to an
// endpoint of the mirror cluster, fire and forget on the worker; its answer is read and dropped
// and its failures only counted.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "proxy/http/message.h"
#include "proxy/server/context.h"

namespace remora::proxy {

// Mirrored requests one worker has in flight at most; more are dropped (upstream_rq_mirror_overflow).
inline constexpr uint32_t kMaxMirrorsInFlight = 64;

// The authority a mirrored request carries: Envoy's "-shadow" after the host, before any port.
std::string shadow_authority(std::string_view host);

// Sends `head` (and `body`, held whole) to endpoint `index` of `cluster`; `config` keeps the
// cluster alive. Counts itself in ctx.mirrors_in_flight until it ends.
boost::asio::awaitable<void> send_mirror(http::RequestHead head, std::string body,
                                         std::shared_ptr<const ProxyConfig> config,
                                         const snapshot::Cluster* cluster, size_t index, uint64_t conn_id,
                                         WorkerContext& ctx);

}  // namespace remora::proxy
