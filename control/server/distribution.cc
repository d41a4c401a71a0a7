// Long-polls wait in a table; a store change (through the store's waiter) or a registry change
// asks for a push, debounced (Istio's PILOT_DEBOUNCE_AFTER/MAX), which wakes them: each gets its
// class's snapshot from the cache (translated once per class; a change drops only the classes it
// touches), answered only when its content version differs from the one the proxy holds. A
// one-second sweep ends expired polls (304) and registrations; an answered poll on a kept-alive
// connection counts as in flight until that connection carries the proxy's next poll or closes.
#include "control/server/distribution.h"

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "common/args.h"
#include "common/gzip.h"
#include "proxy/snapshot/snapshot_json.h"

namespace remora::control::server {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using common::HttpRequest;
using common::HttpResponse;
using common::json_response;

struct Distribution::Poll {
    std::string id, ns, service_account;
    model::Labels labels;
    std::string have_version;
    std::shared_ptr<common::Responder> responder;
    std::chrono::steady_clock::time_point deadline;
    unsigned http_version = 11;
    bool gzip = false;  // its Accept-Encoding allows gzip
};

namespace {

// zlib's level for snapshots. Measured at 10,000 services (11 MB of JSON per class): level 6
// compresses it to 183 KiB in 33 ms, level 1 to 316 KiB in 16 ms (docs/benchmark.md).
constexpr int kGzipLevel = 6;

HttpResponse error_json(unsigned status, const std::string& error, unsigned version) {
    return json_response(status, json::serialize(json::object{{"error", error}}) + "\n", version);
}

std::string string_field(const json::object& o, const char* name) {
    const json::value* v = o.if_contains(name);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// "198.18.0.5:41234" / "[::1]:41234" → the address part.
std::string address_of(const std::string& remote) {
    std::string a = remote.substr(0, remote.rfind(':'));
    if (a.size() > 1 && a.front() == '[') a = a.substr(1, a.size() - 2);
    return a;
}

bool is_loopback(const std::string& ip) {
    boost::system::error_code ec;
    auto a = asio::ip::make_address(ip, ec);
    return !ec && a.is_loopback();
}

bool valid_name(const std::string& s) {
    if (s.empty() || s.size() > 253) return false;
    for (char c : s) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) return false;
    }
    return true;
}

int64_t unix_seconds(certs::SystemTime t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

Distribution::Distribution(asio::io_context& io, store::ConfigStore& store,
                           registry::ProxyRegistry& registry, ApiAuth auth,
                           DistributionOptions options, Logger log)
    : io_(io),
      store_(store),
      registry_(registry),
      auth_(std::move(auth)),
      options_(std::move(options)),
      log_(std::move(log)),
      sweep_timer_(io),
      cache_(options_.translate),
      debounce_(options_.debounce_after, options_.debounce_max),
      push_timer_(io) {}

Distribution::~Distribution() {
    stop();
}

bool Distribution::serves(std::string_view target) {
    std::string_view path = target.substr(0, target.find('?'));
    return path == "/v1/proxies" || path.substr(0, 12) == "/v1/proxies/" || path == "/v1/snapshot";
}

void Distribution::start() {
    watch_store(store_.version());
    sweep();
}

void Distribution::stop() {
    std::vector<std::shared_ptr<Poll>> polls;
    {
        std::lock_guard lock(mu_);
        if (stopped_) return;
        stopped_ = true;
        for (auto& [id, p] : polls_) polls.push_back(p);
        polls_.clear();
    }
    if (store_waiter_) store_.cancel_waiter(store_waiter_);
    sweep_timer_.cancel();
    {
        std::lock_guard lock(mu_);
        push_timer_.cancel();
    }
    for (auto& p : polls) p->responder->respond(error_json(503, "the control plane is stopping", p->http_version));
    // Work not begun is dropped (the process is ending); a translation under way finishes.
    translator_.stop();
    translator_.join();
}

void Distribution::watch_store(uint64_t after) {
    uint64_t id = store_.on_newer(after, [this](store::SnapshotPtr snap) {
        uint64_t v = snap->version;
        // On the thread that changed the store: hand the work to the io_context.
        asio::post(io_, [this, v] {
            {
                std::lock_guard lock(mu_);
                if (stopped_) return;
            }
            log_("config version " + std::to_string(v) + ": pushing to subscribed proxies");
            request_push();
            watch_store(v);
        });
    });
    std::lock_guard lock(mu_);
    store_waiter_ = id;
}

void Distribution::sweep() {
    // A sweep late by more than a moment means this control plane's threads were all busy
    // (translating a push): proxies' next polls waited in its own queue meanwhile, unread, so
    // that time does not count against their registrations' grace.
    std::chrono::milliseconds stalled{0};
    const auto started = std::chrono::steady_clock::now();
    if (sweep_due_ && started > *sweep_due_ + std::chrono::milliseconds(500)) {
        stalled = std::chrono::duration_cast<std::chrono::milliseconds>(started - *sweep_due_);
        stalls_ += 1;
    }
    std::vector<std::string> gone = registry_.expire(stalled);
    expired_ += gone.size();
    for (const std::string& id : gone) log_("proxy " + id + " gone: registration removed");
    std::vector<std::shared_ptr<Poll>> expired;
    auto now = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(mu_);
        if (stopped_) return;
        for (auto it = polls_.begin(); it != polls_.end();) {
            if (it->second->deadline <= now) {
                expired.push_back(it->second);
                it = polls_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& p : expired) {
        HttpResponse res{http::status::not_modified, p->http_version};
        if (p->responder->respond(std::move(res))) end_poll_when_released(p);
    }
    // A proxy gone changes others' endpoints (computing every waiting proxy's snapshot, so only
    // then: registrations wake everyone themselves, store changes through the store's waiter).
    // Other replicas' registrations (etcd) change endpoints too.
    const bool remote_changed = registry_.take_remote_change();
    if (!gone.empty() || remote_changed) request_push();
    sweep_due_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    sweep_timer_.expires_at(*sweep_due_);
    sweep_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) sweep();
    });
}

Distribution::Computed Distribution::compute(const std::string& ns,
                                             const std::string& service_account,
                                             const model::Labels& labels,
                                             SnapshotCache::Staleness staleness) {
    // The generation before the workloads: a registration in between is seen again next time.
    uint64_t generation = registry_.generation();
    cache_.update(store_.snapshot(), generation, [this] { return registry_.workload_entries(); });
    SnapshotCache::Result r = cache_.get(ProxyClass{ns, service_account, labels}, staleness);
    return Computed{r.entry->version, r.entry->json, r.config_version, r.lagging};
}

void Distribution::request_push() {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    debounce_.change(std::chrono::steady_clock::now());
    if (!push_timer_armed_) arm_push_timer();
}

void Distribution::arm_push_timer() {
    push_timer_armed_ = true;
    push_timer_.expires_at(*debounce_.due());
    push_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) on_push_timer();
    });
}

void Distribution::on_push_timer() {
    uint64_t merged = 0;
    {
        std::lock_guard lock(mu_);
        push_timer_armed_ = false;
        if (stopped_) return;
        if (!debounce_.take(std::chrono::steady_clock::now(), &merged)) {
            // Changes came since the timer was set: wait for the quiet period again.
            if (debounce_.pending()) arm_push_timer();
            return;
        }
    }
    push_batches_ += 1;
    push_changes_ += merged;
    asio::post(translator_, [this] { wake_all(); });
}

proxy::snapshot::Snapshot Distribution::snapshot_for(const std::string& ns, const std::string& service_account,
                                                     const model::Labels& labels) {
    return proxy::snapshot::from_json(json::parse(*compute(ns, service_account, labels).json));
}

std::shared_ptr<const std::string> Distribution::message_for(const Computed& c, bool gzip) {
    {
        std::lock_guard lock(messages_mu_);
        auto it = messages_.find(c.json);
        if (it != messages_.end() && it->second.config_version == c.config_version) {
            if (const auto& kept = gzip ? it->second.gzipped : it->second.body) return kept;
        }
    }
    // {"version": ..., "configVersion": N, "snapshot": <the class's JSON>}, made without the lock
    // (compressing a large snapshot takes tens of milliseconds), gzip straight from the class's
    // JSON; two polls of a class racing here may both make it, once. The plain body is kept only
    // when a proxy that does not take gzip asked for it (one more copy of the snapshot per class).
    const std::string head = "{\"version\":\"" + c.version + "\",\"configVersion\":" +
                             std::to_string(c.config_version) + ",\"snapshot\":";
    const std::string_view tail = "}\n";
    std::shared_ptr<const std::string> made;
    if (gzip) {
        made = std::make_shared<const std::string>(common::gzip({head, *c.json, tail}, kGzipLevel));
    } else {
        auto b = std::make_shared<std::string>();
        b->reserve(head.size() + c.json->size() + tail.size());
        *b += head;
        *b += *c.json;
        *b += tail;
        made = std::move(b);
    }
    std::lock_guard lock(messages_mu_);
    auto it = messages_.find(c.json);
    if (it == messages_.end()) {
        std::erase_if(messages_, [](const auto& kv) { return kv.first.use_count() == 1; });
        it = messages_.emplace(c.json, Message{c.config_version, nullptr, nullptr}).first;
    } else if (it->second.config_version != c.config_version) {
        it->second = Message{c.config_version, nullptr, nullptr};
    }
    auto& kept = gzip ? it->second.gzipped : it->second.body;
    if (!kept) kept = std::move(made);
    return kept;
}

bool Distribution::answer(const std::shared_ptr<Poll>& poll, const Computed& c) {
    HttpResponse res = json_response(200, std::string(), poll->http_version);
    if (poll->gzip) res.set(http::field::content_encoding, "gzip");
    res.set(http::field::vary, "Accept-Encoding");
    if (!poll->responder->respond(std::move(res), message_for(c, poll->gzip))) return false;
    registry_.sent(poll->id, c.version, c.config_version, c.json);
    end_poll_when_released(poll);
    pushes_ += 1;
    return true;
}

void Distribution::end_poll_when_released(const std::shared_ptr<Poll>& poll) {
    // Until the answer is written the poll is in flight and the registration cannot expire: a
    // proxy still reading a large snapshot is not gone (it was expired, re-registered, and that
    // pushed to everyone: push storms at 10,000 services). Nor is a proxy whose next poll, on
    // the same kept-alive connection, waits unread while this control plane's threads are busy
    // (translating a push): the poll ends when its connection has handed the next one to
    // subscribe() (which counts it first) or has closed.
    poll->responder->on_released([this, id = poll->id] { registry_.poll_ended(id); });
}

void Distribution::wake_all() {
    std::vector<std::shared_ptr<Poll>> polls;
    {
        std::lock_guard lock(mu_);
        for (auto& [id, p] : polls_) polls.push_back(p);
    }
    // The classes of the waiting proxies, translated in parallel (one helper thread per spare
    // core): translation is what a push spends its time on. Each class once, and its proxies
    // answered with that result: while registrations keep coming (a start-up storm) a result is
    // not cached, and asking the cache again per proxy translated the class again per proxy.
    const auto started = std::chrono::steady_clock::now();
    const SnapshotCache::Stats before = cache_.stats();
    std::map<ProxyClass, Computed> results;
    std::atomic<int64_t> translate_us{0}, gzip_us{0};  // summed over the threads
    for (auto& p : polls) results.emplace(ProxyClass{p->ns, p->service_account, p->labels}, Computed{});
    {
        std::vector<std::pair<const ProxyClass, Computed>*> todo;
        for (auto& kv : results) todo.push_back(&kv);
        const std::size_t helpers =
            todo.empty() ? 0 : std::min<std::size_t>(todo.size(), std::max(1u, std::thread::hardware_concurrency())) - 1;
        std::atomic<std::size_t> next{0};
        auto work = [&] {
            for (std::size_t i; (i = next.fetch_add(1)) < todo.size();) {
                const ProxyClass& c = todo[i]->first;
                const auto t0 = std::chrono::steady_clock::now();
                todo[i]->second = compute(c.ns, c.service_account, c.labels);
                const auto t1 = std::chrono::steady_clock::now();
                translate_us += std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
                // Compressed here too, in parallel, when some proxy of the class will be
                // answered with it (message_for keeps it for them).
                bool answers = false;
                for (const auto& p : polls) {
                    if (p->gzip && p->have_version != todo[i]->second.version && p->ns == c.ns &&
                        p->service_account == c.service_account && p->labels == c.labels) {
                        answers = true;
                        break;
                    }
                }
                if (answers) {
                    message_for(todo[i]->second, true);
                    gzip_us += std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - t1).count();
                }
            }
        };
        std::vector<std::thread> threads;
        for (std::size_t i = 0; i < helpers; ++i) threads.emplace_back(work);
        work();
        for (auto& t : threads) t.join();
    }
    const auto computed = std::chrono::steady_clock::now();
    std::size_t answered = 0;
    for (auto& p : polls) {
        const Computed& c = results.at(ProxyClass{p->ns, p->service_account, p->labels});
        if (c.version == p->have_version) continue;
        {
            std::lock_guard lock(mu_);
            bool mine = false;
            for (auto it = polls_.begin(); it != polls_.end(); ++it) {
                if (it->second == p) {
                    polls_.erase(it);
                    mine = true;
                    break;
                }
            }
            if (!mine) continue;  // another wake answered it
        }
        if (answer(p, c)) answered += 1;
    }
    const SnapshotCache::Stats after = cache_.stats();
    cache_.drop_shared_clusters();
    auto ms = [](auto d) { return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()); };
    log_("push: " + std::to_string(results.size()) + " classes of " + std::to_string(polls.size()) +
         " waiting proxies (" + std::to_string(after.computes - before.computes) + " translated, " +
         std::to_string(after.clusters_made - before.clusters_made) + " clusters made, " +
         std::to_string(after.clusters_shared - before.clusters_shared) + " shared) in " +
         ms(computed - started) + " ms (translating " + std::to_string(translate_us / 1000) +
         " ms, compressing " + std::to_string(gzip_us / 1000) + " ms, over the threads); " +
         std::to_string(answered) + " answered in " +
         ms(std::chrono::steady_clock::now() - computed) + " ms");
}

void Distribution::subscribe(const HttpRequest& req, const common::PeerInfo& peer,
                             std::shared_ptr<common::Responder> responder) {
    const unsigned v = req.version();
    auto refuse = [&](unsigned status, const std::string& why) {
        log_("subscription from " + peer.remote + " refused: " + why);
        responder->respond(error_json(status, why, v));
    };
    if (req.method() != http::verb::post) return refuse(405, "use POST");
    // The SVID is the credential: namespace and service account come from it, nothing else.
    if (peer.peer_chain.empty()) return refuse(401, "a proxy subscribes with its SVID (mTLS)");
    auto id = certs::verify_svid(peer.peer_chain, auth_.bundle,
                                 certs::VerifyOptions{{auth_.trust_domain}}, auth_.clock());
    if (!id) return refuse(401, "client certificate refused: " + id.error().message());
    if (!id->ns() || !id->service_account()) {
        return refuse(403, "identity " + id->str() + " is not a workload's");
    }
    json::error_code jec;
    json::value doc = json::parse(req.body(), jec);
    if (jec || !doc.is_object()) return refuse(400, "the body must be a JSON object");
    const json::object& o = doc.get_object();
    const json::value* node_v = o.if_contains("node");
    if (!node_v || !node_v->is_object()) return refuse(400, "node: expected an object");
    const json::object& node = node_v->get_object();
    registry::Registration reg;
    reg.pod_name = string_field(node, "podName");
    reg.workload_name = string_field(node, "workloadName");
    reg.pod_ip = string_field(node, "podIp");
    reg.proxy_version = string_field(node, "proxyVersion");
    if (const json::value* d = node.if_contains("draining")) {
        if (!d->is_bool()) return refuse(400, "node.draining: expected true or false");
        reg.draining = d->get_bool();
    }
    std::string caller_ip = address_of(peer.remote);
    if (reg.pod_ip.empty()) reg.pod_ip = caller_ip;
    boost::system::error_code aec;
    asio::ip::make_address(reg.pod_ip, aec);
    if (aec) return refuse(400, "node.podIp \"" + reg.pod_ip + "\" is not an IP address");
    // A proxy registers its own pod only: the address must be the one it calls from (a proxy on
    // the control plane's own host may name another, as in a single-machine setup).
    if (reg.pod_ip != caller_ip && !is_loopback(caller_ip)) {
        return refuse(403, "node.podIp " + reg.pod_ip + " is not the caller's address " + caller_ip);
    }
    if (reg.pod_name.empty()) {
        std::string ip = reg.pod_ip;
        for (char& c : ip) {
            if (c == '.' || c == ':') c = '-';
        }
        reg.pod_name = (reg.workload_name.empty() ? *id->service_account() : reg.workload_name) + "-" + ip;
    }
    if (!valid_name(reg.pod_name)) return refuse(400, "node.podName \"" + reg.pod_name + "\" is not a name");
    if (const json::value* lv = node.if_contains("labels")) {
        if (!lv->is_object()) return refuse(400, "node.labels: expected an object of strings");
        for (const auto& kv : lv->get_object()) {
            if (!kv.value().is_string()) return refuse(400, "node.labels: expected an object of strings");
            reg.labels[std::string(kv.key())] = std::string(kv.value().get_string());
        }
    }
    if (const json::value* pv = node.if_contains("ports"); pv && pv->is_array()) {
        for (const auto& p : pv->get_array()) {
            if (p.is_int64() && p.get_int64() > 0 && p.get_int64() < 65536) reg.ports.push_back(static_cast<uint32_t>(p.get_int64()));
        }
    }
    auto poll = std::make_shared<Poll>();
    poll->ns = *id->ns();
    poll->service_account = *id->service_account();
    poll->labels = reg.labels;
    poll->id = registry::ProxyRegistry::id_of(poll->ns, reg);
    poll->have_version = string_field(o, "version");
    poll->responder = responder;
    poll->http_version = v;
    poll->gzip = common::accepts_gzip(req[http::field::accept_encoding]);
    std::chrono::seconds wait = options_.default_wait;
    if (const json::value* w = o.if_contains("waitSeconds"); w && w->is_int64()) {
        wait = std::chrono::seconds(std::clamp<int64_t>(w->get_int64(), 0, options_.max_wait.count()));
    }
    poll->deadline = std::chrono::steady_clock::now() + wait;

    const certs::Certificate& leaf = peer.peer_chain.front();
    registry::Certificate cert{id->str(), leaf.serial_hex(), unix_seconds(leaf.not_before()),
                               unix_seconds(leaf.not_after())};
    bool changed = registry_.poll_started(poll->ns, poll->service_account, reg, cert);
    if (changed) {
        log_("proxy " + poll->id + (reg.draining ? " draining: its endpoints are withdrawn: " : " registered: ") +
             reg.pod_ip + " " + id->str());
    }
    // ACK or NACK for what it was sent before.
    if (const json::value* a = o.if_contains("applied"); a && a->is_object()) {
        std::string version = string_field(a->get_object(), "version");
        std::string error = string_field(a->get_object(), "error");
        // Proxies repeat their report on every poll: a refusal is news only once.
        if (registry_.report(poll->id, version, error)) {
            log_("proxy " + poll->id + " refused snapshot " + version + ": " + error);
            rejects_ += 1;
        }
    }

    // On this io thread: queued behind pushes on the translator, first answers waited past
    // their clients' deadlines at 10,000 services (docs/benchmark.md, h15d), and translating
    // here holds back new connections, which is the throttle a start-up storm needs.
    answer_or_wait(poll);
    // Others' endpoints follow the registry.
    if (changed) request_push();
}

void Distribution::answer_or_wait(const std::shared_ptr<Poll>& poll) {
    // Endpoints may lag here (the registrations that changed them have a push coming): a first
    // answer translates only a class never seen or whose config changed.
    Computed c = compute(poll->ns, poll->service_account, poll->labels,
                         SnapshotCache::Staleness::RegistrationsMayLag);
    if (c.version != poll->have_version) {
        // A proxy that left while its poll waited here ends it (nothing else will).
        if (!answer(poll, c)) registry_.poll_ended(poll->id);
        return;
    }
    // It holds the current snapshot already (this control plane may have restarted since
    // sending it): that counts as sent, and its report says whether it is in use.
    registry_.sent(poll->id, c.version, c.config_version, c.json);
    uint64_t key = 0;
    {
        std::lock_guard lock(mu_);
        if (stopped_) {
            poll->responder->respond(error_json(503, "the control plane is stopping", poll->http_version));
            return;
        }
        key = next_poll_++;
        polls_[key] = poll;
    }
    // It waits holding a snapshot that registrations made out of date: a push computes it anew
    // (the one those registrations asked for may have gone out while this proxy was between
    // polls, and answered only the proxies waiting then).
    if (c.lagging) request_push();
    // (At once when the proxy has left already.)
    poll->responder->on_gone([this, key, pid = poll->id] {
        {
            std::lock_guard lock(mu_);
            polls_.erase(key);
        }
        log_("proxy " + pid + " closed its poll");
        registry_.poll_ended(pid);
    });
}

std::string Distribution::prometheus() const {
    std::map<std::string, uint64_t> by_status = {{"SYNCED", 0}, {"STALE", 0}, {"NACK", 0}, {"NOT SENT", 0}};
    uint64_t connected = 0;
    for (const auto& r : registry_.list()) {
        by_status[registry::sync_status_name(r.status())] += 1;
        if (r.polls > 0) connected += 1;
    }
    std::string out;
    auto head = [&](const char* name, const char* type, const char* help) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    head("pilot_xds", "gauge", "Proxies with a subscription open.");
    out += "pilot_xds " + std::to_string(connected) + "\n";
    head("pilot_xds_pushes", "counter", "Snapshots sent to proxies.");
    out += "pilot_xds_pushes{type=\"snapshot\"} " + std::to_string(pushes_.load()) + "\n";
    head("pilot_total_xds_rejects", "counter", "Snapshots proxies refused (NACK).");
    out += "pilot_total_xds_rejects{type=\"snapshot\"} " + std::to_string(rejects_.load()) + "\n";
    head("remora_control_proxies", "gauge", "Registered proxies by configuration status.");
    for (const auto& [status, n] : by_status) {
        out += "remora_control_proxies{status=\"" + status + "\"} " + std::to_string(n) + "\n";
    }
    head("remora_control_registrations_expired_total", "counter",
         "Registrations removed because their proxy went away.");
    out += "remora_control_registrations_expired_total " + std::to_string(expired_.load()) + "\n";
    const SnapshotCache::Stats cs = cache_.stats();
    head("remora_control_sweep_stalls_total", "counter",
         "Registry sweeps that ran late because every thread was busy (that time did not count "
         "against registrations' grace).");
    out += "remora_control_sweep_stalls_total " + std::to_string(stalls_.load()) + "\n";
    head("remora_control_snapshot_classes", "gauge",
         "Proxy classes (namespace, service account, labels) with a cached snapshot.");
    out += "remora_control_snapshot_classes " + std::to_string(cs.classes) + "\n";
    head("remora_control_snapshot_computes_total", "counter", "Snapshots translated (cache misses).");
    out += "remora_control_snapshot_computes_total " + std::to_string(cs.computes) + "\n";
    head("remora_control_snapshot_cache_hits_total", "counter", "Snapshots answered from the cache.");
    out += "remora_control_snapshot_cache_hits_total " + std::to_string(cs.hits) + "\n";
    head("remora_control_snapshot_dropped_total", "counter",
         "Cached snapshots dropped because a change touched their class.");
    out += "remora_control_snapshot_dropped_total " + std::to_string(cs.dropped) + "\n";
    head("remora_control_snapshot_cache_overflows_total", "counter",
         "Times the cache held its most classes and started over.");
    out += "remora_control_snapshot_cache_overflows_total " + std::to_string(cs.overflows) + "\n";
    head("remora_control_push_batches_total", "counter",
         "Debounced pushes to waiting proxies (each covers one or more changes).");
    out += "remora_control_push_batches_total " + std::to_string(push_batches_.load()) + "\n";
    head("remora_control_push_changes_total", "counter", "Changes covered by debounced pushes.");
    out += "remora_control_push_changes_total " + std::to_string(push_changes_.load()) + "\n";
    head("remora_control_config_version", "gauge", "The config store's version.");
    out += "remora_control_config_version " + std::to_string(store_.version()) + "\n";
    return out;
}

HttpResponse Distribution::handle(const HttpRequest& req, const common::PeerInfo& peer) {
    const unsigned v = req.version();
    if (auto refused = authorize(auth_, req, peer, Access::Admin)) return *refused;
    if (req.method() != http::verb::get) return error_json(405, "use GET", v);
    auto [path, query] = split_target(req.target());
    // Against the snapshot the proxy should run now, not only the last one sent: during the
    // debounce window a change is not sent yet, and a proxy that ACKed the previous version is
    // STALE until it ACKs the new one (scripts wait for SYNCED, then send traffic).
    auto status_of = [this](const registry::ProxyRecord& r) -> std::string {
        const registry::SyncStatus s = r.status();
        if (s != registry::SyncStatus::Synced) return registry::sync_status_name(s);
        return compute(r.ns, r.service_account, r.reg.labels).version == r.acked_version
                   ? registry::sync_status_name(s)
                   : registry::sync_status_name(registry::SyncStatus::Stale);
    };
    auto record_json = [&status_of, this](const registry::ProxyRecord& r) {
        json::object o;
        o["name"] = r.id;
        if (!options_.replica_id.empty()) o["replica"] = options_.replica_id;
        o["podName"] = r.reg.pod_name;
        o["namespace"] = r.ns;
        o["serviceAccount"] = r.service_account;
        o["workloadName"] = r.reg.workload_name;
        o["podIp"] = r.reg.pod_ip;
        json::object labels;
        for (const auto& [k, val] : r.reg.labels) labels[k] = val;
        o["labels"] = std::move(labels);
        o["proxyVersion"] = r.reg.proxy_version;
        o["draining"] = r.reg.draining;
        o["status"] = status_of(r);
        o["sentVersion"] = r.sent_version;
        o["configVersion"] = r.sent_config_version;
        o["ackedVersion"] = r.acked_version;
        o["nackedVersion"] = r.nacked_version;
        o["nackError"] = r.nack_error;
        o["connected"] = r.polls > 0;
        o["connectedSince"] = r.connected_since;
        o["certificate"] = json::object{{"spiffeId", r.cert.spiffe_id},
                                        {"serial", r.cert.serial},
                                        {"notBefore", r.cert.not_before},
                                        {"notAfter", r.cert.not_after}};
        return o;
    };
    if (path == "/v1/snapshot") {
        // The snapshot a workload would get, running or not (remoractl explain --from-labels):
        // ?namespace=NS&serviceAccount=SA&labels=k=v,k=v.
        model::Labels labels;
        try {
            labels = common::parse_label_list(query.count("labels") ? query["labels"] : "");
        } catch (const std::invalid_argument& e) {
            return error_json(400, std::string("labels: ") + e.what(), v);
        }
        const std::string ns = query.count("namespace") && !query["namespace"].empty() ? query["namespace"] : "default";
        const std::string sa = query.count("serviceAccount") && !query["serviceAccount"].empty() ? query["serviceAccount"] : "default";
        if (!valid_name(ns) || !valid_name(sa)) return error_json(400, "namespace and serviceAccount must be names", v);
        Computed c = compute(ns, sa, labels);
        return json_response(200, "{\"version\":\"" + c.version + "\",\"configVersion\":" +
                                      std::to_string(c.config_version) + ",\"snapshot\":" + *c.json + "}\n", v);
    }
    if (path == "/v1/proxies") {
        json::array a;
        for (const auto& r : registry_.list()) a.push_back(record_json(r));
        json::object o{{"proxies", std::move(a)}};
        if (!options_.replica_id.empty()) {
            o["replica"] = options_.replica_id;
            json::array peers;
            if (options_.peers) {
                for (const auto& [id, address] : options_.peers()) {
                    peers.push_back(json::object{{"replica", id}, {"address", address}});
                }
            }
            o["otherReplicas"] = std::move(peers);
        }
        return json_response(200, json::serialize(o) + "\n", v);
    }
    constexpr std::string_view kPrefix = "/v1/proxies/";
    std::string rest = path.substr(kPrefix.size());
    std::string name = rest.substr(0, rest.find('/'));
    std::string what = rest.size() > name.size() ? rest.substr(name.size() + 1) : "";
    auto record = registry_.find(name);
    if (!record) return error_json(404, "no proxy named \"" + name + "\" (see remoractl proxy-status)", v);
    json::object o = record_json(*record);
    if (what == "snapshot") {
        json::error_code jec;
        json::value snap = !record->sent_snapshot ? json::value(nullptr) : json::parse(*record->sent_snapshot, jec);
        o["snapshot"] = std::move(snap);
        json::array roots;
        for (const auto& root : auth_.bundle.roots()) {
            roots.push_back(json::object{{"subject", root.subject()},
                                         {"serial", root.serial_hex()},
                                         {"notBefore", unix_seconds(root.not_before())},
                                         {"notAfter", unix_seconds(root.not_after())}});
        }
        o["roots"] = std::move(roots);
    } else if (!what.empty()) {
        return error_json(404, "unknown proxy resource \"" + what + "\": try /snapshot", v);
    }
    return json_response(200, json::serialize(o) + "\n", v);
}

}  // namespace remora::control::server
