// Envoy's retry conditions (x-envoy-retry-on, Istio's retryOn), parsed once when the route table
// is built, and the question each attempt asks: does the policy cover how it went?
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "proxy/request/error.h"
#include "proxy/snapshot/snapshot.h"

namespace remora::proxy {

namespace retry_on {
inline constexpr uint32_t k5xx = 1u << 0;
inline constexpr uint32_t gateway_error = 1u << 1;
inline constexpr uint32_t reset = 1u << 2;
inline constexpr uint32_t connect_failure = 1u << 3;
inline constexpr uint32_t retriable_4xx = 1u << 4;
inline constexpr uint32_t refused_stream = 1u << 5;
inline constexpr uint32_t retriable_status_codes = 1u << 6;
inline constexpr uint32_t grpc_cancelled = 1u << 7;
inline constexpr uint32_t grpc_deadline_exceeded = 1u << 8;
inline constexpr uint32_t grpc_internal = 1u << 9;
inline constexpr uint32_t grpc_resource_exhausted = 1u << 10;
inline constexpr uint32_t grpc_unavailable = 1u << 11;
}  // namespace retry_on

// The bits of a retryOn list ("5xx,connect-failure,unavailable"); unknown tokens are ignored,
// as Envoy ignores them.
uint32_t parse_retry_on(std::string_view list);

// How one attempt ended: a failure before the response head, or a response (its status and,
// for gRPC, the grpc-status it carried in its head).
struct AttemptOutcome {
    ProxyError failure = ProxyError::none;
    uint32_t status = 0;
    std::optional<uint32_t> grpc_status;

    AttemptOutcome() = default;
    AttemptOutcome(ProxyError f) : failure(f) {}  // NOLINT: a failure before any response
    AttemptOutcome(ProxyError f, uint32_t s, std::optional<uint32_t> g) : failure(f), status(s), grpc_status(g) {}
};

bool retry_covers(const snapshot::RetryPolicy& policy, const AttemptOutcome& outcome);

}  // namespace remora::proxy
