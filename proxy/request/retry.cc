// retryOn parsing and coverage.
#include "proxy/request/retry.h"

#include <algorithm>

namespace remora::proxy {

uint32_t parse_retry_on(std::string_view list) {
    uint32_t bits = 0;
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view t = list.substr(0, comma);
        while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
        while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
        if (t == "5xx") bits |= retry_on::k5xx;
        else if (t == "gateway-error") bits |= retry_on::gateway_error;
        else if (t == "reset") bits |= retry_on::reset;
        else if (t == "connect-failure") bits |= retry_on::connect_failure;
        else if (t == "retriable-4xx") bits |= retry_on::retriable_4xx;
        else if (t == "refused-stream") bits |= retry_on::refused_stream;
        else if (t == "retriable-status-codes") bits |= retry_on::retriable_status_codes;
        else if (t == "cancelled") bits |= retry_on::grpc_cancelled;
        else if (t == "deadline-exceeded") bits |= retry_on::grpc_deadline_exceeded;
        else if (t == "internal") bits |= retry_on::grpc_internal;
        else if (t == "resource-exhausted") bits |= retry_on::grpc_resource_exhausted;
        else if (t == "unavailable") bits |= retry_on::grpc_unavailable;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return bits;
}

bool retry_covers(const snapshot::RetryPolicy& p, const AttemptOutcome& o) {
    const uint32_t on = p.retry_on_bits;
    switch (o.failure) {
        case ProxyError::connect_failure:
            return on & (retry_on::connect_failure | retry_on::k5xx | retry_on::gateway_error | retry_on::reset);
        case ProxyError::refused_stream:
            return on & (retry_on::refused_stream | retry_on::k5xx | retry_on::reset);
        case ProxyError::upstream_reset:
        case ProxyError::upstream_timeout:
            // A per-try timeout is retried like a reset (Envoy retries it under 5xx and
            // gateway-error too).
            return on & (retry_on::reset | retry_on::k5xx | retry_on::gateway_error);
        case ProxyError::none: break;
        default: return false;
    }
    const uint32_t code = o.status;
    if ((on & retry_on::k5xx) && code >= 500) return true;
    if ((on & retry_on::gateway_error) && (code == 502 || code == 503 || code == 504)) return true;
    if ((on & retry_on::retriable_4xx) && code == 409) return true;
    if ((on & retry_on::retriable_status_codes) &&
        std::find(p.retriable_status_codes.begin(), p.retriable_status_codes.end(), code) !=
            p.retriable_status_codes.end()) {
        return true;
    }
    if (o.grpc_status) {
        switch (*o.grpc_status) {
            case 1: return on & retry_on::grpc_cancelled;
            case 4: return on & retry_on::grpc_deadline_exceeded;
            case 13: return on & retry_on::grpc_internal;
            case 8: return on & retry_on::grpc_resource_exhausted;
            case 14: return on & retry_on::grpc_unavailable;
            default: break;
        }
    }
    return false;
}

}  // namespace remora::proxy
