// The three kinds of shared state on etcd: the config (a key per resource and a version key,
// changed together in a transaction that compares the version key's mod_revision), the sealed
// CA record (create-if-absent), the proxies (one key each, leased, published in batches).
#include "control/etcd/etcd_state.h"

#include <boost/json.hpp>

#include "certs/issuer.h"
#include "certs/jwt.h"
#include "certs/keys.h"
#include "common/files.h"

namespace remora::control::etcd {

namespace json = boost::json;
namespace fs = std::filesystem;

// --- config -------------------------------------------------------------------------------------

EtcdConfigBackend::EtcdConfigBackend(EtcdClient& client, std::string prefix, LogFn log)
    : client_(client),
      config_prefix_(prefix + "/config/"),
      resources_prefix_(prefix + "/config/resources/"),
      version_key_(prefix + "/config/version"),
      legacy_key_(prefix + "/config"),
      log_(std::move(log)) {}

EtcdConfigBackend::~EtcdConfigBackend() {
    stop();
}

std::string EtcdConfigBackend::describe() const {
    std::string eps;
    for (const Endpoint& ep : client_.options().endpoints) eps += (eps.empty() ? "" : ",") + ep.str();
    return "etcd " + eps + " prefix " + config_prefix_;
}

std::string EtcdConfigBackend::resource_key(const store::ResourceKey& key) const {
    return resources_prefix_ + store::kind_name(key.kind) + "/" + key.ns + "/" + key.name;
}

std::optional<store::ResourceKey> EtcdConfigBackend::key_of(std::string_view etcd_key) const {
    if (!etcd_key.starts_with(resources_prefix_)) return std::nullopt;
    std::string_view rest = etcd_key.substr(resources_prefix_.size());
    const auto a = rest.find('/');
    const auto b = a == std::string_view::npos ? a : rest.find('/', a + 1);
    if (b == std::string_view::npos) return std::nullopt;
    auto kind = store::kind_from_name(rest.substr(0, a));
    if (!kind || std::string_view(store::kind_name(*kind)) != rest.substr(0, a)) return std::nullopt;
    return store::ResourceKey{*kind, std::string(rest.substr(a + 1, b - a - 1)),
                              std::string(rest.substr(b + 1))};
}

std::optional<store::StoredResources> EtcdConfigBackend::read() {
    RangeAnswer a = client_.range(config_prefix_, prefix_end(config_prefix_));
    store::StoredResources s;
    bool versioned = false;
    for (const KeyValue& kv : a.kvs) {
        if (kv.key == version_key_) {
            s.version = static_cast<uint64_t>(kv.mod_revision);
            versioned = true;
        } else if (auto key = key_of(kv.key)) {
            store::Resource r = store::decode_resource(
                kv.value, static_cast<uint64_t>(kv.mod_revision), "etcd key " + kv.key);
            if (r.key != *key) {
                throw std::runtime_error("etcd key " + kv.key + ": damaged config store: holds " +
                                         r.key.str());
            }
            s.resources.emplace(r.key, std::move(r));
        }
    }
    if (!versioned && !s.resources.empty()) {
        throw std::runtime_error("etcd prefix " + config_prefix_ + ": damaged config store: " +
                                 std::to_string(s.resources.size()) + " resource(s) but no " +
                                 version_key_);
    }
    loaded_revision_ = a.revision;
    if (!versioned) return std::nullopt;
    return s;
}

bool EtcdConfigBackend::move_legacy() {
    RangeAnswer old = client_.range(legacy_key_);
    if (old.kvs.empty()) return false;
    const KeyValue& kv = old.kvs.front();
    store::StoredResources s = store::decode_resources(kv.value, "etcd key " + kv.key);
    json::array ops;
    for (auto& [key, r] : s.resources) {
        if (r.resource_version == 0) r.resource_version = static_cast<uint64_t>(kv.mod_revision);
        ops.push_back(put_op(resource_key(key), store::encode_resource(r)));
    }
    ops.push_back(put_op(version_key_, std::to_string(s.resources.size())));
    ops.push_back(delete_op(legacy_key_));
    const std::size_t op_count = ops.size();
    TxnAnswer t;
    try {
        t = client_.txn(txn_if_mod_revision(version_key_, 0, std::move(ops)));
    } catch (const EtcdAnswerError& e) {
        throw EtcdAnswerError("moving the config of " + legacy_key_ + " (" +
                                  std::to_string(s.resources.size()) +
                                  " resource(s), one value) to a key per resource: " + e.what() +
                                  " (it is one transaction of " + std::to_string(op_count) +
                                  " operations and " + std::to_string(kv.value.size()) +
                                  " bytes, once: start etcd with --max-txn-ops and "
                                  "--max-request-bytes above that for the upgrade, see "
                                  "docs/replicas.md)",
                              e.code());
    }
    log_(t.succeeded ? "etcd: moved the config of " + legacy_key_ + " (" +
                           std::to_string(s.resources.size()) + " resource(s), one value) to a key "
                           "per resource under " + resources_prefix_
                     : "etcd: another replica moved " + legacy_key_ + " first");
    return true;
}

std::optional<store::StoredResources> EtcdConfigBackend::load() {
    try {
        auto s = read();
        if (!s && move_legacy()) s = read();
        return s;
    } catch (const EtcdUnavailable& e) {
        throw std::runtime_error(std::string("cannot read the config store: ") + e.what());
    }
}

uint64_t EtcdConfigBackend::persist(uint64_t base_version,
                                    const std::map<store::ResourceKey, store::Resource>& resources,
                                    const store::StoreChange& change) {
    json::array ops;
    std::size_t bytes = 0;
    for (const store::ResourceKey& key : change.written) {
        std::string value = store::encode_resource(resources.at(key));
        bytes += value.size();
        ops.push_back(put_op(resource_key(key), value));
    }
    for (const store::ResourceKey& key : change.deleted)
        ops.push_back(delete_op(resource_key(key)));
    std::size_t stored = 0;
    for (const auto& [key, r] : resources)
        stored += r.origin == store::Origin::Api;
    ops.push_back(put_op(version_key_, std::to_string(stored)));
    const std::size_t op_count = ops.size();
    TxnAnswer t;
    try {
        t = client_.txn(txn_if_mod_revision(version_key_, static_cast<int64_t>(base_version),
                                            std::move(ops)));
    } catch (const EtcdUnavailable& e) {
        throw store::StoreUnavailable(e.what());
    } catch (const EtcdAnswerError& e) {
        // One change is one transaction: etcd bounds its size (--max-request-bytes, 1.5 MiB
        // unless raised) and its operations (--max-txn-ops, 128). Say which, with the figures.
        const std::string_view what = e.what();
        if (what.find("request is too large") != std::string_view::npos) {
            throw EtcdAnswerError(std::string(e.what()) + " (this change writes " +
                                      std::to_string(change.written.size()) + " resource(s), " +
                                      std::to_string(bytes) +
                                      " bytes, in one etcd transaction: apply fewer at once or "
                                      "start etcd with a larger --max-request-bytes, see "
                                      "docs/replicas.md)",
                                  e.code());
        }
        if (what.find("too many operations") != std::string_view::npos) {
            throw EtcdAnswerError(std::string(e.what()) + " (this change is " +
                                      std::to_string(op_count) +
                                      " operations in one etcd transaction, a key per resource "
                                      "written or deleted and the version: apply fewer at once or "
                                      "start etcd with a larger --max-txn-ops, see "
                                      "docs/replicas.md)",
                                  e.code());
        }
        throw;
    }
    if (!t.succeeded) {
        throw store::StoreConflict("the stored config is at version " +
                                   std::to_string(t.current ? t.current->mod_revision : 0) +
                                   ", this change was made on version " +
                                   std::to_string(base_version));
    }
    return static_cast<uint64_t>(t.revision);
}

store::StoredUpdate EtcdConfigBackend::update_from(const std::vector<WatchEvent>& events) const {
    store::StoredUpdate u;
    uint64_t newest = 0;
    for (const WatchEvent& e : events) {
        const auto revision = static_cast<uint64_t>(e.kv.mod_revision);
        newest = std::max(newest, revision);
        if (e.kv.key == version_key_) {
            if (!e.deleted) u.version = std::max(u.version, revision);
            continue;
        }
        auto key = key_of(e.kv.key);
        if (!key) continue;
        std::erase(u.deleted, *key);
        u.resources.erase(*key);
        if (e.deleted) {
            u.deleted.push_back(*key);
            continue;
        }
        try {
            store::Resource r = store::decode_resource(e.kv.value, revision, "etcd key " + e.kv.key);
            if (r.key != *key) throw std::runtime_error("etcd key " + e.kv.key + " holds " + r.key.str());
            u.resources.emplace(r.key, std::move(r));
        } catch (const std::exception& ex) {
            log_(std::string("etcd: not taken at revision ") + std::to_string(revision) + ": " +
                 ex.what());
        }
    }
    // A write without the version key (etcdctl by hand) still counts, at its own revision.
    if (u.version == 0) u.version = newest;
    return u;
}

void EtcdConfigBackend::watch(std::function<void(store::StoredUpdate)> fn) {
    watcher_ = std::make_unique<Watcher>(
        client_, config_prefix_, prefix_end(config_prefix_), loaded_revision_.load(),
        [this, fn](const std::vector<WatchEvent>& events, int64_t) { fn(update_from(events)); },
        [this, fn]() -> int64_t {
            auto s = read();
            store::StoredUpdate whole;
            whole.whole = true;
            whole.version = s ? s->version : static_cast<uint64_t>(loaded_revision_.load());
            if (s) whole.resources = std::move(s->resources);
            fn(std::move(whole));
            return loaded_revision_.load();
        },
        log_);
    watcher_->start();
}

void EtcdConfigBackend::stop() {
    if (watcher_) watcher_->stop();
}

// --- CA -----------------------------------------------------------------------------------------

namespace {

template <class T>
T must(certs::Result<T> r, const std::string& what) {
    if (!r) throw std::runtime_error(what + ": " + r.error().message());
    return std::move(*r);
}

// The sealed record's plaintext for a new CA.
std::string new_ca_record(const std::string& trust_domain,
                          const std::optional<OperatorCa>& operator_ca, certs::SystemTime now) {
    std::string chain_pem, key_pem;
    if (operator_ca) {
        std::string root = operator_ca->root_file.empty() ? std::string()
                                                          : common::read_file(operator_ca->root_file);
        certs::Signer s = must(certs::make_signer(common::read_file(operator_ca->cert_file),
                                                  common::read_file(operator_ca->key_file), root),
                               operator_ca->cert_file + ": operator CA (--ca-cert/--ca-key)");
        if (!s.cert.is_ca()) throw std::runtime_error(operator_ca->cert_file + ": the certificate is not a CA");
        for (const certs::Certificate& c : s.chain) chain_pem += c.to_pem();
        key_pem = s.key.to_pem();
    } else {
        certs::PrivateKey key = certs::PrivateKey::generate_p256();
        certs::Certificate root =
            certs::make_root_certificate(key, trust_domain, now, std::chrono::hours(24 * 3650));
        chain_pem = root.to_pem();
        key_pem = key.to_pem();
    }
    json::object o;
    o["signerChain"] = chain_pem;
    o["signerKey"] = key_pem;
    o["jwtKey"] = certs::PrivateKey::generate_p256().to_pem();
    o["adminToken"] = certs::random_hex(32);
    return json::serialize(o);
}

SharedCa read_ca_record(const std::string& plaintext, const std::string& where) {
    json::error_code jec;
    json::value v = json::parse(plaintext, jec);
    const json::object* o = jec ? nullptr : v.if_object();
    auto field = [&](const char* name) {
        const json::value* f = o ? o->if_contains(name) : nullptr;
        if (!f || !f->is_string()) throw std::runtime_error(where + ": the CA record has no " + name);
        return std::string(f->get_string());
    };
    std::string chain = field("signerChain");
    certs::Signer signer = must(certs::make_signer(chain, field("signerKey"), ""), where + ": signer");
    certs::PrivateKey jwt = must(certs::PrivateKey::from_pem(field("jwtKey")), where + ": JWT key");
    return SharedCa{CaState{std::move(signer), std::move(jwt), false}, field("adminToken")};
}

}  // namespace

SharedCa load_or_create_shared_ca(EtcdClient& client, const std::string& prefix,
                                  const SecretBox& box, const fs::path& state_dir,
                                  const std::string& trust_domain,
                                  const std::optional<OperatorCa>& operator_ca,
                                  certs::SystemTime now, std::chrono::seconds wait, LogFn log) {
    if (certs::error_code ec = certs::validate_trust_domain(trust_domain)) {
        throw std::runtime_error("--trust-domain \"" + trust_domain + "\": " + ec.message());
    }
    const std::string key = prefix + "/ca";
    const std::string purpose = "remora-ca " + key;
    const std::string where = "etcd key " + key;
    auto deadline = std::chrono::steady_clock::now() + wait;
    std::optional<SharedCa> ca;
    while (!ca) {
        try {
            RangeAnswer a = client.range(key);
            std::string sealed;
            bool created = false;
            if (a.kvs.empty()) {
                std::string record = box.seal(new_ca_record(trust_domain, operator_ca, now), purpose);
                TxnAnswer t = client.txn(put_if_absent(key, record));
                created = t.succeeded;
                if (t.succeeded) {
                    sealed = record;
                } else if (t.current) {
                    sealed = t.current->value;  // another replica created it first
                } else {
                    continue;  // created and deleted in between: try again
                }
            } else {
                sealed = a.kvs.front().value;
            }
            std::string plaintext;
            try {
                plaintext = box.open(sealed, purpose);
            } catch (const SecretBoxError& e) {
                throw std::runtime_error(where + ": " + e.what());
            }
            ca = read_ca_record(plaintext, where);
            ca->state.created = created;
        } catch (const EtcdUnavailable& e) {
            if (std::chrono::steady_clock::now() > deadline) {
                throw std::runtime_error("etcd: cannot read or create the CA record " + key + ": " +
                                         e.what());
            }
            log(std::string("waiting for etcd: ") + e.what());
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
    }
    // What remoractl reads on this machine, as in a state dir (the CA's key is not among them).
    std::error_code fec;
    fs::create_directories(state_dir, fec);
    if (fec) throw std::runtime_error("cannot create state dir " + state_dir.string() + ": " + fec.message());
    fs::permissions(state_dir, fs::perms::owner_all, fs::perm_options::replace, fec);
    common::write_file_atomic(state_dir / kRootCertFile, ca->state.signer.root().to_pem(), 0644);
    common::write_file_atomic(state_dir / kJwtKeyFile, ca->state.jwt_key.to_pem(), 0600);
    common::write_file_atomic(state_dir / kJwksFile, certs::jwks_json(ca->state.jwt_key), 0644);
    common::write_file_atomic(state_dir / kAdminTokenFile, ca->admin_token + "\n", 0600);
    return std::move(*ca);
}

// --- proxies ------------------------------------------------------------------------------------

RegistrySync::RegistrySync(EtcdClient& client, std::string prefix,
                           registry::ProxyRegistry& registry, std::chrono::seconds lease_ttl,
                           LogFn log, std::string advertise)
    : client_(client),
      prefix_(prefix + "/proxies/"),
      registry_(registry),
      ttl_(lease_ttl),
      log_(std::move(log)),
      replica_(certs::random_hex(8)),
      replicas_prefix_(prefix + "/replicas/"),
      advertise_(std::move(advertise)) {}

std::vector<RegistrySync::Peer> RegistrySync::peers() const {
    std::lock_guard lock(peers_mu_);
    return peers_;
}

void RegistrySync::read_peers() {
    std::vector<Peer> peers;
    for (const KeyValue& kv : client_.range(replicas_prefix_, prefix_end(replicas_prefix_)).kvs) {
        json::error_code jec;
        json::value v = json::parse(kv.value, jec);
        const json::object* o = jec ? nullptr : v.if_object();
        const json::value* id = o ? o->if_contains("replica") : nullptr;
        const json::value* address = o ? o->if_contains("address") : nullptr;
        if (!id || !id->is_string() || id->get_string() == replica_) continue;
        peers.push_back({std::string(id->get_string()),
                         address && address->is_string() ? std::string(address->get_string()) : ""});
    }
    std::lock_guard lock(peers_mu_);
    peers_ = std::move(peers);
}

RegistrySync::~RegistrySync() {
    stop();
}

std::string RegistrySync::encode(const std::string& replica, const registry::ProxyRecord& r) {
    json::object o;
    o["replica"] = replica;
    o["id"] = r.id;
    o["namespace"] = r.ns;
    o["serviceAccount"] = r.service_account;
    o["podName"] = r.reg.pod_name;
    o["workloadName"] = r.reg.workload_name;
    o["podIp"] = r.reg.pod_ip;
    o["proxyVersion"] = r.reg.proxy_version;
    if (r.reg.draining) o["draining"] = true;
    json::object labels;
    for (const auto& [k, v] : r.reg.labels) labels[k] = v;
    o["labels"] = std::move(labels);
    json::array ports;
    for (uint32_t p : r.reg.ports) ports.emplace_back(p);
    o["ports"] = std::move(ports);
    return json::serialize(o);
}

std::optional<std::pair<std::string, registry::RemoteProxy>> RegistrySync::decode(
    const std::string& value) {
    json::error_code jec;
    json::value v = json::parse(value, jec);
    const json::object* o = jec ? nullptr : v.if_object();
    if (!o) return std::nullopt;
    auto str = [&](const char* name) {
        const json::value* f = o->if_contains(name);
        return f && f->is_string() ? std::string(f->get_string()) : std::string();
    };
    registry::RemoteProxy p;
    p.id = str("id");
    p.ns = str("namespace");
    p.service_account = str("serviceAccount");
    p.reg.pod_name = str("podName");
    p.reg.workload_name = str("workloadName");
    p.reg.pod_ip = str("podIp");
    p.reg.proxy_version = str("proxyVersion");
    if (const json::value* d = o->if_contains("draining"); d && d->is_bool()) p.reg.draining = d->get_bool();
    if (const json::value* l = o->if_contains("labels"); l && l->is_object()) {
        for (const auto& kv : l->get_object()) {
            if (kv.value().is_string()) p.reg.labels[std::string(kv.key())] = std::string(kv.value().get_string());
        }
    }
    if (const json::value* ps = o->if_contains("ports"); ps && ps->is_array()) {
        for (const json::value& port : ps->get_array()) {
            if (port.is_int64() && port.get_int64() > 0 && port.get_int64() < 65536) {
                p.reg.ports.push_back(static_cast<uint32_t>(port.get_int64()));
            }
        }
    }
    std::string replica = str("replica");
    if (p.id.empty() || p.ns.empty() || p.reg.pod_ip.empty() || replica.empty()) return std::nullopt;
    return std::make_pair(std::move(replica), std::move(p));
}

void RegistrySync::start() {
    thread_ = std::thread([this] { run(); });
}

void RegistrySync::stop() {
    {
        std::lock_guard lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (watcher_) watcher_->stop();
    if (lease_) {
        try {
            client_.lease_revoke(lease_);
            log_("etcd: revoked lease " + std::to_string(lease_) + " of replica " + replica_);
        } catch (const std::exception& e) {
            log_(std::string("etcd: revoking this replica's lease failed (it expires by itself): ") + e.what());
        }
        lease_ = 0;
    }
}

void RegistrySync::apply_remote() {
    std::map<std::string, registry::RemoteProxy> by_id;
    {
        std::lock_guard lock(remote_mu_);
        for (const auto& [key, entry] : remote_) by_id.insert_or_assign(entry.second.id, entry.second);
    }
    const std::size_t n = by_id.size();
    if (registry_.set_remote(std::move(by_id))) {
        log_("proxies registered with other replicas: " + std::to_string(n));
    }
}

int64_t RegistrySync::resync() {
    RangeAnswer a = client_.range(prefix_, prefix_end(prefix_));
    {
        std::lock_guard lock(remote_mu_);
        remote_.clear();
        for (const KeyValue& kv : a.kvs) {
            auto d = decode(kv.value);
            if (d && d->first != replica_) remote_[kv.key] = std::move(*d);
        }
    }
    apply_remote();
    return a.revision;
}

void RegistrySync::publish() {
    std::map<std::string, std::string> desired;
    for (const registry::ProxyRecord& r : registry_.list()) desired[prefix_ + r.id] = encode(replica_, r);
    desired[replicas_prefix_ + replica_] =
        json::serialize(json::object{{"replica", replica_}, {"address", advertise_}});
    json::array ops;
    std::vector<std::pair<std::string, std::optional<std::string>>> batch;  // key, value (none: deleted)
    auto flush = [&] {
        if (ops.empty()) return;
        client_.txn(txn_all(std::move(ops)));
        ops = json::array();
        for (auto& [key, value] : batch) {
            if (value) {
                published_[key] = std::move(*value);
            } else {
                published_.erase(key);
            }
        }
        batch.clear();
        if (!keep_alive()) throw std::runtime_error("lease " + std::to_string(lease_) + " expired while publishing");
    };
    for (const auto& [key, value] : desired) {
        auto it = published_.find(key);
        if (it != published_.end() && it->second == value) continue;
        ops.push_back(put_op(key, value, lease_));
        batch.emplace_back(key, value);
        if (ops.size() == kBatch) flush();
    }
    for (const auto& [key, value] : published_) {
        if (desired.count(key)) continue;
        ops.push_back(delete_op(key));
        batch.emplace_back(key, std::nullopt);
        if (ops.size() == kBatch) flush();
    }
    flush();
}

bool RegistrySync::keep_alive() {
    if (std::chrono::steady_clock::now() < keepalive_due_) return true;
    if (client_.lease_keepalive(lease_) == 0) return false;
    keepalive_due_ = std::chrono::steady_clock::now() + ttl_ / 3;
    return true;
}

void RegistrySync::run() {
    std::string last_error;
    for (;;) {
        try {
            if (!watcher_) {
                int64_t revision = resync();
                watcher_ = std::make_unique<Watcher>(
                    client_, prefix_, prefix_end(prefix_), revision,
                    [this](const std::vector<WatchEvent>& events, int64_t) {
                        {
                            std::lock_guard lock(remote_mu_);
                            for (const WatchEvent& e : events) {
                                auto d = e.deleted ? std::nullopt : decode(e.kv.value);
                                if (d && d->first != replica_) {
                                    remote_[e.kv.key] = std::move(*d);
                                } else {
                                    remote_.erase(e.kv.key);
                                }
                            }
                        }
                        apply_remote();
                    },
                    [this] { return resync(); }, log_);
                watcher_->start();
            }
            if (!lease_) {
                lease_ = client_.lease_grant(ttl_.count());
                published_.clear();
                keepalive_due_ = std::chrono::steady_clock::now() + ttl_ / 3;
                log_("etcd: replica " + replica_ + " holds its proxies' registrations under lease " +
                     std::to_string(lease_) + " (TTL " + std::to_string(ttl_.count()) + " s)");
            } else if (!keep_alive()) {
                log_("etcd: lease " + std::to_string(lease_) + " expired; registering again");
                lease_ = 0;
                continue;
            }
            publish();
            read_peers();
            if (!last_error.empty()) log_("etcd: registry sync works again");
            last_error.clear();
        } catch (const std::exception& e) {
            if (last_error != e.what()) log_(std::string("etcd: registry sync: ") + e.what());
            last_error = e.what();
        }
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; })) return;
    }
}

}  // namespace remora::control::etcd
