// Keys, CSRs and certificate PEM handling.
#include <doctest/doctest.h>

#include "certs/keys.h"

using namespace remora::certs;

TEST_CASE("P-256 keys round-trip through PEM") {
    PrivateKey key = PrivateKey::generate_p256();
    std::string pem = key.to_pem();
    CHECK(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    auto back = PrivateKey::from_pem(pem);
    REQUIRE(back);
    CHECK(back->public_key() == key.public_key());
    CHECK(key.public_key().describe() == "EC P-256");
    auto pub = PublicKey::from_pem(key.public_key().to_pem());
    REQUIRE(pub);
    CHECK(*pub == key.public_key());
    CHECK_FALSE(PrivateKey::generate_p256().public_key() == key.public_key());
    CHECK(PrivateKey::from_pem("garbage").error() == KeyErrc::malformed_pem);
}

TEST_CASE("a CSR carries its key and requested URI, and its signature is checked") {
    PrivateKey key = PrivateKey::generate_p256();
    Csr csr = Csr::create(key, "spiffe://cluster.local/ns/a/sa/b");
    auto parsed = Csr::parse_pem(csr.to_pem());
    REQUIRE(parsed);
    CHECK(parsed->public_key() == key.public_key());
    REQUIRE(parsed->requested_uris().size() == 1);
    CHECK(parsed->requested_uris()[0] == "spiffe://cluster.local/ns/a/sa/b");
    CHECK(Csr::parse_pem(Csr::create(key).to_pem())->requested_uris().empty());
}

TEST_CASE("malformed and tampered CSRs are refused with their reason") {
    CHECK(Csr::parse_pem("not a csr").error() == KeyErrc::malformed_csr);
    CHECK(Csr::parse_pem("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                         "REQUEST-----\n")
              .error() == KeyErrc::malformed_csr);

    // Flip one byte of the signature (the last bytes of the DER before the PEM footer).
    PrivateKey key = PrivateKey::generate_p256();
    std::string pem = Csr::create(key).to_pem();
    size_t footer = pem.find("-----END");
    size_t pos = footer - 6;  // inside the base64 of the signature
    pem[pos] = pem[pos] == 'A' ? 'B' : 'A';
    auto r = Csr::parse_pem(pem);
    REQUIRE_FALSE(r);
    CHECK((r.error() == KeyErrc::csr_bad_signature || r.error() == KeyErrc::malformed_csr));
}

TEST_CASE("weak and unsupported CSR keys are refused") {
    ossl::PkeyPtr rsa1024(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
    CHECK(check_key_strength(rsa1024.get()) == KeyErrc::weak_key);
    ossl::PkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    CHECK(check_key_strength(ed.get()) == KeyErrc::unsupported_key);
    ossl::PkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
    CHECK_FALSE(check_key_strength(p384.get()));

    PrivateKey weak{ossl::PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}))};
    CHECK(Csr::parse_pem(Csr::create(weak).to_pem()).error() == KeyErrc::weak_key);
}

TEST_CASE("certificate bundles parse in order, and garbage is refused") {
    CHECK(Certificate::chain_from_pem("").error() == KeyErrc::no_certificate);
    CHECK(
        Certificate::chain_from_pem("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
            .error() == KeyErrc::malformed_certificate);
}
