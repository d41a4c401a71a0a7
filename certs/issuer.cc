// Building and signing the mesh root and X.509-SVID leaves.
#include "certs/issuer.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace remora::certs {
namespace {

using std::chrono::seconds;
constexpr seconds kBackdate{120};  // clock skew between CA and peers

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    ossl::X509ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
        throw std::runtime_error("certificate extension " + std::string(OBJ_nid2sn(nid)) + "=" +
                                 value + ": " + ossl::last_error());
    }
}

void set_random_serial(X509* cert) {
    ossl::BnPtr bn(BN_new());
    // 128 random bits; a zero serial is not allowed, so draw again in that (unlikely) case.
    do {
        if (!bn || BN_rand(bn.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
            throw std::runtime_error("serial generation failed: " + ossl::last_error());
        }
    } while (BN_is_zero(bn.get()));
    if (!BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert))) {
        throw std::runtime_error("serial encoding failed");
    }
}

void set_validity(X509* cert, SystemTime not_before, SystemTime not_after) {
    using std::chrono::system_clock;
    if (!ASN1_TIME_set(X509_getm_notBefore(cert), system_clock::to_time_t(not_before)) ||
        !ASN1_TIME_set(X509_getm_notAfter(cert), system_clock::to_time_t(not_after))) {
        throw std::runtime_error("certificate validity encoding failed");
    }
}

void sign(X509* cert, EVP_PKEY* key) {
    // EC keys sign with SHA-256; an operator's RSA CA key does too.
    if (X509_sign(cert, key, EVP_sha256()) <= 0) {
        throw std::runtime_error("certificate signing failed: " + ossl::last_error());
    }
}

}  // namespace

Certificate make_root_certificate(const PrivateKey& key, std::string_view trust_domain,
                                  SystemTime now, seconds lifetime) {
    ossl::X509Ptr cert(X509_new());
    X509_set_version(cert.get(), X509_VERSION_3);
    set_random_serial(cert.get());
    X509_NAME* name = X509_get_subject_name(cert.get());
    std::string td(trust_domain);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(td.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    set_validity(cert.get(), now - kBackdate, now + lifetime);
    X509_set_pubkey(cert.get(), key.get());
    add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
    add_ext(cert.get(), cert.get(), NID_subject_alt_name, "URI:spiffe://" + td);
    sign(cert.get(), key.get());
    return Certificate(std::move(cert));
}

Result<Signer> make_signer(const std::string& chain_pem, const std::string& key_pem,
                           const std::string& root_pem) {
    auto chain = Certificate::chain_from_pem(chain_pem);
    if (!chain) return chain.error();
    auto key = PrivateKey::from_pem(key_pem);
    if (!key) return key.error();
    if (!root_pem.empty()) {
        auto roots = Certificate::chain_from_pem(root_pem);
        if (!roots) return roots.error();
        for (Certificate& r : *roots)
            chain->push_back(std::move(r));
    }
    if (X509_check_private_key(chain->front().get(), key->get()) != 1) {
        ERR_clear_error();
        return make_reason(IssueErrc::key_mismatch);
    }
    if (!chain->back().is_self_signed()) return make_reason(IssueErrc::chain_incomplete);
    Certificate cert = chain->front();
    return Signer{std::move(cert), std::move(*key), std::move(*chain)};
}

Result<Certificate> issue_svid(const Signer& signer, const PublicKey& key, const SpiffeId& id,
                               SystemTime now, const LeafOptions& options) {
    if (options.ttl <= seconds::zero()) return make_reason(IssueErrc::ttl_not_positive);
    SystemTime signer_end = signer.cert.not_after();
    if (now >= signer_end) return make_reason(IssueErrc::signer_expired);
    SystemTime not_after = std::min(now + options.ttl, signer_end);

    ossl::X509Ptr cert(X509_new());
    X509_set_version(cert.get(), X509_VERSION_3);
    set_random_serial(cert.get());
    // Subject stays empty: the identity is the URI SAN alone, which is therefore critical.
    X509_set_issuer_name(cert.get(), X509_get_subject_name(signer.cert.get()));
    set_validity(cert.get(), now - kBackdate, not_after);
    X509_set_pubkey(cert.get(), key.get());

    X509* issuer = signer.cert.get();
    add_ext(cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), issuer, NID_key_usage,
            EVP_PKEY_is_a(key.get(), "RSA") ? "critical,digitalSignature,keyEncipherment"
                                            : "critical,digitalSignature");
    add_ext(cert.get(), issuer, NID_ext_key_usage, "serverAuth,clientAuth");
    add_ext(cert.get(), issuer, NID_authority_key_identifier, "keyid:always");
    std::string san = "critical,URI:" + id.str();
    for (const std::string& dns : options.dns_names)
        san += ",DNS:" + dns;
    add_ext(cert.get(), issuer, NID_subject_alt_name, san);
    sign(cert.get(), signer.key.get());
    return Certificate(std::move(cert));
}

std::vector<Certificate> chain_for(const Signer& signer, const Certificate& leaf) {
    std::vector<Certificate> out;
    out.reserve(signer.chain.size() + 1);
    out.push_back(leaf);
    out.insert(out.end(), signer.chain.begin(), signer.chain.end());
    return out;
}

}  // namespace remora::certs
