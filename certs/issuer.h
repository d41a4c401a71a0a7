// Issuing X.509-SVIDs: the self-signed mesh root and workload leaves, as the SPIFFE X.509-SVID
// standard and ARCHITECTURE.md's contract define them.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "certs/keys.h"
#include "certs/spiffe_id.h"

namespace remora::certs {

// The key and certificate a CA signs with, and the chain from that certificate up to its root.
struct Signer {
    Certificate cert;
    PrivateKey key;
    std::vector<Certificate> chain;  // chain[0] == cert, last is the root

    const Certificate& root() const { return chain.back(); }
};

inline std::ostream& operator<<(std::ostream& os, const Signer& s) {
    return os << "Signer(" << s.cert << ")";
}

enum class IssueErrc {
    signer_expired = 1,
    ttl_not_positive,
    key_mismatch,
    chain_incomplete,
};

template <>
struct ReasonTable<IssueErrc> {
    static constexpr const char* name = "issue";
    static constexpr ReasonText table[] = {
        {1, "signer_expired", "the signing certificate has expired"},
        {2, "ttl_not_positive", "requested lifetime must be positive"},
        {3, "key_mismatch", "the CA key does not match the CA certificate"},
        {4, "chain_incomplete", "the CA chain does not end with a self-signed root"},
    };
};

inline error_code make_error_code(IssueErrc e) {
    return make_reason(e);
}

// A self-signed root: CA:TRUE (critical), keyCertSign|cRLSign (critical), subject O=<td>,
// a URI SAN spiffe://<td>, SKI, valid from now - 2 min for `lifetime`.
Certificate make_root_certificate(const PrivateKey& key, std::string_view trust_domain,
                                  SystemTime now, std::chrono::seconds lifetime);

// An operator-provided CA: `chain_pem` holds the signing certificate first, then its issuers up to
// a self-signed root (the root may come from `root_pem` instead).
Result<Signer> make_signer(const std::string& chain_pem, const std::string& key_pem,
                           const std::string& root_pem = {});

struct LeafOptions {
    std::chrono::seconds ttl{24 * 3600};
    std::vector<std::string> dns_names;  // extra DNS SANs (servers only)
};

// An X.509-SVID leaf for `id` over `key`: empty subject, exactly one URI SAN (critical), CA:FALSE,
// digitalSignature (critical; plus keyEncipherment for RSA keys), EKU serverAuth+clientAuth,
// 128-bit random serial, NotBefore now - 2 min, NotAfter min(now + ttl, signer's NotAfter).
Result<Certificate> issue_svid(const Signer& signer, const PublicKey& key, const SpiffeId& id,
                               SystemTime now, const LeafOptions& options = {});

// Leaf + intermediates + root as the CA returns it.
std::vector<Certificate> chain_for(const Signer& signer, const Certificate& leaf);

}  // namespace remora::certs

template <>
struct boost::system::is_error_code_enum<remora::certs::IssueErrc> : std::true_type {};
