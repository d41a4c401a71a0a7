// Istio resources → the snapshot one workload's proxy runs on (proxy/snapshot/snapshot.h), as
// istiod computes Envoy's configuration for a sidecar. Deterministic: the same input gives the
// same snapshot, ordered by name.
#pragma once

#include <string>
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
