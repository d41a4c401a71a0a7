// Every response flag remora-proxy emits (proxy/request/error.h, request_path.cc), in words:
// what the client saw, the likely causes, and the command that checks each (docs/response-flags.md
// is the same table for readers).
#include <algorithm>
#include <cctype>
#include <sstream>

#include "control/explain/explain.h"

namespace remora::control::explain {

const std::vector<FlagDoc>& response_flags() {
    static const std::vector<FlagDoc> kFlags = {
        {"NR", "404",
         "No route: no virtual host for the request's Host, or no http[] rule of its VirtualService matches it.",
         {"a VirtualService whose rules all have match blocks (no catch-all last rule) and a request none of them takes",
          "a header, method, uri or queryParams match that differs in case or form from what the client sends",
          "a rule left out for this caller: its match blocks name another port, sourceLabels or sourceNamespace",
          "the Host header names no service the proxy knows"},
         {"remoractl explain --from POD URL [-H ...]   (each rule and why it did not match)",
          "remoractl proxy-config routes POD",
          "remoractl analyze DIR"}},
        {"UH", "503",
         "No healthy upstream: the destination cluster has no endpoint, or every endpoint is ejected by outlier detection.",
         {"no pod or WorkloadEntry matches the Service's selector (or none is registered yet)",
          "a DestinationRule subset whose labels select no endpoint",
          "a route to a subset no DestinationRule defines (the cluster does not exist)",
          "outlier detection ejected every endpoint (consecutive 5xx errors)"},
         {"remoractl explain --from POD URL --proxy-admin ADDR   (endpoints with their ejection state)",
          "remoractl proxy-config endpoints POD",
          "remoractl proxy-status",
          "curl -s 127.0.0.1:15000/clusters in the client's pod (health_flags /failed_outlier_check)"}},
        {"UF", "503",
         "Upstream connection failure: the TCP connect, the mTLS handshake or the peer identity check failed.",
         {"the endpoint's pod is gone or its port is closed (nothing listens on the app port)",
          "mTLS to a workload without a sidecar, or to a port whose PeerAuthentication is DISABLE",
          "the peer's certificate is not for the identity the endpoint was expected to have, or is from another trust domain",
          "connectTimeout (DestinationRule connectionPool.tcp) too short"},
         {"remoractl explain --from POD URL   (mTLS mode on both sides)",
          "remoractl proxy-config secret POD   (certificate validity)",
          "remoractl get peerauthentication -A",
          "curl -s 127.0.0.1:15000/stats in the client's pod (upstream_cx_connect_fail; remora_tls_handshake_fail_total by reason on 15090)"}},
        {"UC", "503",
         "Upstream connection termination: the upstream closed or reset the connection before a complete response header.",
         {"the server's sidecar refused plaintext under STRICT mTLS (a DestinationRule with tls mode DISABLE to a STRICT workload)",
          "the app crashed or closed the connection mid-request",
          "the app closed an idle keep-alive connection as it was reused (retried once by the proxy)"},
         {"remoractl explain --from POD URL   (client TLS mode against the server's PeerAuthentication)",
          "the server's proxy log: 'refused: plaintext under STRICT mTLS'; its /stats downstream_cx_refused_plaintext",
          "the app's own log"}},
        {"URX", "the last attempt's status",
         "Retry limit exceeded: the route's retries were used up and the last answer (or failure) went to the client. Appears with another flag (UF,URX) or alone on an upstream's 5xx.",
         {"every endpoint fails the same way (all down, all refusing)",
          "retries.attempts too low for a flaky upstream",
          "DestinationRule http.maxRetries or its retryBudget stopped retries"},
         {"remoractl explain --from POD URL   (the route's retries and the pool's maxRetries)",
          "curl -s 127.0.0.1:15000/stats in the client's pod (upstream_rq_retry, upstream_rq_retry_overflow)"}},
        {"UT", "504",
         "Upstream request timeout: no response header within the route's timeout (or the per-try timeout on the last try).",
         {"VirtualService http[].timeout shorter than the app needs",
          "retries.perTryTimeout shorter than the app needs",
          "an injected fault delay longer than the timeout",
          "the app is slow or stuck"},
         {"remoractl explain --from POD URL   (timeout, perTryTimeout, fault delay)",
          "remoractl get virtualservice NAME -o yaml"}},
        {"SI", "408 (or 504)",
         "Stream idle timeout: nothing moved on the request for the stream idle timeout: 408 while its body was arriving, 504 while waiting for the upstream's response header, a cut stream after that.",
         {"the client declared a body (Content-Length) and stopped sending it",
          "the app took longer than the stream idle timeout to answer, with no route timeout set",
          "the app stopped sending a response body half way"},
         {"the sidecar's log: \"stream idle timeout\" or \"within the stream idle timeout (SI)\" with the connection id",
          "curl -s 127.0.0.1:15000/stats (downstream_rq_idle_timeout) and /config_dump (stream_idle_timeout_s)",
          "remoractl explain --from POD URL   (whether a route timeout applies)"}},
        {"UO", "503",
         "Upstream overflow: a circuit breaker is open; the DestinationRule's connection pool limit was reached.",
         {"connectionPool.tcp.maxConnections reached",
          "connectionPool.http.http1MaxPendingRequests reached while waiting for a connection",
          "connectionPool.http.http2MaxRequests reached"},
         {"remoractl explain --from POD URL   (the connection pool limits)",
          "curl -s 127.0.0.1:15000/clusters in the client's pod (rq_active, rq_pending_active against the limits)",
          "curl -s 127.0.0.1:15000/stats (rq_flag_UO)"}},
        {"DC", "none (logged only)",
         "Downstream connection termination: the client went away before the response was complete.",
         {"the client's own timeout is shorter than the upstream's answer time",
          "the client was killed or cancelled the request"},
         {"the client's log and timeout settings", "remoractl trace REQUEST-ID LOG-FILE... (the request across sidecars)"}},
        {"DI", "the upstream's status",
         "Delay injected: a VirtualService fault delay held the request before forwarding it.",
         {"fault.delay on the matched http[] rule (often for a test user only)"},
         {"remoractl explain --from POD URL [-H ...]   (the matched rule's fault)", "remoractl get virtualservice -A"}},
        {"FI", "the fault's httpStatus",
         "Fault injected: a VirtualService fault abort answered instead of the upstream.",
         {"fault.abort on the matched http[] rule (percentage of requests)"},
         {"remoractl explain --from POD URL [-H ...]   (the matched rule's fault and its share)",
          "remoractl get virtualservice -A"}},
        {"RBAC", "403 (\"RBAC: access denied\")",
         "Denied by AuthorizationPolicy at the server's sidecar: a DENY policy matched, or ALLOW policies apply and none matched.",
         {"a DENY rule that matches the request (which policy and rule: explain says)",
          "an ALLOW policy for the workload that does not list this caller, path or method (default deny)",
          "the caller sent plaintext, so principals and namespaces never match"},
         {"remoractl explain --from POD URL [-X METHOD] [-H ...]   (the policy and rule, or the default)",
          "remoractl get authorizationpolicy -A",
          "curl -s 127.0.0.1:15000/stats in the server's pod (rbac_denied)"}},
        {"DPE", "400 or 431",
         "Downstream protocol error: the client's request was malformed or its header too large.",
         {"a client that does not speak HTTP/1.1 or HTTP/2 correctly",
          "request headers over the proxy's bound (60 KiB, Envoy's default; limits.max_request_header_bytes in /config_dump)"},
         {"curl -s 127.0.0.1:15000/stats (downstream_rq_bad_request, downstream_rq_headers_too_large)",
          "the client's request, e.g. with curl -v"}},
    };
    return kFlags;
}

const FlagDoc* find_flag(const std::string& flag) {
    std::string up = flag;
    for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (const FlagDoc& d : response_flags()) {
        if (d.flag == up) return &d;
    }
    return nullptr;
}

std::string render_flag(const FlagDoc& d) {
    std::ostringstream out;
    out << d.flag << " (" << d.status << "): " << d.meaning << "\n\nLikely causes:\n";
    for (const auto& c : d.causes) out << "  - " << c << "\n";
    out << "\nCheck with:\n";
    for (const auto& c : d.checks) out << "  " << c << "\n";
    return out.str();
}

}  // namespace remora::control::explain
