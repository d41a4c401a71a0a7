// A long-poll's answer and its registration grace: the server says when a deferred answer has
// been written (Responder::on_written), which is when remora-control's registry starts a proxy's
// grace period. A client still reading a large snapshot has not been "answered" yet. On a
// kept-alive connection the poll lasts until the connection has handed the client's next request
// to its handler, or has ended (Responder::on_released): a proxy whose next poll waits unread
// while the control plane is busy keeps its registration.
#include <doctest/doctest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "common/http_server.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace remora;

namespace {

struct Server {
    asio::io_context io;
    std::unique_ptr<common::HttpServer> server;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool responded = false;
    std::atomic<bool> written{false};
    std::size_t body_bytes;
    std::shared_ptr<const std::string> shared;  // when set, every answer shares this body

    explicit Server(std::size_t body, std::shared_ptr<const std::string> shared_body = nullptr)
        : body_bytes(body), shared(std::move(shared_body)) {
        server = std::make_unique<common::HttpServer>(
            io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
            [](const common::HttpRequest& r, const common::PeerInfo&) {
                return common::json_response(404, "{}", r.version());
            },
            nullptr, common::HttpLimits{}, [](const std::string&) {});
        server->defer("/poll", [this](const common::HttpRequest& req, const common::PeerInfo&,
                                      std::shared_ptr<common::Responder> responder) {
            if (shared) {
                REQUIRE(responder->respond(common::json_response(200, "ignored", req.version()), shared));
            } else {
                REQUIRE(responder->respond(
                    common::json_response(200, std::string(body_bytes, 'x'), req.version())));
            }
            responder->on_written([this] {
                written = true;
                cv.notify_all();
            });
            std::lock_guard lock(mu);
            responded = true;
            cv.notify_all();
        });
        server->start();
        thread = std::thread([this] { io.run(); });
    }
    ~Server() {
        server->stop();
        io.stop();
        thread.join();
    }
};

// Polls answered at once, each recording when its connection released it, in order with the
// handler's calls ("poll N" when the N-th request reaches the handler, "released N" after).
struct ReleaseServer {
    asio::io_context io;
    std::unique_ptr<common::HttpServer> server;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> events;
    int polls = 0;

    ReleaseServer() {
        server = std::make_unique<common::HttpServer>(
            io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
            [](const common::HttpRequest& r, const common::PeerInfo&) {
                return common::json_response(404, "{}", r.version());
            },
            nullptr, common::HttpLimits{}, [](const std::string&) {});
        server->defer("/poll", [this](const common::HttpRequest& req, const common::PeerInfo&,
                                      std::shared_ptr<common::Responder> responder) {
            int n = 0;
            {
                std::lock_guard lock(mu);
                n = ++polls;
                events.push_back("poll " + std::to_string(n));
            }
            REQUIRE(responder->respond(common::json_response(200, "{}", req.version())));
            responder->on_released([this, n] {
                std::lock_guard lock(mu);
                events.push_back("released " + std::to_string(n));
                cv.notify_all();
            });
            cv.notify_all();
        });
        server->start();
        thread = std::thread([this] { io.run(); });
    }
    ~ReleaseServer() {
        server->stop();
        io.stop();
        thread.join();
    }
    bool wait_events(std::size_t n) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(20), [&] { return events.size() >= n; });
    }
    std::vector<std::string> snapshot() {
        std::lock_guard lock(mu);
        return events;
    }
};

// Reads one whole answer (a `{}` body with its Content-Length) from a kept-alive connection.
void read_answer(tcp::socket& sock) {
    std::string got;
    std::vector<char> buf(4096);
    while (got.find("\r\n\r\n{}") == std::string::npos) {
        std::size_t n = sock.read_some(asio::buffer(buf));
        got.append(buf.data(), n);
    }
}

}  // namespace

TEST_CASE("a kept-alive poll lasts until its connection hands on the next one, then ends") {
    ReleaseServer s;
    asio::io_context client_io;
    tcp::socket sock(client_io);
    sock.connect(s.server->local_endpoint());
    const std::string req = "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    asio::write(sock, asio::buffer(req));
    read_answer(sock);
    // Answered and written, the connection open and idle: the poll is not over (its client's
    // next poll may be waiting in the server's queue).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(s.snapshot() == std::vector<std::string>{"poll 1"});
    // The next poll reaches the handler first, then the first is released.
    asio::write(sock, asio::buffer(req));
    REQUIRE(s.wait_events(3));
    CHECK(s.snapshot() == std::vector<std::string>{"poll 1", "poll 2", "released 1"});
    read_answer(sock);
    // The client leaves: the last poll ends with its connection.
    sock.close();
    REQUIRE(s.wait_events(4));
    CHECK(s.snapshot().back() == "released 2");
}

TEST_CASE("a poll whose answer ends its connection is released once written") {
    ReleaseServer s;
    asio::io_context client_io;
    tcp::socket sock(client_io);
    sock.connect(s.server->local_endpoint());
    const std::string req =
        "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    asio::write(sock, asio::buffer(req));
    REQUIRE(s.wait_events(2));  // without the client closing its side
    CHECK(s.snapshot() == std::vector<std::string>{"poll 1", "released 1"});
}

TEST_CASE("a deferred answer counts as written once the client has taken it, not when given") {
    // 64 MiB: more than loopback's socket buffers on both sides hold, so the write cannot end
    // before the client reads.
    Server s(64u << 20);
    asio::io_context client_io;
    tcp::socket sock(client_io);
    sock.connect(s.server->local_endpoint());
    const std::string req = "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    asio::write(sock, asio::buffer(req));
    {
        std::unique_lock lock(s.mu);
        REQUIRE(s.cv.wait_for(lock, std::chrono::seconds(20), [&] { return s.responded; }));
    }
    // Given, and for a while on its way: not written while the client reads nothing.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK_FALSE(s.written.load());
    // The client reads it all: now it is.
    std::vector<char> buf(1 << 20);
    std::size_t got = 0;
    boost::system::error_code ec;
    while (got < (64u << 20) && !ec) got += sock.read_some(asio::buffer(buf), ec);
    CHECK(got >= (64u << 20));
    std::unique_lock lock(s.mu);
    CHECK(s.cv.wait_for(lock, std::chrono::seconds(20), [&] { return s.written.load(); }));
}

TEST_CASE("on_written after the write runs at once") {
    Server s(16);
    asio::io_context client_io;
    tcp::socket sock(client_io);
    sock.connect(s.server->local_endpoint());
    const std::string req = "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    asio::write(sock, asio::buffer(req));
    std::string all;
    std::vector<char> buf(4096);
    boost::system::error_code ec;
    while (!ec) {
        std::size_t n = sock.read_some(asio::buffer(buf), ec);
        all.append(buf.data(), n);
    }
    CHECK(all.find("xxxxxxxxxxxxxxxx") != std::string::npos);
    std::unique_lock lock(s.mu);
    REQUIRE(s.cv.wait_for(lock, std::chrono::seconds(20), [&] { return s.written.load(); }));
}

TEST_CASE("a shared body is written as it is, with its length, to every answer on a connection") {
    // One push's snapshot message, written to many proxies without a copy each.
    auto body = std::make_shared<const std::string>("{\"version\":\"v1\",\"snapshot\":{}}\n");
    Server s(0, body);
    asio::io_context client_io;
    tcp::socket sock(client_io);
    sock.connect(s.server->local_endpoint());
    const std::string req = "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    const std::string last =
        "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    asio::write(sock, asio::buffer(req));
    asio::write(sock, asio::buffer(last));
    std::string all;
    std::vector<char> buf(4096);
    boost::system::error_code ec;
    while (!ec) {
        std::size_t n = sock.read_some(asio::buffer(buf), ec);
        all.append(buf.data(), n);
    }
    const std::string answer = "Content-Length: " + std::to_string(body->size()) + "\r\n";
    std::size_t first = all.find("\r\n\r\n");
    REQUIRE(first != std::string::npos);
    CHECK(all.substr(0, first + 2).find(answer) != std::string::npos);
    CHECK(all.substr(first + 4, body->size()) == *body);
    std::size_t second = all.find("\r\n\r\n", first + 4 + body->size());
    REQUIRE(second != std::string::npos);
    CHECK(all.substr(second + 4) == *body);  // the second answer: the same bytes, nothing more
    CHECK(all.find("ignored") == std::string::npos);
}
