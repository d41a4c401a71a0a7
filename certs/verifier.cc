// X.509-SVID verification: OpenSSL builds and checks the path; the SPIFFE rules are checked here.
#include "certs/verifier.h"

#include <openssl/err.h>

#include <algorithm>

namespace remora::certs {
namespace {

error_code map_x509_error(int err) {
    switch (err) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CRL_HAS_EXPIRED:
            return make_reason(SvidErrc::expired);
        case X509_V_ERR_CERT_NOT_YET_VALID:
        case X509_V_ERR_CRL_NOT_YET_VALID:
            return make_reason(SvidErrc::not_yet_valid);
        case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
        case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
            return make_reason(SvidErrc::bad_signature);
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            return make_reason(SvidErrc::untrusted_chain);
        default:
            return make_reason(SvidErrc::invalid_chain);
    }
}

// The SPIFFE leaf rules: OpenSSL's path check does not look at these.
error_code check_leaf(X509* leaf) {
    if (X509_check_ca(leaf) != 0) return make_reason(SvidErrc::leaf_is_ca);
    uint32_t flags = X509_get_extension_flags(leaf);
    if (!(flags & EXFLAG_KUSAGE)) return make_reason(SvidErrc::no_key_usage);
    uint32_t ku = X509_get_key_usage(leaf);
    if (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) return make_reason(SvidErrc::signing_key_usage);
    if (!(ku & KU_DIGITAL_SIGNATURE)) return make_reason(SvidErrc::no_digital_signature);
    if (!(flags & EXFLAG_XKUSAGE)) return make_reason(SvidErrc::no_ext_key_usage);
    uint32_t xku = X509_get_extended_key_usage(leaf);
    if (!(xku & XKU_SSL_SERVER) || !(xku & XKU_SSL_CLIENT)) {
        return make_reason(SvidErrc::missing_server_or_client_auth);
    }
    return {};
}

}  // namespace

Result<TrustBundle> TrustBundle::from_pem(std::string_view pem) {
    auto roots = Certificate::chain_from_pem(pem);
    if (!roots) return roots.error();
    return TrustBundle(std::move(*roots));
}

Result<SpiffeId> verify_svid(std::span<const Certificate> chain, const TrustBundle& bundle,
                             const VerifyOptions& options, SystemTime now) {
    if (chain.empty()) return make_reason(SvidErrc::no_certificate);
    X509* leaf = chain.front().get();

    // The path first: a certificate from an unknown CA is refused as such, whatever it claims.
    ossl::X509StorePtr store(X509_STORE_new());
    for (const Certificate& root : bundle.roots())
        X509_STORE_add_cert(store.get(), root.get());
    ossl::X509StackPtr untrusted(sk_X509_new_null());
    for (size_t i = 1; i < chain.size(); ++i) {
        X509_up_ref(chain[i].get());
        sk_X509_push(untrusted.get(), chain[i].get());
    }
    ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
        ERR_clear_error();
        return make_reason(SvidErrc::invalid_chain);
    }
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
    X509_VERIFY_PARAM_set_time(param, std::chrono::system_clock::to_time_t(now));
    // Leaf purpose is checked by check_leaf (both server and client auth), not by OpenSSL.
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_ANY);
    int ok = X509_verify_cert(ctx.get());
    ERR_clear_error();
    if (ok != 1) return map_x509_error(X509_STORE_CTX_get_error(ctx.get()));

    // Then the SPIFFE rules, which OpenSSL's path check does not know.
    std::vector<std::string> uris = chain.front().uri_sans();
    if (uris.empty()) return make_reason(SvidErrc::no_uri_san);
    if (uris.size() > 1) return make_reason(SvidErrc::multiple_uri_sans);
    auto id = SpiffeId::parse(uris.front());
    if (!id) return make_reason(SvidErrc::invalid_spiffe_id);
    if (std::find(options.trust_domains.begin(), options.trust_domains.end(), id->trust_domain()) ==
        options.trust_domains.end()) {
        return make_reason(SvidErrc::untrusted_trust_domain);
    }
    if (error_code ec = check_leaf(leaf)) return ec;

    return *id;
}

}  // namespace remora::certs
