// Keeps the proxy's SVID current: loaded from files, or obtained from remora-control with a
// bootstrap token and renewed over mTLS at half-life (±1% jitter, as Istio). When the CA is down it
// keeps the current certificate and retries with backoff. Runs on its own thread: certificate
// requests are rare and must never stall a worker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "certs/ca_client.h"
#include "proxy/tls/tls_store.h"

namespace remora::proxy {

struct IdentityOptions {
    // Files mode.
    std::string cert_chain_file, key_file;
    // CA mode (when control_host is set).
    std::string control_host, control_port, token_file;
    std::vector<certs::ControlAddress> more_controls;  // more replicas: tried in turn on failure
    std::optional<std::chrono::seconds> ttl;
    std::string expected_ns, expected_sa;  // refuse a certificate for anyone else
    // Both.
    std::string trust_bundle_file;
    std::string trust_domain = "cluster.local";
};

// What the agent did, for the proxy's metrics: a renewal that keeps failing is visible (and
// alertable) before the certificate expires, not only in the log.
struct IdentityCounts {
    uint64_t requests = 0, request_failures = 0;  // first certificate (bootstrap token)
    uint64_t renewals = 0, renewal_failures = 0;  // renewals over mTLS
};

class IdentityAgent {
public:
    using LogFn = std::function<void(const std::string&)>;
    IdentityAgent(IdentityOptions options, TlsStore& store, WallClock clock, LogFn log,
                  uint64_t seed);
    ~IdentityAgent();

    // Files mode loads synchronously (throws on a bad file); CA mode starts the thread and
    // returns at once (the proxy is not ready until the first certificate arrives).
    void start();
    void stop();

    // When the next renewal is due for a certificate received at `received` and valid until `na`:
    // half of the remaining life, ±1%. Not from NotBefore: the CA backdates it by 2 minutes, which
    // for a short-lived certificate would put the half-life in the past.
    // CA mode: certificates come from remora-control (not from files).
    bool from_ca() const noexcept { return !options_.control_host.empty(); }
    IdentityCounts counts() const noexcept {
        return {requests_.load(std::memory_order_relaxed), request_failures_.load(std::memory_order_relaxed),
                renewals_.load(std::memory_order_relaxed), renewal_failures_.load(std::memory_order_relaxed)};
    }

    static certs::SystemTime renewal_time(certs::SystemTime received, certs::SystemTime na,
                                          double jitter01);

private:
    void run();
    bool fetch(bool renewal);
    void publish(const certs::IssuedSvid& svid);
    // Sleeps until `deadline` or stop(); returns false when stopped.
    bool sleep_until(certs::SystemTime deadline);

    IdentityOptions options_;
    TlsStore& store_;
    WallClock clock_;
    LogFn log_;
    std::mt19937_64 rng_;
    certs::TrustBundle bundle_;
    certs::ControlFailover controls_;  // the agent thread's own
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    // Attempts that ended with a certificate, and those that did not (each replica tried counts).
    std::atomic<uint64_t> requests_{0}, request_failures_{0}, renewals_{0}, renewal_failures_{0};
};

}  // namespace remora::proxy
