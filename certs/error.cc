// Shared helpers for reason codes and OpenSSL error text.
#include "certs/error.h"

#include <openssl/err.h>

#include "certs/ossl.h"

namespace remora::certs {

std::string_view reason_token(const error_code& ec) noexcept {
    if (!ec) return "ok";
    if (auto* cat = dynamic_cast<const ReasonCategory*>(&ec.category())) {
        return cat->token(ec.value());
    }
    return "other";
}

namespace ossl {

std::string last_error() {
    unsigned long code = ERR_get_error();
    if (code == 0) return "no OpenSSL error recorded";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

}  // namespace ossl
}  // namespace remora::certs
