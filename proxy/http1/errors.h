// The errors the proxy makes itself, mapped in one place to an HTTP status, a body and Envoy's
// response flag.
#pragma once

#include <string_view>

namespace remora::proxy {

enum class ProxyError {
    no_route,                 // 404 NR
    no_healthy_upstream,      // 503 UH
    connect_failure,          // 503 UF: connect, TLS handshake or peer identity failed
    upstream_reset,           // 502 UC: upstream closed or reset before a complete response header
    bad_request,              // 400 DPE (downstream protocol error)
    headers_too_large,        // 431 DPE
    header_timeout,           // 408
    upstream_timeout,         // 504 UT: no response header within the route's timeout
    overflow,                 // 503 UO: a circuit breaker (DestinationRule connectionPool) is open
    rbac_denied,              // 403 RBAC: an AuthorizationPolicy denied the inbound request
};

struct ErrorReply {
    unsigned status;
    std::string_view flag;
    std::string_view body;
};

constexpr ErrorReply reply_for(ProxyError e) {
    switch (e) {
        case ProxyError::no_route: return {404, "NR", "no route for this host\n"};
        case ProxyError::no_healthy_upstream: return {503, "UH", "no healthy upstream\n"};
        case ProxyError::connect_failure:
            return {503, "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure\n"};
        case ProxyError::upstream_reset:
            return {502, "UC", "upstream connect error or disconnect/reset before headers. reset reason: connection termination\n"};
        case ProxyError::bad_request: return {400, "DPE", "malformed HTTP request\n"};
        case ProxyError::headers_too_large: return {431, "DPE", "request header fields too large\n"};
        case ProxyError::header_timeout: return {408, "", "request header timeout\n"};
        case ProxyError::upstream_timeout: return {504, "UT", "upstream request timeout\n"};
        case ProxyError::overflow:
            return {503, "UO", "upstream connect error or disconnect/reset before headers. reset reason: overflow\n"};
        case ProxyError::rbac_denied: return {403, "RBAC", "RBAC: access denied"};  // Envoy's exact body
    }
    return {500, "", "internal error\n"};
}

}  // namespace remora::proxy
