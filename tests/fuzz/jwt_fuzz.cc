// libFuzzer target: bytes as a bootstrap token (JWT) checked against a fixed JWKS, and as a JWKS
// document (first byte even: token; odd: JWKS). Nothing may crash, and no token verifies: the
// fuzzer holds no signing key.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "certs/jwt.h"
#include "certs/keys.h"

namespace certs = remora::certs;

namespace {

const certs::Jwks& trusted() {
    static const certs::Jwks jwks = [] {
        auto key = certs::PrivateKey::generate_p256();
        auto parsed = certs::Jwks::parse(certs::jwks_json(key));
        if (!parsed) __builtin_trap();
        return *parsed;
    }();
    return jwks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] % 2 == 0) {
        auto sa = certs::verify_service_account_token(text, trusted(), {},
                                                      certs::SystemTime(std::chrono::seconds(1'800'000'000)));
        if (sa) __builtin_trap();  // a token nobody signed with the trusted key
        (void)certs::base64url_decode(text);
    } else {
        auto jwks = certs::Jwks::parse(text);
        if (jwks) (void)jwks->find("kid");
    }
    return 0;
}
