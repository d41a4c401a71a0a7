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

// Both directions; true when the idle timeout closed the connection.
template <class Down, class Up>
asio::awaitable<bool> splice(Down& down, Up& up, std::chrono::steady_clock::duration idle, TcpSeries* series) {
    co_return co_await remora::proxy::splice(down, up, idle, series ? &series->received : nullptr,
                                             series ? &series->sent : nullptr);
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
    if (cluster && cluster->limits.idle_timeout) return *cluster->limits.idle_timeout;
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
bool authorize_tcp(const Downstream& info, WorkerContext& ctx) {
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
    if (!authorize_tcp(info, ctx)) co_return;

    const tcp::endpoint app = info.config->app ? *info.config->app
                                               : tcp::endpoint(asio::ip::address_v4::loopback(),
                                                               info.original_dst ? info.original_dst->port() : 0);
    tcp::socket up(co_await asio::this_coro::executor);
    asio::steady_timer connect_deadline(up.get_executor());
    connect_deadline.expires_after(limits.connect_timeout);
    auto result = co_await (up.async_connect(app, use_nothrow) || connect_deadline.async_wait(use_nothrow));
    ctx.stats.inc(Counter::upstream_cx_total);
    if (result.index() != 0 || std::get<0>(std::get<0>(result))) {
        ctx.stats.inc(Counter::upstream_cx_connect_fail);
        ctx.log("conn=" + std::to_string(info.id) + " inbound TCP to the app at " + endpoint_text(app) +
                " failed to connect (UF)");
        co_return;
    }
    boost::system::error_code ec;
    up.set_option(tcp::no_delay(true), ec);

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
        if (series) series->received.fetch_add(prefix.size(), std::memory_order_relaxed);
    }
    if (co_await splice(down, up, kDefaultTcpIdleTimeout, series)) ctx.stats.inc(Counter::tcp_idle_timeout);
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
    ConnectionSlot slot{ctx.balancer, nullptr, 0, {}};
    UpstreamTarget target;
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
            ctx.log("conn=" + std::to_string(info.id) + " TCP to " + endpoint_text(dst) + ": no route (NR)");
            co_return;
        }
        SourceOnly view;
        if (info.remote_ip) view.source_ip = std::string_view(info.remote).substr(0, info.remote.rfind(':'));
        const std::optional<size_t> i = ctx.balancer.pick(*cluster, cfg.routes->ring(*cluster), &view,
                                                          ctx.telemetry.rng(), std::nullopt,
                                                          &cfg.routes->health(*cluster));
        if (!i) {
            ctx.stats.inc(Counter::rq_flag_uh);
            ctx.log("conn=" + std::to_string(info.id) + " TCP to " + cluster->name + ": no healthy upstream (UH)");
            co_return;
        }
        ClusterState& st = cfg.routes->state(*cluster);
        if (!take_below(st.connections, cluster->limits.max_connections)) {
            ctx.stats.inc(Counter::rq_flag_uo);
            ctx.log("conn=" + std::to_string(info.id) + " TCP to " + cluster->name + ": circuit breaker open (UO)");
            co_return;
        }
        slot.breaker.counter = &st.connections;
        target = target_for(*cluster, *i);
        slot.cluster = cluster;
        slot.index = *i;
        ctx.balancer.started(*cluster, *i);
    } else {
        if (!cfg.upstream) {
            ctx.stats.inc(Counter::rq_flag_nr);
            co_return;
        }
        target = *cfg.upstream;
    }

    std::unique_ptr<UpstreamConn> conn =
        co_await connect_upstream(target, cfg.limits, info.id, ctx, target.mtls ? kAlpnTcp : std::string_view());
    if (!conn) {
        ctx.stats.inc(Counter::rq_flag_uf);
        if (slot.cluster) cfg.routes->health(*slot.cluster).report(slot.index, 503);
        co_return;  // the app sees its connection closed, as Envoy's tcp_proxy does on UF
    }
    if (slot.cluster) cfg.routes->health(*slot.cluster).report(slot.index, 200);

    MetricLabels labels;
    labels[Label::reporter] = "source";
    fill_workload(labels, true, tcfg.self);
    if (!target.service_host.empty()) labels[Label::destination_service] = target.service_host;
    if (!target.service_name.empty()) labels[Label::destination_service_name] = target.service_name;
    if (!target.service_ns.empty()) labels[Label::destination_service_namespace] = target.service_ns;
    labels[Label::request_protocol] = "tcp";
    labels[Label::response_flags] = "-";
    labels[Label::connection_security_policy] = "unknown";
    const auto idle = tcp_idle_timeout(slot.cluster);

    PlainStream app(std::move(down));
    if (auto* tls = std::get_if<TlsStream>(&conn->stream)) {
        beast::get_lowest_layer(*tls).expires_never();  // the connect deadline ends here
        const bool mx = negotiated_alpn(tls->native_handle()) == kAlpnPeerExchange;
        labels[Label::source_principal] = conn->tls ? conn->tls->id.str() : "unknown";
        labels[Label::destination_principal] = target.expected_identity.value_or("unknown");
        std::string first = mx ? peer_exchange_preamble(tcfg.peer_metadata, target.service_host) : std::string();
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
                ctx.log("conn=" + std::to_string(info.id) + " TCP to " + endpoint_text(target.address) +
                        ": the peer sidecar closed it before its metadata exchange (refused by its "
                        "AuthorizationPolicy, or no app on the port?)");
                co_return;
            }
            if (got->peer) fill_workload(labels, false, *got->peer);
        }
        TcpSeries* series = open_series(ctx, labels);
        SeriesClose closer{series};
        if (series) series->received.fetch_add(prefix.size(), std::memory_order_relaxed);
        if (!extra.empty()) {
            auto [wec, wn] = co_await asio::async_write(app, asio::buffer(extra), use_nothrow);
            if (wec) co_return;
            if (series) series->sent.fetch_add(extra.size(), std::memory_order_relaxed);
        }
        if (co_await splice(app, *tls, idle, series)) ctx.stats.inc(Counter::tcp_idle_timeout);
    } else if (auto* plain = std::get_if<PlainStream>(&conn->stream)) {
        plain->expires_never();
        TcpSeries* series = open_series(ctx, labels);
        SeriesClose closer{series};
        if (!prefix.empty()) {
            auto [wec, wn] = co_await asio::async_write(*plain, asio::buffer(prefix), use_nothrow);
            if (wec) co_return;
            if (series) series->received.fetch_add(prefix.size(), std::memory_order_relaxed);
        }
        if (co_await splice(app, *plain, idle, series)) ctx.stats.inc(Counter::tcp_idle_timeout);
    }
}

asio::awaitable<void> passthrough(tcp::socket down, std::string prefix, Downstream& info, WorkerContext& ctx) {
    ctx.stats.inc(Counter::downstream_cx_passthrough);
    const tcp::endpoint dst = *info.original_dst;
    tcp::socket up(down.get_executor());
    asio::steady_timer connect_deadline(down.get_executor());
    connect_deadline.expires_after(info.config->limits.connect_timeout);
    auto result = co_await (up.async_connect(dst, use_nothrow) || connect_deadline.async_wait(use_nothrow));
    if (result.index() != 0 || std::get<0>(std::get<0>(result))) {
        ctx.stats.inc(Counter::upstream_cx_connect_fail);
        ctx.log("conn=" + std::to_string(info.id) + " passthrough to " + endpoint_text(dst) +
                " failed to connect");
        co_return;
    }
    TcpSeries* series = nullptr;
    if (ctx.telemetry.config().metrics) {
        series = ctx.telemetry.metrics().tcp_series(passthrough_labels(endpoint_text(dst), ctx.telemetry.config()));
    }
    if (series) series->opened.fetch_add(1, std::memory_order_relaxed);
    SeriesClose closer{series};
    if (!prefix.empty()) {
        auto [wec, wn] = co_await asio::async_write(up, asio::buffer(prefix), use_nothrow);
        if (wec) co_return;
        if (series) series->received.fetch_add(prefix.size(), std::memory_order_relaxed);
    }
    if (co_await splice(down, up, info.config->limits.stream_idle_timeout, series)) {
        ctx.stats.inc(Counter::tcp_idle_timeout);
    }
}

}  // namespace remora::proxy
