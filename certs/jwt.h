// JWT (JWS compact) verification for bootstrap tokens: ES256 and RS256 against JWKS files, with
// Kubernetes service-account claims, and ES256 signing for `remoractl token create`.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "certs/error.h"
#include "certs/keys.h"

namespace remora::certs {

enum class JwtErrc {
    malformed = 1,    // not three dot-separated parts, or too large
    bad_base64,       // a part is not valid base64url
    bad_json,         // header or payload is not a JSON object
    alg_none,         // "alg": "none"
    alg_hmac,         // HS256/384/512: shared secrets are refused
    alg_unsupported,  // anything other than ES256 and RS256
    missing_kid,      // header has no "kid"
    unknown_kid,      // no key in the JWKS has this "kid"
    key_mismatch,     // the key with this kid cannot verify this alg
    bad_signature,    // signature does not verify
    missing_exp,      // no numeric "exp"
    expired,          // now >= exp (+ leeway)
    not_yet_valid,    // now < nbf (- leeway)
    wrong_audience,   // "aud" does not contain the expected audience
    bad_subject,      // "sub" is not system:serviceaccount:<ns>:<sa>
    claims_mismatch,  // kubernetes.io claim disagrees with "sub"
    bad_jwks,         // a JWKS document is malformed
};

template <>
struct ReasonTable<JwtErrc> {
    static constexpr const char* name = "jwt";
    static constexpr ReasonText table[] = {
        {1, "malformed", "token is not a compact JWS (header.payload.signature)"},
        {2, "bad_base64", "token part is not valid base64url"},
        {3, "bad_json", "token header or payload is not a JSON object"},
        {4, "alg_none", "unsigned tokens (alg none) are refused"},
        {5, "alg_hmac", "HMAC-signed tokens are refused"},
        {6, "alg_unsupported", "token algorithm is not ES256 or RS256"},
        {7, "missing_kid", "token header has no kid"},
        {8, "unknown_kid", "no trusted key has the token's kid"},
        {9, "key_mismatch", "the trusted key with this kid does not fit the token's alg"},
        {10, "bad_signature", "token signature does not verify"},
        {11, "missing_exp", "token has no exp claim"},
        {12, "expired", "token has expired"},
        {13, "not_yet_valid", "token is not valid yet (nbf)"},
        {14, "wrong_audience", "token audience does not include the expected audience"},
        {15, "bad_subject", "token subject is not system:serviceaccount:<namespace>:<name>"},
        {16, "claims_mismatch", "token kubernetes.io claims disagree with its subject"},
        {17, "bad_jwks", "JWKS document is malformed"},
    };
};

inline error_code make_error_code(JwtErrc e) {
    return make_reason(e);
}

struct ServiceAccount {
    std::string ns;
    std::string name;
    friend bool operator==(const ServiceAccount&, const ServiceAccount&) = default;
};

// A set of trusted public keys, each with its kid and algorithm family.
class Jwks {
  public:
    struct Key {
        std::string kid;
        std::string alg;  // "ES256" or "RS256"
        std::shared_ptr<EVP_PKEY> key;
    };

    // RFC 7517 JSON: {"keys": [{"kty":"EC","crv":"P-256","x","y","kid"},
    // {"kty":"RSA","n","e","kid"}]}. Keys of other types are skipped; a malformed document, or an
    // RSA key under 2048 bits, is bad_jwks.
    static Result<Jwks> parse(std::string_view json);
    // Reads and parses a file; throws std::runtime_error naming the file on failure.
    static Jwks load_file(const std::string& path);

    void add(Key key) { keys_.push_back(std::move(key)); }
    // Adds the keys of `other` whose kid is not already here.
    void merge(const Jwks& other);
    const Key* find(std::string_view kid) const;
    size_t size() const { return keys_.size(); }

  private:
    std::vector<Key> keys_;
};

struct JwtPolicy {
    std::string audience = "remora-ca";
    std::chrono::seconds leeway{60};  // clock skew allowed on exp and nbf, as Kubernetes does
};

// Verifies a Kubernetes service-account token and returns who it names.
Result<ServiceAccount> verify_service_account_token(std::string_view token, const Jwks& jwks,
                                                    const JwtPolicy& policy, SystemTime now);

// RFC 7638 JWK thumbprint (base64url SHA-256) of an EC P-256 key: the kid Remora uses.
std::string key_id(const PrivateKey& key);
// {"keys":[ ... ]} holding the public half of `key` with kid key_id(key) and alg ES256.
std::string jwks_json(const PrivateKey& key);
// An ES256 token with aud, iat, nbf, exp, sub system:serviceaccount:<ns>:<sa>, iss, and the
// kubernetes.io claim object, signed by `key` (EC P-256) with kid key_id(key).
std::string sign_service_account_token(const PrivateKey& key, const ServiceAccount& sa,
                                       std::string_view audience, std::string_view issuer,
                                       SystemTime now, std::chrono::seconds ttl);

// base64url without padding (RFC 4648 section 5); decode refuses "=" padding, characters outside
// the URL-safe alphabet and non-zero trailing bits, so a token has exactly one spelling.
std::string base64url_encode(std::string_view data);
Result<std::string> base64url_decode(std::string_view text);

}  // namespace remora::certs

template <>
struct boost::system::is_error_code_enum<remora::certs::JwtErrc> : std::true_type {};
