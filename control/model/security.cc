// PeerAuthentication, AuthorizationPolicy and RequestAuthentication: parsing with Istio's
// validation rules.
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "control/model/checks.h"
#include "control/model/parsers.h"

namespace remora::control::model::detail {

namespace {

bool is_port_number(const std::string& s) {
    int n = -1;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size() && n >= 0 && n <= 65535;
}

// Reads a list of strings; reports empty entries as Istio's CheckEmptyValues does.
void values(Obj& o, const std::string& key, std::vector<std::string>& out,
            const std::string& istio_name) {
    auto v = o.get(key);
    if (!v) return;
    o.strings(key, out);
    for (std::size_t i = 0; i < out.size() && i < v->node.size(); ++i) {
        if (out[i].empty()) {
            o.reporter().error(mark_of(item(v->node, i)), at_index(v->path, i),
                               "empty value not allowed, found in " + istio_name);
        }
    }
}

void check_ips(Obj& o, const std::string& key, const std::vector<std::string>& ips) {
    auto v = o.get(key);
    for (std::size_t i = 0; i < ips.size(); ++i) {
        if (!ips[i].empty() && !is_ip_or_cidr(ips[i])) {
            o.reporter().error(mark_of(item(v->node, i)), at_index(v->path, i),
                               "invalid IP address or CIDR range: " + ips[i]);
        }
    }
}

void check_ports(Obj& o, const std::string& key, const std::vector<std::string>& ports) {
    auto v = o.get(key);
    for (std::size_t i = 0; i < ports.size(); ++i) {
        if (!ports[i].empty() && !is_port_number(ports[i])) {
            o.reporter().error(mark_of(item(v->node, i)), at_index(v->path, i),
                               "invalid port: " + ports[i]);
        }
    }
}

void parse_source(Obj& s, Source& out, std::size_t rule) {
    Reporter& r = s.reporter();
    values(s, "principals", out.principals, "Principals");
    values(s, "notPrincipals", out.not_principals, "NotPrincipals");
    values(s, "requestPrincipals", out.request_principals, "RequestPrincipals");
    values(s, "notRequestPrincipals", out.not_request_principals, "NotRequestPrincipals");
    values(s, "namespaces", out.namespaces, "Namespaces");
    values(s, "notNamespaces", out.not_namespaces, "NotNamespaces");
    values(s, "ipBlocks", out.ip_blocks, "IpBlocks");
    values(s, "notIpBlocks", out.not_ip_blocks, "NotIpBlocks");
    values(s, "remoteIpBlocks", out.remote_ip_blocks, "RemoteIpBlocks");
    values(s, "notRemoteIpBlocks", out.not_remote_ip_blocks, "NotRemoteIpBlocks");
    values(s, "serviceAccounts", out.service_accounts, "ServiceAccounts");
    values(s, "notServiceAccounts", out.not_service_accounts, "NotServiceAccounts");
    values(s, "trustDomains", out.trust_domains, "TrustDomains");
    values(s, "notTrustDomains", out.not_trust_domains, "NotTrustDomains");
    check_ips(s, "ipBlocks", out.ip_blocks);
    check_ips(s, "notIpBlocks", out.not_ip_blocks);
    check_ips(s, "remoteIpBlocks", out.remote_ip_blocks);
    check_ips(s, "notRemoteIpBlocks", out.not_remote_ip_blocks);
    for (const char* key : {"serviceAccounts", "notServiceAccounts"}) {
        auto v = s.get(key);
        const auto& list =
            std::string(key) == "serviceAccounts" ? out.service_accounts : out.not_service_accounts;
        for (std::size_t i = 0; i < list.size(); ++i) {
            const std::string& sa = list[i];
            auto slash = sa.find('/');
            if (!sa.empty() && slash != std::string::npos &&
                (slash == 0 || slash + 1 == sa.size() ||
                 sa.find('/', slash + 1) != std::string::npos)) {
                r.error(
                    mark_of(item(v->node, i)), at_index(v->path, i),
                    "service account " + in_quotes(sa) + " must be <name> or <namespace>/<name>");
            }
        }
    }
    std::size_t ns_or_principals = out.principals.size() + out.not_principals.size() +
                                   out.namespaces.size() + out.not_namespaces.size();
    std::size_t sas = out.service_accounts.size() + out.not_service_accounts.size();
    if (ns_or_principals > 0 && sas > 0) {
        r.error(s.mark(), s.path(),
                "cannot set serviceAccounts with namespaces or principals, found at rule " +
                    std::to_string(rule));
    }
    if (ns_or_principals + sas + out.request_principals.size() + out.not_request_principals.size() +
            out.ip_blocks.size() + out.not_ip_blocks.size() + out.remote_ip_blocks.size() +
            out.not_remote_ip_blocks.size() + out.trust_domains.size() +
            out.not_trust_domains.size() ==
        0) {
        r.error(s.mark(), s.path(),
                "`from.source` must not be empty, found at rule " + std::to_string(rule));
    }
    for (const char* key : {"requestPrincipals", "notRequestPrincipals"}) {
        s.unsupported(key, "needs RequestAuthentication (JWT)");
    }
}

void parse_operation(Obj& o, Operation& out, std::size_t rule) {
    values(o, "hosts", out.hosts, "Hosts");
    values(o, "notHosts", out.not_hosts, "NotHosts");
    values(o, "ports", out.ports, "Ports");
    values(o, "notPorts", out.not_ports, "NotPorts");
    values(o, "methods", out.methods, "Methods");
    values(o, "notMethods", out.not_methods, "NotMethods");
    values(o, "paths", out.paths, "Paths");
    values(o, "notPaths", out.not_paths, "NotPaths");
    check_ports(o, "ports", out.ports);
    check_ports(o, "notPorts", out.not_ports);
    if (out.hosts.size() + out.not_hosts.size() + out.ports.size() + out.not_ports.size() +
            out.methods.size() + out.not_methods.size() + out.paths.size() + out.not_paths.size() ==
        0) {
        o.reporter().error(
            o.mark(), o.path(),
            "`to.operation` must not be empty, found at rule " + std::to_string(rule));
    }
}

// Istio's security.ValidateAttribute for `when` keys.
std::string attribute_problem(const std::string& key, const std::vector<std::string>& vals) {
    auto map_key = [&](const std::string& prefix) -> std::string {
        if (!key.ends_with("]") || key.size() <= prefix.size() + 1) {
            return "invalid key: " + key;
        }
        return "";
    };
    for (const auto& v : vals) {
        if (v.empty()) return "empty value not allowed";
    }
    if (key.starts_with("request.headers[")) return map_key("request.headers[");
    if (key.starts_with("request.auth.claims[")) return map_key("request.auth.claims[");
    if (key.starts_with("experimental.envoy.filters.")) return "";
    if (key == "source.ip" || key == "remote.ip" || key == "destination.ip") {
        for (const auto& v : vals) {
            if (!is_ip_or_cidr(v)) return "invalid IP address or CIDR range: " + v;
        }
        return "";
    }
    if (key == "destination.port") {
        for (const auto& v : vals) {
            if (!is_port_number(v)) return "invalid port: " + v;
        }
        return "";
    }
    static const std::vector<std::string> kPlain = {
        "source.namespace",       "source.principal",       "source.serviceAccount",
        "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
        "connection.sni",         "source.trustDomain"};
    for (const auto& k : kPlain) {
        if (key == k) return "";
    }
    return "unknown attribute: " + key;
}

}  // namespace

void parse_peer_authentication(Obj& spec, PeerAuthentication& pa) {
    Reporter& r = spec.reporter();
    parse_selector(spec, "selector", pa.selector);
    spec.object("mtls", [&](Obj& m) {
        m.enumeration("mode", pa.mtls_mode, {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"});
    });
    auto plm = spec.get("portLevelMtls");
    spec.entries("portLevelMtls",
                 [&](const std::string& port, const YAML::Mark& at, const Value& v) {
                     int n = 0;
                     auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
                     bool ok = !port.empty() && ec == std::errc() &&
                               end == port.data() + port.size() && n >= 1 && n <= 65535;
                     if (!ok) r.error(at, v.path, "port must be in range 1..65535");
                     std::string mode = "UNSET";
                     if (!v.node.IsNull()) {
                         Obj m(r, v);
                         m.enumeration("mode", mode, {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"});
                     }
                     if (ok) pa.port_level_mtls[static_cast<uint32_t>(n)] = mode;
                 });
    if (plm) {
        if (plm->node.IsMap() && plm->node.size() == 0) {
            r.error(plm->mark(), plm->path,
                    "port level mTLS, if defined, must have at least one element");
        } else if (!pa.selector || pa.selector->empty()) {
            r.error(plm->mark(), plm->path,
                    "mesh/namespace peer authentication cannot have port level mTLS");
        }
    }
}

void parse_authorization_policy(Obj& spec, AuthorizationPolicy& ap) {
    Reporter& r = spec.reporter();
    parse_selector(spec, "selector", ap.selector);
    spec.unsupported("targetRef", "targetRef policies attach to gateways and waypoints");
    spec.unsupported("targetRefs", "targetRefs policies attach to gateways and waypoints");
    if (spec.has("selector") + spec.has("targetRef") + spec.has("targetRefs") > 1) {
        r.error(spec.mark(), spec.path(), "only one of targetRefs or workloadSelector can be set");
    }
    auto action = spec.get("action");
    spec.enumeration("action", ap.action, {"ALLOW", "DENY", "AUDIT", "CUSTOM"});
    if (action && ap.action == "CUSTOM") {
        r.unsupported(action->mark(), action->path, "action CUSTOM: the policy is ignored");
    }
    auto provider = spec.get("provider");
    spec.object("provider", [&](Obj& p) { p.str("name", ap.provider); });
    auto rules = spec.get("rules");
    bool has_rules = rules && rules->node.IsSequence() && rules->node.size() > 0;
    if (ap.action == "CUSTOM") {
        if (!has_rules) {
            r.error(action->mark(), action->path,
                    "CUSTOM action without `rules` is meaningless as it will never be triggered, "
                    "add an empty rule `{}` if you want it be triggered for every request");
        } else if (ap.provider.empty()) {
            r.error(provider ? provider->mark() : spec.mark(),
                    join(join(spec.path(), "provider"), "name"),
                    "`provider.name` must not be empty");
        }
    } else if (provider) {
        r.error(provider->mark(), provider->path,
                "`provider` must not be with non CUSTOM action, found " + ap.action);
    }
    if (ap.action == "DENY" && !has_rules) {
        r.error(action->mark(), action->path,
                "DENY action without `rules` is meaningless as it will never be triggered, add an "
                "empty rule `{}` if you want it be triggered for every request");
    }
    if (!rules) return;
    std::vector<Rule> parsed;
    spec.list("rules", [&](const Value& v, std::size_t i) {
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "`rule` must not be nil, found at rule " + std::to_string(i));
            return;
        }
        Obj o(r, v);
        Rule rule;
        if (auto from = o.get("from"); from && from->node.IsSequence() && from->node.size() == 0) {
            r.error(from->mark(), from->path,
                    "`from` must not be empty, found at rule " + std::to_string(i));
        }
        o.list("from", [&](const Value& f, std::size_t) {
            if (f.node.IsNull()) {
                r.error(f.mark(), f.path,
                        "`from` must not be nil, found at rule " + std::to_string(i));
                return;
            }
            Obj fo(r, f);
            if (!fo.has("source")) {
                r.error(f.mark(), join(f.path, "source"),
                        "`from.source` must not be nil, found at rule " + std::to_string(i));
            }
            fo.object("source", [&](Obj& s) {
                Source src;
                parse_source(s, src, i);
                rule.from.push_back(std::move(src));
            });
        });
        if (auto to = o.get("to"); to && to->node.IsSequence() && to->node.size() == 0) {
            r.error(to->mark(), to->path,
                    "`to` must not be empty, found at rule " + std::to_string(i));
        }
        o.list("to", [&](const Value& t, std::size_t) {
            if (t.node.IsNull()) {
                r.error(t.mark(), t.path,
                        "`to` must not be nil, found at rule " + std::to_string(i));
                return;
            }
            Obj to(r, t);
            if (!to.has("operation")) {
                r.error(t.mark(), join(t.path, "operation"),
                        "`to.operation` must not be nil, found at rule " + std::to_string(i));
            }
            to.object("operation", [&](Obj& op) {
                Operation operation;
                parse_operation(op, operation, i);
                rule.to.push_back(std::move(operation));
            });
        });
        o.objects("when", [&](Obj& w, std::size_t) {
            Condition c;
            auto key = w.get("key");
            w.str("key", c.key);
            w.strings("values", c.values);
            w.strings("notValues", c.not_values);
            if (c.key.empty()) {
                r.error(key ? key->mark() : w.mark(), join(w.path(), "key"),
                        "`key` must not be empty");
            } else if (c.values.empty() && c.not_values.empty()) {
                r.error(w.mark(), w.path(),
                        "at least one of `values` or `notValues` must be set for key " + c.key);
            } else {
                for (const auto* list : {&c.values, &c.not_values}) {
                    if (list->empty()) continue;
                    if (auto p = attribute_problem(c.key, *list); !p.empty()) {
                        r.error(key->mark(), key->path,
                                std::string(list == &c.values ? "invalid `value`"
                                                              : "invalid `notValue`") +
                                    " for `key` " + c.key + ": " + p);
                        break;
                    }
                }
                if (c.key.starts_with("request.auth.")) {
                    r.unsupported(key->mark(), key->path, "needs RequestAuthentication (JWT)");
                }
            }
            rule.when.push_back(std::move(c));
        });
        parsed.push_back(std::move(rule));
    });
    if (!parsed.empty() || has_rules) ap.rules = std::move(parsed);
}

}  // namespace remora::control::model::detail

namespace remora::control::model::detail {

namespace {

// Go's url.Parse + ParseJwksURI: only http and https.
std::string jwks_uri_problem(const std::string& uri) {
    auto colon = uri.find(':');
    std::string scheme;
    if (colon != std::string::npos && colon > 0 &&
        std::all_of(uri.begin(), uri.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
        })) {
        scheme = uri.substr(0, colon);
        for (char& c : scheme)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (scheme != "http" && scheme != "https") {
        return "URI scheme " + in_quotes(scheme) + " is not supported";
    }
    return "";
}

// base64 or base64url, padded or not: what jwx's base64.Decode takes for a key's members.
bool is_base64(std::string_view s) {
    std::size_t n = s.size();
    while (n > 0 && s[n - 1] == '=')
        --n;
    if (s.size() - n > 2 || n % 4 == 1) return false;
    return std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '-' ||
               c == '_';
    });
}

// What Istio's validation (lestrrat-go/jwx v1 jwk.Parse) finds wrong in an inline JWKS: a JSON
// Web Key Set {"keys": [...]} or a sole key, each with a known kty and its members (RSA n, e;
// EC crv, x, y; OKP crv, x; oct k) as base64. "" when it parses. `private_keys` gets the index
// of each key with private material (d, or a symmetric key), which Istio warns about.
std::string jwks_problem(const std::string& text, std::vector<std::size_t>& private_keys) {
    const std::string prefix = "jwks parse error: failed to unmarshal JWK set: ";
    boost::system::error_code ec;
    boost::json::value doc = boost::json::parse(text, ec);
    if (ec) return prefix + "not valid JSON (" + ec.message() + ")";
    const boost::json::object* top = doc.if_object();
    if (!top) return prefix + "a JWK set must be a JSON object";
    std::vector<const boost::json::value*> keys;
    bool sole = true;
    if (const boost::json::value* k = top->if_contains("keys")) {
        const boost::json::array* list = k->if_array();
        if (!list && !k->is_null()) return prefix + "keys must be an array";
        if (list && !list->empty()) {
            sole = false;
            for (const auto& key : *list)
                keys.push_back(&key);
        }
    }
    if (sole) keys.push_back(&doc);  // {"keys": []} too: jwx then reads the set as one key
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const std::string which = sole ? std::string("failed to parse sole key in key set: ")
                                       : "key #" + std::to_string(i + 1) + " (of " +
                                             std::to_string(keys.size()) + "): ";
        const boost::json::object* key = keys[i]->if_object();
        if (!key) return prefix + which + "a key must be a JSON object";
        auto member = [&](const char* name) -> const boost::json::string* {
            const boost::json::value* v = key->if_contains(name);
            return v ? v->if_string() : nullptr;
        };
        for (const auto& m : *key) {
            if (!m.value().is_string() && (m.key() == "kty" || m.key() == "n" || m.key() == "e" ||
                                           m.key() == "crv" || m.key() == "x" || m.key() == "y" ||
                                           m.key() == "d" || m.key() == "k")) {
                return prefix + which + "field " + std::string(m.key()) + " must be a string";
            }
        }
        const boost::json::string* kty = member("kty");
        const std::string type = kty ? std::string(*kty) : "";
        std::vector<const char*> required;
        if (type == "RSA") {
            required = {"e", "n"};
        } else if (type == "EC") {
            required = {"crv", "x", "y"};
        } else if (type == "OKP") {
            required = {"crv", "x"};
        } else if (type == "oct") {
            required = {"k"};
        } else {
            return prefix + which + "invalid key type from JSON (" + type + ")";
        }
        for (const char* name : required) {
            if (!member(name)) return prefix + which + "required field " + name + " is missing";
        }
        if (type == "EC") {
            const std::string crv(*member("crv"));
            if (crv != "P-256" && crv != "P-384" && crv != "P-521") {
                return prefix + which + "invalid curve " + in_quotes(crv) +
                       " (P-256, P-384 or P-521)";
            }
        }
        if (type == "OKP") {
            const std::string crv(*member("crv"));
            if (crv != "Ed25519" && crv != "X25519") {
                return prefix + which + "invalid curve " + in_quotes(crv) +
                       " (Ed25519 or X25519)";
            }
        }
        for (const char* name : {"n", "e", "x", "y", "d", "k"}) {
            const boost::json::string* v = member(name);
            if (v && !is_base64(std::string_view(v->data(), v->size()))) {
                return prefix + which + "failed to decode value for key " + name +
                       " (not base64url)";
            }
        }
        if (type == "oct" || member("d")) private_keys.push_back(i);
    }
    return "";
}

// Istio's ValidateStrictHTTPHeaderName: an RFC 7230 token.
bool is_header_name(const std::string& h) {
    static const std::string kExtra = "!#$%&'*+-.^_`|~";
    return !h.empty() && std::all_of(h.begin(), h.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || kExtra.find(c) != std::string::npos;
    });
}

}  // namespace

void parse_target_refs(Obj& spec, bool has_selector) {
    Reporter& r = spec.reporter();
    int set = has_selector ? 1 : 0;
    auto check = [&](Obj& t) {
        std::string group, kind, name, ns;
        t.str("group", group);
        t.str("kind", kind);
        t.str("name", name);
        t.str("namespace", ns);
        if (name.empty()) r.error(t.mark(), join(t.path(), "name"), "targetRef name must be set");
        if (!ns.empty()) {
            r.error(t.mark(), join(t.path(), "namespace"),
                    "targetRef namespace must not be set; cross namespace referencing is not "
                    "supported");
        }
        bool allowed = (group.empty() && kind == "Service") ||
                       (group == "networking.istio.io" && kind == "ServiceEntry") ||
                       (group == "gateway.networking.k8s.io" &&
                        (kind == "Gateway" || kind == "GatewayClass"));
        if (!allowed) {
            r.error(t.mark(), t.path(),
                    "targetRef must be to one of [core/v1/Service "
                    "networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway "
                    "gateway.networking.k8s.io/v1/GatewayClass] but was " +
                        group + "/" + kind);
        }
    };
    if (spec.has("targetRef")) {
        ++set;
        spec.object("targetRef", check);
        spec.unsupported("targetRef", "targetRef policies attach to gateways and waypoints");
    }
    auto refs = spec.get("targetRefs");
    if (refs && refs->node.IsSequence() && refs->node.size() > 0) ++set;
    spec.objects("targetRefs", [&](Obj& t, std::size_t) { check(t); });
    if (refs) spec.unsupported("targetRefs", "targetRefs policies attach to gateways and waypoints");
    if (set > 1) {
        r.error(spec.mark(), spec.path(), "only one of targetRefs or workloadSelector can be set");
    }
}

void parse_request_authentication(Obj& spec, RequestAuthentication& ra) {
    Reporter& r = spec.reporter();
    parse_selector(spec, "selector", ra.selector);
    parse_target_refs(spec, spec.has("selector"));
    spec.objects("jwtRules", [&](Obj& j, std::size_t) {
        JWTRule rule;
        j.str("issuer", rule.issuer);
        auto audiences = j.get("audiences");
        j.strings("audiences", rule.audiences);
        for (std::size_t i = 0; i < rule.audiences.size(); ++i) {
            if (rule.audiences[i].empty()) {
                r.error(mark_of(item(audiences->node, i)), at_index(audiences->path, i),
                        "audience must be non-empty string");
            }
        }
        auto uri = j.get("jwksUri");
        j.str("jwksUri", rule.jwks_uri);
        if (rule.jwks_uri.empty()) {
            uri = j.get("jwks_uri");  // the proto's field name, which Kubernetes also accepts
            j.str("jwks_uri", rule.jwks_uri);
        } else {
            j.skip("jwks_uri");
        }
        if (rule.issuer.empty() && rule.jwks_uri.empty()) {
            r.error(j.mark(), j.path(), "issuer or jwksUri must be non-empty string");
        }
        if (!rule.jwks_uri.empty()) {
            if (auto p = jwks_uri_problem(rule.jwks_uri); !p.empty())
                r.error(uri->mark(), uri->path, p);
        }
        auto jwks = j.get("jwks");
        j.str("jwks", rule.jwks);
        if (!rule.jwks.empty()) {
            std::vector<std::size_t> private_keys;
            if (auto p = jwks_problem(rule.jwks, private_keys); !p.empty()) {
                r.error(jwks->mark(), jwks->path, p);
            }
            for (std::size_t i : private_keys) {
                r.warning(jwks->mark(), jwks->path,
                          "jwks key at index " + std::to_string(i) +
                              " contains private key material; only public keys are used for "
                              "verification");
            }
        }
        j.objects("fromHeaders", [&](Obj& h, std::size_t) {
            std::string name, prefix;
            h.str("name", name);
            h.str("prefix", prefix);
            if (name.empty()) {
                r.error(h.mark(), join(h.path(), "name"),
                        "location header name must be non-empty string");
            }
            rule.from_headers.emplace_back(name, prefix);
        });
        auto params = j.get("fromParams");
        j.strings("fromParams", rule.from_params);
        for (std::size_t i = 0; i < rule.from_params.size(); ++i) {
            if (rule.from_params[i].empty()) {
                r.error(mark_of(item(params->node, i)), at_index(params->path, i),
                        "location query must be non-empty string");
            }
        }
        auto cookies = j.get("fromCookies");
        j.strings("fromCookies", rule.from_cookies);
        for (std::size_t i = 0; i < rule.from_cookies.size(); ++i) {
            if (rule.from_cookies[i].empty()) {
                r.error(mark_of(item(cookies->node, i)), at_index(cookies->path, i),
                        "cookie name must be non-empty string");
            }
        }
        j.str("outputPayloadToHeader", rule.output_payload_to_header);
        j.list("outputClaimToHeaders", [&](const Value& v, std::size_t) {
            if (v.node.IsNull()) {
                r.error(v.mark(), v.path, "outputClaimToHeaders must not be null");
                return;
            }
            Obj o(r, v);
            std::string claim, header;
            o.str("claim", claim);
            o.str("header", header);
            if (claim.empty() || header.empty()) {
                r.error(v.mark(), v.path,
                        "outputClaimToHeaders header and claim value must be non-empty string");
                return;
            }
            if (!is_header_name(header)) {
                r.error(v.mark(), join(v.path, "header"),
                        "header name " + header + " is not a valid header name");
            }
            rule.output_claim_to_headers.emplace_back(claim, header);
        });
        j.boolean("forwardOriginalToken", rule.forward_original_token);
        j.duration("timeout", rule.timeout);
        std::vector<std::string> claims;
        j.strings("spaceDelimitedClaims", claims);
        std::string presence;
        j.enumeration("presence", presence, {"OPTIONAL", "REQUIRED"});
        ra.jwt_rules.push_back(std::move(rule));
    });
    r.unsupported(spec.mark(), spec.path().empty() ? "spec" : spec.path(),
                  "no JWT end-user authentication: tokens are not checked");
}

}  // namespace remora::control::model::detail
