// What a change can touch follows what translate::translate reads for one workload:
//   VirtualService, DestinationRule, ServiceEntry, Service: the namespaces they are exported to;
//   WorkloadEntry (stored or a registered pod): the scope of every service that selects it;
//   PeerAuthentication, AuthorizationPolicy: the root namespace's everyone, else the workloads
//   of their namespace (those their selector picks);
//   Sidecar: the classes it scopes, before or after (translate::sidecar_for), and those another
//   Sidecar scoped until this one took them over;
//   anything else (a resource not in the model, an invalid one): every class.
// Both the old and the new form of a changed resource count (a VirtualService moving its
// exportTo from `a` to `b` touches both).
#include "control/server/snapshot_cache.h"

#include <boost/json.hpp>

#include <cstdio>
#include <unordered_map>

#include "proxy/snapshot/snapshot_json.h"

namespace remora::control::server {

namespace json = boost::json;
using model::Labels;

namespace {

bool selects(const Labels& selector, const Labels& labels) {
    for (const auto& [k, v] : selector) {
        auto it = labels.find(k);
        if (it == labels.end() || it->second != v) return false;
    }
    return true;
}

ChangeScope everything() {
    ChangeScope s;
    s.all = true;
    return s;
}

// The proxies a resource of `ns` with this exportTo is visible to (translate::exported_to).
ChangeScope exported(const std::string& ns, const std::vector<std::string>& export_to) {
    ChangeScope s;
    if (export_to.empty()) return everything();
    for (const std::string& e : export_to) {
        if (e == "*") return everything();
        if (e == "~") continue;
        s.namespaces.insert(e == "." ? ns : e);
    }
    return s;
}

// Policies that apply to the workloads of their namespace (or everyone's, in the root one).
ChangeScope policy_scope(const std::string& ns, const std::optional<Labels>& selector,
                         const translate::Options& o) {
    if (ns == o.root_namespace) return everything();
    ChangeScope s;
    if (!selector || selector->empty()) {
        s.namespaces.insert(ns);
    } else {
        s.selected.emplace_back(ns, *selector);
    }
    return s;
}

// Looks resources of one config up by kind, namespace and name; built once per change.
class ConfigIndex {
  public:
    explicit ConfigIndex(const model::Config& c) : config_(c) {
        add(store::Kind::VirtualService, c.virtual_services);
        add(store::Kind::DestinationRule, c.destination_rules);
        add(store::Kind::ServiceEntry, c.service_entries);
        add(store::Kind::WorkloadEntry, c.workload_entries);
        add(store::Kind::PeerAuthentication, c.peer_authentications);
        add(store::Kind::AuthorizationPolicy, c.authorization_policies);
        add(store::Kind::Service, c.kube_services);
        add(store::Kind::Sidecar, c.sidecars);
    }

    // The scope of the resource `k` in this config; nullopt when the config does not hold it.
    std::optional<ChangeScope> scope(const store::ResourceKey& k, const translate::Options& o,
                                     const std::function<ChangeScope(const model::WorkloadEntry&)>& we) const {
        auto it = index_.find(key(k.kind, k.ns, k.name));
        if (it == index_.end()) return std::nullopt;
        const std::size_t i = it->second;
        switch (k.kind) {
        case store::Kind::VirtualService: {
            const auto& r = config_.virtual_services[i];
            if (!r.meta.valid) return everything();
            const ChangeScope e = exported(r.meta.ns, r.export_to);
            ChangeScope s;
            s.imported.push_back({r.meta.ns, e.all, e.namespaces});
            return s;
        }
        case store::Kind::DestinationRule: {
            const auto& r = config_.destination_rules[i];
            return r.meta.valid ? exported(r.meta.ns, r.export_to) : everything();
        }
        case store::Kind::ServiceEntry: {
            const auto& r = config_.service_entries[i];
            return r.meta.valid ? exported(r.meta.ns, r.export_to) : everything();
        }
        case store::Kind::Service: {
            const auto& r = config_.kube_services[i];
            return r.meta.valid ? exported(r.meta.ns, translate::service_export_to(r)) : everything();
        }
        case store::Kind::WorkloadEntry: {
            const auto& r = config_.workload_entries[i];
            return r.meta.valid ? we(r) : everything();
        }
        case store::Kind::PeerAuthentication: {
            const auto& r = config_.peer_authentications[i];
            return r.meta.valid ? policy_scope(r.meta.ns, r.selector, o) : everything();
        }
        case store::Kind::AuthorizationPolicy: {
            const auto& r = config_.authorization_policies[i];
            return r.meta.valid ? policy_scope(r.meta.ns, r.selector, o) : everything();
        }
        case store::Kind::Sidecar: {
            // Valid or not: an invalid one scopes nobody, and its other form says whom it did.
            const auto& r = config_.sidecars[i];
            ChangeScope s;
            s.sidecars.insert(r.meta.ns + "/" + r.meta.name);
            return s;
        }
        default:  // a kind translation does not read: everyone
            break;
        }
        return everything();
    }

  private:
    static std::string key(store::Kind kind, const std::string& ns, const std::string& name) {
        return std::to_string(static_cast<int>(kind)) + '\0' + ns + '\0' + name;
    }
    template <typename T>
    void add(store::Kind kind, const std::vector<T>& list) {
        for (std::size_t i = 0; i < list.size(); ++i) {
            // The first of a name, as translation reads them (the store holds one per key).
            index_.emplace(key(kind, list[i].meta.ns, list[i].meta.name), i);
        }
    }
    const model::Config& config_;
    std::unordered_map<std::string, std::size_t> index_;
};

// The services (of either config) that would take a workload entry as an endpoint: Kubernetes
// Services and ServiceEntries of its namespace whose selector picks its labels.
ChangeScope workload_scope(const model::WorkloadEntry& we,
                           std::initializer_list<const model::Config*> configs) {
    ChangeScope s;
    for (const model::Config* c : configs) {
        for (const auto& ks : c->kube_services) {
            if (ks.meta.ns != we.meta.ns || ks.selector.empty() || !selects(ks.selector, we.spec.labels)) continue;
            s.add(ks.meta.valid ? exported(ks.meta.ns, translate::service_export_to(ks)) : everything());
        }
        for (const auto& se : c->service_entries) {
            if (se.meta.ns != we.meta.ns || !se.workload_selector || se.workload_selector->empty() ||
                !selects(*se.workload_selector, we.spec.labels)) {
                continue;
            }
            s.add(se.meta.valid ? exported(se.meta.ns, se.export_to) : everything());
        }
        if (s.all) break;
    }
    return s;
}

// The Sidecar that scopes a class in a config: "namespace/name", "" for none.
std::string sidecar_key(const model::Config& config, const ProxyClass& c, const translate::Options& o) {
    const model::Sidecar* sc = translate::sidecar_for(config, c.ns, c.labels, o);
    return sc ? sc->meta.ns + "/" + sc->meta.name : "";
}

bool same_workload(const model::WorkloadEntry& a, const model::WorkloadEntry& b) {
    return a.meta.ns == b.meta.ns && a.meta.name == b.meta.name && a.meta.valid == b.meta.valid &&
           a.spec.address == b.spec.address && a.spec.ports == b.spec.ports &&
           a.spec.labels == b.spec.labels && a.spec.service_account == b.spec.service_account &&
           a.spec.weight == b.spec.weight && a.spec.network == b.spec.network &&
           a.spec.locality == b.spec.locality;
}

}  // namespace

bool ChangeScope::touches(const ProxyClass& c, const std::string& sidecar_before,
                          const std::string& sidecar_after,
                          const std::set<std::string>* sidecar_imports) const {
    if (all || namespaces.count(c.ns)) return true;
    if (!sidecars.empty() &&
        (sidecar_before != sidecar_after || sidecars.count(sidecar_before))) {
        return true;
    }
    // (Its Sidecar is the same before and after here.)
    for (const Imported& i : imported) {
        if (!i.all && !i.namespaces.count(c.ns)) continue;
        if (sidecar_before.empty() || !sidecar_imports || sidecar_imports->count("*") ||
            sidecar_imports->count(i.ns)) {
            return true;
        }
    }
    for (const auto& [ns, selector] : selected) {
        if (ns == c.ns && selects(selector, c.labels)) return true;
    }
    return false;
}

void ChangeScope::add(const ChangeScope& other) {
    if (all) return;
    if (other.all) {
        *this = everything();
        return;
    }
    namespaces.insert(other.namespaces.begin(), other.namespaces.end());
    sidecars.insert(other.sidecars.begin(), other.sidecars.end());
    for (const Imported& i : other.imported) {
        if (std::find(imported.begin(), imported.end(), i) == imported.end()) imported.push_back(i);
    }
    for (const auto& s : other.selected) {
        if (!namespaces.count(s.first) &&
            std::find(selected.begin(), selected.end(), s) == selected.end()) {
            selected.push_back(s);
        }
    }
}

std::string ChangeScope::str() const {
    if (all) return "all";
    if (empty()) return "none";
    std::string out;
    if (!namespaces.empty()) {
        out = "namespaces ";
        for (const auto& ns : namespaces) out += (out.back() == ' ' ? "" : ",") + ns;
    }
    if (!selected.empty()) {
        out += out.empty() ? "selected" : "; selected";
        for (const auto& [ns, sel] : selected) {
            out += " " + ns + "{";
            bool first = true;
            for (const auto& [k, v] : sel) {
                out += (first ? "" : ",") + k + "=" + v;
                first = false;
            }
            out += "}";
        }
    }
    for (const Imported& i : imported) {
        out += out.empty() ? "" : "; ";
        out += "virtual services of " + i.ns + " for ";
        if (i.all) {
            out += "all";
        } else {
            bool first = true;
            for (const auto& ns : i.namespaces) {
                out += (first ? "" : ",") + ns;
                first = false;
            }
        }
        out += " where imported";
    }
    if (!sidecars.empty()) {
        out += out.empty() ? "sidecars " : "; sidecars ";
        bool first = true;
        for (const auto& sc : sidecars) {
            out += (first ? "" : ",") + sc;
            first = false;
        }
    }
    return out;
}

ChangeScope scope_of_change(const store::Snapshot& before,
                            const std::vector<model::WorkloadEntry>& registered_before,
                            const store::Snapshot& after,
                            const std::vector<model::WorkloadEntry>& registered_after,
                            const translate::Options& o) {
    ChangeScope scope;
    auto we_scope = [&](const model::WorkloadEntry& we) {
        return workload_scope(we, {&before.config, &after.config});
    };
    // The store: resources added, removed or changed (both maps are ordered by key).
    std::vector<store::ResourceKey> changed;
    auto b = before.resources.begin(), a = after.resources.begin();
    while (b != before.resources.end() || a != after.resources.end()) {
        if (a == after.resources.end() || (b != before.resources.end() && b->first < a->first)) {
            changed.push_back((b++)->first);
        } else if (b == before.resources.end() || a->first < b->first) {
            changed.push_back((a++)->first);
        } else {
            if (b->second.resource_version != a->second.resource_version || b->second.yaml != a->second.yaml) {
                changed.push_back(a->first);
            }
            ++a;
            ++b;
        }
    }
    if (!changed.empty()) {
        const ConfigIndex old_index(before.config), new_index(after.config);
        for (const store::ResourceKey& k : changed) {
            auto was = old_index.scope(k, o, we_scope);
            auto is = new_index.scope(k, o, we_scope);
            // A stored resource the model does not hold (refused, or a kind translation does
            // not read yet): in doubt, everyone.
            if (!was && !is) return everything();
            if (was) scope.add(*was);
            if (is) scope.add(*is);
            if (scope.all) return scope;
        }
    }
    // The registry: pods registered, gone, or re-registered with other addresses or labels.
    std::map<std::pair<std::string, std::string>, const model::WorkloadEntry*> old_pods;
    for (const auto& we : registered_before) old_pods.emplace(std::make_pair(we.meta.ns, we.meta.name), &we);
    for (const auto& we : registered_after) {
        auto it = old_pods.find({we.meta.ns, we.meta.name});
        if (it != old_pods.end()) {
            if (!same_workload(*it->second, we)) {
                scope.add(we_scope(*it->second));
                scope.add(we_scope(we));
            }
            old_pods.erase(it);
        } else {
            scope.add(we_scope(we));
        }
        if (scope.all) return scope;
    }
    for (const auto& [key, we] : old_pods) scope.add(we_scope(*we));
    return scope;
}

bool SnapshotCache::Entry::sees_pods_of(const std::set<std::string>& namespaces) const {
    if (other_hosts) return true;
    for (const std::string& ns : namespaces) {
        if (service_namespaces.count(ns)) return true;
    }
    return false;
}

SnapshotCache::SnapshotCache(translate::Options options)
    : options_(std::move(options)),
      registered_(std::make_shared<const std::vector<model::WorkloadEntry>>()) {}

void SnapshotCache::update(store::SnapshotPtr stored, uint64_t generation, const Registered& registered) {
    std::lock_guard lock(mu_);
    if (!stored_) {
        stored_ = std::move(stored);
        generation_ = generation;
        registered_ = std::make_shared<const std::vector<model::WorkloadEntry>>(registered());
        drop_clusters_locked();
        return;
    }
    const bool store_moved = stored->version > stored_->version;
    const bool registry_moved = generation > generation_;
    if (!store_moved && !registry_moved) return;
    store::SnapshotPtr new_stored = store_moved ? std::move(stored) : stored_;
    auto new_registered =
        registry_moved ? std::make_shared<const std::vector<model::WorkloadEntry>>(registered()) : registered_;
    ChangeScope scope = scope_of_change(*stored_, *registered_, *new_stored, *new_registered, options_);
    stats_.changes += 1;
    // Registrations alone: only the snapshots holding the changed pods' namespaces' services
    // can change (their endpoints), whatever exportTo says; under Sidecar scoping that is a
    // fraction of the classes. Invalid workloads change a note everywhere: no shortcut then.
    std::optional<std::set<std::string>> pod_namespaces;
    if (!store_moved && registry_moved) {
        pod_namespaces.emplace();
        std::map<std::pair<std::string, std::string>, const model::WorkloadEntry*> old_pods;
        for (const auto& we : *registered_) old_pods.emplace(std::make_pair(we.meta.ns, we.meta.name), &we);
        for (const auto& we : *new_registered) {
            auto at = old_pods.find({we.meta.ns, we.meta.name});
            if (at == old_pods.end() || !same_workload(*at->second, we)) {
                pod_namespaces->insert(we.meta.ns);
                if (!we.meta.valid || (at != old_pods.end() && !at->second->meta.valid)) pod_namespaces.reset();
            }
            if (at != old_pods.end()) old_pods.erase(at);
            if (!pod_namespaces) break;
        }
        if (pod_namespaces) {
            for (const auto& [key, we] : old_pods) {
                pod_namespaces->insert(we->meta.ns);
                if (!we->meta.valid) pod_namespaces.reset();
                if (!pod_namespaces) break;
            }
        }
    }
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (pod_namespaces && !it->second->sees_pods_of(*pod_namespaces)) {
            ++it;
            stats_.kept += 1;
            continue;
        }
        std::string sidecar_after;
        if (!scope.sidecars.empty()) sidecar_after = sidecar_key(new_stored->config, it->first, options_);
        if (scope.touches(it->first, it->second->sidecar, sidecar_after, &it->second->sidecar_imports)) {
            // Registrations alone leave its config current: kept for answers that may lag.
            if (!store_moved) lagging_[it->first] = it->second;
            it = entries_.erase(it);
            stats_.dropped += 1;
        } else {
            ++it;
            stats_.kept += 1;
        }
    }
    if (store_moved) {
        for (auto it = lagging_.begin(); it != lagging_.end();) {
            std::string sidecar_after;
            if (!scope.sidecars.empty()) sidecar_after = sidecar_key(new_stored->config, it->first, options_);
            if (scope.touches(it->first, it->second->sidecar, sidecar_after, &it->second->sidecar_imports)) {
                it = lagging_.erase(it);
            } else {
                ++it;
            }
        }
    }
    // Translations under way started from the inputs before this change.
    for (auto& [c, what] : inflight_) {
        if (store_moved) {
            what.config_changed = true;
        } else if (pod_namespaces) {
            what.pod_namespaces.insert(pod_namespaces->begin(), pod_namespaces->end());
        } else {
            what.unknown = true;
        }
    }
    stored_ = std::move(new_stored);
    if (registry_moved) generation_ = generation;
    registered_ = std::move(new_registered);
    drop_clusters_locked();
}

void SnapshotCache::drop_clusters_locked() {
    if (!clusters_) return;
    const translate::ClusterTexts::Stats s = clusters_->stats();
    dropped_clusters_.made += s.made;
    dropped_clusters_.reused += s.reused;
    clusters_.reset();
}

void SnapshotCache::drop_shared_clusters() {
    std::lock_guard lock(mu_);
    drop_clusters_locked();
}

SnapshotCache::Result SnapshotCache::get(const ProxyClass& c, Staleness staleness) {
    std::unique_lock lock(mu_);
    for (int attempt = 0;; ++attempt) {
        Result out;
        out.config_version = stored_ ? stored_->version : 0;
        if (staleness == Staleness::RegistrationsMayLag) {
            // Without waiting for a translation of the class under way.
            if (auto it = entries_.find(c); it != entries_.end()) {
                stats_.hits += 1;
                out.entry = it->second;
                return out;
            }
            if (auto it = lagging_.find(c); it != lagging_.end()) {
                stats_.lagging += 1;
                out.entry = it->second;
                out.lagging = true;
                return out;
            }
        }
        // One translation of a class at a time: the others wait for it and take its result.
        inflight_cv_.wait(lock, [&] { return !inflight_.count(c); });
        out.config_version = stored_ ? stored_->version : 0;
        if (auto it = entries_.find(c); it != entries_.end()) {
            stats_.hits += 1;
            out.entry = it->second;
            return out;
        }
        // Translated without the lock, so that classes translate in parallel (one per io
        // thread) and hits are answered meanwhile; from inputs that stay alive (shared).
        store::SnapshotPtr stored = stored_;
        auto registered = registered_;
        if (!clusters_) clusters_ = std::make_shared<translate::ClusterTexts>();
        std::shared_ptr<translate::ClusterTexts> clusters = clusters_;
        inflight_.emplace(c, Inflight{});
        lock.unlock();
        std::shared_ptr<Entry> entry;
        try {
            if (translate_hook_) translate_hook_(c);
            static const model::Config kEmpty;
            const model::Config& config = stored ? stored->config : kEmpty;
            translate::SharedTranslation t = translate::translate_shared(
                config, translate::WorkloadRef{c.ns, c.service_account, c.labels}, options_, *registered,
                *clusters);
            entry = std::make_shared<Entry>();
            std::vector<std::string_view> cluster_texts;
            cluster_texts.reserve(t.clusters.size());
            for (const auto& cl : t.clusters) cluster_texts.push_back(cl->json);
            auto text = std::make_shared<const std::string>(proxy::snapshot::to_json_text(t.snapshot, cluster_texts));
            entry->version = proxy::snapshot::version_of_text(*text);
            if (const model::Sidecar* sc = translate::sidecar_for(config, c.ns, c.labels, options_)) {
                entry->sidecar = sc->meta.ns + "/" + sc->meta.name;
                if (sc->egress.empty()) entry->sidecar_imports.insert("*");
                for (const model::IstioEgressListener& e : sc->egress) {
                    for (const std::string& h : e.hosts) {
                        const std::string ns = h.substr(0, h.find('/'));
                        if (ns.starts_with('~')) continue;
                        entry->sidecar_imports.insert(ns == "." ? c.ns : ns);
                    }
                }
            }
            const std::string suffix = "." + options_.cluster_domain;
            for (const auto& cl : t.clusters) {
                const std::string& h = cl->service_host;
                std::size_t dot = h.find('.');
                if (h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0 &&
                    dot != std::string::npos && dot + 1 < h.size() - suffix.size()) {
                    std::string ns = h.substr(dot + 1, h.size() - suffix.size() - dot - 1);
                    if (ns.find('.') == std::string::npos) {
                        entry->service_namespaces.insert(std::move(ns));
                        continue;
                    }
                }
                entry->other_hosts = true;
            }
            entry->json = std::move(text);
        } catch (...) {
            lock.lock();
            inflight_.erase(c);
            inflight_cv_.notify_all();
            throw;
        }
        lock.lock();
        const Inflight meanwhile = std::move(inflight_.at(c));
        inflight_.erase(c);
        inflight_cv_.notify_all();
        stats_.computes += 1;
        out.config_version = stored ? stored->version : 0;
        out.entry = entry;
        if (meanwhile.config_changed) {
            // The config moved while translating: not cached; once more from the new one,
            // then (if it keeps moving) this answer, which the push its change makes follows.
            stats_.stale += 1;
            if (attempt == 0) continue;
            return out;
        }
        if (meanwhile.unknown || entry->sees_pods_of(meanwhile.pod_namespaces)) {
            // Registrations came meanwhile that change its endpoints: not cached, but the newest
            // this class has (their push follows); not translated again here, which in a
            // start-up storm (a registration every few milliseconds) would never end.
            stats_.stale += 1;
            lagging_[c] = entry;
            out.lagging = true;
            return out;
        }
        if (entries_.size() + lagging_.size() >= kMaxClasses) {
            entries_.clear();
            lagging_.clear();
            stats_.overflows += 1;
        }
        lagging_.erase(c);
        entries_[c] = std::move(entry);
        return out;
    }
}

SnapshotCache::Stats SnapshotCache::stats() const {
    std::lock_guard lock(mu_);
    Stats s = stats_;
    s.classes = entries_.size();
    translate::ClusterTexts::Stats c = dropped_clusters_;
    if (clusters_) {
        const translate::ClusterTexts::Stats now = clusters_->stats();
        c.made += now.made;
        c.reused += now.reused;
    }
    s.clusters_made = c.made;
    s.clusters_shared = c.reused;
    return s;
}

}  // namespace remora::control::server
