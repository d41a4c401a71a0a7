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
    if (!vh) return {std::nullopt, ProxyError::no_route};
    const snapshot::Route* route = routes.match(*vh, request);
    if (!route) return {std::nullopt, ProxyError::no_route};
    if (route->direct_response || route->redirect) return {std::nullopt, ProxyError::none, route};
    if (route->clusters.empty()) return {std::nullopt, ProxyError::no_route, route};
    const snapshot::WeightedCluster* wc = pick_weighted(route->clusters, rng);
    const snapshot::Cluster* cluster = routes.cluster(wc->cluster);
    if (!cluster || cluster->endpoints.empty()) {
        return {std::nullopt, ProxyError::no_healthy_upstream, route, wc};
    }
    // Endpoints ejected by outlier detection are skipped; all of them ejected is UH, as Envoy.
    const std::optional<size_t> index =
        balancer.pick(*cluster, routes.ring(*cluster), &request, rng, std::nullopt, &routes.health(*cluster));
    if (!index) return {std::nullopt, ProxyError::no_healthy_upstream, route, wc};
    UpstreamTarget t = target_for(*cluster, *index);
    if (t.key.empty()) return {std::nullopt, ProxyError::no_healthy_upstream, route, wc};
    return {std::move(t), ProxyError::none, route, wc, cluster, *index};
}

UpstreamTarget target_for(const snapshot::Cluster& c, size_t index) {
    const snapshot::Cluster* cluster = &c;
    const snapshot::Endpoint& ep = c.endpoints[index];
    UpstreamTarget t;
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(ep.address, ec);
    if (ec) return t;  // no key: unusable
    t.cluster = cluster->name;
    t.address = {address, static_cast<unsigned short>(ep.port)};
    t.mtls = ep.mtls;
    if (ep.mtls && !ep.identity.empty()) t.expected_identity = ep.identity;
    ServiceNames names = service_names(cluster->service_host);
    t.service_host = std::move(names.host);
    t.service_name = std::move(names.name);
    t.service_ns = std::move(names.ns);
    t.service_port = static_cast<uint16_t>(cluster->port);
    t.connect_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cluster->limits.connect_timeout);
    t.finalize();
    return t;
}

ServiceNames service_names(std::string host) {
    ServiceNames out;
    // name.namespace.svc.<domain> → name and namespace, as Istio's destination_service_* labels.
    size_t dot = host.find('.');
    out.name = host.substr(0, dot);
    if (dot != std::string::npos && host.find(".svc.", dot) != std::string::npos) {
        size_t dot2 = host.find('.', dot + 1);
        out.ns = host.substr(dot + 1, dot2 - dot - 1);
    }
    out.host = std::move(host);
    return out;
}

std::optional<ServiceNames> inbound_service(const RouteTable& routes, std::string_view authority,
                                            const std::optional<boost::asio::ip::tcp::endpoint>& original_dst) {
    const snapshot::VirtualHost* vh = authority.empty() ? nullptr : routes.find_host(authority);
    if (!vh && original_dst) vh = routes.find_address(*original_dst);
    if (!vh) return std::nullopt;
    return service_names(vh->name.substr(0, vh->name.rfind(':')));
}

}  // namespace remora::proxy
