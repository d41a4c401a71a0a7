// The poll loop: wait for an SVID, poll, apply, report on the next poll; back off on failure.
// A failed poll has dropped its connection (ControlConnection), so the retry connects anew.
#include "proxy/subscription/subscriber.h"

#include <boost/beast/core/string.hpp>
#include <boost/json.hpp>

#include "common/gzip.h"
#include "proxy/snapshot/snapshot_json.h"

namespace remora::proxy {

namespace json = boost::json;

// A gzip answer inflates to at most this: a snapshot of 100,000 services is under 200 MB.
constexpr std::size_t kMaxSnapshotBytes = 512u << 20;

ConfigSubscriber::ConfigSubscriber(SubscriptionOptions options, const TlsStore& tls,
                                   ApplyFn apply, LogFn log, uint64_t seed)
    : options_(std::move(options)),
      tls_(tls),
      apply_(std::move(apply)),
      log_(std::move(log)),
      rng_(seed),
      controls_(options_.control_host, options_.control_port, options_.more_controls) {}

ConfigSubscriber::~ConfigSubscriber() {
    stop();
}

void ConfigSubscriber::start() {
    thread_ = std::thread([this] { run(); });
}

void ConfigSubscriber::stop() {
    std::shared_ptr<certs::CallCanceller> canceller;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        canceller = canceller_;
    }
    cv_.notify_all();
    canceller->cancel();
    if (thread_.joinable()) thread_.join();
}

void ConfigSubscriber::set_draining() {
    std::shared_ptr<certs::CallCanceller> canceller;
    {
        std::lock_guard lock(mu_);
        if (draining_.exchange(true) || stopping_) return;
        drain_interrupted_ = true;
        canceller = canceller_;
    }
    cv_.notify_all();     // a backoff sleep ends too
    canceller->cancel();  // a long poll in flight ends; the next one carries the news
}

SubscriptionStatus ConfigSubscriber::status() const {
    SubscriptionStatus st;
    {
        std::lock_guard lock(mu_);
        st = status_;
    }
    const certs::ControlConnection::Counts c = connection_.counts();
    st.polls = c.calls;
    st.connections_opened = c.opened;
    st.connections_closed_by_server = c.closed_by_server;
    return st;
}

bool ConfigSubscriber::sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [this] { return stopping_ || drain_interrupted_; });
    return !stopping_;
}

std::string ConfigSubscriber::request_body(const std::string& held_version,
                                           const std::string& report_version,
                                           const std::string& report_error) const {
    json::object node;
    node["podName"] = options_.pod_name;
    node["workloadName"] = options_.workload_name;
    node["podIp"] = options_.pod_ip;
    node["proxyVersion"] = options_.proxy_version;
    json::object labels;
    for (const auto& [k, v] : options_.labels) labels[k] = v;
    node["labels"] = std::move(labels);
    json::array ports;
    for (uint32_t p : options_.ports) ports.emplace_back(p);
    node["ports"] = std::move(ports);
    if (draining_.load()) node["draining"] = true;
    json::object body;
    body["node"] = std::move(node);
    body["version"] = held_version;
    if (!report_version.empty()) {
        body["applied"] = json::object{{"version", report_version}, {"error", report_error}};
    }
    body["waitSeconds"] = options_.wait.count();
    return json::serialize(body);
}

bool ConfigSubscriber::poll_once() {
    auto tls = tls_.current();
    certs::CaClientOptions opts;
    const certs::ControlAddress& control = controls_.current();
    opts.host = control.host;
    opts.port = control.port;
    opts.bundle = tls->bundle;
    opts.trust_domain = options_.trust_domain;
    opts.client_chain = tls->chain;
    opts.client_key = tls->key;
    opts.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.wait) +
                   std::chrono::seconds(10);
    // Snapshots are repetitive JSON: gzip makes a push's bytes 20 to 30 times fewer.
    opts.accept_encoding = "gzip";
    {
        // A canceller stays cancelled: the one set_draining() used is replaced for the next poll.
        std::lock_guard lock(mu_);
        if (stopping_) return false;
        if (canceller_->cancelled()) canceller_ = std::make_shared<certs::CallCanceller>();
        drain_interrupted_ = false;
        opts.canceller = canceller_;
    }
    certs::CaClientResult res;
    try {
        // On the kept connection: a new one when there is none, when the address moved on (a
        // failover) or when the SVID was renewed (the next poll presents the new one).
        res = connection_.call(opts, "POST", "/v1/proxies/subscribe",
                               request_body(held_version_, report_version_, report_error_));
    } catch (const std::exception& e) {
        std::lock_guard lock(mu_);
        if (stopping_) return false;
        if (drain_interrupted_) return true;  // ended on purpose: poll again now, saying so
        std::string why = (controls_.size() > 1 ? control.str() + ": " : std::string()) + e.what();
        if (controls_.size() > 1) controls_.failed();
        if (status_.connected || status_.last_error != why) {
            log_("config subscription: " + why + "; serving the last snapshot, retrying " +
                 (controls_.size() > 1 ? "on " + controls_.current().str() + " " : std::string()) +
                 "with backoff");
        }
        status_.connected = false;
        status_.last_error = why;
        status_.failures += 1;
        return false;
    }
    controls_.succeeded();
    if (res.status == 304) {
        std::lock_guard lock(mu_);
        status_.connected = true;
        return true;
    }
    if (res.status != 200) {
        std::lock_guard lock(mu_);
        std::string why = "HTTP " + std::to_string(res.status) + ": " + res.body;
        while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
        if (status_.last_error != why) log_("config subscription refused: " + why);
        // A replica that cannot serve (503: stopping) is worth leaving; a refusal is not.
        if (res.status >= 500 && controls_.size() > 1) controls_.failed();
        status_.connected = false;
        status_.last_error = why;
        status_.failures += 1;
        return false;
    }
    // A new snapshot: whatever becomes of it is reported on the next poll.
    std::string version, error;
    uint64_t config_version = 0;
    snapshot::Snapshot snap;
    json::error_code jec;
    json::value doc;
    std::string encoding_error;
    std::size_t message_bytes = res.body.size();
    if (res.content_encoding.empty() || boost::beast::iequals(res.content_encoding, "identity")) {
        doc = json::parse(res.body, jec);
    } else if (boost::beast::iequals(res.content_encoding, "gzip")) {
        if (auto text = common::gunzip(res.body, kMaxSnapshotBytes, &encoding_error)) {
            message_bytes = text->size();
            doc = json::parse(*text, jec);
        }
    } else {
        encoding_error = "Content-Encoding \"" + res.content_encoding + "\" is not gzip";
    }
    const json::object* o = jec || !encoding_error.empty() ? nullptr : doc.if_object();
    if (!encoding_error.empty()) {
        error = "the answer's body could not be read: " + encoding_error;
    } else if (!o || !o->contains("version") || !o->at("version").is_string() || !o->contains("snapshot")) {
        error = "the answer is not a snapshot message";
    } else {
        version = std::string(o->at("version").get_string());
        if (const json::value* cv = o->if_contains("configVersion"); cv && cv->is_uint64()) {
            config_version = cv->get_uint64();
        } else if (cv && cv->is_int64() && cv->get_int64() >= 0) {
            config_version = static_cast<uint64_t>(cv->get_int64());
        }
        try {
            snap = snapshot::from_json(o->at("snapshot"));
        } catch (const snapshot::SnapshotFormatError& e) {
            error = e.what();
        }
    }
    if (error.empty()) error = apply_(std::move(snap), version);
    held_version_ = version;  // refused or not: wait for a different one
    report_version_ = version;
    report_error_ = error;
    std::lock_guard lock(mu_);
    status_.connected = true;
    status_.last_error.clear();
    status_.bytes_received += res.body.size();
    status_.snapshot_bytes += message_bytes;
    status_.last_snapshot_bytes = message_bytes;
    if (error.empty()) {
        status_.applied_version = version;
        status_.config_version = config_version;
        status_.updates += 1;
        log_("config: applied snapshot " + version + " (config version " +
             std::to_string(config_version) + ")");
    } else {
        status_.rejected_version = version;
        status_.rejected_error = error;
        status_.rejections += 1;
        log_("config: refused snapshot " + version + ": " + error + "; keeping " +
             (status_.applied_version.empty() ? std::string("none") : status_.applied_version));
    }
    return true;
}

void ConfigSubscriber::run() {
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    std::chrono::milliseconds backoff = options_.backoff_initial;
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (stopping_) return;
        }
        if (!tls_.current()) {  // no SVID yet: nothing to subscribe with
            if (!sleep_for(std::chrono::milliseconds(100))) return;
            continue;
        }
        if (poll_once()) {
            backoff = options_.backoff_initial;
            continue;
        }
        auto wait = std::chrono::milliseconds(
            static_cast<int64_t>(static_cast<double>(backoff.count()) * jitter(rng_)));
        if (!sleep_for(wait)) return;
        backoff = std::min(backoff * 2, options_.backoff_max);
    }
}

}  // namespace remora::proxy
