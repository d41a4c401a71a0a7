// State-dir loading and creation for remora-control.
#include "control/ca/state_dir.h"

#include <cctype>
#include <stdexcept>

namespace remora::control {
namespace fs = std::filesystem;
using common::read_file;
using common::write_file_atomic;
using namespace remora::certs;

namespace {

template <class T>
T must(Result<T> r, const fs::path& path, std::string_view what) {
    if (!r)
        throw std::runtime_error(path.string() + ": " + std::string(what) + ": " +
                                 r.error().message());
    return std::move(*r);
}

}  // namespace

PrivateKey load_jwt_key(const fs::path& dir) {
    return must(PrivateKey::from_pem(read_file(dir / kJwtKeyFile)), dir / kJwtKeyFile,
                "JWT signing key");
}

CaState load_or_create_ca(const fs::path& dir, const std::string& trust_domain,
                          const std::optional<OperatorCa>& operator_ca, SystemTime now) {
    if (error_code ec = validate_trust_domain(trust_domain)) {
        throw std::runtime_error("--trust-domain \"" + trust_domain + "\": " + ec.message());
    }
    std::error_code fec;
    fs::create_directories(dir, fec);
    if (fec)
        throw std::runtime_error("cannot create state dir " + dir.string() + ": " + fec.message());
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, fec);

    bool created = false;
    std::optional<Signer> signer;
    if (operator_ca) {
        std::string root =
            operator_ca->root_file.empty() ? std::string() : read_file(operator_ca->root_file);
        auto s =
            make_signer(read_file(operator_ca->cert_file), read_file(operator_ca->key_file), root);
        signer = must(std::move(s), operator_ca->cert_file, "operator CA (--ca-cert/--ca-key)");
        if (!signer->cert.is_ca()) {
            throw std::runtime_error(operator_ca->cert_file + ": the certificate is not a CA");
        }
        write_file_atomic(dir / kRootCertFile, signer->root().to_pem(), 0644);
    } else if (fs::exists(dir / kRootCertFile) || fs::exists(dir / kRootKeyFile)) {
        Certificate root = must(Certificate::from_pem(read_file(dir / kRootCertFile)),
                                dir / kRootCertFile, "root certificate");
        PrivateKey key = must(PrivateKey::from_pem(read_file(dir / kRootKeyFile)),
                              dir / kRootKeyFile, "root key");
        std::string pem = root.to_pem();
        signer = must(make_signer(pem, key.to_pem()), dir / kRootCertFile, "root");
    } else {
        PrivateKey key = PrivateKey::generate_p256();
        Certificate root =
            make_root_certificate(key, trust_domain, now, std::chrono::hours(24 * 3650));
        // Key first: a root certificate without its key would be unusable after a crash.
        write_file_atomic(dir / kRootKeyFile, key.to_pem(), 0600);
        write_file_atomic(dir / kRootCertFile, root.to_pem(), 0644);
        signer = Signer{root, std::move(key), {root}};
        created = true;
    }

    std::optional<PrivateKey> jwt_key;
    if (fs::exists(dir / kJwtKeyFile)) {
        jwt_key = load_jwt_key(dir);
    } else {
        jwt_key = PrivateKey::generate_p256();
        write_file_atomic(dir / kJwtKeyFile, jwt_key->to_pem(), 0600);
    }
    // The JWKS is derived from the key; rewrite it so it always matches.
    write_file_atomic(dir / kJwksFile, jwks_json(*jwt_key), 0644);
    return CaState{std::move(*signer), std::move(*jwt_key), created};
}

std::string load_admin_token(const fs::path& dir) {
    std::string token = read_file(dir / kAdminTokenFile);
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
        token.pop_back();
    if (token.empty()) throw std::runtime_error((dir / kAdminTokenFile).string() + ": empty");
    return token;
}

std::string load_or_create_admin_token(const fs::path& dir) {
    std::error_code ec;
    if (fs::exists(dir / kAdminTokenFile, ec)) return load_admin_token(dir);
    std::string token = random_hex(32);
    write_file_atomic(dir / kAdminTokenFile, token + "\n", 0600);
    return token;
}

}  // namespace remora::control
