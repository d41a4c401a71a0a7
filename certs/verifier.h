// Verifying a peer's X.509-SVID: chain to a trust bundle, one valid SPIFFE ID in an expected trust
// domain, leaf usage rules, and validity against an injected time. Each refusal names its reason.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "certs/keys.h"
#include "certs/spiffe_id.h"

namespace remora::certs {

enum class SvidErrc {
    no_certificate = 1,
    untrusted_chain,
    bad_signature,
    expired,
    not_yet_valid,
    invalid_chain,
    no_uri_san,
    multiple_uri_sans,
    invalid_spiffe_id,
    untrusted_trust_domain,
    leaf_is_ca,
    no_key_usage,
    no_digital_signature,
    signing_key_usage,
    no_ext_key_usage,
    missing_server_or_client_auth,
};

template <>
struct ReasonTable<SvidErrc> {
    static constexpr const char* name = "svid";
    static constexpr ReasonText table[] = {
        {1, "no_certificate", "peer presented no certificate"},
        {2, "untrusted_chain", "certificate does not chain to the trust bundle"},
        {3, "bad_signature", "a certificate signature in the chain does not verify"},
        {4, "expired", "certificate has expired"},
        {5, "not_yet_valid", "certificate is not valid yet"},
        {6, "invalid_chain",
         "certificate chain is invalid (issuer not a CA, path length or policy)"},
        {7, "no_uri_san", "leaf has no URI SAN"},
        {8, "multiple_uri_sans", "leaf has more than one URI SAN"},
        {9, "invalid_spiffe_id", "leaf URI SAN is not a valid SPIFFE ID"},
        {10, "untrusted_trust_domain", "SPIFFE ID is not in a trusted trust domain"},
        {11, "leaf_is_ca", "leaf is a CA certificate"},
        {12, "no_key_usage", "leaf has no key usage extension"},
        {13, "no_digital_signature", "leaf key usage lacks digitalSignature"},
        {14, "signing_key_usage", "leaf key usage has keyCertSign or cRLSign"},
        {15, "no_ext_key_usage", "leaf has no extended key usage"},
        {16, "missing_server_or_client_auth", "leaf EKU lacks serverAuth or clientAuth"},
    };
};

inline error_code make_error_code(SvidErrc e) {
    return make_reason(e);
}

// The roots a verifier trusts.
class TrustBundle {
  public:
    TrustBundle() = default;
    explicit TrustBundle(std::vector<Certificate> roots) : roots_(std::move(roots)) {}
    static Result<TrustBundle> from_pem(std::string_view pem);

    const std::vector<Certificate>& roots() const { return roots_; }
    std::string to_pem() const { return certs::to_pem(roots_); }

  private:
    std::vector<Certificate> roots_;
};

struct VerifyOptions {
    std::vector<std::string> trust_domains;  // the SPIFFE ID's trust domain must be one of these
};

// `chain` is leaf first, then any intermediates the peer sent. Returns the peer's SPIFFE ID.
Result<SpiffeId> verify_svid(std::span<const Certificate> chain, const TrustBundle& bundle,
                             const VerifyOptions& options, SystemTime now);

}  // namespace remora::certs

template <>
struct boost::system::is_error_code_enum<remora::certs::SvidErrc> : std::true_type {};
