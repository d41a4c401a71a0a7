// Config distribution on the control plane's TLS port: proxies long-poll
// POST /v1/proxies/subscribe with their SVID, register their pod, report what they applied
// (ACK/NACK) and get their snapshot whenever it differs from the one they hold. The admin reads
// GET /v1/proxies (proxy-status), GET /v1/proxies/<name>/snapshot (proxy-config) and
// GET /v1/snapshot?namespace=&serviceAccount=&labels= (a workload's snapshot, running or not).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/http_server.h"
#include "control/registry/proxy_registry.h"
#include "control/server/config_api.h"
#include "control/server/debounce.h"
#include "control/server/snapshot_cache.h"
#include "control/store/store.h"
#include "control/translate/translate.h"
#include "proxy/snapshot/snapshot.h"

namespace remora::control::server {

struct DistributionOptions {
    translate::Options translate;
    std::chrono::seconds default_wait{20};  // long-poll length when the proxy does not say
    std::chrono::seconds max_wait{60};
    // Istio's PILOT_DEBOUNCE_AFTER and PILOT_DEBOUNCE_MAX: pushes wait for `debounce_after` of
    // quiet, at most `debounce_max` after the first change (0 = push at once). proxy-status
    // shows a proxy STALE while a change waits out the window, so scripts that apply and wait
    // for SYNCED do not race it.
    std::chrono::milliseconds debounce_after{100};
    std::chrono::milliseconds debounce_max{10000};
    // With several replicas (--store etcd): this one's id, and the others' ids and advertised
    // addresses, which /v1/proxies names so that remoractl proxy-status can ask each of them (as
    // istioctl asks every istiod).
    std::string replica_id;
    std::function<std::vector<std::pair<std::string, std::string>>()> peers;
};

class Distribution {
  public:
    using Logger = std::function<void(const std::string&)>;
    Distribution(boost::asio::io_context& io, store::ConfigStore& store,
                 registry::ProxyRegistry& registry, ApiAuth auth, DistributionOptions options,
                 Logger log);
    ~Distribution();

    static bool serves(std::string_view target);  // /v1/proxies..., /v1/snapshot
    static constexpr const char* kSubscribePath = "/v1/proxies/subscribe";
    // The long-poll (a deferred handler on the HTTP server).
    void subscribe(const common::HttpRequest& req, const common::PeerInfo& peer,
                   std::shared_ptr<common::Responder> responder);
    // The admin's reads.
    common::HttpResponse handle(const common::HttpRequest& req, const common::PeerInfo& peer);

    // The snapshot a workload with this identity and these labels would be sent now (explain).
    proxy::snapshot::Snapshot snapshot_for(const std::string& ns, const std::string& service_account,
                                           const model::Labels& labels);

    // Prometheus text for the monitoring port: Istio's pilot_xds (connected proxies),
    // pilot_xds_pushes and pilot_total_xds_rejects, and remora's per-status proxy counts.
    std::string prometheus() const;

    // Starts watching the store and sweeping the registry (every second).
    void start();
    void stop();

  private:
    struct Poll;
    struct Computed {
        std::string version;
        std::shared_ptr<const std::string> json;  // the snapshot, shared by its class
        uint64_t config_version = 0;
        bool lagging = false;  // registrations since are not in it (SnapshotCache::Result)
    };
    // The snapshot for one registered workload, from the current store and registry, through the
    // cache of snapshots by class.
    Computed compute(const std::string& ns, const std::string& service_account,
                     const model::Labels& labels,
                     SnapshotCache::Staleness staleness = SnapshotCache::Staleness::Current);
    // A change of the store or the registry: the push to waiting polls goes out debounced.
    void request_push();
    void arm_push_timer();  // with mu_ held
    void on_push_timer();
    // Answers every waiting poll whose snapshot changed.
    void wake_all();
    // A new poll's first answer, or its place among the waiting ones.
    void answer_or_wait(const std::shared_ptr<Poll>& poll);
    // False when the proxy had gone (or the poll was answered already).
    bool answer(const std::shared_ptr<Poll>& poll, const Computed& c);
    // The answer's body for `c` ({"version", "configVersion", "snapshot"}), built once and
    // shared by every poll of its class that a push answers: at 10,000 services a copy per proxy
    // was 17 MB each, 17 GB for a thousand proxies. `gzip`: compressed (once too), for polls
    // that accept it: what a push writes shrinks 20 to 30 times.
    std::shared_ptr<const std::string> message_for(const Computed& c, bool gzip = false);
    // The registry's poll_ended once the poll's answer is written and its connection has read
    // the proxy's next poll or closed (Responder::on_released): the grace starts then.
    void end_poll_when_released(const std::shared_ptr<Poll>& poll);
    void watch_store(uint64_t after);
    void sweep();

    boost::asio::io_context& io_;
    store::ConfigStore& store_;
    registry::ProxyRegistry& registry_;
    ApiAuth auth_;
    DistributionOptions options_;
    Logger log_;
    boost::asio::steady_timer sweep_timer_;
    std::optional<std::chrono::steady_clock::time_point> sweep_due_;  // the sweep thread's own

    std::mutex mu_;
    std::map<uint64_t, std::shared_ptr<Poll>> polls_;
    uint64_t next_poll_ = 1;
    uint64_t store_waiter_ = 0;
    bool stopped_ = false;
    std::atomic<uint64_t> pushes_{0}, rejects_{0}, expired_{0}, push_batches_{0}, push_changes_{0};
    std::atomic<uint64_t> stalls_{0};  // sweeps that ran late (busy threads)
    SnapshotCache cache_;
    // message_for's memo: by snapshot text (kept alive here) and config version, the body and
    // its gzip (made on first use); entries whose snapshot nothing else holds any more are
    // dropped when one is added.
    struct Message {
        uint64_t config_version = 0;
        std::shared_ptr<const std::string> body, gzipped;
    };
    std::mutex messages_mu_;
    std::map<std::shared_ptr<const std::string>, Message> messages_;
    Debouncer debounce_;                  // under mu_
    boost::asio::steady_timer push_timer_;  // under mu_
    bool push_timer_armed_ = false;       // under mu_
    // Pushes translate here, not on the io threads: while a push translates (seconds at 10,000
    // services on a busy machine), they go on accepting, handshaking and reading polls. One
    // thread: pushes in order; a push spreads its classes over every core itself (wake_all).
    boost::asio::thread_pool translator_{1};
};

}  // namespace remora::control::server
