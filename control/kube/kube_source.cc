// The --kube source's I/O: per kind, one coroutine that connects (TLS with the cluster's CA and
// a bearer token or client certificate), lists page by page when it must, then watches from the
// last resourceVersion, reading the chunked stream line by line; a debounce then renders
// everything into the store.
#include "control/kube/kube_source.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <random>
#include <set>

#include "control/analyze/analyzer.h"
#include "control/model/model.h"

namespace remora::control::kube {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// A list answer bigger than this is refused (a cluster's Pods at ~4 KiB each: 64k pods a page
// at most, and pages are 500 objects).
constexpr std::size_t kMaxListBody = 256 * 1024 * 1024;

bool is_ip(const std::string& host) {
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

std::string status_message(const std::string& body) {
    // The API's errors are a metav1.Status with a message; say it, clipped.
    std::string m = body.substr(0, 300);
    for (char& c : m) {
        if (c == '\n' || c == '\r') c = ' ';
    }
    return m;
}

}  // namespace

struct KubeSource::Watch {
    KubeSource& src;
    WatchedKind kind;
    Reflector reflector;
    std::size_t path_index = 0;
    std::chrono::milliseconds backoff{0};
    bool listed_once = false;
    bool not_served_logged = false;
    std::minstd_rand random{std::random_device{}()};

    Watch(KubeSource& s, WatchedKind k)
        : src(s), kind(std::move(k)), reflector(kind.kind, kind.api_versions.front()) {}

    enum class Outcome { WatchEnded, Relist, NotServed, Reconnect };

    void count(std::map<std::string, uint64_t> Metrics::*which, uint64_t n = 1) {
        std::lock_guard lock(src.metrics_mu_);
        (src.metrics_.*which)[kind.kind] += n;
    }

    std::chrono::milliseconds next_backoff() {
        auto b = backoff.count() == 0 ? src.options_.backoff_min : backoff * 2;
        backoff = std::min(b, src.options_.backoff_max);
        // Jitter: between half and all of it, so many watches do not come back in step.
        std::uniform_int_distribution<long> d(backoff.count() / 2, backoff.count());
        return std::chrono::milliseconds(d(random));
    }

    asio::awaitable<void> run() {
        auto ex = co_await asio::this_coro::executor;
        asio::steady_timer timer(ex);
        for (;;) {
            std::string error;
            Outcome outcome = Outcome::Reconnect;
            try {
                if (src.server_.tls) {
                    beast::ssl_stream<beast::tcp_stream> stream(ex, *src.tls_);
                    if (!is_ip(src.server_.host)) {
                        SSL_set_tlsext_host_name(stream.native_handle(), src.server_.host.c_str());
                    }
                    if (!src.server_.insecure_skip_verify) {
                        stream.set_verify_mode(ssl::verify_peer);
                        stream.set_verify_callback(ssl::host_name_verification(src.server_.host));
                    }
                    co_await connect(beast::get_lowest_layer(stream));
                    beast::get_lowest_layer(stream).expires_after(src.options_.connect_timeout);
                    co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
                    outcome = co_await session(stream);
                } else {
                    beast::tcp_stream stream(ex);
                    co_await connect(stream);
                    outcome = co_await session(stream);
                }
            } catch (const std::exception& e) {
                error = e.what();
            }
            std::chrono::milliseconds wait{0};
            if (!error.empty()) {
                count(&Metrics::reconnects);
                wait = next_backoff();
                src.log_("--kube " + kind.kind + ": " + error + "; again in " +
                         std::to_string(wait.count()) + " ms from resourceVersion " +
                         (reflector.needs_list() ? std::string("(relist)")
                                                 : reflector.resource_version()));
            } else if (outcome == Outcome::NotServed) {
                wait = std::chrono::seconds(60);  // a CRD installed later is picked up
            } else if (outcome == Outcome::Relist) {
                count(&Metrics::relists);
            }
            if (wait.count() > 0) {
                timer.expires_after(wait);
                co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
            }
        }
    }

    asio::awaitable<void> connect(beast::tcp_stream& stream) {
        tcp::resolver resolver(stream.get_executor());
        auto results = co_await resolver.async_resolve(src.server_.host, src.server_.port,
                                                       asio::use_awaitable);
        stream.expires_after(src.options_.connect_timeout);
        co_await stream.async_connect(results, asio::use_awaitable);
    }

    http::request<http::empty_body> request(const std::string& target) const {
        http::request<http::empty_body> req{http::verb::get, target, 11};
        req.set(http::field::host, src.server_.host);
        req.set(http::field::accept, "application/json");
        req.set(http::field::user_agent, "remora-control");
        if (std::string auth = src.server_.authorization(); !auth.empty()) {
            req.set(http::field::authorization, auth);
        }
        return req;
    }

    template <class Stream>
    asio::awaitable<Outcome> session(Stream& stream) {
        beast::flat_buffer buffer;
        auto& lowest = beast::get_lowest_layer(stream);
        if (reflector.needs_list()) {
            std::string cont;
            do {
                const std::string& path = kind.paths[path_index];
                lowest.expires_after(std::chrono::seconds(60));
                co_await http::async_write(
                    stream,
                    request(reflector.list_target(path, cont, src.options_.list_page_limit)),
                    asio::use_awaitable);
                http::response_parser<http::string_body> parser;
                parser.body_limit(kMaxListBody);
                co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
                auto& res = parser.get();
                if (res.result_int() == 404) {
                    if (path_index + 1 < kind.paths.size()) {
                        ++path_index;
                        reflector.set_api_version(kind.api_versions[path_index]);
                        cont.clear();
                        if (!res.keep_alive()) co_return Outcome::Reconnect;
                        continue;
                    }
                    path_index = 0;
                    reflector.set_api_version(kind.api_versions[0]);
                    if (!not_served_logged) {
                        src.log_("--kube " + kind.kind + ": not served by the API server (" +
                                 kind.paths.front() +
                                 ": 404; is the CRD installed?); none, "
                                 "looking again every 60 s");
                        not_served_logged = true;
                    }
                    bool had = !reflector.objects().empty();
                    reflector.on_not_served();
                    if (had || !listed_once) {
                        listed_once = true;
                        src.changed();
                    }
                    co_return Outcome::NotServed;
                }
                if (res.result_int() != 200) {
                    count(&Metrics::list_failures);
                    throw std::runtime_error("list " + path + ": HTTP " +
                                             std::to_string(res.result_int()) + ": " +
                                             status_message(res.body()));
                }
                cont = reflector.on_list_page(res.body());
                if (!res.keep_alive() && !cont.empty()) {
                    throw std::runtime_error("list " + path + ": connection closed between pages");
                }
                if (cont.empty() && !res.keep_alive()) {
                    after_list();
                    co_return Outcome::Reconnect;
                }
            } while (!cont.empty());
            after_list();
        }

        const std::string& path = kind.paths[path_index];
        lowest.expires_after(std::chrono::seconds(60));
        co_await http::async_write(
            stream, request(reflector.watch_target(path, src.options_.watch_timeout_seconds)),
            asio::use_awaitable);
        http::response_parser<http::string_body> parser;
        parser.body_limit(boost::none);  // a stream; bounded per line below
        co_await http::async_read_header(stream, buffer, parser, asio::use_awaitable);
        int status = parser.get().result_int();
        if (status == 410) {
            // "410 Gone": the version is older than the server keeps; list again.
            src.log_("--kube " + kind.kind + ": watch from resourceVersion " +
                     reflector.resource_version() +
                     ": 410 Gone; relisting (the cache stays "
                     "until the list replaces it)");
            reflector.on_gone();
            co_return Outcome::Relist;
        }
        if (status != 200) {
            parser.body_limit(64 * 1024);
            lowest.expires_after(std::chrono::seconds(10));
            boost::system::error_code ignored;
            co_await http::async_read(stream, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ignored));
            throw std::runtime_error("watch " + path + ": HTTP " + std::to_string(status) + ": " +
                                     status_message(parser.get().body()));
        }
        const auto idle = std::chrono::seconds(src.options_.watch_timeout_seconds + 30);
        while (!parser.is_done()) {
            lowest.expires_after(idle);
            co_await http::async_read_some(stream, buffer, parser, asio::use_awaitable);
            std::string& body = parser.get().body();
            for (const std::string& line : take_lines(body)) {
                WatchEvent event = parse_watch_event(line);  // throws: reconnect, same version
                {
                    std::lock_guard lock(src.metrics_mu_);
                    src.metrics_.events[{kind.kind, event_type_name(event.type)}] += 1;
                }
                switch (reflector.on_event(event)) {
                    case Reflector::Step::Changed:
                        backoff = std::chrono::milliseconds(0);
                        src.changed();
                        break;
                    case Reflector::Step::Unchanged:
                        backoff = std::chrono::milliseconds(0);
                        break;
                    case Reflector::Step::Relist:
                        src.log_("--kube " + kind.kind + ": watch ERROR 410 (" + event.message +
                                 "); relisting (the cache stays until the list replaces it)");
                        co_return Outcome::Relist;
                    case Reflector::Step::Failed:
                        throw std::runtime_error("watch ERROR " + std::to_string(event.code) +
                                                 ": " + event.message);
                }
            }
            if (body.size() > src.options_.max_line_bytes) {
                throw std::runtime_error("watch: a line longer than " +
                                         std::to_string(src.options_.max_line_bytes) + " bytes");
            }
        }
        co_return Outcome::WatchEnded;  // the server's timeoutSeconds: watch again at once
    }

    void after_list() {
        {
            std::lock_guard lock(src.metrics_mu_);
            src.metrics_.objects[kind.kind] = reflector.objects().size();
        }
        src.log_("--kube " + kind.kind + ": listed " + std::to_string(reflector.objects().size()) +
                 " at resourceVersion " + reflector.resource_version() + " (" +
                 kind.paths[path_index] + ")");
        if (reflector.last_list_changed() || !listed_once) {
            listed_once = true;
            src.changed();
        }
        not_served_logged = false;
    }
};

KubeSource::KubeSource(ApiServer server, store::ConfigStore& store, Logger log,
                       KubeSourceOptions options)
    : server_(std::move(server)),
      store_(store),
      log_(std::move(log)),
      options_(options),
      debounce_(io_) {
    for (WatchedKind& k : watched_kinds())
        watches_.push_back(std::make_unique<Watch>(*this, std::move(k)));
}

KubeSource::~KubeSource() {
    stop();
}

void KubeSource::start() {
    if (server_.tls) {
        tls_ = std::make_unique<ssl::context>(ssl::context::tls_client);
        tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
        if (!server_.ca_pem.empty()) {
            tls_->add_certificate_authority(asio::buffer(server_.ca_pem));
        } else {
            tls_->set_default_verify_paths();
        }
        if (!server_.client_cert_pem.empty()) {
            tls_->use_certificate_chain(asio::buffer(server_.client_cert_pem));
            tls_->use_private_key(asio::buffer(server_.client_key_pem), ssl::context::pem);
        }
    }
    log_("--kube: watching " + server_.described);
    for (auto& w : watches_) {
        asio::co_spawn(io_, w->run(), [this, kind = w->kind.kind](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log_("--kube " + kind + ": watch stopped: " + ex.what());
            }
        });
    }
    thread_ = std::thread([this] { io_.run(); });
}

void KubeSource::stop() {
    if (thread_.joinable()) {
        io_.stop();
        thread_.join();
    }
}

void KubeSource::changed() {
    for (const auto& w : watches_) {
        if (!w->reflector.synced()) return;  // the store gets a whole state, never a partial one
    }
    if (debounce_pending_) return;
    debounce_pending_ = true;
    debounce_.expires_after(options_.debounce);
    debounce_.async_wait([this](boost::system::error_code ec) {
        debounce_pending_ = false;
        if (!ec) publish();
    });
}

bool KubeSource::valid(const RenderedDoc& doc, std::string& why) {
    const std::string key = doc.kind + " " + doc.ns + "/" + doc.name;
    auto it = verdicts_.find(key);
    if (it != verdicts_.end() && it->second.yaml == doc.yaml) {
        why = it->second.why;
        return why.empty();
    }
    model::Config config;
    model::load_yaml(config, doc.yaml, doc.source);
    analyze::Options options;
    options.only = {analyze::Analyzer::SchemaValidation};
    std::string first;
    int errors = 0;
    for (const analyze::Message& m : analyze::analyze(config, options)) {
        if (m.level != analyze::Level::Error) continue;
        if (errors++ == 0) first = m.str();
    }
    why = errors == 0
              ? ""
              : first + (errors > 1 ? " (and " + std::to_string(errors - 1) + " more)" : "");
    verdicts_[key] = {doc.yaml, why};
    if (!why.empty()) {
        // As `kubectl get events` shows a Warning: type, reason, object, message.
        log_("kube event: type=Warning reason=InvalidResource object=" + doc.kind + " " + doc.ns +
             "/" + doc.name + " resourceVersion=" + doc.resource_version + " message=\"" + why +
             "\"; skipped, the rest goes on");
        std::lock_guard lock(metrics_mu_);
        metrics_.rejected[doc.kind] += 1;
    }
    return why.empty();
}

void KubeSource::publish() {
    std::map<std::string, const std::map<std::string, boost::json::object>*> objects;
    for (const auto& w : watches_) {
        objects[w->kind.kind] = &w->reflector.objects();
        std::lock_guard lock(metrics_mu_);
        metrics_.objects[w->kind.kind] = w->reflector.objects().size();
    }
    std::vector<RenderedDoc> docs = render(objects);
    std::vector<store::SourceFile> files;
    std::map<std::string, RenderedDoc> good;
    std::set<std::string> present;
    for (RenderedDoc& d : docs) {
        const std::string key = d.kind + " " + d.ns + "/" + d.name;
        present.insert(key);
        std::string why;
        if (valid(d, why)) {
            good[key] = d;
        } else if (auto last = last_good_.find(key); last != last_good_.end()) {
            good[key] = last->second;  // the last valid version stays in force
        }
    }
    for (auto it = verdicts_.begin(); it != verdicts_.end();) {
        it = present.count(it->first) ? std::next(it) : verdicts_.erase(it);
    }
    last_good_ = good;
    for (const auto& [key, d] : good)
        files.push_back({d.source, d.yaml});
    store::ChangeResult r;
    try {
        r = store_.set_owned(store::Origin::Kube, files);
    } catch (const std::exception& e) {
        r.status = 500;
        r.error = std::string("internal error: ") + e.what();
    }
    synced_ = true;
    if (!r.ok()) {
        {
            std::lock_guard lock(metrics_mu_);
            metrics_.store_refusals += 1;
        }
        log_("--kube: the store refused the cluster's state: " + r.error +
             "; keeping the last good configuration");
        for (const std::string& m : r.messages)
            log_("  " + m);
        return;
    }
    std::string what;
    int n = 0;
    for (const auto& item : r.items) {
        if (item.action == "unchanged") continue;
        if (n++ < 20) what += (what.empty() ? "" : ", ") + item.key.str() + " " + item.action;
    }
    if (n > 0) {
        {
            std::lock_guard lock(metrics_mu_);
            metrics_.store_changes += 1;
        }
        log_("--kube: " + what + (n > 20 ? " (and " + std::to_string(n - 20) + " more)" : "") +
             "; version " + std::to_string(r.version));
    }
}

std::string KubeSource::prometheus() const {
    std::lock_guard lock(metrics_mu_);
    std::string out;
    auto family = [&](const char* name, const char* type, const char* help,
                      const std::map<std::string, uint64_t>& values) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
        for (const auto& w : watches_) {
            auto it = values.find(w->kind.kind);
            out += std::string(name) + "{kind=\"" + w->kind.kind + "\"} " +
                   std::to_string(it == values.end() ? 0 : it->second) + "\n";
        }
    };
    family("remora_kube_objects", "gauge", "Objects of each kind in the --kube cache.",
           metrics_.objects);
    family("remora_kube_relists_total", "counter",
           "Lists again after the first (410 Gone: the watched version was too old).",
           metrics_.relists);
    family("remora_kube_reconnects_total", "counter",
           "Failed lists and dropped watches, retried with backoff.", metrics_.reconnects);
    family("remora_kube_list_failures_total", "counter", "Lists answered with an error status.",
           metrics_.list_failures);
    family("remora_kube_rejected_resources_total", "counter",
           "Resources from the API skipped because they do not validate.", metrics_.rejected);
    out +=
        "# HELP remora_kube_watch_events_total Watch events received, by kind and type.\n"
        "# TYPE remora_kube_watch_events_total counter\n";
    for (const auto& [k, v] : metrics_.events) {
        out += "remora_kube_watch_events_total{kind=\"" + k.first + "\",type=\"" + k.second +
               "\"} " + std::to_string(v) + "\n";
    }
    out +=
        "# HELP remora_kube_store_changes_total Changes the --kube source made to the store.\n"
        "# TYPE remora_kube_store_changes_total counter\nremora_kube_store_changes_total " +
        std::to_string(metrics_.store_changes) + "\n";
    out +=
        "# HELP remora_kube_store_refusals_total States of the cluster the store refused.\n"
        "# TYPE remora_kube_store_refusals_total counter\nremora_kube_store_refusals_total " +
        std::to_string(metrics_.store_refusals) + "\n";
    out +=
        "# HELP remora_kube_synced 1 once every kind was listed and given to the store.\n"
        "# TYPE remora_kube_synced gauge\nremora_kube_synced " +
        std::string(synced_ ? "1" : "0") + "\n";
    return out;
}

}  // namespace remora::control::kube
