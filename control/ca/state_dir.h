// The control plane's durable state: the root (or the operator's CA), the JWT signing key and its
// JWKS, each written atomically so a crash never leaves a half-written key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "certs/issuer.h"
#include "certs/jwt.h"
#include "common/files.h"

namespace remora::control {

struct OperatorCa {
    std::string cert_file;  // signing cert, optionally followed by its chain up to the root
    std::string key_file;
    std::string root_file;  // optional: the root, when cert_file does not end with it
};

struct CaState {
    certs::Signer signer;
    certs::PrivateKey jwt_key;
    bool created = false;  // true when this start created the root
};

// File names inside the state dir.
inline constexpr const char* kRootCertFile = "root-cert.pem";
inline constexpr const char* kRootKeyFile = "root-key.pem";
inline constexpr const char* kJwtKeyFile = "jwt-signing-key.pem";
inline constexpr const char* kJwksFile = "jwks.json";
inline constexpr const char* kAdminTokenFile = "admin-token";
inline constexpr const char* kConfigStoreDir = "config";

// Loads the CA from `dir`, creating the directory (0700), a 10-year self-signed root and a JWT key
// on first start. With `operator_ca` the operator's CA signs and the state dir keeps a copy of its
// root as root-cert.pem for `remoractl ca root`. Throws std::runtime_error with a clear message.
CaState load_or_create_ca(const std::filesystem::path& dir, const std::string& trust_domain,
                          const std::optional<OperatorCa>& operator_ca, certs::SystemTime now);

// The JWT signing key alone (for `remoractl token create`).
certs::PrivateKey load_jwt_key(const std::filesystem::path& dir);

// The config API's admin credential (a bearer token): 32 random bytes as hex, created 0600 on
// first start. Throws when the file exists but is empty or unreadable.
std::string load_or_create_admin_token(const std::filesystem::path& dir);
// The same, for remoractl: throws naming the file when it is absent.
std::string load_admin_token(const std::filesystem::path& dir);

}  // namespace remora::control
