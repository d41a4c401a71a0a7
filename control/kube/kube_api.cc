// The Kubernetes API's connection settings, kinds and list/watch protocol logic (no I/O here:
// kube_source.cc does the HTTP).
#include "control/kube/kube_api.h"

#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "control/store/yaml_json.h"

namespace remora::control::kube {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p, const std::string& what) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw KubeConfigError(what + ": cannot read " + p.string());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
        s.pop_back();
    return s;
}

// Standard base64 (kubeconfig's *-data fields); nullopt for bad input.
std::optional<std::string> unbase64(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
        int v = val(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return out;
}

// "https://host:port/" → host, port, tls.
void parse_server(const std::string& server, ApiServer& out, const std::string& where) {
    std::string rest;
    if (server.rfind("https://", 0) == 0) {
        out.tls = true;
        rest = server.substr(8);
    } else if (server.rfind("http://", 0) == 0) {
        out.tls = false;
        rest = server.substr(7);
    } else {
        throw KubeConfigError(where + ": \"" + server + "\" is not an https:// or http:// URL");
    }
    rest = rest.substr(0, rest.find('/'));
    std::string host = rest, port = out.tls ? "443" : "80";
    if (!rest.empty() && rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string::npos) throw KubeConfigError(where + ": bad IPv6 address");
        host = rest.substr(1, close - 1);
        if (close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
    } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    if (host.empty() || port.empty())
        throw KubeConfigError(where + ": no host in \"" + server + "\"");
    out.host = host;
    out.port = port;
}

const json::object* obj_at(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    return v ? v->if_object() : nullptr;
}

std::string str_at(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    if (!v || !v->is_string()) return "";
    return std::string(v->as_string());
}

std::string meta_str(const json::object& o, std::string_view key) {
    const json::object* m = obj_at(o, "metadata");
    return m ? str_at(*m, key) : "";
}

}  // namespace

std::string ApiServer::url() const {
    bool v6 = host.find(':') != std::string::npos;
    return std::string(tls ? "https://" : "http://") + (v6 ? "[" + host + "]" : host) + ":" + port;
}

std::string ApiServer::authorization() const {
    std::string t = token;
    if (t.empty() && !token_file.empty()) t = trim(read_text(token_file, "token file"));
    return t.empty() ? "" : "Bearer " + t;
}

ApiServer in_cluster(const fs::path& sa_dir, const EnvFn& env) {
    ApiServer s;
    auto host = env("KUBERNETES_SERVICE_HOST");
    auto port = env("KUBERNETES_SERVICE_PORT");
    if (!host || host->empty() || !port || port->empty()) {
        throw KubeConfigError(
            "--kube: not in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are "
            "not set); use --kubeconfig FILE");
    }
    s.host = *host;
    s.port = *port;
    s.tls = true;
    s.token_file = sa_dir / "token";
    if (!fs::exists(s.token_file)) {
        throw KubeConfigError("--kube: no service-account token at " + s.token_file.string());
    }
    s.ca_pem = read_text(sa_dir / "ca.crt", "--kube: the cluster CA");
    s.described =
        "in-cluster (" + s.url() + ", service account token " + s.token_file.string() + ")";
    return s;
}

ApiServer load_kubeconfig(const fs::path& file, const std::string& context) {
    const std::string f = file.string();
    YAML::Node doc;
    try {
        doc = YAML::LoadFile(f);
    } catch (const YAML::BadFile&) {
        throw KubeConfigError(f + ": cannot read");
    } catch (const YAML::Exception& e) {
        throw KubeConfigError(f + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    const fs::path base = file.parent_path();
    auto field = [](const YAML::Node& n) -> std::string {
        return n && n.IsScalar() ? n.Scalar() : std::string();
    };
    auto at = [&](const YAML::Node& n) {
        return n.Mark().is_null() ? std::string() : ":" + std::to_string(n.Mark().line + 1);
    };
    std::string ctx_name = context.empty() ? field(doc["current-context"]) : context;
    if (ctx_name.empty()) throw KubeConfigError(f + ": current-context: not set");
    auto find_named = [&](const char* list, const std::string& name, const char* inner) {
        YAML::Node items = doc[list];
        if (items && items.IsSequence()) {
            for (const YAML::Node& item : items) {
                if (item.IsMap() && field(item["name"]) == name && item[inner]) return item[inner];
            }
        }
        throw KubeConfigError(f + ": " + list + ": no entry named \"" + name + "\"");
    };
    YAML::Node ctx = find_named("contexts", ctx_name, "context");
    std::string cluster_name = field(ctx["cluster"]);
    std::string user_name = field(ctx["user"]);
    YAML::Node cluster = find_named("clusters", cluster_name, "cluster");
    ApiServer s;
    std::string server = field(cluster["server"]);
    if (server.empty()) {
        throw KubeConfigError(f + at(cluster) + ": clusters[" + cluster_name +
                              "].cluster.server: not set");
    }
    parse_server(server, s,
                 f + at(cluster["server"]) + ": clusters[" + cluster_name + "].cluster.server");
    auto data_or_file = [&](const YAML::Node& n, const char* data_key, const char* file_key,
                            const std::string& where) -> std::string {
        if (std::string d = field(n[data_key]); !d.empty()) {
            auto pem = unbase64(d);
            if (!pem)
                throw KubeConfigError(f + at(n[data_key]) + ": " + where + "." + data_key +
                                      ": not base64");
            return *pem;
        }
        if (std::string p = field(n[file_key]); !p.empty()) {
            fs::path path = fs::path(p).is_absolute() ? fs::path(p) : base / p;
            return read_text(path, f + at(n[file_key]) + ": " + where + "." + file_key);
        }
        return "";
    };
    const std::string cwhere = "clusters[" + cluster_name + "].cluster";
    s.ca_pem = data_or_file(cluster, "certificate-authority-data", "certificate-authority", cwhere);
    s.insecure_skip_verify = field(cluster["insecure-skip-tls-verify"]) == "true";
    if (!user_name.empty()) {
        YAML::Node user = find_named("users", user_name, "user");
        const std::string uwhere = "users[" + user_name + "].user";
        s.token = field(user["token"]);
        if (std::string tf = field(user["tokenFile"]); !tf.empty() && s.token.empty()) {
            s.token_file = fs::path(tf).is_absolute() ? fs::path(tf) : base / tf;
        }
        s.client_cert_pem =
            data_or_file(user, "client-certificate-data", "client-certificate", uwhere);
        s.client_key_pem = data_or_file(user, "client-key-data", "client-key", uwhere);
        if (s.client_cert_pem.empty() != s.client_key_pem.empty()) {
            throw KubeConfigError(f + at(user) + ": " + uwhere +
                                  ": client-certificate and client-key go together");
        }
        if (user["exec"] || user["auth-provider"]) {
            if (s.token.empty() && s.token_file.empty() && s.client_cert_pem.empty()) {
                throw KubeConfigError(f + at(user) + ": " + uwhere +
                                      ": exec and auth-provider credentials are not supported; "
                                      "use a token, tokenFile or a client certificate");
            }
        }
    }
    s.described = "kubeconfig " + f + " context " + ctx_name + " (" + s.url() + ")";
    return s;
}

std::vector<WatchedKind> watched_kinds() {
    auto istio = [](const char* kind, const char* group, const char* plural) {
        WatchedKind k{kind, {}, {}};
        for (const char* v : {"v1", "v1beta1"}) {
            k.paths.push_back(std::string("/apis/") + group + "/" + v + "/" + plural);
            k.api_versions.push_back(std::string(group) + "/" + v);
        }
        return k;
    };
    return {
        {"Namespace", {"/api/v1/namespaces"}, {"v1"}},
        {"Pod", {"/api/v1/pods"}, {"v1"}},
        {"Service", {"/api/v1/services"}, {"v1"}},
        {"EndpointSlice", {"/apis/discovery.k8s.io/v1/endpointslices"}, {"discovery.k8s.io/v1"}},
        istio("VirtualService", "networking.istio.io", "virtualservices"),
        istio("DestinationRule", "networking.istio.io", "destinationrules"),
        istio("ServiceEntry", "networking.istio.io", "serviceentries"),
        istio("WorkloadEntry", "networking.istio.io", "workloadentries"),
        istio("PeerAuthentication", "security.istio.io", "peerauthentications"),
        istio("AuthorizationPolicy", "security.istio.io", "authorizationpolicies"),
    };
}

const char* event_type_name(WatchEvent::Type t) {
    switch (t) {
        case WatchEvent::Type::Added:
            return "ADDED";
        case WatchEvent::Type::Modified:
            return "MODIFIED";
        case WatchEvent::Type::Deleted:
            return "DELETED";
        case WatchEvent::Type::Bookmark:
            return "BOOKMARK";
        case WatchEvent::Type::Error:
            return "ERROR";
    }
    return "?";
}

WatchEvent parse_watch_event(std::string_view line) {
    json::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec) throw std::runtime_error("watch event is not JSON: " + ec.message());
    const json::object* o = v.if_object();
    if (!o) throw std::runtime_error("watch event is not a JSON object");
    std::string type = str_at(*o, "type");
    const json::object* obj = obj_at(*o, "object");
    if (!obj) throw std::runtime_error("watch event " + type + " without an object");
    WatchEvent e;
    e.object = *obj;
    if (type == "ADDED")
        e.type = WatchEvent::Type::Added;
    else if (type == "MODIFIED")
        e.type = WatchEvent::Type::Modified;
    else if (type == "DELETED")
        e.type = WatchEvent::Type::Deleted;
    else if (type == "BOOKMARK")
        e.type = WatchEvent::Type::Bookmark;
    else if (type == "ERROR")
        e.type = WatchEvent::Type::Error;
    else
        throw std::runtime_error("watch event of unknown type \"" + type + "\"");
    if (e.type == WatchEvent::Type::Error) {
        // A metav1.Status: {"kind":"Status","status":"Failure","reason":"Expired","code":410}.
        if (auto* c = obj->if_contains("code"); c && c->is_int64())
            e.code = static_cast<int>(c->as_int64());
        e.message = str_at(*obj, "message");
        if (e.message.empty()) e.message = str_at(*obj, "reason");
        return e;
    }
    e.resource_version = meta_str(*obj, "resourceVersion");
    if (e.type != WatchEvent::Type::Bookmark && meta_str(*obj, "name").empty()) {
        throw std::runtime_error("watch event " + type + ": object without metadata.name");
    }
    return e;
}

std::vector<std::string> take_lines(std::string& buffer) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string line = buffer.substr(start, nl - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) out.push_back(std::move(line));
    }
    buffer.erase(0, start);
    return out;
}

std::string Reflector::key_of(const json::object& obj) {
    std::string ns = meta_str(obj, "namespace");
    std::string name = meta_str(obj, "name");
    return ns.empty() ? name : ns + "/" + name;
}

void Reflector::stamp(json::object& obj) const {
    obj["kind"] = kind_;
    obj["apiVersion"] = api_version_;
    // The server's bookkeeping nobody here reads: kept out of memory.
    if (auto* m = obj.if_contains("metadata"); m && m->is_object())
        m->as_object().erase("managedFields");
}

std::string Reflector::list_target(const std::string& path, const std::string& continue_token,
                                   unsigned limit) const {
    std::string t = path + "?limit=" + std::to_string(limit);
    if (!continue_token.empty()) {
        std::string enc;
        for (unsigned char c : continue_token) {
            if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
                enc += static_cast<char>(c);
            } else {
                char b[4];
                std::snprintf(b, sizeof b, "%%%02X", c);
                enc += b;
            }
        }
        t += "&continue=" + enc;
    }
    return t;
}

std::string Reflector::watch_target(const std::string& path, unsigned timeout_seconds) const {
    return path + "?watch=1&resourceVersion=" + resource_version_ +
           "&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout_seconds);
}

std::string Reflector::on_list_page(std::string_view body) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) throw std::runtime_error(kind_ + " list: not JSON: " + ec.message());
    const json::object* o = v.if_object();
    const json::value* items = o ? o->if_contains("items") : nullptr;
    if (!o || !items || !(items->is_array() || items->is_null())) {
        throw std::runtime_error(kind_ + " list: no items");
    }
    const json::object* meta = obj_at(*o, "metadata");
    std::string version = meta ? str_at(*meta, "resourceVersion") : "";
    std::string cont = meta ? str_at(*meta, "continue") : "";
    if (pending_version_.empty()) pending_version_ = version;
    if (items->is_array()) {
        for (const json::value& item : items->as_array()) {
            const json::object* io = item.if_object();
            if (!io) continue;
            json::object copy = *io;
            stamp(copy);
            std::string key = key_of(copy);
            if (!key.empty()) pending_[key] = std::move(copy);
        }
    }
    if (!cont.empty()) return cont;
    // The last page: every page is the same snapshot, at the first page's version.
    last_list_changed_ = pending_ != objects_;
    objects_ = std::move(pending_);
    pending_.clear();
    resource_version_ = pending_version_.empty() ? version : pending_version_;
    pending_version_.clear();
    needs_list_ = false;
    synced_ = true;
    return "";
}

void Reflector::on_not_served() {
    last_list_changed_ = !objects_.empty();
    objects_.clear();
    pending_.clear();
    pending_version_.clear();
    synced_ = true;
}

Reflector::Step Reflector::on_event(const WatchEvent& e) {
    using T = WatchEvent::Type;
    if (e.type == T::Error) {
        if (e.code == 410) {
            needs_list_ = true;
            return Step::Relist;
        }
        return Step::Failed;
    }
    if (!e.resource_version.empty()) resource_version_ = e.resource_version;
    if (e.type == T::Bookmark) return Step::Unchanged;
    json::object obj = e.object;
    stamp(obj);
    std::string key = key_of(obj);
    if (e.type == T::Deleted) return objects_.erase(key) ? Step::Changed : Step::Unchanged;
    auto it = objects_.find(key);
    if (it != objects_.end() && it->second == obj) return Step::Unchanged;
    objects_[key] = std::move(obj);
    return Step::Changed;
}

namespace {

json::value sorted_keys(const json::value& v) {
    if (const json::array* a = v.if_array()) {
        json::array out;
        for (const json::value& e : *a)
            out.push_back(sorted_keys(e));
        return out;
    }
    const json::object* o = v.if_object();
    if (!o) return v;
    std::vector<std::string_view> keys;
    for (const auto& kv : *o)
        keys.push_back(kv.key());
    std::sort(keys.begin(), keys.end());
    json::object out;
    for (std::string_view k : keys)
        out[k] = sorted_keys(o->at(k));
    return out;
}

}  // namespace

std::string object_yaml(const json::object& obj) {
    json::object copy = obj;
    copy.erase("status");
    if (auto* m = copy.if_contains("metadata"); m && m->is_object()) {
        json::object& meta = m->as_object();
        for (const char* k : {"managedFields", "resourceVersion", "generation", "uid",
                              "creationTimestamp", "selfLink"}) {
            meta.erase(k);
        }
        if (auto* a = meta.if_contains("annotations"); a && a->is_object()) {
            a->as_object().erase("kubectl.kubernetes.io/last-applied-configuration");
            if (a->as_object().empty()) meta.erase("annotations");
        }
    }
    // One order whichever way the object came (a list item is stamped with kind and apiVersion
    // afterwards; a watch event has them first), so the same object is the same text: the
    // usual four first, every other key sorted, at every depth.
    json::object ordered;
    for (const char* k : {"apiVersion", "kind", "metadata", "spec"}) {
        if (auto* v = copy.if_contains(k)) ordered[k] = sorted_keys(*v);
    }
    json::value rest = sorted_keys(copy);
    for (const auto& kv : rest.as_object()) {
        if (!ordered.contains(kv.key())) ordered[kv.key()] = kv.value();
    }
    return store::json_to_yaml(ordered);
}

namespace {

json::object labels_of(const json::object& obj) {
    const json::object* m = obj_at(obj, "metadata");
    const json::object* l = m ? obj_at(*m, "labels") : nullptr;
    return l ? *l : json::object{};
}

}  // namespace

std::vector<RenderedDoc> render(
    const std::map<std::string, const std::map<std::string, json::object>*>& objects) {
    static const std::map<std::string, json::object> kEmpty;
    auto of = [&](const char* kind) -> const std::map<std::string, json::object>& {
        auto it = objects.find(kind);
        return it == objects.end() || !it->second ? kEmpty : *it->second;
    };
    std::vector<RenderedDoc> out;
    for (const char* kind : {"Service", "VirtualService", "DestinationRule", "ServiceEntry",
                             "WorkloadEntry", "PeerAuthentication", "AuthorizationPolicy"}) {
        for (const auto& [key, obj] : of(kind)) {
            RenderedDoc d;
            d.kind = kind;
            d.ns = meta_str(obj, "namespace");
            if (d.ns.empty()) d.ns = "default";
            d.name = meta_str(obj, "name");
            d.source = std::string("kube:") + kind + " " + d.ns + "/" + d.name;
            d.yaml = object_yaml(obj);
            d.resource_version = meta_str(obj, "resourceVersion");
            out.push_back(std::move(d));
        }
    }
    // Endpoints: each ready address of an EndpointSlice becomes a WorkloadEntry carrying its Pod's
    // labels and service account, which the Service's selector then picks (as the registered
    // proxies' pods are picked without --kube). One entry per address however many slices list it.
    const auto& pods = of("Pod");
    const auto& services = of("Service");
    struct Entry {
        json::object labels;
        std::string sa, pod, slice, rv;
        std::map<std::string, int64_t> ports;
    };
    std::map<std::pair<std::string, std::string>, Entry> entries;  // (ns, address)
    for (const auto& [key, slice] : of("EndpointSlice")) {
        std::string ns = meta_str(slice, "namespace");
        if (ns.empty()) ns = "default";
        json::object slice_labels = labels_of(slice);
        std::string service;
        if (auto* s = slice_labels.if_contains("kubernetes.io/service-name"); s && s->is_string()) {
            service = std::string(s->as_string());
        }
        std::map<std::string, int64_t> ports;
        if (auto* p = slice.if_contains("ports"); p && p->is_array()) {
            for (const json::value& pv : p->as_array()) {
                const json::object* po = pv.if_object();
                if (!po) continue;
                std::string name = str_at(*po, "name");
                auto* num = po->if_contains("port");
                if (!name.empty() && num && num->is_int64()) ports[name] = num->as_int64();
            }
        }
        auto* eps = slice.if_contains("endpoints");
        if (!eps || !eps->is_array()) continue;
        for (const json::value& ev : eps->as_array()) {
            const json::object* ep = ev.if_object();
            if (!ep) continue;
            // conditions.ready: "nil should be interpreted as true" (discovery.k8s.io/v1).
            if (const json::object* c = obj_at(*ep, "conditions")) {
                if (auto* r = c->if_contains("ready"); r && r->is_bool() && !r->as_bool()) continue;
            }
            auto* addrs = ep->if_contains("addresses");
            if (!addrs || !addrs->is_array() || addrs->as_array().empty() ||
                !addrs->as_array()[0].is_string()) {
                continue;
            }
            std::string address(addrs->as_array()[0].as_string());
            Entry& e = entries[{ns, address}];
            e.slice = meta_str(slice, "name");
            e.rv = meta_str(slice, "resourceVersion");
            for (const auto& [n, p] : ports)
                e.ports[n] = p;
            const json::object* ref = obj_at(*ep, "targetRef");
            std::string pod_name = ref && str_at(*ref, "kind") == "Pod" ? str_at(*ref, "name") : "";
            std::string pod_ns =
                ref && !str_at(*ref, "namespace").empty() ? str_at(*ref, "namespace") : ns;
            auto pod = pods.find(pod_ns + "/" + pod_name);
            if (!pod_name.empty() && pod != pods.end()) {
                e.pod = pod_name;
                e.labels = labels_of(pod->second);
                if (const json::object* spec = obj_at(pod->second, "spec")) {
                    e.sa = str_at(*spec, "serviceAccountName");
                }
            } else if (e.labels.empty() && !service.empty()) {
                // The Pod is not known (yet, or the slice was written by hand): the entry takes
                // the Service's selector, so the Service still picks it.
                e.pod = pod_name;
                auto svc = services.find(ns + "/" + service);
                if (svc != services.end()) {
                    if (const json::object* spec = obj_at(svc->second, "spec")) {
                        if (const json::object* sel = obj_at(*spec, "selector")) e.labels = *sel;
                    }
                }
            }
        }
    }
    for (auto& [where, e] : entries) {
        const auto& [ns, address] = where;
        std::string name = e.pod;
        if (name.empty()) {
            name = address;
            for (char& c : name) {
                if (c == '.' || c == ':') c = '-';
            }
        }
        name = "kube-endpoint-" + name;
        json::object spec{{"address", address}};
        if (!e.labels.empty()) spec["labels"] = e.labels;
        if (!e.sa.empty()) spec["serviceAccount"] = e.sa;
        if (!e.ports.empty()) {
            json::object ports;
            for (const auto& [n, p] : e.ports)
                ports[n] = p;
            spec["ports"] = std::move(ports);
        }
        json::object we{{"apiVersion", "networking.istio.io/v1"},
                        {"kind", "WorkloadEntry"},
                        {"metadata",
                         {{"name", name},
                          {"namespace", ns},
                          {"annotations", {{"remora.io/endpointslice", e.slice}}}}},
                        {"spec", std::move(spec)}};
        RenderedDoc d;
        d.kind = "WorkloadEntry";
        d.ns = ns;
        d.name = name;
        d.source = "kube:EndpointSlice " + ns + "/" + e.slice;
        d.yaml = object_yaml(we);
        d.resource_version = e.rv;
        out.push_back(std::move(d));
    }
    return out;
}

}  // namespace remora::control::kube
