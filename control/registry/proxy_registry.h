// The workload registry: every proxy that subscribes registers its pod (address, labels, ports)
// under the identity its SVID proves; the registration lasts while the proxy keeps a long-poll
// open (or re-polls within the grace period) and is what gives services their endpoints. It also
// keeps what each proxy was sent and what it said about it (ACK/NACK) for proxy-status.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control/model/model.h"

namespace remora::control::registry {

// What a proxy says about its pod. Namespace and service account are not here: they come from
// the proxy's certificate, never from what it claims.
struct Registration {
    std::string pod_name;       // with the namespace, the proxy's name ("reviews-v1-0.default")
    std::string workload_name;  // the Deployment's name
    std::string pod_ip;
    model::Labels labels;
    std::vector<uint32_t> ports;  // the app's ports (informational)
    std::string proxy_version;
    // The proxy is draining (SIGTERM, /drain): still polling, but its pod gets no new traffic,
    // as a terminating pod leaves its Service's endpoints in Kubernetes.
    bool draining = false;
    bool operator==(const Registration&) const = default;
};

struct Certificate {
    std::string spiffe_id, serial;
    int64_t not_before = 0, not_after = 0;  // unix seconds
};

enum class SyncStatus { NotSent, Synced, Stale, Nack };
const char* sync_status_name(SyncStatus s);  // "NOT SENT", "SYNCED", "STALE", "NACK"

struct ProxyRecord {
    std::string id;  // "<pod name>.<namespace>"
    std::string ns, service_account;
    Registration reg;
    Certificate cert;  // the SVID presented on the latest poll
    // What was sent (content version of the snapshot, store version it came from, its JSON) and
    // what the proxy reported.
    std::string sent_version;
    // The snapshot's JSON, shared with every proxy of its class (null until one is sent).
    std::shared_ptr<const std::string> sent_snapshot;
    uint64_t sent_config_version = 0;
    std::string acked_version, nacked_version, nack_error;
    int polls = 0;  // long-polls in flight
    std::chrono::steady_clock::time_point last_seen;
    int64_t connected_since = 0;  // unix seconds

    SyncStatus status() const;
};

// A proxy registered with another replica (shared through etcd, control/etcd): it gives services
// endpoints here too, and nothing else (its sync status is that replica's to tell).
struct RemoteProxy {
    std::string id, ns, service_account;
    Registration reg;
    bool operator==(const RemoteProxy&) const = default;
};

class ProxyRegistry {
  public:
    using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;
    using WallClock = std::function<std::chrono::system_clock::time_point()>;
    ProxyRegistry(SteadyClock steady, WallClock wall, std::chrono::milliseconds grace);

    // A poll began: registers or refreshes the proxy. Returns true when the registry's workloads
    // changed (a new proxy, or new address or labels), which changes other proxies' endpoints.
    bool poll_started(const std::string& ns, const std::string& service_account,
                      const Registration& reg, const Certificate& cert);
    // A poll ended (answered, or the proxy went away): the grace period starts when none is left.
    void poll_ended(const std::string& id);
    // The proxy's report on the snapshot it was last sent: applied, or refused with `error`.
    // True when it is a refusal of a version not refused before (proxies repeat their report).
    bool report(const std::string& id, const std::string& version, const std::string& error);
    void sent(const std::string& id, const std::string& version, uint64_t config_version,
              std::shared_ptr<const std::string> snapshot_json);
    // Forgets proxies with no poll in flight whose last poll ended more than the grace period ago.
    // Returns their ids. `stalled`: how long the caller could not run before this call (its
    // threads busy translating a push); that time does not count against anyone's grace, since
    // a proxy whose next poll waited in the control plane's own queue could not be heard then.
    std::vector<std::string> expire(std::chrono::milliseconds stalled = {});

    // Replaces the other replicas' proxies. True (and a new generation) when they changed.
    bool set_remote(std::map<std::string, RemoteProxy> remote);
    // True once after set_remote changed them: the distribution's sweep then recomputes the
    // waiting proxies' snapshots (their endpoints changed).
    bool take_remote_change();

    // Changes when the set of registered workloads changes.
    uint64_t generation() const;
    std::vector<ProxyRecord> list() const;
    // By id ("name.ns"), or by pod name when exactly one proxy has it.
    std::optional<ProxyRecord> find(const std::string& name) const;
    // The registered pods as WorkloadEntries (with the sidecar's tlsMode label, as Istio's
    // injector puts on pods), for translation; ordered by id.
    std::vector<model::WorkloadEntry> workload_entries() const;
    // With --kube, Services' endpoints are the ready addresses of the API's EndpointSlices, as
    // on Istio: registrations then say who is connected, not where traffic goes, and
    // workload_entries() is empty.
    void set_endpoints_from_registrations(bool on) { endpoints_from_registrations_ = on; }

    static std::string id_of(const std::string& ns, const Registration& reg) {
        return reg.pod_name + "." + ns;
    }

  private:
    SteadyClock steady_;
    WallClock wall_;
    std::chrono::milliseconds grace_;
    mutable std::mutex mu_;
    std::map<std::string, ProxyRecord> proxies_;
    std::map<std::string, RemoteProxy> remote_;
    bool remote_changed_ = false;
    uint64_t generation_ = 1;
    std::atomic<bool> endpoints_from_registrations_{true};
};

}  // namespace remora::control::registry
