// Compact-JWS parsing, ES256/RS256 verification against a JWKS, service-account claim checks,
// and ES256 signing of the bootstrap tokens remoractl hands out.
#include "certs/jwt.h"

#include <openssl/core_names.h>
#include <openssl/err.h>

#include <boost/json.hpp>

#include <array>
#include <cstdint>
#include <fstream>
#include <optional>
#include <stdexcept>

namespace remora::certs {
namespace {

namespace json = boost::json;

// Real service-account tokens are around 1 KiB; the bound keeps a hostile token from costing
// more than a few base64 and JSON passes over 16 KiB.
constexpr size_t max_token_size = 16 * 1024;
// A JWKS file is configuration, not peer input, but a bound still turns a wrong path (a log, a
// device) into a clear error instead of a large read.
constexpr size_t max_jwks_file_size = 1024 * 1024;
// P-256 coordinates and the r and s halves of an ES256 signature.
constexpr size_t p256_field_size = 32;

constexpr std::string_view base64url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view service_account_prefix = "system:serviceaccount:";

std::string_view view(const json::string& s) {
    return {s.data(), s.size()};
}

const json::string* string_member(const json::object& obj, std::string_view key) {
    const json::value* v = obj.if_contains(key);
    return v ? v->if_string() : nullptr;
}

// The value of a JSON number as seconds, in double so that no claim value, however large or
// fractional, can overflow the arithmetic with leeway.
std::optional<double> number_member(const json::object& obj, std::string_view key) {
    const json::value* v = obj.if_contains(key);
    if (!v) return std::nullopt;
    if (const auto* i = v->if_int64()) return static_cast<double>(*i);
    if (const auto* u = v->if_uint64()) return static_cast<double>(*u);
    if (const auto* d = v->if_double()) return *d;
    return std::nullopt;
}

char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    }
    return true;
}

// Parses text that must be a JSON object; anything else (including trailing bytes) is refused.
std::optional<json::object> parse_object(std::string_view text) {
    json::error_code ec;
    json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec || !v.is_object()) return std::nullopt;
    return std::move(v.get_object());
}

std::string_view bytes_view(const unsigned char* p, size_t n) {
    return {reinterpret_cast<const char*>(p), n};
}

const unsigned char* bytes(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

// Refusing a key or a signature leaves OpenSSL errors queued. They are expected, so this drops
// them on scope exit, lest they surface later as the "last error" of an unrelated call; errors
// queued before the scope are kept.
class ExpectedErrors {
  public:
    ExpectedErrors() { ERR_set_mark(); }
    ~ExpectedErrors() { ERR_pop_to_mark(); }
    ExpectedErrors(const ExpectedErrors&) = delete;
    ExpectedErrors& operator=(const ExpectedErrors&) = delete;
};

// ---- keys

bool is_p256(EVP_PKEY* key) {
    if (!EVP_PKEY_is_a(key, "EC")) return false;
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1) {
        return false;
    }
    std::string_view g(group, len);
    return g == "prime256v1" || g == "P-256";
}

ossl::PkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* bld) {
    ossl::ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
    ossl::PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        return nullptr;
    }
    return ossl::PkeyPtr(raw);
}

// A P-256 public key from its affine coordinates; null when the point is not on the curve.
ossl::PkeyPtr ec_public_key(std::string_view x, std::string_view y) {
    std::string point;
    point.reserve(1 + x.size() + y.size());
    point += '\x04';  // SEC 1 uncompressed point
    point += x;
    point += y;
    ossl::ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
            1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
        return nullptr;
    }
    return pkey_from_params("EC", bld.get());
}

ossl::PkeyPtr rsa_public_key(std::string_view n, std::string_view e) {
    ossl::BnPtr bn_n(BN_bin2bn(bytes(n), static_cast<int>(n.size()), nullptr));
    ossl::BnPtr bn_e(BN_bin2bn(bytes(e), static_cast<int>(e.size()), nullptr));
    ossl::ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bn_n || !bn_e || !bld ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
        return nullptr;
    }
    return pkey_from_params("RSA", bld.get());
}

// The big-endian coordinate `name` (qx or qy) of an EC public key, left-padded to 32 bytes. Read
// as numbers rather than as the encoded point, whose form (compressed or not) follows the key.
std::string p256_coordinate(EVP_PKEY* key, const char* name) {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
        throw std::runtime_error("cannot read EC public key: " + ossl::last_error());
    }
    ossl::BnPtr bn(raw);
    std::array<unsigned char, p256_field_size> out{};
    if (BN_bn2binpad(bn.get(), out.data(), static_cast<int>(out.size())) < 0) {
        throw std::runtime_error("EC public key coordinate does not fit P-256");
    }
    return std::string(bytes_view(out.data(), out.size()));
}

struct P256Point {
    std::string x;  // base64url
    std::string y;  // base64url
};

P256Point p256_public_point(const PrivateKey& key) {
    if (!key.get() || !is_p256(key.get())) {
        throw std::invalid_argument("JWT signing key must be EC P-256");
    }
    return {base64url_encode(p256_coordinate(key.get(), OSSL_PKEY_PARAM_EC_PUB_X)),
            base64url_encode(p256_coordinate(key.get(), OSSL_PKEY_PARAM_EC_PUB_Y))};
}

// ---- signatures

bool verify_sha256(EVP_PKEY* key, std::string_view message, std::string_view signature) {
    ossl::MdCtxPtr ctx(EVP_MD_CTX_new());
    return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
           EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(message),
                            message.size()) == 1;
}

// JWS carries ECDSA signatures as r||s (RFC 7518 section 3.4); OpenSSL wants DER.
std::optional<std::string> es256_raw_to_der(std::string_view raw) {
    if (raw.size() != 2 * p256_field_size) return std::nullopt;
    constexpr int half = static_cast<int>(p256_field_size);
    ossl::BnPtr r(BN_bin2bn(bytes(raw), half, nullptr));
    ossl::BnPtr s(BN_bin2bn(bytes(raw) + half, half, nullptr));
    ossl::EcdsaSigPtr sig(ECDSA_SIG_new());
    if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
        return std::nullopt;
    }
    // The signature owns r and s now.
    (void)r.release();
    (void)s.release();
    int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) return std::nullopt;
    std::string der(static_cast<size_t>(len), '\0');
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    if (i2d_ECDSA_SIG(sig.get(), &p) != len) return std::nullopt;
    return der;
}

std::string es256_der_to_raw(std::string_view der) {
    const unsigned char* p = bytes(der);
    ossl::EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig) throw std::runtime_error("ECDSA signature is not DER: " + ossl::last_error());
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    std::array<unsigned char, 2 * p256_field_size> raw{};
    constexpr int half = static_cast<int>(p256_field_size);
    if (BN_bn2binpad(r, raw.data(), half) < 0 || BN_bn2binpad(s, raw.data() + half, half) < 0) {
        throw std::runtime_error("ECDSA signature does not fit P-256");
    }
    return std::string(bytes_view(raw.data(), raw.size()));
}

std::string es256_sign(const PrivateKey& key, std::string_view message) {
    ossl::MdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, bytes(message), message.size()) != 1) {
        throw std::runtime_error("ES256 signing failed: " + ossl::last_error());
    }
    std::string der(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                       bytes(message), message.size()) != 1) {
        throw std::runtime_error("ES256 signing failed: " + ossl::last_error());
    }
    der.resize(len);
    return es256_der_to_raw(der);
}

// ---- JWKS

// One JWK: a usable key, a key Remora skips (other kty, other alg, no kid), or bad_jwks.
Result<std::optional<Jwks::Key>> parse_jwk(const json::value& value) {
    const json::object* jwk = value.if_object();
    if (!jwk) return make_reason(JwtErrc::bad_jwks);
    const json::string* kty = string_member(*jwk, "kty");
    if (!kty) return make_reason(JwtErrc::bad_jwks);  // RFC 7517 makes kty required

    std::string alg;
    if (view(*kty) == "EC") {
        alg = "ES256";
    } else if (view(*kty) == "RSA") {
        alg = "RS256";
    } else {
        return std::optional<Jwks::Key>{};
    }
    const json::string* kid = string_member(*jwk, "kid");
    if (!kid) return std::optional<Jwks::Key>{};  // tokens name their key, so it is unreachable
    if (const json::value* a = jwk->if_contains("alg")) {
        if (!a->is_string() || view(a->get_string()) != alg) return std::optional<Jwks::Key>{};
    }
    // An encryption key must not become a signature key just by sitting in the same set.
    if (const json::value* use = jwk->if_contains("use")) {
        if (!use->is_string() || view(use->get_string()) != "sig") {
            return std::optional<Jwks::Key>{};
        }
    }

    auto decoded = [&](std::string_view member) -> std::optional<std::string> {
        const json::string* s = string_member(*jwk, member);
        if (!s) return std::nullopt;
        auto bytes = base64url_decode(view(*s));
        if (!bytes || bytes->empty()) return std::nullopt;
        return std::move(*bytes);
    };

    ossl::PkeyPtr pkey;
    if (alg == "ES256") {
        const json::string* crv = string_member(*jwk, "crv");
        auto x = decoded("x");
        auto y = decoded("y");
        if (!crv || view(*crv) != "P-256" || !x || !y || x->size() != p256_field_size ||
            y->size() != p256_field_size) {
            return make_reason(JwtErrc::bad_jwks);
        }
        pkey = ec_public_key(*x, *y);
    } else {
        auto n = decoded("n");
        auto e = decoded("e");
        if (!n || !e) return make_reason(JwtErrc::bad_jwks);
        pkey = rsa_public_key(*n, *e);
    }
    if (!pkey) return make_reason(JwtErrc::bad_jwks);
    // A short RSA key is as good as no key: the same bar as for CSRs.
    if (check_key_strength(pkey.get())) return make_reason(JwtErrc::bad_jwks);
    Jwks::Key key{std::string(view(*kid)), std::move(alg),
                  std::shared_ptr<EVP_PKEY>(std::move(pkey))};
    return std::optional<Jwks::Key>(std::move(key));
}

// ---- claims

Result<ServiceAccount> parse_subject(const json::object& claims) {
    const json::string* sub = string_member(claims, "sub");
    if (!sub || !view(*sub).starts_with(service_account_prefix)) {
        return make_reason(JwtErrc::bad_subject);
    }
    std::string_view rest = view(*sub).substr(service_account_prefix.size());
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return make_reason(JwtErrc::bad_subject);
    std::string_view ns = rest.substr(0, colon);
    std::string_view name = rest.substr(colon + 1);
    if (ns.empty() || name.empty() || name.find(':') != std::string_view::npos) {
        return make_reason(JwtErrc::bad_subject);
    }
    return ServiceAccount{std::string(ns), std::string(name)};
}

bool audience_matches(const json::object& claims, std::string_view audience) {
    const json::value* aud = claims.if_contains("aud");
    if (!aud) return false;
    if (const json::string* s = aud->if_string()) return view(*s) == audience;
    const json::array* list = aud->if_array();
    if (!list) return false;
    bool found = false;
    for (const json::value& v : *list) {
        const json::string* s = v.if_string();
        if (!s) return false;  // a malformed claim is refused, not searched
        found = found || view(*s) == audience;
    }
    return found;
}

// The kubernetes.io claim is optional, but when present it must name the same account as sub:
// two claims that disagree mean the token was not minted by the API server as it is.
bool kubernetes_claims_agree(const json::object& claims, const ServiceAccount& sa) {
    const json::value* k8s_value = claims.if_contains("kubernetes.io");
    if (!k8s_value) return true;
    const json::object* k8s = k8s_value->if_object();
    if (!k8s) return false;
    if (const json::value* ns = k8s->if_contains("namespace")) {
        if (!ns->is_string() || view(ns->get_string()) != sa.ns) return false;
    }
    if (const json::value* account_value = k8s->if_contains("serviceaccount")) {
        const json::object* account = account_value->if_object();
        if (!account) return false;
        if (const json::value* name = account->if_contains("name")) {
            if (!name->is_string() || view(name->get_string()) != sa.name) return false;
        }
    }
    return true;
}

error_code check_times(const json::object& claims, const JwtPolicy& policy, SystemTime now) {
    using seconds_d = std::chrono::duration<double>;
    const double now_s = seconds_d(now.time_since_epoch()).count();
    const double leeway = seconds_d(policy.leeway).count();
    std::optional<double> exp = number_member(claims, "exp");
    if (!exp) return make_reason(JwtErrc::missing_exp);
    if (now_s >= *exp + leeway) return make_reason(JwtErrc::expired);
    if (claims.if_contains("nbf")) {
        // A present nbf that is not a number cannot be honoured, so it cannot be ignored.
        std::optional<double> nbf = number_member(claims, "nbf");
        if (!nbf || now_s < *nbf - leeway) return make_reason(JwtErrc::not_yet_valid);
    }
    return {};
}

// The token's alg when it is one Remora accepts; the string lives in `header`.
Result<std::string_view> accepted_alg(const json::object& header) {
    const json::string* a = string_member(header, "alg");
    if (!a) return make_reason(JwtErrc::alg_unsupported);
    std::string_view alg = view(*a);
    if (ascii_iequals(alg, "none")) return make_reason(JwtErrc::alg_none);
    if (alg.size() >= 2 && ascii_iequals(alg.substr(0, 2), "HS")) {
        return make_reason(JwtErrc::alg_hmac);
    }
    if (alg != "ES256" && alg != "RS256") return make_reason(JwtErrc::alg_unsupported);
    return alg;
}

bool key_fits(const Jwks::Key& key, std::string_view alg) {
    if (key.alg != alg || !key.key) return false;
    return alg == "ES256" ? is_p256(key.key.get()) : EVP_PKEY_is_a(key.key.get(), "RSA") == 1;
}

}  // namespace

// ---- base64url

std::string base64url_encode(std::string_view data) {
    std::string out;
    out.reserve((data.size() * 4 + 2) / 3);
    size_t i = 0;
    auto at = [&](size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(data[k])); };
    for (; i + 3 <= data.size(); i += 3) {
        unsigned v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
        out += base64url_alphabet[(v >> 18) & 63];
        out += base64url_alphabet[(v >> 12) & 63];
        out += base64url_alphabet[(v >> 6) & 63];
        out += base64url_alphabet[v & 63];
    }
    if (data.size() - i == 1) {
        unsigned v = at(i) << 16;
        out += base64url_alphabet[(v >> 18) & 63];
        out += base64url_alphabet[(v >> 12) & 63];
    } else if (data.size() - i == 2) {
        unsigned v = at(i) << 16 | at(i + 1) << 8;
        out += base64url_alphabet[(v >> 18) & 63];
        out += base64url_alphabet[(v >> 12) & 63];
        out += base64url_alphabet[(v >> 6) & 63];
    }
    return out;
}

Result<std::string> base64url_decode(std::string_view text) {
    // A length of 1 mod 4 cannot come from whole bytes.
    if (text.size() % 4 == 1) return make_reason(JwtErrc::bad_base64);
    std::string out;
    out.reserve(text.size() * 3 / 4);
    unsigned acc = 0;
    int bits = 0;
    for (char c : text) {
        unsigned v;
        if (c >= 'A' && c <= 'Z') {
            v = static_cast<unsigned>(c - 'A');
        } else if (c >= 'a' && c <= 'z') {
            v = static_cast<unsigned>(c - 'a' + 26);
        } else if (c >= '0' && c <= '9') {
            v = static_cast<unsigned>(c - '0' + 52);
        } else if (c == '-') {
            v = 62;
        } else if (c == '_') {
            v = 63;
        } else {
            return make_reason(JwtErrc::bad_base64);  // '=', '+', '/', whitespace, anything else
        }
        acc = (acc << 6 | v) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xffu);
        }
    }
    // Leftover bits must be zero: otherwise several texts decode to the same bytes, and one
    // signed token could be respelt as many distinct strings.
    if ((acc & ((1u << bits) - 1)) != 0) return make_reason(JwtErrc::bad_base64);
    return out;
}

// ---- Jwks

Result<Jwks> Jwks::parse(std::string_view text) {
    ExpectedErrors expected;
    std::optional<json::object> doc = parse_object(text);
    if (!doc) return make_reason(JwtErrc::bad_jwks);
    const json::value* keys_value = doc->if_contains("keys");
    const json::array* keys = keys_value ? keys_value->if_array() : nullptr;
    if (!keys) return make_reason(JwtErrc::bad_jwks);
    Jwks jwks;
    for (const json::value& jwk : *keys) {
        auto key = parse_jwk(jwk);
        if (!key) return key.error();
        if (*key) jwks.add(std::move(**key));
    }
    return jwks;
}

Jwks Jwks::load_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    std::string text;
    std::array<char, 4096> buf;
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
        text.append(buf.data(), static_cast<size_t>(in.gcount()));
        if (text.size() > max_jwks_file_size) {
            throw std::runtime_error(path + ": larger than " + std::to_string(max_jwks_file_size) +
                                     " bytes");
        }
    }
    if (in.bad()) throw std::runtime_error(path + ": read error");
    Result<Jwks> jwks = parse(text);
    if (!jwks) throw std::runtime_error(path + ": " + jwks.error().message());
    return std::move(*jwks);
}

void Jwks::merge(const Jwks& other) {
    // kids are unique in a set: a second key under a known kid could never be tried, so the first
    // one stays (the control plane's own key is added first).
    for (const Key& key : other.keys_) {
        if (!find(key.kid)) keys_.push_back(key);
    }
}

const Jwks::Key* Jwks::find(std::string_view kid) const {
    for (const Key& key : keys_) {
        if (key.kid == kid) return &key;
    }
    return nullptr;
}

// ---- verification

Result<ServiceAccount> verify_service_account_token(std::string_view token, const Jwks& jwks,
                                                    const JwtPolicy& policy, SystemTime now) {
    ExpectedErrors expected;
    if (token.size() > max_token_size) return make_reason(JwtErrc::malformed);
    size_t dot1 = token.find('.');
    size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
        return make_reason(JwtErrc::malformed);
    }
    const std::string_view signing_input = token.substr(0, dot2);

    auto header_text = base64url_decode(token.substr(0, dot1));
    auto payload_text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
    auto signature = base64url_decode(token.substr(dot2 + 1));
    if (!header_text || !payload_text || !signature) return make_reason(JwtErrc::bad_base64);

    std::optional<json::object> header = parse_object(*header_text);
    std::optional<json::object> claims = parse_object(*payload_text);
    if (!header || !claims) return make_reason(JwtErrc::bad_json);

    Result<std::string_view> accepted = accepted_alg(*header);
    if (!accepted) return accepted.error();
    const std::string_view alg = *accepted;
    const json::string* kid = string_member(*header, "kid");
    if (!kid) return make_reason(JwtErrc::missing_kid);
    const Jwks::Key* key = jwks.find(view(*kid));
    if (!key) return make_reason(JwtErrc::unknown_kid);
    if (!key_fits(*key, alg)) return make_reason(JwtErrc::key_mismatch);

    if (alg == "ES256") {
        std::optional<std::string> der = es256_raw_to_der(*signature);
        if (!der || !verify_sha256(key->key.get(), signing_input, *der)) {
            return make_reason(JwtErrc::bad_signature);
        }
    } else if (!verify_sha256(key->key.get(), signing_input, *signature)) {
        return make_reason(JwtErrc::bad_signature);
    }

    // Claims are read only from a payload whose signature verified.
    if (error_code ec = check_times(*claims, policy, now)) return ec;
    if (!audience_matches(*claims, policy.audience)) return make_reason(JwtErrc::wrong_audience);
    Result<ServiceAccount> sa = parse_subject(*claims);
    if (!sa) return sa;
    if (!kubernetes_claims_agree(*claims, *sa)) return make_reason(JwtErrc::claims_mismatch);
    return sa;
}

// ---- signing

std::string key_id(const PrivateKey& key) {
    P256Point p = p256_public_point(key);
    // RFC 7638: the required members only, in lexicographic order, without whitespace. x and y
    // are base64url, so they need no JSON escaping and plain concatenation is exact.
    std::string canonical =
        R"({"crv":"P-256","kty":"EC","x":")" + p.x + R"(","y":")" + p.y + R"("})";
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int len = 0;
    if (EVP_Digest(canonical.data(), canonical.size(), digest.data(), &len, EVP_sha256(),
                   nullptr) != 1) {
        throw std::runtime_error("SHA-256 failed: " + ossl::last_error());
    }
    return base64url_encode(bytes_view(digest.data(), len));
}

std::string jwks_json(const PrivateKey& key) {
    P256Point p = p256_public_point(key);
    json::object jwk;
    jwk["kty"] = "EC";
    jwk["crv"] = "P-256";
    jwk["x"] = p.x;
    jwk["y"] = p.y;
    jwk["kid"] = key_id(key);
    jwk["alg"] = "ES256";
    jwk["use"] = "sig";
    json::object doc;
    doc["keys"] = json::array{std::move(jwk)};
    return json::serialize(doc);
}

std::string sign_service_account_token(const PrivateKey& key, const ServiceAccount& sa,
                                       std::string_view audience, std::string_view issuer,
                                       SystemTime now, std::chrono::seconds ttl) {
    // A token the verifier would refuse for its subject is a caller bug; say so now rather than
    // hand out something that fails later on another machine.
    if (sa.ns.empty() || sa.name.empty() || sa.ns.find(':') != std::string::npos ||
        sa.name.find(':') != std::string::npos) {
        throw std::invalid_argument("service account namespace and name must be set, without ':'");
    }
    json::object header;
    header["alg"] = "ES256";
    header["kid"] = key_id(key);
    header["typ"] = "JWT";

    const std::int64_t iat =
        std::chrono::floor<std::chrono::seconds>(now).time_since_epoch().count();
    json::object account;
    account["name"] = sa.name;
    json::object k8s;
    k8s["namespace"] = sa.ns;
    k8s["serviceaccount"] = std::move(account);
    json::object claims;
    claims["iss"] = json::string_view(issuer.data(), issuer.size());
    claims["sub"] = std::string(service_account_prefix) + sa.ns + ":" + sa.name;
    claims["aud"] = json::array{json::string_view(audience.data(), audience.size())};
    claims["iat"] = iat;
    claims["nbf"] = iat;
    claims["exp"] = iat + ttl.count();
    claims["kubernetes.io"] = std::move(k8s);

    std::string token =
        base64url_encode(json::serialize(header)) + "." + base64url_encode(json::serialize(claims));
    std::string signature = es256_sign(key, token);
    token += ".";
    token += base64url_encode(signature);
    return token;
}

}  // namespace remora::certs
