// Request bodies on routes with retries, through serve_request without network namespaces: a
// scripted client stream (the test decides when each part of the body arrives) and a real
// HTTP/1.1 upstream on 127.0.0.1:0. The body streams to the first attempt while a copy is kept;
// a retry resends the copy whole; past kMaxReplayBody (1 MiB) the copy is dropped and the request
// is not retried but still delivered.
#include <doctest/doctest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <deque>
#include <exception>
#include <string>
#include <vector>

#include "control/model/model.h"
#include "control/translate/translate.h"
#include "proxy/request/request_path.h"

using namespace remora::proxy;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

// A client stream whose body parts the test hands over one at a time (a slow client).
class ScriptedStream final : public http::ServerStream {
  public:
    explicit ScriptedStream(asio::any_io_executor ex) : wake_(ex) {}

    void push(std::string part) {
        parts_.push_back(std::move(part));
        wake_.cancel();
    }
    void end() {
        ended_ = true;
        wake_.cancel();
    }
    size_t parts_taken = 0;  // by the request path
    http::ResponseHead response;
    std::string response_body;
    bool response_ended = false, was_reset = false;

    bool body_done() const noexcept override { return ended_ && parts_.empty() && taken_end_; }
    asio::awaitable<http::BodyPart> read_body(std::chrono::steady_clock::duration) override {
        for (;;) {
            if (!parts_.empty()) {
                current_ = std::move(parts_.front());
                parts_.pop_front();
                ++parts_taken;
                co_return http::BodyPart{http::BodyPart::Kind::data, current_, nullptr, {}};
            }
            if (ended_) {
                taken_end_ = true;
                co_return http::BodyPart{};
            }
            wake_.expires_at(asio::steady_timer::time_point::max());
            co_await wake_.async_wait(nothrow);
        }
    }
    asio::awaitable<boost::system::error_code> send_head(http::ResponseHead& h,
                                                         bool end_stream) override {
        response = h;
        head_out_ = true;
        response_ended = end_stream;
        co_return boost::system::error_code{};
    }
    asio::awaitable<boost::system::error_code> send_body(std::string_view data,
                                                         bool end_stream) override {
        response_body.append(data);
        response_ended = end_stream;
        co_return boost::system::error_code{};
    }
    asio::awaitable<boost::system::error_code> send_trailers(const http::Trailers&) override {
        response_ended = true;
        co_return boost::system::error_code{};
    }
    asio::awaitable<boost::system::error_code> flush() override {
        co_return boost::system::error_code{};
    }
    void reset() noexcept override { was_reset = true; }
    bool head_sent() const noexcept override { return head_out_; }

  private:
    asio::steady_timer wake_;
    std::deque<std::string> parts_;
    std::string current_;
    bool ended_ = false, taken_end_ = false, head_out_ = false;
};

// An HTTP/1.1 app: reads each request's body (Content-Length or chunked) as it comes, keeping
// what every attempt received; answers 503 to the first `failures` requests, then 200 with the
// body's length. One request per connection (Connection: close).
class App {
  public:
    App(asio::io_context& io, int failures)
        : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)), failures_(failures) {
        asio::co_spawn(io, accept_loop(), asio::detached);
    }
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::vector<std::string> attempts;  // the body bytes each request has delivered so far
    std::vector<bool> complete;         // whether that request's body has ended

  private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, s] = co_await acceptor_.async_accept(nothrow);
            if (ec) co_return;
            asio::co_spawn(acceptor_.get_executor(), serve(std::move(s)), asio::detached);
        }
    }
    asio::awaitable<void> serve(tcp::socket s) {
        std::string in;
        auto [ec, n] =
            co_await asio::async_read_until(s, asio::dynamic_buffer(in), "\r\n\r\n", nothrow);
        if (ec) co_return;
        std::string head = in.substr(0, n);
        in.erase(0, n);
        const size_t me = attempts.size();
        attempts.emplace_back();
        complete.push_back(false);
        auto lower = head;
        for (char& c : lower)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto more = [&](size_t want) -> asio::awaitable<bool> {  // at least `want` bytes in `in`
            while (in.size() < want) {
                char buf[4096];
                auto [rec, got] = co_await s.async_read_some(asio::buffer(buf), nothrow);
                if (rec) co_return false;
                in.append(buf, got);
            }
            co_return true;
        };
        if (size_t cl = lower.find("content-length:"); cl != std::string::npos) {
            size_t left = std::stoul(lower.substr(cl + 15));
            while (left > 0) {
                if (in.empty() && !co_await more(1)) co_return;
                size_t take = std::min(left, in.size());
                attempts[me].append(in, 0, take);
                in.erase(0, take);
                left -= take;
            }
        } else if (lower.find("transfer-encoding: chunked") != std::string::npos) {
            for (;;) {
                size_t eol;
                while ((eol = in.find("\r\n")) == std::string::npos) {
                    if (!co_await more(in.size() + 1)) co_return;
                }
                size_t size = std::stoul(in.substr(0, eol), nullptr, 16);
                in.erase(0, eol + 2);
                if (size == 0) break;
                while (size > 0) {  // the chunk as it comes, not whole
                    if (in.empty() && !co_await more(1)) co_return;
                    size_t take = std::min(size, in.size());
                    attempts[me].append(in, 0, take);
                    in.erase(0, take);
                    size -= take;
                }
                if (!co_await more(2)) co_return;
                in.erase(0, 2);
            }
        }
        complete[me] = true;
        std::string body = "got " + std::to_string(attempts[me].size());
        std::string status =
            static_cast<int>(me) < failures_ ? "503 Service Unavailable" : "200 OK";
        std::string res = "HTTP/1.1 " + status +
                          "\r\ncontent-length: " + std::to_string(body.size()) +
                          "\r\nconnection: close\r\n\r\n" + body;
        co_await asio::async_write(s, asio::buffer(res), nothrow);
        boost::system::error_code ignored;
        s.shutdown(tcp::socket::shutdown_send, ignored);
    }
    tcp::acceptor acceptor_;
    int failures_;
};

// One worker's context around a route table made from Istio YAML: the service `app` at
// 127.0.0.1:`port` (plaintext), with `retries` on its route.
struct Worker {
    explicit Worker(asio::io_context& io, uint16_t port, const std::string& retries)
        : telemetry(std::make_shared<TelemetryConfig>(), 1),
          ctx{tls,
              store,
              stats,
              telemetry,
              draining,
              [](const std::string&) {},
              UpstreamPool{},
              WorkerBalancer{},
              1,
              0,
              std::make_shared<http2::Http2Stats>(),
              {},
              nullptr,
              {},
              std::nullopt} {
        ctx.pool.set_stats(&stats);
        ctx.h2pool =
            std::make_unique<http2::Http2Pool>(io.get_executor(), ctx.h2limits, ctx.h2stats);
        const std::string p = std::to_string(port);
        const std::string yaml = R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  ports: [{number: )" + p + R"(, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  http:
  - retries: )" + retries + R"(
    route: [{destination: {host: app.default.svc.cluster.local}}]
)";
        remora::control::model::Config istio;
        remora::control::model::load_yaml(istio, yaml, "mem.yaml");
        for (const auto* e : istio.errors())
            FAIL_CHECK(e->str());
        remora::control::translate::WorkloadRef client{"default", "client", {{"app", "client"}}};
        auto c = std::make_shared<ProxyConfig>();
        c->routes = std::make_shared<const RouteTable>(
            remora::control::translate::translate(istio, client, {}));
        store.publish(c);
        info.kind = ListenerKind::outbound_explicit;
        info.remote = "127.0.0.1:40000";
        info.config = store.current();
        info.config_generation = store.generation();
        authority = "app.default.svc.cluster.local:" + p;
    }
    ~Worker() { ctx.h2pool.reset(); }
    TlsStore tls;
    ConfigStore store;
    WorkerStats stats;
    WorkerTelemetry telemetry;
    std::atomic<bool> draining{false};
    WorkerContext ctx;
    Downstream info;
    std::string authority;
};

void post_head(ScriptedStream& s, const std::string& authority, std::optional<size_t> length) {
    s.head().method = "POST";
    s.head().authority = authority;
    s.head().path = "/upload";
    if (length) s.head().headers.set("content-length", std::to_string(*length));
}

// Runs `body` to its end; a deadline guards against hangs only (nothing asserts on time).
void run(asio::io_context& io, asio::awaitable<void> body) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
        done = true;
        error = e;
    });
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done && std::chrono::steady_clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(100));
    REQUIRE_MESSAGE(done, "the request did not finish before the deadline");
    if (error) std::rethrow_exception(error);
}

// Lets the proxy and the app run until `ready` holds (bounded by a number of turns, not by time).
asio::awaitable<bool> until(std::function<bool()> ready) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0; i < 2000 && !ready(); ++i) {
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(nothrow);
    }
    co_return ready();
}

}  // namespace

TEST_CASE("a retried request's body streams to the first attempt, and the retry resends it whole") {
    asio::io_context io;
    App app(io, 1);
    Worker w(io, app.port(), "{attempts: 2, retryOn: 5xx}");
    const std::string first(3000, 'a'), last(2000, 'b');
    for (const bool chunked : {false, true}) {
        CAPTURE(chunked);
        app.attempts.clear();
        app.complete.clear();
        ScriptedStream s(io.get_executor());
        post_head(s, w.authority,
                  chunked ? std::nullopt : std::optional<size_t>(first.size() + last.size()));
        bool streamed = false;
        run(io, [&]() -> asio::awaitable<void> {
            asio::co_spawn(io, serve_request(s, w.info, w.ctx), asio::detached);
            s.push(first);
            // The client has not sent its last part yet: the first must reach the app anyway.
            streamed =
                co_await until([&] { return !app.attempts.empty() && app.attempts[0] == first; });
            s.push(last);
            s.end();
            co_await until([&] { return s.response_ended || s.was_reset; });
        }());
        CHECK_MESSAGE(
            streamed,
            "the body's first part did not reach the upstream before the client sent the last");
        REQUIRE(app.attempts.size() == 2);  // the first failed (503), the retry succeeded
        CHECK(app.attempts[0] == first + last);
        CHECK(app.attempts[1] == first + last);
        CHECK(app.complete[1]);
        CHECK(s.response.status == 200);
        CHECK(s.response_body == "got 5000");
    }
    CHECK(w.stats.get(Counter::upstream_rq_retry) == 2);
    CHECK(w.stats.get(Counter::retry_or_shadow_abandoned) == 0);
}

TEST_CASE("a body over the copy bound is delivered once, whole, and not retried") {
    asio::io_context io;
    App app(io, 1);
    Worker w(io, app.port(), "{attempts: 2, retryOn: 5xx}");
    const std::string part(64 * 1024, 'x');
    const size_t parts = 17;  // 1 MiB + 64 KiB, chunked: the copy is dropped as it passes 1 MiB
    ScriptedStream s(io.get_executor());
    post_head(s, w.authority, std::nullopt);
    run(io, [&]() -> asio::awaitable<void> {
        asio::co_spawn(io, serve_request(s, w.info, w.ctx), asio::detached);
        for (size_t i = 0; i < parts; ++i) {
            s.push(part);
            co_await until([&] { return s.parts_taken == i + 1; });
        }
        s.end();
        co_await until([&] { return s.response_ended || s.was_reset; });
    }());
    REQUIRE(app.attempts.size() == 1);
    CHECK(app.attempts[0].size() == parts * part.size());
    CHECK(app.complete[0]);
    CHECK(s.response.status == 503);  // the app's own answer, not retried
    CHECK(s.response_body == "got " + std::to_string(parts * part.size()));
    CHECK(w.stats.get(Counter::upstream_rq_retry) == 0);
    CHECK(w.stats.get(Counter::retry_or_shadow_abandoned) == 1);
}

TEST_CASE("a body at the bound is still copied and retried") {
    asio::io_context io;
    App app(io, 1);
    Worker w(io, app.port(), "{attempts: 2, retryOn: 5xx}");
    const std::string part(64 * 1024, 'y');
    ScriptedStream s(io.get_executor());
    post_head(s, w.authority, std::nullopt);
    run(io, [&]() -> asio::awaitable<void> {
        asio::co_spawn(io, serve_request(s, w.info, w.ctx), asio::detached);
        for (size_t i = 0; i < 16; ++i)
            s.push(part);  // exactly 1 MiB
        s.end();
        co_await until([&] { return s.response_ended || s.was_reset; });
    }());
    REQUIRE(app.attempts.size() == 2);
    CHECK(app.attempts[1].size() == 16 * part.size());
    CHECK(s.response.status == 200);
    CHECK(w.stats.get(Counter::retry_or_shadow_abandoned) == 0);
}
