// HTTP/1.1 proxying with streamed bodies (Beast buffer_body), upstream connection reuse and mTLS on
// the mesh side. One coroutine per downstream connection.
#include "proxy/http1/session.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <span>

#include "proxy/authz/authz.h"
#include "proxy/http1/errors.h"
#include <cstring>

#include "proxy/net/original_dst.h"
#include "proxy/tcp/splice.h"
#include "proxy/telemetry/workload.h"
#include "proxy/upstream/connect.h"

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

// A request body up to this size is held so a retry (or a mirror) can send it again; a larger one
// is streamed and never retried (counted in retry_or_shadow_abandoned), as Envoy's buffer limit.
constexpr size_t kMaxReplayBody = 64 * 1024;
// Mirrored requests one worker has in flight at most; more are dropped (upstream_rq_mirror_overflow).
constexpr uint32_t kMaxMirrorsInFlight = 64;
// A mirror gets no longer than this for its whole exchange, so a slow target cannot pile them up.
constexpr std::chrono::seconds kMirrorTimeout{10};

void count_status(WorkerStats& stats, unsigned status) {
    if (status >= 500) stats.inc(Counter::downstream_rq_5xx);
    else if (status >= 400) stats.inc(Counter::downstream_rq_4xx);
    else if (status >= 300) stats.inc(Counter::downstream_rq_3xx);
    else if (status >= 200) stats.inc(Counter::downstream_rq_2xx);
}

void count_flag(WorkerStats& stats, std::string_view flag) {
    if (flag == "NR") stats.inc(Counter::rq_flag_nr);
    else if (flag == "UH") stats.inc(Counter::rq_flag_uh);
    else if (flag == "UF") stats.inc(Counter::rq_flag_uf);
    else if (flag == "UC") stats.inc(Counter::rq_flag_uc);
    else if (flag == "UT") stats.inc(Counter::rq_flag_ut);
    else if (flag == "FI") stats.inc(Counter::rq_flag_fi);
    else if (flag == "DI") stats.inc(Counter::rq_flag_di);
    else if (flag == "URX") stats.inc(Counter::rq_flag_urx);
    else if (flag == "UO") stats.inc(Counter::rq_flag_uo);
    else if (flag == "RBAC") stats.inc(Counter::rbac_denied);
}

// Envoy's retry conditions for HTTP/1.1: why an attempt failed, and whether `retry_on` covers it.
enum class AttemptFailure { connect, reset, status };

bool retry_covers(const snapshot::RetryPolicy& p, AttemptFailure why, unsigned code) {
    std::string_view on = p.retry_on;
    auto has = [&](std::string_view token) {
        size_t pos = 0;
        while ((pos = on.find(token, pos)) != std::string_view::npos) {
            bool start = pos == 0 || on[pos - 1] == ',';
            bool end = pos + token.size() == on.size() || on[pos + token.size()] == ',';
            if (start && end) return true;
            pos += token.size();
        }
        return false;
    };
    switch (why) {
        case AttemptFailure::connect:
            return has("connect-failure") || has("5xx") || has("gateway-error") || has("reset");
        case AttemptFailure::reset:
            return has("reset") || has("5xx") || has("gateway-error");
        case AttemptFailure::status:
            if (has("5xx") && code >= 500) return true;
            if (has("gateway-error") && (code == 502 || code == 503 || code == 504)) return true;
            if (has("retriable-4xx") && code == 409) return true;
            if (has("retriable-status-codes")) {
                return std::find(p.retriable_status_codes.begin(), p.retriable_status_codes.end(), code) !=
                       p.retriable_status_codes.end();
            }
            return false;
    }
    return false;
}

// Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1), plus those named in
// Connection.
template <class Fields>
void strip_hop_by_hop(Fields& fields) {
    std::vector<std::string> named;
    for (auto it = fields.find(http::field::connection); it != fields.end() &&
                                                         it->name() == http::field::connection;
         ++it) {
        for (auto token : http::token_list(it->value())) named.emplace_back(token);
    }
    for (const std::string& n : named) {
        if (!beast::iequals(n, "close") && !beast::iequals(n, "keep-alive")) fields.erase(n);
    }
    for (auto f : {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
                   http::field::te, http::field::trailer, http::field::upgrade,
                   http::field::proxy_authorization}) {
        fields.erase(f);
    }
}

// A WebSocket handshake (RFC 6455): Upgrade: websocket with "upgrade" among Connection's tokens.
template <class Fields>
bool is_websocket_upgrade(const http::request_header<Fields>& req) {
    if (!beast::iequals(req[http::field::upgrade], "websocket")) return false;
    for (auto it = req.find(http::field::connection); it != req.end() && it->name() == http::field::connection; ++it) {
        for (auto token : http::token_list(it->value())) {
            if (beast::iequals(token, "upgrade")) return true;
        }
    }
    return false;
}

// A response the proxy makes itself: errors, fault aborts, direct responses, redirects.
template <class Stream>
asio::awaitable<void> send_reply(Stream& stream, unsigned status, std::string_view flag,
                                 std::string_view body, unsigned version, WorkerStats& stats,
                                 RequestRecord& rec, bool keep_alive = false,
                                 std::string_view location = {}) {
    rec.status = status;
    if (!flag.empty()) rec.flags = flag;
    http::response<http::string_body> res{static_cast<http::status>(status), version ? version : 11};
    res.set(http::field::content_type, "text/plain");
    res.set(http::field::server, "remora");
    if (!flag.empty()) res.set("x-remora-response-flags", flag);
    if (!location.empty()) res.set(http::field::location, location);
    res.body() = body;
    res.keep_alive(keep_alive);
    res.prepare_payload();
    rec.response_body_bytes = body.size();
    count_status(stats, status);
    count_flag(stats, flag);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
    co_await http::async_write(stream, res, use_nothrow);
}

template <class Stream>
asio::awaitable<void> send_error(Stream& stream, ProxyError e, unsigned version, WorkerStats& stats,
                                 RequestRecord& rec, bool keep_alive = false) {
    ErrorReply r = reply_for(e);
    co_await send_reply(stream, r.status, r.flag, r.body, version, stats, rec, keep_alive);
}

template <class Fields>
void apply_header_ops(Fields& f, const snapshot::HeaderOps& ops) {
    for (const auto& name : ops.remove) f.erase(name);
    for (const auto& [name, value] : ops.set) f.set(name, value);
    for (const auto& [name, value] : ops.add) f.insert(name, value);
}

// True with probability percent / 100.
bool chance(double percent, std::mt19937_64& rng) {
    if (percent >= 100) return true;
    if (percent <= 0) return false;
    return static_cast<double>(rng() % 1000000) < percent * 10000.0;
}

// Location for a VirtualService redirect: the request's parts, replaced where the rule says.
std::string redirect_location(const snapshot::Route& r, std::string_view host, std::string_view path) {
    std::string authority = r.redirect_authority.empty() ? std::string(host) : r.redirect_authority;
    if (r.redirect_port) {
        size_t colon = authority.rfind(':');
        if (colon != std::string::npos && authority.find(']') == std::string::npos) authority.resize(colon);
        authority += ":" + std::to_string(r.redirect_port);
    }
    std::string uri = r.redirect_uri.empty() ? std::string(path) : r.redirect_uri;
    return (r.redirect_scheme.empty() ? std::string("http") : r.redirect_scheme) + "://" + authority + uri;
}

// rewrite.uri replaces the matched prefix when a prefix matched, else the whole path (the query
// string stays).
std::string rewritten_path(const snapshot::Route& r, std::string_view target) {
    for (const auto& m : r.matches) {
        if (m.uri && m.uri->kind == snapshot::StringMatcher::Kind::prefix &&
            target.size() >= m.uri->value.size() &&
            (m.uri->ignore_case ? beast::iequals(target.substr(0, m.uri->value.size()), m.uri->value)
                                : target.substr(0, m.uri->value.size()) == m.uri->value)) {
            return r.rewrite_uri + std::string(target.substr(m.uri->value.size()));
        }
    }
    size_t q = target.find('?');
    return r.rewrite_uri + (q == std::string_view::npos ? std::string() : std::string(target.substr(q)));
}

enum class RelayResult { ok, read_failed, write_failed };

struct HeaderDeadline {
    bool fired = false;
    bool done = false;
};

// Streams a message body from `in` (whose header `p` has already read) to `out` through `sr`,
// which writes the header first. Never holds more than one chunk.
template <bool isRequest, class In, class Out>
asio::awaitable<RelayResult> relay(std::span<char> buf, In& in, beast::flat_buffer& inbuf,
                                   http::parser<isRequest, http::buffer_body>& p, Out& out,
                                   http::serializer<isRequest, http::buffer_body>& sr,
                                   std::chrono::seconds idle, uint64_t& body_bytes) {
    do {
        if (!p.is_done()) {
            p.get().body().data = buf.data();
            p.get().body().size = buf.size();
            beast::get_lowest_layer(in).expires_after(idle);
            // read_some: pass on whatever arrived, so a slow or dying peer's bytes are not held.
            auto [ec, n] = co_await http::async_read_some(in, inbuf, p, use_nothrow);
            if (ec == http::error::need_buffer) ec = {};
            if (ec) co_return RelayResult::read_failed;
            p.get().body().size = buf.size() - p.get().body().size;
            body_bytes += p.get().body().size;
            // Progress without body bytes (a chunk header): nothing to pass on. An empty buffer
            // with more to come would make the serializer end a chunked body early.
            if (p.get().body().size == 0 && !p.is_done()) continue;
            // The end with no bytes: no buffer at all, or the chunked serializer would write an
            // empty chunk (a terminator) and then the final chunk again.
            p.get().body().data = p.get().body().size > 0 ? buf.data() : nullptr;
            p.get().body().more = !p.is_done();
        } else {
            p.get().body().data = nullptr;
            p.get().body().size = 0;
            p.get().body().more = false;
        }
        beast::get_lowest_layer(out).expires_after(idle);
        auto [wec, wn] = co_await http::async_write(out, sr, use_nothrow);
        if (wec == http::error::need_buffer) wec = {};
        if (wec) co_return RelayResult::write_failed;
    } while (!p.is_done() && !sr.is_done());
    co_return RelayResult::ok;
}

template <class Fields>
uint64_t header_bytes(const Fields& fields, size_t start_line) {
    uint64_t n = start_line + 2;
    for (const auto& f : fields) n += f.name_string().size() + f.value().size() + 4;
    return n + 2;
}

// The tracing headers of a request, as views into it.
template <class Fields>
TraceHeaders trace_headers(const Fields& f) {
    TraceHeaders h;
    auto get = [&](std::string_view name) {
        auto it = f.find(name);
        return it == f.end() ? std::string_view{} : std::string_view(it->value());
    };
    h.traceparent = get("traceparent");
    h.tracestate = get("tracestate");
    h.b3 = get("b3");
    h.x_b3_traceid = get("x-b3-traceid");
    h.x_b3_spanid = get("x-b3-spanid");
    h.x_b3_parentspanid = get("x-b3-parentspanid");
    h.x_b3_sampled = get("x-b3-sampled");
    h.x_b3_flags = get("x-b3-flags");
    return h;
}

// A Beast request as route matching sees it.
template <class Fields>
struct BeastRequestView final : RequestView {
    const http::request_header<Fields>& req;
    explicit BeastRequestView(const http::request_header<Fields>& r) : req(r) {
        method = req.method_string();
        path = req.target();
        authority = req[http::field::host];
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        auto it = req.find(name);
        if (it == req.end()) return std::nullopt;
        return std::string_view(it->value());
    }
};

// The most of a refused request's body read and dropped so its caller can read the answer.
constexpr uint64_t kMaxDiscardedBody = 1024 * 1024;

// Reads the rest of a request body into `buf` and drops it; true when the whole body came within
// kMaxDiscardedBody, each read within `wait`.
template <class Down>
asio::awaitable<bool> discard_body(Down& down, beast::flat_buffer& dbuf,
                                   http::request_parser<http::buffer_body>& p, std::span<char> buf,
                                   std::chrono::seconds wait) {
    uint64_t total = 0;
    while (!p.is_done() && total <= kMaxDiscardedBody) {
        p.get().body().data = buf.data();
        p.get().body().size = buf.size();
        beast::get_lowest_layer(down).expires_after(wait);
        auto [ec, n] = co_await http::async_read_some(down, dbuf, p, use_nothrow);
        if (ec && ec != http::error::need_buffer) co_return false;
        total += buf.size() - p.get().body().size;
    }
    co_return p.is_done();
}

// An inbound request as AuthorizationPolicy sees it: the connection's facts and the header.
template <class Fields>
struct AuthzRequestView final : authz::Request {
    const http::request_header<Fields>& req;
    AuthzRequestView(const http::request_header<Fields>& r, const Downstream& down) : req(r) {
        method = req.method_string();
        path = req.target();
        host = req[http::field::host];
        if (down.peer_identity) {
            std::string_view id = *down.peer_identity;
            if (id.starts_with("spiffe://")) id.remove_prefix(9);
            principal = id;
        }
        source_ip = down.remote_ip;
        if (down.original_dst) {
            destination_ip = down.original_dst->address();
            destination_port = down.original_dst->port();
        }
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        auto it = req.find(name);
        if (it == req.end()) return std::nullopt;
        return std::string_view(it->value());
    }
};

// The authority a mirrored request carries: Envoy's "-shadow" after the host, before any port.
std::string shadow_authority(std::string_view host) {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos &&
        (host.front() != '[' || host[colon - 1] == ']')) {
        return std::string(host.substr(0, colon)) + "-shadow" + std::string(host.substr(colon));
    }
    return std::string(host) + "-shadow";
}

struct MirrorSlot {
    WorkerContext& ctx;
    ~MirrorSlot() { --ctx.mirrors_in_flight; }
};

// One mirrored request, fire and forget: sent to an endpoint of the mirror cluster, its answer
// read and thrown away, its failures only counted. `config` keeps `cluster` alive.
asio::awaitable<void> send_mirror(http::request<http::string_body> req, std::shared_ptr<const ProxyConfig> config,
                                  const snapshot::Cluster* cluster, size_t index, uint64_t conn_id,
                                  WorkerContext& ctx) {
    MirrorSlot slot{ctx};
    const UpstreamTarget target = target_for(*cluster, index);
    const ClusterHealth& health = config->routes->health(*cluster);
    ctx.balancer.started(*cluster, index);
    struct Done {
        WorkerContext& ctx;
        const snapshot::Cluster& c;
        size_t i;
        ~Done() { ctx.balancer.finished(c, i); }
    } done{ctx, *cluster, index};
    auto failed = [&](unsigned status, const std::string& why) {
        ctx.stats.inc(Counter::upstream_rq_mirror_failed);
        health.report(index, status);
        ctx.log("conn=" + std::to_string(conn_id) + " mirror to " + endpoint_text(target.address) + " (" +
                cluster->name + "): " + why);
    };
    const auto& clock = ctx.telemetry.config().steady_clock;
    const auto deadline = clock() + kMirrorTimeout;
    auto left = [&] {
        return std::max<std::chrono::steady_clock::duration>(deadline - clock(), std::chrono::milliseconds(1));
    };
    std::unique_ptr<UpstreamConn> conn = ctx.pool.take(target.pool_key());
    if (!conn) conn = co_await connect_upstream(target, config->limits, conn_id, ctx);
    if (!conn) {
        failed(503, "connect failed");
        co_return;
    }
    if (target.mtls) {
        req.set(kPeerMetadataHeader, ctx.telemetry.config().peer_metadata);
    } else {
        req.erase(kPeerMetadataHeader);
    }
    ctx.stats.inc(Counter::upstream_rq_mirror);
    bool reusable = false;
    unsigned status = 0;
    boost::system::error_code ec;
    co_await std::visit(
        [&](auto& up) -> asio::awaitable<void> {
            if constexpr (!std::is_same_v<std::decay_t<decltype(up)>, std::monostate>) {
                beast::get_lowest_layer(up).expires_after(left());
                auto [wec, wn] = co_await http::async_write(up, req, use_nothrow);
                if ((ec = wec)) co_return;
                http::response_parser<http::buffer_body> p;
                p.body_limit(boost::none);
                if (req.method() == http::verb::head) p.skip(true);
                std::array<char, 4096> sink;
                beast::get_lowest_layer(up).expires_after(left());
                auto [hec, hn] = co_await http::async_read_header(up, conn->buffer, p, use_nothrow);
                if ((ec = hec)) co_return;
                status = p.get().result_int();
                while (!p.is_done()) {  // the answer is thrown away, a small piece at a time
                    p.get().body().data = sink.data();
                    p.get().body().size = sink.size();
                    beast::get_lowest_layer(up).expires_after(left());
                    auto [rec, rn] = co_await http::async_read_some(up, conn->buffer, p, use_nothrow);
                    if (rec == http::error::need_buffer) continue;
                    if ((ec = rec)) co_return;
                }
                reusable = p.get().keep_alive();
            }
        },
        conn->stream);
    if (ec) {
        failed(ec == beast::error::timeout ? 504 : 503, ec.message());
        co_return;
    }
    conn->requests++;
    health.report(index, status);
    if (status >= 500) ctx.stats.inc(Counter::upstream_rq_mirror_failed);
    const uint32_t per_conn = cluster->limits.max_requests_per_connection;
    if (reusable && (per_conn == 0 || conn->requests < per_conn)) ctx.pool.put(std::move(conn));
}

// A request in flight to an endpoint, for LEAST_REQUEST; ends with the request (or its attempt).
struct InFlight {
    WorkerBalancer& balancer;
    const snapshot::Cluster* cluster = nullptr;
    size_t index = 0;
    void start(const snapshot::Cluster* c, size_t i) {
        stop();
        cluster = c;
        index = i;
        balancer.started(*c, i);
    }
    void stop() {
        if (cluster) balancer.finished(*cluster, index);
        cluster = nullptr;
    }
    ~InFlight() { stop(); }
};

// Records the request's telemetry when handle_one ends, whichever way it ends.
struct RequestFinisher {
    WorkerTelemetry& telemetry;
    RequestRecord& rec;
    bool armed = false;
    ~RequestFinisher() {
        if (armed) telemetry.finish(rec);
    }
};

// One request/response exchange on `down`. Returns whether the downstream connection may carry
// another request.
template <class Down>
asio::awaitable<bool> handle_one(Down& down, beast::flat_buffer& dbuf, Downstream& info,
                                 WorkerContext& ctx) {
    // Idle wait for the next request's first bytes (Beast's deadline closes an idle connection),
    // then a deadline for the whole header. Reading, not polling the socket: with TLS, OpenSSL
    // may already hold the request it read together with the handshake.
    if (dbuf.size() == 0) {
        beast::get_lowest_layer(down).expires_after(info.config->limits.idle_timeout);
        auto [iec, n] = co_await down.async_read_some(dbuf.prepare(kRelayChunk), use_nothrow);
        if (iec) co_return false;
        dbuf.commit(n);
    }
    // The request has begun: it runs on the newest configuration (routes, policies), taken
    // now and not before the idle wait, which may have spanned a change.
    if (uint64_t g = ctx.config.generation(); g != info.config_generation) {
        info.config = ctx.config.current();
        info.config_generation = g;
    }
    const Limits& limits = info.config->limits;
    const TelemetryConfig& tcfg = ctx.telemetry.config();
    const bool outbound = info.kind == ListenerKind::outbound_capture ||
                          info.kind == ListenerKind::outbound_explicit;
    http::request_parser<http::buffer_body> req_p;
    req_p.header_limit(limits.max_request_header_bytes);
    req_p.body_limit(boost::none);  // bodies are streamed, never held whole

    RequestRecord rec;
    rec.outbound = outbound;
    rec.downstream_remote = info.remote;
    rec.downstream_local = info.local;
    rec.mtls = !outbound && info.tls != nullptr;
    if (!outbound && info.peer_identity) rec.peer_principal = *info.peer_identity;
    if (!outbound && info.tls) rec.self_principal = info.tls->id.str();
    RequestFinisher finisher{ctx.telemetry, rec};

    // Usually the whole header came with the first read: parse it from the buffer, no timer.
    boost::system::error_code rec_ec;
    if (dbuf.size() > 0) {
        req_p.eager(false);  // stop after the header, as async_read_header does; the body is relayed
        size_t used = req_p.put(dbuf.data(), rec_ec);
        dbuf.consume(used);
        if (rec_ec == http::error::need_more) rec_ec = {};
    }
    if (!rec_ec && !req_p.is_header_done()) {
        // The header deadline cancels the read instead of closing the socket, so the client still
        // gets its 408.
        auto deadline = std::make_shared<HeaderDeadline>();
        beast::get_lowest_layer(down).expires_never();
        asio::steady_timer header_timer(co_await asio::this_coro::executor);
        header_timer.expires_after(limits.request_header_timeout);
        header_timer.async_wait([deadline, &down](boost::system::error_code ec) {
            if (ec || deadline->done) return;  // `down` is only touched while the read is pending
            deadline->fired = true;
            boost::system::error_code ignored;
            beast::get_lowest_layer(down).socket().cancel(ignored);
        });
        auto [ec, nread] = co_await http::async_read_header(down, dbuf, req_p, use_nothrow);
        deadline->done = true;
        header_timer.cancel();
        rec_ec = deadline->fired ? beast::error::timeout : ec;
    }
    if (rec_ec) {
        if (rec_ec == http::error::end_of_stream || rec_ec == asio::error::eof ||
            rec_ec == asio::error::connection_reset || rec_ec == asio::ssl::error::stream_truncated) {
            co_return false;
        }
        ProxyError e = ProxyError::bad_request;
        if (rec_ec == beast::error::timeout) {
            e = ProxyError::header_timeout;
            ctx.stats.inc(Counter::downstream_rq_header_timeout);
        } else if (rec_ec == http::error::header_limit) {
            e = ProxyError::headers_too_large;
            ctx.stats.inc(Counter::downstream_rq_headers_too_large);
        } else {
            ctx.stats.inc(Counter::downstream_rq_bad_request);
        }
        ctx.stats.inc(Counter::downstream_rq_total);
        ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + " refused request: " +
                rec_ec.message());
        ctx.telemetry.begin(rec, {}, {});
        finisher.armed = true;
        co_await send_error(down, e, 11, ctx.stats, rec);
        co_return false;
    }
    ctx.stats.inc(Counter::downstream_rq_total);
    auto& req = req_p.get();
    const unsigned down_version = req.version();
    const bool down_keep_alive = req.keep_alive() && !ctx.draining.load(std::memory_order_relaxed);
    const bool is_head = req.method() == http::verb::head;

    // Telemetry: who asked for what, the trace this hop continues, the caller's workload.
    ctx.telemetry.begin(rec, trace_headers(req), req["x-request-id"]);
    finisher.armed = true;
    rec.method = req.method_string();
    rec.path = req.target();
    rec.authority = req[http::field::host];
    rec.user_agent = req[http::field::user_agent];
    rec.x_forwarded_for = req["x-forwarded-for"];
    rec.protocol = down_version == 10 ? "HTTP/1.0" : "HTTP/1.1";
    rec.request_header_bytes = header_bytes(req, req.method_string().size() + req.target().size() + 10);
    if (!outbound) {
        // Only a sidecar proven by mTLS may say which workload it is; the app never sees it.
        if (rec.mtls) {
            auto it = req.find(kPeerMetadataHeader);
            if (it != req.end()) rec.peer = decode_peer_metadata(it->value());
        }
        req.erase(kPeerMetadataHeader);
    }
    for (std::string_view name : trace_header_names()) req.erase(name);
    for (auto& [name, value] : propagation_headers(*rec.span)) req.set(name, value);
    req.set("x-request-id", rec.request_id);
    rec.traceparent = req["traceparent"];

    // Where it goes. Explicit and inbound targets are fixed per connection: computed once.
    UpstreamTarget routed;
    const UpstreamTarget* target_ptr = nullptr;
    const snapshot::Route* route = nullptr;
    const snapshot::WeightedCluster* destination = nullptr;
    InFlight in_flight{ctx.balancer};
    if (info.kind == ListenerKind::outbound_explicit && info.config->upstream) {
        target_ptr = &*info.config->upstream;
    } else if (outbound) {
        BeastRequestView view(req);
        view.source_ip = std::string_view(info.remote).substr(0, info.remote.rfind(':'));
        RouteResult r = info.config->routes
                            ? resolve_route(*info.config->routes, view, info.original_dst, ctx.balancer,
                                            ctx.telemetry.rng())
                            : resolve_outbound(*info.config, req[http::field::host], info.original_dst, ctx.rr);
        route = r.route;
        destination = r.destination;
        if (r.cluster) in_flight.start(r.cluster, r.endpoint);
        const bool keep = down_keep_alive && req_p.is_done();  // no unread body: the connection may go on
        if (route && route->fault) {
            const snapshot::Fault& f = *route->fault;
            if (f.delay && chance(f.delay_percent, ctx.telemetry.rng())) {
                asio::steady_timer delay(co_await asio::this_coro::executor);
                delay.expires_after(*f.delay);
                co_await delay.async_wait(use_nothrow);
                rec.flags = "DI";
                count_flag(ctx.stats, "DI");
            }
            if (f.abort_status && chance(f.abort_percent, ctx.telemetry.rng())) {
                co_await send_reply(down, *f.abort_status, "FI", "fault filter abort", down_version,
                                    ctx.stats, rec, keep);
                co_return keep;
            }
        }
        if (route && route->direct_response) {
            co_await send_reply(down, route->direct_response->first, "", route->direct_response->second,
                                down_version, ctx.stats, rec, keep);
            co_return keep;
        }
        if (route && route->redirect) {
            co_await send_reply(down, route->redirect_code, "", "", down_version, ctx.stats, rec, keep,
                                redirect_location(*route, rec.authority, rec.path));
            co_return keep;
        }
        if (!r.target) {
            ProxyError e = r.error == RouteError::no_healthy_upstream ? ProxyError::no_healthy_upstream
                                                                      : ProxyError::no_route;
            // The body was not read: the connection cannot carry another request safely.
            co_await send_error(down, e, down_version, ctx.stats, rec);
            co_return false;
        }
        routed = std::move(*r.target);
        target_ptr = &routed;
    } else {
        if (!info.inbound_target) {
            UpstreamTarget t;
            t.address = info.config->app
                            ? *info.config->app
                            : tcp::endpoint(asio::ip::address_v4::loopback(),
                                            info.original_dst ? info.original_dst->port() : 80);
            t.cluster = "inbound|" + std::to_string(t.address.port()) + "||";
            info.inbound_target = std::move(t.finalize());
            if (info.peer_identity && info.tls) {
                info.xfcc = "By=" + info.tls->id.str() + ";URI=" + *info.peer_identity;
            }
        }
        target_ptr = &*info.inbound_target;
        // The caller's identity, proven by its certificate; whatever it claimed is dropped.
        req.erase("x-forwarded-client-cert");
        if (!info.xfcc.empty()) req.set("x-forwarded-client-cert", info.xfcc);
        // The service asked for: the registry's name for the Host when it knows it.
        std::string_view host = rec.authority;
        host = host.substr(0, host.rfind(':') == std::string_view::npos || host.back() == ']'
                                  ? host.size() : host.rfind(':'));
        const Service* svc = info.config->registry && !host.empty()
                                 ? info.config->registry->find_by_host(host, tcfg.self.ns)
                                 : nullptr;
        if (svc) {
            rec.service_host = svc->hosts.empty() ? svc->name : svc->hosts.front();
            rec.service_name = svc->name;
            rec.service_ns = svc->ns;
        } else if (!host.empty()) {
            rec.service_host = host;
        }
        if (info.original_dst) rec.service_port = info.original_dst->port();
        // AuthorizationPolicy: once per request, before anything reaches the app.
        if (const authz::Engine* engine = info.config->authz.get()) {
            const authz::Result verdict = engine->evaluate(AuthzRequestView(req, info));
            if (!verdict.audit_policy.empty()) ctx.stats.inc(Counter::rbac_audited);
            if (verdict.decision == authz::Decision::deny) {
                // A body the caller is sending is read and dropped (up to a bound) first: closing
                // on unread bytes resets the connection, and the caller would never see its 403.
                // A caller waiting for 100-continue is answered at once instead.
                bool keep = down_keep_alive;
                if (!req_p.is_done()) {
                    keep = keep && !beast::iequals(req[http::field::expect], "100-continue") &&
                           co_await discard_body(down, dbuf, req_p, info.relay_buffer, limits.request_header_timeout);
                }
                co_await send_error(down, ProxyError::rbac_denied, down_version, ctx.stats, rec, keep);
                co_return keep;
            }
            ctx.stats.inc(Counter::rbac_allowed);
        }
    }
    const UpstreamTarget& target = *target_ptr;  // `routed` may change on a retry
    rec.upstream_cluster = target.cluster;
    rec.upstream_host = endpoint_text(target.address);
    if (outbound) {
        rec.service_host = target.service_host;
        rec.service_name = target.service_name;
        rec.service_ns = target.service_ns;
        rec.service_port = target.service_port;
        rec.mtls = target.mtls;
        if (target.mtls) {
            if (target.expected_identity) rec.peer_principal = *target.expected_identity;
            if (!info.tls) info.tls = ctx.tls.current();  // this connection's own identity, once
            if (info.tls) rec.self_principal = info.tls->id.str();
            req.set(kPeerMetadataHeader, tcfg.peer_metadata);
        } else {
            req.erase(kPeerMetadataHeader);
        }
    }

    if (route) {
        if (!route->rewrite_uri.empty()) req.target(rewritten_path(*route, req.target()));
        if (!route->rewrite_authority.empty()) req.set(http::field::host, route->rewrite_authority);
        apply_header_ops(req, route->request_headers);
        if (destination) apply_header_ops(req, destination->request);
    }
    // A route timeout bounds the wait for the response header once the request is sent (504 UT).
    const std::optional<snapshot::Millis> route_timeout = route ? route->timeout : std::nullopt;

    bool expect_continue = beast::iequals(req[http::field::expect], "100-continue");
    // WebSocket (Istio allows it on every route): the Upgrade survives hop-by-hop stripping, and a
    // 101 turns both connections into a byte tunnel. Other upgrade kinds are dropped, as Envoy
    // drops upgrades it is not configured for.
    const bool websocket = is_websocket_upgrade(req);
    strip_hop_by_hop(req);
    req.erase(http::field::expect);
    req.version(11);
    req.keep_alive(true);
    if (websocket) {
        req.set(http::field::upgrade, "websocket");
        req.set(http::field::connection, "Upgrade");
    }
    const bool request_has_body = !req_p.is_done();

    // A body that a retry or a mirror may need again is read first and held, up to
    // kMaxReplayBody; a larger one is streamed (what was read so far goes first) and neither
    // retried nor mirrored.
    std::string replay_body;          // the whole body once buffered, else the part read so far
    size_t pending_chunk = 0;         // bytes read past the bound, waiting in the relay buffer
    bool body_buffered = false;
    const bool wants_replay = request_has_body && route && info.config->routes && !routed.cluster.empty() &&
                              (route->retries.attempts > 0 || !route->mirrors.empty());
    if (wants_replay) {
        auto length = req_p.content_length();
        if (length && *length > kMaxReplayBody) {
            ctx.stats.inc(Counter::retry_or_shadow_abandoned);
        } else {
            if (expect_continue) {
                beast::get_lowest_layer(down).expires_after(std::chrono::seconds(10));
                co_await asio::async_write(down, asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")),
                                           use_nothrow);
                expect_continue = false;
            }
            replay_body.reserve(length ? static_cast<size_t>(*length) : kRelayChunk);
            while (!req_p.is_done()) {
                req_p.get().body().data = info.relay_buffer.data();
                req_p.get().body().size = info.relay_buffer.size();
                beast::get_lowest_layer(down).expires_after(limits.stream_idle_timeout);
                auto [ec, n] = co_await http::async_read_some(down, dbuf, req_p, use_nothrow);
                if (ec == http::error::need_buffer) ec = {};
                if (ec) {
                    rec.flags = "DC";  // the client went away mid-body
                    co_return false;
                }
                const size_t got = info.relay_buffer.size() - req_p.get().body().size;
                if (replay_body.size() + got > kMaxReplayBody) {
                    pending_chunk = got;  // over the bound: stream from here on
                    ctx.stats.inc(Counter::retry_or_shadow_abandoned);
                    break;
                }
                replay_body.append(info.relay_buffer.data(), got);
            }
            body_buffered = req_p.is_done() && pending_chunk == 0;
            rec.request_body_bytes = replay_body.size() + pending_chunk;
            if (body_buffered) {
                // Sent whole from now on: a length says where it ends (chunked framing is gone).
                req.chunked(false);
                req.content_length(replay_body.size());
            }
        }
    }
    const bool replayable = !request_has_body || body_buffered;

    // Mirrors: a copy of the request, authority "-shadow", to each mirror cluster for its
    // percentage of requests; fire and forget on this worker. A body goes along only when held.
    if (route && info.config->routes && !route->mirrors.empty() && !websocket) {
        for (const snapshot::Mirror& m : route->mirrors) {
            if (!chance(m.percent, ctx.telemetry.rng())) continue;
            const snapshot::Cluster* mc = info.config->routes->cluster(m.cluster);
            if (!replayable) {
                if (!wants_replay) ctx.stats.inc(Counter::retry_or_shadow_abandoned);
                continue;
            }
            if (ctx.mirrors_in_flight >= kMaxMirrorsInFlight) {
                ctx.stats.inc(Counter::upstream_rq_mirror_overflow);
                continue;
            }
            std::optional<size_t> mi;
            if (mc) mi = ctx.balancer.pick(*mc, nullptr, nullptr, ctx.telemetry.rng(), std::nullopt,
                                           &info.config->routes->health(*mc));
            if (!mi || target_for(*mc, *mi).key.empty()) {
                ctx.stats.inc(Counter::upstream_rq_mirror_failed);
                continue;
            }
            http::request<http::string_body> copy(req.base());
            copy.set(http::field::host, shadow_authority(req[http::field::host]));
            copy.erase(http::field::transfer_encoding);
            copy.body() = replay_body;
            copy.prepare_payload();
            ++ctx.mirrors_in_flight;
            asio::co_spawn(co_await asio::this_coro::executor,
                           send_mirror(std::move(copy), info.config, mc, *mi, info.id, ctx), asio::detached);
        }
    }

    // A pooled connection first; a stale one (closed while idle) is retried once on a fresh one,
    // which is safe only while nothing of the body has been consumed.
    // Circuit breaking (DestinationRule connectionPool), per cluster across workers: a request
    // needs a connection under maxConnections and a slot under http2MaxRequests (Envoy's
    // max_requests, which bounds HTTP/1.1 too); over maxConnections it waits, as one of at most
    // http1MaxPendingRequests, up to the connect timeout; beyond that it fails at once with UO.
    CounterSlot breaker;  // this request's unit of the cluster's requests, released when it ends
    ClusterState* breaker_state = nullptr;
    const snapshot::Cluster* breaker_cluster = in_flight.cluster;
    if (breaker_cluster && info.config->routes) {
        ClusterState& st = info.config->routes->state(*breaker_cluster);
        const snapshot::ConnectionLimits& lim = breaker_cluster->limits;
        const uint32_t cap = std::min(lim.max_connections, lim.http2_max_requests);
        if (!take_below(st.requests, cap)) {
            bool admitted = false;
            if (lim.http2_max_requests > lim.max_connections && take_below(st.pending, lim.http1_max_pending_requests)) {
                asio::steady_timer wait(co_await asio::this_coro::executor);
                const auto give_up = tcfg.steady_clock() + lim.connect_timeout;
                while (!(admitted = take_below(st.requests, cap)) && tcfg.steady_clock() < give_up) {
                    wait.expires_after(std::chrono::milliseconds(2));
                    co_await wait.async_wait(use_nothrow);
                }
                st.pending.fetch_sub(1, std::memory_order_relaxed);
            }
            if (!admitted) {
                ctx.log("conn=" + std::to_string(info.id) + " " + breaker_cluster->name +
                        ": circuit breaker open (UO)");
                co_await send_error(down, ProxyError::overflow, down_version, ctx.stats, rec);
                co_return false;
            }
        }
        breaker.counter = &st.requests;
        breaker_state = &st;
    }

    std::unique_ptr<UpstreamConn> conn = ctx.pool.take(target.pool_key());
    if (conn) ctx.stats.inc(Counter::upstream_cx_pool_hit);

    // Retries (the route's policy, Istio's default when it has none): for requests without a body
    // or with one held whole (kMaxReplayBody), which can be sent again. Each retry waits a jittered
    // exponential backoff from 25 ms and goes to the cluster's next endpoint when it has another.
    const snapshot::RetryPolicy* retry =
        route && info.config->routes && !routed.cluster.empty() && replayable ? &route->retries : nullptr;
    uint32_t retries_left = retry ? retry->attempts : 0;
    uint32_t retries_done = 0;
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (route_timeout) deadline = tcfg.steady_clock() + *route_timeout;
    // Outlier detection hears how each attempt went: a status, or 503 for a connect failure or
    // reset and 504 for a timeout, as Envoy maps its own errors.
    auto report_outcome = [&](unsigned status) {
        if (!in_flight.cluster || !info.config->routes) return;
        const ClusterHealth& health = info.config->routes->health(*in_flight.cluster);
        switch (health.report(in_flight.index, status)) {
            case ClusterHealth::Verdict::none: break;
            case ClusterHealth::Verdict::ejected:
                ctx.stats.inc(Counter::outlier_detection_ejections_enforced);
                ctx.log("conn=" + std::to_string(info.id) + " " + in_flight.cluster->name + ": ejected " +
                        endpoint_text(target.address) + " (outlier detection, last answer " + std::to_string(status) + ")");
                break;
            case ClusterHealth::Verdict::overflow:
                ctx.stats.inc(Counter::outlier_detection_ejections_overflow);
                break;
        }
    };
    std::function<asio::awaitable<bool>()> retry_after_backoff;
    CounterSlot retry_slot;  // a retry in flight to the cluster, from the decision through its attempt
    // May this failure be retried? The policy must cover it and the cluster's retries in flight
    // stay within the retry budget (20% of its active requests, at least 3) and maxRetries; a
    // retry over them is not made, counted, and the failure goes back as it is.
    auto admit_retry = [&](AttemptFailure why, unsigned code) -> bool {
        if (!retry || retries_left == 0 || !retry_covers(*retry, why, code)) return false;
        retry_slot.release();  // the previous retry's attempt is over
        if (ClusterState* st = breaker_state) {
            const uint32_t active = st->requests.load(std::memory_order_relaxed) +
                                    st->pending.load(std::memory_order_relaxed);
            const uint32_t max_retries = in_flight.cluster ? in_flight.cluster->limits.max_retries : UINT32_MAX;
            if (!take_below(st->retries, retry_budget(active, max_retries))) {
                ctx.stats.inc(Counter::upstream_rq_retry_overflow);
                return false;
            }
            retry_slot.counter = &st->retries;
        }
        return true;
    };
    auto prepare_retry = [&](AttemptFailure why, unsigned code) -> asio::awaitable<bool> {
        if (!admit_retry(why, code)) co_return false;
        co_return co_await retry_after_backoff();
    };
    retry_after_backoff = [&]() -> asio::awaitable<bool> {
        --retries_left;
        ++retries_done;
        ctx.stats.inc(Counter::upstream_rq_retry);
        const int64_t cap = std::min<int64_t>(int64_t{25} << std::min<uint32_t>(retries_done - 1, 4), 250);
        asio::steady_timer backoff(co_await asio::this_coro::executor);
        backoff.expires_after(std::chrono::milliseconds(static_cast<int64_t>(ctx.telemetry.rng()() % static_cast<uint64_t>(cap + 1))));
        co_await backoff.async_wait(use_nothrow);
        if (deadline && tcfg.steady_clock() >= *deadline) co_return false;
        if (const snapshot::Cluster* c = in_flight.cluster; c && c->endpoints.size() > 1) {
            const std::optional<size_t> i = ctx.balancer.pick(*c, nullptr, nullptr, ctx.telemetry.rng(), in_flight.index,
                                                              &info.config->routes->health(*c));
            UpstreamTarget next = i ? target_for(*c, *i) : UpstreamTarget{};
            if (!next.key.empty()) {
                routed = std::move(next);
                in_flight.start(c, *i);
            }
        }
        rec.upstream_host = endpoint_text(target.address);
        conn = ctx.pool.take(target.pool_key());
        co_return true;
    };
    // How long to wait for a response header on this attempt: the per-try timeout, never past
    // the route's deadline, else the stream idle timeout.
    auto header_wait = [&]() -> std::chrono::steady_clock::duration {
        std::chrono::steady_clock::duration wait = limits.stream_idle_timeout;
        if (retry && retry->per_try_timeout && *retry->per_try_timeout < wait) wait = *retry->per_try_timeout;
        if (deadline) {
            auto left = *deadline - tcfg.steady_clock();
            if (left < wait) wait = std::max(left, std::chrono::steady_clock::duration(std::chrono::milliseconds(1)));
        }
        return wait;
    };

    for (int attempt = 0;; ++attempt) {
        if (!conn) {
            conn = co_await connect_upstream(target, limits, info.id, ctx);
            if (!conn) {
                report_outcome(503);
                if (co_await prepare_retry(AttemptFailure::connect, 0)) continue;
                co_await send_error(down, ProxyError::connect_failure, down_version, ctx.stats, rec);
                if (retries_done) {
                    rec.flags = "UF,URX";
                    count_flag(ctx.stats, "URX");
                }
                co_return false;
            }
        }
        const bool reused = conn->requests > 0;
        ctx.stats.inc(Counter::upstream_rq_total);
        if (expect_continue && attempt == 0) {
            // Envoy's default: answer 100-continue here rather than forward the expectation.
            beast::get_lowest_layer(down).expires_after(std::chrono::seconds(10));
            co_await asio::async_write(down, asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")),
                                       use_nothrow);
        }

        http::serializer<true, http::buffer_body> req_sr{req};
        RelayResult sent = co_await std::visit(
            [&](auto& up) -> asio::awaitable<RelayResult> {
                if constexpr (std::is_same_v<std::decay_t<decltype(up)>, std::monostate>) {
                    co_return RelayResult::write_failed;
                } else {
                    // Held parts first (the whole body, or what was read before the bound).
                    const std::pair<const char*, size_t> held[] = {
                        {replay_body.data(), replay_body.size()}, {info.relay_buffer.data(), pending_chunk}};
                    if (wants_replay && (body_buffered || attempt == 0)) {
                        for (const auto& [data, size] : held) {
                            if (size == 0) continue;
                            req.body().data = const_cast<char*>(data);
                            req.body().size = size;
                            req.body().more = !body_buffered;  // held whole: one part, the end
                            beast::get_lowest_layer(up).expires_after(limits.stream_idle_timeout);
                            auto [wec, wn] = co_await http::async_write(up, req_sr, use_nothrow);
                            if (wec && wec != http::error::need_buffer) co_return RelayResult::write_failed;
                        }
                        if (body_buffered) {
                            if (!req_sr.is_done()) {  // the end (an empty body never got a write)
                                req.body().data = nullptr;
                                req.body().size = 0;
                                req.body().more = false;
                                auto [wec, wn] = co_await http::async_write(up, req_sr, use_nothrow);
                                if (wec && wec != http::error::need_buffer) co_return RelayResult::write_failed;
                            }
                            co_return RelayResult::ok;
                        }
                        uint64_t streamed = 0;
                        RelayResult r = co_await relay(info.relay_buffer, down, dbuf, req_p, up, req_sr,
                                                       limits.stream_idle_timeout, streamed);
                        rec.request_body_bytes += streamed;
                        co_return r;
                    }
                    co_return co_await relay(info.relay_buffer, down, dbuf, req_p, up, req_sr,
                                             limits.stream_idle_timeout, rec.request_body_bytes);
                }
            },
            conn->stream);
        if (sent == RelayResult::read_failed) {
            rec.flags = "DC";  // the client went away
            co_return false;
        }
        if (sent == RelayResult::write_failed) {
            ctx.stats.inc(Counter::upstream_rq_reset);
            if (reused && attempt == 0 && replayable) {
                conn.reset();
                continue;
            }
            report_outcome(503);
            co_await send_error(down, ProxyError::upstream_reset, down_version, ctx.stats, rec);
            co_return false;
        }
        conn->requests++;
        rec.upstream_sent = tcfg.steady_clock();

        // The response: header first (skipping any 1xx the upstream sends anyway), then the body.
        std::optional<http::response_parser<http::buffer_body>> res_opt;
        auto fresh_parser = [&] {
            res_opt.emplace();
            res_opt->body_limit(boost::none);
            res_opt->header_limit(limits.max_request_header_bytes);
            if (is_head) res_opt->skip(true);
        };
        fresh_parser();
        boost::system::error_code hec;
        co_await std::visit(
            [&](auto& up) -> asio::awaitable<void> {
                if constexpr (!std::is_same_v<std::decay_t<decltype(up)>, std::monostate>) {
                    for (;;) {
                        beast::get_lowest_layer(up).expires_after(header_wait());
                        auto [ec, n] =
                            co_await http::async_read_header(up, conn->buffer, *res_opt, use_nothrow);
                        hec = ec;
                        unsigned code = ec ? 0 : res_opt->get().result_int();
                        if (ec || code >= 200 || code == 101) break;
                        fresh_parser();  // an informational response: the real one follows
                    }
                }
            },
            conn->stream);
        auto& res_p = *res_opt;
        if (hec) {
            ctx.stats.inc(Counter::upstream_rq_reset);
            if (reused && attempt == 0 && replayable &&
                (hec == http::error::end_of_stream || hec == asio::error::eof ||
                 hec == asio::error::connection_reset)) {
                conn.reset();
                continue;
            }
            conn.reset();
            report_outcome(hec == beast::error::timeout ? 504 : 503);
            if (co_await prepare_retry(AttemptFailure::reset, 0)) continue;
            const bool timed_out = hec == beast::error::timeout && header_wait() < limits.stream_idle_timeout;
            ctx.log("conn=" + std::to_string(info.id) + " upstream " + endpoint_text(target.address) +
                    (timed_out ? " gave no response header within the route timeout (UT)"
                               : " failed before the response header: " + hec.message()));
            co_await send_error(down, timed_out ? ProxyError::upstream_timeout : ProxyError::upstream_reset,
                                down_version, ctx.stats, rec);
            co_return false;
        }
        rec.upstream_header = tcfg.steady_clock();

        auto& res = res_p.get();
        const bool upstream_keep_alive = res.keep_alive();
        const unsigned status = res.result_int();
        report_outcome(status);
        if (admit_retry(AttemptFailure::status, status)) {
            conn.reset();  // its body is not wanted: closing is simpler than draining it
            if (co_await retry_after_backoff()) continue;
            // The deadline passed during the backoff: the last answer is gone, so time out.
            co_await send_error(down, ProxyError::upstream_timeout, down_version, ctx.stats, rec);
            co_return false;
        }
        if (retry && retries_done && retry_covers(*retry, AttemptFailure::status, status)) {
            rec.flags = "URX";  // retries used up: the last answer goes to the client
            count_flag(ctx.stats, "URX");
        }
        rec.status = status;
        // The peer sidecar's workload: read from the mesh side only, never shown to the app.
        if (outbound && target.mtls) {
            auto it = res.find(kPeerMetadataHeader);
            if (it != res.end()) rec.peer = decode_peer_metadata(it->value());
        }
        res.erase(kPeerMetadataHeader);
        if (!outbound && rec.mtls) res.set(kPeerMetadataHeader, tcfg.peer_metadata);
        if (route) {
            apply_header_ops(res, route->response_headers);
            if (destination) apply_header_ops(res, destination->response);
        }
        if (status == 101 && websocket) {
            // Switched: the 101 goes back, then bytes both ways until either side closes. The
            // upstream connection is never pooled again.
            strip_hop_by_hop(res);
            res.version(11);
            res.set(http::field::upgrade, "websocket");
            res.set(http::field::connection, "Upgrade");
            rec.response_header_bytes = header_bytes(res, res.reason().size() + 13);
            count_status(ctx.stats, status);
            ctx.stats.inc(Counter::downstream_cx_upgrades);
            http::response<http::empty_body> head{std::move(res.base())};
            co_await std::visit(
                [&](auto& up) -> asio::awaitable<void> {
                    if constexpr (!std::is_same_v<std::decay_t<decltype(up)>, std::monostate>) {
                        beast::get_lowest_layer(down).expires_after(limits.stream_idle_timeout);
                        auto [wec, wn] = co_await http::async_write(down, head, use_nothrow);
                        if (wec) co_return;
                        beast::get_lowest_layer(down).expires_never();
                        beast::get_lowest_layer(up).expires_never();
                        // Bytes that came with the headers go first, each to the other side.
                        if (conn->buffer.size() > 0) {
                            rec.response_body_bytes += conn->buffer.size();
                            auto [e1, n1] = co_await asio::async_write(down, conn->buffer.data(), use_nothrow);
                            if (e1) co_return;
                            conn->buffer.consume(conn->buffer.size());
                        }
                        if (dbuf.size() > 0) {
                            rec.request_body_bytes += dbuf.size();
                            auto [e2, n2] = co_await asio::async_write(up, dbuf.data(), use_nothrow);
                            if (e2) co_return;
                            dbuf.consume(dbuf.size());
                        }
                        std::atomic<uint64_t> received{0}, sent{0};
                        co_await splice(down, up, limits.stream_idle_timeout, &received, &sent);
                        rec.request_body_bytes += received.load(std::memory_order_relaxed);
                        rec.response_body_bytes += sent.load(std::memory_order_relaxed);
                    }
                },
                conn->stream);
            co_return false;
        }
        strip_hop_by_hop(res);
        res.version(down_version);
        res.keep_alive(down_keep_alive);
        rec.response_header_bytes = header_bytes(res, res.reason().size() + 13);
        http::serializer<false, http::buffer_body> res_sr{res};
        RelayResult back = co_await std::visit(
            [&](auto& up) -> asio::awaitable<RelayResult> {
                if constexpr (std::is_same_v<std::decay_t<decltype(up)>, std::monostate>) {
                    co_return RelayResult::read_failed;
                } else {
                    co_return co_await relay(info.relay_buffer, up, conn->buffer, res_p, down, res_sr,
                                             limits.stream_idle_timeout, rec.response_body_bytes);
                }
            },
            conn->stream);
        count_status(ctx.stats, status);
        if (back == RelayResult::read_failed) {
            // The upstream died mid-body: the client cannot be told with a status any more, so
            // its connection closes and it sees a truncated message, never a hang.
            ctx.stats.inc(Counter::upstream_rq_reset);
            count_flag(ctx.stats, "UC");
            rec.flags = "UC";
            ctx.log("conn=" + std::to_string(info.id) + " upstream " + endpoint_text(target.address) +
                    " closed mid-response (UC)");
            co_return false;
        }
        if (back == RelayResult::write_failed) {
            rec.flags = "DC";
            co_return false;
        }
        // maxRequestsPerConnection: a connection that has carried its share is not reused.
        const uint32_t per_conn = in_flight.cluster ? in_flight.cluster->limits.max_requests_per_connection : 0;
        if (upstream_keep_alive && res_p.is_done() && (per_conn == 0 || conn->requests < per_conn)) {
            ctx.pool.put(std::move(conn));
        }
        co_return down_keep_alive && req_p.is_done();
    }
}

template <class Down>
asio::awaitable<void> serve_http(Down& down, Downstream& info, WorkerContext& ctx, std::string_view prefix) {
    beast::flat_buffer dbuf;
    if (!prefix.empty()) {
        auto room = dbuf.prepare(prefix.size());
        std::memcpy(room.data(), prefix.data(), prefix.size());
        dbuf.commit(prefix.size());
    }
    while (co_await handle_one(down, dbuf, info, ctx)) {
    }
}

}  // namespace

asio::awaitable<void> serve_http1(PlainStream& down, Downstream& info, WorkerContext& ctx,
                                  std::string_view prefix) {
    co_await serve_http(down, info, ctx, prefix);
}

asio::awaitable<void> serve_http1(TlsStream& down, Downstream& info, WorkerContext& ctx,
                                  std::string_view prefix) {
    co_await serve_http(down, info, ctx, prefix);
}

}  // namespace remora::proxy
