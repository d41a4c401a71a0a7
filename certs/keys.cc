// Key, CSR and certificate handling over OpenSSL 3's EVP and X509 APIs.
#include "certs/keys.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>

#include <cctype>

#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace remora::certs {
namespace {

std::string pem_of(int (*write)(BIO*, EVP_PKEY*), EVP_PKEY* key) {
    ossl::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || write(bio.get(), key) != 1) throw std::runtime_error("PEM encoding failed");
    return ossl::drain(bio.get());
}

int write_private(BIO* bio, EVP_PKEY* key) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
}
int write_public(BIO* bio, EVP_PKEY* key) {
    return PEM_write_bio_PUBKEY(bio, key);
}

SystemTime asn1_to_time(const ASN1_TIME* t) {
    struct tm tm {};
    if (ASN1_TIME_to_tm(t, &tm) != 1) return SystemTime{};
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::vector<std::string> san_values(X509* cert, int type) {
    std::vector<std::string> out;
    ossl::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
    if (!names) return out;
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
        const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
        if (gn->type != type) continue;
        const ASN1_IA5STRING* s = type == GEN_URI ? gn->d.uniformResourceIdentifier : gn->d.dNSName;
        out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    }
    return out;
}

}  // namespace

// ---- PublicKey

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
    ossl::BioPtr bio = ossl::memory_bio(pem);
    ossl::PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!key) return make_reason(KeyErrc::malformed_pem);
    return PublicKey(std::move(key));
}

std::string PublicKey::to_pem() const {
    return pem_of(write_public, key_.get());
}

bool PublicKey::operator==(const PublicKey& other) const {
    return EVP_PKEY_eq(key_.get(), other.key_.get()) == 1;
}

std::string PublicKey::describe() const {
    if (EVP_PKEY_is_a(key_.get(), "EC")) {
        char group[64] = {};
        size_t len = 0;
        EVP_PKEY_get_utf8_string_param(key_.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len);
        return std::string("EC ") + (std::string_view(group) == "prime256v1" ? "P-256" : group);
    }
    if (EVP_PKEY_is_a(key_.get(), "RSA"))
        return "RSA " + std::to_string(EVP_PKEY_get_bits(key_.get()));
    return EVP_PKEY_get0_type_name(key_.get()) ? EVP_PKEY_get0_type_name(key_.get()) : "unknown";
}

// ---- PrivateKey

PrivateKey PrivateKey::generate_p256() {
    ossl::PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!key) throw std::runtime_error("EC P-256 key generation failed: " + ossl::last_error());
    return PrivateKey(std::move(key));
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
    ossl::BioPtr bio = ossl::memory_bio(pem);
    ossl::PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) return make_reason(KeyErrc::malformed_pem);
    return PrivateKey(std::move(key));
}

std::string PrivateKey::to_pem() const {
    return pem_of(write_private, key_.get());
}

PublicKey PrivateKey::public_key() const {
    // Round-trip through DER so the public key shares nothing with the private one.
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(key_.get(), &der);
    if (len <= 0) throw std::runtime_error("public key export failed");
    const unsigned char* p = der;
    ossl::PkeyPtr pub(d2i_PUBKEY(nullptr, &p, len));
    OPENSSL_free(der);
    return PublicKey(std::move(pub));
}

error_code check_key_strength(EVP_PKEY* key) {
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64] = {};
        size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           &len) != 1) {
            return make_reason(KeyErrc::unsupported_key);
        }
        std::string_view g(group);
        if (g == "prime256v1" || g == "secp384r1") return {};
        return make_reason(KeyErrc::unsupported_key);
    }
    if (EVP_PKEY_is_a(key, "RSA")) {
        return EVP_PKEY_get_bits(key) >= 2048 ? error_code{} : make_reason(KeyErrc::weak_key);
    }
    return make_reason(KeyErrc::unsupported_key);
}

// ---- Csr

Csr Csr::create(const PrivateKey& key, std::optional<std::string_view> uri_san) {
    ossl::X509ReqPtr req(X509_REQ_new());
    if (!req || X509_REQ_set_version(req.get(), 0) != 1 ||
        X509_REQ_set_pubkey(req.get(), key.get()) != 1) {
        throw std::runtime_error("CSR creation failed: " + ossl::last_error());
    }
    if (uri_san) {
        std::string value = "URI:" + std::string(*uri_san);
        STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION* ext =
            X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, value.c_str());
        if (ext) sk_X509_EXTENSION_push(exts, ext);
        int ok = ext ? X509_REQ_add_extensions(req.get(), exts) : 0;
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        if (ok != 1) throw std::runtime_error("CSR SAN failed: " + ossl::last_error());
    }
    if (X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0) {
        throw std::runtime_error("CSR signing failed: " + ossl::last_error());
    }
    return Csr(std::move(req));
}

Result<Csr> Csr::parse_pem(std::string_view pem) {
    ossl::BioPtr bio = ossl::memory_bio(pem);
    ossl::X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (!req) {
        ERR_clear_error();
        return make_reason(KeyErrc::malformed_csr);
    }
    EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
    if (!key) return make_reason(KeyErrc::malformed_csr);
    if (error_code ec = check_key_strength(key)) return ec;
    if (X509_REQ_verify(req.get(), key) != 1) {
        ERR_clear_error();
        return make_reason(KeyErrc::csr_bad_signature);
    }
    return Csr(std::move(req));
}

std::string Csr::to_pem() const {
    ossl::BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509_REQ(bio.get(), req_.get());
    return ossl::drain(bio.get());
}

PublicKey Csr::public_key() const {
    EVP_PKEY* key = X509_REQ_get0_pubkey(req_.get());
    EVP_PKEY_up_ref(key);
    return PublicKey(ossl::PkeyPtr(key));
}

std::vector<std::string> Csr::requested_uris() const {
    std::vector<std::string> out;
    STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req_.get());
    if (!exts) return out;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) {
        X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
        ossl::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
        for (int j = 0; names && j < sk_GENERAL_NAME_num(names.get()); ++j) {
            const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), j);
            if (gn->type != GEN_URI) continue;
            out.emplace_back(
                reinterpret_cast<const char*>(
                    ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier)),
                static_cast<size_t>(ASN1_STRING_length(gn->d.uniformResourceIdentifier)));
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return out;
}

// ---- Certificate

Certificate::Certificate(ossl::X509Ptr cert) : cert_(cert.release(), X509_free) {}

Certificate Certificate::share(X509* cert) {
    X509_up_ref(cert);
    return Certificate(ossl::X509Ptr(cert));
}

Result<Certificate> Certificate::from_pem(std::string_view pem) {
    auto chain = chain_from_pem(pem);
    if (!chain) return chain.error();
    return chain->front();
}

Result<std::vector<Certificate>> Certificate::chain_from_pem(std::string_view pem) {
    std::vector<Certificate> out;
    ossl::BioPtr bio = ossl::memory_bio(pem);
    while (true) {
        ossl::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
        if (!cert) break;
        out.emplace_back(std::move(cert));
    }
    // Reading stops at end of input (PEM_R_NO_START_LINE) or at something that is not a cert.
    unsigned long err = ERR_peek_last_error();
    ERR_clear_error();
    if (err != 0 &&
        !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)) {
        return make_reason(KeyErrc::malformed_certificate);
    }
    if (out.empty()) return make_reason(KeyErrc::no_certificate);
    return out;
}

std::string Certificate::to_pem() const {
    ossl::BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), cert_.get());
    return ossl::drain(bio.get());
}

std::string Certificate::serial_hex() const {
    ossl::BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert_.get()), nullptr));
    char* hex = BN_bn2hex(bn.get());
    std::string out(hex ? hex : "");
    OPENSSL_free(hex);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

SystemTime Certificate::not_before() const {
    return asn1_to_time(X509_get0_notBefore(cert_.get()));
}
SystemTime Certificate::not_after() const {
    return asn1_to_time(X509_get0_notAfter(cert_.get()));
}
std::vector<std::string> Certificate::uri_sans() const {
    return san_values(cert_.get(), GEN_URI);
}
std::vector<std::string> Certificate::dns_sans() const {
    return san_values(cert_.get(), GEN_DNS);
}

std::string Certificate::subject() const {
    ossl::BioPtr bio(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert_.get()), 0, XN_FLAG_RFC2253);
    return ossl::drain(bio.get());
}

bool Certificate::is_ca() const {
    return X509_check_ca(cert_.get()) != 0;
}

bool Certificate::is_self_signed() const {
    return X509_self_signed(cert_.get(), 0) == 1;
}

PublicKey Certificate::public_key() const {
    EVP_PKEY* key = X509_get0_pubkey(cert_.get());
    EVP_PKEY_up_ref(key);
    return PublicKey(ossl::PkeyPtr(key));
}

std::string to_pem(const std::vector<Certificate>& chain) {
    std::string out;
    for (const Certificate& c : chain)
        out += c.to_pem();
    return out;
}

std::ostream& operator<<(std::ostream& os, const PublicKey& key) {
    return os << "PublicKey(" << key.describe() << ")";
}
std::ostream& operator<<(std::ostream& os, const PrivateKey& key) {
    return os << "PrivateKey(" << key.public_key().describe() << ")";
}
std::ostream& operator<<(std::ostream& os, const Csr& csr) {
    return os << "Csr(" << csr.public_key().describe() << ")";
}
std::ostream& operator<<(std::ostream& os, const Certificate& cert) {
    return os << "Certificate(serial=" << cert.serial_hex() << " subject=\"" << cert.subject()
              << "\")";
}

std::string format_time(SystemTime t) {
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    struct tm tm {};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string random_hex(std::size_t bytes) {
    std::vector<unsigned char> raw(bytes);
    if (bytes > 0 && RAND_bytes(raw.data(), static_cast<int>(bytes)) != 1) {
        throw std::runtime_error("random bytes: " + ossl::last_error());
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (unsigned char c : raw) {
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
    }
    return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace remora::certs
