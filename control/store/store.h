// The control plane's store of Istio resources: validated as a whole before any change is taken,
// written atomically under the state dir, versioned, and watched by subscribers (proxies).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/model/model.h"

namespace remora::control::store {

// The kinds the store holds (every other kind in applied YAML is skipped with a note).
enum class Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    PeerAuthentication,
    AuthorizationPolicy,
    Service,  // Kubernetes core v1
    Sidecar,
    Gateway,
    RequestAuthentication,
    Telemetry,
    ProxyConfig,
};

const char* kind_name(Kind kind);   // "VirtualService"
const char* kind_group(Kind kind);  // "networking.istio.io"; "" for Kubernetes' core kinds
std::vector<Kind> all_kinds();
// "VirtualService (vs), DestinationRule (dr), ... or Sidecar" (without the short names unless
// `short_names`): the kinds, for messages.
std::string kind_list(bool short_names = true);
// The names kubectl and istioctl accept, case-insensitive: "VirtualService", "virtualservice",
// "virtualservices", "vs", "virtualservice.networking.istio.io", ...; nullopt otherwise.
std::optional<Kind> kind_from_name(std::string_view name);

struct ResourceKey {
    Kind kind = Kind::VirtualService;
    std::string ns;
    std::string name;

    auto operator<=>(const ResourceKey&) const = default;
    std::string str() const;  // "VirtualService default/reviews"
};

// Who owns a resource: the API (remoractl apply/delete), the --config-dir directory, or the
// Kubernetes API server (--kube).
enum class Origin { Api, ConfigDir, Kube };
const char* origin_name(Origin origin);  // "api", "config-dir", "kube"

struct Resource {
    ResourceKey key;
    std::string yaml;    // the document's text as it was applied (comments kept)
    std::string source;  // the file it came from, as the client or the directory named it
    Origin origin = Origin::Api;
    int64_t created = 0;  // unix seconds
    int64_t updated = 0;
    uint64_t resource_version = 0;  // the store version of its last change
};

// An immutable view of the store at one version. `config` holds the parsed, valid resources
// (what translation into proxy snapshots reads).
struct Snapshot {
    uint64_t version = 0;
    std::map<ResourceKey, Resource> resources;
    model::Config config;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// The outcome of a change. `status` is the HTTP status the API answers with.
struct ChangeResult {
    int status = 200;    // 200, 400 refused as invalid, 404 not found, 409 owned by config dir,
                         // 500 could not be written
    std::string error;   // empty when the change was taken (or there was nothing to change)
    std::vector<std::string> messages;  // why it was refused: IST0106 lines, "... not found"
    std::vector<std::string> warnings;  // IST0133 and remora's own warnings for the input
    struct Item {
        ResourceKey key;
        std::string action;  // "created", "configured", "unchanged", "deleted", "skipped"
        std::string detail;  // for "skipped": what and why
    };
    std::vector<Item> items;
    uint64_t version = 0;  // the store's version after the change (unchanged when refused)

    bool ok() const { return error.empty(); }
};

// One file of the --config-dir directory.
struct SourceFile {
    std::string path;
    std::string text;
    bool operator==(const SourceFile&) const = default;
};

// The durable copy of the API's resources (those of origin Api: the --config-dir directory is its
// own durable copy). The state dir's store.json is the default; control/etcd keeps them in etcd,
// shared by several replicas, where the version is etcd's revision.
struct StoredResources {
    uint64_t version = 0;
    std::map<ResourceKey, Resource> resources;
};

// What one change does to the stored resources: the keys it writes (their resource_version is 0
// in the map persist is given) and those it deletes. A backend that keeps each resource on its
// own (etcd) writes only these.
struct StoreChange {
    std::vector<ResourceKey> written, deleted;
};

// A change another writer made, as a backend's watch delivers it: the whole stored state (after
// a resync), or what one or more writes changed.
struct StoredUpdate {
    uint64_t version = 0;
    bool whole = false;                         // `resources` is everything stored
    std::map<ResourceKey, Resource> resources;  // whole: all; else the ones written
    std::vector<ResourceKey> deleted;           // not whole: the ones deleted
};

// Another writer changed the stored resources since `base_version`: read them again and retry.
class StoreConflict : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};
// The backend cannot take writes now (etcd without quorum): HTTP 503, nothing changed.
class StoreUnavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class StoreBackend {
  public:
    virtual ~StoreBackend() = default;
    // What is stored; nullopt when nothing ever was. Throws std::runtime_error naming the place
    // when it is damaged or cannot be read.
    virtual std::optional<StoredResources> load() = 0;
    // Stores `resources` (origin Api only) as the change that follows `base_version`: `change`
    // says which of them it writes (their resource_version is 0) and which it deletes. Returns
    // the new version. Throws StoreConflict, StoreUnavailable, or std::exception for any other
    // failure.
    virtual uint64_t persist(uint64_t base_version, const std::map<ResourceKey, Resource>& resources,
                             const StoreChange& change) = 0;
    // Changes another writer made: `fn` is called (on the backend's thread) with each. The
    // default (one writer) never calls it.
    virtual void watch(std::function<void(StoredUpdate)> fn) { (void)fn; }
    virtual void stop() {}
    virtual std::string describe() const = 0;  // "store.json path" or "etcd <endpoints>"
};

// The JSON the backends keep: {"version": N, "resources": [{"kind", "namespace", "name",
// "source", "created", "updated", "resourceVersion", "yaml"}, ...]} (origin Api only). `encode`
// writes a pending resource_version (0) as `version`; `decode` reads a 0 as `version` and
// throws std::runtime_error("<where>: damaged config store: ...").
std::string encode_resources(uint64_t version, const std::map<ResourceKey, Resource>& resources);
StoredResources decode_resources(const std::string& text, const std::string& where);
// One resource of that list, on its own (etcd keeps one per key): {"kind", "namespace", "name",
// "source", "created", "updated", "yaml"} with "resourceVersion" when `version` is not 0.
// `decode_resource` takes the resource_version from the JSON when there, else `version`, and
// throws std::runtime_error("<where>: damaged config store: ...").
std::string encode_resource(const Resource& r, uint64_t version = 0);
Resource decode_resource(const std::string& text, uint64_t version, const std::string& where);

// store.json in a directory (a single replica's state dir).
class DirBackend : public StoreBackend {
  public:
    // Creates `dir` (0700) when absent.
    explicit DirBackend(std::filesystem::path dir);
    std::optional<StoredResources> load() override;
    uint64_t persist(uint64_t base_version, const std::map<ResourceKey, Resource>& resources,
                     const StoreChange& change) override;
    std::string describe() const override { return file_.string(); }
    const std::filesystem::path& file() const { return file_; }

  private:
    std::filesystem::path dir_, file_;
};

class ConfigStore {
  public:
    using Clock = std::function<std::chrono::system_clock::time_point()>;
    using Logger = std::function<void(const std::string&)>;

    // Opens the store kept in `dir` (created 0700 if absent; `<state-dir>/config`), loading
    // store.json when present. Throws std::runtime_error naming the file when it is damaged.
    ConfigStore(std::filesystem::path dir, Clock clock, Logger log);
    // The same on another backend; changes it watches are published as new versions.
    ConfigStore(std::unique_ptr<StoreBackend> backend, Clock clock, Logger log);
    ~ConfigStore();
    ConfigStore(const ConfigStore&) = delete;
    ConfigStore& operator=(const ConfigStore&) = delete;

    // `kubectl apply`: creates or replaces every stored-kind document of `yaml_text` by
    // kind/namespace/name, all or nothing. Refused (400) when the resulting whole config has a
    // validation error; `source` names the text in messages ("reviews.yaml:12:16: ...").
    ChangeResult apply(const std::string& yaml_text, const std::string& source);
    // Deletes the resources the documents of `yaml_text` name (only kind and metadata are read),
    // all or nothing: 404 naming every one that does not exist.
    ChangeResult remove(const std::string& yaml_text, const std::string& source);
    // Makes the --config-dir resources exactly those in `files`: adds, replaces and deletes
    // resources of origin ConfigDir; a key the API created becomes the directory's. Refused
    // (400, nothing changes) when the result would not validate.
    ChangeResult set_config_dir(const std::vector<SourceFile>& files);
    // The same for another owner than the API (ConfigDir, Kube): the resources of `origin`
    // become exactly those in `files`, taking over keys the API created; keys another such owner
    // holds stay its own (the document is listed as "skipped").
    ChangeResult set_owned(Origin origin, const std::vector<SourceFile>& files);

    SnapshotPtr snapshot() const { return current_.load(); }
    uint64_t version() const { return current_.load()->version; }

    // Calls `fn` once with the first snapshot whose version is greater than `after`: at once, on
    // this thread, if there already is one (returns 0), else on the thread that makes the change,
    // after the change is durable and published (returns an id for cancel_waiter). `fn` must not
    // block; an asio user posts to its own executor from it.
    using Waiter = std::function<void(SnapshotPtr)>;
    uint64_t on_newer(uint64_t after, Waiter fn);
    // Drops a waiter that has not fired (a long-poll whose client went away). False when it had
    // fired already or never existed.
    bool cancel_waiter(uint64_t id);
    // Blocks until the version is greater than `after` or `timeout` passes (nullptr then).
    SnapshotPtr wait_newer(uint64_t after, std::chrono::milliseconds timeout);

    const StoreBackend& backend() const { return *backend_; }

  private:
    struct Document {
        ResourceKey key;
        std::string text;
    };
    struct Parsed {
        std::vector<Document> docs;
        std::vector<ChangeResult::Item> skipped;
    };
    // The stored-kind documents of a text (kind and metadata only), in order.
    static Parsed split_documents(const std::string& text);
    // Validates `candidate` (`cur`'s resources less some) together with `input` (the new text,
    // named `source`); on errors fills `result` (400) and returns false.
    bool validate(const Snapshot& cur, const std::map<ResourceKey, Resource>& candidate,
                  const std::vector<SourceFile>& input, ChangeResult& result) const;
    // Persists and publishes `resources` as the next version. Sets `conflict_` when another
    // writer got there first.
    bool commit(std::map<ResourceKey, Resource> resources, ChangeResult& result);
    // Runs a change, again on the newest stored state when another replica wrote in between.
    ChangeResult with_retry(const std::function<ChangeResult()>& change);
    void load();
    // Publishes what another writer stored, with this replica's --config-dir resources.
    void take_remote(StoredUpdate update);
    static model::Config build_config(const std::map<ResourceKey, Resource>& resources);
    // The model of `resources` from `base`, the model of `base_resources`: only the resources
    // whose text differs are read again (the rest is copied).
    static model::Config update_config(const model::Config& base,
                                       const std::map<ResourceKey, Resource>& base_resources,
                                       const std::map<ResourceKey, Resource>& resources);
    void publish(SnapshotPtr snap);
    int64_t now_seconds() const;

    std::unique_ptr<StoreBackend> backend_;
    bool conflict_ = false;  // under change_mu_
    Clock clock_;
    Logger log_;
    std::mutex change_mu_;  // one change at a time: validate, write, publish
    std::atomic<SnapshotPtr> current_;

    std::mutex wait_mu_;  // the waiters; never held while a waiter runs
    std::condition_variable wait_cv_;
    struct PendingWaiter {
        uint64_t id;
        uint64_t after;
        Waiter fn;
    };
    std::vector<PendingWaiter> waiters_;
    uint64_t next_waiter_id_ = 1;
};

// Store file name inside the store's directory.
inline constexpr const char* kStoreFile = "store.json";

}  // namespace remora::control::store
