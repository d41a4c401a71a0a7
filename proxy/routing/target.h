// Where a request goes: one endpoint of a cluster, as the request path and the pools see it.
// Made from the snapshot by target_for(); the route table keeps one per endpoint
// (RouteTable::target) so requests do not build them.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "proxy/snapshot/snapshot.h"

namespace remora::proxy {

// Where a request goes: one endpoint of a cluster.
struct UpstreamTarget {
    std::string cluster;                          // for logs and /config_dump
    boost::asio::ip::tcp::endpoint address;
    bool mtls = false;
    std::optional<std::string> expected_identity;  // the peer's SPIFFE ID must equal this
    std::string key;                               // pool key: set by finalize(), once
    std::string address_text;                      // "address:port" for logs and telemetry; by finalize()
    // The mesh service this endpoint serves (telemetry's destination_service labels).
    std::string service_host, service_name, service_ns;
    uint16_t service_port = 0;
    // The cluster's connect timeout (DestinationRule connectionPool.tcp.connectTimeout, 10 s by
    // default); zero: the proxy's --connect-timeout (targets without a snapshot cluster).
    std::chrono::milliseconds connect_timeout{0};

    // Computes `key` and `address_text` from the fields above; call after setting them.
    UpstreamTarget& finalize();
    const std::string& pool_key() const { return key; }
};

// The target for endpoint `index` of `cluster` (address, mTLS identity, telemetry names).
UpstreamTarget target_for(const snapshot::Cluster& cluster, size_t index);

// A service's host and its name and namespace as Istio's destination_service* labels carry them
// ("reviews.default.svc.cluster.local" → "reviews", "default"; other hosts: the first label, no
// namespace).
struct ServiceNames {
    std::string host, name, ns;
};
ServiceNames service_names(std::string host);

}  // namespace remora::proxy
