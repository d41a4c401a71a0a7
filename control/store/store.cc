// ConfigStore: split applied YAML into documents, validate the whole resulting config with the
// analyzer's schema messages, write store.json atomically, publish an immutable snapshot, wake
// the waiters.
#include "control/store/store.h"

#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>
#include <unordered_set>

#include "common/files.h"
#include "control/analyze/analyzer.h"
#include "control/model/yaml_read.h"

namespace remora::control::store {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

struct KindInfo {
    Kind kind;
    const char* name;
    const char* group;
    const char* plural;
    const char* short_name;
};

constexpr KindInfo kKinds[] = {
    {Kind::VirtualService, "VirtualService", "networking.istio.io", "virtualservices", "vs"},
    {Kind::DestinationRule, "DestinationRule", "networking.istio.io", "destinationrules", "dr"},
    {Kind::ServiceEntry, "ServiceEntry", "networking.istio.io", "serviceentries", "se"},
    {Kind::WorkloadEntry, "WorkloadEntry", "networking.istio.io", "workloadentries", "we"},
    {Kind::PeerAuthentication, "PeerAuthentication", "security.istio.io", "peerauthentications",
     "pa"},
    {Kind::AuthorizationPolicy, "AuthorizationPolicy", "security.istio.io", "authorizationpolicies",
     "ap"},
    // Kubernetes Services (core v1): the mesh's service names, ports and selectors; their
    // endpoints are the registered pods the selector picks.
    {Kind::Service, "Service", "", "services", "svc"},
    {Kind::Sidecar, "Sidecar", "networking.istio.io", "sidecars", ""},
    {Kind::Gateway, "Gateway", "networking.istio.io", "gateways", "gw"},
    {Kind::RequestAuthentication, "RequestAuthentication", "security.istio.io",
     "requestauthentications", "ra"},
    {Kind::Telemetry, "Telemetry", "telemetry.istio.io", "telemetries", "telemetry"},
    {Kind::ProxyConfig, "ProxyConfig", "networking.istio.io", "proxyconfigs", ""},
};

const KindInfo& info(Kind k) {
    for (const KindInfo& i : kKinds)
        if (i.kind == k) return i;
    return kKinds[0];
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::optional<Kind> kind_exact(const std::string& name) {
    for (const KindInfo& i : kKinds)
        if (name == i.name) return i.kind;
    return std::nullopt;
}

// `kubectl get -o yaml` output carries `status` and `metadata.managedFields`: the API server's
// bookkeeping, not configuration. The lines of those blocks are left out of what is stored, so
// the rest keeps its comments and layout. A key that does not begin its line (flow style) cannot
// be cut by lines: then the document is stored as yaml-cpp emits it without those keys.
std::string without_bookkeeping(const std::string& text, const YAML::Node& doc) {
    std::vector<std::string_view> lines;
    for (std::size_t pos = 0; pos < text.size();) {
        std::size_t nl = text.find('\n', pos);
        std::size_t end = nl == std::string::npos ? text.size() : nl + 1;
        lines.emplace_back(text.data() + pos, end - pos);
        pos = end;
    }
    auto indent = [](std::string_view line) {
        std::size_t n = line.find_first_not_of(' ');
        return n == std::string_view::npos ? std::string_view::npos : n;
    };
    std::vector<bool> drop(lines.size(), false);
    bool uncut = false;
    auto cut = [&](const YAML::Node& map, std::string_view key) {
        if (!map.IsMap()) return;
        for (auto it = map.begin(); it != map.end(); ++it) {
            if (!it->first.IsScalar() || it->first.Scalar() != key) continue;
            const YAML::Mark at = it->first.Mark();
            if (at.is_null() || at.line < 0 || static_cast<std::size_t>(at.line) >= lines.size()) {
                return;
            }
            std::size_t first = static_cast<std::size_t>(at.line);
            std::size_t column = static_cast<std::size_t>(at.column);
            if (indent(lines[first]) != column) {
                uncut = true;
                return;
            }
            std::size_t last = first + 1;
            while (last < lines.size()) {
                std::size_t i = indent(lines[last]);
                bool blank =
                    i == std::string_view::npos || lines[last][i] == '\n' || lines[last][i] == '\r';
                if (!blank && i <= column &&
                    !(i == column && lines[last].substr(i, 2) == "- ")) {  // "key:\n- item"
                    break;
                }
                ++last;
            }
            for (std::size_t l = first; l < last; ++l)
                drop[l] = true;
        }
    };
    cut(doc, "status");
    cut(model::field(doc, "metadata"), "managedFields");
    if (uncut) {
        YAML::Node copy = YAML::Clone(doc);
        copy.remove("status");
        YAML::Node meta = model::field(copy, "metadata");
        if (meta.IsMap()) meta.remove("managedFields");
        YAML::Emitter out;
        out << copy;
        return std::string(out.c_str()) + "\n";
    }
    std::string out;
    for (std::size_t l = 0; l < lines.size(); ++l) {
        if (!drop[l]) out.append(lines[l]);
    }
    return out;
}

// Leading blank lines and trailing whitespace removed, one final newline.
std::string tidy(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.pop_back();
    std::size_t start = 0;
    while (true) {
        std::size_t nl = s.find('\n', start);
        if (nl == std::string::npos) break;
        bool blank = std::all_of(s.begin() + static_cast<std::ptrdiff_t>(start),
                                 s.begin() + static_cast<std::ptrdiff_t>(nl),
                                 [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
        if (!blank) break;
        start = nl + 1;
    }
    return s.substr(start) + "\n";
}

// The file name a stored resource's text goes by when it is validated again.
std::string stored_name(const ResourceKey& key) {
    return "store:" + std::string(kind_name(key.kind)) + "/" + key.ns + "/" + key.name;
}
std::string stored_name(const Resource& r) {
    return stored_name(r.key);
}

}  // namespace

const char* kind_name(Kind kind) {
    return info(kind).name;
}

const char* kind_group(Kind kind) {
    return info(kind).group;
}

std::vector<Kind> all_kinds() {
    std::vector<Kind> out;
    for (const KindInfo& i : kKinds)
        out.push_back(i.kind);
    return out;
}

std::string kind_list(bool short_names) {
    std::string out;
    const std::size_t n = std::size(kKinds);
    for (std::size_t i = 0; i < n; ++i) {
        if (i > 0) out += i + 1 == n ? " or " : ", ";
        out += kKinds[i].name;
        if (short_names && *kKinds[i].short_name) {
            out += std::string(" (") + kKinds[i].short_name + ")";
        }
    }
    return out;
}

std::optional<Kind> kind_from_name(std::string_view name) {
    std::string n = lower(name);
    for (const KindInfo& i : kKinds) {
        std::string singular = lower(i.name);
        bool grouped = *i.group && (n == singular + "." + i.group ||
                                    n == std::string(i.plural) + "." + i.group);
        if (n == singular || n == i.plural || (*i.short_name && n == i.short_name) || grouped) {
            return i.kind;
        }
    }
    return std::nullopt;
}

std::string ResourceKey::str() const {
    return std::string(kind_name(kind)) + " " + ns + "/" + name;
}

const char* origin_name(Origin origin) {
    switch (origin) {
        case Origin::Api: return "api";
        case Origin::ConfigDir: return "config-dir";
        case Origin::Kube: return "kube";
    }
    return "api";
}

namespace {

// How a refusal names the owner of a resource the API may not change.
std::string managed_by(const Resource& r) {
    if (r.origin == Origin::Kube) return "managed by the Kubernetes API (--kube, " + r.source + ")";
    return "managed by --config-dir (" + r.source + ")";
}

}  // namespace

DirBackend::DirBackend(fs::path dir) : dir_(std::move(dir)), file_(dir_ / kStoreFile) {
    std::error_code ec;
    if (!fs::is_directory(dir_, ec)) {
        fs::create_directories(dir_, ec);
        if (ec) throw std::runtime_error("cannot create " + dir_.string() + ": " + ec.message());
        fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace, ec);
    }
}

std::optional<StoredResources> DirBackend::load() {
    std::error_code ec;
    if (!fs::exists(file_, ec)) return std::nullopt;
    return decode_resources(common::read_file(file_), file_.string());
}

uint64_t DirBackend::persist(uint64_t base_version, const std::map<ResourceKey, Resource>& resources,
                             const StoreChange&) {
    common::write_file_atomic(file_, encode_resources(base_version + 1, resources), 0600);
    return base_version + 1;
}

ConfigStore::ConfigStore(fs::path dir, Clock clock, Logger log)
    : ConfigStore(std::make_unique<DirBackend>(std::move(dir)), std::move(clock), std::move(log)) {}

ConfigStore::ConfigStore(std::unique_ptr<StoreBackend> backend, Clock clock, Logger log)
    : backend_(std::move(backend)), clock_(std::move(clock)), log_(std::move(log)) {
    current_.store(std::make_shared<const Snapshot>());
    load();
    backend_->watch([this](StoredUpdate update) { take_remote(std::move(update)); });
}

ConfigStore::~ConfigStore() {
    backend_->stop();
}

int64_t ConfigStore::now_seconds() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock_().time_since_epoch()).count();
}

ConfigStore::Parsed ConfigStore::split_documents(const std::string& text) {
    Parsed out;
    for (auto& [line, doc_text] : model::yaml_documents(text)) {
        YAML::Node doc;
        try {
            doc = model::load_document(doc_text);
        } catch (const YAML::Exception&) {
            continue;  // the model reports the syntax error, with the right line
        }
        if (!doc.IsMap()) continue;
        // model::field, not doc["metadata"]["name"]: that throws when metadata is a string.
        std::string kind = model::scalar_text(model::field(doc, "kind"));
        std::string name = model::scalar_text(model::field(doc, {"metadata", "name"}));
        std::string ns = model::scalar_text(model::field(doc, {"metadata", "namespace"}));
        if (ns.empty()) ns = "default";
        auto k = kind_exact(kind);
        const std::string api = model::scalar_text(model::field(doc, "apiVersion"));
        if (k == Kind::Service && api != "v1") {
            k.reset();  // Knative's, ...
        }
        if (k == Kind::Gateway && !api.empty() && !api.starts_with("networking.istio.io/")) {
            k.reset();  // Kubernetes Gateway API's
        }
        if (!k) {
            ChangeResult::Item item;
            item.action = "skipped";
            item.detail = (kind.empty() ? std::string("a document without kind") : kind) +
                          (name.empty() ? "" : " " + ns + "/" + name) + " at line " +
                          std::to_string(line) + ": not a kind the store holds";
            out.skipped.push_back(std::move(item));
            continue;
        }
        out.docs.push_back({{*k, ns, name}, tidy(without_bookkeeping(doc_text, doc))});
    }
    return out;
}

bool ConfigStore::validate(const Snapshot& cur, const std::map<ResourceKey, Resource>& base,
                           const std::vector<SourceFile>& input, ChangeResult& result) const {
    model::Config config = update_config(cur.config, cur.resources, base);
    std::set<std::string> inputs;
    for (const SourceFile& f : input) {
        model::load_yaml(config, f.text, f.path);
        inputs.insert(f.path);
    }
    analyze::Options options;
    options.only = {analyze::Analyzer::SchemaValidation};
    for (const analyze::Message& m : analyze::analyze(config, options)) {
        if (m.level == analyze::Level::Error) {
            result.messages.push_back(m.str());
        } else if (inputs.count(m.where.file)) {
            result.warnings.push_back(m.str());
        }
    }
    for (const model::Diagnostic* d : config.warnings()) {
        if (d->remora && inputs.count(d->where.file)) result.warnings.push_back(d->str());
    }
    if (result.messages.empty()) return true;
    result.status = 400;
    result.error = "refused: the configuration would not be valid (" +
                   std::to_string(result.messages.size()) + " error" +
                   (result.messages.size() == 1 ? "" : "s") + "); nothing was changed";
    return false;
}

ChangeResult ConfigStore::apply(const std::string& yaml_text, const std::string& source) {
    return with_retry([&]() -> ChangeResult {
        std::lock_guard lock(change_mu_);
        SnapshotPtr cur = snapshot();
        ChangeResult result;
        result.version = cur->version;
        Parsed parsed = split_documents(yaml_text);

        for (const Document& d : parsed.docs) {
            auto it = cur->resources.find(d.key);
            if (it != cur->resources.end() && it->second.origin != Origin::Api) {
                result.messages.push_back(d.key.str() + " is " + managed_by(it->second) +
                                          (it->second.origin == Origin::Kube
                                               ? ": change it there"
                                               : ": change the file there"));
            }
        }
        if (!result.messages.empty()) {
            result.status = 409;
            result.error = "refused: resources managed by --config-dir or --kube cannot be changed "
                           "over the API";
            return result;
        }
        std::map<ResourceKey, Resource> base = cur->resources;
        for (const Document& d : parsed.docs)
            base.erase(d.key);
        if (!validate(*cur, base, {{source, yaml_text}}, result)) return result;
        if (parsed.docs.empty()) {
            result.status = 400;
            result.error = "no " + kind_list(false) + " in " + source;
            result.items = std::move(parsed.skipped);
            return result;
        }

        const int64_t now = now_seconds();
        std::map<ResourceKey, Resource> next_resources = cur->resources;
        std::map<ResourceKey, std::string> actions;  // the last document for a key decides
        for (const Document& d : parsed.docs) {
            auto old = cur->resources.find(d.key);
            Resource r;
            r.key = d.key;
            r.yaml = d.text;
            r.source = source;
            r.origin = Origin::Api;
            r.updated = now;
            r.resource_version = 0;  // this change's version, set by commit
            if (old == cur->resources.end()) {
                r.created = now;
                actions[d.key] = "created";
            } else if (old->second.yaml == d.text) {
                r = old->second;
                actions[d.key] = "unchanged";
            } else {
                r.created = old->second.created;
                actions[d.key] = "configured";
            }
            next_resources[d.key] = std::move(r);
        }
        bool changed = false;
        std::set<ResourceKey> listed;
        for (const Document& d : parsed.docs) {
            if (!listed.insert(d.key).second) continue;
            result.items.push_back({d.key, actions[d.key], ""});
            changed |= actions[d.key] != "unchanged";
        }
        for (auto& s : parsed.skipped)
            result.items.push_back(std::move(s));
        if (!changed) return result;
        if (commit(std::move(next_resources), result)) {
            log_("applied " + source + ": " + std::to_string(listed.size()) + " resource(s), version " +
                 std::to_string(result.version));
        }
        return result;
    });
}

ChangeResult ConfigStore::remove(const std::string& yaml_text, const std::string& source) {
    return with_retry([&]() -> ChangeResult {
        std::lock_guard lock(change_mu_);
        SnapshotPtr cur = snapshot();
        ChangeResult result;
        result.version = cur->version;
        Parsed parsed = split_documents(yaml_text);
        if (parsed.docs.empty()) {
            result.status = 400;
            result.error = "no " + kind_list(false) + " named in " + source;
            return result;
        }
        std::set<ResourceKey> keys;
        for (const Document& d : parsed.docs) {
            if (!keys.insert(d.key).second) continue;
            auto it = cur->resources.find(d.key);
            if (it == cur->resources.end()) {
                result.status = 404;
                result.messages.push_back(d.key.str() + " not found");
            } else if (it->second.origin != Origin::Api && result.status != 404) {
                result.status = 409;
                result.messages.push_back(d.key.str() + " is " + managed_by(it->second) +
                                          (it->second.origin == Origin::Kube
                                               ? ": delete it there"
                                               : ": remove it from the file there"));
            }
        }
        if (!result.messages.empty()) {
            result.error = result.status == 404
                               ? "not found: " + result.messages.front() +
                                     (result.messages.size() > 1 ? " (and more)" : "") +
                                     "; nothing was deleted"
                               : "refused: resources managed by --config-dir or --kube cannot be "
                                 "deleted over the API";
            return result;
        }
        std::map<ResourceKey, Resource> next_resources = cur->resources;
        for (const ResourceKey& k : keys) {
            next_resources.erase(k);
            result.items.push_back({k, "deleted", ""});
        }
        if (commit(std::move(next_resources), result)) {
            log_("deleted " + std::to_string(keys.size()) + " resource(s) named in " + source +
                 ", version " + std::to_string(result.version));
        }
        return result;
    });
}

ChangeResult ConfigStore::set_config_dir(const std::vector<SourceFile>& files) {
    return set_owned(Origin::ConfigDir, files);
}

ChangeResult ConfigStore::set_owned(Origin origin, const std::vector<SourceFile>& files) {
    return with_retry([&]() -> ChangeResult {
        std::lock_guard lock(change_mu_);
        SnapshotPtr cur = snapshot();
        ChangeResult result;
        result.version = cur->version;
        std::map<ResourceKey, Document> dir_docs;
        std::map<ResourceKey, std::string> dir_source;
        std::vector<SourceFile> inputs;  // what is validated: `files` less another owner's keys
        for (const SourceFile& f : files) {
            Parsed parsed = split_documents(f.text);
            bool taken = true;
            for (Document& d : parsed.docs) {
                auto held = cur->resources.find(d.key);
                if (held != cur->resources.end() && held->second.origin != Origin::Api &&
                    held->second.origin != origin) {
                    result.items.push_back({d.key, "skipped", managed_by(held->second)});
                    taken = false;
                    continue;
                }
                dir_source[d.key] = f.path;
                dir_docs[d.key] = std::move(d);
            }
            if (taken) inputs.push_back(f);
        }
        std::map<ResourceKey, Resource> base;
        for (const auto& [key, r] : cur->resources) {
            if (r.origin == origin || dir_docs.count(key)) continue;
            base.emplace(key, r);
        }
        if (!validate(*cur, base, inputs, result)) return result;

        const int64_t now = now_seconds();
        std::map<ResourceKey, Resource> next_resources = base;
        bool changed = false;
        for (auto& [key, d] : dir_docs) {
            auto old = cur->resources.find(key);
            if (old != cur->resources.end() && old->second.origin == origin &&
                old->second.yaml == d.text && old->second.source == dir_source[key]) {
                next_resources.emplace(key, old->second);
                continue;
            }
            Resource r;
            r.key = key;
            r.yaml = d.text;
            r.source = dir_source[key];
            r.origin = origin;
            r.created = old == cur->resources.end() ? now : old->second.created;
            r.updated = now;
            r.resource_version = 0;  // this change's version, set by commit
            std::string detail;
            if (old != cur->resources.end() && old->second.origin == Origin::Api) {
                detail = std::string("applied over the API before; now managed by ") +
                         (origin == Origin::Kube ? "--kube" : "--config-dir");
            }
            result.items.push_back(
                {key, old == cur->resources.end() ? "created" : "configured", detail});
            next_resources.emplace(key, std::move(r));
            changed = true;
        }
        for (const auto& [key, r] : cur->resources) {
            if (r.origin == origin && !dir_docs.count(key)) {
                result.items.push_back({key, "deleted", ""});
                changed = true;
            }
        }
        if (!changed) return result;
        commit(std::move(next_resources), result);
        return result;
    });
}

bool ConfigStore::commit(std::map<ResourceKey, Resource> resources, ChangeResult& result) {
    SnapshotPtr cur = snapshot();
    uint64_t next = 0;
    auto refuse = [&](int status, std::string error) {
        result.status = status;
        result.error = std::move(error);
        result.items.clear();
        log_(result.error);
        return false;
    };
    StoreChange change;
    for (const auto& [key, r] : resources) {
        if (r.origin == Origin::Api && r.resource_version == 0) change.written.push_back(key);
    }
    for (const auto& [key, r] : cur->resources) {
        if (r.origin != Origin::Api) continue;
        auto now = resources.find(key);
        if (now == resources.end() || now->second.origin != Origin::Api) change.deleted.push_back(key);
    }
    const auto t0 = std::chrono::steady_clock::now();
    try {
        next = backend_->persist(cur->version, resources, change);
    } catch (const StoreConflict& e) {
        conflict_ = true;
        return refuse(409, std::string("refused: changed concurrently through another replica (") +
                               e.what() + "); nothing was changed, try again");
    } catch (const StoreUnavailable& e) {
        return refuse(503, std::string("the config store cannot take writes now: ") + e.what() +
                               "; nothing was changed (proxies keep their config)");
    } catch (const std::exception& e) {
        return refuse(500, std::string("cannot write the store: ") + e.what() +
                               "; nothing was changed");
    }
    for (auto& [key, r] : resources) {
        if (r.resource_version == 0) r.resource_version = next;
    }
    auto snap = std::make_shared<Snapshot>();
    snap->version = next;
    const auto t1 = std::chrono::steady_clock::now();
    snap->config = update_config(cur->config, cur->resources, resources);
    snap->resources = std::move(resources);
    result.version = next;
    auto ms = [](auto d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    };
    log_("version " + std::to_string(next) + " stored in " + ms(t1 - t0) + " ms, model built in " +
         ms(std::chrono::steady_clock::now() - t1) + " ms");
    publish(std::move(snap));
    return true;
}

ChangeResult ConfigStore::with_retry(const std::function<ChangeResult()>& change) {
    for (int attempt = 1;; ++attempt) {
        ChangeResult result = change();
        bool conflict = false;
        {
            std::lock_guard lock(change_mu_);
            std::swap(conflict, conflict_);
        }
        if (!conflict || attempt == 5) return result;
        try {
            if (auto stored = backend_->load()) {
                StoredUpdate whole{stored->version, true, std::move(stored->resources), {}};
                take_remote(std::move(whole));
            }
        } catch (const std::exception& e) {
            log_(std::string("reading the store again after a concurrent change failed: ") + e.what());
            return result;
        }
    }
}

void ConfigStore::take_remote(StoredUpdate update) {
    std::lock_guard lock(change_mu_);
    const auto t0 = std::chrono::steady_clock::now();
    SnapshotPtr cur = snapshot();
    if (update.version <= cur->version) return;  // this replica's own change, or older
    // This replica's --config-dir and --kube resources stay its own.
    std::map<ResourceKey, Resource> next;
    if (update.whole) {
        next = std::move(update.resources);
        for (const auto& [key, r] : cur->resources) {
            if (r.origin != Origin::Api) next.insert_or_assign(key, r);
        }
    } else {
        next = cur->resources;
        for (auto& [key, r] : update.resources) {
            auto it = next.find(key);
            if (it == next.end() || it->second.origin == Origin::Api) next.insert_or_assign(key, std::move(r));
        }
        for (const ResourceKey& key : update.deleted) {
            auto it = next.find(key);
            if (it != next.end() && it->second.origin == Origin::Api) next.erase(it);
        }
    }
    auto snap = std::make_shared<Snapshot>();
    snap->version = update.version;
    snap->config = update_config(cur->config, cur->resources, next);
    snap->resources = std::move(next);
    log_("config version " + std::to_string(snap->version) + " from " + backend_->describe() +
         ": " + std::to_string(snap->resources.size()) + " resource(s), model built in " +
         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0).count()) + " ms");
    publish(std::move(snap));
}

namespace {

json::object resource_object(const Resource& r, uint64_t version) {
    json::object o;
    o["kind"] = kind_name(r.key.kind);
    o["namespace"] = r.key.ns;
    o["name"] = r.key.name;
    o["source"] = r.source;
    o["created"] = r.created;
    o["updated"] = r.updated;
    if (uint64_t rv = r.resource_version ? r.resource_version : version) o["resourceVersion"] = rv;
    o["yaml"] = r.yaml;
    return o;
}

// `at` names the object in messages ("resources[3]", or "" for a value on its own).
Resource resource_from(const json::value& v, uint64_t version, const std::string& at,
                       const std::function<std::runtime_error(const std::string&)>& damaged) {
    const json::object* o = v.if_object();
    const std::string prefix = at.empty() ? "" : at + ".";
    if (!o) throw damaged((at.empty() ? std::string("the value") : at) + ": not an object");
    auto str = [&](const char* field) -> std::string {
        const json::value* f = o->if_contains(field);
        if (!f || !f->is_string()) throw damaged(prefix + field + ": missing or not a string");
        return std::string(f->as_string());
    };
    auto num = [&](const char* field) -> int64_t {
        const json::value* f = o->if_contains(field);
        if (!f || !f->is_number()) throw damaged(prefix + field + ": missing or not a number");
        return f->to_number<int64_t>();
    };
    Resource r;
    auto kind = kind_exact(str("kind"));
    if (!kind) throw damaged(prefix + "kind: unknown kind");
    r.key = {*kind, str("namespace"), str("name")};
    r.source = str("source");
    r.yaml = str("yaml");
    r.created = num("created");
    r.updated = num("updated");
    r.resource_version = o->if_contains("resourceVersion") ? static_cast<uint64_t>(num("resourceVersion")) : 0;
    if (r.resource_version == 0) r.resource_version = version;
    return r;
}

}  // namespace

std::string encode_resources(uint64_t version, const std::map<ResourceKey, Resource>& resources) {
    json::array items;
    for (const auto& [key, r] : resources) {
        // The directory is the durable copy of its own resources: they are read again from it.
        if (r.origin != Origin::Api) continue;
        json::object o = resource_object(r, version);
        // A pending change in a one-writer store is written with the version it takes.
        if (!o.contains("resourceVersion")) o["resourceVersion"] = version;
        items.push_back(std::move(o));
    }
    json::object doc;
    doc["version"] = version;
    doc["resources"] = std::move(items);
    return json::serialize(doc) + "\n";
}

StoredResources decode_resources(const std::string& text, const std::string& where) {
    auto damaged = [&](const std::string& why) {
        return std::runtime_error(where + ": damaged config store: " + why);
    };
    json::error_code jec;
    json::value doc = json::parse(text, jec);
    if (jec) throw damaged("not JSON: " + jec.message());
    const json::object* top = doc.if_object();
    if (!top || !top->if_contains("version") || !top->at("version").is_number() ||
        !top->if_contains("resources") || !top->at("resources").is_array()) {
        throw damaged("expected {\"version\": N, \"resources\": [...]}");
    }
    StoredResources out;
    out.version = top->at("version").to_number<uint64_t>();
    std::size_t index = 0;
    for (const json::value& v : top->at("resources").as_array()) {
        Resource r = resource_from(v, out.version, "resources[" + std::to_string(index++) + "]", damaged);
        out.resources[r.key] = std::move(r);
    }
    return out;
}

std::string encode_resource(const Resource& r, uint64_t version) {
    return json::serialize(resource_object(r, version));
}

Resource decode_resource(const std::string& text, uint64_t version, const std::string& where) {
    auto damaged = [&](const std::string& why) {
        return std::runtime_error(where + ": damaged config store: " + why);
    };
    json::error_code jec;
    json::value v = json::parse(text, jec);
    if (jec) throw damaged("not JSON: " + jec.message());
    return resource_from(v, version, "", damaged);
}

void ConfigStore::load() {
    std::optional<StoredResources> stored = backend_->load();
    if (!stored) return;
    auto snap = std::make_shared<Snapshot>();
    snap->version = stored->version;
    snap->resources = std::move(stored->resources);
    snap->config = build_config(snap->resources);
    for (const model::Diagnostic* d : snap->config.errors()) {
        // Stored with an older, more lenient validation: kept, and said loudly.
        log_("stored resource no longer validates: " + d->str());
    }
    log_("loaded " + std::to_string(snap->resources.size()) + " resource(s) from " +
         backend_->describe() + ", version " + std::to_string(snap->version));
    current_.store(std::move(snap));
}

model::Config ConfigStore::build_config(const std::map<ResourceKey, Resource>& resources) {
    model::Config config;
    for (const auto& [key, r] : resources)
        model::load_yaml(config, r.yaml, stored_name(r));
    return config;
}

model::Config ConfigStore::update_config(const model::Config& base,
                                         const std::map<ResourceKey, Resource>& base_resources,
                                         const std::map<ResourceKey, Resource>& resources) {
    // The keys whose text differs, walking both maps in order.
    std::vector<ResourceKey> changed;
    auto b = base_resources.begin();
    auto n = resources.begin();
    while (b != base_resources.end() || n != resources.end()) {
        if (n == resources.end() || (b != base_resources.end() && b->first < n->first)) {
            changed.push_back((b++)->first);
        } else if (b == base_resources.end() || n->first < b->first) {
            changed.push_back((n++)->first);
        } else {
            if (b->second.yaml != n->second.yaml) changed.push_back(n->first);
            ++b;
            ++n;
        }
    }
    // Reading everything again is cheaper than copying a model most of which changes.
    if (changed.size() * 2 > resources.size()) return build_config(resources);
    model::Config config = base;
    std::unordered_set<std::string> files;
    for (const ResourceKey& key : changed)
        files.insert(stored_name(key));
    model::erase_files(config, files);
    for (const ResourceKey& key : changed) {
        auto it = resources.find(key);
        if (it != resources.end()) model::load_yaml(config, it->second.yaml, stored_name(it->second));
    }
    model::sort_by_name(config);
    return config;
}

void ConfigStore::publish(SnapshotPtr snap) {
    std::vector<Waiter> ready;
    {
        std::lock_guard lock(wait_mu_);
        current_.store(snap);
        auto it = std::partition(waiters_.begin(), waiters_.end(),
                                 [&](const PendingWaiter& w) { return w.after >= snap->version; });
        for (auto i = it; i != waiters_.end(); ++i)
            ready.push_back(std::move(i->fn));
        waiters_.erase(it, waiters_.end());
    }
    wait_cv_.notify_all();
    for (Waiter& fn : ready)
        fn(snap);
}

uint64_t ConfigStore::on_newer(uint64_t after, Waiter fn) {
    SnapshotPtr now;
    {
        std::lock_guard lock(wait_mu_);
        now = current_.load();
        if (now->version <= after) {
            uint64_t id = next_waiter_id_++;
            waiters_.push_back({id, after, std::move(fn)});
            return id;
        }
    }
    fn(std::move(now));
    return 0;
}

bool ConfigStore::cancel_waiter(uint64_t id) {
    std::lock_guard lock(wait_mu_);
    auto it = std::find_if(waiters_.begin(), waiters_.end(),
                           [id](const PendingWaiter& w) { return w.id == id; });
    if (it == waiters_.end()) return false;
    waiters_.erase(it);
    return true;
}

SnapshotPtr ConfigStore::wait_newer(uint64_t after, std::chrono::milliseconds timeout) {
    std::unique_lock lock(wait_mu_);
    if (!wait_cv_.wait_for(lock, timeout, [&] { return current_.load()->version > after; })) {
        return nullptr;
    }
    return current_.load();
}

}  // namespace remora::control::store
