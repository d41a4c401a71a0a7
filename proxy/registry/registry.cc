// Parses ServiceEntry and WorkloadEntry YAML into Services, with Istio's validation rules and
// errors that point at file, line, column and field; builds the host and address indexes.
#include "proxy/registry/registry.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <system_error>

#include "control/model/yaml_read.h"

namespace remora::proxy {

namespace {

namespace ip = boost::asio::ip;

constexpr std::string_view kClusterDomain = "cluster.local";
constexpr std::string_view kTlsModeLabel = "security.istio.io/tlsMode";
constexpr std::array<std::string_view, 3> kApiVersions = {
    "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"};
constexpr std::array<std::string_view, 7> kProtocols = {"HTTP",  "HTTPS", "GRPC", "HTTP2",
                                                        "MONGO", "TCP",   "TLS"};

std::string lowercase(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string uppercase(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

bool is_alnum(char c, bool allow_upper) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (allow_upper && c >= 'A' && c <= 'Z');
}

// RFC 1123 label. Kubernetes names are lowercase; Istio's host and port-name checks take any case.
bool is_dns_label(std::string_view s, bool allow_upper) {
    if (s.empty() || s.size() > 63) return false;
    if (!is_alnum(s.front(), allow_upper) || !is_alnum(s.back(), allow_upper)) return false;
    return std::all_of(s.begin(), s.end(),
                       [&](char c) { return c == '-' || is_alnum(c, allow_upper); });
}

std::vector<std::string_view> split_dots(std::string_view s) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        std::size_t dot = s.find('.', start);
        parts.push_back(s.substr(start, dot == std::string_view::npos ? dot : dot - start));
        if (dot == std::string_view::npos) return parts;
        start = dot + 1;
    }
}

// Kubernetes object names (metadata.name, service accounts).
bool is_dns_subdomain(std::string_view s) {
    if (s.empty() || s.size() > 253) return false;
    auto labels = split_dots(s);
    return std::all_of(labels.begin(), labels.end(),
                       [](std::string_view l) { return is_dns_label(l, false); });
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Istio's ValidateWildcardDomain: a DNS name whose first label may be "*" or start with "*"/"*-";
// one trailing dot allowed; the top-level label must not be all digits. "" when valid.
std::string host_problem(std::string_view host) {
    if (host == "*") return "\"*\" is not allowed in a ServiceEntry";
    if (host.size() > 255) return "longer than 255 characters";
    std::string_view name = host;
    if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);
    auto labels = split_dots(name);
    std::string_view first = labels.front();
    std::string_view first_rest = first;
    if (first_rest.starts_with("*-")) {
        first_rest.remove_prefix(2);
    } else if (first_rest.starts_with('*')) {
        first_rest.remove_prefix(1);
    }
    bool first_ok = first.size() <= 63 &&
                    ((first == "*" && labels.size() > 1) || is_dns_label(first_rest, true));
    if (!first_ok) {
        return "\"" + std::string(host) + "\" is not a DNS name (label \"" + std::string(first) +
               "\")";
    }
    for (std::size_t i = 1; i < labels.size(); ++i) {
        if (!is_dns_label(labels[i], true)) {
            return "\"" + std::string(host) + "\" is not a DNS name (label \"" +
                   std::string(labels[i]) + "\")";
        }
    }
    if (labels.size() > 1 && all_digits(labels.back())) {
        return "\"" + std::string(host) +
               "\" is not a DNS name (all-digit top-level label; IP addresses go in "
               "spec.addresses)";
    }
    return "";
}

ip::address unmap_v4(const ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return ip::make_address_v4(ip::v4_mapped, a.to_v6());
    }
    return a;
}

// "a.b" for plain keys, a["x.y/z"] for keys that hold dots or slashes (label keys).
std::string join(const std::string& base, std::string_view key) {
    bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!plain) return base + "[\"" + std::string(key) + "\"]";
    return base.empty() ? std::string(key) : base + "." + std::string(key);
}

std::string at_index(const std::string& base, std::size_t i) {
    return base + "[" + std::to_string(i) + "]";
}

std::string in_quotes(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

// Where errors point. yaml-cpp's marks are 0-based; messages are 1-based.
class Source {
  public:
    explicit Source(const std::string& file) : file_(file) {}

    // Lines before the document being read (marks count from its own first line).
    void set_line_offset(int lines) { line_offset_ = lines; }

    [[noreturn]] void fail(const YAML::Mark& at, const std::string& path,
                           const std::string& what) const {
        std::string loc = file_;
        if (!at.is_null()) {
            loc += ":" + std::to_string(at.line + 1 + line_offset_) + ":" +
                   std::to_string(at.column + 1);
        }
        throw ConfigError(loc + ": " + (path.empty() ? "document" : path) + ": " + what);
    }
    // The mark counted from the file's first line, for keeping past the document.
    YAML::Mark in_file(YAML::Mark at) const {
        if (!at.is_null()) at.line += line_offset_;
        return at;
    }
    // Where an in_file() mark is.
    std::string where(const YAML::Mark& at) const { return "line " + std::to_string(at.line + 1); }

  private:
    const std::string& file_;
    int line_offset_ = 0;
};

struct Field {
    YAML::Node key;
    YAML::Node value;
    std::string path;
};

// A YAML mapping with its field path; rejects duplicate keys (yaml-cpp keeps both silently).
class Object {
  public:
    Object(const Source& src, const YAML::Node& node, std::string path, YAML::Mark anchor)
        : src_(src), path_(std::move(path)), anchor_(anchor) {
        if (!node.IsMap()) src_.fail(node.Mark(), path_, "must be a mapping");
        for (auto it = node.begin(); it != node.end(); ++it) {
            if (!it->first.IsScalar()) {
                src_.fail(it->first.Mark(), path_, "field names must be strings");
            }
            const std::string& key = it->first.Scalar();
            if (fields_.count(key)) {
                src_.fail(it->first.Mark(), join(path_, key), "duplicate field");
            }
            fields_.emplace(key, Field{it->first, it->second, join(path_, key)});
            order_.push_back(key);
        }
    }

    // Istio rejects fields its schema does not define.
    void only(std::initializer_list<std::string_view> allowed) const {
        for (const auto& key : order_) {
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                const Field& f = fields_.at(key);
                src_.fail(f.key.Mark(), f.path, "unknown field");
            }
        }
    }

    // The field unless absent or null (JSON null means unset).
    std::optional<Field> opt(const std::string& key) const {
        auto it = fields_.find(key);
        if (it == fields_.end() || it->second.value.IsNull()) return std::nullopt;
        return it->second;
    }

    Field req(const std::string& key) const {
        auto it = fields_.find(key);
        if (it == fields_.end()) src_.fail(anchor_, join(path_, key), "required");
        if (it->second.value.IsNull())
            src_.fail(it->second.key.Mark(), it->second.path, "required");
        return it->second;
    }

  private:
    const Source& src_;
    std::string path_;
    YAML::Mark anchor_;  // where "required" errors point: the key that holds this mapping
    std::map<std::string, Field> fields_;
    std::vector<std::string> order_;
};

std::string string_value(const Source& src, const YAML::Node& v, const std::string& path) {
    if (!v.IsScalar()) src.fail(v.Mark(), path, "must be a string");
    return v.Scalar();
}

std::string string_value(const Source& src, const Field& f) {
    return string_value(src, f.value, f.path);
}

std::string nonempty_string(const Source& src, const Field& f) {
    std::string s = string_value(src, f);
    if (s.empty()) src.fail(f.value.Mark(), f.path, "must not be empty");
    return s;
}

// A plain (unquoted) decimal integer in [lo, hi]; `range` names the range in the message.
uint64_t integer_value(const Source& src, const YAML::Node& v, const std::string& path, uint64_t lo,
                       uint64_t hi, const std::string& range) {
    if (!v.IsScalar()) src.fail(v.Mark(), path, "must be " + range);
    const std::string& tag = v.Tag();
    if (tag != "?" && tag != "tag:yaml.org,2002:int") {
        src.fail(v.Mark(), path, "must be " + range + ", not a quoted string");
    }
    const std::string& s = v.Scalar();
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || n < lo || n > hi) {
        src.fail(v.Mark(), path, "must be " + range);
    }
    return n;
}

uint32_t port_value(const Source& src, const YAML::Node& v, const std::string& path) {
    return static_cast<uint32_t>(integer_value(src, v, path, 1, 65535, "1-65535"));
}

std::vector<std::pair<YAML::Node, std::string>> string_list(const Source& src, const Field& f) {
    if (!f.value.IsSequence()) src.fail(f.value.Mark(), f.path, "must be a list");
    std::vector<std::pair<YAML::Node, std::string>> out;
    for (std::size_t i = 0; i < f.value.size(); ++i) {
        YAML::Node item = f.value[i];
        out.emplace_back(item, string_value(src, item, at_index(f.path, i)));
    }
    return out;
}

std::map<std::string, std::string> string_map(const Source& src, const Field& f) {
    Object obj(src, f.value, f.path, f.key.Mark());
    std::map<std::string, std::string> out;
    for (auto it = f.value.begin(); it != f.value.end(); ++it) {
        const std::string& key = it->first.Scalar();
        if (key.empty()) src.fail(it->first.Mark(), f.path, "keys must not be empty");
        std::string value;
        if (!it->second.IsNull()) value = string_value(src, it->second, join(f.path, key));
        out.emplace(key, std::move(value));
    }
    return out;
}

ip::address ip_value(const Source& src, const Field& f, std::string_view what) {
    std::string s = nonempty_string(src, f);
    if (s.find('/') != std::string::npos && !s.starts_with("unix://")) {
        src.fail(f.value.Mark(), f.path,
                 in_quotes(s) + " is a CIDR range; only single IP addresses are supported");
    }
    boost::system::error_code ec;
    ip::address a = ip::make_address(s, ec);
    if (ec) {
        src.fail(f.value.Mark(), f.path,
                 in_quotes(s) + " is not an IP address (" + std::string(what) + ")");
    }
    return unmap_v4(a);
}

struct ResourceId {
    std::string name, ns;
    YAML::Mark name_mark;
};

// metadata.name (DNS-1123 subdomain) and metadata.namespace (DNS-1123 label, default "default").
// Other metadata (labels, annotations, ...) is Kubernetes' business and passes unchecked.
ResourceId parse_metadata(const Source& src, const Object& top) {
    Field md = top.req("metadata");
    Object meta(src, md.value, md.path, md.key.Mark());
    Field name = meta.req("name");
    ResourceId id;
    id.name = nonempty_string(src, name);
    id.name_mark = name.value.Mark();
    if (!is_dns_subdomain(id.name)) {
        src.fail(name.value.Mark(), name.path,
                 in_quotes(id.name) +
                     " is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')");
    }
    id.ns = "default";
    if (auto ns = meta.opt("namespace")) {
        id.ns = nonempty_string(src, *ns);
        if (!is_dns_label(id.ns, false)) {
            src.fail(
                ns->value.Mark(), ns->path,
                in_quotes(id.ns) + " is not a DNS-1123 label (lowercase letters, digits, '-')");
        }
    }
    return id;
}

// WorkloadEntry spec, also the shape of ServiceEntry spec.endpoints[].
Endpoint parse_workload(const Source& src, const Object& spec, const std::string& ns) {
    spec.only({"address", "ports", "labels", "network", "locality", "weight", "serviceAccount"});
    Endpoint e;
    e.ns = ns;
    Field address = spec.req("address");
    std::string addr = nonempty_string(src, address);
    if (addr.starts_with("unix://")) {
        src.fail(address.value.Mark(), address.path, "unix domain sockets are not supported");
    }
    e.address = ip_value(src, address, "hostnames are not supported");
    if (auto ports = spec.opt("ports")) {
        Object obj(src, ports->value, ports->path, ports->key.Mark());
        for (auto it = ports->value.begin(); it != ports->value.end(); ++it) {
            const std::string& name = it->first.Scalar();
            if (name.empty())
                src.fail(it->first.Mark(), ports->path, "port names must not be empty");
            e.ports.emplace(name, port_value(src, it->second, join(ports->path, name)));
        }
    }
    if (auto labels = spec.opt("labels")) e.labels = string_map(src, *labels);
    if (auto sa = spec.opt("serviceAccount")) {
        e.service_account = string_value(src, *sa);
        if (!e.service_account.empty() && !is_dns_subdomain(e.service_account)) {
            src.fail(sa->value.Mark(), sa->path,
                     in_quotes(e.service_account) +
                         " is not a Kubernetes service account name (DNS-1123 subdomain)");
        }
    }
    if (auto network = spec.opt("network")) string_value(src, *network);
    if (auto locality = spec.opt("locality")) string_value(src, *locality);
    if (auto weight = spec.opt("weight")) {
        e.weight = static_cast<uint32_t>(
            integer_value(src, weight->value, weight->path, 0, UINT32_MAX, "0-4294967295"));
    }
    return e;
}

ServicePort parse_port(const Source& src, const YAML::Node& node, const std::string& path) {
    Object obj(src, node, path, node.Mark());
    obj.only({"number", "protocol", "name", "targetPort"});
    ServicePort p;
    Field number = obj.req("number");
    p.number = port_value(src, number.value, number.path);
    Field name = obj.req("name");
    p.name = nonempty_string(src, name);
    if (!is_dns_label(p.name, true)) {
        src.fail(
            name.value.Mark(), name.path,
            in_quotes(p.name) + " is not a valid port name (letters, digits, '-'; at most 63)");
    }
    if (auto protocol = obj.opt("protocol")) {
        // "" asks for protocol detection, as in Istio.
        p.protocol = uppercase(string_value(src, *protocol));
        if (!p.protocol.empty() &&
            std::find(kProtocols.begin(), kProtocols.end(), p.protocol) == kProtocols.end()) {
            src.fail(protocol->value.Mark(), protocol->path,
                     in_quotes(protocol->value.Scalar()) +
                         " is not one of HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS");
        }
    }
    if (auto target = obj.opt("targetPort")) {
        p.target_port = static_cast<uint32_t>(
            integer_value(src, target->value, target->path, 0, 65535, "1-65535"));
    }
    return p;
}

}  // namespace

// Turns documents into Services one by one, then resolves workload selectors across the file.
class RegistryBuilder {
  public:
    explicit RegistryBuilder(const Source& src) : src_(src) {}

    void add_document(const YAML::Node& doc) {
        if (!doc.IsDefined() || doc.IsNull()) return;  // empty document ("---" alone, comments)
        if (!doc.IsMap()) src_.fail(doc.Mark(), "", "must be a mapping (a Kubernetes resource)");
        Object top(src_, doc, "", doc.Mark());
        std::string kind = nonempty_string(src_, top.req("kind"));
        if (kind != "ServiceEntry" && kind != "WorkloadEntry") {
            reg_.notes_.push_back("skipped " + kind + " " + describe(doc) +
                                  " (not a ServiceEntry/WorkloadEntry)");
            return;
        }
        top.only({"apiVersion", "kind", "metadata", "spec", "status"});
        Field api = top.req("apiVersion");
        std::string api_version = string_value(src_, api);
        if (std::find(kApiVersions.begin(), kApiVersions.end(), api_version) ==
            kApiVersions.end()) {
            src_.fail(
                api.value.Mark(), api.path,
                in_quotes(api_version) + " is not networking.istio.io/v1, v1beta1 or v1alpha3");
        }
        ResourceId id = parse_metadata(src_, top);
        check_unique(kind, id);
        Field spec_field = top.req("spec");
        Object spec(src_, spec_field.value, spec_field.path, spec_field.key.Mark());
        if (kind == "ServiceEntry") {
            add_service_entry(id, spec);
        } else {
            Workload w{parse_workload(src_, spec, id.ns), false};
            w.endpoint.name = id.name;
            workloads_.push_back(std::move(w));
        }
    }

    Registry finish() {
        for (Service& s : reg_.services_) {
            if (!s.workload_selector) continue;
            for (Workload& w : workloads_) {
                if (w.endpoint.ns != s.ns || !selects(*s.workload_selector, w.endpoint.labels)) {
                    continue;
                }
                s.endpoints.push_back(w.endpoint);
                w.selected = true;
            }
        }
        for (const Workload& w : workloads_) {
            if (!w.selected) {
                reg_.notes_.push_back("WorkloadEntry " + w.endpoint.ns + "/" + w.endpoint.name +
                                      " is selected by no ServiceEntry");
            }
        }
        reg_.build_indexes();
        return std::move(reg_);
    }

  private:
    struct Workload {
        Endpoint endpoint;
        bool selected;
    };

    // "<ns>/<name>" of a skipped resource, as far as its metadata says.
    static std::string describe(const YAML::Node& doc) {
        std::string ns = "default", name = "(unnamed)";
        for (auto top = doc.begin(); top != doc.end(); ++top) {
            if (!top->first.IsScalar() || top->first.Scalar() != "metadata") continue;
            if (!top->second.IsMap()) break;
            for (auto it = top->second.begin(); it != top->second.end(); ++it) {
                if (!it->first.IsScalar() || !it->second.IsScalar()) continue;
                if (it->first.Scalar() == "namespace") ns = it->second.Scalar();
                if (it->first.Scalar() == "name") name = it->second.Scalar();
            }
        }
        return ns + "/" + name;
    }

    static bool selects(const std::map<std::string, std::string>& selector,
                        const std::map<std::string, std::string>& labels) {
        return std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
            auto it = labels.find(kv.first);
            return it != labels.end() && it->second == kv.second;
        });
    }

    void check_unique(const std::string& kind, const ResourceId& id) {
        auto [it, inserted] = seen_.emplace(kind + " " + id.ns + "/" + id.name,
                                              src_.in_file(id.name_mark));
        if (!inserted) {
            src_.fail(id.name_mark, "metadata.name",
                      kind + " " + id.ns + "/" + id.name + " is already defined at " +
                          src_.where(it->second));
        }
    }

    void add_service_entry(const ResourceId& id, const Object& spec) {
        spec.only({"hosts", "addresses", "ports", "location", "resolution", "endpoints",
                   "workloadSelector", "exportTo", "subjectAltNames"});
        Service s;
        s.name = id.name;
        s.ns = id.ns;

        Field hosts = spec.req("hosts");
        auto host_list = string_list(src_, hosts);
        if (host_list.empty())
            src_.fail(hosts.value.Mark(), hosts.path, "must list at least one host");
        for (std::size_t i = 0; i < host_list.size(); ++i) {
            const auto& [node, host] = host_list[i];
            if (host.empty()) src_.fail(node.Mark(), at_index(hosts.path, i), "must not be empty");
            if (std::string problem = host_problem(host); !problem.empty()) {
                src_.fail(node.Mark(), at_index(hosts.path, i), problem);
            }
            s.hosts.push_back(host);
        }

        if (auto addresses = spec.opt("addresses")) {
            if (!addresses->value.IsSequence()) {
                src_.fail(addresses->value.Mark(), addresses->path, "must be a list");
            }
            for (std::size_t i = 0; i < addresses->value.size(); ++i) {
                Field item{addresses->key, addresses->value[i], at_index(addresses->path, i)};
                s.addresses.push_back(ip_value(src_, item, "addresses are VIPs"));
            }
        }

        if (auto ports = spec.opt("ports")) {
            if (!ports->value.IsSequence())
                src_.fail(ports->value.Mark(), ports->path, "must be a list");
            for (std::size_t i = 0; i < ports->value.size(); ++i) {
                YAML::Node item = ports->value[i];
                std::string path = at_index(ports->path, i);
                ServicePort p = parse_port(src_, item, path);
                for (std::size_t j = 0; j < s.ports.size(); ++j) {
                    if (s.ports[j].number == p.number) {
                        src_.fail(item["number"].Mark(), path + ".number",
                                  std::to_string(p.number) + " is already used by " +
                                      at_index(ports->path, j));
                    }
                    if (s.ports[j].name == p.name) {
                        src_.fail(
                            item["name"].Mark(), path + ".name",
                            in_quotes(p.name) + " is already used by " + at_index(ports->path, j));
                    }
                }
                s.ports.push_back(std::move(p));
            }
        }

        s.location = "MESH_INTERNAL";
        if (auto location = spec.opt("location")) {
            s.location = string_value(src_, *location);
            if (s.location != "MESH_INTERNAL" && s.location != "MESH_EXTERNAL") {
                src_.fail(location->value.Mark(), location->path,
                          in_quotes(s.location) + " is not MESH_INTERNAL or MESH_EXTERNAL");
            }
        }

        std::optional<Field> resolution = spec.opt("resolution");
        if (resolution) {
            s.resolution = string_value(src_, *resolution);
            if (s.resolution != "NONE" && s.resolution != "STATIC" && s.resolution != "DNS" &&
                s.resolution != "DNS_ROUND_ROBIN") {
                src_.fail(resolution->value.Mark(), resolution->path,
                          in_quotes(s.resolution) + " is not NONE, STATIC, DNS or DNS_ROUND_ROBIN");
            }
        }

        std::optional<Field> selector = spec.opt("workloadSelector");
        if (selector) {
            Object sel(src_, selector->value, selector->path, selector->key.Mark());
            sel.only({"labels"});
            s.workload_selector.emplace();
            if (auto labels = sel.opt("labels")) {
                *s.workload_selector = string_map(src_, *labels);
                for (auto it = labels->value.begin(); it != labels->value.end(); ++it) {
                    const std::string& k = it->first.Scalar();
                    if (k.find('*') != std::string::npos ||
                        s.workload_selector->at(k).find('*') != std::string::npos) {
                        src_.fail(it->second.IsNull() ? it->first.Mark() : it->second.Mark(),
                                  join(labels->path, k),
                                  "wildcards are not supported in a selector");
                    }
                }
            }
        }

        if (auto endpoints = spec.opt("endpoints")) {
            if (!endpoints->value.IsSequence()) {
                src_.fail(endpoints->value.Mark(), endpoints->path, "must be a list");
            }
            if (selector && endpoints->value.size() > 0) {
                src_.fail(endpoints->key.Mark(), endpoints->path,
                          "only one of workloadSelector or endpoints can be set");
            }
            if (s.resolution == "NONE" && endpoints->value.size() > 0) {
                src_.fail(endpoints->key.Mark(), endpoints->path,
                          "resolution NONE takes no endpoints");
            }
            for (std::size_t i = 0; i < endpoints->value.size(); ++i) {
                YAML::Node item = endpoints->value[i];
                std::string path = at_index(endpoints->path, i);
                Object obj(src_, item, path, item.Mark());
                Endpoint e = parse_workload(src_, obj, s.ns);
                if (!e.ports.empty()) {
                    const YAML::Node ports = item["ports"];
                    for (auto it = ports.begin(); it != ports.end(); ++it) {
                        const std::string& port_name = it->first.Scalar();
                        bool known =
                            std::any_of(s.ports.begin(), s.ports.end(),
                                        [&](const ServicePort& p) { return p.name == port_name; });
                        if (!known) {
                            src_.fail(it->first.Mark(), join(path + ".ports", port_name),
                                      "is not the name of a port in spec.ports");
                        }
                    }
                }
                s.endpoints.push_back(std::move(e));
            }
        }

        if (s.resolution.empty()) {
            s.resolution = (s.endpoints.empty() && !selector) ? "NONE" : "STATIC";
        }
        // Without endpoints a DNS entry resolves its hosts, which a wildcard cannot be.
        if ((s.resolution == "DNS" || s.resolution == "DNS_ROUND_ROBIN") && s.endpoints.empty() &&
            !selector) {
            for (std::size_t i = 0; i < s.hosts.size(); ++i) {
                if (s.hosts[i].starts_with('*')) {
                    src_.fail(hosts.value[i].Mark(), at_index(hosts.path, i),
                              "resolution " + s.resolution +
                                  " without endpoints needs a host name, not a wildcard");
                }
            }
        }

        if (auto export_to = spec.opt("exportTo")) string_list(src_, *export_to);
        if (auto sans = spec.opt("subjectAltNames")) string_list(src_, *sans);

        reg_.services_.push_back(std::move(s));
    }

    const Source& src_;
    Registry reg_;
    std::vector<Workload> workloads_;
    std::map<std::string, YAML::Mark> seen_;  // "<kind> <ns>/<name>" -> where it was defined
};

bool Endpoint::in_mesh() const {
    auto it = labels.find(std::string(kTlsModeLabel));
    return it != labels.end() && it->second == "istio";
}

std::optional<std::string> Endpoint::spiffe_id(std::string_view trust_domain) const {
    if (service_account.empty() || ns.empty()) return std::nullopt;
    return "spiffe://" + std::string(trust_domain) + "/ns/" + ns + "/sa/" + service_account;
}

const ServicePort* Service::find_port(uint32_t number) const {
    for (const ServicePort& p : ports) {
        if (p.number == number) return &p;
    }
    return nullptr;
}

uint32_t Service::endpoint_port(const Endpoint& e, const ServicePort& p) const {
    if (auto it = e.ports.find(p.name); it != e.ports.end()) return it->second;
    return p.target_port != 0 ? p.target_port : p.number;
}

Registry Registry::parse(const std::string& yaml_text, const std::string& file_name) {
    Source src(file_name);
    RegistryBuilder builder(src);
    // One document at a time, bounded (control::model::load_document): yaml-cpp 0.7's LoadAll
    // can loop forever, and an alias bomb would expand in every walk over the nodes. Marks count
    // from the document's first line; the source adds where it starts.
    for (const auto& [first_line, text] : control::model::yaml_documents(yaml_text)) {
        src.set_line_offset(first_line - 1);
        YAML::Node doc;
        try {
            doc = control::model::load_document(text);
        } catch (const YAML::Exception& e) {
            src.fail(e.mark, "yaml", e.msg);
        }
        builder.add_document(doc);
    }
    return builder.finish();
}

Registry Registry::load_file(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        throw ConfigError(path + ": cannot read: is a directory");
    }
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int err = errno != 0 ? errno : EIO;
        throw ConfigError(path + ": cannot read: " + std::generic_category().message(err));
    }
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) throw ConfigError(path + ": cannot read: I/O error");
    return parse(text, path);
}

void Registry::build_indexes() {
    auto id = [&](std::size_t i) { return services_[i].ns + "/" + services_[i].name; };
    for (std::size_t i = 0; i < services_.size(); ++i) {
        const Service& s = services_[i];
        for (const std::string& written : s.hosts) {
            std::string host = lowercase(written);
            if (host.size() > 1 && host.back() == '.') host.pop_back();
            if (host.starts_with('*')) {
                std::string suffix = host.substr(1);
                auto same = std::find_if(wildcard_hosts_.begin(), wildcard_hosts_.end(),
                                         [&](const auto& w) { return w.first == suffix; });
                if (same == wildcard_hosts_.end()) {
                    wildcard_hosts_.emplace_back(suffix, i);
                } else if (same->second != i) {
                    notes_.push_back("host " + host + " is defined by " + id(same->second) +
                                     " and " + id(i) + "; " + id(same->second) + " wins");
                }
                continue;
            }
            auto [it, inserted] = exact_hosts_.emplace(host, i);
            if (!inserted && it->second != i) {
                notes_.push_back("host " + host + " is defined by " + id(it->second) + " and " +
                                 id(i) + "; " + id(it->second) + " wins");
            }
        }
        for (const auto& vip : s.addresses) {
            for (const ServicePort& p : s.ports) {
                AddrPort key{vip, static_cast<uint16_t>(p.number)};
                auto [it, inserted] = vips_.emplace(key, i);
                if (!inserted && it->second != i) {
                    notes_.push_back("address " + vip.to_string() + ":" + std::to_string(p.number) +
                                     " is claimed by " + id(it->second) + " and " + id(i) + "; " +
                                     id(it->second) + " wins");
                }
            }
        }
        for (const Endpoint& e : s.endpoints) {
            for (const ServicePort& p : s.ports) {
                uint32_t port = s.endpoint_port(e, p);
                AddrPort key{e.address, static_cast<uint16_t>(port)};
                auto [it, inserted] = endpoint_addrs_.emplace(key, i);
                if (!inserted && it->second != i) {
                    notes_.push_back("endpoint " + e.address.to_string() + ":" +
                                     std::to_string(port) + " belongs to " + id(it->second) +
                                     " and " + id(i) + "; lookups by address answer " +
                                     id(it->second));
                }
            }
        }
    }
    // Longest suffix first, so the most specific wildcard wins; stable keeps file order on ties.
    std::stable_sort(wildcard_hosts_.begin(), wildcard_hosts_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

const Service* Registry::find_exact(std::string_view host) const {
    if (auto it = exact_hosts_.find(std::string(host)); it != exact_hosts_.end()) {
        return &services_[it->second];
    }
    return nullptr;
}

const Service* Registry::find_by_host(std::string_view host, std::string_view client_ns) const {
    // Strip ":port" (and the brackets of an IPv6 literal), lowercase, drop a trailing dot.
    if (host.starts_with('[')) {
        std::size_t close = host.find(']');
        host = host.substr(1, close == std::string_view::npos ? close : close - 1);
    } else if (std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
        host = host.substr(0, colon);
    }
    std::string name = lowercase(host);
    if (name.size() > 1 && name.back() == '.') name.pop_back();
    if (name.empty()) return nullptr;

    // Kubernetes DNS search path from the client's namespace.
    std::string expanded;
    std::size_t dots = std::count(name.begin(), name.end(), '.');
    if (dots == 0 && !client_ns.empty()) {
        expanded = name + "." + lowercase(client_ns) + ".svc." + std::string(kClusterDomain);
    } else if (dots == 1) {
        expanded = name + ".svc." + std::string(kClusterDomain);
    } else if (dots == 2 && name.ends_with(".svc")) {
        expanded = name + "." + std::string(kClusterDomain);
    }

    if (const Service* s = find_exact(name)) return s;
    if (!expanded.empty()) {
        if (const Service* s = find_exact(expanded)) return s;
    }
    for (const std::string* candidate : {&name, &expanded}) {
        if (candidate->empty()) continue;
        for (const auto& [suffix, i] : wildcard_hosts_) {
            if (candidate->size() > suffix.size() && candidate->ends_with(suffix)) {
                return &services_[i];
            }
        }
    }
    return nullptr;
}

const Service* Registry::find_by_address(const boost::asio::ip::address& addr,
                                         uint16_t port) const {
    AddrPort key{unmap_v4(addr), port};
    if (auto it = vips_.find(key); it != vips_.end()) return &services_[it->second];
    if (auto it = endpoint_addrs_.find(key); it != endpoint_addrs_.end()) {
        return &services_[it->second];
    }
    return nullptr;
}

}  // namespace remora::proxy
