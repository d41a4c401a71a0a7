// The protocol-neutral request path: each phase a function over one RequestState (see
// request_path.h for the order and why).
#include "proxy/request/request_path.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <charconv>

#include "proxy/authz/authz.h"
#include "proxy/request/local_reply.h"
#include "proxy/request/mirror.h"
#include "proxy/request/retry.h"
#include "proxy/request/upstream.h"
#include "proxy/telemetry/workload.h"

namespace remora::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// On a route with retries or mirrors the request body streams to the first attempt while a copy
// is kept, up to this size, for a retry (or a mirror) to send again; past it the copy is dropped
// and the request is no longer retried nor mirrored (counted in retry_or_shadow_abandoned), as
// Envoy's buffer limit (per_connection_buffer_limit_bytes, 1 MiB).
constexpr size_t kMaxReplayBody = 1024 * 1024;

// True with probability percent / 100.
bool chance(double percent, std::mt19937_64& rng) {
    if (percent >= 100) return true;
    if (percent <= 0) return false;
    return static_cast<double>(rng() % 1000000) < percent * 10000.0;
}

void apply_header_ops(http::HeaderMap& h, const snapshot::HeaderOps& ops) {
    for (const auto& name : ops.remove) h.remove(name);
    for (const auto& [name, value] : ops.set) h.set(name, value);
    for (const auto& [name, value] : ops.add) h.add(name, value);
}

// A WebSocket handshake (RFC 6455): Upgrade: websocket with "upgrade" among Connection's tokens.
bool is_websocket_upgrade(const http::HeaderMap& h) {
    auto upgrade = h.get("upgrade");
    if (!upgrade || !http::iequals(*upgrade, "websocket")) return false;
    for (const auto& e : h) {
        if (e.name != "connection") continue;
        std::string_view v = e.value;
        while (!v.empty()) {
            size_t comma = v.find(',');
            std::string_view t = v.substr(0, comma);
            while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
            while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
            if (http::iequals(t, "upgrade")) return true;
            if (comma == std::string_view::npos) break;
            v.remove_prefix(comma + 1);
        }
    }
    return false;
}

std::string_view value_or_empty(const http::HeaderMap& h, std::string_view name) {
    return h.get(name).value_or(std::string_view{});
}

TraceHeaders trace_headers(const http::HeaderMap& h) {
    TraceHeaders t;
    t.traceparent = value_or_empty(h, "traceparent");
    t.tracestate = value_or_empty(h, "tracestate");
    t.b3 = value_or_empty(h, "b3");
    t.x_b3_traceid = value_or_empty(h, "x-b3-traceid");
    t.x_b3_spanid = value_or_empty(h, "x-b3-spanid");
    t.x_b3_parentspanid = value_or_empty(h, "x-b3-parentspanid");
    t.x_b3_sampled = value_or_empty(h, "x-b3-sampled");
    t.x_b3_flags = value_or_empty(h, "x-b3-flags");
    return t;
}

uint64_t head_bytes(const http::HeaderMap& h, size_t start_line) {
    uint64_t n = start_line + 2;
    for (const auto& e : h) n += e.name.size() + e.value.size() + 4;
    return n + 2;
}

std::optional<uint32_t> grpc_status_of(const http::HeaderMap& h) {
    auto v = h.get("grpc-status");
    if (!v) return std::nullopt;
    uint32_t code = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), code);
    if (ec != std::errc() || p != v->data() + v->size()) return std::nullopt;
    return code;
}

// The request as route matching sees it.
struct HeadView final : RequestView {
    const http::RequestHead& h;
    explicit HeadView(const http::RequestHead& head) : h(head) {
        method = h.method;
        path = h.path;
        authority = h.authority;
        if (!h.scheme.empty()) scheme = h.scheme;
    }
    std::optional<std::string_view> header(std::string_view name) const override {
        if (name == "host" || name == ":authority") return authority;
        return h.headers.get(name);
    }
};

// An inbound request as AuthorizationPolicy sees it: the connection's facts and the head.
struct AuthzView final : authz::Request {
    const http::RequestHead& h;
    AuthzView(const http::RequestHead& head, const Downstream& down) : h(head) {
        method = h.method;
        path = h.path;
        host = h.authority;
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
        if (name == "host" || name == ":authority") return host;
        return h.headers.get(name);
    }
};

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

// Everything the phases of one request share.
struct RequestState {
    RequestState(http::ServerStream& d, Downstream& i, WorkerContext& c)
        : down(d), head(d.head()), info(i), ctx(c), config(i.config), limits(config->limits),
          tcfg(c.telemetry.config()), outbound(i.outbound()), in_flight{c.balancer} {}

    http::ServerStream& down;
    http::RequestHead& head;
    Downstream& info;
    WorkerContext& ctx;
    std::shared_ptr<const ProxyConfig> config;  // this request's, kept for its whole life
    const Limits& limits;
    const TelemetryConfig& tcfg;
    const bool outbound;
    RequestRecord rec;

    // Where it goes: a target of the route table (outbound) or the connection's (inbound).
    const UpstreamTarget* target = nullptr;
    bool routed = false;  // by the route table (outbound, to a cluster)
    const snapshot::Route* route = nullptr;
    const snapshot::WeightedCluster* destination = nullptr;
    InFlight in_flight;
    std::string location;  // a redirect's
    http::Protocol client_protocol = http::Protocol::http11;  // what the app speaks (inbound: restored)
    bool websocket = false;

    // The request body's copy for retries and mirrors: what has been read from the client so far
    // (all of it once `body_complete`), kept while `keep_copy`.
    bool request_has_body = false;
    bool wants_replay = false;
    bool keep_copy = false;  // dropped past kMaxReplayBody
    std::string replay_body;
    bool body_complete = false;  // the client's body has ended; `replay_body` is all of it
    bool mirrored = false;
    std::optional<http::Trailers> request_trailers;
    // Can another attempt send the request again?
    bool replayable() const { return !request_has_body || keep_copy; }
    // Appends to the copy, or drops it past the bound (counted once).
    void copy_body(std::string_view data) {
        if (!keep_copy) return;
        if (replay_body.size() + data.size() > kMaxReplayBody) {
            keep_copy = false;
            std::string().swap(replay_body);
            ctx.stats.inc(Counter::retry_or_shadow_abandoned);
            return;
        }
        replay_body.append(data);
    }

    // Circuit breaking.
    RequestSlot breaker;
    ClusterState* breaker_state = nullptr;

    std::optional<std::chrono::steady_clock::time_point> deadline;
    bool grpc_deadline = false;  // the deadline is the client's grpc-timeout
    // The request timeout: the whole request must have arrived by then (Envoy's request_timeout).
    std::optional<std::chrono::steady_clock::time_point> request_deadline;

    // How long the next read of the request body may wait: the stream idle timeout, never past
    // the request timeout.
    std::chrono::steady_clock::duration body_wait() const {
        std::chrono::steady_clock::duration wait = limits.stream_idle_timeout;
        if (request_deadline) {
            auto left = *request_deadline - std::chrono::steady_clock::now();
            if (left < wait) wait = std::max(left, std::chrono::steady_clock::duration(std::chrono::milliseconds(1)));
        }
        return wait;
    }
    // Why a read of the request body failed: a stalled body (which of the two timeouts) or the
    // client going away. Counts the timeouts.
    ProxyError body_failure(const http::BodyPart& part) {
        if (part.error != boost::beast::error::timeout) return ProxyError::downstream_disconnect;
        if (request_deadline && std::chrono::steady_clock::now() >= *request_deadline) {
            ctx.stats.inc(Counter::downstream_rq_timeout);
            log("request timeout: the request did not arrive whole within " +
                std::to_string(limits.request_timeout.count()) + "s");
            return ProxyError::request_timeout;
        }
        ctx.stats.inc(Counter::downstream_rq_idle_timeout);
        log("stream idle timeout: no request body byte for " + std::to_string(limits.stream_idle_timeout.count()) + "s");
        return ProxyError::stream_idle_timeout;
    }

    void log(const std::string& what) const { ctx.log("conn=" + std::to_string(info.id) + " " + what); }
    asio::awaitable<void> reply(const LocalReply& r) { co_await send_local_reply(down, r, rec, ctx.stats); }
    asio::awaitable<void> reply(ProxyError e) { co_await reply(reply_for(e)); }
};

// Records the request's telemetry when it ends, whichever way it ends.
struct RequestFinisher {
    WorkerTelemetry& telemetry;
    RequestRecord& rec;
    bool armed = false;
    ~RequestFinisher() {
        if (armed) telemetry.finish(rec);
    }
};

const char* protocol_name(http::Protocol p) {
    switch (p) {
        case http::Protocol::http10: return "HTTP/1.0";
        case http::Protocol::http11: return "HTTP/1.1";
        case http::Protocol::http2: return "HTTP/2";
    }
    return "HTTP/1.1";
}

// --- begin: telemetry, trace context, request id, the peer's workload --------------------------
void begin(RequestState& st) {
    RequestRecord& rec = st.rec;
    http::RequestHead& h = st.head;
    Downstream& info = st.info;
    st.ctx.stats.inc(Counter::downstream_rq_total);
    if (h.protocol == http::Protocol::http2) st.ctx.stats.inc(Counter::downstream_rq_http2);
    if (st.limits.request_timeout.count() > 0 && !st.down.body_done()) {
        st.request_deadline = std::chrono::steady_clock::now() + st.limits.request_timeout;
    }
    if (h.scheme.empty()) h.scheme = "http";
    rec.outbound = st.outbound;
    rec.downstream_remote = info.remote;
    rec.downstream_local = info.local;
    rec.mtls = !st.outbound && info.tls != nullptr;
    if (!st.outbound && info.peer_identity) rec.peer_principal = *info.peer_identity;
    if (!st.outbound && info.tls) rec.self_principal = info.tls->id.str();
    st.ctx.telemetry.begin(rec, trace_headers(h.headers), value_or_empty(h.headers, "x-request-id"));
    rec.method = h.method;
    rec.path = h.path;
    rec.authority = h.authority;
    rec.user_agent = value_or_empty(h.headers, "user-agent");
    rec.x_forwarded_for = value_or_empty(h.headers, "x-forwarded-for");
    rec.protocol = protocol_name(h.protocol);
    rec.grpc = http::is_grpc(h);
    rec.request_header_bytes = head_bytes(h.headers, h.method.size() + h.path.size() + 10) + h.authority.size() + 8;
    st.client_protocol = h.protocol;
    if (!st.outbound) {
        // Only a sidecar proven by mTLS may say which workload it is, and which HTTP version its
        // app spoke; the app never sees either header.
        if (rec.mtls) {
            if (auto md = h.headers.get(kPeerMetadataHeader)) {
                if (*md != info.peer_metadata_raw) {
                    info.peer_metadata_raw = std::string(*md);
                    info.peer_workload = decode_peer_metadata(*md);
                }
                rec.peer = info.peer_workload;
            }
            if (auto orig = h.headers.get(kOrigProtoHeader)) {
                st.client_protocol = *orig == "HTTP/1.0" ? http::Protocol::http10 : http::Protocol::http11;
                rec.protocol = protocol_name(st.client_protocol);
            }
        }
        h.headers.remove(kPeerMetadataHeader);
        h.headers.remove(kOrigProtoHeader);
    }
    for (std::string_view name : trace_header_names()) h.headers.remove(name);
    for_each_propagation_header(*rec.span, [&h](std::string_view name, std::string_view value) { h.headers.set(name, value); });
    h.headers.set("x-request-id", rec.request_id);
    rec.traceparent = value_or_empty(h.headers, "traceparent");
}

// --- route, fault, answer (outbound) ---------------------------------------------------------
// False when the request has been answered here.
asio::awaitable<bool> route(RequestState& st) {
    const ProxyConfig& config = *st.config;
    if (st.info.kind == ListenerKind::outbound_explicit && config.upstream) {
        st.target = &*config.upstream;
        co_return true;
    }
    HeadView view(st.head);
    view.source_ip = std::string_view(st.info.remote).substr(0, st.info.remote.rfind(':'));
    RouteResult r = config.routes ? resolve_route(*config.routes, view, st.info.original_dst, st.ctx.balancer,
                                                  st.ctx.telemetry.rng())
                                  : RouteResult{nullptr, ProxyError::no_route};
    st.route = r.route;
    st.destination = r.destination;
    if (r.cluster) st.in_flight.start(r.cluster, r.endpoint);
    if (st.route && st.route->fault) {
        const snapshot::Fault& f = *st.route->fault;
        if (f.delay && chance(f.delay_percent, st.ctx.telemetry.rng())) {
            asio::steady_timer delay(co_await asio::this_coro::executor);
            delay.expires_after(*f.delay);
            co_await delay.async_wait(asio::as_tuple(asio::use_awaitable));
            st.rec.flags = "DI";
            count_flag(st.ctx.stats, "DI");
        }
        if (f.abort_status && chance(f.abort_percent, st.ctx.telemetry.rng())) {
            co_await st.reply(LocalReply{*f.abort_status, "FI", "fault filter abort", {}, f.abort_grpc_status});
            co_return false;
        }
    }
    if (st.route && st.route->direct_response) {
        co_await st.reply(LocalReply{st.route->direct_response->first, "", st.route->direct_response->second, {}, {}});
        co_return false;
    }
    if (st.route && st.route->redirect) {
        st.location = redirect_location(*st.route, st.rec.authority, st.rec.path);
        co_await st.reply(LocalReply{st.route->redirect_code, "", "", st.location, {}});
        co_return false;
    }
    if (!r.target && !r.route && st.info.block_unknown_hosts &&
        (view.authority.empty() || !config.routes || !config.routes->find_host(view.authority))) {
        // Istio's block_all virtual host (REGISTRY_ONLY): a direct 502 for a host outside the
        // registry; a host the proxy knows is routed as on any address.
        st.ctx.stats.inc(Counter::downstream_rq_blackhole);
        co_await st.reply(LocalReply{502, "", "", {}, {}});
        co_return false;
    }
    if (!r.target) {
        co_await st.reply(r.error == ProxyError::no_healthy_upstream ? ProxyError::no_healthy_upstream
                                                                      : ProxyError::no_route);
        co_return false;
    }
    st.target = r.target;
    st.routed = true;
    co_return true;
}

// --- authorize (inbound): the app as target, XFCC, the service asked for, AuthorizationPolicy ---
asio::awaitable<bool> authorize(RequestState& st) {
    Downstream& info = st.info;
    const ProxyConfig& config = *st.config;
    if (!info.inbound_target) {
        UpstreamTarget t;
        t.address = config.app ? *config.app
                               : asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(),
                                                         info.original_dst ? info.original_dst->port() : 80);
        t.cluster = "inbound|" + std::to_string(t.address.port()) + "||";
        info.inbound_target = std::move(t.finalize());
        if (info.peer_identity && info.tls) info.xfcc = "By=" + info.tls->id.str() + ";URI=" + *info.peer_identity;
    }
    st.target = &*info.inbound_target;
    // The caller's identity, proven by its certificate; whatever it claimed is dropped.
    st.head.headers.remove("x-forwarded-client-cert");
    if (!info.xfcc.empty()) st.head.headers.set("x-forwarded-client-cert", info.xfcc);
    // The service asked for: the route table's name for the Host (else the address it was sent to).
    std::string_view host = st.rec.authority;
    host = host.substr(0, host.rfind(':') == std::string_view::npos || host.back() == ']' ? host.size() : host.rfind(':'));
    std::optional<ServiceNames> known;
    if (config.routes) known = inbound_service(*config.routes, st.rec.authority, info.original_dst);
    if (known) {
        // The snapshot's name for it (the FQDN), as Istio's destination reporter labels it.
        st.rec.service_host = std::move(known->host);
        st.rec.service_name = std::move(known->name);
        st.rec.service_ns = std::move(known->ns);
    } else if (!host.empty()) {
        st.rec.service_host = host;
    }
    if (info.original_dst) st.rec.service_port = info.original_dst->port();
    if (const authz::Engine* engine = config.authz.get()) {
        const authz::Result verdict = engine->evaluate(AuthzView(st.head, info));
        if (!verdict.audit_policy.empty()) st.ctx.stats.inc(Counter::rbac_audited);
        if (verdict.decision == authz::Decision::deny) {
            co_await st.reply(ProxyError::rbac_denied);
            co_return false;
        }
        st.ctx.stats.inc(Counter::rbac_allowed);
    }
    co_return true;
}

// --- rewrite: what the upstream request carries -------------------------------------------------
void rewrite(RequestState& st) {
    const UpstreamTarget& target = *st.target;
    RequestRecord& rec = st.rec;
    http::HeaderMap& h = st.head.headers;
    rec.upstream_cluster = target.cluster;
    rec.upstream_host = target.address_text;
    if (st.outbound) {
        rec.service_host = target.service_host;
        rec.service_name = target.service_name;
        rec.service_ns = target.service_ns;
        rec.service_port = target.service_port;
        rec.mtls = target.mtls;
        if (target.mtls) {
            if (target.expected_identity) rec.peer_principal = *target.expected_identity;
            if (!st.info.tls) st.info.tls = st.ctx.tls.current();  // this connection's own identity, once
            if (st.info.tls) rec.self_principal = st.info.tls->id.str();
            h.set(kPeerMetadataHeader, st.tcfg.peer_metadata);
        } else {
            h.remove(kPeerMetadataHeader);
        }
    }
    if (const snapshot::Route* r = st.route) {
        if (!r->rewrite_uri.empty()) st.head.path = rewritten_path(*r, st.head.path);
        if (!r->rewrite_authority.empty()) st.head.authority = r->rewrite_authority;
        apply_header_ops(h, r->request_headers);
        if (st.destination) apply_header_ops(h, st.destination->request);
    }
    // WebSocket (Istio allows it on every route) survives hop-by-hop stripping; other upgrades
    // are dropped, as Envoy drops upgrades it is not configured for. Expect: 100-continue is
    // answered by this proxy's codec, not forwarded.
    st.websocket = st.head.protocol != http::Protocol::http2 && is_websocket_upgrade(h);
    h.remove("expect");
    http::strip_hop_by_hop(h);
    if (st.websocket) {
        h.set("upgrade", "websocket");
        h.set("connection", "Upgrade");
    }
    if (rec.grpc) {
        // The client's grpc-timeout bounds the wait as a route timeout does (the shorter wins).
        if (auto v = h.get("grpc-timeout")) {
            if (auto ms = http::parse_grpc_timeout_ms(*v)) {
                auto at = st.tcfg.steady_clock() + std::chrono::milliseconds(*ms);
                if (!st.deadline || at < *st.deadline) {
                    st.deadline = at;
                    st.grpc_deadline = true;
                }
            }
        }
    }
}

// --- copy: whether a body a retry or a mirror may need again is kept ---------------------------
// Nothing is read here: the body streams to the first attempt (send_request), which keeps the
// copy as it goes, so a slow client's first bytes reach the upstream before its last are sent.
void plan_body_copy(RequestState& st) {
    st.request_has_body = !st.down.body_done();
    const snapshot::Route* r = st.route;
    st.wants_replay = st.request_has_body && r && st.config->routes && st.routed && !st.target->cluster.empty() &&
                      (r->retries.attempts > 0 || !r->mirrors.empty());
    if (!st.wants_replay) return;
    st.keep_copy = true;
    if (auto cl = st.head.headers.get("content-length")) {
        uint64_t length = 0;
        auto [p, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), length);
        if (ec == std::errc() && length > kMaxReplayBody) {  // known too large: never copied
            st.keep_copy = false;
            st.ctx.stats.inc(Counter::retry_or_shadow_abandoned);
            return;
        }
        if (ec == std::errc()) st.replay_body.reserve(length);
    }
}

// --- mirror: copies to mirror clusters, fire and forget --------------------------------------
// Sent once the whole body is known: before the first attempt for a request without one, after
// the first attempt has sent the body otherwise.
asio::awaitable<void> mirror(RequestState& st) {
    const snapshot::Route* r = st.route;
    if (st.mirrored || !r || !st.config->routes || r->mirrors.empty() || st.websocket) co_return;
    if (st.request_has_body && st.keep_copy && !st.body_complete) co_return;  // not yet
    st.mirrored = true;
    for (const snapshot::Mirror& m : r->mirrors) {
        if (!chance(m.percent, st.ctx.telemetry.rng())) continue;
        const snapshot::Cluster* mc = st.config->routes->cluster(m.cluster);
        if (!st.replayable()) {
            if (!st.wants_replay) st.ctx.stats.inc(Counter::retry_or_shadow_abandoned);
            continue;
        }
        if (st.ctx.mirrors_in_flight >= kMaxMirrorsInFlight) {
            st.ctx.stats.inc(Counter::upstream_rq_mirror_overflow);
            continue;
        }
        std::optional<size_t> mi;
        if (mc) mi = st.ctx.balancer.pick(*mc, nullptr, nullptr, st.ctx.telemetry.rng(), std::nullopt,
                                          &st.config->routes->health(*mc));
        if (!mi || st.config->routes->target(*mc, *mi).key.empty()) {
            st.ctx.stats.inc(Counter::upstream_rq_mirror_failed);
            continue;
        }
        http::RequestHead copy = st.head;
        copy.authority = shadow_authority(st.head.authority);
        ++st.ctx.mirrors_in_flight;
        asio::co_spawn(co_await asio::this_coro::executor,
                       send_mirror(std::move(copy), st.replay_body, st.config, mc, *mi, st.info.id, st.ctx),
                       asio::detached);
    }
}

// --- admit: circuit breaking (DestinationRule connectionPool) ----------------------------------
// Per cluster across workers: a request needs a slot under min(maxConnections, http2MaxRequests)
// (Envoy's max_requests, which bounds HTTP/1.1 too); over it, it waits as one of at most
// http1MaxPendingRequests, up to the connect timeout; beyond that it fails at once with UO.
asio::awaitable<bool> admit(RequestState& st) {
    const snapshot::Cluster* cluster = st.in_flight.cluster;
    if (!cluster || !st.config->routes) co_return true;
    ClusterState& cs = st.config->routes->state(*cluster);
    const snapshot::ConnectionLimits& lim = cluster->limits;
    const uint32_t cap = std::min(lim.max_connections, lim.http2_max_requests);
    if (!take_below(cs.requests, cap)) {
        bool admitted = false;
        if (lim.http2_max_requests > lim.max_connections && take_below(cs.pending, lim.http1_max_pending_requests)) {
            // Queued until a request of this cluster (on any worker) gives its slot back, or the
            // connect timeout passes.
            auto exec = co_await asio::this_coro::executor;
            struct Wait {
                explicit Wait(asio::any_io_executor ex) : timer(std::move(ex)) {}
                asio::steady_timer timer;
            };
            auto wait = std::make_shared<Wait>(exec);
            wait->timer.expires_after(lim.connect_timeout);
            auto waiter = std::make_shared<ClusterState::Waiter>();
            waiter->wake = [exec, wait] { asio::post(exec, [wait] { wait->timer.cancel(); }); };
            admitted = cs.take_or_queue(cap, waiter);
            if (!admitted) {
                co_await wait->timer.async_wait(asio::as_tuple(asio::use_awaitable));
                admitted = !cs.leave_queue(waiter);
            }
            cs.pending.fetch_sub(1, std::memory_order_relaxed);
        }
        if (!admitted) {
            st.log(cluster->name + ": circuit breaker open (UO)");
            co_await st.reply(ProxyError::overflow);
            co_return false;
        }
    }
    st.breaker.state = &cs;
    st.breaker.limit = cap;
    st.breaker_state = &cs;
    co_return true;
}

// Sends the request (head, body, trailers) on one attempt. none, or downstream_disconnect,
// connect_failure, refused_stream, overflow or upstream_reset.
ProxyError upstream_send_error(const error_code& ec) {
    if (ec == http2::Http2Error::connect_failed) return ProxyError::connect_failure;
    if (ec == http2::Http2Error::pool_overflow) return ProxyError::overflow;
    if (http2::is_retryable(ec)) return ProxyError::refused_stream;
    return ProxyError::upstream_reset;
}

// The upstream stopped taking the body: when it has answered already (an early 403 or 413), that
// answer goes to the client; otherwise the exchange failed.
ProxyError early_or_reset(const http::ClientStream& up) {
    return up.head_ready() ? ProxyError::none : ProxyError::upstream_reset;
}

asio::awaitable<ProxyError> send_request(RequestState& st, http::ClientStream& up, const http::RequestHead& head) {
    if (!st.request_has_body) {
        error_code ec = co_await up.send_head(head, true);
        co_return ec ? upstream_send_error(ec) : ProxyError::none;
    }
    if (error_code ec = co_await up.send_head(head, false)) co_return upstream_send_error(ec);
    // A retry: the copy of what the client has sent so far goes first (all of it when the body
    // has ended), then the rest as it comes.
    if (st.body_complete) {
        if (error_code ec = co_await up.send_body(st.replay_body, !st.request_trailers)) co_return upstream_send_error(ec);
        if (st.request_trailers) {
            if (error_code ec = co_await up.send_trailers(*st.request_trailers)) co_return upstream_send_error(ec);
        }
        co_return ProxyError::none;
    }
    if (!st.replay_body.empty()) {
        if (error_code ec = co_await up.send_body(st.replay_body, false)) co_return upstream_send_error(ec);
    }
    for (;;) {
        http::BodyPart part = co_await st.down.read_body(st.body_wait());
        switch (part.kind) {
            case http::BodyPart::Kind::error: co_return st.body_failure(part);
            case http::BodyPart::Kind::data: {
                // Each part is copied (while the copy is kept) before it goes: a failure of this
                // attempt leaves every byte the client sent for the next one.
                st.rec.request_body_bytes += part.data.size();
                st.copy_body(part.data);
                if (error_code ec = co_await up.send_body(part.data, false)) co_return early_or_reset(up);
                break;
            }
            case http::BodyPart::Kind::end: {
                if (part.trailers) st.request_trailers = *part.trailers;
                st.body_complete = st.keep_copy;
                error_code ec = part.trailers ? co_await up.send_trailers(*part.trailers) : co_await up.send_body({}, true);
                co_return ec ? early_or_reset(up) : ProxyError::none;
            }
        }
    }
}

// --- respond: the upstream's answer back to the client ----------------------------------------
asio::awaitable<void> respond(RequestState& st, http::ClientStream& up, http::ResponseHead& res) {
    RequestRecord& rec = st.rec;
    const UpstreamTarget& target = *st.target;
    // The peer sidecar's workload: read from the mesh side only, never shown to the app.
    if (st.outbound && target.mtls) {
        if (auto md = res.headers.get(kPeerMetadataHeader)) {
            if (*md != st.ctx.peer_cache_raw) {
                st.ctx.peer_cache_raw = std::string(*md);
                st.ctx.peer_cache = decode_peer_metadata(*md);
            }
            rec.peer = st.ctx.peer_cache;
        }
    }
    res.headers.remove(kPeerMetadataHeader);
    if (!st.outbound && rec.mtls) res.headers.set(kPeerMetadataHeader, st.tcfg.peer_metadata);
    if (st.route) {
        apply_header_ops(res.headers, st.route->response_headers);
        if (st.destination) apply_header_ops(res.headers, st.destination->response);
    }
    rec.status = res.status;
    if (rec.grpc) {
        if (auto g = grpc_status_of(res.headers)) rec.grpc_status = std::to_string(*g);
    }
    if (res.status == 101 && st.websocket) {
        // Switched: the 101 goes back, then bytes both ways until either side closes.
        http::strip_hop_by_hop(res.headers);
        res.headers.set("upgrade", "websocket");
        res.headers.set("connection", "Upgrade");
        rec.response_header_bytes = head_bytes(res.headers, 32);
        count_status(st.ctx.stats, res.status);
        st.ctx.stats.inc(Counter::downstream_cx_upgrades);
        co_await st.down.tunnel(res, up, rec.request_body_bytes, rec.response_body_bytes);
        up.finish(false);
        co_return;
    }
    http::strip_hop_by_hop(res.headers);
    rec.response_header_bytes = head_bytes(res.headers, 32);
    count_status(st.ctx.stats, res.status);
    // A body already here goes with the head (one write); none at all ends the stream with it.
    std::optional<http::BodyPart> first;
    if (up.body_ready()) first = co_await up.read_body(st.limits.stream_idle_timeout);
    const bool empty = first && first->kind == http::BodyPart::Kind::end && !first->trailers;
    if (error_code ec = co_await st.down.send_head(res, empty)) {
        rec.flags = "DC";
        up.finish(false);
        co_return;
    }
    if (empty) {
        up.finish(true);
        co_return;
    }
    for (;;) {
        http::BodyPart part;
        if (first) {
            part = *first;
            first.reset();
        } else {
            // Nothing to read yet: what the client's codec holds (the head) goes now.
            if (!up.body_ready()) {
                if (error_code ec = co_await st.down.flush()) {
                    rec.flags = "DC";
                    up.finish(false);
                    co_return;
                }
            }
            part = co_await up.read_body(st.limits.stream_idle_timeout);
        }
        error_code ec;
        switch (part.kind) {
            case http::BodyPart::Kind::data:
                rec.response_body_bytes += part.data.size();
                ec = co_await st.down.send_body(part.data, false);
                break;
            case http::BodyPart::Kind::end:
                if (part.trailers) {
                    if (rec.grpc) {
                        if (auto g = grpc_status_of(*part.trailers)) rec.grpc_status = std::to_string(*g);
                    }
                    ec = co_await st.down.send_trailers(*part.trailers);
                } else {
                    ec = co_await st.down.send_body({}, true);
                }
                if (ec) {
                    rec.flags = "DC";
                    up.finish(false);
                    co_return;
                }
                up.finish(true);
                co_return;
            case http::BodyPart::Kind::error:
                // The upstream died or stalled mid-body: the client cannot be told with a status
                // any more, so its stream is cut and it sees a truncated message, never a hang.
                if (part.error == boost::beast::error::timeout) {
                    st.ctx.stats.inc(Counter::downstream_rq_idle_timeout);
                    rec.flags = "SI";
                    st.log("upstream " + endpoint_text(target.address) + " sent no response byte for the stream idle timeout (SI)");
                } else {
                    st.ctx.stats.inc(Counter::upstream_rq_reset);
                    count_flag(st.ctx.stats, "UC");
                    rec.flags = "UC";
                    st.log("upstream " + endpoint_text(target.address) + " closed mid-response (UC)");
                }
                up.finish(false);
                st.down.reset();
                co_return;
        }
        if (ec) {
            rec.flags = "DC";
            up.finish(false);
            co_return;
        }
    }
}

// --- forward: attempts, retries, timeouts, outlier detection ------------------------------------
asio::awaitable<void> forward(RequestState& st) {
    WorkerContext& ctx = st.ctx;
    const Limits& limits = st.limits;
    const snapshot::Route* route = st.route;
    // Retries (the route's policy, Istio's default when it has none): for requests without a body
    // or whose body's copy is still kept (replayable: checked at each decision, as the copy may be
    // dropped while the body streams). Each retry waits a jittered exponential backoff from 25 ms
    // and goes to the cluster's next endpoint when it has another.
    const snapshot::RetryPolicy* retry =
        route && st.config->routes && st.routed && !st.target->cluster.empty() ? &route->retries
                                                                               : nullptr;
    uint32_t retries_left = retry ? retry->attempts : 0;
    uint32_t retries_done = 0;
    if (route && route->timeout) {
        auto at = st.tcfg.steady_clock() + *route->timeout;
        if (!st.deadline || at < *st.deadline) {
            st.deadline = at;
            st.grpc_deadline = false;
        }
    }
    // Outlier detection hears how each attempt went: a status, or 503 for a connect failure or
    // reset and 504 for a timeout, as Envoy maps its own errors.
    auto report_outcome = [&](unsigned status) {
        if (!st.in_flight.cluster || !st.config->routes) return;
        const ClusterHealth& health = st.config->routes->health(*st.in_flight.cluster);
        switch (health.report(st.in_flight.index, status)) {
            case ClusterHealth::Verdict::none: break;
            case ClusterHealth::Verdict::ejected:
                ctx.stats.inc(Counter::outlier_detection_ejections_enforced);
                st.log(st.in_flight.cluster->name + ": ejected " + endpoint_text(st.target->address) +
                       " (outlier detection, last answer " + std::to_string(status) + ")");
                break;
            case ClusterHealth::Verdict::overflow: ctx.stats.inc(Counter::outlier_detection_ejections_overflow); break;
        }
    };
    CounterSlot retry_slot;  // a retry in flight to the cluster, from the decision through its attempt
    // May this outcome be retried? The policy must cover it and the cluster's retries in flight
    // stay within maxRetries and the DestinationRule's retryBudget, if any.
    auto admit_retry = [&](const AttemptOutcome& o) -> bool {
        if (!retry || retries_left == 0 || !st.replayable() || !retry_covers(*retry, o))
            return false;
        retry_slot.release();  // the previous retry's attempt is over
        if (ClusterState* cs = st.breaker_state) {
            const uint32_t active = cs->requests.load(std::memory_order_relaxed) + cs->pending.load(std::memory_order_relaxed);
            static const snapshot::ConnectionLimits kNoLimits;
            const snapshot::ConnectionLimits& limits = st.in_flight.cluster ? st.in_flight.cluster->limits : kNoLimits;
            if (!take_below(cs->retries, retry_budget(active, limits))) {
                ctx.stats.inc(Counter::upstream_rq_retry_overflow);
                return false;
            }
            retry_slot.counter = &cs->retries;
        }
        return true;
    };
    auto retry_after_backoff = [&]() -> asio::awaitable<bool> {
        --retries_left;
        ++retries_done;
        ctx.stats.inc(Counter::upstream_rq_retry);
        const int64_t cap = std::min<int64_t>(int64_t{25} << std::min<uint32_t>(retries_done - 1, 4), 250);
        asio::steady_timer backoff(co_await asio::this_coro::executor);
        backoff.expires_after(std::chrono::milliseconds(static_cast<int64_t>(ctx.telemetry.rng()() % static_cast<uint64_t>(cap + 1))));
        co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
        if (st.deadline && st.tcfg.steady_clock() >= *st.deadline) co_return false;
        if (const snapshot::Cluster* c = st.in_flight.cluster; c && c->endpoints.size() > 1) {
            const std::optional<size_t> i = ctx.balancer.pick(*c, nullptr, nullptr, ctx.telemetry.rng(), st.in_flight.index,
                                                              &st.config->routes->health(*c));
            const UpstreamTarget* next = i ? &st.config->routes->target(*c, *i) : nullptr;
            if (next && !next->key.empty()) {
                st.target = next;
                st.in_flight.start(c, *i);
            }
        }
        st.rec.upstream_host = st.target->address_text;
        co_return true;
    };
    auto prepare_retry = [&](const AttemptOutcome& o) -> asio::awaitable<bool> {
        if (!admit_retry(o)) co_return false;
        co_return co_await retry_after_backoff();
    };
    // How long to wait for a response header on this attempt: the per-try timeout, never past
    // the deadline, else the stream idle timeout.
    auto header_wait = [&]() -> std::chrono::steady_clock::duration {
        std::chrono::steady_clock::duration wait = limits.stream_idle_timeout;
        if (retry && retry->per_try_timeout && *retry->per_try_timeout < wait) wait = *retry->per_try_timeout;
        if (st.deadline) {
            auto left = *st.deadline - st.tcfg.steady_clock();
            if (left < wait) wait = std::max(left, std::chrono::steady_clock::duration(std::chrono::milliseconds(1)));
        }
        return wait;
    };
    auto timeout_reply = [&]() {
        LocalReply r = reply_for(ProxyError::upstream_timeout);
        if (st.grpc_deadline) r.grpc_status = 4;  // DEADLINE_EXCEEDED: the client's own deadline passed
        return r;
    };
    auto fail = [&](ProxyError e) -> asio::awaitable<void> {
        co_await st.reply(e);
        if (retries_done && e == ProxyError::connect_failure) {
            st.rec.flags = "UF,URX";
            count_flag(ctx.stats, "URX");
        }
    };

    http::Protocol protocol = choose_upstream_protocol(*st.target, st.in_flight.cluster, *st.config,
                                                       st.client_protocol, st.websocket);
    // Inbound to a port declared HTTP: the app speaks HTTP/1.1, whatever the caller spoke (as
    // Istio's inbound cluster for an HTTP port). HTTP2/GRPC and undeclared ports keep HTTP/2.
    if (!st.outbound && protocol == http::Protocol::http2 && st.info.original_dst &&
        declared_protocol_at(*st.config, *st.info.original_dst) == Protocol::http1) {
        protocol = http::Protocol::http11;
    }
    // The head as the upstream gets it: an HTTP/1.x request carried over HTTP/2 to the peer
    // sidecar says which version it was, so the peer restores it.
    http::RequestHead& head = st.head;
    if (protocol == http::Protocol::http2 && st.client_protocol != http::Protocol::http2 && st.target->mtls) {
        head.headers.set(kOrigProtoHeader, protocol_name(st.client_protocol));
    }
    head.protocol = protocol;
    const uint32_t per_conn = st.in_flight.cluster ? st.in_flight.cluster->limits.max_requests_per_connection : 0;

    for (int attempt = 0;; ++attempt) {
        const UpstreamTarget& target = *st.target;  // a retry may have moved it
        // The route timeout covers the connect too, as Envoy's does: a connect still trying when
        // it passes ends in 504 UT, not in a UF after the (longer) connect timeout.
        auto budget = std::chrono::steady_clock::duration::max();
        if (st.deadline) {
            budget = std::max(*st.deadline - st.tcfg.steady_clock(),
                              std::chrono::steady_clock::duration(std::chrono::milliseconds(1)));
        }
        std::unique_ptr<http::ClientStream> up =
            co_await open_upstream(target, protocol, per_conn, limits, st.info.id, ctx, budget);
        if (!up && st.deadline && st.tcfg.steady_clock() >= *st.deadline) {
            report_outcome(504);
            st.log("upstream " + endpoint_text(target.address) + " could not be connected within the route timeout (UT)");
            co_await st.reply(timeout_reply());
            co_return;
        }
        if (!up) {
            report_outcome(503);
            if (co_await prepare_retry({ProxyError::connect_failure})) continue;
            co_await fail(ProxyError::connect_failure);
            co_return;
        }
        ctx.stats.inc(Counter::upstream_rq_total);
        if (protocol == http::Protocol::http2) ctx.stats.inc(Counter::upstream_rq_http2);
        const ProxyError sent = co_await send_request(st, *up, head);
        if (sent == ProxyError::downstream_disconnect) {
            st.rec.flags = "DC";  // the client went away
            up->finish(false);
            co_return;
        }
        if (sent == ProxyError::stream_idle_timeout || sent == ProxyError::request_timeout) {
            up->finish(false);  // the upstream's half-sent request is cut too
            co_await st.reply(sent);
            co_return;
        }
        if (sent != ProxyError::none) {
            up->finish(false);
            if (sent == ProxyError::upstream_reset) {
                ctx.stats.inc(Counter::upstream_rq_reset);
                // A pooled HTTP/1.1 connection the upstream had closed while idle: once more on a
                // fresh one, safe while nothing of the body has been consumed.
                if (up->reused() && attempt == 0 && st.replayable()) continue;
            }
            if (sent != ProxyError::overflow) report_outcome(503);
            if (sent != ProxyError::overflow && co_await prepare_retry({sent})) continue;
            co_await fail(sent);
            co_return;
        }
        st.rec.upstream_sent = st.tcfg.steady_clock();
        // The body is whole now, when a copy was kept for mirrors (no coroutine for routes without).
        if (!st.mirrored && route && !route->mirrors.empty()) co_await mirror(st);

        http::ResponseHead res;
        if (error_code ec = co_await up->read_head(res, header_wait())) {
            ctx.stats.inc(Counter::upstream_rq_reset);
            up->finish(false);
            const bool timeout = ec == boost::beast::error::timeout;
            const bool stale = ec == boost::beast::http::error::end_of_stream || ec == asio::error::eof ||
                               ec == asio::error::connection_reset;
            if (up->reused() && attempt == 0 && st.replayable() && stale) continue;
            report_outcome(timeout ? 504 : 503);
            const ProxyError why = timeout ? ProxyError::upstream_timeout
                                   : http2::is_retryable(ec) ? ProxyError::refused_stream
                                                             : ProxyError::upstream_reset;
            const bool timed_out = timeout && header_wait() < limits.stream_idle_timeout;
            if (timeout && !timed_out) {
                // No route timeout: the stream idle timeout ends the wait (Envoy's 504 SI).
                ctx.stats.inc(Counter::downstream_rq_idle_timeout);
                st.log("upstream " + endpoint_text(target.address) + " gave no response header within the stream idle timeout (SI)");
                co_await st.reply(ProxyError::response_idle_timeout);
                co_return;
            }
            if (co_await prepare_retry({why})) continue;
            st.log("upstream " + endpoint_text(target.address) +
                   (timed_out ? " gave no response header within the route timeout (UT)"
                              : " failed before the response header: " + ec.message()));
            if (timed_out) co_await st.reply(timeout_reply());
            else co_await fail(why == ProxyError::refused_stream ? ProxyError::refused_stream : ProxyError::upstream_reset);
            co_return;
        }
        st.rec.upstream_header = st.tcfg.steady_clock();
        const AttemptOutcome outcome{ProxyError::none, res.status, st.rec.grpc ? grpc_status_of(res.headers) : std::nullopt};
        report_outcome(res.status);
        if (admit_retry(outcome)) {
            up->finish(false);  // its body is not wanted: closing is simpler than draining it
            if (co_await retry_after_backoff()) continue;
            // The deadline passed during the backoff: the last answer is gone, so time out.
            co_await st.reply(timeout_reply());
            co_return;
        }
        if (retry && retries_done && retry_covers(*retry, outcome)) {
            st.rec.flags = "URX";  // retries used up: the last answer goes to the client
            count_flag(ctx.stats, "URX");
        }
        co_await respond(st, *up, res);
        co_return;
    }
}

}  // namespace

asio::awaitable<void> serve_request(http::ServerStream& down, Downstream& info, WorkerContext& ctx) {
    // The request runs on the newest configuration (routes, policies), taken as it begins.
    if (uint64_t g = ctx.config.generation(); g != info.config_generation) {
        info.config = ctx.config.current();
        info.config_generation = g;
    }
    ctx.stats.inc(Counter::downstream_rq_active);
    struct ActiveRequest {
        WorkerStats& s;
        ~ActiveRequest() { s.dec(Counter::downstream_rq_active); }
    } active{ctx.stats};
    RequestState st(down, info, ctx);
    RequestFinisher finisher{ctx.telemetry, st.rec};
    begin(st);
    finisher.armed = true;
    if (st.outbound ? !co_await route(st) : !co_await authorize(st)) co_return;
    rewrite(st);
    plan_body_copy(st);
    co_await mirror(st);
    if (!co_await admit(st)) co_return;
    co_await forward(st);
}

asio::awaitable<void> refuse_request(http::ServerStream& down, ProxyError why, Downstream& info, WorkerContext& ctx) {
    ctx.stats.inc(Counter::downstream_rq_total);
    RequestRecord rec;
    rec.outbound = info.outbound();
    rec.downstream_remote = info.remote;
    rec.downstream_local = info.local;
    ctx.telemetry.begin(rec, {}, {});
    RequestFinisher finisher{ctx.telemetry, rec, true};
    co_await send_local_reply(down, reply_for(why), rec, ctx.stats);
}

}  // namespace remora::proxy
