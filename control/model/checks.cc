// Istio's value checks for hosts, names, labels, regexes (RE2), retry conditions and addresses;
// Go/Istio duration parsing.
#include "control/model/checks.h"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace remora::control::model {

std::optional<Duration> parse_duration(const std::string& text) {
    // Go's time.ParseDuration: [-+]? (number unit)+, unit in ns us µs ms s m h; "0" alone is 0.
    std::string_view s = text;
    bool negative = false;
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
        negative = s.front() == '-';
        s.remove_prefix(1);
    }
    if (s == "0") return Duration(0);
    if (s.empty()) return std::nullopt;
    long double total = 0;
    while (!s.empty()) {
        std::size_t n = 0;
        while (n < s.size() && (std::isdigit(static_cast<unsigned char>(s[n])) || s[n] == '.'))
            ++n;
        if (n == 0) return std::nullopt;
        std::string number(s.substr(0, n));
        if (std::count(number.begin(), number.end(), '.') > 1 || number == ".") return std::nullopt;
        s.remove_prefix(n);
        std::size_t u = 0;
        while (u < s.size() && !std::isdigit(static_cast<unsigned char>(s[u])) && s[u] != '.')
            ++u;
        std::string_view unit = s.substr(0, u);
        s.remove_prefix(u);
        long double scale = 0;
        if (unit == "ns") {
            scale = 1;
        } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
            scale = 1e3;
        } else if (unit == "ms") {
            scale = 1e6;
        } else if (unit == "s") {
            scale = 1e9;
        } else if (unit == "m") {
            scale = 60e9;
        } else if (unit == "h") {
            scale = 3600e9;
        } else {
            return std::nullopt;
        }
        // strtold, not stold: a thousand digits are out of range, which stold throws for.
        long double value = std::strtold(number.c_str(), nullptr);
        if (!std::isfinite(value)) return std::nullopt;
        total += value * scale;
    }
    if (!(total <= 9.2e18L)) return std::nullopt;
    auto ns = static_cast<int64_t>(std::llround(total));
    return Duration(negative ? -ns : ns);
}

namespace detail {

namespace {

bool is_alnum_lower(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_alnum_any(char c) {
    return is_alnum_lower(c) || (c >= 'A' && c <= 'Z');
}

// DNS-1123 label allowing uppercase (Istio's host checks lowercase nothing).
bool is_host_label(std::string_view s) {
    if (s.empty() || s.size() > 63) return false;
    if (!is_alnum_any(s.front()) || !is_alnum_any(s.back())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c == '-' || is_alnum_any(c); });
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        std::size_t at = s.find(sep, start);
        parts.push_back(s.substr(start, at == std::string_view::npos ? at : at - start));
        if (at == std::string_view::npos) return parts;
        start = at + 1;
    }
}

std::string labels_problem(std::string_view host, std::string_view rest) {
    if (rest.size() > 1 && rest.back() == '.') rest.remove_suffix(1);  // one trailing dot
    auto labels = split(rest, '.');
    for (auto l : labels) {
        if (!is_host_label(l)) {
            return "domain name \"" + std::string(host) + "\" invalid (label \"" + std::string(l) +
                   "\" invalid)";
        }
    }
    const auto& top = labels.back();
    if (std::all_of(top.begin(), top.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return "domain name \"" + std::string(host) + "\" invalid (top level domain \"" +
               std::string(top) + "\" cannot be all-numeric)";
    }
    return "";
}

std::string preconditions(std::string_view host) {
    if (host.empty()) return "empty domain name not allowed";
    if (host.size() > 255) return "domain name \"" + std::string(host) + "\" too long (max 255)";
    return "";
}

}  // namespace

bool is_dns1123_label(std::string_view s) {
    if (s.empty() || s.size() > 63) return false;
    if (!is_alnum_lower(s.front()) || !is_alnum_lower(s.back())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c == '-' || is_alnum_lower(c); });
}

bool is_dns1123_subdomain(std::string_view s) {
    if (s.empty() || s.size() > 253) return false;
    auto labels = split(s, '.');
    return std::all_of(labels.begin(), labels.end(),
                       [](std::string_view l) { return is_dns1123_label(l); });
}

std::string wildcard_domain_problem(std::string_view host) {
    if (auto p = preconditions(host); !p.empty()) return p;
    std::size_t dot = host.find('.');
    std::string_view first = host.substr(0, dot);
    std::string_view first_rest = first;
    if (first_rest.starts_with("*-")) {
        first_rest.remove_prefix(2);
    } else if (first_rest.starts_with('*')) {
        first_rest.remove_prefix(1);
    }
    bool ok = first.size() <= 63 && (first == "*" || is_host_label(first_rest));
    if (!ok) {
        return "domain name \"" + std::string(host) + "\" invalid (label \"" + std::string(first) +
               "\" invalid)";
    }
    if (dot == std::string_view::npos) return "";
    return labels_problem(host, host.substr(dot + 1));
}

namespace {

// validateSidecarOrGatewayHostnamePart.
void host_part_problems(std::string_view host, bool gateway, std::vector<std::string>& out) {
    if (host != "*" && host.find('.') == std::string_view::npos) {
        out.push_back("short names (non FQDN) are not allowed");
    }
    if (auto p = wildcard_domain_problem(host); !p.empty()) {
        // A Gateway also takes an IP here (upstream says it twice for a sidecar: once here).
        if (!gateway || !is_ip(host)) out.push_back(p);
    }
    if (host.find('*') != std::string_view::npos && host.size() != 1 && !host.starts_with("*.")) {
        out.push_back("partial wildcard \"" + std::string(host) + "\" not allowed");
    }
}

}  // namespace

std::vector<std::string> namespace_host_problems(std::string_view host, bool gateway) {
    std::vector<std::string> out;
    auto slash = host.find('/');
    if (slash == std::string_view::npos) {
        if (gateway) {
            host_part_problems(host, true, out);
        } else {
            out.push_back("host must be of form namespace/dnsName");
        }
        return out;
    }
    std::string_view ns = host.substr(0, slash), name = host.substr(slash + 1);
    if (ns.empty() || name.empty()) {
        out.push_back("config namespace and dnsName in host entry cannot be empty");
    }
    if (!gateway) {
        std::string_view bare = ns.starts_with('~') ? ns.substr(1) : ns;
        if (!bare.empty() && bare != "*" && bare != "." && !is_dns1123_label(bare)) {
            out.push_back("invalid namespace value \"" + std::string(ns) + "\" in sidecar");
        }
    } else if (ns != "*" && ns != "." && !is_dns1123_label(ns)) {
        out.push_back("invalid namespace value \"" + std::string(ns) + "\" in gateway");
    }
    host_part_problems(name, gateway, out);
    return out;
}

std::string unix_address_problem(std::string_view path) {
    if (path.empty()) return "unix address must not be empty";
    if (path.starts_with('@')) return "";  // abstract socket
    if (!path.starts_with('/') || path.ends_with('/')) {
        return std::string(path) + " is not an absolute path to a file";
    }
    return "";
}

std::string fqdn_problem(std::string_view host) {
    if (auto p = preconditions(host); !p.empty()) return p;
    return labels_problem(host, host);
}

std::string label_problem(std::string_view key, std::string_view value) {
    // Key: [prefix/]name; prefix a DNS-1123 subdomain, name 1-63 of [A-Za-z0-9_.-], alnum ends.
    auto name_ok = [](std::string_view n) {
        if (n.empty() || n.size() > 63) return false;
        if (!is_alnum_any(n.front()) || !is_alnum_any(n.back())) return false;
        return std::all_of(n.begin(), n.end(), [](char c) {
            return is_alnum_any(c) || c == '-' || c == '_' || c == '.';
        });
    };
    std::string_view name = key;
    if (auto slash = key.find('/'); slash != std::string_view::npos) {
        std::string_view prefix = key.substr(0, slash);
        name = key.substr(slash + 1);
        if (!is_dns1123_subdomain(prefix)) {
            return "invalid label key \"" + std::string(key) + "\" (prefix is not a DNS name)";
        }
    }
    if (!name_ok(name)) return "invalid label key \"" + std::string(key) + "\"";
    if (!value.empty() && !name_ok(value)) {
        return "invalid label value \"" + std::string(value) + "\" for key \"" + std::string(key) +
               "\"";
    }
    return "";
}

std::string regex_problem(const std::string& re) {
    if (re.size() > 1024) return "regex is too large, max length allowed is 1024";
    RE2::Options options;
    options.set_log_errors(false);
    RE2 compiled(re, options);
    if (compiled.ok()) return "";
    return "invalid regex " + std::string("\"") + re + "\": " + compiled.error() +
           "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)";
}

bool is_retry_condition(std::string_view token) {
    static constexpr std::array<std::string_view, 16> kConditions = {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    };
    if (std::find(kConditions.begin(), kConditions.end(), token) != kConditions.end()) return true;
    // Istio accepts a token that Go's http.StatusText knows; we accept codes 100..599.
    int code = 0;
    auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), code);
    return ec == std::errc() && end == token.data() + token.size() && code >= 100 && code <= 599;
}

bool is_ip(std::string_view s) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(std::string(s), ec);
    return !ec;
}

bool is_ip_or_cidr(std::string_view s) {
    auto slash = s.find('/');
    if (slash == std::string_view::npos) return is_ip(s);
    std::string_view addr = s.substr(0, slash), bits = s.substr(slash + 1);
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(std::string(addr), ec);
    if (ec) return false;
    int n = -1;
    auto [end, err] = std::from_chars(bits.data(), bits.data() + bits.size(), n);
    if (err != std::errc() || end != bits.data() + bits.size() || bits.empty()) return false;
    return n >= 0 && n <= (a.is_v4() ? 32 : 128);
}

bool is_protocol(std::string_view s) {
    static constexpr std::array<std::string_view, 11> kProtocols = {
        "HTTP",  "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO",
        "MYSQL", "REDIS", "TCP",  "TLS",      "UDP"};
    std::string upper(s);
    for (char& c : upper)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return std::find(kProtocols.begin(), kProtocols.end(), upper) != kProtocols.end();
}

std::string ascii_upper(std::string s) {
    for (char& c : s)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

bool is_tls_protocol(std::string_view p) {
    const std::string u = ascii_upper(std::string(p));
    return u == "HTTPS" || u == "TLS";
}

bool is_valid_cipher_suite(std::string_view cs) {
    // istio/istio pkg/config/security/security.go ValidCipherSuites, "extracted from
    // `bssl ciphers -openssl-name ALL | rg -v PSK`": the suites BoringSSL, Envoy's TLS library,
    // accepts in Gateway servers' tls.cipherSuites; Istio drops the others before Envoy NACKs.
    static constexpr std::string_view kSuites[] = {
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",             "AES256-GCM-SHA384",
        "AES128-SHA",                    "AES256-SHA",
        "DES-CBC3-SHA",
    };
    if (cs.empty() || cs == "ALL") return true;
    // Not checked further upstream either: "-", "+" and "[" operators of BoringSSL's syntax.
    if (!std::isalnum(static_cast<unsigned char>(cs[0]))) return true;
    return std::find(std::begin(kSuites), std::end(kSuites), cs) != std::end(kSuites);
}

}  // namespace detail

}  // namespace remora::control::model
