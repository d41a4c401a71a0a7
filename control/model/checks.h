// Internal to control/model: Istio's value checks (hosts, names, labels, regexes, retry
// conditions, IPs). Each returns "" when the value is valid, else what is wrong.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "control/model/model.h"

namespace remora::control::model::detail {

// Kubernetes DNS-1123 label: lowercase letters, digits, '-', at most 63.
bool is_dns1123_label(std::string_view s);
// Kubernetes DNS-1123 subdomain (object names).
bool is_dns1123_subdomain(std::string_view s);

// Istio's ValidateWildcardDomain: DNS name whose first label may be "*" or "*"-prefixed.
std::string wildcard_domain_problem(std::string_view host);
// Istio's ValidateNamespaceSlashWildcardHostname: "namespace/dnsName" hosts of Sidecar egress
// listeners and Gateway servers (a Gateway also takes a bare dnsName or an IP). Every problem.
std::vector<std::string> namespace_host_problems(std::string_view host, bool gateway);
// Istio's ValidateUnixAddress (the part after "unix://").
std::string unix_address_problem(std::string_view path);
// Istio's ValidateFQDN: DNS name without wildcards.
std::string fqdn_problem(std::string_view host);
// Kubernetes label key (optional DNS prefix + "/" + name) and value rules.
std::string label_problem(std::string_view key, std::string_view value);
// Compiles with RE2, as Envoy does (Istio also caps the length at 1024).
std::string regex_problem(const std::string& re);
// One retryOn token: Envoy's conditions or a numeric HTTP status code.
bool is_retry_condition(std::string_view token);
// An IP address or CIDR range.
bool is_ip_or_cidr(std::string_view s);
bool is_ip(std::string_view s);
// Istio protocol names (case-insensitive): HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, MYSQL,
// REDIS, TCP, TLS, UDP.
bool is_protocol(std::string_view s);
// ASCII upper case ("https" -> "HTTPS"), for Istio's case-insensitive protocol names.
std::string ascii_upper(std::string s);
// A port protocol that carries TLS to the server: HTTPS or TLS, in any case.
bool is_tls_protocol(std::string_view p);
// Istio's security.IsValidCipherSuite: a cipher suite Envoy's TLS library (BoringSSL) knows
// by its OpenSSL name, "" or "ALL", or an expression starting with an operator (-, +, !, [).
bool is_valid_cipher_suite(std::string_view cs);
// cel-go's Parse (no extensions), as Istio checks a Telemetry access log filter expression:
// "" when it parses, else "ERROR: <input>:line:col: Syntax error: ..." (cel.cc).
std::string cel_syntax_problem(std::string_view expression);

}  // namespace remora::control::model::detail
