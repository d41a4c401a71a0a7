// The proxy's service registry: Istio ServiceEntry and WorkloadEntry resources read from a local
// YAML file, validated completely, and indexed for lookups by Host header and original destination.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace remora::proxy {

struct ServicePort {
    uint32_t number = 0;
    std::string name;
    std::string protocol;      // uppercase HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS; "" = detect
    uint32_t target_port = 0;  // 0 = same as number
};

struct Endpoint {
    boost::asio::ip::address address;
    std::map<std::string, std::string> labels;
    std::string service_account;  // "" = unknown
    // The WorkloadEntry's namespace, or the ServiceEntry's for inline endpoints.
    std::string ns;
    // Port name -> endpoint port (WorkloadEntry spec.ports / inline endpoints[].ports).
    std::map<std::string, uint32_t> ports;
    std::string name;     // the WorkloadEntry's metadata.name; "" for inline endpoints
    uint32_t weight = 0;  // spec.weight; 0 = unset

    // Istio sends mTLS automatically only to endpoints that carry this label.
    bool in_mesh() const;
    // spiffe://<td>/ns/<ns>/sa/<sa> when the service account is known.
    std::optional<std::string> spiffe_id(std::string_view trust_domain) const;
};

struct Service {
    std::string name, ns;            // metadata.name / metadata.namespace (default "default")
    std::vector<std::string> hosts;  // spec.hosts, as written
    std::vector<boost::asio::ip::address> addresses;  // spec.addresses (VIPs)
    std::vector<ServicePort> ports;
    std::string location;    // MESH_INTERNAL (default) or MESH_EXTERNAL
    std::string resolution;  // NONE, STATIC, DNS, DNS_ROUND_ROBIN
    // spec.workloadSelector.labels; nullopt when the entry has no selector.
    std::optional<std::map<std::string, std::string>> workload_selector;
    // Inline spec.endpoints, or the WorkloadEntries the selector picks in the same namespace.
    std::vector<Endpoint> endpoints;

    const ServicePort* find_port(uint32_t number) const;
    // e.ports[p.name] if present, else p.target_port if nonzero, else p.number.
    uint32_t endpoint_port(const Endpoint& e, const ServicePort& p) const;
};

// Message: "file:line:col: field.path: what is wrong".
class ConfigError : public std::runtime_error {
  public:
    using runtime_error::runtime_error;
};

class Registry {
  public:
    // Parses a multi-document YAML text; `file_name` appears in error messages. Throws ConfigError.
    static Registry parse(const std::string& yaml_text, const std::string& file_name);
    // Reads and parses a file; throws ConfigError, also when the file cannot be read.
    static Registry load_file(const std::string& path);

    // `host` as in an HTTP Host header (may carry ":port", any case). Tries the host as written,
    // then its Kubernetes expansion from `client_ns` ("reviews" ->
    // reviews.<client_ns>.svc.cluster.local, "reviews.ns" and "reviews.ns.svc" ->
    // reviews.ns.svc.cluster.local): first exact hosts, then the longest matching wildcard
    // ("*.example.com"). Returns nullptr when nothing matches.
    const Service* find_by_host(std::string_view host,
                                std::string_view client_ns = "default") const;
    // A connection's original destination: a service VIP with that port, else an endpoint address
    // whose endpoint port for one of the service's ports is `port`.
    const Service* find_by_address(const boost::asio::ip::address& addr, uint16_t port) const;

    const std::vector<Service>& services() const { return services_; }
    // What the parser skipped or resolved by a rule, for logs and `config_dump`.
    std::vector<std::string> notes() const { return notes_; }

  private:
    friend class RegistryBuilder;
    using AddrPort = std::pair<boost::asio::ip::address, uint16_t>;

    void build_indexes();
    const Service* find_exact(std::string_view host) const;

    std::vector<Service> services_;
    std::vector<std::string> notes_;
    // Indexes hold positions in services_, so a copied Registry stays valid.
    std::unordered_map<std::string, std::size_t> exact_hosts_;  // lowercase host -> service
    // Wildcard suffixes ("*.example.com" -> ".example.com"), longest first.
    std::vector<std::pair<std::string, std::size_t>> wildcard_hosts_;
    std::map<AddrPort, std::size_t> vips_;
    std::map<AddrPort, std::size_t> endpoint_addrs_;
};

}  // namespace remora::proxy
