// Test helper: builds certificates with any extensions, so each verifier refusal can be provoked.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "certs/issuer.h"
#include "certs/keys.h"

namespace remora::certs::testing {

// Extensions as OpenSSL config strings: {NID_key_usage, "critical,digitalSignature"}.
struct Ext {
    int nid;
    std::string value;
};

struct CertSpec {
    std::string subject_o;  // empty: empty subject
    std::vector<Ext> exts;
    SystemTime not_before;
    SystemTime not_after;
};

// Signs `spec` over `subject_key` with `issuer_key`; `issuer` null means self-signed.
Certificate build_cert(const CertSpec& spec, const PrivateKey& subject_key,
                       const PrivateKey& issuer_key, const Certificate* issuer);

// The extensions of a well-formed X.509-SVID leaf for `uri`.
std::vector<Ext> svid_exts(const std::string& uri);

// A fresh root CA signer for trust domain `td`, valid 10 years from `now`.
Signer make_root_signer(std::string_view td, SystemTime now);

inline SystemTime fixed_now() {
    // 2026-01-01T00:00:00Z: a fixed instant, so tests never read the wall clock.
    return std::chrono::system_clock::from_time_t(1767225600);
}

}  // namespace remora::certs::testing
