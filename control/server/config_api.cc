// The config API: authentication (admin token or remoractl's SVID), then the store's answers as
// JSON (or YAML for GET ?format=yaml).
#include "control/server/config_api.h"

#include <boost/json.hpp>

#include <cctype>

#include "certs/keys.h"
#include "control/store/yaml_json.h"

namespace remora::control::server {

namespace http = boost::beast::http;
namespace json = boost::json;
using common::HttpRequest;
using common::HttpResponse;
using common::json_response;

namespace {

HttpResponse error_response(unsigned status, const std::string& error, unsigned version,
                            const std::vector<std::string>* messages = nullptr) {
    json::object o;
    o["error"] = error;
    if (messages) {
        json::array a;
        for (const auto& m : *messages)
            a.push_back(json::string(m));
        o["messages"] = std::move(a);
    }
    return json_response(status, json::serialize(o) + "\n", version);
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out.push_back(' ');
        } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 &&
                   hex_digit(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

json::array string_array(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v)
        a.push_back(json::string(s));
    return a;
}

}  // namespace

std::pair<std::string, std::map<std::string, std::string>> split_target(std::string_view target) {
    std::map<std::string, std::string> query;
    std::size_t q = target.find('?');
    std::string path(target.substr(0, q));
    if (q == std::string_view::npos) return {path, query};
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        std::size_t amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        std::size_t eq = pair.find('=');
        std::string key = percent_decode(pair.substr(0, eq));
        std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
        if (!key.empty()) query[key] = value;
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
    }
    return {path, query};
}

std::optional<HttpResponse> authorize(const ApiAuth& auth, const HttpRequest& req,
                                      const common::PeerInfo& peer, Access need) {
    const unsigned v = req.version();
    auto admin_id = certs::SpiffeId::for_service_account(auth.trust_domain, "remora-system",
                                                         "remoractl");
    const std::string admin_name =
        admin_id ? admin_id->str() : "spiffe://" + auth.trust_domain + "/ns/remora-system/sa/remoractl";
    if (auto it = req.find(http::field::authorization); it != req.end()) {
        std::string_view value = it->value();
        constexpr std::string_view kBearer = "Bearer ";
        if (value.size() <= kBearer.size() ||
            !std::equal(kBearer.begin(), kBearer.end(), value.begin(),
                        [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
            return error_response(401, "Authorization must be \"Bearer <admin token>\"", v);
        }
        if (!auth.admin_token.empty() &&
            certs::constant_time_equal(value.substr(kBearer.size()), auth.admin_token)) {
            return std::nullopt;
        }
        return error_response(401, "admin token refused", v);
    }
    if (!peer.peer_chain.empty()) {
        auto id = certs::verify_svid(peer.peer_chain, auth.bundle,
                                     certs::VerifyOptions{{auth.trust_domain}}, auth.clock());
        if (!id) {
            return error_response(401, "client certificate refused: " + id.error().message(), v);
        }
        if (admin_id && *id == *admin_id) return std::nullopt;
        if (need == Access::Workload && id->ns() && id->service_account()) return std::nullopt;
        return error_response(403,
                              "identity " + id->str() + " may not use the config API: it needs the "
                              "admin token or a certificate for " + admin_name,
                              v);
    }
    return error_response(401,
                          "no credentials: send Authorization: Bearer <admin token> (the state "
                          "dir's admin-token file) or a client certificate for " + admin_name,
                          v);
}

std::string mesh_config_json(const proxy::MeshConfig& mesh) {
    json::object o;
    o["trustDomain"] = mesh.trust_domain;
    o["rootNamespace"] = mesh.root_namespace;
    o["accessLogFile"] = mesh.access_log_file;
    o["accessLogEncoding"] = mesh.access_log_encoding;
    o["outboundTrafficPolicy"] = json::object{{"mode", mesh.outbound_traffic_policy}};
    o["enableAutoMtls"] = mesh.enable_auto_mtls;
    json::object tracing;
    tracing["sampling"] = mesh.tracing_sampling;
    if (!mesh.zipkin_address.empty())
        tracing["zipkin"] = json::object{{"address", mesh.zipkin_address}};
    json::object defaults;
    defaults["tracing"] = std::move(tracing);
    if (mesh.concurrency) defaults["concurrency"] = *mesh.concurrency;
    if (mesh.termination_drain_seconds) {
        defaults["terminationDrainDuration"] =
            std::to_string(*mesh.termination_drain_seconds) + "s";
    }
    o["defaultConfig"] = std::move(defaults);
    return json::serialize(o) + "\n";
}

ConfigApi::ConfigApi(store::ConfigStore& store, ApiAuth auth, proxy::MeshConfig mesh, Logger log)
    : store_(store), auth_(std::move(auth)), mesh_json_(mesh_config_json(mesh)),
      log_(std::move(log)) {}

bool ConfigApi::serves(std::string_view target) {
    std::string path = split_target(target).first;
    return path == "/v1/config" || path == "/v1/config/version" || path == "/v1/meshconfig";
}

HttpResponse ConfigApi::handle(const HttpRequest& req, const common::PeerInfo& peer) {
    auto [path, query] = split_target(req.target());
    const unsigned v = req.version();
    auto not_allowed = [&](const char* allow) {
        HttpResponse res =
            error_response(405, std::string("method not allowed: use ") + allow, v);
        res.set(http::field::allow, allow);
        return res;
    };
    const bool read = req.method() == http::verb::get || req.method() == http::verb::head;
    if (path == "/v1/meshconfig") {
        if (auto refused = authorize(auth_, req, peer, Access::Workload)) return *refused;
        if (!read) return not_allowed("GET");
        return json_response(200, mesh_json_, v);
    }
    if (auto refused = authorize(auth_, req, peer, Access::Admin)) {
        log_("refused config API request " + std::string(req.method_string()) + " " + path +
             " from " + peer.remote + ": " + std::string(refused->body()));
        return *refused;
    }
    if (path == "/v1/config/version") {
        if (!read) return not_allowed("GET");
        return json_response(200, "{\"version\":" + std::to_string(store_.version()) + "}\n", v);
    }
    std::string source = query.count("source") ? query["source"] : "request";
    if (req.method() == http::verb::post) return change(req, false, source);
    if (req.method() == http::verb::delete_) return change(req, true, source);
    if (read) return list(req, query);
    return not_allowed("GET, POST, DELETE");
}

HttpResponse ConfigApi::change(const HttpRequest& req, bool remove, const std::string& source) {
    const unsigned v = req.version();
    if (req.body().empty()) {
        return error_response(400, "empty body: send Istio YAML (one or more documents)", v);
    }
    store::ChangeResult r = remove ? store_.remove(req.body(), source)
                                   : store_.apply(req.body(), source);
    json::object o;
    o["version"] = r.version;
    json::array items;
    for (const auto& item : r.items) {
        json::object i;
        if (item.action != "skipped") {
            i["kind"] = store::kind_name(item.key.kind);
            i["group"] = store::kind_group(item.key.kind);
            i["namespace"] = item.key.ns;
            i["name"] = item.key.name;
        }
        i["action"] = item.action;
        if (!item.detail.empty()) i["detail"] = item.detail;
        items.push_back(std::move(i));
    }
    o["items"] = std::move(items);
    o["warnings"] = string_array(r.warnings);
    if (!r.ok()) {
        o["error"] = r.error;
        o["messages"] = string_array(r.messages);
        log_(std::string(remove ? "delete" : "apply") + " of " + source + " refused: " + r.error);
    }
    return json_response(static_cast<unsigned>(r.status), json::serialize(o) + "\n", v);
}

HttpResponse ConfigApi::list(const HttpRequest& req,
                             const std::map<std::string, std::string>& query) {
    const unsigned v = req.version();
    auto get = [&](const char* k) -> std::string {
        auto it = query.find(k);
        return it == query.end() ? "" : it->second;
    };
    std::optional<store::Kind> kind;
    if (!get("kind").empty()) {
        kind = store::kind_from_name(get("kind"));
        if (!kind) {
            return error_response(400,
                                  "unknown kind \"" + get("kind") + "\": use " +
                                      store::kind_list(),
                                  v);
        }
    }
    const std::string ns = get("namespace");
    const std::string name = get("name");
    const std::string format = get("format").empty() ? "json" : get("format");
    if (format != "json" && format != "yaml") {
        return error_response(400, "format must be json or yaml", v);
    }
    store::SnapshotPtr snap = store_.snapshot();
    std::vector<const store::Resource*> found;
    for (const auto& [key, r] : snap->resources) {
        if (kind && key.kind != *kind) continue;
        if (!ns.empty() && key.ns != ns) continue;
        if (!name.empty() && key.name != name) continue;
        found.push_back(&r);
    }
    if (!name.empty() && found.empty()) {
        std::string what = kind ? store::kind_name(*kind) : std::string("resource");
        return error_response(404,
                              what + " " + (ns.empty() ? std::string("*") : ns) + "/" + name +
                                  " not found",
                              v);
    }
    if (format == "yaml") {
        std::string text;
        for (const store::Resource* r : found)
            text += (text.empty() ? "" : "---\n") + r->yaml;
        HttpResponse res = json_response(200, std::move(text), v);
        res.set(http::field::content_type, "application/yaml");
        res.set("x-remora-config-version", std::to_string(snap->version));
        return res;
    }
    json::array items;
    for (const store::Resource* r : found) {
        json::object o;
        o["kind"] = store::kind_name(r->key.kind);
        o["group"] = store::kind_group(r->key.kind);
        o["namespace"] = r->key.ns;
        o["name"] = r->key.name;
        o["source"] = r->source;
        o["origin"] = store::origin_name(r->origin);
        o["created"] = r->created;
        o["updated"] = r->updated;
        o["resourceVersion"] = r->resource_version;
        o["yaml"] = r->yaml;
        try {
            o["object"] = store::yaml_to_json(r->yaml);
        } catch (const std::exception&) {
            o["object"] = nullptr;
        }
        items.push_back(std::move(o));
    }
    json::object doc;
    doc["version"] = snap->version;
    doc["items"] = std::move(items);
    return json_response(200, json::serialize(doc) + "\n", v);
}

}  // namespace remora::control::server
