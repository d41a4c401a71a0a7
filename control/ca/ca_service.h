// The CA's request logic, apart from the transport: authenticate the caller (bootstrap JWT or
// current SVID), sign the CSR for the authenticated identity only, and count what happened.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "certs/issuer.h"
#include "certs/jwt.h"
#include "certs/verifier.h"

namespace remora::control {

struct CaConfig {
    std::string trust_domain = "cluster.local";
    std::chrono::seconds default_ttl{24 * 3600};
    std::chrono::seconds max_ttl{90 * 24 * 3600};
    size_t max_body_bytes = 64 * 1024;
};

// Who is calling, as the transport saw it.
struct Caller {
    std::optional<std::string> authorization;    // the Authorization header, if any
    std::vector<certs::Certificate> peer_chain;  // the client certificate chain (mTLS), leaf first
    std::string remote;                          // "ip:port", for the log
};

struct CaResponse {
    int status = 200;
    std::string body;  // JSON
};

// Prometheus text for the CA's counters.
class CaMetrics {
  public:
    void issued() { issued_.fetch_add(1, std::memory_order_relaxed); }
    void refused(std::string_view reason);
    uint64_t issued_count() const { return issued_.load(std::memory_order_relaxed); }
    uint64_t refused_count(std::string_view reason) const;
    std::string prometheus(const certs::Certificate& root) const;

  private:
    std::atomic<uint64_t> issued_{0};
    mutable std::mutex mu_;  // refusals are rare and off any data path
    std::map<std::string, uint64_t, std::less<>> refused_;
};

class CertificateAuthority {
  public:
    using Clock = std::function<certs::SystemTime()>;
    using Logger = std::function<void(const std::string&)>;

    CertificateAuthority(certs::Signer signer, certs::Jwks trusted_keys, CaConfig config,
                         Clock clock, Logger log);

    // POST /v1/certificates with `body`.
    CaResponse sign(const Caller& caller, std::string_view body);

    // An SVID for the control plane's own TLS server (DNS SANs added).
    certs::Certificate issue_own(const certs::PublicKey& key, const certs::SpiffeId& id,
                                 std::chrono::seconds ttl, const std::vector<std::string>& dns);

    const certs::Signer& signer() const { return signer_; }
    const certs::TrustBundle& bundle() const { return bundle_; }
    const CaConfig& config() const { return config_; }
    CaMetrics& metrics() { return metrics_; }

  private:
    struct Refusal {
        int status;
        std::string reason;   // metric label
        std::string message;  // for the caller
    };
    certs::Result<certs::SpiffeId> authenticate(const Caller& caller, Refusal& why) const;
    CaResponse refuse(const Caller& caller, const Refusal& why);

    certs::Signer signer_;
    certs::TrustBundle bundle_;
    certs::Jwks trusted_keys_;
    CaConfig config_;
    Clock clock_;
    Logger log_;
    CaMetrics metrics_;
};

}  // namespace remora::control
