// Internal to control/model: one parser per resource kind, reading `spec` and validating it.
#pragma once

#include "control/model/model.h"
#include "control/model/walk.h"

namespace remora::control::model::detail {

void parse_virtual_service(Obj& spec, VirtualService& out);
void parse_destination_rule(Obj& spec, DestinationRule& out);
void parse_service_entry(Obj& spec, ServiceEntry& out);
void parse_workload_entry(Obj& spec, WorkloadEntrySpec& out, bool inline_endpoint);
void parse_peer_authentication(Obj& spec, PeerAuthentication& out);
void parse_authorization_policy(Obj& spec, AuthorizationPolicy& out);
void parse_sidecar(Obj& spec, Sidecar& out);
// `gateway_semantics`: converted from a Kubernetes Gateway API resource (the internal annotation).
void parse_gateway(Obj& spec, Gateway& out, bool gateway_semantics);
void parse_request_authentication(Obj& spec, RequestAuthentication& out);
void parse_telemetry(Obj& spec, Telemetry& out);
void parse_proxy_config(Obj& spec, ProxyConfig& out);
// targetRef / targetRefs (PolicyTargetReference) and their one-of with `selector`.
void parse_target_refs(Obj& spec, bool has_selector);

// Pieces more than one kind uses.
void parse_destination(Obj& d, Destination& out);
void parse_connection_pool(Obj& o, ConnectionPoolSettings& out);
// ServerTLSSettings with validateTLSOptions' rules (Gateway servers, Sidecar ingress).
void parse_server_tls(Obj& t, ServerTLSSettings& out);

// exportTo: ".", "*", "~" (ServiceEntry only) or namespace names; no duplicates; "*" alone.
void check_export_to(Obj& spec, const std::string& ns, std::vector<std::string>& out,
                     bool service_entry);
// Label maps: Kubernetes key and value syntax.
void check_labels(Reporter& r, const Value& where, const Labels& labels);
// A label map field, read and checked.
void read_labels(Obj& o, const std::string& key, Labels& out);
// {matchLabels: {...}} selectors.
void parse_selector(Obj& parent, const std::string& key, std::optional<Labels>& out);

}  // namespace remora::control::model::detail
