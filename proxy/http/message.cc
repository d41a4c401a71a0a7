// Hop-by-hop stripping and the gRPC helpers over the protocol-neutral heads.
#include "proxy/http/message.h"

#include <array>
#include <vector>

namespace remora::proxy::http {

namespace {

constexpr std::array<std::string_view, 6> kAlwaysHopByHop = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    "proxy-authorization"};

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Calls f on every comma-separated, trimmed, non-empty token of s.
template <class F>
void for_each_token(std::string_view s, F&& f) {
    while (!s.empty()) {
        auto comma = s.find(',');
        auto token = trim(s.substr(0, comma));
        if (!token.empty()) f(token);
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
}

}  // namespace

bool is_connection_specific(std::string_view name) noexcept {
    return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
           name == "transfer-encoding" || name == "upgrade";
}

std::size_t strip_hop_by_hop(HeaderMap& headers) {
    // Tokens named in Connection first, before the Connection fields themselves go.
    std::vector<std::string> named;
    for (const auto& e : headers)
        if (e.name == "connection") for_each_token(e.value, [&](std::string_view t) {
                named.push_back(to_lower(t));
            });
    std::size_t removed = 0;
    for (auto name : kAlwaysHopByHop) removed += headers.remove(name);
    for (const auto& n : named) {
        if (n == "te") continue;  // te follows its own rule below
        removed += headers.remove(n);
    }
    // te: only "trailers" may cross a proxy (gRPC relies on it).
    bool te_trailers = false;
    bool te_present = false;
    for (const auto& e : headers) {
        if (e.name != "te") continue;
        te_present = true;
        for_each_token(e.value, [&](std::string_view t) {
            auto semi = t.find(';');
            if (iequals(trim(t.substr(0, semi)), "trailers")) te_trailers = true;
        });
    }
    if (te_present) {
        removed += headers.remove("te");
        if (te_trailers) {
            headers.add("te", "trailers");
            --removed;
        }
    }
    return removed;
}

bool is_grpc(const RequestHead& head) noexcept {
    auto ct = head.headers.get("content-type");
    if (!ct) return false;
    constexpr std::string_view grpc = "application/grpc";
    if (ct->size() < grpc.size() || !iequals(ct->substr(0, grpc.size()), grpc)) return false;
    // application/grpc, application/grpc+proto, application/grpc;charset=…, not application/grpcx
    return ct->size() == grpc.size() || (*ct)[grpc.size()] == '+' || (*ct)[grpc.size()] == ';';
}

std::optional<uint64_t> parse_grpc_timeout_ms(std::string_view value) noexcept {
    if (value.size() < 2 || value.size() > kMaxGrpcTimeoutDigits + 1) return std::nullopt;
    uint64_t n = 0;
    for (char c : value.substr(0, value.size() - 1)) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + uint64_t(c - '0');
    }
    auto ceil_div = [](uint64_t a, uint64_t b) { return (a + b - 1) / b; };
    switch (value.back()) {
        case 'H': return n * 3600 * 1000;
        case 'M': return n * 60 * 1000;
        case 'S': return n * 1000;
        case 'm': return n;
        case 'u': return ceil_div(n, 1000);
        case 'n': return ceil_div(n, 1000 * 1000);
        default: return std::nullopt;
    }
}

}  // namespace remora::proxy::http
