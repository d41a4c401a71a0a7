// Inbound AuthorizationPolicy enforcement, as Envoy's RBAC filter does it for Istio: the policies
// of a snapshot compiled once, then evaluated per request without allocating, locking or throwing.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/snapshot/snapshot.h"

namespace remora::proxy::authz {

// What a policy may look at in one request. Views: they must outlive evaluate().
class Request {
public:
    std::string_view method, path, host;  // path as sent; its query string is not matched
    // The peer's SPIFFE ID without "spiffe://" ("cluster.local/ns/default/sa/sleep"), proven by
    // mTLS; none for a plaintext peer, so principal and namespace rules never match it.
    std::optional<std::string_view> principal;
    std::optional<boost::asio::ip::address> source_ip;       // the connection's peer
    std::optional<boost::asio::ip::address> destination_ip;  // the original destination
    uint32_t destination_port = 0;                            // the original destination port
    // A TCP connection, not an HTTP request: HTTP attributes (hosts, methods, paths, headers) are
    // unknown, so a rule that needs one never matches in ALLOW and always in DENY, as Istio's.
    bool tcp = false;
    // A request header's value (the first, when repeated), or none when absent.
    virtual std::optional<std::string_view> header(std::string_view name) const = 0;

protected:
    ~Request() = default;
};

enum class Decision { allow, deny };

struct Result {
    Decision decision = Decision::allow;
    // The policy that decided ("name.namespace") and the index of its rule that matched; empty
    // (and -1) when the request was allowed because no ALLOW policy applies, or denied because
    // no ALLOW policy matched it.
    std::string_view policy;
    int rule = -1;
    // The first AUDIT policy that matched, if any (AUDIT never changes the decision).
    std::string_view audit_policy;
};

class Engine {
public:
    // Compiles every matcher. Throws std::invalid_argument naming the policy and field when a
    // value cannot be used (an IP block that is not an address or CIDR): start-up only.
    explicit Engine(const std::vector<snapshot::AuthzPolicy>& policies);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Istio's order: any matching DENY denies; else allow when no ALLOW policy applies; else
    // allow when one matches; else deny.
    Result evaluate(const Request& request) const noexcept;

    size_t policies() const;
    bool empty() const { return policies() == 0; }

    struct Policy;

private:
    std::vector<Policy> deny_, allow_, audit_;
};

// Istio's string match on a value: "abc" exact, "abc*" prefix, "*abc" suffix, "*" any value
// present. Compiles the pattern on each call: for tests, not for the request path.
bool istio_string_match(std::string_view pattern, std::string_view value, bool ignore_case = false);

}  // namespace remora::proxy::authz
