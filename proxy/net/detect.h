// Which protocol a connection speaks, from its declared port protocol or its first bytes (Istio's
// protocol sniffing: TLS ClientHello, the HTTP/2 preface, an HTTP/1.x request line, else TCP).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace remora::proxy {

enum class Protocol : uint8_t {
    unknown,  // undeclared: detect from the first bytes
    http1,
    http2,    // h2c prior knowledge (HTTP2 and GRPC ports)
    tcp,      // opaque bytes (TCP, Mongo, MySQL, Redis ports, and anything not recognised)
    tls,      // TLS the app originated (TLS and HTTPS ports): passed through untouched
};

const char* protocol_name(Protocol p);

// The protocol of a port declared with Istio's name for it ("HTTP", "GRPC", "TCP", ...; "" is
// unknown). GRPC-Web is HTTP/1.1 or HTTP/2, so it is detected.
Protocol declared_protocol(std::string_view istio_name);

// The bytes needed to decide, at most: the HTTP/2 preface is the longest thing we look for.
inline constexpr size_t kDetectBytes = 24;

// The protocol these first bytes start, or nullopt when they could still start more than one
// (more bytes are needed). Never nullopt for kDetectBytes bytes or more.
std::optional<Protocol> classify_first_bytes(std::string_view bytes);

}  // namespace remora::proxy
