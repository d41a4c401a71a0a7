// The CA's request logic: who may get which certificate, and every refusal's status and reason.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "../certs/test_pki.h"
#include "certs/jwt.h"
#include "certs/verifier.h"
#include "control/ca/ca_service.h"

using namespace remora;
using namespace remora::certs;
using namespace remora::control;
using remora::certs::testing::fixed_now;
using std::chrono::hours;
namespace json = boost::json;

namespace {

struct Fixture {
    Signer signer = testing::make_root_signer("cluster.local", fixed_now());
    PrivateKey jwt_key = PrivateKey::generate_p256();
    SystemTime now = fixed_now();
    std::vector<std::string> logs;
    CertificateAuthority ca{signer, Jwks::parse(jwks_json(jwt_key)).value(), CaConfig{},
                            [this] { return now; },
                            [this](const std::string& m) { logs.push_back(m); }};

    std::string token(std::string ns = "default", std::string sa = "sleep",
                      std::string aud = "remora-ca") {
        return sign_service_account_token(jwt_key, {ns, sa}, aud, "test", now, hours(1));
    }
    Caller bearer(const std::string& tok) { return Caller{"Bearer " + tok, {}, "127.0.0.1:1"}; }
    static std::string body(const Csr& csr, std::optional<long long> ttl = {}) {
        json::object o;
        o["csr"] = csr.to_pem();
        if (ttl) o["ttlSeconds"] = *ttl;
        return json::serialize(o);
    }
    std::vector<Certificate> chain_of(const CaResponse& r) {
        std::vector<Certificate> out;
        json::value doc = json::parse(r.body);
        for (const json::value& v : doc.at("certChain").as_array()) {
            out.push_back(Certificate::from_pem(std::string(v.as_string())).value());
        }
        return out;
    }
    std::string error_of(const CaResponse& r) {
        return std::string(json::parse(r.body).at("error").as_string());
    }
};

}  // namespace

TEST_CASE("a valid token gets a verified SVID for its service account") {
    Fixture f;
    PrivateKey key = PrivateKey::generate_p256();
    CaResponse r = f.ca.sign(f.bearer(f.token()), Fixture::body(Csr::create(key)));
    REQUIRE(r.status == 200);
    auto chain = f.chain_of(r);
    REQUIRE(chain.size() == 2);
    CHECK(chain.back().to_pem() == f.signer.root().to_pem());
    CHECK(chain.front().public_key() == key.public_key());
    CHECK(chain.front().not_after() == f.now + hours(24));  // default TTL
    auto id = verify_svid(chain, f.ca.bundle(), {{"cluster.local"}}, f.now);
    REQUIRE(id);
    CHECK(id->str() == "spiffe://cluster.local/ns/default/sa/sleep");
    CHECK(f.ca.metrics().issued_count() == 1);
    REQUIRE_FALSE(f.logs.empty());
    CHECK(f.logs.back().find("serial=" + chain.front().serial_hex()) != std::string::npos);
    CHECK(f.logs.back().find("identity=spiffe://cluster.local/ns/default/sa/sleep") !=
          std::string::npos);
}

TEST_CASE("the identity comes from the token, never from the CSR") {
    Fixture f;
    PrivateKey key = PrivateKey::generate_p256();
    Csr csr = Csr::create(key, "spiffe://cluster.local/ns/kube-system/sa/admin");
    CaResponse r = f.ca.sign(f.bearer(f.token("shop", "cart")), Fixture::body(csr));
    REQUIRE(r.status == 200);
    CHECK(f.chain_of(r).front().uri_sans() ==
          std::vector<std::string>{"spiffe://cluster.local/ns/shop/sa/cart"});
    CHECK(f.logs.back().find("asked for spiffe://cluster.local/ns/kube-system/sa/admin") !=
          std::string::npos);
}

TEST_CASE("ttlSeconds is honoured up to the maximum") {
    Fixture f;
    Csr csr = Csr::create(PrivateKey::generate_p256());
    CaResponse ok = f.ca.sign(f.bearer(f.token()), Fixture::body(csr, 3600));
    REQUIRE(ok.status == 200);
    CHECK(f.chain_of(ok).front().not_after() == f.now + hours(1));

    CaResponse too_long = f.ca.sign(f.bearer(f.token()), Fixture::body(csr, 90LL * 86400 + 1));
    CHECK(too_long.status == 400);
    CHECK(f.error_of(too_long).find("exceeds the maximum") != std::string::npos);
    CHECK(f.ca.metrics().refused_count("ttl_too_large") == 1);
    CHECK(f.ca.sign(f.bearer(f.token()), Fixture::body(csr, 0)).status == 400);
    CHECK(f.ca.sign(f.bearer(f.token()), R"({"csr":"x","ttlSeconds":"1h"})").status == 400);
}

TEST_CASE("malformed bodies and CSRs are 400 with a reason") {
    Fixture f;
    Caller c = f.bearer(f.token());
    CHECK(f.ca.sign(c, "not json").status == 400);
    CHECK(f.ca.sign(c, "[]").status == 400);
    CHECK(f.ca.sign(c, R"({"ttlSeconds":60})").status == 400);
    CHECK(f.ca.sign(c, R"({"csr":42})").status == 400);
    CaResponse garbage = f.ca.sign(c, R"({"csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"})");
    CHECK(garbage.status == 400);
    CHECK(f.error_of(garbage).find("CSR refused") != std::string::npos);
    CHECK(f.ca.metrics().refused_count("malformed_request") == 4);
    CHECK(f.ca.metrics().refused_count("csr_malformed_csr") == 1);
    CHECK(f.ca.metrics().issued_count() == 0);
}

TEST_CASE("missing or bad credentials are 401, checked before the body") {
    Fixture f;
    std::string body = Fixture::body(Csr::create(PrivateKey::generate_p256()));
    CaResponse none = f.ca.sign(Caller{}, body);
    CHECK(none.status == 401);
    CHECK(f.ca.metrics().refused_count("no_credentials") == 1);
    CHECK(f.ca.sign(Caller{std::string("Basic abc"), {}, ""}, body).status == 401);
    CHECK(f.ca.sign(f.bearer(f.token("default", "sleep", "other")), body).status == 401);
    CHECK(f.ca.metrics().refused_count("jwt_wrong_audience") == 1);
    CHECK(f.ca.sign(f.bearer("a.b.c"), "not even json").status == 401);

    PrivateKey stranger = PrivateKey::generate_p256();
    std::string foreign = sign_service_account_token(stranger, {"default", "sleep"}, "remora-ca",
                                                     "x", f.now, hours(1));
    CHECK(f.ca.sign(f.bearer(foreign), body).status == 401);
    CHECK(f.ca.metrics().refused_count("jwt_unknown_kid") == 1);

    std::string tok = f.token();
    f.now += hours(2);
    CHECK(f.ca.sign(f.bearer(tok), body).status == 401);
    CHECK(f.ca.metrics().refused_count("jwt_expired") == 1);
}

TEST_CASE("renewal over mTLS keeps the current identity; foreign certificates are 401") {
    Fixture f;
    PrivateKey key = PrivateKey::generate_p256();
    auto current =
        f.chain_of(f.ca.sign(f.bearer(f.token("shop", "cart")), Fixture::body(Csr::create(key))));

    PrivateKey next = PrivateKey::generate_p256();
    CaResponse renewed =
        f.ca.sign(Caller{std::nullopt, current, "r"}, Fixture::body(Csr::create(next)));
    REQUIRE(renewed.status == 200);
    CHECK(f.chain_of(renewed).front().uri_sans().front() ==
          "spiffe://cluster.local/ns/shop/sa/cart");

    Signer other = testing::make_root_signer("cluster.local", f.now);
    auto foreign =
        issue_svid(other, key.public_key(),
                   SpiffeId::for_service_account("cluster.local", "shop", "cart").value(), f.now);
    CaResponse refused =
        f.ca.sign(Caller{std::nullopt, {*foreign}, "r"}, Fixture::body(Csr::create(next)));
    CHECK(refused.status == 401);
    CHECK(f.ca.metrics().refused_count("svid_untrusted_chain") == 1);

    // The control plane's own certificate is not a workload identity.
    auto own = f.ca.issue_own(key.public_key(),
                              SpiffeId::parse("spiffe://cluster.local/ns/remora-system").value(),
                              hours(1), {"localhost"});
    CHECK(f.ca.sign(Caller{std::nullopt, {own}, "r"}, Fixture::body(Csr::create(next))).status ==
          403);

    // An expired certificate cannot renew itself.
    f.now += hours(25);
    CHECK(f.ca.sign(Caller{std::nullopt, current, "r"}, Fixture::body(Csr::create(next))).status ==
          401);
    CHECK(f.ca.metrics().refused_count("svid_expired") == 1);
}

TEST_CASE("metrics render in Prometheus text format") {
    Fixture f;
    f.ca.sign(Caller{}, "{}");
    f.ca.sign(f.bearer(f.token()), Fixture::body(Csr::create(PrivateKey::generate_p256())));
    std::string text = f.ca.metrics().prometheus(f.signer.root());
    CHECK(text.find("# TYPE remora_ca_certificates_issued_total counter\n") != std::string::npos);
    CHECK(text.find("remora_ca_certificates_issued_total 1\n") != std::string::npos);
    CHECK(text.find("remora_ca_requests_refused_total{reason=\"no_credentials\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("remora_ca_root_cert_expiry_timestamp_seconds ") != std::string::npos);
}
