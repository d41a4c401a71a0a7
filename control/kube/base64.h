// Standard base64 with padding (RFC 4648 section 4), as Kubernetes wants for caBundle and
// AdmissionReview patches (certs/ has only base64url, for JWTs).
#pragma once

#include <string>
#include <string_view>

namespace remora::control::kube {

inline std::string base64(std::string_view in) {
    static constexpr const char* kTable =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    unsigned val = 0;
    int bits = -6;
    for (unsigned char c : in) {
        val = (val << 8) + c;
        bits += 8;
        while (bits >= 0) {
            out += kTable[(val >> bits) & 63];
            bits -= 6;
        }
    }
    if (bits > -6) out += kTable[((val << 8) >> (bits + 8)) & 63];
    while (out.size() % 4)
        out += '=';
    return out;
}

}  // namespace remora::control::kube
