// The protocol-neutral request and response heads every codec produces and consumes, the
// hop-by-hop rule of RFC 9110 §7.6.1 (written once here), and gRPC's request helpers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/http/header_map.h"

namespace remora::proxy::http {

enum class Protocol { http10, http11, http2 };

struct RequestHead {
    std::string method;
    std::string scheme;     // "http" or "https"; HTTP/1.1 derives it from the listener
    std::string authority;  // :authority in HTTP/2, Host in HTTP/1.1
    std::string path;       // origin-form, with the query string
    HeaderMap headers;      // regular fields only: no pseudo-headers, no Host in HTTP/2
    Protocol protocol = Protocol::http11;
};

struct ResponseHead {
    uint32_t status = 200;
    HeaderMap headers;
};

// Trailers travel as a plain HeaderMap (HTTP/1.1 chunked trailers, HTTP/2 trailing HEADERS).
using Trailers = HeaderMap;

// Removes the connection-specific fields a proxy must not forward: connection, keep-alive,
// proxy-connection, te (except "te: trailers"), transfer-encoding, upgrade, proxy-authorization,
// and every field named in Connection. Returns how many fields were removed.
std::size_t strip_hop_by_hop(HeaderMap& headers);

// True for a connection-specific field HTTP/2 forbids outright (RFC 9113 §8.2.2).
bool is_connection_specific(std::string_view lowercase_name) noexcept;

// gRPC: a request whose content-type is application/grpc (or application/grpc+proto, …).
bool is_grpc(const RequestHead& head) noexcept;

// grpc-timeout: "<1..8 digits><H|M|S|m|u|n>" in milliseconds (rounded up, so 1n is 1 ms; 0 is 0).
// None when malformed; the caller then ignores the header as gRPC servers do.
std::optional<uint64_t> parse_grpc_timeout_ms(std::string_view value) noexcept;
inline constexpr std::size_t kMaxGrpcTimeoutDigits = 8;

}  // namespace remora::proxy::http
