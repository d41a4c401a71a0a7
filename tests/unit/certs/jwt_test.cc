// Tests for bootstrap-token handling: base64url, JWKS parsing, ES256/RS256 verification, each
// refusal reason, and the tokens remoractl signs.
#include "certs/jwt.h"

#include <doctest/doctest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>

#include <boost/json.hpp>

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "tests/unit/certs/test_pki.h"

namespace remora::certs {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// RFC 7517 appendix A.2's EC private key, whose RFC 7638 thumbprint is known.
constexpr std::string_view rfc7517_key_pem = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg870MB6gfuTJ4HtUn
UvYMyJpr5eUZNP4Bk43bVdj3eAGhRANCAAQwoEJM0hwpRIOKLXXJKzfnbqINnwCJ
OjtO7oo8Cq/sPuBLZekkVtmIi1Kzeb371R7oae8fD8ZbZllpW2zOCBcj
-----END PRIVATE KEY-----
)";
constexpr std::string_view rfc7517_thumbprint = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s";

// "jwt.expired", "key.malformed_pem" or "ok ns/name": doctest prints it when a check fails.
std::string describe(const error_code& ec) {
    return std::string(ec.category().name()) + "." + std::string(reason_token(ec));
}
std::string refused(JwtErrc e) {
    return describe(make_reason(e));
}
std::string outcome(const Result<ServiceAccount>& r) {
    return r ? "ok " + r->ns + "/" + r->name : describe(r.error());
}
std::string outcome(const Result<Jwks>& r) {
    return r ? "ok " + std::to_string(r->size()) + " keys" : describe(r.error());
}

std::string b64(std::string_view s) {
    return base64url_encode(s);
}
std::string b64(const json::object& obj) {
    return base64url_encode(json::serialize(obj));
}

std::string sha256_sign(EVP_PKEY* key, std::string_view message) {
    ossl::MdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 0;
    auto* in = reinterpret_cast<const unsigned char*>(message.data());
    REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1);
    REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, in, message.size()) == 1);
    std::string sig(len, '\0');
    REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                           message.size()) == 1);
    sig.resize(len);
    return sig;
}

// An ES256 signature in JWS form (r||s), written independently of jwt.cc's own conversion.
std::string es256_signature(EVP_PKEY* key, std::string_view message) {
    std::string der = sha256_sign(key, message);
    auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ossl::EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    REQUIRE(sig);
    unsigned char raw[64];
    REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), raw, 32) == 32);
    REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), raw + 32, 32) == 32);
    return std::string(reinterpret_cast<const char*>(raw), sizeof raw);
}

std::string es256_token(const PrivateKey& key, const json::object& header,
                        const json::object& claims) {
    std::string input = b64(header) + "." + b64(claims);
    return input + "." + b64(es256_signature(key.get(), input));
}

std::string rs256_token(EVP_PKEY* key, const json::object& header, const json::object& claims) {
    std::string input = b64(header) + "." + b64(claims);
    return input + "." + b64(sha256_sign(key, input));
}

std::string bn_param_b64(EVP_PKEY* key, const char* name) {
    BIGNUM* raw = nullptr;
    REQUIRE(EVP_PKEY_get_bn_param(key, name, &raw) == 1);
    ossl::BnPtr bn(raw);
    std::string bytes(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
    BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
    return b64(bytes);
}

// A JWKS entry for an RSA public key, as a Kubernetes API server would publish it.
json::object rsa_jwk(EVP_PKEY* key, std::string_view kid) {
    return {{"kty", "RSA"},
            {"kid", kid},
            {"alg", "RS256"},
            {"use", "sig"},
            {"n", bn_param_b64(key, OSSL_PKEY_PARAM_RSA_N)},
            {"e", bn_param_b64(key, OSSL_PKEY_PARAM_RSA_E)}};
}

// RSA key generation is slow, so the tests that only need some RSA key share this one.
EVP_PKEY* shared_rsa_key() {
    static const ossl::PkeyPtr key(
        EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
    REQUIRE(key);
    return key.get();
}

// The parts of a compact JWS, decoded and parsed.
json::object decoded_part(std::string_view token, int index) {
    size_t begin = 0;
    for (int i = 0; i < index; ++i) {
        begin = token.find('.', begin) + 1;
    }
    std::string_view part = token.substr(begin, token.find('.', begin) - begin);
    Result<std::string> text = base64url_decode(part);
    REQUIRE(text.has_value());
    return json::parse(*text).as_object();
}

// A well-formed ES256 token for system:serviceaccount:payments:api, and the keys that trust it;
// each test bends one thing.
struct TokenFixture {
    PrivateKey key = PrivateKey::generate_p256();
    std::string kid = key_id(key);
    Jwks jwks = Jwks::parse(jwks_json(key)).value();
    SystemTime now = testing::fixed_now();
    std::int64_t now_s = std::chrono::system_clock::to_time_t(now);
    JwtPolicy policy;

    json::object header() const { return {{"alg", "ES256"}, {"kid", kid}, {"typ", "JWT"}}; }
    json::object claims() const {
        return {
            {"iss", "https://kubernetes.default.svc"},
            {"sub", "system:serviceaccount:payments:api"},
            {"aud", json::array{"remora-ca"}},
            {"iat", now_s - 10},
            {"nbf", now_s - 10},
            {"exp", now_s + 600},
            {"kubernetes.io", {{"namespace", "payments"}, {"serviceaccount", {{"name", "api"}}}}}};
    }
    std::string token(const json::object& h, const json::object& c) const {
        return es256_token(key, h, c);
    }
    std::string with_claims(const json::object& c) const { return token(header(), c); }
    std::string with_header(const json::object& h) const { return token(h, claims()); }
    std::string verify(std::string_view t) const {
        return outcome(verify_service_account_token(t, jwks, policy, now));
    }
};

constexpr std::string_view accepted = "ok payments/api";

// ---- base64url

TEST_CASE("base64url encodes RFC 4648 vectors without padding and in the URL-safe alphabet") {
    CHECK(base64url_encode("") == "");
    CHECK(base64url_encode("f") == "Zg");
    CHECK(base64url_encode("fo") == "Zm8");
    CHECK(base64url_encode("foo") == "Zm9v");
    CHECK(base64url_encode("foobar") == "Zm9vYmFy");
    CHECK(base64url_encode("\xfb\xff\xbf") == "-_-_");
}

TEST_CASE("base64url round-trips every byte value at every length remainder") {
    std::string all;
    for (int i = 0; i < 256; ++i)
        all += static_cast<char>(i);
    for (size_t len = 0; len <= 10; ++len) {
        for (size_t start = 0; start + len <= all.size(); start += 37) {
            std::string data = all.substr(start, len);
            Result<std::string> back = base64url_decode(base64url_encode(data));
            REQUIRE(back.has_value());
            CHECK(*back == data);
        }
    }
    Result<std::string> back = base64url_decode(base64url_encode(all));
    REQUIRE(back.has_value());
    CHECK(*back == all);
}

TEST_CASE("base64url decoding refuses padding, other alphabets and impossible lengths") {
    for (std::string_view bad :
         {"Zg==", "Zm8=", "Zm9v+w", "Zm9v/w", "Zm 9v", "Zm9v\n", "Z", "Zm9vY", "Zh", "Zm9"}) {
        CAPTURE(bad);
        Result<std::string> r = base64url_decode(bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(describe(r.error()) == refused(JwtErrc::bad_base64));
    }
    // "Zh" and "Zm9" carry non-zero leftover bits: "Zg" and "Zm8" are the only spellings.
    CHECK(base64url_decode("Zm8").value() == "fo");
}

// ---- key ids and JWKS output

TEST_CASE("key_id is the RFC 7638 thumbprint") {
    Result<PrivateKey> key = PrivateKey::from_pem(rfc7517_key_pem);
    REQUIRE(key.has_value());
    CHECK(key_id(*key) == rfc7517_thumbprint);
}

TEST_CASE("key_id does not depend on the key's point encoding") {
    PrivateKey key = PrivateKey::generate_p256();
    std::string before = key_id(key);
    REQUIRE(EVP_PKEY_set_utf8_string_param(key.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                           OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_COMPRESSED) == 1);
    CHECK(key_id(key) == before);
}

TEST_CASE("key_id refuses keys other than EC P-256") {
    PrivateKey p384(ossl::PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")));
    CHECK_THROWS_AS(key_id(p384), std::invalid_argument);
}

TEST_CASE("jwks_json publishes the public key under its thumbprint") {
    Result<PrivateKey> key = PrivateKey::from_pem(rfc7517_key_pem);
    REQUIRE(key.has_value());
    json::object doc = json::parse(jwks_json(*key)).as_object();
    json::array& keys = doc.at("keys").as_array();
    REQUIRE(keys.size() == 1);
    json::object& jwk = keys[0].as_object();
    CHECK(jwk.at("kty") == "EC");
    CHECK(jwk.at("crv") == "P-256");
    CHECK(jwk.at("x") == "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4");
    CHECK(jwk.at("y") == "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM");
    CHECK(jwk.at("kid").as_string() == rfc7517_thumbprint);
    CHECK(jwk.at("alg") == "ES256");
    CHECK(jwk.at("use") == "sig");

    Result<Jwks> jwks = Jwks::parse(jwks_json(*key));
    REQUIRE(jwks.has_value());
    const Jwks::Key* found = jwks->find(rfc7517_thumbprint);
    REQUIRE(found);
    CHECK(found->alg == "ES256");
    CHECK(EVP_PKEY_eq(found->key.get(), key->get()) == 1);
}

// ---- signing and verifying

TEST_CASE("a signed service-account token verifies to its account") {
    TokenFixture f;
    std::string token = sign_service_account_token(f.key, {"payments", "api"}, "remora-ca",
                                                   "remoractl", f.now, 3600s);
    CHECK(f.verify(token) == accepted);

    json::object header = decoded_part(token, 0);
    CHECK(header == json::object{{"alg", "ES256"}, {"kid", f.kid}, {"typ", "JWT"}});
    json::object claims = decoded_part(token, 1);
    CHECK(claims.at("iss") == "remoractl");
    CHECK(claims.at("sub") == "system:serviceaccount:payments:api");
    CHECK(claims.at("aud") == json::array{"remora-ca"});
    CHECK(claims.at("iat") == f.now_s);
    CHECK(claims.at("nbf") == f.now_s);
    CHECK(claims.at("exp") == f.now_s + 3600);
    CHECK(claims.at("kubernetes.io") ==
          json::object{{"namespace", "payments"}, {"serviceaccount", {{"name", "api"}}}});
}

TEST_CASE("a signed token stops verifying when its ttl runs out") {
    TokenFixture f;
    f.policy.leeway = 0s;
    std::string token = sign_service_account_token(f.key, {"payments", "api"}, "remora-ca",
                                                   "remoractl", f.now, 600s);
    CHECK(outcome(verify_service_account_token(token, f.jwks, f.policy, f.now + 599s)) == accepted);
    CHECK(outcome(verify_service_account_token(token, f.jwks, f.policy, f.now + 600s)) ==
          refused(JwtErrc::expired));
}

TEST_CASE("signing refuses an account the verifier could never accept") {
    TokenFixture f;
    CHECK_THROWS_AS(
        sign_service_account_token(f.key, {"", "api"}, "remora-ca", "remoractl", f.now, 60s),
        std::invalid_argument);
    CHECK_THROWS_AS(
        sign_service_account_token(f.key, {"a:b", "api"}, "remora-ca", "remoractl", f.now, 60s),
        std::invalid_argument);
}

TEST_CASE("the hand-built fixture token is accepted, so each refusal below is due to its bend") {
    TokenFixture f;
    CHECK(f.verify(f.with_claims(f.claims())) == accepted);
}

TEST_CASE("tokens that are not three parts are malformed") {
    TokenFixture f;
    std::string good = f.with_claims(f.claims());
    std::string two_parts = good.substr(0, good.rfind('.'));
    CHECK(f.verify(two_parts) == refused(JwtErrc::malformed));
    CHECK(f.verify(good + ".") == refused(JwtErrc::malformed));
    CHECK(f.verify(good + ".AAAA") == refused(JwtErrc::malformed));
    CHECK(f.verify("") == refused(JwtErrc::malformed));
    CHECK(f.verify("abc") == refused(JwtErrc::malformed));
}

TEST_CASE("tokens larger than 16 KiB are malformed before anything is decoded") {
    TokenFixture f;
    json::object claims = f.claims();
    claims["padding"] = std::string(16 * 1024, 'x');
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::malformed));
}

TEST_CASE("a part that is not base64url is bad_base64") {
    TokenFixture f;
    std::string good = f.with_claims(f.claims());
    size_t dot1 = good.find('.');
    size_t dot2 = good.rfind('.');
    SUBCASE("padding in the signature") {
        CHECK(f.verify(good + "=") == refused(JwtErrc::bad_base64));
    }
    SUBCASE("standard alphabet in the payload") {
        std::string t = good;
        t[dot1 + 1] = '+';
        CHECK(f.verify(t) == refused(JwtErrc::bad_base64));
    }
    SUBCASE("slash in the header") {
        std::string t = good;
        t[0] = '/';
        CHECK(f.verify(t) == refused(JwtErrc::bad_base64));
    }
    SUBCASE("impossible length in the signature") {
        std::string t = good.substr(0, dot2 + 1) + "A";
        CHECK(f.verify(t) == refused(JwtErrc::bad_base64));
    }
}

TEST_CASE("a header or payload that is not a JSON object is bad_json") {
    TokenFixture f;
    std::string payload = b64(f.claims());
    std::string header = b64(f.header());
    CHECK(f.verify(b64("not json") + "." + payload + ".AAAA") == refused(JwtErrc::bad_json));
    CHECK(f.verify(b64(R"(["ES256"])") + "." + payload + ".AAAA") == refused(JwtErrc::bad_json));
    CHECK(f.verify(b64(R"({"alg":"ES256"} x)") + "." + payload + ".AAAA") ==
          refused(JwtErrc::bad_json));
    CHECK(f.verify("." + payload + ".AAAA") == refused(JwtErrc::bad_json));
    CHECK(f.verify(header + "." + b64(R"("system:serviceaccount:a:b")") + ".AAAA") ==
          refused(JwtErrc::bad_json));
    CHECK(f.verify(header + "." + b64("\xff\xfe{}") + ".AAAA") == refused(JwtErrc::bad_json));
}

TEST_CASE("alg none is refused in any spelling, with or without a signature") {
    TokenFixture f;
    for (std::string_view alg : {"none", "None", "NONE", "nOnE"}) {
        CAPTURE(alg);
        json::object h{{"alg", alg}, {"kid", f.kid}};
        CHECK(f.verify(b64(h) + "." + b64(f.claims()) + ".") == refused(JwtErrc::alg_none));
        CHECK(f.verify(f.with_header(h)) == refused(JwtErrc::alg_none));
    }
}

TEST_CASE("HMAC algorithms are refused, even keyed with the public key") {
    TokenFixture f;
    for (std::string_view alg : {"HS256", "HS384", "HS512", "hs256"}) {
        CAPTURE(alg);
        json::object h{{"alg", alg}, {"kid", f.kid}, {"typ", "JWT"}};
        std::string input = b64(h) + "." + b64(f.claims());
        // The classic confusion attack: an HMAC keyed with the published JWKS.
        std::string mac(EVP_MAX_MD_SIZE, '\0');
        size_t mac_len = 0;
        std::string secret = jwks_json(f.key);
        REQUIRE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                          reinterpret_cast<unsigned char*>(mac.data()), mac.size(),
                          &mac_len) != nullptr);
        mac.resize(mac_len);
        CHECK(f.verify(input + "." + b64(mac)) == refused(JwtErrc::alg_hmac));
    }
}

TEST_CASE("algorithms other than ES256 and RS256 are unsupported") {
    TokenFixture f;
    for (std::string_view alg : {"ES384", "ES512", "PS256", "RS512", "EdDSA", "es256", ""}) {
        CAPTURE(alg);
        CHECK(f.verify(f.with_header({{"alg", alg}, {"kid", f.kid}})) ==
              refused(JwtErrc::alg_unsupported));
    }
    CHECK(f.verify(f.with_header({{"kid", f.kid}})) == refused(JwtErrc::alg_unsupported));
    CHECK(f.verify(f.with_header({{"alg", 256}, {"kid", f.kid}})) ==
          refused(JwtErrc::alg_unsupported));
}

TEST_CASE("a header without a string kid is missing_kid") {
    TokenFixture f;
    CHECK(f.verify(f.with_header({{"alg", "ES256"}})) == refused(JwtErrc::missing_kid));
    CHECK(f.verify(f.with_header({{"alg", "ES256"}, {"kid", 7}})) == refused(JwtErrc::missing_kid));
}

TEST_CASE("a kid the JWKS does not hold is unknown_kid") {
    TokenFixture f;
    CHECK(f.verify(f.with_header({{"alg", "ES256"}, {"kid", "someone-else"}})) ==
          refused(JwtErrc::unknown_kid));
    CHECK(f.verify(f.with_header({{"alg", "ES256"}, {"kid", ""}})) ==
          refused(JwtErrc::unknown_kid));
}

TEST_CASE("a key that does not fit the token's alg is key_mismatch") {
    TokenFixture f;
    SUBCASE("RS256 token naming an EC key") {
        CHECK(f.verify(f.with_header({{"alg", "RS256"}, {"kid", f.kid}})) ==
              refused(JwtErrc::key_mismatch));
    }
    SUBCASE("a JWKS entry whose alg differs from the key inside it") {
        Jwks jwks;
        jwks.add({f.kid, "RS256", f.jwks.find(f.kid)->key});
        std::string token = f.with_claims(f.claims());
        CHECK(outcome(verify_service_account_token(token, jwks, f.policy, f.now)) ==
              refused(JwtErrc::key_mismatch));
    }
    SUBCASE("an ES256 entry holding a P-384 key") {
        Jwks jwks;
        std::shared_ptr<EVP_PKEY> p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"),
                                       EVP_PKEY_free);
        jwks.add({f.kid, "ES256", p384});
        std::string token = f.with_claims(f.claims());
        CHECK(outcome(verify_service_account_token(token, jwks, f.policy, f.now)) ==
              refused(JwtErrc::key_mismatch));
    }
    SUBCASE("an entry without a key") {
        Jwks jwks;
        jwks.add({f.kid, "ES256", nullptr});
        std::string token = f.with_claims(f.claims());
        CHECK(outcome(verify_service_account_token(token, jwks, f.policy, f.now)) ==
              refused(JwtErrc::key_mismatch));
    }
}

TEST_CASE("a signature that does not verify is bad_signature") {
    TokenFixture f;
    std::string good = f.with_claims(f.claims());
    std::string signature = good.substr(good.rfind('.') + 1);
    std::string raw = base64url_decode(signature).value();

    SUBCASE("payload changed after signing") {
        json::object claims = f.claims();
        claims["sub"] = "system:serviceaccount:kube-system:admin";
        claims["kubernetes.io"] =
            json::object{{"namespace", "kube-system"}, {"serviceaccount", {{"name", "admin"}}}};
        CHECK(f.verify(b64(f.header()) + "." + b64(claims) + "." + signature) ==
              refused(JwtErrc::bad_signature));
    }
    SUBCASE("signed by another key with the same kid") {
        PrivateKey other = PrivateKey::generate_p256();
        CHECK(f.verify(es256_token(other, f.header(), f.claims())) ==
              refused(JwtErrc::bad_signature));
    }
    SUBCASE("r and s swapped") {
        std::string swapped = raw.substr(32) + raw.substr(0, 32);
        std::string t = good.substr(0, good.rfind('.') + 1) + b64(swapped);
        CHECK(f.verify(t) == refused(JwtErrc::bad_signature));
    }
    SUBCASE("DER instead of r||s") {
        std::string input = good.substr(0, good.rfind('.'));
        CHECK(f.verify(input + "." + b64(sha256_sign(f.key.get(), input))) ==
              refused(JwtErrc::bad_signature));
    }
    SUBCASE("not 64 bytes") {
        std::string input = good.substr(0, good.rfind('.') + 1);
        CHECK(f.verify(input) == refused(JwtErrc::bad_signature));
        CHECK(f.verify(input + b64(raw.substr(0, 63))) == refused(JwtErrc::bad_signature));
        CHECK(f.verify(input + b64(raw + '\0')) == refused(JwtErrc::bad_signature));
        CHECK(f.verify(input + b64(std::string(1, '\0') + raw)) == refused(JwtErrc::bad_signature));
    }
    SUBCASE("all zeros") {
        std::string input = good.substr(0, good.rfind('.') + 1);
        CHECK(f.verify(input + b64(std::string(64, '\0'))) == refused(JwtErrc::bad_signature));
    }
}

TEST_CASE("a token without a numeric exp is missing_exp") {
    TokenFixture f;
    json::object claims = f.claims();
    claims.erase("exp");
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::missing_exp));
    claims["exp"] = std::to_string(f.now_s + 600);
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::missing_exp));
    claims["exp"] = true;
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::missing_exp));
}

TEST_CASE("an expired token is refused, with leeway for clock skew") {
    TokenFixture f;
    json::object claims = f.claims();
    claims["exp"] = f.now_s - 30;
    std::string token = f.with_claims(claims);

    f.policy.leeway = 60s;
    CHECK(f.verify(token) == accepted);
    f.policy.leeway = 0s;
    CHECK(f.verify(token) == refused(JwtErrc::expired));

    claims["exp"] = f.now_s;  // exp is the first instant the token is invalid
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::expired));
    claims["exp"] = f.now_s + 1;
    CHECK(f.verify(f.with_claims(claims)) == accepted);

    f.policy.leeway = 60s;
    claims["exp"] = f.now_s - 60;
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::expired));
}

TEST_CASE("exp values of any JSON number type are compared without overflow") {
    TokenFixture f;
    json::object claims = f.claims();
    claims["exp"] = static_cast<double>(f.now_s) + 0.5;
    f.policy.leeway = 0s;
    CHECK(f.verify(f.with_claims(claims)) == accepted);
    claims["exp"] = std::numeric_limits<std::uint64_t>::max();
    CHECK(f.verify(f.with_claims(claims)) == accepted);
    claims["exp"] = std::numeric_limits<std::int64_t>::min();
    f.policy.leeway = 60s;
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::expired));
}

TEST_CASE("a token before its nbf is not_yet_valid, with leeway for clock skew") {
    TokenFixture f;
    json::object claims = f.claims();
    claims["nbf"] = f.now_s + 120;
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::not_yet_valid));
    claims["nbf"] = f.now_s + 30;
    CHECK(f.verify(f.with_claims(claims)) == accepted);
    f.policy.leeway = 0s;
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::not_yet_valid));
    claims["nbf"] = "soon";
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::not_yet_valid));
    claims.erase("nbf");
    CHECK(f.verify(f.with_claims(claims)) == accepted);
}

TEST_CASE("the audience must include the policy's audience") {
    TokenFixture f;
    json::object claims = f.claims();
    SUBCASE("another single audience") {
        claims["aud"] = "https://kubernetes.default.svc";
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::wrong_audience));
    }
    SUBCASE("an array without it") {
        claims["aud"] = json::array{"vault", "remora-ca-2"};
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::wrong_audience));
    }
    SUBCASE("no aud") {
        claims.erase("aud");
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::wrong_audience));
    }
    SUBCASE("an array with a non-string member") {
        claims["aud"] = json::array{"remora-ca", 1};
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::wrong_audience));
    }
    SUBCASE("an array containing it among others") {
        claims["aud"] = json::array{"https://kubernetes.default.svc", "remora-ca"};
        CHECK(f.verify(f.with_claims(claims)) == accepted);
    }
    SUBCASE("a plain string equal to it") {
        claims["aud"] = "remora-ca";
        CHECK(f.verify(f.with_claims(claims)) == accepted);
    }
    SUBCASE("a configured audience") {
        f.policy.audience = "mesh";
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::wrong_audience));
        claims["aud"] = json::array{"mesh"};
        CHECK(f.verify(f.with_claims(claims)) == accepted);
    }
}

TEST_CASE("the subject must be system:serviceaccount:<namespace>:<name>") {
    TokenFixture f;
    json::object claims = f.claims();
    claims.erase("kubernetes.io");
    for (std::string_view sub :
         {"system:serviceaccount:payments", "system:serviceaccount::api",
          "system:serviceaccount:payments:", "system:serviceaccount:payments:api:extra",
          "system:serviceaccount:", "system:node:worker-1", "user:alice",
          "System:ServiceAccount:payments:api", " system:serviceaccount:payments:api"}) {
        CAPTURE(sub);
        claims["sub"] = sub;
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::bad_subject));
    }
    claims["sub"] = 42;
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::bad_subject));
    claims.erase("sub");
    CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::bad_subject));
    claims["sub"] = "system:serviceaccount:kube-system:default";
    CHECK(f.verify(f.with_claims(claims)) == "ok kube-system/default");
}

TEST_CASE("kubernetes.io claims that disagree with the subject are claims_mismatch") {
    TokenFixture f;
    json::object claims = f.claims();
    SUBCASE("other namespace") {
        claims["kubernetes.io"] =
            json::object{{"namespace", "kube-system"}, {"serviceaccount", {{"name", "api"}}}};
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::claims_mismatch));
    }
    SUBCASE("other service account") {
        claims["kubernetes.io"] =
            json::object{{"namespace", "payments"}, {"serviceaccount", {{"name", "admin"}}}};
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::claims_mismatch));
    }
    SUBCASE("not an object") {
        claims["kubernetes.io"] = "payments/api";
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::claims_mismatch));
    }
    SUBCASE("serviceaccount not an object") {
        claims["kubernetes.io"] =
            json::object{{"namespace", "payments"}, {"serviceaccount", "api"}};
        CHECK(f.verify(f.with_claims(claims)) == refused(JwtErrc::claims_mismatch));
    }
    SUBCASE("partial claims that agree are enough") {
        claims["kubernetes.io"] = json::object{{"namespace", "payments"}};
        CHECK(f.verify(f.with_claims(claims)) == accepted);
        claims["kubernetes.io"] = json::object{{"serviceaccount", {{"name", "api"}}}};
        CHECK(f.verify(f.with_claims(claims)) == accepted);
    }
    SUBCASE("no kubernetes.io claim at all") {
        claims.erase("kubernetes.io");
        CHECK(f.verify(f.with_claims(claims)) == accepted);
    }
}

TEST_CASE("the signature is checked before any claim is believed") {
    TokenFixture f;
    json::object claims = f.claims();
    claims["exp"] = f.now_s - 3600;
    std::string token = f.with_claims(claims);
    std::string forged = token.substr(0, token.rfind('.') + 1) + b64(std::string(64, '\x01'));
    CHECK(f.verify(forged) == refused(JwtErrc::bad_signature));
    CHECK(f.verify(token) == refused(JwtErrc::expired));
}

TEST_CASE("RS256 tokens verify against an RSA key from the JWKS") {
    EVP_PKEY* rsa = shared_rsa_key();
    TokenFixture f;
    json::object doc{{"keys", json::array{rsa_jwk(rsa, "rsa-1")}}};
    Result<Jwks> rsa_jwks = Jwks::parse(json::serialize(doc));
    REQUIRE(rsa_jwks.has_value());
    f.jwks.merge(*rsa_jwks);
    REQUIRE(f.jwks.size() == 2);

    json::object header{{"alg", "RS256"}, {"kid", "rsa-1"}, {"typ", "JWT"}};
    std::string token = rs256_token(rsa, header, f.claims());
    CHECK(f.verify(token) == accepted);

    SUBCASE("tampered payload") {
        json::object claims = f.claims();
        claims["exp"] = f.now_s + 86400 * 365;
        std::string tampered = b64(header) + "." + b64(claims) + token.substr(token.rfind('.'));
        CHECK(f.verify(tampered) == refused(JwtErrc::bad_signature));
    }
    SUBCASE("truncated signature") {
        size_t dot = token.rfind('.');
        std::string raw = base64url_decode(token.substr(dot + 1)).value();
        std::string truncated = token.substr(0, dot + 1) + b64(raw.substr(0, raw.size() - 1));
        CHECK(f.verify(truncated) == refused(JwtErrc::bad_signature));
    }
    SUBCASE("ES256 token naming the RSA key") {
        json::object es{{"alg", "ES256"}, {"kid", "rsa-1"}};
        CHECK(f.verify(f.with_header(es)) == refused(JwtErrc::key_mismatch));
    }
    SUBCASE("signed by another RSA key") {
        ossl::PkeyPtr other(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
        REQUIRE(other);
        CHECK(f.verify(rs256_token(other.get(), header, f.claims())) ==
              refused(JwtErrc::bad_signature));
    }
}

TEST_CASE("refusals leave no OpenSSL errors queued for unrelated callers") {
    TokenFixture f;
    ERR_clear_error();
    std::string good = f.with_claims(f.claims());
    std::string bad_sig = good.substr(0, good.rfind('.') + 1) + b64(std::string(64, '\x01'));
    CHECK(f.verify(bad_sig) == refused(JwtErrc::bad_signature));
    json::object jwk{{"kty", "EC"},
                     {"crv", "P-256"},
                     {"kid", "k"},
                     {"x", b64(std::string(32, 'x'))},
                     {"y", b64(std::string(32, 'y'))}};
    CHECK(outcome(Jwks::parse(json::serialize(json::object{{"keys", json::array{jwk}}}))) ==
          refused(JwtErrc::bad_jwks));
    CHECK(ERR_peek_error() == 0);
}

// ---- JWKS parsing

TEST_CASE("Jwks::parse refuses documents that are not a key set") {
    for (std::string_view doc :
         {"", "not json", "[]", R"({"keys":{}})", R"({"key":[]})", R"({"keys":[1]})",
          R"({"keys":[{"kid":"a"}]})", R"({"keys":[{"kty":7,"kid":"a"}]})"}) {
        CAPTURE(doc);
        CHECK(outcome(Jwks::parse(doc)) == refused(JwtErrc::bad_jwks));
    }
    CHECK(outcome(Jwks::parse(R"({"keys":[]})")) == "ok 0 keys");
}

TEST_CASE("Jwks::parse refuses EC keys that are not well-formed P-256 points") {
    PrivateKey key = PrivateKey::generate_p256();
    json::object good =
        json::parse(jwks_json(key)).as_object().at("keys").as_array()[0].as_object();
    auto parse_with = [](const json::object& jwk) {
        return outcome(Jwks::parse(json::serialize(json::object{{"keys", json::array{jwk}}})));
    };
    CHECK(parse_with(good) == "ok 1 keys");

    json::object jwk = good;
    SUBCASE("another curve") {
        jwk["crv"] = "P-384";
    }
    SUBCASE("no curve") {
        jwk.erase("crv");
    }
    SUBCASE("short x") {
        jwk["x"] = b64(base64url_decode(good.at("x").as_string()).value().substr(1));
    }
    SUBCASE("long y") {
        jwk["y"] = b64(base64url_decode(good.at("y").as_string()).value() + "A");
    }
    SUBCASE("x not base64url") {
        jwk["x"] = std::string(good.at("x").as_string()) + "=";
    }
    SUBCASE("y missing") {
        jwk.erase("y");
    }
    SUBCASE("point not on the curve") {
        std::string y = base64url_decode(good.at("y").as_string()).value();
        y[31] = static_cast<char>(y[31] ^ 1);
        jwk["y"] = b64(y);
    }
    CHECK(parse_with(jwk) == refused(JwtErrc::bad_jwks));
}

TEST_CASE("Jwks::parse refuses RSA keys without n and e") {
    json::object jwk = rsa_jwk(shared_rsa_key(), "rsa-1");
    SUBCASE("no n") {
        jwk.erase("n");
    }
    SUBCASE("no e") {
        jwk.erase("e");
    }
    SUBCASE("empty n") {
        jwk["n"] = "";
    }
    SUBCASE("e not base64url") {
        jwk["e"] = "AQAB==";
    }
    CHECK(outcome(Jwks::parse(json::serialize(json::object{{"keys", json::array{jwk}}}))) ==
          refused(JwtErrc::bad_jwks));
}

TEST_CASE("Jwks::parse skips keys Remora cannot use and keeps the rest") {
    PrivateKey key = PrivateKey::generate_p256();
    json::object ec = json::parse(jwks_json(key)).as_object().at("keys").as_array()[0].as_object();
    json::object no_kid = ec;
    no_kid.erase("kid");
    json::object other_alg = ec;
    other_alg["kid"] = "ecdh";
    other_alg["alg"] = "ECDH-ES";
    json::object rsa_alg_on_ec = ec;
    rsa_alg_on_ec["kid"] = "confused";
    rsa_alg_on_ec["alg"] = "RS256";
    json::object encryption = ec;
    encryption["kid"] = "enc";
    encryption["use"] = "enc";
    json::array keys{json::object{{"kty", "OKP"}, {"crv", "Ed25519"}, {"kid", "ed"}, {"x", "AAAA"}},
                     json::object{{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}},
                     no_kid,
                     other_alg,
                     rsa_alg_on_ec,
                     encryption,
                     ec};
    Result<Jwks> jwks = Jwks::parse(json::serialize(json::object{{"keys", keys}}));
    REQUIRE(jwks.has_value());
    CHECK(jwks->size() == 1);
    CHECK(jwks->find(key_id(key)) != nullptr);
    for (std::string_view kid : {"ed", "hmac", "ecdh", "confused", "enc"}) {
        CAPTURE(kid);
        CHECK(jwks->find(kid) == nullptr);
    }
}

TEST_CASE("Jwks::merge keeps both sets' keys") {
    PrivateKey a = PrivateKey::generate_p256();
    PrivateKey b = PrivateKey::generate_p256();
    Jwks jwks = Jwks::parse(jwks_json(a)).value();
    jwks.merge(Jwks::parse(jwks_json(b)).value());
    CHECK(jwks.size() == 2);
    CHECK(jwks.find(key_id(a)) != nullptr);
    CHECK(jwks.find(key_id(b)) != nullptr);
}

TEST_CASE("Jwks::merge keeps the first key under a kid") {
    PrivateKey a = PrivateKey::generate_p256();
    Jwks jwks = Jwks::parse(jwks_json(a)).value();
    const Jwks::Key* first = jwks.find(key_id(a));
    jwks.merge(Jwks::parse(jwks_json(a)).value());
    CHECK(jwks.size() == 1);
    CHECK(jwks.find(key_id(a)) == first);
}

TEST_CASE("a JWKS with an RSA key under 2048 bits is refused") {
    ossl::PkeyPtr weak(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
    json::object doc{{"keys", json::array{rsa_jwk(weak.get(), "weak")}}};
    Result<Jwks> r = Jwks::parse(json::serialize(doc));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == JwtErrc::bad_jwks);
}

TEST_CASE("Jwks::load_file reads a JWKS and names the file when it cannot") {
    namespace fs = std::filesystem;
    std::string pattern = (fs::temp_directory_path() / "remora-jwt-test-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    fs::path dir = pattern;
    PrivateKey key = PrivateKey::generate_p256();

    std::string good = (dir / "jwks.json").string();
    std::ofstream(good) << jwks_json(key);
    Jwks jwks = Jwks::load_file(good);
    CHECK(jwks.size() == 1);
    CHECK(jwks.find(key_id(key)) != nullptr);

    std::string bad = (dir / "bad.json").string();
    std::ofstream(bad) << R"({"keys": "none"})";
    CHECK_THROWS_WITH_AS(Jwks::load_file(bad), (bad + ": JWKS document is malformed").c_str(),
                         std::runtime_error);

    std::string missing = (dir / "missing.json").string();
    CHECK_THROWS_WITH_AS(Jwks::load_file(missing), doctest::Contains((missing + ": ").c_str()),
                         std::runtime_error);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace remora::certs
