// libFuzzer target: bytes as the PEM CSR a workload sends the CA: parsed (self-signature and key
// strength checked), then its key, the URIs it asks for and its PEM read back, as the CA does.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "certs/keys.h"

namespace certs = remora::certs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    auto csr = certs::Csr::parse_pem(std::string_view(reinterpret_cast<const char*>(data), size));
    if (!csr) return 0;
    (void)csr->requested_uris();
    (void)csr->to_pem();
    (void)csr->public_key();
    return 0;
}
