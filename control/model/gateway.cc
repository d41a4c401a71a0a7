// Gateway (networking.istio.io): parsing with Istio's validation rules (pkg/config/validation
// ValidateGateway, validateServer, validateServerPort, validateServerBind).
#include <algorithm>
#include <cctype>
#include <map>

#include "control/model/checks.h"
#include "control/model/parsers.h"

namespace remora::control::model::detail {

namespace {

bool is_http(const std::string& p) {
    std::string u = ascii_upper(p);
    return u == "HTTP" || u == "HTTP2" || u == "GRPC" || u == "GRPC-WEB" || u == "HTTP_PROXY";
}

void parse_server(Obj& s, Server& out, bool gateway_semantics) {
    Reporter& r = s.reporter();
    auto hosts = s.get("hosts");
    s.strings("hosts", out.hosts);
    if (out.hosts.empty()) {
        r.error(hosts ? hosts->mark() : s.mark(), join(s.path(), "hosts"),
                "server config must contain at least one host");
    }
    for (std::size_t i = 0; i < out.hosts.size(); ++i) {
        const std::string& h = out.hosts[i];
        // Gateway API conversions may use "~" as the namespace.
        std::string checked = h;
        if (gateway_semantics && h.starts_with("~/")) checked = "*" + h.substr(1);
        for (const auto& p : namespace_host_problems(checked, true))
            r.error(mark_of(item(hosts->node, i)), at_index(hosts->path, i), p);
    }
    s.str("bind", out.bind);
    s.str("name", out.name);
    std::string default_endpoint;
    s.str("defaultEndpoint", default_endpoint);
    if (!default_endpoint.empty()) s.unsupported("defaultEndpoint");

    auto port = s.get("port");
    bool port_ok = false;
    if (!port) {
        r.error(s.mark(), join(s.path(), "port"), "port is required");
    } else {
        Obj p(r, *port);
        std::size_t errors = r.error_count();
        auto number = p.get("number");
        p.integer("number", out.port.number, 0, UINT32_MAX);
        auto protocol = p.get("protocol");
        p.str("protocol", out.port.protocol);
        if (!is_protocol(out.port.protocol)) {
            r.error(protocol ? protocol->mark() : port->mark(), join(port->path, "protocol"),
                    "invalid protocol " + in_quotes(out.port.protocol) +
                        ", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, "
                        "MYSQL, TCP");
        }
        if ((out.port.number > 0 || !out.bind.starts_with("unix://")) &&
            (out.port.number < 1 || out.port.number > 65535)) {
            r.error(number ? number->mark() : port->mark(), join(port->path, "number"),
                    "port number " + std::to_string(out.port.number) +
                        " must be in the range 1..65535");
        }
        if (auto t = p.get("targetPort")) {
            uint32_t target = 0;
            if (p.integer("targetPort", target, 0, UINT32_MAX) && target > 0)
                r.error(t->mark(), t->path, "targetPort has no impact on Gateways");
        }
        auto name = p.get("name");
        p.str("name", out.port.name);
        if (out.port.name.empty()) {
            r.error(name ? name->mark() : port->mark(), join(port->path, "name"),
                    "port name must be set: number:" + std::to_string(out.port.number) +
                        " protocol:" + in_quotes(out.port.protocol));
        }
        port_ok = r.error_count() == errors;
    }
    // validateServerBind.
    if (auto b = s.get("bind")) {
        if (out.bind.starts_with("unix://")) {
            if (auto p = unix_address_problem(std::string_view(out.bind).substr(7)); !p.empty())
                r.error(b->mark(), b->path, p);
            if (port && out.port.number != 0) {
                r.error(b->mark(), b->path, "port number must be 0 for unix domain socket");
            }
        } else if (!out.bind.empty() && !is_ip(out.bind)) {
            r.error(b->mark(), b->path, out.bind + " is not a valid IP");
        }
    }
    auto tls = s.get("tls");
    if (tls) {
        Obj t(r, *tls);
        parse_server_tls(t, out.tls.emplace());
    }
    if (port_ok) {
        if (is_tls_protocol(out.port.protocol) && !out.tls) {
            r.error(s.mark(), join(s.path(), "tls"),
                    "server must have TLS settings for HTTPS/TLS protocols");
        } else if (!is_tls_protocol(out.port.protocol) && out.tls) {
            if (is_http(out.port.protocol)) {
                bool passthrough =
                    out.tls->mode == "PASSTHROUGH" || out.tls->mode == "AUTO_PASSTHROUGH";
                if (!passthrough || !out.tls->ca_certificates.empty() ||
                    !out.tls->private_key.empty() || !out.tls->server_certificate.empty()) {
                    r.error(tls->mark(), tls->path,
                            "server cannot have TLS settings for plain text HTTP ports");
                }
            } else {
                r.error(tls->mark(), tls->path,
                        "server cannot have TLS settings for non HTTPS/TLS ports");
            }
        }
    }
}

}  // namespace

void parse_gateway(Obj& spec, Gateway& gw, bool gateway_semantics) {
    Reporter& r = spec.reporter();
    if (!gateway_semantics && !gw.meta.name.empty() && !is_dns1123_label(gw.meta.name)) {
        r.error(spec.mark(), "metadata.name", "invalid gateway name: " + in_quotes(gw.meta.name));
    }
    if (auto sel = spec.get("selector")) {
        spec.string_map("selector", gw.selector);
        check_labels(r, *sel, gw.selector);
    }
    auto servers = spec.get("servers");
    if (!servers || !servers->node.IsSequence() || servers->node.size() == 0) {
        r.error(servers ? servers->mark() : spec.mark(), join(spec.path(), "servers"),
                "gateway must have at least one server");
    }
    std::map<std::string, bool> port_names;
    spec.list("servers", [&](const Value& v, std::size_t) {
        if (v.node.IsNull()) {
            r.error(v.mark(), v.path, "server may not be nil");
            return;
        }
        Obj s(r, v);
        Server server;
        server.where = r.location(v.mark());
        parse_server(s, server, gateway_semantics);
        if (s.has("port")) {
            if (port_names[server.port.name]) {
                r.error(v.mark(), join(join(v.path, "port"), "name"),
                        "port names in servers must be unique: duplicate name " + server.port.name);
            }
            port_names[server.port.name] = true;
            if (!is_http(server.port.protocol) && server.tls && server.tls->https_redirect) {
                r.warning(v.mark(), join(join(v.path, "tls"), "httpsRedirect"),
                          "tls.httpsRedirect should only be used with http servers");
            }
        }
        gw.servers.push_back(std::move(server));
    });
    r.unsupported(spec.mark(), spec.path().empty() ? "spec" : spec.path(),
                  "no gateway proxy: VirtualServices bound to it are not served");
}

}  // namespace remora::control::model::detail
