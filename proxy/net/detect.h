// Which protocol a connection speaks, from its declared port protocol or its first bytes (Istio's
// protocol sniffing: TLS ClientHello, the HTTP/2 preface, an HTTP/1.x request line, else TCP).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

namespace remora::proxy {

// What a TLS ClientHello says before any key is exchanged: the server name (SNI) and the ALPN
// protocols offered. Read from the first TLS record(s) as they arrived, without consuming them.
struct ClientHello {
    std::string sni;                // "" when the client sent none
    std::vector<std::string> alpn;  // in the client's order
};

// The largest ClientHello read: one TLS record of at most 16 KiB plus its header. A hello in
// several records is read up to this many bytes.
inline constexpr size_t kMaxClientHelloBytes = 16384 + 5;

struct ClientHelloParse {
    enum class Status { complete, need_more, invalid } status = Status::need_more;
    ClientHello hello;
};

// Parses the ClientHello at the start of `bytes` (the handshake may span several records).
ClientHelloParse parse_client_hello(std::string_view bytes);

// Whether a ClientHello comes from a mesh peer (a Remora or Istio sidecar marks its mTLS with an
// "istio"-prefixed ALPN protocol: istio, istio-peer-exchange, istio-h2, istio-http/1.1) rather than
// from an app's own TLS, which a PERMISSIVE port passes through to the app untouched.
bool offers_mesh_alpn(const ClientHello& hello);

// A tls[] route's sniHosts entry against a server name: exact, or "*.example.com" by suffix (at
// least one label before it); case-insensitive.
bool sni_matches(std::string_view pattern, std::string_view server_name);

}  // namespace remora::proxy
