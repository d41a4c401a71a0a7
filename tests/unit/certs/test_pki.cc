// Certificate builder for the certs/ unit tests.
#include "test_pki.h"

#include <stdexcept>

namespace remora::certs::testing {

Certificate build_cert(const CertSpec& spec, const PrivateKey& subject_key,
                       const PrivateKey& issuer_key, const Certificate* issuer) {
    ossl::X509Ptr cert(X509_new());
    X509_set_version(cert.get(), X509_VERSION_3);
    static long serial = 1000;
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), ++serial);
    X509_NAME* name = X509_get_subject_name(cert.get());
    if (!spec.subject_o.empty()) {
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(spec.subject_o.c_str()),
                                   -1, -1, 0);
    }
    X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer->get()) : name);
    ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                  std::chrono::system_clock::to_time_t(spec.not_before));
    ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                  std::chrono::system_clock::to_time_t(spec.not_after));
    X509_set_pubkey(cert.get(), subject_key.get());
    for (const Ext& e : spec.exts) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer ? issuer->get() : cert.get(), cert.get(), nullptr, nullptr, 0);
        ossl::X509ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, e.nid, e.value.c_str()));
        if (!ext) throw std::runtime_error("bad test extension " + e.value);
        X509_add_ext(cert.get(), ext.get(), -1);
    }
    X509_sign(cert.get(), issuer_key.get(), EVP_sha256());
    return Certificate(std::move(cert));
}

std::vector<Ext> svid_exts(const std::string& uri) {
    return {{NID_basic_constraints, "critical,CA:FALSE"},
            {NID_key_usage, "critical,digitalSignature"},
            {NID_ext_key_usage, "serverAuth,clientAuth"},
            {NID_subject_alt_name, "critical,URI:" + uri}};
}

Signer make_root_signer(std::string_view td, SystemTime now) {
    PrivateKey key = PrivateKey::generate_p256();
    Certificate root = make_root_certificate(key, td, now, std::chrono::hours(24 * 3650));
    return Signer{root, std::move(key), {root}};
}

}  // namespace remora::certs::testing
