// Outbound routing through the route table: virtual host, route, cluster, endpoint.
#include "proxy/routing/resolve.h"

namespace remora::proxy {

bool is_mesh_destination(const ProxyConfig& config, const boost::asio::ip::tcp::endpoint& dst) {
    return config.routes && config.routes->find_address(dst) != nullptr;
}

RouteResult resolve_route(const RouteTable& routes, const RequestView& request,
                          const std::optional<boost::asio::ip::tcp::endpoint>& original_dst,
                          WorkerBalancer& balancer, std::mt19937_64& rng) {
    const snapshot::VirtualHost* vh = request.authority.empty() ? nullptr : routes.find_host(request.authority);
    if (!vh && original_dst) vh = routes.find_address(*original_dst);
    if (!vh) return {nullptr, ProxyError::no_route};
    const snapshot::Route* route = routes.match(*vh, request);
    if (!route) return {nullptr, ProxyError::no_route};
    if (route->direct_response || route->redirect) return {nullptr, ProxyError::none, route};
    if (route->clusters.empty()) return {nullptr, ProxyError::no_route, route};
    const snapshot::WeightedCluster* wc = pick_weighted(route->clusters, rng);
    const snapshot::Cluster* cluster = routes.cluster(wc->cluster);
    if (!cluster || cluster->endpoints.empty()) {
        return {nullptr, ProxyError::no_healthy_upstream, route, wc};
    }
    // Endpoints ejected by outlier detection are skipped; all of them ejected is UH, as Envoy.
    const std::optional<size_t> index =
        balancer.pick(*cluster, routes.ring(*cluster), &request, rng, std::nullopt, &routes.health(*cluster));
    if (!index) return {nullptr, ProxyError::no_healthy_upstream, route, wc};
    const UpstreamTarget& t = routes.target(*cluster, *index);
    if (t.key.empty()) return {nullptr, ProxyError::no_healthy_upstream, route, wc};
    return {&t, ProxyError::none, route, wc, cluster, *index};
}

std::optional<ServiceNames> inbound_service(const RouteTable& routes, std::string_view authority,
                                            const std::optional<boost::asio::ip::tcp::endpoint>& original_dst) {
    const snapshot::VirtualHost* vh = authority.empty() ? nullptr : routes.find_host(authority);
    if (!vh && original_dst) vh = routes.find_address(*original_dst);
    if (!vh) return std::nullopt;
    return service_names(vh->name.substr(0, vh->name.rfind(':')));
}

}  // namespace remora::proxy
