// X.509-SVID issuing satisfies the SPIFFE rules, and every verifier refusal has its own reason.
#include <doctest/doctest.h>

#include <openssl/x509v3.h>

#include "certs/issuer.h"
#include "certs/verifier.h"
#include "test_pki.h"

using namespace remora::certs;
using namespace remora::certs::testing;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

const VerifyOptions kClusterLocal{{"cluster.local"}};

SpiffeId sa_id(std::string_view ns, std::string_view sa) {
    return SpiffeId::for_service_account("cluster.local", ns, sa).value();
}

bool ext_critical(const Certificate& c, int nid) {
    int idx = X509_get_ext_by_NID(c.get(), nid, -1);
    return idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(c.get(), idx)) == 1;
}

error_code verify_error(const std::vector<Certificate>& chain, const TrustBundle& bundle,
                        SystemTime now = fixed_now(), const VerifyOptions& opts = kClusterLocal) {
    auto r = verify_svid(chain, bundle, opts, now);
    return r ? error_code{} : r.error();
}

}  // namespace

TEST_CASE("the root is a CA for the trust domain") {
    Signer ca = make_root_signer("cluster.local", fixed_now());
    CHECK(ca.cert.is_ca());
    CHECK(ca.cert.is_self_signed());
    CHECK(ca.cert.subject() == "O=cluster.local");
    CHECK(ca.cert.not_after() - ca.cert.not_before() == hours(24 * 3650) + minutes(2));
    CHECK(ext_critical(ca.cert, NID_basic_constraints));
    CHECK((X509_get_key_usage(ca.cert.get()) & KU_KEY_CERT_SIGN) != 0);
}

TEST_CASE("issued leaves satisfy the X.509-SVID rules") {
    Signer ca = make_root_signer("cluster.local", fixed_now());
    PrivateKey key = PrivateKey::generate_p256();
    auto leaf = issue_svid(ca, key.public_key(), sa_id("default", "sleep"), fixed_now());
    REQUIRE(leaf);

    CHECK(leaf->uri_sans() ==
          std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/sleep"});
    CHECK(leaf->subject().empty());
    CHECK(ext_critical(*leaf, NID_subject_alt_name));
    CHECK_FALSE(leaf->is_ca());
    CHECK(ext_critical(*leaf, NID_basic_constraints));
    CHECK(ext_critical(*leaf, NID_key_usage));
    CHECK(X509_get_key_usage(leaf->get()) == KU_DIGITAL_SIGNATURE);
    uint32_t xku = X509_get_extended_key_usage(leaf->get());
    CHECK((xku & XKU_SSL_SERVER));
    CHECK((xku & XKU_SSL_CLIENT));
    CHECK(leaf->public_key() == key.public_key());

    // Validity: backdated 2 minutes, 24 h by default.
    CHECK(leaf->not_before() == fixed_now() - minutes(2));
    CHECK(leaf->not_after() == fixed_now() + hours(24));

    // 128-bit random serials: different each time, at most 32 hex digits.
    auto other = issue_svid(ca, key.public_key(), sa_id("default", "sleep"), fixed_now());
    CHECK(leaf->serial_hex() != other->serial_hex());
    CHECK(leaf->serial_hex().size() <= 32);
    CHECK(leaf->serial_hex().size() >= 24);  // 2^-32 chance of a shorter one

    auto id =
        verify_svid(chain_for(ca, *leaf), TrustBundle({ca.root()}), kClusterLocal, fixed_now());
    REQUIRE(id);
    CHECK(id->str() == "spiffe://cluster.local/ns/default/sa/sleep");
}

TEST_CASE("NotAfter is clamped to the signing certificate's NotAfter") {
    PrivateKey ca_key = PrivateKey::generate_p256();
    Certificate short_root = make_root_certificate(ca_key, "cluster.local", fixed_now(), hours(1));
    Signer ca{short_root, std::move(ca_key), {short_root}};
    PrivateKey key = PrivateKey::generate_p256();
    auto leaf = issue_svid(ca, key.public_key(), sa_id("a", "b"), fixed_now(), {hours(24), {}});
    REQUIRE(leaf);
    CHECK(leaf->not_after() == short_root.not_after());
    CHECK(issue_svid(ca, key.public_key(), sa_id("a", "b"), fixed_now() + hours(2)).error() ==
          IssueErrc::signer_expired);
    CHECK(
        issue_svid(ca, key.public_key(), sa_id("a", "b"), fixed_now(), {seconds(0), {}}).error() ==
        IssueErrc::ttl_not_positive);
}

TEST_CASE("DNS SANs can accompany the one URI SAN") {
    Signer ca = make_root_signer("cluster.local", fixed_now());
    PrivateKey key = PrivateKey::generate_p256();
    auto leaf =
        issue_svid(ca, key.public_key(), sa_id("remora-system", "remora-control"), fixed_now(),
                   {hours(1), {"localhost", "remora-control.remora-system.svc"}});
    REQUIRE(leaf);
    CHECK(leaf->uri_sans().size() == 1);
    CHECK(leaf->dns_sans() ==
          std::vector<std::string>{"localhost", "remora-control.remora-system.svc"});
    CHECK(verify_svid(chain_for(ca, *leaf), TrustBundle({ca.root()}), kClusterLocal, fixed_now()));
}

TEST_CASE("an intermediate CA chain verifies and its NotAfter bounds the leaf") {
    Signer root = make_root_signer("cluster.local", fixed_now());
    PrivateKey int_key = PrivateKey::generate_p256();
    CertSpec spec{"cluster.local intermediate",
                  {{NID_basic_constraints, "critical,CA:TRUE"},
                   {NID_key_usage, "critical,keyCertSign,cRLSign"},
                   {NID_subject_key_identifier, "hash"}},
                  fixed_now() - hours(1),
                  fixed_now() + hours(10)};
    Certificate inter = build_cert(spec, int_key, root.key, &root.cert);
    auto signer = make_signer(to_pem({inter, root.cert}), int_key.to_pem());
    REQUIRE(signer);
    PrivateKey key = PrivateKey::generate_p256();
    auto leaf = issue_svid(*signer, key.public_key(), sa_id("a", "b"), fixed_now());
    REQUIRE(leaf);
    CHECK(leaf->not_after() == inter.not_after());
    auto chain = chain_for(*signer, *leaf);
    REQUIRE(chain.size() == 3);
    CHECK(verify_svid(chain, TrustBundle({root.cert}), kClusterLocal, fixed_now()));
    // Without the intermediate the leaf does not chain to the root.
    CHECK(verify_error({*leaf}, TrustBundle({root.cert})) == SvidErrc::untrusted_chain);

    CHECK(make_signer(inter.to_pem(), int_key.to_pem()).error() == IssueErrc::chain_incomplete);
    CHECK(make_signer(to_pem({inter, root.cert}), root.key.to_pem()).error() ==
          IssueErrc::key_mismatch);
    auto with_root_file = make_signer(inter.to_pem(), int_key.to_pem(), root.cert.to_pem());
    REQUIRE(with_root_file);
    CHECK(with_root_file->root().is_self_signed());
}

TEST_CASE("every verifier refusal has its own reason") {
    const SystemTime now = fixed_now();
    Signer ca = make_root_signer("cluster.local", now);
    TrustBundle bundle({ca.root()});
    PrivateKey key = PrivateKey::generate_p256();
    const std::string uri = "spiffe://cluster.local/ns/default/sa/sleep";
    auto leaf_with = [&](std::vector<Ext> exts) {
        return build_cert({"", std::move(exts), now - hours(1), now + hours(1)}, key, ca.key,
                          &ca.cert);
    };

    SUBCASE("no certificate") {
        CHECK(verify_error({}, bundle) == SvidErrc::no_certificate);
    }
    SUBCASE("unknown issuer") {
        Signer other = make_root_signer("cluster.local", now);
        auto leaf = issue_svid(other, key.public_key(), sa_id("default", "sleep"), now);
        CHECK(verify_error({*leaf}, bundle) == SvidErrc::untrusted_chain);
    }
    SUBCASE("self-signed leaf") {
        Certificate self =
            build_cert({"", svid_exts(uri), now - hours(1), now + hours(1)}, key, key, nullptr);
        CHECK(verify_error({self}, bundle) == SvidErrc::untrusted_chain);
    }
    SUBCASE("signature does not verify") {
        // Issued by a different key under the root's name: the chain exists, the signature fails.
        PrivateKey impostor = PrivateKey::generate_p256();
        Certificate forged = build_cert({"", svid_exts(uri), now - hours(1), now + hours(1)}, key,
                                        impostor, &ca.cert);
        CHECK(verify_error({forged}, bundle) == SvidErrc::bad_signature);
    }
    SUBCASE("expired and not yet valid, against the injected clock") {
        auto leaf =
            issue_svid(ca, key.public_key(), sa_id("default", "sleep"), now, {hours(1), {}});
        CHECK_FALSE(verify_error({*leaf}, bundle, now + minutes(59)));
        CHECK(verify_error({*leaf}, bundle, now + hours(2)) == SvidErrc::expired);
        CHECK(verify_error({*leaf}, bundle, now - minutes(10)) == SvidErrc::not_yet_valid);
    }
    SUBCASE("no URI SAN") {
        Certificate c = leaf_with({{NID_basic_constraints, "critical,CA:FALSE"},
                                   {NID_key_usage, "critical,digitalSignature"},
                                   {NID_ext_key_usage, "serverAuth,clientAuth"},
                                   {NID_subject_alt_name, "critical,DNS:example.org"}});
        CHECK(verify_error({c}, bundle) == SvidErrc::no_uri_san);
    }
    SUBCASE("two URI SANs") {
        auto exts = svid_exts(uri);
        exts.back().value += ",URI:spiffe://cluster.local/ns/x/sa/y";
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::multiple_uri_sans);
    }
    SUBCASE("URI SAN that is not a SPIFFE ID") {
        CHECK(verify_error({leaf_with(svid_exts("https://cluster.local/ns/a"))}, bundle) ==
              SvidErrc::invalid_spiffe_id);
        CHECK(verify_error({leaf_with(svid_exts("spiffe://cluster.local/ns/../a"))}, bundle) ==
              SvidErrc::invalid_spiffe_id);
    }
    SUBCASE("foreign trust domain") {
        CHECK(verify_error({leaf_with(svid_exts("spiffe://evil.example/ns/a/sa/b"))}, bundle) ==
              SvidErrc::untrusted_trust_domain);
        CHECK_FALSE(verify_error({leaf_with(svid_exts("spiffe://evil.example/ns/a/sa/b"))}, bundle,
                                 now, VerifyOptions{{"cluster.local", "evil.example"}}));
    }
    SUBCASE("leaf is a CA") {
        auto exts = svid_exts(uri);
        exts[0].value = "critical,CA:TRUE";
        exts[1].value = "critical,digitalSignature,keyCertSign";
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::leaf_is_ca);
    }
    SUBCASE("no key usage") {
        auto exts = svid_exts(uri);
        exts.erase(exts.begin() + 1);
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::no_key_usage);
    }
    SUBCASE("key usage without digitalSignature") {
        auto exts = svid_exts(uri);
        exts[1].value = "critical,keyEncipherment";
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::no_digital_signature);
    }
    SUBCASE("key usage with cRLSign") {
        auto exts = svid_exts(uri);
        exts[1].value = "critical,digitalSignature,cRLSign";
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::signing_key_usage);
    }
    SUBCASE("no EKU") {
        auto exts = svid_exts(uri);
        exts.erase(exts.begin() + 2);
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::no_ext_key_usage);
    }
    SUBCASE("EKU without clientAuth") {
        auto exts = svid_exts(uri);
        exts[2].value = "serverAuth";
        CHECK(verify_error({leaf_with(exts)}, bundle) == SvidErrc::missing_server_or_client_auth);
    }
    SUBCASE("a leaf cannot act as an issuer") {
        // OpenSSL does not take a non-CA certificate as an issuer, so no path to the root exists.
        auto mid = issue_svid(ca, key.public_key(), sa_id("default", "sleep"), now);
        PrivateKey k2 = PrivateKey::generate_p256();
        Certificate c =
            build_cert({"", svid_exts(uri), now - hours(1), now + hours(1)}, k2, key, &*mid);
        CHECK(verify_error({c, *mid}, bundle) == SvidErrc::untrusted_chain);
    }
    SUBCASE("path length constraint violated") {
        PrivateKey root_key = PrivateKey::generate_p256();
        Certificate root = build_cert({"pathlen root",
                                       {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                                        {NID_key_usage, "critical,keyCertSign,cRLSign"}},
                                       now - hours(1),
                                       now + hours(10)},
                                      root_key, root_key, nullptr);
        PrivateKey int_key = PrivateKey::generate_p256();
        Certificate inter = build_cert({"intermediate",
                                        {{NID_basic_constraints, "critical,CA:TRUE"},
                                         {NID_key_usage, "critical,keyCertSign,cRLSign"}},
                                        now - hours(1),
                                        now + hours(10)},
                                       int_key, root_key, &root);
        Certificate leaf =
            build_cert({"", svid_exts(uri), now - hours(1), now + hours(1)}, key, int_key, &inter);
        CHECK(verify_error({leaf, inter}, TrustBundle({root})) == SvidErrc::invalid_chain);
    }
    SUBCASE("reasons have distinct tokens") {
        CHECK(reason_token(make_reason(SvidErrc::expired)) == "expired");
        CHECK(reason_token(make_reason(SvidErrc::untrusted_chain)) == "untrusted_chain");
    }
}
