// A client for etcd v3's JSON gateway over HTTP/1.1 (Boost.Beast), plain or TLS (client
// certificate and CA): unary calls that try each endpoint in turn, and a watch stream that
// reconnects to the next endpoint and resumes after the last revision it saw.
#pragma once

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "control/etcd/etcd_json.h"

namespace remora::control::etcd {

struct Endpoint {
    std::string host, port;
    bool tls = false;
    std::string str() const { return (tls ? "https://" : "http://") + host + ":" + port; }
};

struct EtcdOptions {
    std::vector<Endpoint> endpoints;
    // TLS to etcd: the CA that signed etcd's serving certificates, and this client's certificate
    // and key when etcd asks for one (--client-cert-auth).
    std::string ca_file, cert_file, key_file;
    // Deadline of one unary call to one endpoint (connect, send, whole answer).
    std::chrono::milliseconds timeout{3000};
    // A watch stream silent this long is checked: a linearizable read (count only) of the watched
    // range on the same member, within `timeout`. When it fails (the member is stopped, cut off
    // from its peers, or a half-open connection), the stream is given up and resumed on the next
    // member; without the check a silent member would hold the watch, and every change after it,
    // forever.
    std::chrono::milliseconds watch_check_interval{5000};
};

// "a:2379,https://b:2379,http://c:2379" (a name without scheme is http://, or https:// when
// `tls`). Throws std::invalid_argument naming the entry that is wrong.
std::vector<Endpoint> parse_endpoints(const std::string& text, bool tls);

// No endpoint answered, or etcd could not commit (no leader, no quorum, timed out): the store
// cannot be written now. The message says which endpoints failed and how.
class EtcdUnavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class EtcdClient {
  public:
    explicit EtcdClient(EtcdOptions options);
    const EtcdOptions& options() const { return options_; }

    // POSTs `body` to `path` ("/v3/kv/range"), trying every endpoint from the last that answered.
    // Throws EtcdUnavailable when none answered or etcd said it cannot serve (gRPC codes
    // UNAVAILABLE 14, DEADLINE_EXCEEDED 4, "no leader", "timed out"), EtcdAnswerError for any
    // other error etcd sent.
    boost::json::value call(const std::string& path, const boost::json::object& body);

    RangeAnswer range(const std::string& key, const std::string& range_end = {});
    int64_t put(const std::string& key, const std::string& value, int64_t lease = 0);
    int64_t remove(const std::string& key, const std::string& range_end = {});
    TxnAnswer txn(const boost::json::object& request);
    int64_t lease_grant(int64_t ttl_seconds);
    // The TTL left; 0 when the lease is gone (expired or revoked).
    int64_t lease_keepalive(int64_t id);
    void lease_revoke(int64_t id);

    // One watch stream on [key, range_end) from `start_revision`, calling `on_message` for each
    // message, until the stream ends (throws EtcdUnavailable) or `stop` is set. Used by Watcher.
    void watch_once(const std::string& key, const std::string& range_end, int64_t start_revision,
                    const std::function<void(const WatchMessage&)>& on_message,
                    const std::function<bool()>& stopped,
                    const std::function<void(std::function<void()>)>& set_cancel);

  private:
    std::string post(const Endpoint& ep, const std::string& path, const std::string& body,
                     const std::function<void(std::string_view)>* on_line,
                     const std::function<void(std::function<void()>)>* set_cancel,
                     std::function<void()> check = {});

    EtcdOptions options_;
    std::atomic<std::size_t> preferred_{0};
};

// Keeps a watch on a key range open on its own thread: each batch of events goes to `on_events`
// with the revision it brings the range to; after a disconnection it resumes from the next
// revision on another endpoint; when that revision was compacted away, `on_resync` is called
// (the owner reads the range again) and the watch restarts from the revision it returns.
class Watcher {
  public:
    using EventsFn = std::function<void(const std::vector<WatchEvent>&, int64_t revision)>;
    using ResyncFn = std::function<int64_t()>;
    using LogFn = std::function<void(const std::string&)>;
    Watcher(EtcdClient& client, std::string key, std::string range_end, int64_t after_revision,
            EventsFn on_events, ResyncFn on_resync, LogFn log);
    ~Watcher();
    void start();
    void stop();

  private:
    void run();

    EtcdClient& client_;
    std::string key_, range_end_;
    int64_t next_revision_;
    EventsFn on_events_;
    ResyncFn on_resync_;
    LogFn log_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::function<void()> cancel_;
    std::thread thread_;
};

}  // namespace remora::control::etcd
