// remora-control's shared state on etcd, for several replicas at once:
//   <prefix>/config/resources/<Kind>/<namespace>/<name>
//                            each Istio resource applied over the API (its store JSON); its
//                            mod_revision is its resourceVersion
//   <prefix>/config/version  written by every change of the config, in the same transaction:
//                            its mod_revision is the config version, the same on every replica
//                            for the same content
//   <prefix>/ca              the CA's signing material, JWT key and admin token, sealed with
//                            AES-256-GCM (SecretBox); created once (txn create-if-absent)
//   <prefix>/proxies/<id>    each replica's registered proxies, under that replica's lease, so
//                            a dead replica's registrations expire with it
// (Before 2026-12-07 the config was one value, <prefix>/config: it is moved to one key per
// resource when a replica finds it.)
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "control/ca/state_dir.h"
#include "control/etcd/etcd_client.h"
#include "control/etcd/secret_box.h"
#include "control/registry/proxy_registry.h"
#include "control/store/store.h"

namespace remora::control::etcd {

using LogFn = std::function<void(const std::string&)>;

// The config store's backend on etcd: one key per resource, and a version key; a change writes
// the keys it changes and the version key in one transaction that compares the version key's
// mod_revision with the version the change was made on (a replica that wrote from an older state
// gets StoreConflict and the store retries). The other replicas' changes come through a watch on
// <prefix>/config/, as what each transaction changed.
class EtcdConfigBackend : public store::StoreBackend {
  public:
    EtcdConfigBackend(EtcdClient& client, std::string prefix, LogFn log);
    ~EtcdConfigBackend() override;
    std::optional<store::StoredResources> load() override;
    uint64_t persist(uint64_t base_version,
                     const std::map<store::ResourceKey, store::Resource>& resources,
                     const store::StoreChange& change) override;
    void watch(std::function<void(store::StoredUpdate)> fn) override;
    void stop() override;
    std::string describe() const override;

    const std::string& version_key() const { return version_key_; }
    std::string resource_key(const store::ResourceKey& key) const;
    // The resource a key under <prefix>/config/resources/ names; nullopt for any other key.
    std::optional<store::ResourceKey> key_of(std::string_view etcd_key) const;
    // The watch's events as one update (resources decoded; a damaged one is logged and skipped).
    store::StoredUpdate update_from(const std::vector<WatchEvent>& events) const;

  private:
    std::optional<store::StoredResources> read();
    // Moves the one-value config of an older remora-control (<prefix>/config) to one key per
    // resource; false when there is none.
    bool move_legacy();

    EtcdClient& client_;
    std::string config_prefix_, resources_prefix_, version_key_, legacy_key_;
    LogFn log_;
    std::atomic<int64_t> loaded_revision_{0};
    std::unique_ptr<Watcher> watcher_;
};

// What a replica needs from the shared CA record.
struct SharedCa {
    CaState state;
    std::string admin_token;
};

// Reads the sealed CA record, or creates it (the first replica: a new root, or the operator's CA,
// a JWT key and an admin token) with a create-if-absent transaction; a replica that loses the
// race reads the winner's. Writes the public parts (root-cert.pem, jwks.json) and what remoractl
// reads on this machine (admin-token, jwt-signing-key.pem, 0600) to `state_dir`; the CA's own key
// stays in memory. Waits up to `wait` for etcd. Throws std::runtime_error naming what failed.
SharedCa load_or_create_shared_ca(EtcdClient& client, const std::string& prefix,
                                  const SecretBox& box, const std::filesystem::path& state_dir,
                                  const std::string& trust_domain,
                                  const std::optional<OperatorCa>& operator_ca,
                                  certs::SystemTime now, std::chrono::seconds wait, LogFn log);

// Publishes this replica's registered proxies under its lease and keeps the other replicas'
// in the registry (set_remote), from a watch on <prefix>/proxies/; publishes this replica
// (its id and advertised address) at <prefix>/replicas/<id> under the same lease, and reads the
// others' there, for proxy-status across replicas.
class RegistrySync {
  public:
    // `advertise`: the address (HOST:PORT) at which remoractl reaches this replica's config
    // API, published under the lease for the other replicas' proxy-status ("": none).
    RegistrySync(EtcdClient& client, std::string prefix, registry::ProxyRegistry& registry,
                 std::chrono::seconds lease_ttl, LogFn log, std::string advertise = "");
    ~RegistrySync();
    void start();
    // Revokes the lease: the other replicas forget this one's proxies at once.
    void stop();
    const std::string& replica_id() const { return replica_; }
    struct Peer {
        std::string id, address;  // address "" when it advertises none
        bool operator==(const Peer&) const = default;
    };
    // The other live replicas, as last read (every half second).
    std::vector<Peer> peers() const;

    // The value stored for a proxy, and back (nullopt when not one of ours).
    static std::string encode(const std::string& replica, const registry::ProxyRecord& r);
    static std::optional<std::pair<std::string, registry::RemoteProxy>> decode(
        const std::string& value);

  private:
    void run();
    // Puts and deletes what changed in the registry, in transactions of up to kBatch operations,
    // keeping the lease alive between them (a thousand single puts under a loaded etcd took
    // longer than the lease's TTL: it expired, was granted again, and never caught up).
    void publish();
    // Renews the lease when due; false when it is gone.
    bool keep_alive();
    static constexpr std::size_t kBatch = 100;  // under etcd's default --max-txn-ops (128)
    void apply_remote();
    int64_t resync();

    EtcdClient& client_;
    std::string prefix_;
    registry::ProxyRegistry& registry_;
    std::chrono::seconds ttl_;
    LogFn log_;
    std::string replica_;
    std::string replicas_prefix_;  // <prefix>/replicas/: a key per live replica, under its lease
    std::string advertise_;
    mutable std::mutex peers_mu_;
    std::vector<Peer> peers_;
    void read_peers();
    int64_t lease_ = 0;
    std::chrono::steady_clock::time_point keepalive_due_;
    std::map<std::string, std::string> published_;  // key -> value, under lease_
    std::mutex remote_mu_;
    std::map<std::string, std::pair<std::string, registry::RemoteProxy>> remote_;  // by key
    std::unique_ptr<Watcher> watcher_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace remora::control::etcd
