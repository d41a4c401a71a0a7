// Service and endpoint selection from the registry.
#include "proxy/routing/resolve.h"

namespace remora::proxy {

bool is_mesh_destination(const ProxyConfig& config, const boost::asio::ip::tcp::endpoint& dst) {
    if (config.routes) return config.routes->find_address(dst) != nullptr;
    if (!config.registry) return false;
    const Service* s = config.registry->find_by_address(dst.address(), dst.port());
    return s != nullptr && s->location != "MESH_EXTERNAL";
}

RouteResult resolve_outbound(const ProxyConfig& config, std::string_view host,
                             const std::optional<boost::asio::ip::tcp::endpoint>& original_dst,
                             RoundRobin& rr) {
    if (config.upstream) return {config.upstream, ProxyError::none};
    if (!config.registry) return {std::nullopt, ProxyError::no_route};

    const Service* service = host.empty() ? nullptr : config.registry->find_by_host(host, config.ns);
    if (!service && original_dst) {
        service = config.registry->find_by_address(original_dst->address(), original_dst->port());
    }
    if (!service) return {std::nullopt, ProxyError::no_route};

    // The service port: the one the app dialled, else the Host's port, else the only one.
    const ServicePort* port = nullptr;
    if (original_dst) port = service->find_port(original_dst->port());
    if (!port) {
        size_t colon = host.rfind(':');
        if (colon != std::string_view::npos) {
            uint32_t p = 0;
            for (char c : host.substr(colon + 1)) p = p * 10 + static_cast<uint32_t>(c - '0');
            port = service->find_port(p);
        }
    }
    if (!port && service->ports.size() == 1) port = &service->ports.front();
    if (!port) return {std::nullopt, ProxyError::no_route};
    if (service->endpoints.empty()) return {std::nullopt, ProxyError::no_healthy_upstream};

    std::string cluster = "outbound|" + std::to_string(port->number) + "||" +
                          (service->hosts.empty() ? service->name : service->hosts.front());
    size_t& next = rr[cluster];
    const Endpoint& ep = service->endpoints[next++ % service->endpoints.size()];
    UpstreamTarget t;
    t.cluster = std::move(cluster);
    t.address = {ep.address, static_cast<unsigned short>(service->endpoint_port(ep, *port))};
    t.service_host = service->hosts.empty() ? service->name : service->hosts.front();
    t.service_name = service->name;
    t.service_ns = service->ns;
    t.service_port = static_cast<uint16_t>(port->number);
    t.mtls = ep.in_mesh();
    if (t.mtls) t.expected_identity = ep.spiffe_id(config.trust_domain);
    t.finalize();
    return {std::move(t), ProxyError::none};
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
