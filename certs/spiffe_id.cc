// SPIFFE-ID parsing per https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md.
#include "certs/spiffe_id.h"

#include <vector>

namespace remora::certs {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxLength = 2048;

bool is_td_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool is_path_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

error_code validate_path(std::string_view path) {
    if (path.empty()) return {};
    // path starts with '/'; walk its segments.
    size_t pos = 0;
    while (pos < path.size()) {
        size_t next = path.find('/', pos + 1);
        std::string_view seg = path.substr(
            pos + 1, next == std::string_view::npos ? std::string_view::npos : next - pos - 1);
        if (seg.empty()) {
            return next == std::string_view::npos ? make_reason(SpiffeIdErrc::trailing_slash)
                                                  : make_reason(SpiffeIdErrc::empty_segment);
        }
        if (seg == "." || seg == "..") return make_reason(SpiffeIdErrc::dot_segment);
        for (char c : seg) {
            if (c == '?' || c == '#') return make_reason(SpiffeIdErrc::query_or_fragment);
            if (!is_path_char(c)) return make_reason(SpiffeIdErrc::bad_path_char);
        }
        if (next == std::string_view::npos) break;
        pos = next;
    }
    return {};
}

std::optional<std::string> ns_sa_part(const std::string& path, int index) {
    // /ns/<ns>/sa/<sa>
    std::vector<std::string_view> parts;
    std::string_view rest(path);
    while (!rest.empty()) {
        rest.remove_prefix(1);
        size_t slash = rest.find('/');
        parts.push_back(rest.substr(0, slash));
        rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    }
    if (parts.size() != 4 || parts[0] != "ns" || parts[2] != "sa") return std::nullopt;
    return std::string(parts[static_cast<size_t>(index)]);
}

}  // namespace

error_code validate_trust_domain(std::string_view td) {
    if (td.empty()) return make_reason(SpiffeIdErrc::empty_trust_domain);
    for (char c : td) {
        if (c == ':' || c == '@') return make_reason(SpiffeIdErrc::port_or_userinfo);
        if (c == '?' || c == '#') return make_reason(SpiffeIdErrc::query_or_fragment);
        if (!is_td_char(c)) return make_reason(SpiffeIdErrc::bad_trust_domain_char);
    }
    return {};
}

Result<SpiffeId> SpiffeId::parse(std::string_view uri) {
    if (uri.empty()) return make_reason(SpiffeIdErrc::empty);
    if (uri.size() > kMaxLength) return make_reason(SpiffeIdErrc::too_long);
    if (!uri.starts_with(kScheme)) return make_reason(SpiffeIdErrc::wrong_scheme);
    std::string_view rest = uri.substr(kScheme.size());
    size_t slash = rest.find('/');
    std::string_view td = rest.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (error_code ec = validate_trust_domain(td)) return ec;
    if (error_code ec = validate_path(path)) return ec;
    return SpiffeId(std::string(td), std::string(path));
}

Result<SpiffeId> SpiffeId::for_service_account(std::string_view trust_domain, std::string_view ns,
                                               std::string_view sa) {
    // A '/' inside a name would parse as more segments: a valid SPIFFE ID, but not this identity.
    if (ns.find('/') != std::string_view::npos || sa.find('/') != std::string_view::npos) {
        return make_reason(SpiffeIdErrc::bad_path_char);
    }
    std::string uri;
    uri.reserve(kScheme.size() + trust_domain.size() + ns.size() + sa.size() + 8);
    uri.append(kScheme).append(trust_domain).append("/ns/").append(ns).append("/sa/").append(sa);
    return parse(uri);
}

std::optional<std::string> SpiffeId::ns() const {
    return ns_sa_part(path_, 1);
}
std::optional<std::string> SpiffeId::service_account() const {
    return ns_sa_part(path_, 3);
}

}  // namespace remora::certs
