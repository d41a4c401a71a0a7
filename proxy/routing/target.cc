// UpstreamTarget: an endpoint of a snapshot cluster, with its pool key and telemetry names.
#include "proxy/routing/target.h"

namespace remora::proxy {

UpstreamTarget& UpstreamTarget::finalize() {
    address_text = address.address().to_string() + ":" + std::to_string(address.port());
    key = (mtls ? "tls|" : "tcp|") + address_text + "|" + expected_identity.value_or("");
    return *this;
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

}  // namespace remora::proxy
