// SPIFFE IDs (spiffe://<trust-domain>/<path>) parsed and validated to the letter of the SPIFFE-ID
// standard, and the Kubernetes-style ns/<namespace>/sa/<service-account> identities Remora issues.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "certs/error.h"

namespace remora::certs {

enum class SpiffeIdErrc {
    empty = 1,
    wrong_scheme,
    empty_trust_domain,
    bad_trust_domain_char,
    port_or_userinfo,
    bad_path_char,
    empty_segment,
    dot_segment,
    trailing_slash,
    too_long,
    query_or_fragment,
};

template <>
struct ReasonTable<SpiffeIdErrc> {
    static constexpr const char* name = "spiffe-id";
    static constexpr ReasonText table[] = {
        {1, "empty", "SPIFFE ID is empty"},
        {2, "wrong_scheme", "SPIFFE ID must start with spiffe:// (lowercase scheme)"},
        {3, "empty_trust_domain", "SPIFFE ID has an empty trust domain"},
        {4, "bad_trust_domain_char",
         "trust domain may hold only lowercase a-z, 0-9, '.', '-', '_'"},
        {5, "port_or_userinfo", "trust domain must not carry a port or userinfo"},
        {6, "bad_path_char", "path segments may hold only a-z, A-Z, 0-9, '.', '-', '_'"},
        {7, "empty_segment", "path has an empty segment ('//')"},
        {8, "dot_segment", "path has a '.' or '..' segment"},
        {9, "trailing_slash", "path must not end with '/'"},
        {10, "too_long", "SPIFFE ID is longer than 2048 bytes"},
        {11, "query_or_fragment", "SPIFFE ID must not carry a query or fragment"},
    };
};

inline error_code make_error_code(SpiffeIdErrc e) {
    return make_reason(e);
}

// Validates a trust domain name on its own (as given to --trust-domain).
error_code validate_trust_domain(std::string_view td);

class SpiffeId {
  public:
    static Result<SpiffeId> parse(std::string_view uri);
    // spiffe://<td>/ns/<ns>/sa/<sa>; fails if any part is not valid in a SPIFFE ID.
    static Result<SpiffeId> for_service_account(std::string_view trust_domain, std::string_view ns,
                                                std::string_view sa);

    const std::string& trust_domain() const { return trust_domain_; }
    // The path including its leading '/', or empty.
    const std::string& path() const { return path_; }
    std::string str() const { return "spiffe://" + trust_domain_ + path_; }
    // "<td>/ns/x/sa/y": the form Istio's AuthorizationPolicy principals use.
    std::string principal() const { return trust_domain_ + path_; }

    // Namespace and service account when the path is exactly /ns/<ns>/sa/<sa>.
    std::optional<std::string> ns() const;
    std::optional<std::string> service_account() const;

    friend bool operator==(const SpiffeId&, const SpiffeId&) = default;

  private:
    SpiffeId(std::string td, std::string path)
        : trust_domain_(std::move(td)), path_(std::move(path)) {}
    std::string trust_domain_;
    std::string path_;
};

inline std::ostream& operator<<(std::ostream& os, const SpiffeId& id) {
    return os << id.str();
}

}  // namespace remora::certs

template <>
struct boost::system::is_error_code_enum<remora::certs::SpiffeIdErrc> : std::true_type {};
