// Compiling AuthorizationPolicy rules into matchers, and evaluating them per request (no
// allocation, no lock: plain comparisons, no regex engine).
#include "proxy/authz/authz.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace remora::proxy::authz {

namespace {

using boost::asio::ip::address;

bool iequal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

bool same(std::string_view a, std::string_view b, bool ignore_case) {
    return ignore_case ? iequal(a, b) : a == b;
}

// Envoy's URI template on a path: {*} is one path segment (one or more characters, no '/'),
// {**} any rest (zero or more characters, '/' included); everything else is literal.
bool template_match(std::string_view t, std::string_view v) {
    while (!t.empty()) {
        if (t.starts_with("{**}")) {
            t.remove_prefix(4);
            for (size_t i = 0; i <= v.size(); ++i) {
                if (template_match(t, v.substr(i))) return true;
            }
            return false;
        }
        if (t.starts_with("{*}")) {
            t.remove_prefix(3);
            size_t segment = std::min(v.find('/'), v.size());
            for (size_t i = 1; i <= segment; ++i) {
                if (template_match(t, v.substr(i))) return true;
            }
            return false;
        }
        if (v.empty() || t.front() != v.front()) return false;
        t.remove_prefix(1);
        v.remove_prefix(1);
    }
    return v.empty();
}

// One value of a field, compiled: Istio's four forms, or a path template ({*}, {**}).
struct Pattern {
    enum class Kind { exact, prefix, suffix, present, path_template };
    Kind kind = Kind::exact;
    std::string value;
    bool ignore_case = false;

    bool matches(std::string_view v) const {
        switch (kind) {
            case Kind::present: return true;
            case Kind::exact: return same(v, value, ignore_case);
            case Kind::prefix: return v.size() >= value.size() && same(v.substr(0, value.size()), value, ignore_case);
            case Kind::suffix:
                return v.size() >= value.size() && same(v.substr(v.size() - value.size()), value, ignore_case);
            case Kind::path_template: return template_match(value, v);
        }
        return false;
    }
};

Pattern pattern(const std::string& text, bool ignore_case = false) {
    Pattern p;
    p.ignore_case = ignore_case;
    // "*" first, so the prefix and suffix forms are never empty (as Istio's matcher package).
    if (text == "*") {
        p.kind = Pattern::Kind::present;
    } else if (text.starts_with("*")) {
        p.kind = Pattern::Kind::suffix;
        p.value = text.substr(1);
    } else if (text.ends_with("*")) {
        p.kind = Pattern::Kind::prefix;
        p.value = text.substr(0, text.size() - 1);
    } else {
        p.value = text;
    }
    return p;
}

// Paths: Istio's forms, or an Envoy URI template when the value has {*} or {**}.
Pattern path_pattern(const std::string& text) {
    if (text.find("{*}") == std::string::npos && text.find("{**}") == std::string::npos) return pattern(text);
    Pattern p;
    p.kind = Pattern::Kind::path_template;
    p.value = text;
    return p;
}

struct Cidr {
    address net;
    unsigned bits = 0;

    bool contains(address a) const {
        if (a.is_v6() && a.to_v6().is_v4_mapped()) {
            a = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
        }
        if (a.is_v4() != net.is_v4()) return false;
        if (a.is_v4()) {
            uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
            return (a.to_v4().to_uint() & mask) == (net.to_v4().to_uint() & mask);
        }
        auto x = a.to_v6().to_bytes(), y = net.to_v6().to_bytes();
        unsigned left = bits;
        for (size_t i = 0; i < x.size() && left > 0; ++i) {
            unsigned take = std::min(left, 8u);
            auto mask = static_cast<unsigned char>(0xff << (8 - take));
            if ((x[i] & mask) != (y[i] & mask)) return false;
            left -= take;
        }
        return true;
    }
};

std::optional<Cidr> parse_cidr(const std::string& text) {
    size_t slash = text.find('/');
    boost::system::error_code ec;
    Cidr c;
    c.net = boost::asio::ip::make_address(text.substr(0, slash), ec);
    if (ec) return std::nullopt;
    unsigned max = c.net.is_v4() ? 32 : 128;
    c.bits = max;
    if (slash != std::string::npos) {
        std::string n = text.substr(slash + 1);
        if (n.empty() || n.size() > 3 || !std::all_of(n.begin(), n.end(), ::isdigit)) return std::nullopt;
        c.bits = static_cast<unsigned>(std::stoul(n));
        if (c.bits > max) return std::nullopt;
    }
    return c;
}

// The request attribute a clause reads.
enum class Attr {
    principal,
    source_namespace,
    source_service_account,  // "<namespace>/<name>"
    trust_domain,
    source_ip,
    destination_ip,
    destination_port,
    host,
    method,
    path,
    header,
    absent,   // never present here: JWT attributes (no RequestAuthentication in remora)
    unknown,  // not known to remora (connection.sni, experimental.*): matches only in DENY
};

// One field of a source, operation or condition: the attribute matches one of the values (or,
// negated, none of them). An absent attribute matches only negated fields, as Envoy's not_id.
struct Clause {
    Attr attr = Attr::unknown;
    bool negated = false;
    std::string header;  // Attr::header
    std::vector<Pattern> strings;
    std::vector<Cidr> cidrs;
    std::vector<uint32_t> ports;
};

using Conjunction = std::vector<Clause>;

struct Rule {
    std::vector<Conjunction> from, to;  // ORed; empty = any
    Conjunction when;
};

// SPIFFE ID path parts of a principal "td/ns/NS/sa/SA".
struct PrincipalParts {
    std::string_view trust_domain, ns;
    std::string_view service_account;  // "<ns>/sa/<sa>"
};

std::optional<PrincipalParts> split_principal(std::string_view p) {
    size_t slash = p.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    PrincipalParts parts;
    parts.trust_domain = p.substr(0, slash);
    std::string_view rest = p.substr(slash + 1);
    if (!rest.starts_with("ns/")) return std::nullopt;
    rest.remove_prefix(3);
    size_t sa = rest.find("/sa/");
    if (sa == std::string_view::npos || sa == 0) return std::nullopt;
    parts.ns = rest.substr(0, sa);
    parts.service_account = rest;
    return parts;
}

class Compiler {
public:
    explicit Compiler(const snapshot::AuthzPolicy& p) : policy_(p) {}

    void strings(Conjunction& out, Attr attr, const std::vector<std::string>& values, bool negated,
                 bool ignore_case = false, bool paths = false) {
        if (values.empty()) return;
        Clause c;
        c.attr = attr;
        c.negated = negated;
        for (const auto& v : values) c.strings.push_back(paths ? path_pattern(v) : pattern(v, ignore_case));
        out.push_back(std::move(c));
    }

    void cidrs(Conjunction& out, Attr attr, const std::vector<std::string>& values, bool negated,
               const char* field) {
        if (values.empty()) return;
        Clause c;
        c.attr = attr;
        c.negated = negated;
        for (const auto& v : values) {
            auto cidr = parse_cidr(v);
            if (!cidr) bad(field, v, "not an IP address or CIDR range");
            c.cidrs.push_back(*cidr);
        }
        out.push_back(std::move(c));
    }

    void ports(Conjunction& out, const std::vector<uint32_t>& values, bool negated) {
        if (values.empty()) return;
        Clause c;
        c.attr = Attr::destination_port;
        c.negated = negated;
        c.ports = values;
        out.push_back(std::move(c));
    }

    Conjunction source(const snapshot::AuthzSource& s) {
        Conjunction c;
        strings(c, Attr::principal, s.principals, false);
        strings(c, Attr::principal, s.not_principals, true);
        strings(c, Attr::absent, s.request_principals, false);
        strings(c, Attr::absent, s.not_request_principals, true);
        strings(c, Attr::source_namespace, s.namespaces, false);
        strings(c, Attr::source_namespace, s.not_namespaces, true);
        strings(c, Attr::trust_domain, s.trust_domains, false);
        strings(c, Attr::trust_domain, s.not_trust_domains, true);
        cidrs(c, Attr::source_ip, s.ip_blocks, false, "ipBlocks");
        cidrs(c, Attr::source_ip, s.not_ip_blocks, true, "notIpBlocks");
        // A sidecar trusts no X-Forwarded-For hop (numTrustedProxies 0): the remote address is
        // the connection's peer, as in Envoy.
        cidrs(c, Attr::source_ip, s.remote_ip_blocks, false, "remoteIpBlocks");
        cidrs(c, Attr::source_ip, s.not_remote_ip_blocks, true, "notRemoteIpBlocks");
        return c;
    }

    Conjunction operation(const snapshot::AuthzOperation& o) {
        Conjunction c;
        strings(c, Attr::host, o.hosts, false, true);
        strings(c, Attr::host, o.not_hosts, true, true);
        ports(c, o.ports, false);
        ports(c, o.not_ports, true);
        strings(c, Attr::method, o.methods, false);
        strings(c, Attr::method, o.not_methods, true);
        strings(c, Attr::path, o.paths, false, false, true);
        strings(c, Attr::path, o.not_paths, true, false, true);
        return c;
    }

    void condition(Conjunction& out, const snapshot::AuthzCondition& w) {
        const std::string& k = w.key;
        for (bool negated : {false, true}) {
            const auto& values = negated ? w.not_values : w.values;
            if (values.empty()) continue;
            if (k.starts_with("request.headers[") && k.ends_with("]")) {
                Clause c;
                c.attr = Attr::header;
                c.negated = negated;
                c.header = k.substr(16, k.size() - 17);
                for (char& ch : c.header) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                for (const auto& v : values) c.strings.push_back(pattern(v));
                out.push_back(std::move(c));
            } else if (k == "source.ip" || k == "remote.ip") {
                cidrs(out, Attr::source_ip, values, negated, k.c_str());
            } else if (k == "destination.ip") {
                cidrs(out, Attr::destination_ip, values, negated, k.c_str());
            } else if (k == "destination.port") {
                std::vector<uint32_t> ports_;
                for (const auto& v : values) {
                    if (v.empty() || v.size() > 5 || !std::all_of(v.begin(), v.end(), ::isdigit) || std::stoul(v) > 65535) {
                        bad(k.c_str(), v, "not a port number");
                    }
                    ports_.push_back(static_cast<uint32_t>(std::stoul(v)));
                }
                ports(out, ports_, negated);
            } else if (k == "source.namespace") {
                strings(out, Attr::source_namespace, values, negated);
            } else if (k == "source.principal") {
                strings(out, Attr::principal, values, negated);
            } else if (k == "source.serviceAccount") {
                strings(out, Attr::source_service_account, values, negated);
            } else if (k == "source.trustDomain") {
                strings(out, Attr::trust_domain, values, negated);
            } else if (k.starts_with("request.auth.")) {
                strings(out, Attr::absent, values, negated);
            } else {
                strings(out, Attr::unknown, values, negated);
            }
        }
    }

    Rule rule(const snapshot::AuthzRule& r) {
        Rule out;
        for (const auto& s : r.from) out.from.push_back(source(s));
        for (const auto& o : r.to) out.to.push_back(operation(o));
        for (const auto& w : r.when) condition(out.when, w);
        return out;
    }

private:
    [[noreturn]] void bad(const char* field, const std::string& value, const char* why) {
        throw std::invalid_argument("AuthorizationPolicy " + policy_.name + ": " + field + " \"" + value +
                                    "\": " + why);
    }
    const snapshot::AuthzPolicy& policy_;
};

struct Attributes {
    const Request& req;
    std::optional<PrincipalParts> parts;
    std::string_view path;  // without the query string
};

bool any_string(const Clause& c, std::string_view v) {
    for (const Pattern& p : c.strings) {
        if (p.matches(v)) return true;
    }
    return false;
}

// "<ns>/sa/<sa>" → does it equal "<ns>/<sa>" (a source.serviceAccount value)?
bool service_account_matches(const Clause& c, std::string_view ns_sa) {
    size_t sa = ns_sa.find("/sa/");
    std::string_view ns = ns_sa.substr(0, sa), name = ns_sa.substr(sa + 4);
    for (const Pattern& p : c.strings) {
        std::string_view v = p.value;
        if (p.kind == Pattern::Kind::present) return true;
        size_t slash = v.find('/');
        if (p.kind == Pattern::Kind::exact && slash != std::string_view::npos && v.substr(0, slash) == ns &&
            v.substr(slash + 1) == name) {
            return true;
        }
    }
    return false;
}

bool clause_matches(const Clause& c, const Attributes& a, bool unknown_matches) {
    const Request& r = a.req;
    std::optional<bool> hit;  // none: the attribute is absent
    if (r.tcp && (c.attr == Attr::host || c.attr == Attr::method || c.attr == Attr::path ||
                  c.attr == Attr::header)) {
        return unknown_matches;
    }
    switch (c.attr) {
        case Attr::principal:
            if (r.principal) hit = any_string(c, *r.principal);
            break;
        case Attr::source_namespace:
            if (a.parts) hit = any_string(c, a.parts->ns);
            break;
        case Attr::source_service_account:
            if (a.parts) hit = service_account_matches(c, a.parts->service_account);
            break;
        case Attr::trust_domain:
            if (a.parts) hit = any_string(c, a.parts->trust_domain);
            break;
        case Attr::source_ip:
        case Attr::destination_ip: {
            const auto& ip = c.attr == Attr::source_ip ? r.source_ip : r.destination_ip;
            if (ip) {
                hit = std::any_of(c.cidrs.begin(), c.cidrs.end(), [&](const Cidr& x) { return x.contains(*ip); });
            }
            break;
        }
        case Attr::destination_port:
            if (r.destination_port) {
                hit = std::find(c.ports.begin(), c.ports.end(), r.destination_port) != c.ports.end();
            }
            break;
        case Attr::host: hit = any_string(c, r.host); break;
        case Attr::method: hit = any_string(c, r.method); break;
        case Attr::path: hit = any_string(c, a.path); break;
        case Attr::header:
            if (auto v = r.header(c.header)) hit = any_string(c, *v);
            break;
        case Attr::absent: break;
        case Attr::unknown: return unknown_matches;
    }
    if (!hit) return c.negated;
    return c.negated ? !*hit : *hit;
}

bool all_match(const Conjunction& conj, const Attributes& a, bool unknown_matches) {
    for (const Clause& c : conj) {
        if (!clause_matches(c, a, unknown_matches)) return false;
    }
    return true;
}

bool one_matches(const std::vector<Conjunction>& any, const Attributes& a, bool unknown_matches) {
    if (any.empty()) return true;
    for (const Conjunction& c : any) {
        if (all_match(c, a, unknown_matches)) return true;
    }
    return false;
}

}  // namespace

struct Engine::Policy {
    std::string name;
    std::vector<Rule> rules;
    bool unknown_matches = false;  // DENY: an attribute remora cannot know counts as matching

    // The index of the first matching rule, or -1.
    int match(const Attributes& a) const {
        for (size_t i = 0; i < rules.size(); ++i) {
            const Rule& r = rules[i];
            if (one_matches(r.from, a, unknown_matches) && one_matches(r.to, a, unknown_matches) &&
                all_match(r.when, a, unknown_matches)) {
                return static_cast<int>(i);
            }
        }
        return -1;
    }
};

Engine::Engine(const std::vector<snapshot::AuthzPolicy>& policies) {
    for (const snapshot::AuthzPolicy& p : policies) {
        Policy compiled;
        compiled.name = p.name;
        compiled.unknown_matches = p.action == "DENY";
        Compiler c(p);
        for (const auto& r : p.rules) compiled.rules.push_back(c.rule(r));
        if (p.action == "DENY") deny_.push_back(std::move(compiled));
        else if (p.action == "ALLOW") allow_.push_back(std::move(compiled));
        else if (p.action == "AUDIT") audit_.push_back(std::move(compiled));
        else throw std::invalid_argument("AuthorizationPolicy " + p.name + ": action " + p.action + " is not enforced by the proxy");
    }
}

Engine::~Engine() = default;

size_t Engine::policies() const { return deny_.size() + allow_.size() + audit_.size(); }

Result Engine::evaluate(const Request& request) const noexcept {
    Attributes a{request, std::nullopt, request.path.substr(0, request.path.find_first_of("?#"))};
    if (request.principal) {
        a.parts = split_principal(*request.principal);
    }
    Result out;
    for (const Policy& p : audit_) {
        if (p.match(a) >= 0) {
            out.audit_policy = p.name;
            break;
        }
    }
    for (const Policy& p : deny_) {
        if (int rule = p.match(a); rule >= 0) {
            out.decision = Decision::deny;
            out.policy = p.name;
            out.rule = rule;
            return out;
        }
    }
    if (allow_.empty()) return out;
    for (const Policy& p : allow_) {
        if (int rule = p.match(a); rule >= 0) {
            out.policy = p.name;
            out.rule = rule;
            return out;
        }
    }
    out.decision = Decision::deny;
    return out;
}

bool istio_string_match(std::string_view pattern_text, std::string_view value, bool ignore_case) {
    return pattern(std::string(pattern_text), ignore_case).matches(value);
}

}  // namespace remora::proxy::authz
