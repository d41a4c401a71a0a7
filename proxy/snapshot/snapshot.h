// The resolved configuration one proxy runs on (the data-plane API): the services it can reach,
// a cluster per service port and subset with its upstream policy, the route table per service
// port, and the inbound mTLS policy. remora-control translates Istio resources into it for each
// workload, as istiod does for Envoy; every field here is already resolved (short names expanded,
// policies merged, defaults applied), so the proxy does no Istio interpretation of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace remora::proxy::snapshot {

using Labels = std::map<std::string, std::string>;
using Millis = std::chrono::milliseconds;

struct Endpoint {
    std::string address;  // IP
    uint32_t port = 0;    // the port to dial for this cluster's service port
    Labels labels;
    std::string identity;  // expected SPIFFE ID; "" when unknown
    bool mtls = false;     // ISTIO_MUTUAL to this endpoint's sidecar
    uint32_t weight = 0;
};

struct LoadBalancer {
    std::string simple = "LEAST_REQUEST";  // Istio's default; ROUND_ROBIN, RANDOM, PASSTHROUGH
    // consistentHash: exactly one key kind, or none.
    std::string hash_header, hash_cookie, hash_query_parameter;
    bool hash_source_ip = false;
};

struct ConnectionLimits {
    uint32_t max_connections = 4294967295u;  // Envoy's effective "unlimited" (2^32 - 1)
    Millis connect_timeout{10000};
    uint32_t http1_max_pending_requests = 4294967295u;
    uint32_t http2_max_requests = 4294967295u;
    uint32_t max_requests_per_connection = 0;  // 0 = unlimited
    uint32_t max_retries = 4294967295u;
    // TrafficPolicy.retryBudget (Envoy's retry_budget), when set: retries in flight at most this
    // percent of the cluster's active and pending requests, never fewer than the minimum. Unset
    // (Istio's default) only max_retries bounds them.
    std::optional<double> retry_budget_percent;
    uint32_t retry_budget_min_concurrency = 3;
    std::optional<Millis> idle_timeout;      // connectionPool.http.idleTimeout
    std::optional<Millis> tcp_idle_timeout;  // connectionPool.tcp.idleTimeout (TCP proxy; 1 h if unset)
    // connectionPool.http.h2UpgradePolicy ("", DEFAULT, DO_NOT_UPGRADE, UPGRADE) and
    // useClientProtocol: which protocol HTTP/1.1 requests take to this cluster.
    std::string h2_upgrade_policy;
    bool use_client_protocol = false;
};

struct OutlierDetection {
    uint32_t consecutive_5xx_errors = 5;
    uint32_t consecutive_gateway_errors = 0;  // 0 = off
    Millis interval{10000};
    Millis base_ejection_time{30000};
    uint32_t max_ejection_percent = 10;
    uint32_t min_health_percent = 0;
};

struct Cluster {
    std::string name;  // outbound|<port>|<subset>|<host>
    std::string service_host;
    uint32_t port = 0;
    std::string subset;  // "" = every endpoint of the service
    std::string destination_rule;  // "name.namespace" of the DestinationRule applied; "" = none
    LoadBalancer load_balancer;
    ConnectionLimits limits;
    std::optional<OutlierDetection> outlier_detection;  // only when a DestinationRule asks
    std::string tls_mode = "ISTIO_MUTUAL";  // or DISABLE
    std::vector<Endpoint> endpoints;
};

struct StringMatcher {
    enum class Kind { exact, prefix, regex };
    Kind kind = Kind::exact;
    std::string value;
    bool ignore_case = false;
};

struct RouteMatch {
    std::optional<StringMatcher> uri, scheme, method, authority;
    std::vector<std::pair<std::string, StringMatcher>> headers, query_params;
    std::vector<std::pair<std::string, StringMatcher>> without_headers;
    uint32_t port = 0;
    Labels source_labels;
    std::string source_namespace;
};

struct HeaderOps {
    std::vector<std::pair<std::string, std::string>> set, add;
    std::vector<std::string> remove;
};

struct WeightedCluster {
    std::string cluster;
    uint32_t weight = 100;
    HeaderOps request, response;
};

struct RetryPolicy {
    uint32_t attempts = 2;  // Istio's default policy
    std::optional<Millis> per_try_timeout;
    std::string retry_on = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
    std::vector<uint32_t> retriable_status_codes{503};
    // retry_on as bits (proxy/request/retry.h), filled when the route table is built.
    uint32_t retry_on_bits = 0;
};

struct Fault {
    std::optional<Millis> delay;
    double delay_percent = 100;
    std::optional<uint32_t> abort_status;
    std::optional<uint32_t> abort_grpc_status;  // abort.grpcStatus: a gRPC request gets it in a trailers-only reply
    double abort_percent = 100;
};

struct Mirror {
    std::string cluster;
    double percent = 100;
};

struct Route {
    std::string name;                // the http[] rule's name, or "default"
    std::string virtual_service;     // "name.namespace" it came from; "" = the default route
    std::vector<RouteMatch> matches;  // ORed; empty = everything
    std::vector<WeightedCluster> clusters;
    std::optional<std::pair<uint32_t, std::string>> direct_response;  // status, body
    // redirect: a 3xx with Location made from the request, these replacing its parts ("" = keep).
    bool redirect = false;
    std::string redirect_uri, redirect_authority, redirect_scheme;
    uint32_t redirect_port = 0;
    uint32_t redirect_code = 301;
    std::string rewrite_uri, rewrite_authority;
    std::optional<Millis> timeout;  // none = no timeout (Istio's default)
    RetryPolicy retries;
    std::optional<Fault> fault;
    std::vector<Mirror> mirrors;
    HeaderOps request_headers, response_headers;
};

// A VirtualService tls[] route for one port: a connection whose TLS ClientHello names one of
// these servers (exact, or "*.example.com" by suffix) goes to these clusters, its TLS untouched.
struct TlsRoute {
    std::vector<std::string> sni_hosts;
    std::vector<WeightedCluster> clusters;
};

struct VirtualHost {
    std::string name;  // <service host>:<port>
    std::vector<std::string> domains;  // every name and address a request may use for it
    std::vector<Route> routes;         // in order; the first match wins
    // The port's protocol as Istio names it (the Service port's appProtocol, else its name's
    // prefix; a ServiceEntry port's protocol): HTTP, HTTP2, GRPC, GRPC-Web, HTTPS, TCP, TLS,
    // Mongo, MySQL, Redis. "" when undeclared: the proxy detects it from the first bytes.
    std::string protocol;
    // Where a connection to this port goes when it is carried as TCP: the VirtualService's first
    // tcp[] route that matches the port, else the port's default cluster.
    std::vector<WeightedCluster> tcp_clusters;
    std::string tcp_virtual_service;  // "name.namespace" of that VirtualService; "" = default
    // TLS the app originated: the VirtualService's tls[] routes that match this port and caller,
    // in order, tried by the ClientHello's server name before tcp_clusters.
    std::vector<TlsRoute> tls_routes;
    std::string tls_virtual_service;  // "name.namespace" of that VirtualService
};

// AuthorizationPolicy, resolved for one workload. Values are Istio's as written (exact,
// "prefix*", "*suffix", "*"; CIDRs; path templates with {*} and {**}); what Istio derives
// (serviceAccounts as principals) is already derived. Fields within a source or operation are
// ANDed, the values of one field ORed; an empty field is no constraint.
struct AuthzSource {
    std::vector<std::string> principals, not_principals;  // peer SPIFFE ID without "spiffe://"
    std::vector<std::string> request_principals, not_request_principals;  // JWT: never present
    std::vector<std::string> namespaces, not_namespaces;
    std::vector<std::string> trust_domains, not_trust_domains;
    std::vector<std::string> ip_blocks, not_ip_blocks;                // the connection's peer
    std::vector<std::string> remote_ip_blocks, not_remote_ip_blocks;  // the same for a sidecar
};

struct AuthzOperation {
    std::vector<std::string> hosts, not_hosts;  // the Host header, case-insensitively
    std::vector<uint32_t> ports, not_ports;     // the connection's original destination port
    std::vector<std::string> methods, not_methods;
    std::vector<std::string> paths, not_paths;  // without the query string
};

struct AuthzCondition {
    std::string key;  // request.headers[NAME], source.ip, source.namespace, destination.port, ...
    std::vector<std::string> values, not_values;
};

struct AuthzRule {
    std::vector<AuthzSource> from;      // ORed; empty = any source
    std::vector<AuthzOperation> to;     // ORed; empty = any operation
    std::vector<AuthzCondition> when;   // ANDed
};

struct AuthzPolicy {
    std::string name;              // "name.namespace" of the AuthorizationPolicy
    std::string action = "ALLOW";  // ALLOW, DENY or AUDIT (CUSTOM is left out by translation)
    std::vector<AuthzRule> rules;  // none: matches nothing (an ALLOW policy then denies all)
};

struct InboundPolicy {
    std::string mtls_mode = "PERMISSIVE";  // Istio's default when no policy applies
    std::map<uint32_t, std::string> port_mtls;
    // The PeerAuthentications that set them ("name.namespace"), mesh-wide, then the namespace's,
    // then the workload's own; empty when Istio's default applies. Informational (explain).
    std::vector<std::string> peer_authentications;
    // Every AuthorizationPolicy that applies to this workload (its namespace's and the root
    // namespace's whose selector picks it): DENY first, then ALLOW, then AUDIT, each by name.
    std::vector<AuthzPolicy> authz;
};

struct Snapshot {
    std::string workload_namespace;
    Labels workload_labels;
    std::vector<Cluster> clusters;
    std::vector<VirtualHost> virtual_hosts;
    InboundPolicy inbound;
    // A Sidecar's outboundTrafficPolicy mode for this proxy, "REGISTRY_ONLY" or "ALLOW_ANY";
    // empty (absent from the JSON) = the mesh's mode (MeshConfig outboundTrafficPolicy).
    std::string outbound_traffic_policy;
    std::vector<std::string> notes;  // what translation left out, and why
};

}  // namespace remora::proxy::snapshot
