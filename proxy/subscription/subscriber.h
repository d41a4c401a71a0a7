// Keeps the proxy's snapshot current from remora-control: a long-poll over mTLS (the SVID is the
// credential) that registers this pod, says which snapshot it holds and what became of the last
// one (ACK, or NACK with the reason), and receives a new snapshot whenever the control plane
// computes a different one. When the control plane is unreachable the proxy keeps serving on its
// last snapshot and tries again with jittered exponential backoff. The polls go over one kept-alive
// connection (certs::ControlConnection): one TLS handshake per control plane, not one per poll (a
// push answered every poll, and every proxy reconnecting at once was a thousand handshakes on
// the control plane). Runs on its own thread: the calls block and must never stall a worker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "certs/ca_client.h"
#include "proxy/snapshot/snapshot.h"
#include "proxy/tls/tls_store.h"

namespace remora::proxy {

struct SubscriptionOptions {
    std::string control_host, control_port;
    // More replicas (--control a:p,b:p): a failed poll moves to the next address.
    std::vector<certs::ControlAddress> more_controls;
    std::string trust_domain = "cluster.local";
    // What this proxy registers (namespace and service account come from its certificate).
    std::string pod_name, workload_name, pod_ip, proxy_version;
    std::map<std::string, std::string> labels;
    std::vector<uint32_t> ports;
    std::chrono::seconds wait{20};  // how long the control plane holds a poll with no change
    std::chrono::milliseconds backoff_initial{250};
    std::chrono::milliseconds backoff_max{8000};
};

// What the subscription has done, for /config_dump, metrics and logs.
struct SubscriptionStatus {
    bool connected = false;        // the last poll reached the control plane
    std::string applied_version;   // the snapshot in use ("" before the first)
    uint64_t config_version = 0;   // the control plane's store version it came from
    std::string rejected_version, rejected_error;  // the last snapshot refused, and why
    std::string last_error;        // the last failure to reach the control plane
    uint64_t updates = 0, rejections = 0, failures = 0;
    // The control connection: polls answered, connections opened for them, and kept connections
    // the control plane had closed between polls (replaced at once, not failures).
    uint64_t polls = 0, connections_opened = 0, connections_closed_by_server = 0;
    // Snapshot answers' bytes as they came (gzip when remora-control compressed them) and as
    // read (inflated), over all answers; the last snapshot's alone.
    uint64_t bytes_received = 0, snapshot_bytes = 0, last_snapshot_bytes = 0;
};

class ConfigSubscriber {
  public:
    using LogFn = std::function<void(const std::string&)>;
    // Applies a snapshot: "" when it is in use, else why it was refused (the old one stays).
    using ApplyFn = std::function<std::string(snapshot::Snapshot, const std::string& version)>;

    ConfigSubscriber(SubscriptionOptions options, const TlsStore& tls, ApplyFn apply, LogFn log,
                     uint64_t seed);
    ~ConfigSubscriber();
    ConfigSubscriber(const ConfigSubscriber&) = delete;
    ConfigSubscriber& operator=(const ConfigSubscriber&) = delete;

    void start();
    void stop();  // cancels a poll in flight; returns once the thread has ended
    // The proxy drains: the poll in flight ends and the next ones say so ("draining": true), so
    // the control plane withdraws this pod's endpoints from every other proxy at once, as
    // Kubernetes takes a terminating pod out of its EndpointSlices. Polling goes on (the proxy
    // still serves while it drains).
    void set_draining();
    SubscriptionStatus status() const;

    // The poll's request body (JSON), exposed for tests.
    std::string request_body(const std::string& held_version, const std::string& report_version,
                             const std::string& report_error) const;

  private:
    void run();
    // One poll; false when the control plane could not be reached or refused the call.
    bool poll_once();
    bool sleep_for(std::chrono::milliseconds d);

    SubscriptionOptions options_;
    const TlsStore& tls_;
    ApplyFn apply_;
    LogFn log_;
    std::mt19937_64 rng_;
    certs::ControlFailover controls_;  // the poll thread's own
    certs::ControlConnection connection_;  // the poll thread's own (counts() from any thread)
    std::shared_ptr<certs::CallCanceller> canceller_ = std::make_shared<certs::CallCanceller>();

    // Poll state (the thread's own). The report (what became of the last snapshot received) goes
    // with every poll, so a control plane that restarted learns it at once.
    std::string held_version_, report_version_, report_error_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::atomic<bool> draining_{false};
    bool drain_interrupted_ = false;  // the poll in flight was ended to say so (mu_)
    SubscriptionStatus status_;
    std::thread thread_;
};

}  // namespace remora::proxy
