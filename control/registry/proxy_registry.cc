// Registrations keyed by "<pod>.<namespace>", kept under one mutex: polls are few per second,
// never on a data path.
#include "control/registry/proxy_registry.h"

#include <algorithm>
#include <utility>

namespace remora::control::registry {

const char* sync_status_name(SyncStatus s) {
    switch (s) {
        case SyncStatus::NotSent:
            return "NOT SENT";
        case SyncStatus::Synced:
            return "SYNCED";
        case SyncStatus::Stale:
            return "STALE";
        case SyncStatus::Nack:
            return "NACK";
    }
    return "?";
}

SyncStatus ProxyRecord::status() const {
    if (sent_version.empty()) return SyncStatus::NotSent;
    if (!nacked_version.empty() && nacked_version == sent_version) return SyncStatus::Nack;
    if (acked_version == sent_version) return SyncStatus::Synced;
    return SyncStatus::Stale;
}

ProxyRegistry::ProxyRegistry(SteadyClock steady, WallClock wall, std::chrono::milliseconds grace)
    : steady_(std::move(steady)), wall_(std::move(wall)), grace_(grace) {}

bool ProxyRegistry::poll_started(const std::string& ns, const std::string& service_account,
                                 const Registration& reg, const Certificate& cert) {
    std::lock_guard lock(mu_);
    std::string id = id_of(ns, reg);
    auto [it, created] = proxies_.try_emplace(id);
    ProxyRecord& r = it->second;
    bool changed = created || r.reg.pod_ip != reg.pod_ip || r.reg.labels != reg.labels ||
                   r.reg.draining != reg.draining || r.service_account != service_account;
    if (created) {
        r.id = id;
        r.connected_since =
            std::chrono::duration_cast<std::chrono::seconds>(wall_().time_since_epoch()).count();
    }
    r.ns = ns;
    r.service_account = service_account;
    r.reg = reg;
    r.cert = cert;
    r.polls += 1;
    r.last_seen = steady_();
    if (changed) ++generation_;
    return changed;
}

void ProxyRegistry::poll_ended(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = proxies_.find(id);
    if (it == proxies_.end()) return;
    if (it->second.polls > 0) it->second.polls -= 1;
    it->second.last_seen = steady_();
}

bool ProxyRegistry::report(const std::string& id, const std::string& version,
                           const std::string& error) {
    std::lock_guard lock(mu_);
    auto it = proxies_.find(id);
    if (it == proxies_.end() || version.empty()) return false;
    if (error.empty()) {
        it->second.acked_version = version;
        return false;
    }
    bool news = it->second.nacked_version != version;
    it->second.nacked_version = version;
    it->second.nack_error = error;
    return news;
}

void ProxyRegistry::sent(const std::string& id, const std::string& version,
                         uint64_t config_version, std::shared_ptr<const std::string> snapshot_json) {
    std::lock_guard lock(mu_);
    auto it = proxies_.find(id);
    if (it == proxies_.end()) return;
    it->second.sent_version = version;
    it->second.sent_config_version = config_version;
    it->second.sent_snapshot = std::move(snapshot_json);
}

std::vector<std::string> ProxyRegistry::expire(std::chrono::milliseconds stalled) {
    std::lock_guard lock(mu_);
    std::vector<std::string> gone;
    auto now = steady_();
    if (stalled.count() > 0) {
        for (auto& [id, r] : proxies_) {
            if (r.polls == 0) r.last_seen = std::min(now, r.last_seen + stalled);
        }
    }
    for (auto it = proxies_.begin(); it != proxies_.end();) {
        if (it->second.polls == 0 && now - it->second.last_seen > grace_) {
            gone.push_back(it->first);
            it = proxies_.erase(it);
        } else {
            ++it;
        }
    }
    if (!gone.empty()) ++generation_;
    return gone;
}

bool ProxyRegistry::set_remote(std::map<std::string, RemoteProxy> remote) {
    std::lock_guard lock(mu_);
    if (remote == remote_) return false;
    remote_ = std::move(remote);
    remote_changed_ = true;
    ++generation_;
    return true;
}

bool ProxyRegistry::take_remote_change() {
    std::lock_guard lock(mu_);
    return std::exchange(remote_changed_, false);
}

uint64_t ProxyRegistry::generation() const {
    std::lock_guard lock(mu_);
    return generation_;
}

std::vector<ProxyRecord> ProxyRegistry::list() const {
    std::lock_guard lock(mu_);
    std::vector<ProxyRecord> out;
    for (const auto& [id, r] : proxies_) out.push_back(r);
    return out;
}

std::optional<ProxyRecord> ProxyRegistry::find(const std::string& name) const {
    std::lock_guard lock(mu_);
    if (auto it = proxies_.find(name); it != proxies_.end()) return it->second;
    std::optional<ProxyRecord> only;
    for (const auto& [id, r] : proxies_) {
        if (r.reg.pod_name != name) continue;
        if (only) return std::nullopt;  // ambiguous: the caller must say the namespace
        only = r;
    }
    return only;
}

std::vector<model::WorkloadEntry> ProxyRegistry::workload_entries() const {
    std::lock_guard lock(mu_);
    // With --kube, endpoints come from EndpointSlices only (a not-ready pod gets no traffic).
    if (!endpoints_from_registrations_) return {};
    std::map<std::string, model::WorkloadEntry> by_id;
    auto add = [&](const std::string& id, const std::string& ns, const std::string& sa,
                   const Registration& reg) {
        if (reg.draining) {
            by_id.erase(id);  // (a remote record of the same proxy does not bring it back)
            return;
        }
        model::WorkloadEntry we;
        we.meta.name = reg.pod_name;
        we.meta.ns = ns;
        we.meta.valid = true;
        we.spec.address = reg.pod_ip;
        we.spec.labels = reg.labels;
        // A registered pod has a sidecar: auto mTLS reaches it over ISTIO_MUTUAL.
        we.spec.labels["security.istio.io/tlsMode"] = "istio";
        we.spec.service_account = sa;
        by_id.insert_or_assign(id, std::move(we));
    };
    // A proxy that moved here from another replica is this replica's: its own record wins.
    for (const auto& [id, r] : remote_) add(id, r.ns, r.service_account, r.reg);
    for (const auto& [id, r] : proxies_) add(id, r.ns, r.service_account, r.reg);
    std::vector<model::WorkloadEntry> out;
    for (auto& [id, we] : by_id) out.push_back(std::move(we));
    return out;
}

}  // namespace remora::control::registry
