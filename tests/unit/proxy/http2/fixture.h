// Test fixture for the HTTP/2 codec: a loopback listener (port 0) serving ServerConnections, client
// connections to it, an echo handler, and a runner that bounds every test by a generous deadline.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "proxy/http2/client.h"
#include "proxy/http2/server.h"

namespace h2test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace remora::proxy;
using namespace remora::proxy::http2;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// Runs body to completion on io; fails the test if it does not finish before the deadline (a
// guard against hangs only: nothing asserts on elapsed time).
inline void run(asio::io_context& io, asio::awaitable<void> body,
                std::chrono::seconds deadline = std::chrono::seconds(60)) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
        done = true;
        error = e;
    });
    auto until = std::chrono::steady_clock::now() + deadline;
    while (!done && std::chrono::steady_clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(200));
    REQUIRE_MESSAGE(done, "test body did not finish before the deadline");
    if (error) std::rethrow_exception(error);
}

inline asio::awaitable<void> yield() {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

// A server on 127.0.0.1:0; every accepted connection runs a ServerConnection with `handler`.
class Listener {
public:
    Listener(asio::io_context& io, ServerConnection::Handler handler, Http2Limits limits = {})
        : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
          handler_(std::move(handler)),
          limits_(limits),
          stats_(std::make_shared<Http2Stats>()) {
        asio::co_spawn(io, accept_loop(), asio::detached);
    }
    ~Listener() {
        boost::system::error_code ec;
        acceptor_.close(ec);
        for (auto& c : connections) c.close();
    }
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    Http2Stats& stats() { return *stats_; }
    std::vector<ServerConnection> connections;
    std::size_t finished = 0;  // connections whose run() returned
    boost::system::error_code last_error;

private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
            if (ec) co_return;
            socket.set_option(tcp::no_delay(true));
            ServerConnection conn(make_byte_stream(std::move(socket)), handler_, limits_, stats_);
            connections.push_back(conn);
            asio::co_spawn(acceptor_.get_executor(), serve(conn), asio::detached);
        }
    }
    asio::awaitable<void> serve(ServerConnection conn) {
        last_error = co_await conn.run();
        ++finished;
    }
    tcp::acceptor acceptor_;
    ServerConnection::Handler handler_;
    Http2Limits limits_;
    std::shared_ptr<Http2Stats> stats_;
};

inline asio::awaitable<tcp::socket> connect_socket(uint16_t port) {
    tcp::socket s(co_await asio::this_coro::executor);
    co_await s.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port),
                             asio::use_awaitable);
    s.set_option(tcp::no_delay(true));
    co_return s;
}

// A client connection to port, its run() co_spawned.
inline asio::awaitable<ClientConnection> connect_client(
    uint16_t port, Http2Limits limits = {},
    std::shared_ptr<Http2Stats> stats = std::make_shared<Http2Stats>()) {
    auto socket = co_await connect_socket(port);
    ClientConnection conn(make_byte_stream(std::move(socket)), limits, std::move(stats));
    asio::co_spawn(co_await asio::this_coro::executor, conn.run(), asio::detached);
    co_return conn;
}

inline std::span<const uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Body {
    std::string data;
    http::Trailers trailers;
    bool ended = false;
    boost::system::error_code error;
};

template <class Stream>
asio::awaitable<Body> read_all(Stream& s) {
    Body b;
    for (;;) {
        auto ev = co_await s.read_body();
        if (ev.kind == BodyEvent::Kind::data) {
            b.data += ev.data;
            continue;
        }
        if (ev.kind == BodyEvent::Kind::end) {
            b.ended = true;
            b.trailers = std::move(ev.trailers);
        } else {
            b.error = ev.error;
        }
        co_return b;
    }
}

// Echoes the request: x-method/x-path/x-authority headers, the body, and each request trailer
// as x-echo-<name>. An empty body and no trailers end with the HEADERS.
inline asio::awaitable<void> echo_handler(std::shared_ptr<ServerStream> s) {
    auto body = co_await read_all(*s);
    if (!body.ended) co_return;
    http::ResponseHead head;
    head.status = 200;
    head.headers.add("x-method", s->head().method);
    head.headers.add("x-path", s->head().path);
    head.headers.add("x-authority", s->head().authority);
    if (auto v = s->head().headers.get("x-test")) head.headers.add("x-test", *v);
    bool has_trailers = !body.trailers.empty();
    if (body.data.empty() && !has_trailers) {
        co_await s->write_head(head, true);
        co_return;
    }
    co_await s->write_head(head, false);
    auto ec = co_await s->write_body(bytes(body.data), !has_trailers);
    if (ec || !has_trailers) co_return;
    http::Trailers t;
    for (const auto& e : body.trailers) t.add("x-echo-" + std::string(e.name), e.value);
    co_await s->write_trailers(std::move(t));
}

inline http::RequestHead make_request(std::string method, std::string path) {
    http::RequestHead r;
    r.method = std::move(method);
    r.scheme = "http";
    r.authority = "backend.test";
    r.path = std::move(path);
    r.protocol = http::Protocol::http2;
    return r;
}

// One GET round trip on a fresh connection: proves the listener still serves.
inline asio::awaitable<bool> served(uint16_t port) {
    auto conn = co_await connect_client(port);
    auto s = conn.open(make_request("GET", "/alive"), true);
    if (!s) co_return false;
    auto head = co_await (*s)->read_head();
    bool ok = head && head->status == 200;
    auto body = co_await read_all(**s);
    conn.close();
    co_return ok && body.ended;
}

}  // namespace h2test
