// Keys, certificate signing requests and certificates: ECDSA P-256 generation, PEM in and out,
// CSR creation and signature check. The OpenSSL objects stay inside these types.
#pragma once

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "certs/error.h"
#include "certs/ossl.h"

namespace remora::certs {

using SystemTime = std::chrono::system_clock::time_point;

enum class KeyErrc {
    malformed_pem = 1,
    unsupported_key,
    weak_key,
    malformed_csr,
    csr_bad_signature,
    malformed_certificate,
    no_certificate,
};

template <>
struct ReasonTable<KeyErrc> {
    static constexpr const char* name = "key";
    static constexpr ReasonText table[] = {
        {1, "malformed_pem", "not a PEM private or public key"},
        {2, "unsupported_key", "key type not supported (use ECDSA P-256/P-384 or RSA)"},
        {3, "weak_key", "RSA key shorter than 2048 bits"},
        {4, "malformed_csr", "not a PEM certificate signing request"},
        {5, "csr_bad_signature", "CSR signature does not verify with its own public key"},
        {6, "malformed_certificate", "not a PEM X.509 certificate"},
        {7, "no_certificate", "no certificate in the PEM input"},
    };
};

inline error_code make_error_code(KeyErrc e) {
    return make_reason(e);
}

class PublicKey {
  public:
    static Result<PublicKey> from_pem(std::string_view pem);
    explicit PublicKey(ossl::PkeyPtr key) : key_(key.release(), EVP_PKEY_free) {}

    std::string to_pem() const;
    EVP_PKEY* get() const { return key_.get(); }
    bool operator==(const PublicKey& other) const;
    // "EC P-256", "RSA 2048": for messages.
    std::string describe() const;

  private:
    std::shared_ptr<EVP_PKEY> key_;  // immutable once built, so copies share it
};

class PrivateKey {
  public:
    static PrivateKey generate_p256();
    static Result<PrivateKey> from_pem(std::string_view pem);
    explicit PrivateKey(ossl::PkeyPtr key) : key_(key.release(), EVP_PKEY_free) {}

    // PKCS#8 PEM, unencrypted: write it with mode 0600.
    std::string to_pem() const;
    PublicKey public_key() const;
    EVP_PKEY* get() const { return key_.get(); }

  private:
    std::shared_ptr<EVP_PKEY> key_;  // immutable once built, so copies share it
};

// Keys a CSR or a peer may use: EC P-256/P-384, RSA of at least 2048 bits.
error_code check_key_strength(EVP_PKEY* key);

class Csr {
  public:
    // A CSR with an empty subject, signed by `key`, optionally asking for one URI SAN.
    static Csr create(const PrivateKey& key, std::optional<std::string_view> uri_san = {});
    // Parses and checks the self-signature and the key strength.
    static Result<Csr> parse_pem(std::string_view pem);

    std::string to_pem() const;
    PublicKey public_key() const;
    // URI SANs the CSR asks for; the CA ignores them but logs what was asked.
    std::vector<std::string> requested_uris() const;

  private:
    explicit Csr(ossl::X509ReqPtr req) : req_(std::move(req)) {}
    ossl::X509ReqPtr req_;
};

// A shared, immutable X.509 certificate.
class Certificate {
  public:
    static Result<Certificate> from_pem(std::string_view pem);
    // Every certificate in a PEM bundle, in order; an input with none is an error.
    static Result<std::vector<Certificate>> chain_from_pem(std::string_view pem);
    // Takes ownership.
    explicit Certificate(ossl::X509Ptr cert);
    // Shares (up-refs) a certificate OpenSSL owns.
    static Certificate share(X509* cert);

    X509* get() const { return cert_.get(); }
    std::string to_pem() const;
    std::string serial_hex() const;
    SystemTime not_before() const;
    SystemTime not_after() const;
    std::vector<std::string> uri_sans() const;
    std::vector<std::string> dns_sans() const;
    std::string subject() const;
    bool is_ca() const;
    bool is_self_signed() const;
    PublicKey public_key() const;

  private:
    std::shared_ptr<X509> cert_;
};

std::string to_pem(const std::vector<Certificate>& chain);

// For logs and test failure messages; never prints key material.
std::ostream& operator<<(std::ostream& os, const PublicKey& key);
std::ostream& operator<<(std::ostream& os, const PrivateKey& key);
std::ostream& operator<<(std::ostream& os, const Csr& csr);
std::ostream& operator<<(std::ostream& os, const Certificate& cert);

// RFC 3339 UTC ("2026-11-21T13:48:02Z").
std::string format_time(SystemTime t);

// `bytes` bytes from OpenSSL's CSPRNG as lowercase hex (secrets such as the admin token). Throws
// std::runtime_error when the generator fails.
std::string random_hex(std::size_t bytes);
// Compares secrets without leaking where they differ through timing (lengths may leak).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace remora::certs

template <>
struct boost::system::is_error_code_enum<remora::certs::KeyErrc> : std::true_type {};
