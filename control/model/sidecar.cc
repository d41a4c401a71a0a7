// Sidecar (networking.istio.io), and the server-side TLS settings it shares with Gateway: parsing
// with Istio's validation rules (pkg/config/validation ValidateSidecar, validateTLSOptions).
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "control/model/checks.h"
#include "control/model/parsers.h"

namespace remora::control::model::detail {

namespace {

// SidecarPort: number 0..2^32-1 as the CRD takes it, range checked by the caller.
bool parse_sidecar_port(Obj& parent, PortSpec& out, std::optional<Value>& number_at) {
    bool present = false;
    parent.object("port", [&](Obj& p) {
        present = true;
        Reporter& r = p.reporter();
        number_at = p.get("number");
        p.integer("number", out.number, 0, UINT32_MAX);
        if (auto v = p.get("name")) {
            if (p.str("name", out.name) && !out.name.empty() && !is_dns1123_label(out.name)) {
                r.error(v->mark(), v->path, "invalid port name: " + out.name);
            }
        }
        if (auto v = p.get("protocol")) {
            if (p.str("protocol", out.protocol) && !out.protocol.empty() &&
                !is_protocol(out.protocol)) {
                r.error(v->mark(), v->path, "unsupported protocol: " + out.protocol);
            }
        }
        if (auto v = p.get("targetPort")) {
            uint32_t target = 0;
            if (p.integer("targetPort", target, 0, UINT32_MAX) && target > 0) {
                r.error(v->mark(), v->path, "targetPort has no impact on Sidecars");
            }
        }
    });
    return present;
}

void check_port_range(Reporter& r, const std::optional<Value>& at, const Obj& listener,
                      uint32_t number) {
    if (number >= 1 && number <= 65535) return;
    r.error(at ? at->mark() : listener.mark(), at ? at->path : join(listener.path(), "port.number"),
            "port number " + std::to_string(number) + " must be in the range 1..65535");
}

void check_bind_ip(Obj& o, const std::string& bind) {
    if (bind.empty() || is_ip(bind)) return;
    auto v = o.get("bind");
    o.reporter().error(v->mark(), v->path, bind + " is not a valid IP");
}

// defaultEndpoint: 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port>, :<port> or
// unix://<path>.
void check_default_endpoint(Obj& o, const std::string& endpoint) {
    if (endpoint.empty()) return;
    auto v = o.get("defaultEndpoint");
    Reporter& r = o.reporter();
    if (endpoint.starts_with("unix://")) {
        if (auto p = unix_address_problem(std::string_view(endpoint).substr(7)); !p.empty())
            r.error(v->mark(), v->path, p);
        return;
    }
    // Go's net.SplitHostPort.
    std::string host, port;
    auto colon = endpoint.rfind(':');
    if (colon == std::string::npos) {
        r.error(v->mark(), v->path, "address " + endpoint + ": missing port in address");
        return;
    }
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
    if (host.starts_with('[') && host.ends_with(']')) {
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string::npos) {
        r.error(v->mark(), v->path, "address " + endpoint + ": too many colons in address");
        return;
    }
    if (!host.empty() && host != "127.0.0.1" && host != "0.0.0.0" && host != "::1" &&
        host != "::") {
        r.error(v->mark(), v->path,
                "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:"
                "port,[::]:port,unix://filepath or unset");
    }
    int64_t n = -1;
    bool digits =
        !port.empty() && port.size() <= 10 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) n = std::stoll(port);
    if (!digits) {
        r.error(v->mark(), v->path,
                "sidecar: defaultEndpoint port (" + port +
                    ") is not a number: strconv.Atoi: "
                    "parsing " +
                    in_quotes(port) + ": invalid syntax");
    } else if (n < 1 || n > 65535) {
        r.error(v->mark(), v->path,
                "port number " + std::to_string(n) + " must be in the range 1..65535");
    }
}

}  // namespace

void parse_server_tls(Obj& t, ServerTLSSettings& out) {
    Reporter& r = t.reporter();
    t.enumeration(
        "mode", out.mode,
        {"PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"});
    t.boolean("httpsRedirect", out.https_redirect);
    t.str("serverCertificate", out.server_certificate);
    t.str("privateKey", out.private_key);
    t.str("caCertificates", out.ca_certificates);
    t.str("caCrl", out.ca_crl);
    t.str("credentialName", out.credential_name);
    t.str("caCertCredentialName", out.ca_cert_credential_name);
    t.strings("credentialNames", out.credential_names);
    t.strings("subjectAltNames", out.subject_alt_names);
    auto ciphers = t.get("cipherSuites");
    t.strings("cipherSuites", out.cipher_suites);
    std::vector<std::string> ignored;
    t.strings("verifyCertificateSpki", ignored);
    t.strings("verifyCertificateHash", ignored);
    t.strings("ecdhCurves", ignored);
    bool insecure = false;
    t.boolean("insecureSkipVerify", insecure);
    t.objects("tlsCertificates", [&](Obj& c, std::size_t) {
        std::string cert, key, ca;
        c.str("serverCertificate", cert);
        c.str("privateKey", key);
        c.str("caCertificates", ca);
        ++out.tls_certificates;
        if (out.mode == "SIMPLE" || out.mode == "MUTUAL" || out.mode == "OPTIONAL_MUTUAL") {
            if (out.credential_name.empty() && out.credential_names.empty()) {
                if (cert.empty())
                    r.error(c.mark(), c.path(),
                            std::string(out.mode == "SIMPLE" ? "SIMPLE" : "MUTUAL") +
                                " TLS requires a server certificate");
                if (key.empty())
                    r.error(c.mark(), c.path(),
                            std::string(out.mode == "SIMPLE" ? "SIMPLE" : "MUTUAL") +
                                " TLS requires a private key");
            }
        }
    });
    const std::initializer_list<std::string_view> versions = {"TLS_AUTO", "TLSV1_0", "TLSV1_1",
                                                              "TLSV1_2", "TLSV1_3"};
    t.enumeration("minProtocolVersion", out.min_protocol_version, versions);
    t.enumeration("maxProtocolVersion", out.max_protocol_version, versions);

    // validateTLSOptions.
    int sources = 0;
    sources += !out.server_certificate.empty() && !out.private_key.empty();
    sources += !out.credential_name.empty();
    sources += !out.credential_names.empty();
    sources += out.tls_certificates > 0;
    if ((out.min_protocol_version == "TLSV1_0" || out.min_protocol_version == "TLSV1_1") &&
        out.cipher_suites.empty()) {
        r.warning(t.mark(), t.path(),
                  "TLS version below TLSV1_2 require setting compatible ciphers as by default "
                  "they no longer include compatible ciphers.");
    }
    // Istio warns (and drops them from what it sends Envoy); so does Remora.
    // The warning points at the first suite it names.
    std::set<std::string> seen, duplicates, invalid;
    YAML::Mark invalid_at = t.mark(), duplicate_at = t.mark();
    for (std::size_t i = 0; i < out.cipher_suites.size(); ++i) {
        const std::string& c = out.cipher_suites[i];
        YAML::Mark at = ciphers ? mark_of(item(ciphers->node, i)) : t.mark();
        if (!is_valid_cipher_suite(c)) {
            if (invalid.empty()) invalid_at = at;
            invalid.insert(c);
        } else if (!seen.insert(c).second) {
            if (duplicates.empty()) duplicate_at = at;
            duplicates.insert(c);
        }
    }
    auto go_list = [](const std::set<std::string>& items) {
        std::string list;
        for (const auto& d : items)
            list += (list.empty() ? "" : " ") + d;
        return "[" + list + "]";
    };
    if (!invalid.empty()) {
        r.warning(invalid_at, join(t.path(), "cipherSuites"),
                  "ignoring invalid cipher suites: " + go_list(invalid));
    }
    if (!duplicates.empty()) {
        r.warning(duplicate_at, join(t.path(), "cipherSuites"),
                  "ignoring duplicate cipher suites: " + go_list(duplicates));
    }
    if (out.mode == "ISTIO_MUTUAL") {
        auto no = [&](bool set, const char* what) {
            if (set)
                r.error(t.mark(), t.path(),
                        std::string("ISTIO_MUTUAL TLS cannot have associated ") + what);
        };
        no(!out.server_certificate.empty(), "server certificate");
        no(!out.private_key.empty(), "private key");
        no(!out.ca_certificates.empty(), "CA bundle");
        no(out.tls_certificates > 0, "tlsCertificates");
        no(!out.credential_name.empty(), "credentialName");
        no(!out.credential_names.empty(), "credentialNames");
        return;
    }
    if ((out.mode == "PASSTHROUGH" || out.mode == "AUTO_PASSTHROUGH") &&
        (!out.ca_crl.empty() || !out.server_certificate.empty() || !out.private_key.empty() ||
         !out.ca_certificates.empty() || out.tls_certificates > 0 || !out.credential_name.empty() ||
         !out.credential_names.empty())) {
        r.warning(t.mark(), t.path(),
                  out.mode + " mode does not use certificates, they will be ignored");
    }
    if (sources > 1) {
        r.error(t.mark(), t.path(),
                "only one of credential_name, credential_names, server_certificate/private_key, "
                "tls_certificates should be specified");
    }
    bool terminates = out.mode == "SIMPLE" || out.mode == "MUTUAL" || out.mode == "OPTIONAL_MUTUAL";
    if (!terminates) return;
    if (!out.credential_name.empty() || !out.credential_names.empty()) return;
    const std::string prefix = out.mode == "SIMPLE" ? "SIMPLE TLS" : "MUTUAL TLS";
    if (out.mode != "SIMPLE" && out.ca_certificates.empty()) {
        r.error(t.mark(), t.path(), prefix + " requires a client CA bundle");
    }
    if (out.tls_certificates > 2) {
        r.warning(t.mark(), join(t.path(), "tlsCertificates"),
                  prefix + " can support up to 2 server certificates");
    }
    if (out.tls_certificates == 0) {
        if (out.server_certificate.empty())
            r.error(t.mark(), t.path(), prefix + " requires a server certificate");
        if (out.private_key.empty())
            r.error(t.mark(), t.path(), prefix + " requires a private key");
    }
}

void parse_sidecar(Obj& spec, Sidecar& sc) {
    Reporter& r = spec.reporter();
    // workloadSelector {labels}: ValidateAlphaWorkloadSelector.
    if (auto v = spec.get("workloadSelector")) {
        Obj w(r, *v);
        Labels l;
        if (auto lv = w.get("labels")) {
            w.string_map("labels", l);
            for (const auto& [k, val] : l) {
                if (k.empty()) {
                    r.error(lv->mark(), lv->path,
                            "empty key is not supported in selector: \"=" + val + "\"");
                } else if (k.find('*') != std::string::npos || val.find('*') != std::string::npos) {
                    r.error(lv->mark(), join(lv->path, k),
                            "wildcard is not supported in selector: \"" + k + "=" + val + "\"");
                }
            }
            // Istio checks nothing else of these labels (no Kubernetes label syntax).
        }
        if (l.empty()) {
            r.warning(v->mark(), v->path,
                      "sidecar: workload selector specified without labels, will be applied to "
                      "all services in namespace");
        }
        sc.workload_selector = l;
    }
    if (!spec.has("egress") && !spec.has("ingress") && !spec.has("outboundTrafficPolicy") &&
        !spec.has("inboundConnectionPool")) {
        r.error(spec.mark(), spec.path(), "sidecar: empty configuration provided");
    }

    std::set<uint32_t> ingress_ports;
    spec.list("ingress", [&](const Value& v, std::size_t) {
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "sidecar: ingress may not be null");
            return;
        }
        Obj i(r, v);
        IstioIngressListener in;
        in.where = r.location(v.mark());
        std::optional<Value> number;
        if (!parse_sidecar_port(i, in.port, number)) {
            r.error(v.mark(), join(v.path, "port"),
                    "sidecar: port is required for ingress listeners");
        } else {
            check_port_range(r, number, i, in.port.number);
            if (!ingress_ports.insert(in.port.number).second) {
                r.error(number ? number->mark() : v.mark(),
                        number ? number->path : join(v.path, "port"),
                        "sidecar: ports on IP bound listeners must be unique");
            }
        }
        i.str("bind", in.bind);
        check_bind_ip(i, in.bind);
        i.enumeration("captureMode", in.capture_mode, {"DEFAULT", "IPTABLES", "NONE"});
        i.str("defaultEndpoint", in.default_endpoint);
        check_default_endpoint(i, in.default_endpoint);
        if (auto tv = i.get("tls")) {
            Obj t(r, *tv);
            ServerTLSSettings tls;
            parse_server_tls(t, tls);
            auto refuse = [&](bool set, const std::string& message) {
                if (set) r.error(tv->mark(), tv->path, message);
            };
            refuse(!tls.subject_alt_names.empty(),
                   "sidecar: subjectAltNames is not supported in ingress tls");
            refuse(tls.https_redirect, "sidecar: httpsRedirect is not supported");
            refuse(!tls.credential_name.empty(),
                   "sidecar: credentialName is not currently supported");
            refuse(!tls.credential_names.empty(),
                   "sidecar: credentialNames is not currently supported");
            refuse(tls.tls_certificates > 0,
                   "sidecar: tls_certificates is not currently supported");
            refuse(tls.mode == "ISTIO_MUTUAL" || tls.mode == "AUTO_PASSTHROUGH",
                   "configuration is invalid: cannot set mode to " + tls.mode +
                       " in sidecar ingress tls");
            refuse(!is_tls_protocol(in.port.protocol),
                   "server cannot have TLS settings for non HTTPS/TLS ports");
            r.unsupported(tv->mark(), tv->path, "TLS termination on a Sidecar ingress listener");
            in.tls = std::move(tls);
        }
        if (auto cv = i.get("connectionPool")) {
            Obj c(r, *cv);
            parse_connection_pool(c, in.connection_pool.emplace());
            std::string proto = ascii_upper(in.port.protocol);
            bool http = proto == "HTTP" || proto == "HTTP2" || proto == "GRPC" ||
                        proto == "GRPC-WEB" || proto == "HTTP_PROXY";
            if (in.connection_pool->http && !http) {
                r.warning(cv->mark(), join(cv->path, "http"),
                          "sidecar: HTTP connection pool settings are configured for port " +
                              std::to_string(in.port.number) + " (" + in_quotes(in.port.name) +
                              ") but its protocol is not HTTP (" + in.port.protocol +
                              "); only TCP settings will apply");
            }
            r.unsupported(cv->mark(), cv->path);
        }
        if (!in.bind.empty()) i.unsupported("bind");
        if (in.capture_mode != "DEFAULT") i.unsupported("captureMode");
        if (!in.default_endpoint.empty()) {
            i.unsupported("defaultEndpoint", "the proxy forwards to 127.0.0.1:<port>");
        }
        sc.ingress.push_back(std::move(in));
    });
    if (auto v = spec.get("inboundConnectionPool")) {
        Obj c(r, *v);
        parse_connection_pool(c, sc.inbound_connection_pool.emplace());
        r.unsupported(v->mark(), v->path);
    }

    std::set<uint32_t> egress_ports;
    std::set<std::string> unix_binds;
    bool catch_all = false;
    auto egress = spec.get("egress");
    const std::size_t egress_count = egress && egress->node.IsSequence() ? egress->node.size() : 0;
    spec.list("egress", [&](const Value& v, std::size_t index) {
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "egress listener may not be null");
            return;
        }
        Obj e(r, v);
        IstioEgressListener out;
        out.where = r.location(v.mark());
        e.str("bind", out.bind);
        e.enumeration("captureMode", out.capture_mode, {"DEFAULT", "IPTABLES", "NONE"});
        PortSpec port;
        std::optional<Value> number;
        if (!parse_sidecar_port(e, port, number)) {
            if (!catch_all) {
                if (index + 1 == egress_count) {
                    catch_all = true;
                } else {
                    r.error(v.mark(), v.path,
                            "sidecar: the egress listener with empty port should be the last "
                            "listener in the list");
                }
            } else {
                r.error(v.mark(), v.path,
                        "sidecar: egress can have only one listener with empty port");
            }
        } else {
            if (port.number == 0) {
                // A unix domain socket listener.
                auto bv = e.get("bind");
                if (!out.bind.starts_with("unix://")) {
                    r.error(bv ? bv->mark() : v.mark(), join(v.path, "bind"),
                            "sidecar: ports with 0 value must have a unix domain socket bind "
                            "address");
                } else if (auto p = unix_address_problem(std::string_view(out.bind).substr(7));
                           !p.empty()) {
                    r.error(bv->mark(), bv->path, p);
                }
                if (out.capture_mode != "DEFAULT" && out.capture_mode != "NONE") {
                    r.error(v.mark(), join(v.path, "captureMode"),
                            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket "
                            "listeners");
                }
                if (!unix_binds.insert(out.bind).second) {
                    r.error(v.mark(), join(v.path, "bind"),
                            "sidecar: unix domain socket values for listeners must be unique");
                }
            } else {
                check_port_range(r, number, e, port.number);
                check_bind_ip(e, out.bind);
                if (!egress_ports.insert(port.number).second) {
                    r.error(number ? number->mark() : v.mark(),
                            number ? number->path : join(v.path, "port"),
                            "sidecar: ports on IP bound listeners must be unique");
                }
            }
            out.port = port;
        }
        auto hosts = e.get("hosts");
        e.strings("hosts", out.hosts);
        if (out.hosts.empty()) {
            r.error(hosts ? hosts->mark() : v.mark(), join(v.path, "hosts"),
                    "sidecar: egress listener must contain at least one host");
        }
        // ns -> dnsNames, for the duplicate warnings.
        std::map<std::string, std::set<std::string>> seen;
        for (std::size_t h = 0; h < out.hosts.size(); ++h) {
            const std::string& host = out.hosts[h];
            YAML::Mark at = mark_of(item(hosts->node, h));
            std::string path = at_index(hosts->path, h);
            auto slash = host.find('/');
            if (slash != std::string::npos && !host.starts_with('~')) {
                std::string ns = host.substr(0, slash), name = host.substr(slash + 1);
                if (ns == ".") ns = sc.meta.ns;
                auto& names = seen[ns];
                bool duplicate =
                    name != "*" ? (names.count(name) || names.count("*")) : !names.empty();
                if (duplicate) r.warning(at, path, "duplicated egress host: " + host);
                names.insert(name);
            }
            for (const std::string& p : namespace_host_problems(host, false))
                r.error(at, path, p);
        }
        if (seen.count("*") && seen["*"].count("*") && seen.size() != 1) {
            r.warning(hosts->mark(), hosts->path,
                      "`*/*` host select all resources, no other hosts can be added");
        }
        if (!out.bind.empty()) e.unsupported("bind");
        if (out.capture_mode != "DEFAULT") e.unsupported("captureMode");
        sc.egress.push_back(std::move(out));
    });

    if (auto v = spec.get("outboundTrafficPolicy")) {
        Obj o(r, *v);
        OutboundTrafficPolicy policy;
        if (auto m = o.get("mode")) {
            std::string mode;
            if (scalar_string(r, *m, mode) && mode == "ALLOW_ANY_DYNAMIC_DNS") {
                r.error(m->mark(), m->path,
                        "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not "
                        "in Sidecar resource");
                o.skip("mode");
            } else {
                o.enumeration("mode", policy.mode, {"REGISTRY_ONLY", "ALLOW_ANY"});
            }
        }
        if (auto ep = o.get("egressProxy")) {
            Obj d(r, *ep);
            Destination dest;
            parse_destination(d, dest);
            if (policy.mode != "ALLOW_ANY") {
                r.error(ep->mark(), ep->path,
                        "sidecar: egress_proxy must be set only with ALLOW_ANY "
                        "outbound_traffic_policy mode");
            } else {
                if (auto p = fqdn_problem(dest.host); !p.empty())
                    r.error(ep->mark(), join(ep->path, "host"), p);
                if (!dest.port) {
                    r.error(ep->mark(), join(ep->path, "port"),
                            "sidecar: egress_proxy port must be non-nil");
                }
            }
            r.unsupported(ep->mark(), ep->path, "egressProxy is deprecated");
            policy.egress_proxy = dest;
        }
        sc.outbound_traffic_policy = std::move(policy);
    }
    // egress[] scopes each proxy's snapshot and outboundTrafficPolicy's mode is carried in it
    // (control/translate); ingress is not enforced.
    if (auto v = spec.get("ingress")) {
        r.unsupported(v->mark(), v->path, "ingress listeners: the proxy accepts inbound traffic on "
                                          "every port, to 127.0.0.1:<port>");
    }
}

}  // namespace remora::control::model::detail
