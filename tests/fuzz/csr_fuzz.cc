// libFuzzer target: CSR handling as the CA does it. First byte even: the rest is a PEM CSR,
// parsed (self-signature and key strength checked), then its key, the URIs it asks for and its
// PEM read back. Odd: the rest is the body of POST /v1/certificates ({"csr": ..., "ttlSeconds":
// ...}) from a caller with a valid bootstrap token, through CertificateAuthority::sign; whatever it
// issues must name the token's identity, never one the CSR asks for.
#include <boost/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "certs/issuer.h"
#include "certs/jwt.h"
#include "certs/keys.h"
#include "control/ca/ca_service.h"

namespace certs = remora::certs;
namespace ca = remora::control;

namespace {

const certs::SystemTime kNow{std::chrono::seconds(1'800'000'000)};

struct Ca {
    certs::PrivateKey jwt_key = certs::PrivateKey::generate_p256();
    certs::PrivateKey root_key = certs::PrivateKey::generate_p256();
    certs::Certificate root =
        certs::make_root_certificate(root_key, "cluster.local", kNow, std::chrono::hours(24));
    ca::CertificateAuthority authority{certs::Signer{root, root_key, {root}},
                                       certs::Jwks::parse(certs::jwks_json(jwt_key)).value(),
                                       ca::CaConfig{}, [] { return kNow; },
                                       [](const std::string&) {}};
    ca::Caller caller{"Bearer " + certs::sign_service_account_token(jwt_key, {"default", "sleep"},
                                                                    "remora-ca", "fuzz", kNow,
                                                                    std::chrono::hours(1)),
                      {}, "127.0.0.1:1"};
};

Ca& the_ca() {
    static Ca c;
    return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] % 2 == 0) {
        auto csr = certs::Csr::parse_pem(text);
        if (!csr) return 0;
        (void)csr->requested_uris();
        (void)csr->to_pem();
        (void)csr->public_key();
        return 0;
    }
    Ca& c = the_ca();
    ca::CaResponse r = c.authority.sign(c.caller, text);
    if (r.status != 200) return 0;
    const boost::json::value doc = boost::json::parse(r.body);
    const auto leaf = certs::Certificate::from_pem(
        std::string(doc.at("certChain").as_array().at(0).as_string()));
    if (!leaf || leaf->uri_sans() != std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/sleep"}) {
        __builtin_trap();
    }
    return 0;
}
