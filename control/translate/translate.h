// Istio resources → the snapshot one workload's proxy runs on (proxy/snapshot/snapshot.h), as
// istiod computes Envoy's configuration for a sidecar. Deterministic: the same input gives the
// same snapshot, ordered by name.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "control/model/model.h"
#include "proxy/snapshot/snapshot.h"

namespace remora::control::translate {

struct WorkloadRef {
    std::string ns = "default";
    std::string service_account = "default";
    model::Labels labels;
};

struct Options {
    std::string trust_domain = "cluster.local";
    std::string root_namespace = "remora-system";  // mesh-wide policies live here
    std::string cluster_domain = "svc.cluster.local";
};

proxy::snapshot::Snapshot translate(const model::Config& config, const WorkloadRef& workload,
                                    const Options& options = {});
// The same with `more_workloads` (the registered pods) counted as config.workload_entries
// after the config's own, without copying the config.
proxy::snapshot::Snapshot translate(const model::Config& config, const WorkloadRef& workload,
                                    const Options& options,
                                    const std::vector<model::WorkloadEntry>& more_workloads);

// Clusters serialized once and shared by every proxy class translated from the same inputs (a
// config and the registered workloads): most of a snapshot is its clusters, and at 10,000
// services two classes of a namespace (or, without a Sidecar, every class) have the same ones.
// Thread-safe; classes translated at once share the work (a cluster another translation is
// making is taken later rather than made twice). Only valid for the inputs it was first used
// with: whoever holds it makes a new one when they change.
class ClusterTexts {
  public:
    struct Text {
        std::string name;          // the cluster's name, its order in a snapshot
        std::string service_host;  // the host it is for
        std::string json;          // its JSON, as in the snapshot's text
    };
    using TextPtr = std::shared_ptr<const Text>;
    // A cluster: the service's definition (a Kubernetes Service or a ServiceEntry) and host, the
    // port, the DestinationRule and subset that shape it; pointers into the inputs' config.
    using Key = std::tuple<const void*, std::string, uint32_t, const void*, const void*>;

    enum class Found { Made, Claimed, Busy };
    // Made: `text` is set. Claimed: the caller makes it and calls put. Busy: another caller is
    // making it (ask again later; a second ask waits for it).
    Found find_or_claim(const Key& key, TextPtr& text, bool wait);
    void put(const Key& key, TextPtr text);
    // Lets a claimed key go (the maker failed): a waiting caller claims it.
    void abandon(const Key& key);

    struct Stats {
        uint64_t made = 0;    // clusters translated and serialized (put)
        uint64_t reused = 0;  // answers with a cluster made before
    };
    Stats stats() const;

  private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::map<Key, TextPtr> texts_;  // null while claimed
    Stats stats_;
};

// A translation whose clusters come from (and go to) a ClusterTexts: the snapshot without its
// clusters, and their texts by name. snapshot_json's to_json_text(snapshot, texts) writes it.
struct SharedTranslation {
    proxy::snapshot::Snapshot snapshot;
    std::vector<ClusterTexts::TextPtr> clusters;
};
SharedTranslation translate_shared(const model::Config& config, const WorkloadRef& workload,
                                   const Options& options,
                                   const std::vector<model::WorkloadEntry>& more_workloads,
                                   ClusterTexts& texts);

// Istio's Sidecar for a workload: the one of its namespace whose workloadSelector picks its
// labels, else its namespace's selector-less one, else the root namespace's selector-less one
// (the mesh's default); among equals the first by name. nullptr: none applies (the whole mesh).
const model::Sidecar* sidecar_for(const model::Config& config, const std::string& ns,
                                  const model::Labels& labels, const Options& options);

// "reviews" in namespace "default" → "reviews.default.svc.cluster.local"; names with a dot and
// wildcards are kept as written, as Istio resolves short names.
std::string resolve_host(const std::string& host, const std::string& ns, const Options& options);

// Istio's exportTo: whether a resource of namespace `resource_ns` is visible to proxies in
// `client_ns`. Empty or "*": everywhere (Istio's default); ".": its own namespace; "~": nowhere;
// else the namespaces named.
bool exported_to(const std::string& resource_ns, const std::vector<std::string>& export_to,
                 const std::string& client_ns);
// A Kubernetes Service's exportTo: its annotation networking.istio.io/exportTo, comma-separated.
std::vector<std::string> service_export_to(const model::KubeService& service);

}  // namespace remora::control::translate
