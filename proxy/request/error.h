// The one error vocabulary of the request path: why the proxy answers a request itself (or
// cannot answer it any more), with the HTTP status, Envoy's response flag, the body, which side
// caused it and whether a retry may cover it. Routing, the codecs' adapters and the phases all
// report a ProxyError; local replies, retries, logs and metrics read it from here.
#pragma once

#include <cstdint>
#include <string_view>

namespace remora::proxy {

enum class ProxyError {
    none,
    no_route,             // 404 NR
    no_healthy_upstream,  // 503 UH
    connect_failure,      // 503 UF: connect, TLS handshake or peer identity failed
    upstream_reset,       // 503 UC: upstream closed or reset before a complete response header
    refused_stream,       // 503 UC: the upstream refused the HTTP/2 stream (nothing processed)
    bad_request,          // 400 DPE (downstream protocol error)
    headers_too_large,    // 431 DPE
    header_timeout,       // 408: the request header did not arrive in time
    method_not_allowed,   // 405: CONNECT (this proxy tunnels nothing on request)
    upstream_timeout,     // 504 UT: no response header within the route's timeout
    stream_idle_timeout,  // 408 SI: the request body stalled for the stream idle timeout
    response_idle_timeout,  // 504 SI: request complete, no response header for the stream idle timeout
    request_timeout,      // 408: the whole request did not arrive within the request timeout
    overflow,             // 503 UO: a circuit breaker (DestinationRule connectionPool) is open
    rbac_denied,          // 403 RBAC: an AuthorizationPolicy denied the inbound request
    downstream_disconnect,  // DC: the client went away (no reply possible)
    upstream_mid_body,      // UC after the head: the response is cut (no reply possible)
};

// Who caused it.
enum class Side { downstream, upstream, proxy };

struct ErrorInfo {
    uint32_t status;
    std::string_view flag;
    std::string_view body;
    Side side;
    // The request may be sent again (to another endpoint) when the route's retryOn covers it.
    bool retryable;
};

constexpr ErrorInfo describe(ProxyError e) {
    switch (e) {
        case ProxyError::none: return {200, "", "", Side::proxy, false};
        case ProxyError::no_route: return {404, "NR", "no route for this host\n", Side::proxy, false};
        case ProxyError::no_healthy_upstream: return {503, "UH", "no healthy upstream\n", Side::upstream, false};
        case ProxyError::connect_failure:
            return {503, "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure\n",
                    Side::upstream, true};
        // 503, as Envoy's router answers every reset before the response started (Istio's familiar
        // "503 UC upstream_reset_before_response_started{connection_termination}").
        case ProxyError::upstream_reset:
            return {503, "UC", "upstream connect error or disconnect/reset before headers. reset reason: connection termination\n",
                    Side::upstream, true};
        case ProxyError::refused_stream:
            return {503, "UC", "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset\n",
                    Side::upstream, true};
        case ProxyError::bad_request: return {400, "DPE", "malformed HTTP request\n", Side::downstream, false};
        case ProxyError::headers_too_large: return {431, "DPE", "request header fields too large\n", Side::downstream, false};
        case ProxyError::header_timeout: return {408, "", "request header timeout\n", Side::downstream, false};
        case ProxyError::method_not_allowed:
            return {405, "", "CONNECT is not supported by this proxy\n", Side::downstream, false};
        case ProxyError::upstream_timeout: return {504, "UT", "upstream request timeout\n", Side::upstream, true};
        // Envoy's stream idle and request timeouts: 408 while the request is still arriving, 504
        // once it is complete and the upstream is what is slow (Http::Utility::maybeRequestTimeoutCode).
        case ProxyError::stream_idle_timeout: return {408, "SI", "stream timeout\n", Side::downstream, false};
        case ProxyError::response_idle_timeout: return {504, "SI", "stream timeout\n", Side::upstream, false};
        case ProxyError::request_timeout: return {408, "", "request timeout\n", Side::downstream, false};
        case ProxyError::overflow:
            return {503, "UO", "upstream connect error or disconnect/reset before headers. reset reason: overflow\n",
                    Side::proxy, false};
        case ProxyError::rbac_denied: return {403, "RBAC", "RBAC: access denied", Side::proxy, false};  // Envoy's exact body
        case ProxyError::downstream_disconnect: return {0, "DC", "", Side::downstream, false};
        case ProxyError::upstream_mid_body: return {0, "UC", "", Side::upstream, false};
    }
    return {500, "", "internal error\n", Side::proxy, false};
}

// gRPC's status for an HTTP status the proxy answers with (Envoy's httpToGrpcStatus).
constexpr uint32_t grpc_status_for_http(uint32_t status) {
    switch (status) {
        case 400: return 13;  // INTERNAL
        case 401: return 16;  // UNAUTHENTICATED
        case 403: return 7;   // PERMISSION_DENIED
        case 404: return 12;  // UNIMPLEMENTED
        case 429: case 502: case 503: case 504: return 14;  // UNAVAILABLE
        default: return 2;    // UNKNOWN
    }
}

}  // namespace remora::proxy
