// Protocol detection from a connection's first bytes, as Envoy's tls_inspector and
// http_inspector do for Istio's undeclared ports.
#include "proxy/net/detect.h"

#include <array>
#include <cctype>

namespace remora::proxy {

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Methods an HTTP/1.x request line may start with (RFC 9110 and WebDAV's common ones, as
// Envoy's http_inspector accepts any token followed by a request target and HTTP/1.x; a known
// method keeps binary protocols whose first bytes happen to be letters out of the HTTP path).
constexpr std::array<std::string_view, 16> kMethods = {
    "GET ",  "HEAD ",  "POST ", "PUT ",  "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ",
    "PATCH ", "PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ", "UNLOCK "};

}  // namespace

const char* protocol_name(Protocol p) {
    switch (p) {
        case Protocol::unknown: return "unknown";
        case Protocol::http1: return "http/1.1";
        case Protocol::http2: return "h2c";
        case Protocol::tcp: return "tcp";
        case Protocol::tls: return "tls";
    }
    return "unknown";
}

Protocol declared_protocol(std::string_view written) {
    // Istio's names are case-insensitive (a ServiceEntry may say "http" or "MONGO").
    std::array<char, 16> buf{};
    if (written.size() >= buf.size()) return Protocol::unknown;
    for (size_t i = 0; i < written.size(); ++i) {
        buf[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(written[i])));
    }
    const std::string_view name(buf.data(), written.size());
    if (name == "HTTP") return Protocol::http1;
    if (name == "HTTP2" || name == "GRPC") return Protocol::http2;
    if (name == "TLS" || name == "HTTPS") return Protocol::tls;
    if (name == "TCP" || name == "MONGO" || name == "MYSQL" || name == "REDIS") return Protocol::tcp;
    return Protocol::unknown;  // "" and GRPC-Web
}

std::optional<Protocol> classify_first_bytes(std::string_view b) {
    if (b.empty()) return std::nullopt;
    // A TLS handshake record: content type 22, version major 3.
    if (static_cast<unsigned char>(b[0]) == 0x16) {
        if (b.size() < 2) return std::nullopt;
        return b[1] == 0x03 ? Protocol::tls : Protocol::tcp;
    }
    const size_t n = std::min(b.size(), kH2Preface.size());
    if (b.substr(0, n) == kH2Preface.substr(0, n)) {
        if (b.size() >= kH2Preface.size()) return Protocol::http2;
        return std::nullopt;  // "PRI * HTTP/2..." so far; "P" may still be POST, PUT or PATCH
    }
    bool could_be_method = false;
    for (std::string_view m : kMethods) {
        const size_t k = std::min(b.size(), m.size());
        if (b.substr(0, k) != m.substr(0, k)) continue;
        if (b.size() >= m.size()) return Protocol::http1;
        could_be_method = true;
    }
    if (could_be_method) return std::nullopt;
    return Protocol::tcp;
}

}  // namespace remora::proxy
