// Mirrored requests.
#include "proxy/request/mirror.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "proxy/request/upstream.h"
#include "proxy/telemetry/workload.h"

namespace remora::proxy {

namespace asio = boost::asio;

namespace {
// A mirror gets no longer than this for its whole exchange, so a slow target cannot pile them up.
constexpr std::chrono::seconds kMirrorTimeout{10};
}  // namespace

std::string shadow_authority(std::string_view host) {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos &&
        (host.front() != '[' || host[colon - 1] == ']')) {
        return std::string(host.substr(0, colon)) + "-shadow" + std::string(host.substr(colon));
    }
    return std::string(host) + "-shadow";
}

asio::awaitable<void> send_mirror(http::RequestHead head, std::string body,
                                  std::shared_ptr<const ProxyConfig> config, const snapshot::Cluster* cluster,
                                  size_t index, uint64_t conn_id, WorkerContext& ctx) {
    struct Slot {
        WorkerContext& ctx;
        const snapshot::Cluster& c;
        size_t i;
        ~Slot() {
            --ctx.mirrors_in_flight;
            ctx.balancer.finished(c, i);
        }
    } slot{ctx, *cluster, index};
    ctx.balancer.started(*cluster, index);
    const UpstreamTarget& target = config->routes->target(*cluster, index);
    const ClusterHealth& health = config->routes->health(*cluster);
    auto failed = [&](unsigned status, const std::string& why) {
        ctx.stats.inc(Counter::upstream_rq_mirror_failed);
        health.report(index, status);
        ctx.log("conn=" + std::to_string(conn_id) + " mirror to " + endpoint_text(target.address) + " (" +
                cluster->name + "): " + why);
    };
    if (target.mtls) {
        head.headers.set(kPeerMetadataHeader, ctx.telemetry.config().peer_metadata);
    } else {
        head.headers.remove(kPeerMetadataHeader);
    }
    const http::Protocol protocol = choose_upstream_protocol(target, cluster, *config, head.protocol, false);
    if (protocol != http::Protocol::http2 && head.protocol == http::Protocol::http2) head.protocol = http::Protocol::http11;
    if (protocol == http::Protocol::http2 && head.protocol != http::Protocol::http2 && target.mtls) {
        head.headers.set(kOrigProtoHeader, "HTTP/1.1");
    }
    std::unique_ptr<http::ClientStream> up =
        co_await open_upstream(target, protocol, cluster->limits.max_requests_per_connection, config->limits, conn_id, ctx);
    if (!up) {
        failed(503, "connect failed");
        co_return;
    }
    ctx.stats.inc(Counter::upstream_rq_mirror);
    const bool has_body = !body.empty();
    if (has_body) head.headers.set("content-length", std::to_string(body.size()));
    if (auto ec = co_await up->send_head(head, !has_body)) {
        failed(503, ec.message());
        co_return;
    }
    if (has_body) {
        if (auto ec = co_await up->send_body(body, true)) {
            failed(503, ec.message());
            co_return;
        }
    }
    http::ResponseHead res;
    if (auto ec = co_await up->read_head(res, kMirrorTimeout)) {
        failed(ec == boost::beast::error::timeout ? 504 : 503, ec.message());
        up->finish(false);
        co_return;
    }
    // The answer is thrown away, a piece at a time, within the mirror's time.
    const auto give_up = std::chrono::steady_clock::now() + kMirrorTimeout;
    for (;;) {
        const auto now = std::chrono::steady_clock::now();
        http::BodyPart part = co_await up->read_body(now < give_up ? give_up - now : std::chrono::milliseconds(1));
        if (part.kind == http::BodyPart::Kind::end) break;
        if (part.kind == http::BodyPart::Kind::error || std::chrono::steady_clock::now() > give_up) {
            failed(503, "response cut");
            up->finish(false);
            co_return;
        }
    }
    health.report(index, res.status);
    if (res.status >= 500) ctx.stats.inc(Counter::upstream_rq_mirror_failed);
    up->finish(true);
}

}  // namespace remora::proxy
