// Route table indexes and Istio's HTTP match semantics.
#include "proxy/routing/route_table.h"

#include "proxy/request/retry.h"
#include "proxy/routing/resolve.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <mutex>
#include <stdexcept>

namespace remora::proxy {

namespace snap = snapshot;

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

struct RouteTable::Matcher {
    snap::StringMatcher spec;
    std::unique_ptr<re2::RE2> re;

    explicit Matcher(const snap::StringMatcher& m, const std::string& where) : spec(m) {
        if (m.kind == snap::StringMatcher::Kind::regex) {
            re2::RE2::Options opts;
            opts.set_log_errors(false);
            opts.set_case_sensitive(!m.ignore_case);
            re = std::make_unique<re2::RE2>(m.value, opts);
            if (!re->ok()) throw std::invalid_argument(where + ": regex \"" + m.value + "\": " + re->error());
        }
    }
    bool matches(std::string_view v) const {
        switch (spec.kind) {
            case snap::StringMatcher::Kind::exact:
                return spec.ignore_case ? iequal(v, spec.value) : v == spec.value;
            case snap::StringMatcher::Kind::prefix:
                return v.size() >= spec.value.size() &&
                       (spec.ignore_case ? iequal(v.substr(0, spec.value.size()), spec.value)
                                         : v.substr(0, spec.value.size()) == spec.value);
            case snap::StringMatcher::Kind::regex:
                return re2::RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *re);
        }
        return false;
    }
};

struct RouteTable::CompiledBlock {
    std::optional<Matcher> uri, scheme, method, authority;
    std::vector<std::pair<std::string, Matcher>> headers, without_headers, query_params;
};

struct RouteTable::CompiledRoute {
    const snap::Route* route;
    std::vector<CompiledBlock> blocks;
};

struct RouteTable::Targets {
    std::once_flag made;
    std::vector<UpstreamTarget> targets;
};

RouteTable::RouteTable(snap::Snapshot s, std::shared_ptr<ClusterStates> states)
    : snapshot_(std::move(s)), states_(states ? std::move(states) : std::make_shared<ClusterStates>()) {
    std::vector<std::string> names;
    for (const snap::Cluster& c : snapshot_.clusters) {
        clusters_.emplace(c.name, &c);
        names.push_back(c.name);
        health_.emplace(&c, std::make_unique<ClusterHealth>(c, states_->cluster(c.name), states_));
        targets_.emplace(&c, std::make_unique<Targets>());
        const snap::LoadBalancer& lb = c.load_balancer;
        if (!lb.hash_header.empty() || !lb.hash_cookie.empty() || !lb.hash_query_parameter.empty() ||
            lb.hash_source_ip) {
            rings_.emplace(&c, HashRing(c.endpoints));
        }
    }
    // retryOn is parsed here, once, not per attempt.
    for (snap::VirtualHost& vh : snapshot_.virtual_hosts) {
        for (snap::Route& r : vh.routes) r.retries.retry_on_bits = parse_retry_on(r.retries.retry_on);
    }
    // The clusters without a subset by the virtual host they serve ("host:port"), built once:
    // looking for them per virtual host made building the table quadratic (40,000 services
    // took minutes).
    std::unordered_map<std::string, std::vector<const snap::Cluster*>> by_service_port;
    for (const snap::Cluster& c : snapshot_.clusters) {
        if (c.subset.empty()) by_service_port[c.service_host + ":" + std::to_string(c.port)].push_back(&c);
    }
    by_domain_.reserve(snapshot_.virtual_hosts.size() * 4);
    routes_.reserve(snapshot_.virtual_hosts.size());
    for (const snap::VirtualHost& vh : snapshot_.virtual_hosts) {
        if (vh.protocol.empty() || vh.protocol == "HTTP" || vh.protocol == "HTTP2" || vh.protocol == "GRPC" ||
            vh.protocol == "GRPC-Web") {
            const size_t colon = vh.name.rfind(':');
            unsigned port = 0;
            if (colon != std::string::npos &&
                std::from_chars(vh.name.data() + colon + 1, vh.name.data() + vh.name.size(), port).ec == std::errc{} &&
                port > 0 && port < 65536) {
                http_ports_.insert(static_cast<uint16_t>(port));
            }
        }
        for (const std::string& d : vh.domains) {
            by_domain_.emplace(lower(d), &vh);
            if (d.size() > 1 && d[0] == '*') wildcard_domains_.emplace_back(lower(d.substr(1)), &vh);
            // Literal addresses with a port also serve the capture decision.
            boost::system::error_code ec;
            size_t colon = d.rfind(':');
            if (colon != std::string::npos) {
                boost::asio::ip::make_address(d.substr(0, colon), ec);
                if (!ec) by_address_.emplace(d, &vh);
            }
        }
        // An endpoint dialled directly (pod IP:port) belongs to this service port too.
        if (auto it = by_service_port.find(vh.name); it != by_service_port.end()) {
            for (const snap::Cluster* c : it->second) {
                for (const snap::Endpoint& e : c->endpoints) {
                    by_address_.emplace(e.address + ":" + std::to_string(e.port), &vh);
                }
            }
        }
        auto& compiled = routes_[&vh];
        for (const snap::Route& r : vh.routes) {
            CompiledRoute cr{&r, {}};
            const std::string where = vh.name + " route " + r.name;
            for (const snap::RouteMatch& m : r.matches) {
                CompiledBlock b;
                if (m.uri) b.uri.emplace(*m.uri, where);
                if (m.scheme) b.scheme.emplace(*m.scheme, where);
                if (m.method) b.method.emplace(*m.method, where);
                if (m.authority) b.authority.emplace(*m.authority, where);
                for (const auto& [k, v] : m.headers) b.headers.emplace_back(lower(k), Matcher(v, where));
                for (const auto& [k, v] : m.without_headers) b.without_headers.emplace_back(lower(k), Matcher(v, where));
                for (const auto& [k, v] : m.query_params) b.query_params.emplace_back(k, Matcher(v, where));
                cr.blocks.push_back(std::move(b));
            }
            compiled.push_back(std::move(cr));
        }
    }
    std::stable_sort(wildcard_domains_.begin(), wildcard_domains_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    // Only now that the table is good: state of clusters and endpoints gone from it is forgotten.
    states_->retain(names);
    for (const auto& [c, h] : health_) h->retain_endpoints();
}

RouteTable::~RouteTable() = default;

const UpstreamTarget& RouteTable::target(const snap::Cluster& c, size_t index) const {
    Targets& t = *targets_.at(&c);
    std::call_once(t.made, [&] {
        t.targets.reserve(c.endpoints.size());
        for (size_t i = 0; i < c.endpoints.size(); ++i) t.targets.push_back(target_for(c, i));
    });
    return t.targets.at(index);
}

const snap::VirtualHost* RouteTable::find_host(std::string_view host) const {
    std::string h = lower(host);
    auto it = by_domain_.find(h);
    if (it != by_domain_.end()) return it->second;
    // A wildcard host ("*.example.com", "*.example.com:443"): the longest suffix that leaves at
    // least one character before it, as Envoy matches virtual host domains.
    for (const auto& [suffix, vh] : wildcard_domains_) {
        if (h.size() > suffix.size() && h.ends_with(suffix)) return vh;
    }
    return nullptr;
}

const snap::VirtualHost* RouteTable::find_address(const boost::asio::ip::tcp::endpoint& dst) const {
    auto it = by_address_.find(dst.address().to_string() + ":" + std::to_string(dst.port()));
    return it == by_address_.end() ? nullptr : it->second;
}

ClusterState& RouteTable::state(const snap::Cluster& c) const { return health_.at(&c)->state(); }

const ClusterHealth& RouteTable::health(const snap::Cluster& c) const { return *health_.at(&c); }

const HashRing* RouteTable::ring(const snap::Cluster& c) const {
    auto it = rings_.find(&c);
    return it == rings_.end() ? nullptr : &it->second;
}

const snap::Cluster* RouteTable::cluster(std::string_view name) const {
    auto it = clusters_.find(name);
    return it == clusters_.end() ? nullptr : it->second;
}

namespace {

std::optional<std::string_view> query_param(std::string_view path, std::string_view name) {
    size_t q = path.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    std::string_view qs = path.substr(q + 1);
    while (!qs.empty()) {
        size_t amp = qs.find('&');
        std::string_view pair = qs.substr(0, amp);
        size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : pair.substr(eq + 1);
        if (amp == std::string_view::npos) break;
        qs = qs.substr(amp + 1);
    }
    return std::nullopt;
}

}  // namespace

std::optional<MatchMiss> RouteTable::miss(const CompiledBlock& b, const RequestView& req) {
    using F = MatchMiss::Field;
    // Exact and regex URI matches look at the path without its query string, as Envoy's do.
    const std::string_view path_only = req.path.substr(0, req.path.find('?'));
    if (b.uri) {
        std::string_view v = b.uri->spec.kind == snap::StringMatcher::Kind::prefix ? req.path : path_only;
        if (!b.uri->matches(v)) return MatchMiss{F::uri, {}, &b.uri->spec, v};
    }
    if (b.scheme && !b.scheme->matches(req.scheme)) return MatchMiss{F::scheme, {}, &b.scheme->spec, req.scheme};
    if (b.method && !b.method->matches(req.method)) return MatchMiss{F::method, {}, &b.method->spec, req.method};
    if (b.authority && !b.authority->matches(req.authority)) {
        return MatchMiss{F::authority, {}, &b.authority->spec, req.authority};
    }
    for (const auto& [name, m] : b.headers) {
        auto v = req.header(name);
        if (!(v && m.matches(*v))) return MatchMiss{F::header, name, &m.spec, v};
    }
    for (const auto& [name, m] : b.without_headers) {
        auto v = req.header(name);
        if (v && m.matches(*v)) return MatchMiss{F::without_header, name, &m.spec, v};
    }
    for (const auto& [name, m] : b.query_params) {
        auto v = query_param(req.path, name);
        if (!(v && m.matches(*v))) return MatchMiss{F::query_param, name, &m.spec, v};
    }
    return std::nullopt;
}

const snap::Route* RouteTable::match(const snap::VirtualHost& vh, const RequestView& req) const {
    auto it = routes_.find(&vh);
    if (it == routes_.end()) return nullptr;
    for (const CompiledRoute& cr : it->second) {
        if (cr.blocks.empty()) return cr.route;
        for (const CompiledBlock& b : cr.blocks) {
            if (!miss(b, req)) return cr.route;
        }
    }
    return nullptr;
}

std::vector<RouteTrace> RouteTable::trace(const snap::VirtualHost& vh, const RequestView& req) const {
    std::vector<RouteTrace> out;
    auto it = routes_.find(&vh);
    if (it == routes_.end()) return out;
    for (const CompiledRoute& cr : it->second) {
        RouteTrace t{cr.route, cr.blocks.empty(), {}};
        for (const CompiledBlock& b : cr.blocks) {
            std::optional<MatchMiss> m = miss(b, req);
            if (!m) {
                t.matched = true;
                t.misses.clear();
                break;
            }
            t.misses.push_back(*m);
        }
        out.push_back(std::move(t));
        if (out.back().matched) break;
    }
    return out;
}

// Location for a VirtualService redirect: the request's parts, replaced where the rule says.
std::string redirect_location(const snap::Route& r, std::string_view host, std::string_view path) {
    std::string authority = r.redirect_authority.empty() ? std::string(host) : r.redirect_authority;
    if (r.redirect_port) {
        size_t colon = authority.rfind(':');
        if (colon != std::string::npos && authority.find(']') == std::string::npos) authority.resize(colon);
        authority += ":" + std::to_string(r.redirect_port);
    }
    std::string uri = r.redirect_uri.empty() ? std::string(path) : r.redirect_uri;
    return (r.redirect_scheme.empty() ? std::string("http") : r.redirect_scheme) + "://" + authority + uri;
}

namespace {

bool prefix_matches(const snap::StringMatcher& m, std::string_view target) {
    if (target.size() < m.value.size()) return false;
    std::string_view head = target.substr(0, m.value.size());
    return m.ignore_case ? iequal(head, m.value) : head == m.value;
}

}  // namespace

// rewrite.uri replaces the matched prefix when a prefix matched, else the whole path (the query
// string stays).
std::string rewritten_path(const snap::Route& r, std::string_view target) {
    for (const auto& m : r.matches) {
        if (m.uri && m.uri->kind == snap::StringMatcher::Kind::prefix && prefix_matches(*m.uri, target)) {
            return r.rewrite_uri + std::string(target.substr(m.uri->value.size()));
        }
    }
    size_t q = target.find('?');
    return r.rewrite_uri + (q == std::string_view::npos ? std::string() : std::string(target.substr(q)));
}

const snap::WeightedCluster* pick_weighted(const std::vector<snap::WeightedCluster>& clusters,
                                           std::mt19937_64& rng) {
    if (clusters.empty()) return nullptr;
    uint64_t total = 0;
    for (const auto& c : clusters) total += c.weight;
    if (total == 0) return &clusters.front();
    uint64_t draw = rng() % total;
    for (const auto& c : clusters) {
        if (draw < c.weight) return &c;
        draw -= c.weight;
    }
    return &clusters.back();
}

}  // namespace remora::proxy
