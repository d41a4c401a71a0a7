// The etcd client's transport: one connection per unary call (calls are a few per second: config
// changes, lease keepalives, registrations), on a private io_context so every step has a
// deadline; the watch stream reads the gateway's chunked answer line by line.
#include "control/etcd/etcd_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

namespace remora::control::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;

std::vector<Endpoint> parse_endpoints(const std::string& text, bool tls) {
    std::vector<Endpoint> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t comma = text.find(',', pos);
        std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? text.size() + 1 : comma + 1;
        if (item.empty()) continue;
        Endpoint ep;
        ep.tls = tls;
        std::string rest = item;
        if (rest.rfind("https://", 0) == 0) {
            ep.tls = true;
            rest = rest.substr(8);
        } else if (rest.rfind("http://", 0) == 0) {
            ep.tls = false;
            rest = rest.substr(7);
        }
        if (!rest.empty() && rest.back() == '/') rest.pop_back();
        std::size_t colon = rest.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size() ||
            rest.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
            throw std::invalid_argument("etcd endpoint \"" + item + "\": expected HOST:PORT");
        }
        ep.host = rest.substr(0, colon);
        if (ep.host.size() > 2 && ep.host.front() == '[' && ep.host.back() == ']') {
            ep.host = ep.host.substr(1, ep.host.size() - 2);
        }
        ep.port = rest.substr(colon + 1);
        out.push_back(std::move(ep));
    }
    if (out.empty()) throw std::invalid_argument("no etcd endpoint in \"" + text + "\"");
    return out;
}

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct Exchange {
    const Endpoint& ep;
    http::request<http::string_body> req;
    std::chrono::milliseconds timeout;
    const std::function<void(std::string_view)>* on_line;  // streaming: no deadline after headers
    int status = 0;
    std::string body;
    // Streaming only: after `check_interval` without a byte, `check` runs (blocking, it throws
    // when the member cannot serve); a throw ends the stream with its reason.
    std::chrono::milliseconds check_interval{0};
    std::function<void()> check;
    // Set (on the io thread) by a cancel: checked before each step, since cancelling the socket
    // reaches only the operation in progress, and a cancel that lands between two steps (the
    // watch being stopped just as it connects) was lost: the next step streamed forever.
    bool cancelled = false;
};

void check_cancelled(const Exchange& x) {
    if (x.cancelled) throw EtcdUnavailable(x.ep.str() + ": cancelled");
}

// The silence watch of one stream: `last` moves with every chunk read.
struct SilenceWatch {
    explicit SilenceWatch(const asio::any_io_executor& exec) : timer(exec) {}
    asio::steady_timer timer;
    std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
    bool done = false;
    std::string why;  // set when the check failed and the stream was cut
};

asio::awaitable<void> watch_silence(std::shared_ptr<SilenceWatch> w, beast::tcp_stream& tcp,
                                    const Exchange& x) {
    while (!w->done) {
        w->timer.expires_at(w->last + x.check_interval);
        auto [ec] = co_await w->timer.async_wait(use_nothrow);
        (void)ec;  // cancelled when the stream ends: `done` says so
        if (w->done) co_return;
        if (std::chrono::steady_clock::now() - w->last < x.check_interval) continue;
        try {
            x.check();
            w->last = std::chrono::steady_clock::now();
        } catch (const std::exception& e) {
            w->why = std::string("nothing for ") + std::to_string(x.check_interval.count()) +
                     " ms and the member cannot serve a read (" + e.what() + ")";
            tcp.cancel();
            co_return;
        }
    }
}

[[noreturn]] void fail(const Exchange& x, const std::string& what, const beast::error_code& ec) {
    std::string why = ec == beast::error::timeout ? std::string("timed out") : ec.message();
    throw EtcdUnavailable(x.ep.str() + ": " + what + ": " + why);
}

template <class Stream>
asio::awaitable<void> talk(Stream& stream, beast::tcp_stream& tcp, Exchange& x) {
    tcp.expires_after(x.timeout);
    auto [wec, wn] = co_await http::async_write(stream, x.req, use_nothrow);
    check_cancelled(x);
    if (wec) fail(x, "sending the request failed", wec);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    tcp.expires_after(x.timeout);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
    check_cancelled(x);
    if (hec) fail(x, "reading the answer failed", hec);
    x.status = static_cast<int>(parser.get().result_int());
    std::string pending;
    std::shared_ptr<SilenceWatch> watch;
    if (x.on_line && x.status == 200) {
        if (x.check && x.check_interval.count() > 0) {
            watch = std::make_shared<SilenceWatch>(co_await asio::this_coro::executor);
            asio::co_spawn(watch->timer.get_executor(), watch_silence(watch, tcp, x), asio::detached);
        }
        // A stream of JSON messages, each ended by a newline, across chunks of any size.
        auto on_chunk = [&](std::uint64_t, beast::string_view data, beast::error_code&) {
            if (watch) watch->last = std::chrono::steady_clock::now();
            pending.append(data.data(), data.size());
            std::size_t start = 0;
            for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
                std::string_view line(pending.data() + start, nl - start);
                if (line.find_first_not_of(" \r\t") != std::string_view::npos) (*x.on_line)(line);
            }
            pending.erase(0, start);
            return data.size();
        };
        parser.on_chunk_body(on_chunk);
        tcp.expires_never();
    } else {
        tcp.expires_after(x.timeout);
    }
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    if (watch) {
        watch->done = true;
        watch->timer.cancel();
        if (!watch->why.empty()) throw EtcdUnavailable(x.ep.str() + ": the watch stream was given up: " + watch->why);
    }
    if (rec) fail(x, x.on_line ? "the watch stream ended" : "reading the answer failed", rec);
    x.body = parser.get().body();
    if (x.on_line && x.status == 200 && !pending.empty()) (*x.on_line)(pending);
}

asio::awaitable<void> run_exchange(beast::ssl_stream<beast::tcp_stream>& stream, Exchange& x) {
    tcp::resolver resolver(co_await asio::this_coro::executor);
    auto [rec, endpoints] = co_await resolver.async_resolve(x.ep.host, x.ep.port, use_nothrow);
    check_cancelled(x);
    if (rec) throw EtcdUnavailable(x.ep.str() + ": cannot resolve " + x.ep.host + ": " + rec.message());
    beast::tcp_stream& tcp = beast::get_lowest_layer(stream);
    tcp.expires_after(x.timeout);
    auto [cec, connected] = co_await tcp.async_connect(endpoints, use_nothrow);
    check_cancelled(x);
    if (cec) fail(x, "cannot connect", cec);
    if (x.ep.tls) {
        tcp.expires_after(x.timeout);
        auto [sec] = co_await stream.async_handshake(ssl::stream_base::client, use_nothrow);
        check_cancelled(x);
        if (sec) fail(x, "TLS handshake failed", sec);
        co_await talk(stream, tcp, x);
    } else {
        co_await talk(tcp, tcp, x);
    }
}

// etcd says it cannot serve now (not "your request is wrong").
bool unavailable_answer(const EtcdAnswerError& e) {
    std::string what = e.what();
    return e.code() == 14 || e.code() == 4 || what.find("no leader") != std::string::npos ||
           what.find("timed out") != std::string::npos ||
           what.find("not capable") != std::string::npos ||
           what.find("leader changed") != std::string::npos;
}

}  // namespace

EtcdClient::EtcdClient(EtcdOptions options) : options_(std::move(options)) {
    if (options_.endpoints.empty()) throw std::invalid_argument("no etcd endpoints");
}

std::string EtcdClient::post(const Endpoint& ep, const std::string& path, const std::string& body,
                             const std::function<void(std::string_view)>* on_line,
                             const std::function<void(std::function<void()>)>* set_cancel,
                             std::function<void()> check) {
    asio::io_context io;
    ssl::context ctx(ssl::context::tls_client);
    if (ep.tls) {
        SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
        beast::error_code ec;
        if (!options_.ca_file.empty()) {
            ctx.load_verify_file(options_.ca_file, ec);
            if (ec) throw std::runtime_error("--etcd-ca " + options_.ca_file + ": " + ec.message());
        } else {
            ctx.set_default_verify_paths();
        }
        ctx.set_verify_mode(ssl::verify_peer);
        ctx.set_verify_callback(ssl::host_name_verification(ep.host));
        if (!options_.cert_file.empty()) {
            ctx.use_certificate_chain_file(options_.cert_file, ec);
            if (ec) throw std::runtime_error("--etcd-cert " + options_.cert_file + ": " + ec.message());
            ctx.use_private_key_file(options_.key_file, ssl::context::pem, ec);
            if (ec) throw std::runtime_error("--etcd-key " + options_.key_file + ": " + ec.message());
        }
    }
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    if (ep.tls) SSL_set_tlsext_host_name(stream.native_handle(), ep.host.c_str());
    Exchange x{ep, {http::verb::post, path, 11}, options_.timeout, on_line, 0, {},
               options_.watch_check_interval, std::move(check)};
    x.req.set(http::field::host, ep.host + ":" + ep.port);
    x.req.set(http::field::user_agent, "remora-control");
    x.req.set(http::field::content_type, "application/json");
    x.req.keep_alive(false);
    x.req.body() = body;
    x.req.prepare_payload();
    if (set_cancel) {
        (*set_cancel)([&io, &stream, &x] {
            asio::post(io, [&stream, &x] {
                x.cancelled = true;
                beast::get_lowest_layer(stream).cancel();
            });
        });
    }
    std::exception_ptr error;
    asio::co_spawn(io, run_exchange(stream, x), [&error](std::exception_ptr e) { error = e; });
    io.run();
    if (set_cancel) (*set_cancel)(nullptr);
    if (error) std::rethrow_exception(error);
    if (x.status != 200) {
        json::error_code jec;
        json::value v = json::parse(x.body, jec);
        if (!jec) check_error(v);  // throws with etcd's own words
        throw EtcdAnswerError(ep.str() + path + ": HTTP " + std::to_string(x.status) + ": " + x.body);
    }
    return std::move(x.body);
}

json::value EtcdClient::call(const std::string& path, const json::object& body) {
    const std::string text = json::serialize(body);
    const std::size_t n = options_.endpoints.size();
    const std::size_t first = preferred_.load();
    std::string failures;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t at = (first + i) % n;
        const Endpoint& ep = options_.endpoints[at];
        try {
            std::string answer = post(ep, path, text, nullptr, nullptr);
            json::error_code jec;
            json::value v = json::parse(answer, jec);
            if (jec) throw EtcdAnswerError(ep.str() + path + ": the answer is not JSON");
            check_error(v);
            preferred_.store(at);
            return v;
        } catch (const EtcdUnavailable& e) {
            failures += std::string(failures.empty() ? "" : "; ") + e.what();
        } catch (const EtcdAnswerError& e) {
            if (!unavailable_answer(e)) throw;
            failures += std::string(failures.empty() ? "" : "; ") + ep.str() + ": " + e.what();
        }
    }
    throw EtcdUnavailable("etcd cannot serve " + path + " (no quorum or no endpoint reachable): " +
                          failures);
}

RangeAnswer EtcdClient::range(const std::string& key, const std::string& range_end) {
    return parse_range(call("/v3/kv/range", range_request(key, range_end)));
}

int64_t EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
    json::value v = call("/v3/kv/put", put_request(key, value, lease));
    return header_revision(v.as_object());
}

int64_t EtcdClient::remove(const std::string& key, const std::string& range_end) {
    json::value v = call("/v3/kv/deleterange", delete_request(key, range_end));
    return header_revision(v.as_object());
}

TxnAnswer EtcdClient::txn(const json::object& request) {
    return parse_txn(call("/v3/kv/txn", request));
}

int64_t EtcdClient::lease_grant(int64_t ttl_seconds) {
    LeaseAnswer a = parse_lease(call("/v3/lease/grant", lease_grant_request(ttl_seconds)));
    if (a.id == 0) throw EtcdAnswerError("etcd granted no lease");
    return a.id;
}

int64_t EtcdClient::lease_keepalive(int64_t id) {
    return parse_lease(call("/v3/lease/keepalive", lease_id_request(id))).ttl;
}

void EtcdClient::lease_revoke(int64_t id) {
    call("/v3/lease/revoke", lease_id_request(id));
}

void EtcdClient::watch_once(const std::string& key, const std::string& range_end,
                            int64_t start_revision,
                            const std::function<void(const WatchMessage&)>& on_message,
                            const std::function<bool()>& stopped,
                            const std::function<void(std::function<void()>)>& set_cancel) {
    const std::string body = json::serialize(watch_request(key, range_end, start_revision));
    const std::size_t n = options_.endpoints.size();
    const std::size_t at = preferred_.load() % n;
    const Endpoint& ep = options_.endpoints[at];
    std::function<void(std::string_view)> on_line = [&](std::string_view line) {
        on_message(parse_watch_message(line));
    };
    // The silence check: a linearizable count of the range needs the member's leader and a
    // quorum, which a member that stopped or was cut off from its peers cannot give.
    json::object probe = range_request(key, range_end);
    probe["count_only"] = true;
    const std::string probe_body = json::serialize(probe);
    auto check = [this, &ep, &probe_body] {
        json::error_code jec;
        json::value v = json::parse(post(ep, "/v3/kv/range", probe_body, nullptr, nullptr), jec);
        if (jec) throw EtcdAnswerError("the answer is not JSON");
        check_error(v);
    };
    try {
        post(ep, "/v3/watch", body, &on_line, &set_cancel, check);
    } catch (...) {
        // Next time, another member.
        std::size_t expected = at;
        if (!stopped()) preferred_.compare_exchange_strong(expected, (at + 1) % n);
        throw;
    }
    if (!stopped()) {
        std::size_t expected = at;
        preferred_.compare_exchange_strong(expected, (at + 1) % n);
        throw EtcdUnavailable(ep.str() + ": the watch stream ended");
    }
}

Watcher::Watcher(EtcdClient& client, std::string key, std::string range_end,
                 int64_t after_revision, EventsFn on_events, ResyncFn on_resync, LogFn log)
    : client_(client),
      key_(std::move(key)),
      range_end_(std::move(range_end)),
      next_revision_(after_revision + 1),
      on_events_(std::move(on_events)),
      on_resync_(std::move(on_resync)),
      log_(std::move(log)) {}

Watcher::~Watcher() {
    stop();
}

void Watcher::start() {
    thread_ = std::thread([this] { run(); });
}

void Watcher::stop() {
    {
        // cancel_ posts to the io_context that lives on watch_once's stack: it is called under
        // mu_ because the watcher clears it (set_cancel(nullptr), also under mu_) before that
        // io_context goes away; a copy called after unlocking could post to a destroyed one.
        std::lock_guard lock(mu_);
        stopping_ = true;
        if (cancel_) cancel_();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Watcher::run() {
    auto stopped = [this] {
        std::lock_guard lock(mu_);
        return stopping_;
    };
    auto set_cancel = [this](std::function<void()> fn) {
        std::function<void()> now;
        {
            std::lock_guard lock(mu_);
            cancel_ = fn;
            if (stopping_ && fn) now = fn;
        }
        if (now) now();
    };
    std::chrono::milliseconds backoff{100};
    std::string last_error;
    while (!stopped()) {
        bool resync = false;
        bool got_message = false;
        try {
            client_.watch_once(
                key_, range_end_, next_revision_,
                [&](const WatchMessage& m) {
                    got_message = true;
                    if (m.compact_revision > 0) {
                        resync = true;
                        throw EtcdUnavailable("watch from revision " + std::to_string(next_revision_) +
                                              ": compacted (now " + std::to_string(m.compact_revision) + ")");
                    }
                    if (m.canceled) throw EtcdUnavailable("watch canceled: " + m.cancel_reason);
                    if (!m.events.empty()) {
                        int64_t rev = m.revision;
                        for (const WatchEvent& e : m.events) rev = std::max(rev, e.kv.mod_revision);
                        on_events_(m.events, rev);
                        next_revision_ = rev + 1;
                    }
                    if (!last_error.empty()) {
                        log_("etcd watch on " + key_ + " resumed from revision " + std::to_string(next_revision_));
                        last_error.clear();
                    }
                },
                stopped, set_cancel);
        } catch (const std::exception& e) {
            if (stopped()) return;
            if (last_error != e.what()) log_(std::string("etcd watch on ") + key_ + ": " + e.what() + "; reconnecting");
            last_error = e.what();
        }
        if (resync) {
            try {
                next_revision_ = on_resync_() + 1;
            } catch (const std::exception& e) {
                log_(std::string("etcd watch on ") + key_ + ": reading the range again failed: " + e.what());
            }
        }
        if (got_message) backoff = std::chrono::milliseconds(100);
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, backoff, [this] { return stopping_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
}

}  // namespace remora::control::etcd
