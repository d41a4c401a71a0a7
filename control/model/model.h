// The Istio resource model: VirtualService, DestinationRule, ServiceEntry, WorkloadEntry,
// PeerAuthentication and AuthorizationPolicy as plain structs, with Istio's field names and
// defaults.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace remora::control::model {

using Labels = std::map<std::string, std::string>;
// Istio durations ("1.5s", "10ms", "1h"), kept to the nanosecond as written.
using Duration = std::chrono::nanoseconds;

struct Location {
    std::string file;
    int line = 0;  // 1-based; 0 = unknown
    int column = 0;
};

enum class Severity { Error, Warning, Note };

// One finding of the parser or validator. str():
//   "file:line:col: Kind ns/name: field.path: message"          (errors)
//   "file:line:col: warning: Kind ns/name: field.path: message" (warnings, notes say "note")
struct Diagnostic {
    Severity severity = Severity::Error;
    // Remora's own finding (a valid Istio feature remora lacks, a replaced duplicate), not one
    // Istio's validation would report.
    bool remora = false;
    Location where;
    std::string kind, ns, name;  // the resource, when known
    Location resource_where;     // where the resource's document starts
    std::string path;            // field path, e.g. spec.http[0].retries.retryOn
    std::string message;

    std::string str() const;
};

struct Metadata {
    std::string api_version;
    std::string name;
    std::string ns = "default";
    Labels labels;
    Labels annotations;
    Location where;     // the document's first line
    bool valid = true;  // false when validation found an error in this resource
};

// ---- networking.istio.io -------------------------------------------------------------------

struct StringMatch {
    enum class Type { Exact, Prefix, Regex };
    Type type = Type::Exact;
    std::string value;
};

struct Destination {
    std::string host;
    std::string subset;            // "" = none
    std::optional<uint32_t> port;  // port.number
};

struct HeaderOperations {
    std::map<std::string, std::string> set, add;
    std::vector<std::string> remove;
};

struct Headers {
    HeaderOperations request, response;
};

struct HTTPMatchRequest {
    std::string name;
    std::optional<StringMatch> uri, scheme, method, authority;
    std::map<std::string, StringMatch> headers, query_params, without_headers;
    bool ignore_uri_case = false;
    uint32_t port = 0;  // 0 = any
    Labels source_labels;
    std::string source_namespace;
    std::vector<std::string> gateways;
};

struct HTTPRouteDestination {
    Destination destination;
    int32_t weight = 0;  // relative; 0 with a single destination means all traffic
    Headers headers;
};

struct HTTPRewrite {
    std::string uri, authority;
    std::optional<std::pair<std::string, std::string>> uri_regex_rewrite;  // match, rewrite
};

struct HTTPRedirect {
    std::string uri, authority, scheme;
    uint32_t port = 0;        // 0 = unchanged
    std::string derive_port;  // FROM_PROTOCOL_DEFAULT / FROM_REQUEST_PORT / ""
    uint32_t redirect_code = 301;
};

struct HTTPDirectResponse {
    uint32_t status = 0;
    std::optional<std::string> body;  // body.string or body.bytes (base64 as written)
};

struct HTTPMirrorPolicy {
    Destination destination;
    std::optional<double> percentage;  // absent = 100
};

struct HTTPRetry {
    int32_t attempts = 0;
    std::optional<Duration> per_try_timeout;
    std::string retry_on;  // comma-separated, validated
    std::optional<bool> retry_remote_localities;
    std::optional<Duration> backoff;
};

struct HTTPFaultInjection {
    struct Delay {
        Duration fixed_delay{};
        std::optional<double> percentage;  // absent = 100
        int32_t legacy_percent = 0;        // the deprecated integer `percent`, as written
    };
    struct Abort {
        std::optional<int32_t> http_status;
        std::string grpc_status;
        std::optional<double> percentage;  // absent = 100
    };
    std::optional<Delay> delay;
    std::optional<Abort> abort;
};

struct HTTPRoute {
    std::string name;
    std::vector<HTTPMatchRequest> match;
    std::vector<HTTPRouteDestination> route;
    std::optional<HTTPRedirect> redirect;
    std::optional<HTTPDirectResponse> direct_response;
    std::optional<HTTPRewrite> rewrite;
    std::optional<Duration> timeout;
    std::optional<HTTPRetry> retries;  // absent = Istio's default policy
    std::optional<HTTPFaultInjection> fault;
    std::optional<Destination> mirror;
    std::optional<double>
        mirror_percentage;  // mirrorPercentage.value (or deprecated mirrorPercent)
    std::vector<HTTPMirrorPolicy> mirrors;
    Headers headers;
    bool has_cors_policy = false;  // parsed and validated, not supported by remora
    bool has_delegate = false;     // not supported by remora
    Location where;
};

// tcp[] and tls[] routes: a match block (port, sniHosts for tls; the caller's labels and
// namespace) and weighted destinations.
struct L4Match {
    uint32_t port = 0;                   // 0 = any port of the host
    std::vector<std::string> sni_hosts;  // tls only
    Labels source_labels;
    std::string source_namespace;
};

struct L4Route {
    std::vector<L4Match> match;  // ORed; empty = everything
    std::vector<HTTPRouteDestination> route;
    Location where;
};

struct VirtualService {
    Metadata meta;
    std::vector<std::string> hosts;
    std::vector<std::string> gateways;  // empty = {"mesh"}
    std::vector<std::string> export_to;
    std::vector<HTTPRoute> http;
    std::vector<L4Route> tcp, tls;

    bool applies_to_mesh() const;
};

struct ConnectionPoolSettings {
    struct TCP {
        std::optional<int32_t> max_connections;
        std::optional<Duration> connect_timeout;
        std::optional<Duration> max_connection_duration, idle_timeout;
        struct Keepalive {
            std::optional<uint32_t> probes;
            std::optional<Duration> time, interval;
        };
        std::optional<Keepalive> tcp_keepalive;
    };
    struct HTTP {
        std::optional<int32_t> http1_max_pending_requests, http2_max_requests;
        std::optional<int32_t> max_requests_per_connection, max_retries, max_concurrent_streams;
        std::optional<Duration> idle_timeout;
        std::string h2_upgrade_policy;  // DEFAULT / DO_NOT_UPGRADE / UPGRADE / ""
        bool use_client_protocol = false;
    };
    std::optional<TCP> tcp;
    std::optional<HTTP> http;
};

struct OutlierDetection {
    std::optional<uint32_t> consecutive_5xx_errors;      // Istio default 5
    std::optional<uint32_t> consecutive_gateway_errors;  // default off
    std::optional<uint32_t> consecutive_local_origin_failures;
    bool split_external_local_origin_errors = false;
    std::optional<Duration> interval;             // default 10s
    std::optional<Duration> base_ejection_time;   // default 30s
    std::optional<int32_t> max_ejection_percent;  // default 10
    std::optional<int32_t> min_health_percent;    // default 0
};

struct LoadBalancerSettings {
    std::string simple;  // LEAST_REQUEST (Istio's default when ""), ROUND_ROBIN, RANDOM, ...
    struct ConsistentHash {
        std::string http_header_name;
        struct HttpCookie {
            std::string name, path;
            std::optional<Duration> ttl;
        };
        std::optional<HttpCookie> http_cookie;
        bool use_source_ip = false;
        std::string http_query_parameter_name;
        std::optional<uint64_t> ring_hash_minimum_ring_size;
        std::optional<uint64_t> maglev_table_size;
        uint64_t minimum_ring_size = 0;  // deprecated form
    };
    std::optional<ConsistentHash> consistent_hash;
};

struct ClientTLSSettings {
    std::string mode;  // DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL
    std::string client_certificate, private_key, ca_certificates, credential_name, sni;
    std::vector<std::string> subject_alt_names;
    bool insecure_skip_verify = false;
};

struct PortTrafficPolicy {
    uint32_t port = 0;
    std::optional<LoadBalancerSettings> load_balancer;
    std::optional<ConnectionPoolSettings> connection_pool;
    std::optional<OutlierDetection> outlier_detection;
    std::optional<ClientTLSSettings> tls;
};

// TrafficPolicy.retryBudget: retries in flight to the cluster may be at most `percent` of its
// active and pending requests, never fewer than `min_retry_concurrency` (Envoy's retry_budget;
// unset fields are Envoy's defaults, 20% and 3).
struct RetryBudget {
    std::optional<double> percent;
    std::optional<uint32_t> min_retry_concurrency;
};

struct TrafficPolicy {
    std::optional<LoadBalancerSettings> load_balancer;
    std::optional<ConnectionPoolSettings> connection_pool;
    std::optional<OutlierDetection> outlier_detection;
    std::optional<ClientTLSSettings> tls;
    std::vector<PortTrafficPolicy> port_level_settings;
    std::optional<RetryBudget> retry_budget;
};

struct Subset {
    std::string name;
    Labels labels;
    std::optional<TrafficPolicy> traffic_policy;
};

struct DestinationRule {
    Metadata meta;
    std::string host;
    std::optional<TrafficPolicy> traffic_policy;
    std::vector<Subset> subsets;
    std::vector<std::string> export_to;
    std::optional<Labels> workload_selector;  // not supported by remora
};

struct ServicePort {
    uint32_t number = 0;
    std::string protocol;  // as written; "" = detect
    std::string name;
    uint32_t target_port = 0;
};

// WorkloadEntry spec; also ServiceEntry spec.endpoints[].
struct WorkloadEntrySpec {
    std::string address;
    std::map<std::string, uint32_t> ports;
    Labels labels;
    std::string network, locality, service_account;
    uint32_t weight = 0;
};

struct WorkloadEntry {
    Metadata meta;
    WorkloadEntrySpec spec;
};

struct ServiceEntry {
    Metadata meta;
    std::vector<std::string> hosts, addresses;
    std::vector<ServicePort> ports;
    std::string location = "MESH_EXTERNAL";  // Istio's default (enum value 0)
    std::string resolution = "NONE";         // Istio's default (enum value 0)
    std::vector<WorkloadEntrySpec> endpoints;
    std::optional<Labels> workload_selector;
    std::vector<std::string> export_to, subject_alt_names;
    // status.addresses is not empty: the control plane allocated VIPs (read for the analyzer).
    bool allocated_addresses = false;
};

// ---- security.istio.io ---------------------------------------------------------------------

struct PeerAuthentication {
    Metadata meta;
    std::optional<Labels> selector;   // selector.matchLabels
    std::string mtls_mode = "UNSET";  // UNSET, DISABLE, PERMISSIVE, STRICT
    std::map<uint32_t, std::string> port_level_mtls;
};

struct Source {
    std::vector<std::string> principals, not_principals, request_principals, not_request_principals,
        namespaces, not_namespaces, service_accounts, not_service_accounts, ip_blocks,
        not_ip_blocks, remote_ip_blocks, not_remote_ip_blocks, trust_domains, not_trust_domains;
};

struct Operation {
    std::vector<std::string> hosts, not_hosts, ports, not_ports, methods, not_methods, paths,
        not_paths;
};

struct Condition {
    std::string key;
    std::vector<std::string> values, not_values;
};

struct Rule {
    std::vector<Source> from;
    std::vector<Operation> to;
    std::vector<Condition> when;
};

struct AuthorizationPolicy {
    Metadata meta;
    std::optional<Labels> selector;  // selector.matchLabels
    std::string action = "ALLOW";    // ALLOW, DENY, AUDIT, CUSTOM
    std::string provider;            // provider.name, CUSTOM only
    // nullopt: no `rules` field (ALLOW: matches nothing); an empty rule {} matches everything.
    std::optional<std::vector<Rule>> rules;
};

// ---- Kubernetes objects the analyzer reads -------------------------------------------------

struct KubeServicePort {
    std::string name, protocol;
    std::string app_protocol;  // spec.ports[].appProtocol: wins over the name's prefix
    uint32_t port = 0;
    uint32_t target_port = 0;  // spec.ports[].targetPort when a number; 0 when named or absent
    std::string target_port_text;  // targetPort as written ("" when absent)
};

struct KubeService {
    Metadata meta;
    std::vector<KubeServicePort> ports;
    Labels selector;
    std::vector<std::string> cluster_ips;  // spec.clusterIP / clusterIPs; "None" left out
    std::string type;                      // spec.type: ClusterIP (""), ExternalName, ...
};

// Pod labels from a Pod, a pod template (Deployment, StatefulSet, ...) or a WorkloadEntry.
// A Kubernetes Gateway API Gateway (gateway.networking.k8s.io), read for the analyzers only
// (VirtualServices may name one); Remora does not serve it.
struct KubeGateway {
    Metadata meta;
    struct Listener {
        std::string name, hostname, protocol;  // hostname "" = every host
        uint32_t port = 0;
    };
    std::vector<Listener> listeners;
};

// A container of a pod (spec) or pod template, as far as the analyzers read it.
struct Container {
    std::string name, image;
    std::optional<int64_t> run_as_user;  // securityContext.runAsUser
    std::map<std::string, std::string> env;  // env[].name -> value ("" with valueFrom)
};

struct Workload {
    std::string kind, name, ns;
    Labels labels;  // the pod's labels (a pod template's for Deployments, ...)
    std::string node;  // a Pod's spec.nodeName
    Labels annotations;
    bool istio_proxy = false;  // a Pod with an istio-proxy (init) container that has an image
    // The object's own metadata labels and annotations (a Deployment's, not its template's),
    // where it starts.
    Labels object_labels, object_annotations;
    Location where;
    // The pod spec (spec, or spec.template.spec): read for the UID and injection analyzers.
    std::optional<int64_t> run_as_user;  // securityContext.runAsUser
    std::vector<Container> containers, init_containers;
    bool host_network = false;
};

// ---- networking.istio.io Sidecar, Gateway -------------------------------------------------

// Sidecar ingress/egress port (SidecarPort) and Gateway server port (Port).
struct PortSpec {
    uint32_t number = 0;   // 0 on a Sidecar egress listener: a unix domain socket bind
    std::string protocol;  // as written; "" = detect
    std::string name;
};

// ServerTLSSettings (Gateway servers[].tls, Sidecar ingress[].tls).
struct ServerTLSSettings {
    std::string mode = "PASSTHROUGH";  // Istio's enum value 0
    bool https_redirect = false;
    std::string server_certificate, private_key, ca_certificates, ca_crl, credential_name,
        ca_cert_credential_name;
    std::vector<std::string> credential_names, subject_alt_names, cipher_suites;
    std::size_t tls_certificates = 0;  // tlsCertificates[] entries
    std::string min_protocol_version, max_protocol_version;
};

// Sidecar spec.egress[]: the hosts ("namespace/dnsName") this listener's proxies can reach.
struct IstioEgressListener {
    std::optional<PortSpec> port;  // absent: the catch-all listener (only the last one)
    std::string bind;
    std::string capture_mode = "DEFAULT";  // DEFAULT, IPTABLES, NONE
    std::vector<std::string> hosts;
    Location where;
};

// Sidecar spec.ingress[].
struct IstioIngressListener {
    PortSpec port;
    std::string bind;
    std::string capture_mode = "DEFAULT";
    std::string default_endpoint;  // "127.0.0.1:8080", ":8080", "unix:///path", ""
    std::optional<ServerTLSSettings> tls;
    std::optional<ConnectionPoolSettings> connection_pool;
    Location where;
};

struct OutboundTrafficPolicy {
    std::string mode = "REGISTRY_ONLY";   // Istio's enum value 0, when the policy is written
    std::optional<Destination> egress_proxy;  // deprecated
};

// Sidecar (networking.istio.io): which workloads it applies to (workloadSelector, or the whole
// namespace without one; in the root namespace, the mesh's default) and what their proxies
// receive (egress hosts) and listen on (ingress).
struct Sidecar {
    Metadata meta;
    std::optional<Labels> workload_selector;  // workloadSelector.labels
    std::vector<IstioIngressListener> ingress;
    std::vector<IstioEgressListener> egress;
    std::optional<OutboundTrafficPolicy> outbound_traffic_policy;  // absent: the mesh's
    std::optional<ConnectionPoolSettings> inbound_connection_pool;
};

// Gateway (networking.istio.io): the servers (port, hosts, TLS) of the gateway proxies its
// selector picks. Read and validated; Remora runs no gateway proxy yet.
struct Server {
    PortSpec port;
    std::string bind, name;
    std::vector<std::string> hosts;  // "namespace/dnsName" or "dnsName"
    std::optional<ServerTLSSettings> tls;
    Location where;
};

struct Gateway {
    Metadata meta;
    Labels selector;  // spec.selector: the gateway workloads' labels (empty = every workload)
    std::vector<Server> servers;
};

// ---- security.istio.io RequestAuthentication ----------------------------------------------

struct JWTRule {
    std::string issuer, jwks_uri, jwks, output_payload_to_header;
    std::vector<std::string> audiences, from_params, from_cookies;
    std::vector<std::pair<std::string, std::string>> from_headers;  // name, prefix
    std::vector<std::pair<std::string, std::string>> output_claim_to_headers;  // claim, header
    bool forward_original_token = false;
    std::optional<Duration> timeout;
};

struct RequestAuthentication {
    Metadata meta;
    std::optional<Labels> selector;  // selector.matchLabels
    std::vector<JWTRule> jwt_rules;
};

// ---- telemetry.istio.io Telemetry, networking.istio.io ProxyConfig --------------------------

struct Telemetry {
    Metadata meta;
    std::optional<Labels> selector;
    struct Tracing {
        std::vector<std::string> providers;
        std::optional<double> random_sampling_percentage;
        bool disable_span_reporting = false;
    };
    std::vector<Tracing> tracing;
    struct Metrics {
        std::vector<std::string> providers;
    };
    std::vector<Metrics> metrics;
    struct AccessLogging {
        std::vector<std::string> providers;
        std::string filter;  // filter.expression (CEL)
        std::optional<bool> disabled;
    };
    std::vector<AccessLogging> access_logging;
};

struct ProxyConfig {
    Metadata meta;
    std::optional<Labels> selector;
    std::optional<int32_t> concurrency;
    std::map<std::string, std::string> environment_variables;
    std::string image_type;  // image.imageType
};

// Everything read from a set of files. Resources with errors stay (meta.valid = false) so the
// analyzer sees them; consumers that build configuration must skip them.
struct Config {
    // The namespace of resources whose metadata names none (istioctl analyze --namespace).
    std::string default_namespace = "default";
    std::vector<VirtualService> virtual_services;
    std::vector<DestinationRule> destination_rules;
    std::vector<ServiceEntry> service_entries;
    std::vector<WorkloadEntry> workload_entries;
    std::vector<PeerAuthentication> peer_authentications;
    std::vector<AuthorizationPolicy> authorization_policies;
    std::vector<KubeService> kube_services;
    std::vector<KubeGateway> kube_gateways;
    std::vector<Workload> workloads;
    std::map<std::string, Labels> node_labels;  // Kubernetes Nodes: topology labels for pods
    std::map<std::string, Labels> namespaces;   // Kubernetes Namespaces and their labels
    std::map<std::string, Location> namespace_where;  // where each Namespace starts
    std::map<std::string, Labels> namespace_annotations;
    // ConfigMaps istio-sidecar-injector[-<revision>] (by name): their values'
    // sidecarInjectorWebhook.enableNamespacesByDefault.
    std::map<std::string, bool> injector_namespaces_by_default;
    std::vector<Sidecar> sidecars;
    std::vector<Gateway> gateways;
    std::vector<RequestAuthentication> request_authentications;
    std::vector<Telemetry> telemetries;
    std::vector<ProxyConfig> proxy_configs;
    std::vector<Diagnostic> diagnostics;
    // "kind ns/name" of the resources read so far: a redefinition (which replaces the first, as
    // kubectl apply would) is looked for only when the name is here, not by scanning every
    // resource for every document (quadratic for 40,000 ServiceEntries). May name resources
    // later refused; never misses one.
    std::unordered_set<std::string> defined_names;

    bool has_errors() const;
    std::vector<const Diagnostic*> errors() const;
    std::vector<const Diagnostic*> warnings() const;
};

// Parses a multi-document YAML text into `config`; `file_name` appears in diagnostics.
// Never throws for bad input: every problem becomes a Diagnostic.
void load_yaml(Config& config, const std::string& yaml_text, const std::string& file_name);
// Takes out of `config` every resource read from one of `files` (the file_name given to
// load_yaml), with its diagnostics, the workload a WorkloadEntry made and its name in
// defined_names; the rest keeps its order. Reading those files' new texts with load_yaml and
// then sort_by_name gives the model that reading every file again in name order would, without
// parsing the rest (the config store's changes of one resource among 10,000).
void erase_files(Config& config, const std::unordered_set<std::string>& files);
// Orders each kind's resources (and the workloads) by namespace, then name, keeping the order of
// equals: the order of a store whose resources are read sorted that way.
void sort_by_name(Config& config);
// A file, or every *.yaml / *.yml file under a directory (sorted, recursive).
// Unreadable paths become diagnostics.
void load_path(Config& config, const std::filesystem::path& path);
Config load_yaml(const std::string& yaml_text, const std::string& file_name);

// Go/Istio duration syntax ("300ms", "1.5s", "1h30m"); nullopt when malformed.
std::optional<Duration> parse_duration(const std::string& text);

}  // namespace remora::control::model
