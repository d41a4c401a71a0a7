// remora-control --kube: the Kubernetes API server as a source of the store. One thread lists and
// watches every kind (kube_api.h) over HTTP/1.1 with Boost.Beast, and after a quiet moment hands
// the whole rendered state to the store as the resources of origin Kube; a resource that does not
// validate is skipped with an Event-like log line and counted, the rest goes on.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/kube/kube_api.h"
#include "control/store/store.h"

namespace remora::control::kube {

struct KubeSourceOptions {
    // Changes arriving together become one store change (Istio's PILOT_DEBOUNCE_AFTER).
    std::chrono::milliseconds debounce{100};
    // Asked of the server per watch (it ends the watch then; the client watches again from the
    // last version); the read deadline is this plus a margin.
    unsigned watch_timeout_seconds = 300;
    std::chrono::seconds connect_timeout{10};
    // Backoff after a failed list or a dropped watch: doubles from min to max, with jitter.
    std::chrono::milliseconds backoff_min{200};
    std::chrono::milliseconds backoff_max{10000};
    unsigned list_page_limit = 500;
    // A watch line longer than this ends the connection (a bound on what one object may be).
    std::size_t max_line_bytes = 16 * 1024 * 1024;
};

class KubeSource {
  public:
    using Logger = std::function<void(const std::string&)>;

    KubeSource(ApiServer server, store::ConfigStore& store, Logger log,
               KubeSourceOptions options = {});
    ~KubeSource();
    KubeSource(const KubeSource&) = delete;
    KubeSource& operator=(const KubeSource&) = delete;

    // Starts listing and watching on a thread of its own; the store gets the state once every
    // kind has been listed.
    void start();
    void stop();

    // Prometheus text: remora_kube_* (objects, watch events, relists, reconnects, rejected
    // resources, store refusals, synced).
    std::string prometheus() const;
    bool synced() const { return synced_.load(); }

  private:
    struct Watch;
    friend struct Watch;
    void changed();
    void publish();
    bool valid(const RenderedDoc& doc, std::string& why);

    ApiServer server_;
    store::ConfigStore& store_;
    Logger log_;
    KubeSourceOptions options_;
    boost::asio::io_context io_;
    std::unique_ptr<boost::asio::ssl::context> tls_;
    boost::asio::steady_timer debounce_;
    bool debounce_pending_ = false;
    std::vector<std::unique_ptr<Watch>> watches_;
    std::thread thread_;
    std::atomic<bool> synced_{false};

    // Validation verdicts by source and text: an object is checked once per content.
    struct Verdict {
        std::string yaml, why;  // why: "" when valid
    };
    std::map<std::string, Verdict> verdicts_;       // by "Kind ns/name"
    std::map<std::string, RenderedDoc> last_good_;  // kept while a newer version is invalid

    struct Metrics {
        std::map<std::string, uint64_t> objects, relists, reconnects, rejected, list_failures;
        std::map<std::pair<std::string, std::string>, uint64_t> events;  // (kind, type)
        uint64_t store_refusals = 0, store_changes = 0;
    };
    mutable std::mutex metrics_mu_;
    Metrics metrics_;
};

}  // namespace remora::control::kube
