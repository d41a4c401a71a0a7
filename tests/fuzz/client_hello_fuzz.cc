// libFuzzer target: bytes as the first bytes of a connection, read by the proxy's protocol
// detection and its TLS ClientHello parser (SNI, ALPN), then checked for what the listener
// relies on: a complete hello stays complete, with the same SNI and ALPN, when more bytes follow.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/net/detect.h"

namespace proxy = remora::proxy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    (void)proxy::classify_first_bytes(bytes);
    const proxy::ClientHelloParse parse = proxy::parse_client_hello(bytes);
    if (parse.status != proxy::ClientHelloParse::Status::complete) return 0;
    const proxy::ClientHello& hello = parse.hello;
    if (hello.sni.size() > size) __builtin_trap();
    (void)proxy::offers_mesh_alpn(hello);
    (void)proxy::sni_matches(hello.sni, hello.sni);
    (void)proxy::sni_matches("*.example.com", hello.sni);
    // Application data after the hello (or the rest of the stream) does not change it.
    const std::string more = std::string(bytes) + "\x17\x03\x03\x00\x01x";
    const proxy::ClientHelloParse again = proxy::parse_client_hello(more);
    if (again.status != proxy::ClientHelloParse::Status::complete ||
        again.hello.sni != hello.sni || again.hello.alpn != hello.alpn) {
        __builtin_trap();
    }
    return 0;
}
