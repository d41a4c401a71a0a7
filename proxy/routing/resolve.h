// Outbound routing: from a request's Host (and the connection's original destination) through the
// route table (translated from --config/--registry or remora-control's snapshot) to one endpoint.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "proxy/config.h"
#include "proxy/request/error.h"
#include "proxy/routing/target.h"

namespace remora::proxy {

struct RouteResult {
    const UpstreamTarget* target = nullptr;  // the table's (RouteTable::target)
    ProxyError error = ProxyError::none;  // none, no_route or no_healthy_upstream
    // With a route table: the rule that matched and the destination picked (owned by the table,
    // which the connection's config keeps alive). The rule may answer without an upstream
    // (direct response, redirect, fault abort): then `target` is empty and `error` none.
    const snapshot::Route* route = nullptr;
    const snapshot::WeightedCluster* destination = nullptr;
    const snapshot::Cluster* cluster = nullptr;  // with a target: its cluster and endpoint
    size_t endpoint = 0;
};

// Is this original destination a mesh service (VIP:port or endpoint:port)? Otherwise the
// connection passes through untouched, as Istio's PassthroughCluster.
bool is_mesh_destination(const ProxyConfig& config, const boost::asio::ip::tcp::endpoint& dst);

// With a route table: the virtual host by Host (else by the dialled address), the first matching
// route, a weighted destination cluster, then one of its endpoints.
RouteResult resolve_route(const RouteTable& routes, const RequestView& request,
                          const std::optional<boost::asio::ip::tcp::endpoint>& original_dst,
                          WorkerBalancer& balancer, std::mt19937_64& rng);

// Inbound: the service a request was sent to, by its Host (else the address it was sent to: this
// pod's endpoint of a service port), from the snapshot's virtual hosts. None when unknown.
std::optional<ServiceNames> inbound_service(const RouteTable& routes, std::string_view authority,
                                            const std::optional<boost::asio::ip::tcp::endpoint>& original_dst);

}  // namespace remora::proxy
