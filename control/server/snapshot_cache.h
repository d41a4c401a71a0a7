// Proxy snapshots by class (namespace, service account, labels), computed once per class and
// shared by every proxy of the class; a change of the store or of the registered workloads drops
// only the classes it can touch (exportTo, namespaces, workload selectors, the Sidecar that
// scopes them), as istiod scopes its pushes. When in doubt a change touches every class: a proxy never keeps a stale snapshot.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "control/model/model.h"
#include "control/store/store.h"
#include "control/translate/translate.h"

namespace remora::control::server {

// What a proxy's snapshot depends on besides the config: who it is and its pod's labels.
struct ProxyClass {
    std::string ns, service_account;
    model::Labels labels;
    auto operator<=>(const ProxyClass&) const = default;
};

// The classes a change can touch: all, whole namespaces, the workloads a selector picks in a
// namespace, or the classes a Sidecar applies to (before or after the change).
struct ChangeScope {
    bool all = false;
    std::set<std::string> namespaces;
    std::vector<std::pair<std::string, model::Labels>> selected;  // (namespace, selector)
    // VirtualServices changed: their namespace and the classes they are exported to (all, or
    // these namespaces). Translation imports a VirtualService into a class that a Sidecar
    // scopes only when an egress host names its namespace (or `*`), so those classes are
    // touched only then: a change in `ns-0` exported everywhere leaves the classes of other
    // namespaces under the namespace default Sidecar (`./*`) alone, as istiod's SidecarScope.
    struct Imported {
        std::string ns;
        bool all = false;
        std::set<std::string> namespaces;
        auto operator<=>(const Imported&) const = default;
    };
    std::vector<Imported> imported;
    // Sidecars ("namespace/name") changed, added or removed: the classes whose Sidecar was one
    // of them or whose Sidecar is now another one (SnapshotCache::update decides, with the
    // Sidecar each entry was translated under).
    std::set<std::string> sidecars;

    // Whether the class is touched, given the Sidecar it was translated under ("" = none), the
    // one that applies to it after the change, and the namespaces the egress hosts of the first
    // name ("*" for any; null: unknown, any).
    bool touches(const ProxyClass& c, const std::string& sidecar_before = "",
                 const std::string& sidecar_after = "",
                 const std::set<std::string>* sidecar_imports = nullptr) const;
    bool empty() const {
        return !all && namespaces.empty() && selected.empty() && sidecars.empty() && imported.empty();
    }
    void add(const ChangeScope& other);
    std::string str() const;  // "all", "namespaces a,b; selected a{app=x}; sidecars a/s", "none"
};

// The scope of a change from (`before`, `registered_before`) to (`after`, `registered_after`):
// the store's resources that differ and the registered workloads that differ.
ChangeScope scope_of_change(const store::Snapshot& before,
                            const std::vector<model::WorkloadEntry>& registered_before,
                            const store::Snapshot& after,
                            const std::vector<model::WorkloadEntry>& registered_after,
                            const translate::Options& options);

class SnapshotCache {
  public:
    struct Entry {
        std::string version;                      // the snapshot's content version
        std::shared_ptr<const std::string> json;  // the serialized snapshot
        // The Sidecar that scoped it ("namespace/name"; "" = none): with (namespace, service
        // account, labels) the class's full key, kept here because the labels decide it.
        std::string sidecar;
        // The namespaces its Sidecar's egress hosts name ("*": any; `.` as the class's own).
        std::set<std::string> sidecar_imports;
        // The namespaces of the Kubernetes services its clusters are for (from their hosts,
        // name.<ns>.<cluster domain>), and whether some cluster's host is not one (a
        // ServiceEntry's): a registered pod changes only its own namespace's services'
        // endpoints, so a registration elsewhere leaves this snapshot as it is.
        std::set<std::string> service_namespaces;
        bool other_hosts = false;
        bool sees_pods_of(const std::set<std::string>& namespaces) const;
    };
    struct Result {
        std::shared_ptr<const Entry> entry;
        uint64_t config_version = 0;  // the store version this snapshot is current for
        // The entry misses registrations made since it was translated (get with
        // Staleness::RegistrationsMayLag only): a push for them is on its way.
        bool lagging = false;
    };
    // Whether get may answer with the newest snapshot of a class that registrations (pods
    // coming and going: endpoints) have made out of date, rather than translate it now. The
    // config it holds is current either way. A new poll's first answer may lag (istiod's EDS
    // is eventually consistent the same way): at 10,000 services every registration of a
    // start-up storm made its namespace's next poll translate 1,000 services on an io thread.
    enum class Staleness { Current, RegistrationsMayLag };
    struct Stats {
        uint64_t classes = 0;      // cached now
        uint64_t computes = 0;     // translations done
        uint64_t hits = 0;         // answered from the cache
        uint64_t dropped = 0;      // entries dropped by changes
        uint64_t changes = 0;      // updates that found a change
        uint64_t kept = 0;         // entries a change did not touch
        uint64_t overflows = 0;    // times kMaxClasses was reached
        uint64_t stale = 0;        // translations whose inputs changed meanwhile (not cached)
        uint64_t lagging = 0;      // answered with a snapshot that registrations made out of date
        uint64_t clusters_made = 0;    // clusters translated and serialized
        uint64_t clusters_shared = 0;  // clusters taken from another class's translation
    };
    using Registered = std::function<std::vector<model::WorkloadEntry>()>;

    // Classes kept at most; past it the cache starts over (classes of pods long gone stay until
    // a change touches them otherwise). Counted in Stats::overflows.
    static constexpr std::size_t kMaxClasses = 20000;

    explicit SnapshotCache(translate::Options options);

    // Moves to the store's `stored` snapshot and the registry's `generation` (its workloads read
    // through `registered` only when the generation moved: read the generation first). Never
    // goes back to an older store version or generation. Thread-safe.
    void update(store::SnapshotPtr stored, uint64_t generation, const Registered& registered);
    // The snapshot of a class at the current inputs, translated on a miss (without the lock:
    // other classes translate meanwhile; a class is translated by one caller at a time).
    // With RegistrationsMayLag, the class's newest snapshot when only registrations changed it
    // since, without waiting for a translation under way.
    Result get(const ProxyClass& c, Staleness staleness = Staleness::Current);
    Stats stats() const;
    // Forgets the clusters kept for classes still to translate from the current inputs (their
    // text is the bulk of a snapshot): after a push, until the next miss.
    void drop_shared_clusters();
    // Tests only: called as a translation of a class begins (without the lock), so that a test
    // can change the inputs while it runs.
    void on_translate(std::function<void(const ProxyClass&)> hook) { translate_hook_ = std::move(hook); }

  private:
    void drop_clusters_locked();
    std::function<void(const ProxyClass&)> translate_hook_;
    translate::Options options_;
    mutable std::mutex mu_;
    store::SnapshotPtr stored_;
    uint64_t generation_ = 0;
    std::shared_ptr<const std::vector<model::WorkloadEntry>> registered_;
    std::map<ProxyClass, std::shared_ptr<const Entry>> entries_;
    // The clusters of the classes translated from the current inputs (stored_, registered_),
    // shared among them; made again when the inputs move. Null until a miss needs it.
    std::shared_ptr<translate::ClusterTexts> clusters_;
    translate::ClusterTexts::Stats dropped_clusters_;  // stats of the ones let go
    // The newest snapshot of classes not in entries_ whose config is current but whose
    // endpoints registrations have changed since (dropped by a registration, or translated
    // while one came): for get(RegistrationsMayLag). A config change touching the class
    // removes it; caching the class anew replaces it.
    std::map<ProxyClass, std::shared_ptr<const Entry>> lagging_;
    // Classes being translated (without mu_ held), with what changed meanwhile: the namespaces
    // of the pods registered or gone, or something else (the store, or a registration whose
    // reach is unknown), after which the result is not cached.
    struct Inflight {
        bool config_changed = false;
        bool unknown = false;
        std::set<std::string> pod_namespaces;
    };
    std::map<ProxyClass, Inflight> inflight_;
    std::condition_variable inflight_cv_;
    Stats stats_;
};

}  // namespace remora::control::server
