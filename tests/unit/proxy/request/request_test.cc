// The request path's protocol-neutral pieces, without sockets: retry conditions (retryOn parsed
// once, gRPC statuses read from the response head), local replies answered in HTTP/1.1, HTTP/2
// and gRPC (trailers-only), the error vocabulary, and the upstream protocol choice (Istio's
// h2UpgradePolicy, useClientProtocol, the mesh default, Upgrade requests).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "proxy/request/error.h"
#include "proxy/request/local_reply.h"
#include "proxy/request/retry.h"
#include "proxy/request/upstream.h"

using namespace remora::proxy;
namespace asio = boost::asio;

namespace {

// A ServerStream that records what the request path writes to it.
class RecordingStream final : public http::ServerStream {
public:
    std::vector<std::string> events;
    http::ResponseHead sent_head;
    std::string body;
    bool ended = false, was_reset = false, head_out = false;

    bool body_done() const noexcept override { return true; }
    asio::awaitable<http::BodyPart> read_body(std::chrono::steady_clock::duration) override { co_return http::BodyPart{}; }
    asio::awaitable<boost::system::error_code> send_head(http::ResponseHead& h, bool end_stream) override {
        sent_head = h;
        head_out = true;
        ended = end_stream;
        events.push_back(end_stream ? "head+end" : "head");
        co_return boost::system::error_code{};
    }
    asio::awaitable<boost::system::error_code> send_body(std::string_view data, bool end_stream) override {
        body.append(data);
        ended = end_stream;
        events.push_back(end_stream ? "body+end" : "body");
        co_return boost::system::error_code{};
    }
    asio::awaitable<boost::system::error_code> send_trailers(const http::Trailers&) override {
        events.push_back("trailers");
        ended = true;
        co_return boost::system::error_code{};
    }
    asio::awaitable<boost::system::error_code> flush() override { co_return boost::system::error_code{}; }
    void reset() noexcept override {
        was_reset = true;
        events.push_back("reset");
    }
    bool head_sent() const noexcept override { return head_out; }
};

void reply(RecordingStream& s, const LocalReply& r, RequestRecord& rec, WorkerStats& stats) {
    asio::io_context io;
    bool done = false;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        co_await send_local_reply(s, r, rec, stats);
        done = true;
    }, asio::detached);
    io.run();
    REQUIRE(done);
}

snapshot::RetryPolicy policy(std::string_view on, std::vector<uint32_t> codes = {503}) {
    snapshot::RetryPolicy p;
    p.retry_on = std::string(on);
    p.retriable_status_codes = std::move(codes);
    p.retry_on_bits = parse_retry_on(on);
    return p;
}

}  // namespace

TEST_CASE("retryOn is parsed once into bits; unknown tokens are ignored as Envoy ignores them") {
    CHECK(parse_retry_on("") == 0);
    CHECK(parse_retry_on("5xx") == retry_on::k5xx);
    CHECK(parse_retry_on("connect-failure, refused-stream ,unavailable") ==
          (retry_on::connect_failure | retry_on::refused_stream | retry_on::grpc_unavailable));
    CHECK(parse_retry_on("cancelled,deadline-exceeded,internal,resource-exhausted") ==
          (retry_on::grpc_cancelled | retry_on::grpc_deadline_exceeded | retry_on::grpc_internal |
           retry_on::grpc_resource_exhausted));
    CHECK(parse_retry_on("gateway-error,reset,retriable-4xx,retriable-status-codes") ==
          (retry_on::gateway_error | retry_on::reset | retry_on::retriable_4xx | retry_on::retriable_status_codes));
    CHECK(parse_retry_on("no-such-condition,5xx") == retry_on::k5xx);
}

TEST_CASE("retry_covers: HTTP statuses, failures before the head, and gRPC statuses from the head") {
    const auto fivexx = policy("5xx");
    CHECK(retry_covers(fivexx, AttemptOutcome{ProxyError::none, 503, std::nullopt}));
    CHECK(retry_covers(fivexx, AttemptOutcome{ProxyError::none, 500, std::nullopt}));
    CHECK_FALSE(retry_covers(fivexx, AttemptOutcome{ProxyError::none, 404, std::nullopt}));
    CHECK_FALSE(retry_covers(fivexx, AttemptOutcome{ProxyError::none, 200, std::nullopt}));

    const auto gateway = policy("gateway-error");
    CHECK(retry_covers(gateway, AttemptOutcome{ProxyError::none, 502, std::nullopt}));
    CHECK(retry_covers(gateway, AttemptOutcome{ProxyError::none, 504, std::nullopt}));
    CHECK_FALSE(retry_covers(gateway, AttemptOutcome{ProxyError::none, 500, std::nullopt}));

    const auto connect = policy("connect-failure");
    CHECK(retry_covers(connect, AttemptOutcome{ProxyError::connect_failure}));
    CHECK_FALSE(retry_covers(connect, AttemptOutcome{ProxyError::upstream_reset}));
    CHECK(retry_covers(policy("reset"), AttemptOutcome{ProxyError::upstream_reset}));
    CHECK(retry_covers(policy("refused-stream"), AttemptOutcome{ProxyError::refused_stream}));

    const auto codes = policy("retriable-status-codes", {409});
    CHECK(retry_covers(codes, AttemptOutcome{ProxyError::none, 409, std::nullopt}));
    CHECK_FALSE(retry_covers(codes, AttemptOutcome{ProxyError::none, 503, std::nullopt}));

    // gRPC: HTTP 200 with grpc-status in a trailers-only head.
    const auto grpc = policy("unavailable,deadline-exceeded");
    CHECK(retry_covers(grpc, AttemptOutcome{ProxyError::none, 200, 14u}));
    CHECK(retry_covers(grpc, AttemptOutcome{ProxyError::none, 200, 4u}));
    CHECK_FALSE(retry_covers(grpc, AttemptOutcome{ProxyError::none, 200, 13u}));  // internal: not asked for
    CHECK_FALSE(retry_covers(grpc, AttemptOutcome{ProxyError::none, 200, 0u}));
    CHECK(retry_covers(policy("internal"), AttemptOutcome{ProxyError::none, 200, 13u}));
    CHECK(retry_covers(policy("cancelled"), AttemptOutcome{ProxyError::none, 200, 1u}));
    CHECK(retry_covers(policy("resource-exhausted"), AttemptOutcome{ProxyError::none, 200, 8u}));
    CHECK_FALSE(retry_covers(policy("5xx"), AttemptOutcome{ProxyError::none, 200, 14u}));
}

TEST_CASE("the error vocabulary: status, flag, side and retryability per error") {
    CHECK(describe(ProxyError::connect_failure).status == 503);
    CHECK(describe(ProxyError::connect_failure).flag == "UF");
    CHECK(describe(ProxyError::connect_failure).retryable);
    CHECK(describe(ProxyError::overflow).flag == "UO");
    CHECK_FALSE(describe(ProxyError::overflow).retryable);
    CHECK(describe(ProxyError::rbac_denied).status == 403);
    CHECK(describe(ProxyError::rbac_denied).body == "RBAC: access denied");
    CHECK(describe(ProxyError::bad_request).side == Side::downstream);
    CHECK(describe(ProxyError::upstream_timeout).status == 504);
    CHECK(describe(ProxyError::upstream_timeout).flag == "UT");
    CHECK(grpc_status_for_http(503) == 14);
    CHECK(grpc_status_for_http(403) == 7);
    CHECK(grpc_status_for_http(404) == 12);
    CHECK(grpc_status_for_http(418) == 2);
}

TEST_CASE("a local reply to an HTTP request: status, flag, text body with its length") {
    RecordingStream s;
    s.head().method = "GET";
    RequestRecord rec;
    WorkerStats stats;
    reply(s, reply_for(ProxyError::connect_failure), rec, stats);
    CHECK(s.sent_head.status == 503);
    CHECK(s.sent_head.headers.get("x-remora-response-flags") == std::optional<std::string_view>("UF"));
    CHECK(s.sent_head.headers.get("content-length") == std::optional<std::string_view>(std::to_string(s.body.size())));
    CHECK(s.body.find("connection failure") != std::string::npos);
    CHECK(s.events == std::vector<std::string>{"head", "body+end"});
    CHECK(rec.status == 503);
    CHECK(rec.flags == "UF");
    CHECK(stats.get(Counter::downstream_rq_5xx) == 1);
    CHECK(stats.get(Counter::rq_flag_uf) == 1);
}

TEST_CASE("a local reply to HEAD has no body") {
    RecordingStream s;
    s.head().method = "HEAD";
    RequestRecord rec;
    WorkerStats stats;
    reply(s, reply_for(ProxyError::no_route), rec, stats);
    CHECK(s.sent_head.status == 404);
    CHECK(s.events == std::vector<std::string>{"head+end"});
    CHECK(s.body.empty());
}

TEST_CASE("a local reply to a gRPC request is trailers-only: HTTP 200, grpc-status and grpc-message in the head") {
    RecordingStream s;
    s.head().method = "POST";
    s.head().protocol = http::Protocol::http2;
    s.head().path = "/pkg.Svc/Call";
    s.head().headers.add("content-type", "application/grpc+proto");
    RequestRecord rec;
    WorkerStats stats;
    reply(s, reply_for(ProxyError::connect_failure), rec, stats);
    CHECK(s.sent_head.status == 200);
    CHECK(s.sent_head.headers.get("content-type") == std::optional<std::string_view>("application/grpc"));
    CHECK(s.sent_head.headers.get("grpc-status") == std::optional<std::string_view>("14"));  // UNAVAILABLE
    auto msg = s.sent_head.headers.get("grpc-message");
    REQUIRE(msg);
    CHECK(msg->find("upstream connect error") == 0);
    CHECK(msg->find('\n') == std::string_view::npos);  // percent-encoded, the newline dropped
    CHECK(s.events == std::vector<std::string>{"head+end"});
    CHECK(rec.grpc_status == "14");
    CHECK(rec.status == 503);  // the log and metrics keep the HTTP status the proxy meant

    // A fault abort's grpcStatus wins over the status derived from HTTP.
    RecordingStream f;
    f.head().method = "POST";
    f.head().headers.add("content-type", "application/grpc");
    RequestRecord frec;
    reply(f, LocalReply{503, "FI", "fault filter abort", {}, 7u}, frec, stats);
    CHECK(f.sent_head.headers.get("grpc-status") == std::optional<std::string_view>("7"));
    CHECK(f.sent_head.headers.get("grpc-message") == std::optional<std::string_view>("fault filter abort"));
}

TEST_CASE("a local reply after the response head went out resets the stream") {
    RecordingStream s;
    s.head().method = "GET";
    http::ResponseHead h;
    asio::io_context io;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> { co_await s.send_head(h, false); }, asio::detached);
    io.run();
    RequestRecord rec;
    WorkerStats stats;
    reply(s, reply_for(ProxyError::upstream_timeout), rec, stats);
    CHECK(s.was_reset);
    CHECK(s.events == std::vector<std::string>{"head", "reset"});
}

TEST_CASE("the upstream protocol: Upgrade, the client's HTTP/2, h2UpgradePolicy, useClientProtocol, the mesh default") {
    ProxyConfig config;
    UpstreamTarget peer;
    peer.mtls = true;
    UpstreamTarget plain;
    snapshot::Cluster cluster;
    using P = http::Protocol;

    config.h2_upgrade_default = true;
    CHECK(choose_upstream_protocol(peer, nullptr, config, P::http11, false) == P::http2);
    CHECK(choose_upstream_protocol(peer, nullptr, config, P::http10, false) == P::http2);
    CHECK(choose_upstream_protocol(plain, nullptr, config, P::http11, false) == P::http11);  // outside the mesh
    CHECK(choose_upstream_protocol(peer, nullptr, config, P::http11, true) == P::http11);    // WebSocket stays
    CHECK(choose_upstream_protocol(plain, nullptr, config, P::http2, false) == P::http2);    // h2c and gRPC stay

    cluster.limits.h2_upgrade_policy = "DO_NOT_UPGRADE";
    CHECK(choose_upstream_protocol(peer, &cluster, config, P::http11, false) == P::http11);
    cluster.limits.h2_upgrade_policy = "DEFAULT";
    CHECK(choose_upstream_protocol(peer, &cluster, config, P::http11, false) == P::http2);
    cluster.limits.h2_upgrade_policy = "UPGRADE";
    CHECK(choose_upstream_protocol(plain, &cluster, config, P::http11, false) == P::http2);
    cluster.limits.use_client_protocol = true;
    CHECK(choose_upstream_protocol(peer, &cluster, config, P::http11, false) == P::http11);
    CHECK(choose_upstream_protocol(peer, &cluster, config, P::http2, false) == P::http2);

    config.h2_upgrade_default = false;  // --h2-upgrade-policy DO_NOT_UPGRADE, MeshConfig h2UpgradePolicy
    snapshot::Cluster plain_cluster;
    CHECK(choose_upstream_protocol(peer, nullptr, config, P::http11, false) == P::http11);
    CHECK(choose_upstream_protocol(peer, &plain_cluster, config, P::http11, false) == P::http11);
    plain_cluster.limits.h2_upgrade_policy = "UPGRADE";
    CHECK(choose_upstream_protocol(peer, &plain_cluster, config, P::http11, false) == P::http2);
}
