// Istio's MeshConfig (the `mesh` key of the istio ConfigMap): the fields Remora reads, with
// Istio's defaults. remora-control hands it to proxies; a proxy can also read it from a file.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace remora::proxy {

struct MeshConfig {
    std::string trust_domain = "cluster.local";
    std::string root_namespace = "remora-system";
    std::string access_log_file;             // empty: access logs off (Istio's default)
    std::string access_log_encoding = "TEXT";  // TEXT or JSON
    std::string outbound_traffic_policy = "ALLOW_ANY";  // or REGISTRY_ONLY
    bool enable_auto_mtls = true;
    double tracing_sampling = 1.0;  // percent
    std::string zipkin_address;     // host:port; empty: spans are not exported
    std::optional<int> concurrency;
    std::optional<int> termination_drain_seconds;
    // Remora's extensions to ProxyConfig (Envoy's HTTP connection manager timeouts):
    // defaultConfig.streamIdleTimeout and defaultConfig.requestTimeout ("0s": no limit).
    std::optional<int> stream_idle_seconds;
    std::optional<int> request_timeout_seconds;
    // HTTP/1.1 between sidecars carried over multiplexed HTTP/2: UPGRADE or DO_NOT_UPGRADE.
    // Unset: Remora upgrades (as Linkerd does; Istio's default is DO_NOT_UPGRADE).
    std::string h2_upgrade_policy;
    std::vector<std::string> notes;  // fields read but not used by remora, unknown fields

    // Throws MeshConfigError: "file:line:col: field: what is wrong".
    static MeshConfig parse(const std::string& yaml_text, const std::string& file_name);
    static MeshConfig load_file(const std::string& path);
};

class MeshConfigError : public std::runtime_error {
public:
    using runtime_error::runtime_error;
};

}  // namespace remora::proxy
