// The TCP proxy: outbound to mesh services over mTLS with the metadata exchange, inbound to the
// app, passthrough; Istio's TCP metrics (istio_tcp_*) for each.
#include "proxy/tcp/tcp_proxy.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <array>
#include <cstring>

#include "proxy/authz/authz.h"
#include "proxy/net/detect.h"
#include "proxy/tcp/splice.h"
#include "proxy/upstream/connect.h"

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

std::string peer_exchange_preamble(std::string_view metadata, std::string_view service_host) {
    std::string body;
    body.reserve(metadata.size() + 1 + service_host.size());
    body.append(metadata).append("\n").append(service_host);
    std::string out(kPeerExchangeMagic);
    const auto n = static_cast<uint32_t>(body.size());
    out.push_back(static_cast<char>(n >> 24));
    out.push_back(static_cast<char>(n >> 16));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
    return out + body;
}

std::optional<size_t> parse_peer_exchange(std::string_view bytes, PeerExchange& out) {
    const size_t have = std::min(bytes.size(), kPeerExchangeMagic.size());
    if (bytes.substr(0, have) != kPeerExchangeMagic.substr(0, have)) return std::nullopt;
    if (bytes.size() < kPeerExchangeMagic.size() + 4) return 0;
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + kPeerExchangeMagic.size();
    const uint32_t n = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    if (n > kMaxPeerExchangeBytes) return std::nullopt;
    const size_t total = kPeerExchangeMagic.size() + 4 + n;
    if (bytes.size() < total) return 0;
    std::string_view body = bytes.substr(kPeerExchangeMagic.size() + 4, n);
    const size_t nl = body.find('\n');
    out.peer = decode_peer_metadata(body.substr(0, nl));
    out.service_host = nl == std::string_view::npos ? std::string() : std::string(body.substr(nl + 1));
    return total;
}

namespace {

using splice_detail::socket_of;

// The connection's access-log line (Envoy's tcp_proxy access log), written when the connection
// ends, whichever way it ends. The byte counts are kept apart from the metric series, which
// exist only while metrics are on.
struct TcpLog {
    WorkerTelemetry& telemetry;
    TcpRecord rec;
    std::atomic<uint64_t> received{0}, sent{0};
    TcpLog(WorkerTelemetry& t, const Downstream& info, bool outbound) : telemetry(t) {
        telemetry.begin(rec);
        rec.outbound = outbound;
        rec.downstream_remote = info.remote;
        // Where the client connected, as Envoy's original-destination listeners report it.
        rec.downstream_local = info.original_dst ? endpoint_text(*info.original_dst) : info.local;
        rec.sni = info.sni;
        if (info.peer_identity) rec.peer_principal = *info.peer_identity;
    }
    TcpLog(const TcpLog&) = delete;
    TcpLog& operator=(const TcpLog&) = delete;
    ~TcpLog() {
        rec.bytes_received = received.load(std::memory_order_relaxed);
        rec.bytes_sent = sent.load(std::memory_order_relaxed);
        telemetry.finish(rec);
    }
    // `n` bytes from the downstream (or to it) written outside splice (detection's prefix, the
    // bytes that followed the metadata exchange).
    void count_received(TcpSeries* series, size_t n) {
        received.fetch_add(n, std::memory_order_relaxed);
        if (series) series->received.fetch_add(n, std::memory_order_relaxed);
    }
    void count_sent(TcpSeries* series, size_t n) {
        sent.fetch_add(n, std::memory_order_relaxed);
        if (series) series->sent.fetch_add(n, std::memory_order_relaxed);
    }
    void upstream(const std::string& cluster, const tcp::endpoint& host) {
        rec.upstream_cluster = cluster;
        rec.upstream_host = endpoint_text(host);
    }
    void upstream_local(const tcp::socket& s) {
        boost::system::error_code ec;
        tcp::endpoint local = s.local_endpoint(ec);
        if (!ec) rec.upstream_local = endpoint_text(local);
    }
};

// Envoy's words for a failed connect (UPSTREAM_TRANSPORT_FAILURE_REASON).
std::string connect_failure_reason(const boost::system::error_code& ec, bool timed_out) {
    if (timed_out) return "connect timeout";
    return "delayed connect error: " + std::to_string(ec.value());
}

// Both directions, counted in the metric series and the access-log line; true when the idle
// timeout closed the connection (said in the line's termination details).
template <class Down, class Up>
asio::awaitable<bool> splice(Down& down, Up& up, std::chrono::steady_clock::duration idle,
                             TcpSeries* series, TcpLog& log) {
    const bool idled =
        co_await remora::proxy::splice(down, up, idle, series ? &series->received : nullptr,
                                       series ? &series->sent : nullptr, &log.received, &log.sent);
    if (idled) log.rec.termination_details = "tcp_session_idle_timeout";
    co_return idled;
}

// Reads the peer's preamble; bytes that came after it are left in `extra`.
template <class Stream>
asio::awaitable<std::optional<PeerExchange>> read_peer_exchange(Stream& s, std::string& extra,
                                                                 std::chrono::steady_clock::duration timeout) {
    // The deadline cancels the read; its handler may run after this returns, so it shares only
    // `state` and touches the socket only while the read is still pending (not `done`).
    struct Deadline {
        bool fired = false, done = false;
    };
    auto state = std::make_shared<Deadline>();
    tcp::socket* sock = &socket_of(s);
    asio::steady_timer deadline(co_await asio::this_coro::executor);
    deadline.expires_after(timeout);
    deadline.async_wait([state, sock](boost::system::error_code ec) {
        if (ec || state->done) return;
        state->fired = true;
        boost::system::error_code ignored;
        sock->cancel(ignored);
    });
    std::array<char, 2048> buf;
    PeerExchange out;
    std::optional<PeerExchange> result;
    for (;;) {
        std::optional<size_t> used = parse_peer_exchange(extra, out);
        if (!used) break;
        if (*used > 0) {
            extra.erase(0, *used);
            result = std::move(out);
            break;
        }
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_nothrow);
        if (ec || state->fired) break;
        extra.append(buf.data(), n);
    }
    state->done = true;
    deadline.cancel();
    co_return result;
}

// An outbound TCP connection's guard: LEAST_REQUEST's count and the cluster's connection breaker.
struct ConnectionSlot {
    WorkerBalancer& balancer;
    const snapshot::Cluster* cluster = nullptr;
    size_t index = 0;
    CounterSlot breaker;
    ~ConnectionSlot() {
        if (cluster) balancer.finished(*cluster, index);
    }
};

// consistentHash useSourceIp for TCP: the request is only its source address.
struct SourceOnly final : RequestView {
    std::optional<std::string_view> header(std::string_view) const override { return std::nullopt; }
};

std::chrono::steady_clock::duration tcp_idle_timeout(const snapshot::Cluster* cluster) {
    if (cluster && cluster->limits.tcp_idle_timeout) {
        // 0s turns the timeout off, as in Envoy (a decade stands for never).
        if (cluster->limits.tcp_idle_timeout->count() == 0) return std::chrono::hours(24 * 365 * 10);
        return *cluster->limits.tcp_idle_timeout;
    }
    return kDefaultTcpIdleTimeout;
}

TcpSeries* open_series(WorkerContext& ctx, const MetricLabels& labels) {
    if (!ctx.telemetry.config().metrics) return nullptr;
    TcpSeries* s = ctx.telemetry.metrics().tcp_series(labels);
    if (s) s->opened.fetch_add(1, std::memory_order_relaxed);
    return s;
}

struct SeriesClose {
    TcpSeries* series = nullptr;
    ~SeriesClose() {
        if (series) series->closed.fetch_add(1, std::memory_order_relaxed);
    }
};

// An inbound TCP connection as AuthorizationPolicy sees it: only its L4 facts.
struct TcpAuthzRequest final : authz::Request {
    std::optional<std::string_view> header(std::string_view) const override { return std::nullopt; }
};

// AuthorizationPolicy on an inbound TCP connection: true when it may go on. Istio's rules for
// TCP: a rule that needs an HTTP attribute never matches in ALLOW and always in DENY.
bool authorize_tcp(const Downstream& info, WorkerContext& ctx, TcpLog& log) {
    const authz::Engine* engine = info.config->authz.get();
    if (!engine) return true;
    TcpAuthzRequest req;
    req.tcp = true;
    std::string_view id;
    if (info.peer_identity) {
        id = *info.peer_identity;
        if (id.starts_with("spiffe://")) id.remove_prefix(9);
        req.principal = id;
    }
    req.source_ip = info.remote_ip;
    if (info.original_dst) {
        req.destination_ip = info.original_dst->address();
        req.destination_port = info.original_dst->port();
    }
    const authz::Result verdict = engine->evaluate(req);
    if (!verdict.audit_policy.empty()) ctx.stats.inc(Counter::rbac_audited);
    if (verdict.decision == authz::Decision::deny) {
        ctx.stats.inc(Counter::rbac_denied);
        ctx.stats.inc(Counter::downstream_cx_tcp_rbac_denied);
        // Envoy's network RBAC filter's words; "none" when no ALLOW policy matched.
        log.rec.termination_details =
            "rbac_access_denied_matched_policy[" +
            (verdict.policy.empty() ? std::string("none") : std::string(verdict.policy)) + "]";
        ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + " TCP connection denied by " +
                (verdict.policy.empty() ? std::string("default (no ALLOW policy matched)")
                                        : std::string(verdict.policy) + " rule " + std::to_string(verdict.rule)) +
                " (RBAC)");
        return false;
    }
    ctx.stats.inc(Counter::rbac_allowed);
    return true;
}

template <class Down>
asio::awaitable<void> serve_inbound_tcp(Down& down, std::string prefix, bool peer_exchange, Downstream& info,
                                        WorkerContext& ctx) {
    ctx.stats.inc(Counter::downstream_cx_tcp);
    const TelemetryConfig& tcfg = ctx.telemetry.config();
    const Limits& limits = info.config->limits;
    TcpLog log(ctx.telemetry, info, false);
    PeerExchange mx;
    if (peer_exchange) {
        auto got = co_await read_peer_exchange(down, prefix, limits.request_header_timeout);
        if (!got) {
            ctx.stats.inc(Counter::downstream_cx_peer_exchange_failed);
            ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + ": no metadata exchange preamble");
            co_return;
        }
        mx = std::move(*got);
    }
    if (!authorize_tcp(info, ctx, log)) co_return;

    const tcp::endpoint app = info.config->app ? *info.config->app
                                               : tcp::endpoint(asio::ip::address_v4::loopback(),
                                                               info.original_dst ? info.original_dst->port() : 0);
    tcp::socket up(co_await asio::this_coro::executor);
    asio::steady_timer connect_deadline(up.get_executor());
    connect_deadline.expires_after(limits.connect_timeout);
    auto result = co_await (up.async_connect(app, use_nothrow) || connect_deadline.async_wait(use_nothrow));
    ctx.stats.inc(Counter::upstream_cx_total);
    log.upstream("inbound|" + std::to_string(app.port()) + "||", app);
    if (result.index() != 0 || std::get<0>(std::get<0>(result))) {
        ctx.stats.inc(Counter::upstream_cx_connect_fail);
        log.rec.flags = "UF";
        log.rec.transport_failure = connect_failure_reason(
            result.index() == 0 ? std::get<0>(std::get<0>(result)) : boost::system::error_code(),
            result.index() != 0);
        ctx.log("conn=" + std::to_string(info.id) + " inbound TCP to the app at " + endpoint_text(app) +
                " failed to connect (UF)");
        co_return;
    }
    boost::system::error_code ec;
    up.set_option(tcp::no_delay(true), ec);
    log.upstream_local(up);

    MetricLabels labels;
    labels[Label::reporter] = "destination";
    fill_workload(labels, false, tcfg.self);
    if (mx.peer) fill_workload(labels, true, *mx.peer);
    const bool mtls = info.tls != nullptr;
    labels[Label::source_principal] = info.peer_identity.value_or("unknown");
    labels[Label::destination_principal] = mtls ? info.tls->id.str() : "unknown";
    labels[Label::connection_security_policy] = mtls ? "mutual_tls" : "none";
    if (!mx.service_host.empty()) {
        labels[Label::destination_service] = mx.service_host;
        std::string_view h = mx.service_host;
        const size_t dot = h.find('.');
        labels[Label::destination_service_name] = std::string(h.substr(0, dot));
        if (dot != std::string_view::npos) {
            std::string_view rest = h.substr(dot + 1);
            labels[Label::destination_service_namespace] = std::string(rest.substr(0, rest.find('.')));
        }
    }
    labels[Label::request_protocol] = "tcp";
    labels[Label::response_flags] = "-";
    TcpSeries* series = open_series(ctx, labels);
    SeriesClose closer{series};

    if (peer_exchange) {
        // Our own preamble first: the peer sidecar reads it before anything from the app.
        const std::string own = peer_exchange_preamble(tcfg.peer_metadata, "");
        auto [wec, wn] = co_await asio::async_write(down, asio::buffer(own), use_nothrow);
        if (wec) co_return;
    }
    if (!prefix.empty()) {
        auto [wec, wn] = co_await asio::async_write(up, asio::buffer(prefix), use_nothrow);
        if (wec) co_return;
        log.count_received(series, prefix.size());
    }
    if (co_await splice(down, up, kDefaultTcpIdleTimeout, series, log))
        ctx.stats.inc(Counter::tcp_idle_timeout);
}

}  // namespace

asio::awaitable<void> inbound_tcp(TlsStream& down, std::string prefix, bool peer_exchange, Downstream& info,
                                  WorkerContext& ctx) {
    co_await serve_inbound_tcp(down, std::move(prefix), peer_exchange, info, ctx);
}

asio::awaitable<void> inbound_tcp(PlainStream& down, std::string prefix, Downstream& info, WorkerContext& ctx) {
    co_await serve_inbound_tcp(down, std::move(prefix), false, info, ctx);
}

asio::awaitable<void> outbound_tcp(tcp::socket down, std::string prefix, Downstream& info, WorkerContext& ctx) {
    ctx.stats.inc(Counter::downstream_cx_tcp);
    const ProxyConfig& cfg = *info.config;
    const TelemetryConfig& tcfg = ctx.telemetry.config();
    const tcp::endpoint dst = *info.original_dst;
    TcpLog log(ctx.telemetry, info, true);
    ConnectionSlot slot{ctx.balancer, nullptr, 0, {}};
    const UpstreamTarget* target = nullptr;
    if (cfg.routes) {
        const snapshot::VirtualHost* vh = cfg.routes->find_address(dst);
        // TLS the app originated: the first tls[] route whose sniHosts name the ClientHello's
        // server, else the port's TCP route.
        const std::vector<snapshot::WeightedCluster>* clusters = vh ? &vh->tcp_clusters : nullptr;
        if (vh && !info.sni.empty()) {
            for (const snapshot::TlsRoute& t : vh->tls_routes) {
                if (std::any_of(t.sni_hosts.begin(), t.sni_hosts.end(),
                                [&](const std::string& h) { return sni_matches(h, info.sni); })) {
                    clusters = &t.clusters;
                    ctx.stats.inc(Counter::tls_sni_route);
                    break;
                }
            }
        }
        const snapshot::WeightedCluster* wc = clusters ? pick_weighted(*clusters, ctx.telemetry.rng()) : nullptr;
        const snapshot::Cluster* cluster = wc ? cfg.routes->cluster(wc->cluster) : nullptr;
        if (!cluster) {
            ctx.stats.inc(Counter::rq_flag_nr);
            log.rec.flags = "NR";
            ctx.log("conn=" + std::to_string(info.id) + " TCP to " + endpoint_text(dst) + ": no route (NR)");
            co_return;
        }
        SourceOnly view;
        if (info.remote_ip) view.source_ip = std::string_view(info.remote).substr(0, info.remote.rfind(':'));
        const std::optional<size_t> i = ctx.balancer.pick(*cluster, cfg.routes->ring(*cluster), &view,
                                                          ctx.telemetry.rng(), std::nullopt,
                                                          &cfg.routes->health(*cluster));
        log.rec.upstream_cluster = cluster->name;
        if (i) target = &cfg.routes->target(*cluster, *i);
        if (!i || target->key.empty()) {
            ctx.stats.inc(Counter::rq_flag_uh);
            log.rec.flags = "UH";
            ctx.log("conn=" + std::to_string(info.id) + " TCP to " + cluster->name + ": no healthy upstream (UH)");
            co_return;
        }
        ClusterState& st = cfg.routes->state(*cluster);
        if (!take_below(st.connections, cluster->limits.max_connections)) {
            ctx.stats.inc(Counter::rq_flag_uo);
            log.rec.flags = "UO";
            ctx.log("conn=" + std::to_string(info.id) + " TCP to " + cluster->name + ": circuit breaker open (UO)");
            co_return;
        }
        slot.breaker.counter = &st.connections;
        slot.cluster = cluster;
        slot.index = *i;
        ctx.balancer.started(*cluster, *i);
    } else {
        if (!cfg.upstream) {
            ctx.stats.inc(Counter::rq_flag_nr);
            log.rec.flags = "NR";
            co_return;
        }
        target = &*cfg.upstream;
    }
    log.upstream(target->cluster, target->address);

    std::unique_ptr<UpstreamConn> conn = co_await connect_upstream(
        *target, cfg.limits, info.id, ctx, target->mtls ? kAlpnTcp : std::string_view());
    if (!conn) {
        ctx.stats.inc(Counter::rq_flag_uf);
        log.rec.flags = "UF";
        if (slot.cluster) cfg.routes->health(*slot.cluster).report(slot.index, 503);
        co_return;  // the app sees its connection closed, as Envoy's tcp_proxy does on UF
    }
    if (slot.cluster) cfg.routes->health(*slot.cluster).report(slot.index, 200);

    MetricLabels labels;
    labels[Label::reporter] = "source";
    fill_workload(labels, true, tcfg.self);
    if (!target->service_host.empty()) labels[Label::destination_service] = target->service_host;
    if (!target->service_name.empty())
        labels[Label::destination_service_name] = target->service_name;
    if (!target->service_ns.empty())
        labels[Label::destination_service_namespace] = target->service_ns;
    labels[Label::request_protocol] = "tcp";
    labels[Label::response_flags] = "-";
    labels[Label::connection_security_policy] = "unknown";
    const auto idle = tcp_idle_timeout(slot.cluster);

    PlainStream app(std::move(down));
    if (auto* tls = std::get_if<TlsStream>(&conn->stream)) {
        beast::get_lowest_layer(*tls).expires_never();  // the connect deadline ends here
        log.upstream_local(socket_of(*tls));
        if (target->expected_identity)
            log.rec.peer_principal = *target->expected_identity;  // verified
        const bool mx = negotiated_alpn(tls->native_handle()) == kAlpnPeerExchange;
        labels[Label::source_principal] = conn->tls ? conn->tls->id.str() : "unknown";
        labels[Label::destination_principal] = target->expected_identity.value_or("unknown");
        std::string first =
            mx ? peer_exchange_preamble(tcfg.peer_metadata, target->service_host) : std::string();
        first += prefix;
        if (!first.empty()) {
            auto [wec, wn] = co_await asio::async_write(*tls, asio::buffer(first), use_nothrow);
            if (wec) co_return;
        }
        std::string extra;
        if (mx) {
            auto got = co_await read_peer_exchange(*tls, extra, cfg.limits.connect_timeout);
            if (!got) {
                ctx.stats.inc(Counter::downstream_cx_peer_exchange_failed);
                ctx.log("conn=" + std::to_string(info.id) + " TCP to " +
                        endpoint_text(target->address) +
                        ": the peer sidecar closed it before its metadata exchange (refused by its "
                        "AuthorizationPolicy, or no app on the port?)");
                co_return;
            }
            if (got->peer) fill_workload(labels, false, *got->peer);
        }
        TcpSeries* series = open_series(ctx, labels);
        SeriesClose closer{series};
        log.count_received(series, prefix.size());
        if (!extra.empty()) {
            auto [wec, wn] = co_await asio::async_write(app, asio::buffer(extra), use_nothrow);
            if (wec) co_return;
            log.count_sent(series, extra.size());
        }
        if (co_await splice(app, *tls, idle, series, log)) ctx.stats.inc(Counter::tcp_idle_timeout);
    } else if (auto* plain = std::get_if<PlainStream>(&conn->stream)) {
        plain->expires_never();
        log.upstream_local(socket_of(*plain));
        TcpSeries* series = open_series(ctx, labels);
        SeriesClose closer{series};
        if (!prefix.empty()) {
            auto [wec, wn] = co_await asio::async_write(*plain, asio::buffer(prefix), use_nothrow);
            if (wec) co_return;
            log.count_received(series, prefix.size());
        }
        if (co_await splice(app, *plain, idle, series, log))
            ctx.stats.inc(Counter::tcp_idle_timeout);
    }
}

asio::awaitable<void> passthrough(tcp::socket down, std::string prefix, Downstream& info, WorkerContext& ctx) {
    ctx.stats.inc(Counter::downstream_cx_passthrough);
    const tcp::endpoint dst = *info.original_dst;
    TcpLog log(ctx.telemetry, info, true);
    log.upstream("PassthroughCluster", dst);
    tcp::socket up(down.get_executor());
    asio::steady_timer connect_deadline(down.get_executor());
    connect_deadline.expires_after(info.config->limits.connect_timeout);
    auto result = co_await (up.async_connect(dst, use_nothrow) || connect_deadline.async_wait(use_nothrow));
    if (result.index() != 0 || std::get<0>(std::get<0>(result))) {
        ctx.stats.inc(Counter::upstream_cx_connect_fail);
        log.rec.flags = "UF";
        log.rec.transport_failure = connect_failure_reason(
            result.index() == 0 ? std::get<0>(std::get<0>(result)) : boost::system::error_code(),
            result.index() != 0);
        ctx.log("conn=" + std::to_string(info.id) + " passthrough to " + endpoint_text(dst) +
                " failed to connect");
        co_return;
    }
    log.upstream_local(up);
    TcpSeries* series = nullptr;
    if (ctx.telemetry.config().metrics) {
        series = ctx.telemetry.metrics().tcp_series(passthrough_labels(endpoint_text(dst), ctx.telemetry.config()));
    }
    if (series) series->opened.fetch_add(1, std::memory_order_relaxed);
    SeriesClose closer{series};
    if (!prefix.empty()) {
        auto [wec, wn] = co_await asio::async_write(up, asio::buffer(prefix), use_nothrow);
        if (wec) co_return;
        log.count_received(series, prefix.size());
    }
    if (co_await splice(down, up, info.config->limits.stream_idle_timeout, series, log)) {
        ctx.stats.inc(Counter::tcp_idle_timeout);
    }
}

}  // namespace remora::proxy
