// The HTTP/2 codec, our ServerConnection against our ClientConnection over loopback: round trips,
// multiplexing, backpressure, concurrency limits, GOAWAY and the pool.
#include "fixture.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>

#include "proxy/http2/pool.h"

using namespace h2test;

namespace {

// A latch the handlers wait on, so the test controls when they answer.
struct Gate {
    explicit Gate(asio::any_io_executor ex) : signal(ex) {}
    Signal signal;
    bool open = false;
    asio::awaitable<void> wait() {
        while (!open) co_await signal.wait();
    }
    void release() {
        open = true;
        signal.notify();
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = char('a' + (i * 7 + i / 1000) % 26);
    return s;
}

}  // namespace

TEST_CASE("request and response round trip with head, body and trailers") {
    asio::io_context io;
    Listener server(io, echo_handler);
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port());
        auto req = make_request("POST", "/echo?q=1");
        req.headers.add("x-test", "value");
        req.headers.add("Connection", "keep-alive");  // dropped: HTTP/2 forbids it
        req.headers.add("content-type", "application/grpc");
        auto opened = conn.open(req, false);
        REQUIRE(opened);
        auto s = *opened;
        std::string payload = pattern(100'000);
        CHECK_FALSE(co_await s->write_body(bytes(payload), false));
        http::Trailers t;
        t.add("grpc-status", "0");
        t.add("x-checksum", "abc");
        CHECK_FALSE(co_await s->write_trailers(t));
        auto head = co_await s->read_head();
        REQUIRE(head.has_value());
        CHECK(head->status == 200);
        CHECK(head->headers.get("x-method") == std::optional<std::string_view>("POST"));
        CHECK(head->headers.get("x-path") == std::optional<std::string_view>("/echo?q=1"));
        CHECK(head->headers.get("x-authority") == std::optional<std::string_view>("backend.test"));
        CHECK(head->headers.get("x-test") == std::optional<std::string_view>("value"));
        auto body = co_await read_all(*s);
        CHECK(body.ended);
        CHECK(body.data == payload);
        CHECK(body.trailers.get("x-echo-grpc-status") == std::optional<std::string_view>("0"));
        CHECK(body.trailers.get("x-echo-x-checksum") == std::optional<std::string_view>("abc"));

        // A GET without body: END_STREAM on the request HEADERS and on the response HEADERS.
        auto g = conn.open(make_request("GET", "/empty"), true);
        REQUIRE(g);
        auto gh = co_await (*g)->read_head();
        REQUIRE(gh.has_value());
        auto gb = co_await read_all(**g);
        CHECK(gb.ended);
        CHECK(gb.data.empty());
        conn.close();
    }());
    CHECK(server.stats().streams_inbound == 2);
    CHECK(server.stats().protocol_errors == 0);
}

TEST_CASE("100 concurrent streams on one connection") {
    asio::io_context io;
    constexpr int kStreams = 100;
    int arrived = 0;
    int max_active = 0;
    int active = 0;
    Gate all_arrived(io.get_executor());
    Listener server(io, [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
        ++active;
        max_active = std::max(max_active, active);
        if (++arrived == kStreams) all_arrived.release();
        co_await all_arrived.wait();  // every stream is open at once before any answers
        auto body = co_await read_all(*s);
        http::ResponseHead head;
        head.headers.add("x-path", s->head().path);
        co_await s->write_head(head, false);
        co_await s->write_body(bytes(body.data), true);
        --active;
    });
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port());
        std::vector<std::shared_ptr<ClientStream>> streams;
        for (int i = 0; i < kStreams; ++i) {
            auto s = conn.open(make_request("POST", "/s/" + std::to_string(i)), false);
            REQUIRE(s);
            streams.push_back(*s);
        }
        CHECK_FALSE(conn.available());  // at the assumed peer limit of 100
        CHECK(conn.open(make_request("GET", "/"), true).error() == Http2Error::no_capacity);
        for (int i = 0; i < kStreams; ++i)
            CHECK_FALSE(co_await streams[i]->write_body(bytes("body-" + std::to_string(i)), true));
        int ok = 0;
        for (int i = 0; i < kStreams; ++i) {
            auto head = co_await streams[i]->read_head();
            REQUIRE(head.has_value());
            CHECK(head->headers.get("x-path") == "/s/" + std::to_string(i));
            auto body = co_await read_all(*streams[i]);
            if (body.ended && body.data == "body-" + std::to_string(i)) ++ok;
        }
        CHECK(ok == kStreams);
        CHECK(server.connections.size() == 1);
        conn.close();
    }());
    CHECK(max_active == kStreams);
}

TEST_CASE("a 10 MB response to a slow reader keeps buffered bytes bounded") {
    asio::io_context io;
    constexpr std::size_t kTotal = 10 * 1024 * 1024;
    const std::string chunk = pattern(1024 * 1024);
    std::size_t taken = 0;  // bytes whose write_body completed
    Http2Limits limits;
    Listener server(
        io,
        [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
            co_await read_all(*s);
            co_await s->write_head({}, false);
            for (std::size_t sent = 0; sent < kTotal; sent += chunk.size()) {
                auto ec = co_await s->write_body(bytes(chunk), sent + chunk.size() == kTotal);
                if (ec) co_return;
                taken += chunk.size();
            }
        },
        limits);
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port(), limits);
        auto s = conn.open(make_request("GET", "/big"), true);
        REQUIRE(s);
        auto head = co_await (*s)->read_head();
        REQUIRE(head.has_value());
        // Read nothing for a long while: the sender must stall on flow control, not buffer.
        for (int i = 0; i < 3000; ++i) co_await yield();
        CHECK(taken < kTotal);
        // Slowly: one chunk, then let the sender run.
        std::size_t received = 0;
        bool intact = true;
        for (;;) {
            auto ev = co_await (*s)->read_body();
            if (ev.kind != BodyEvent::Kind::data) {
                CHECK(ev.kind == BodyEvent::Kind::end);
                break;
            }
            for (std::size_t i = 0; i < ev.data.size(); i += 4099)
                if (ev.data[i] != chunk[(received + i) % chunk.size()]) intact = false;
            received += ev.data.size();
            co_await yield();
        }
        CHECK(received == kTotal);
        CHECK(intact);
        // The client never held more than its stream window (plus one coalesced write).
        CHECK(conn.peak_buffered_bytes() <= limits.initial_stream_window +
                                                limits.write_coalesce_bytes + 16384 + 9);
        conn.close();
    }());
    REQUIRE(server.connections.size() == 1);
    // The sender's own buffer: at most one coalesced write (plus the frame that crossed the mark).
    CHECK(server.connections[0].peak_buffered_bytes() <= limits.write_coalesce_bytes + 16384 + 9);
    CHECK(server.connections[0].peak_buffered_bytes() > 0);
}

TEST_CASE("an upstream that does not read back-pressures the client's request body") {
    asio::io_context io;
    Http2Limits limits;
    Gate read_now(io.get_executor());
    std::size_t server_got = 0;
    Listener server(
        io,
        [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
            co_await read_now.wait();
            auto body = co_await read_all(*s);
            server_got = body.data.size();
            co_await s->write_head({}, true);
        },
        limits);
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port(), limits);
        auto s = conn.open(make_request("POST", "/upload"), false);
        REQUIRE(s);
        const std::string block = pattern(64 * 1024);
        std::size_t written = 0;
        bool stalled = false;
        // Writes complete only as the server's window allows; with the handler not reading, the
        // window (256 KiB) runs out and write_body stops completing.
        auto writer = [&]() -> asio::awaitable<void> {
            for (int i = 0; i < 64; ++i) {
                auto ec = co_await (*s)->write_body(bytes(block), i == 63);
                if (ec) co_return;
                written += block.size();
            }
        };
        bool writer_done = false;
        asio::co_spawn(io, writer(), [&](std::exception_ptr) { writer_done = true; });
        for (int i = 0; i < 3000; ++i) co_await yield();
        stalled = !writer_done;
        CHECK(stalled);
        CHECK(written <= limits.initial_stream_window + block.size());
        CHECK(server.connections.at(0).buffered_bytes() <= limits.initial_stream_window);
        read_now.release();
        while (!writer_done) co_await yield();
        auto head = co_await (*s)->read_head();
        REQUIRE(head.has_value());
        CHECK(written == 64 * block.size());
        conn.close();
    }());
    CHECK(server_got == 64 * 64 * 1024);
}

TEST_CASE("a stalled request body: read_body's wait passes, and the stream can still be answered") {
    asio::io_context io;
    std::string first;
    boost::system::error_code timed_out;
    Listener server(io, [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
        auto ev = co_await s->read_body(std::chrono::milliseconds(100));
        if (ev.kind == BodyEvent::Kind::data) first = ev.data;
        ev = co_await s->read_body(std::chrono::milliseconds(100));  // the rest never comes
        if (ev.kind == BodyEvent::Kind::reset) timed_out = ev.error;
        http::ResponseHead head;
        head.status = 408;
        co_await s->write_head(head, true);
    });
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port());
        auto req = make_request("POST", "/stalled");
        req.headers.add("content-length", "10");
        auto s = conn.open(req, false);
        REQUIRE(s);
        CHECK_FALSE(co_await (*s)->write_body(bytes("12345"), false));
        auto head = co_await (*s)->read_head();
        REQUIRE(head.has_value());
        CHECK(head->status == 408);
        conn.close();
    }());
    CHECK(first == "12345");
    CHECK(timed_out == boost::beast::error::timeout);
}

TEST_CASE("the peer's SETTINGS_MAX_CONCURRENT_STREAMS is respected") {
    asio::io_context io;
    Http2Limits server_limits;
    server_limits.max_concurrent_streams = 5;
    Gate answer(io.get_executor());
    int active = 0, max_active = 0;
    Listener server(
        io,
        [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
            ++active;
            max_active = std::max(max_active, active);
            co_await read_all(*s);
            if (s->head().path != "/first") co_await answer.wait();
            co_await s->write_head({}, true);
            --active;
        },
        server_limits);
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port());
        {  // one exchange, so the server's SETTINGS have arrived
            auto s = conn.open(make_request("GET", "/first"), true);
            REQUIRE(s);
            { auto h_ = co_await (*s)->read_head(); REQUIRE(h_.has_value()); }
        }
        std::vector<std::shared_ptr<ClientStream>> held;
        for (int i = 0; i < 5; ++i) {
            CHECK(conn.available());
            auto s = conn.open(make_request("GET", "/held"), true);
            REQUIRE(s);
            held.push_back(*s);
        }
        CHECK_FALSE(conn.available());
        auto refused = conn.open(make_request("GET", "/sixth"), true);
        REQUIRE_FALSE(refused);
        CHECK(refused.error() == Http2Error::no_capacity);
        CHECK(is_retryable(refused.error()));
        answer.release();
        for (auto& s : held) { auto h_ = co_await s->read_head(); REQUIRE(h_.has_value()); }
        for (auto& s : held) CHECK((co_await read_all(*s)).ended);
        CHECK(conn.available());
        conn.close();
    }());
    CHECK(max_active == 5);
}

TEST_CASE("GOAWAY with in-flight streams: those below last-stream-id complete, the rest retry") {
    asio::io_context io;
    constexpr int kStreams = 10;
    int arrived = 0;
    Gate all_arrived(io.get_executor());
    Gate answer(io.get_executor());
    Listener server(io, [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
        if (++arrived == kStreams) all_arrived.release();
        co_await read_all(*s);
        co_await answer.wait();
        http::ResponseHead head;
        head.headers.add("x-id", std::to_string(s->id()));
        co_await s->write_head(head, false);
        co_await s->write_body(bytes("done"), true);
    });
    auto client_stats = std::make_shared<Http2Stats>();
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port(), {}, client_stats);
        std::vector<std::shared_ptr<ClientStream>> streams;
        for (int i = 0; i < kStreams; ++i) {
            auto s = conn.open(make_request("GET", "/g"), true);
            REQUIRE(s);
            streams.push_back(*s);
        }
        co_await all_arrived.wait();
        const int32_t last = streams[4]->id();  // streams 1..9 stay, 11..19 are refused
        server.connections.at(0).goaway(last);
        while (client_stats->goaway_received == 0) co_await yield();
        CHECK_FALSE(conn.available());
        auto late = conn.open(make_request("GET", "/late"), true);
        REQUIRE_FALSE(late);
        CHECK(late.error() == Http2Error::going_away);
        answer.release();
        int completed = 0, retryable = 0;
        for (auto& s : streams) {
            auto head = co_await s->read_head();
            if (s->id() <= last) {
                REQUIRE(head.has_value());
                auto body = co_await read_all(*s);
                if (body.ended && body.data == "done") ++completed;
            } else {
                REQUIRE_FALSE(head.has_value());
                CHECK(head.error() == Http2Error::refused_stream);
                if (is_retryable(head.error())) ++retryable;
            }
        }
        CHECK(completed == 5);
        CHECK(retryable == 5);
        // With its streams done and GOAWAY received, the client connection closes by itself.
        while (!conn.closed()) co_await yield();
    }());
    CHECK(client_stats->goaway_received == 1);
    CHECK(client_stats->streams_refused == 5);
    CHECK(server.stats().goaway_sent == 1);
}

TEST_CASE("a stream reset by the peer with REFUSED_STREAM is retryable; others are not") {
    asio::io_context io;
    Listener server(io, [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
        if (s->head().path == "/refuse") s->reset(7);  // REFUSED_STREAM
        else s->reset(2);                              // INTERNAL_ERROR
        co_return;
    });
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(server.port());
        auto a = conn.open(make_request("GET", "/refuse"), true);
        auto b = conn.open(make_request("GET", "/fail"), true);
        REQUIRE(a);
        REQUIRE(b);
        auto ha = co_await (*a)->read_head();
        auto hb = co_await (*b)->read_head();
        REQUIRE_FALSE(ha.has_value());
        REQUIRE_FALSE(hb.has_value());
        CHECK(ha.error() == Http2Error::refused_stream);
        CHECK(is_retryable(ha.error()));
        CHECK(hb.error() == Http2Error::stream_reset);
        CHECK_FALSE(is_retryable(hb.error()));
        CHECK(conn.available());  // the connection itself is fine
        conn.close();
    }());
}

TEST_CASE("Http2Pool multiplexes, opens connections as streams need room, bounds them per key") {
    asio::io_context io;
    Http2Limits server_limits;
    server_limits.max_concurrent_streams = 2;
    Gate answer(io.get_executor());
    Listener server(
        io,
        [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
            co_await read_all(*s);
            if (s->head().path != "/warm") co_await answer.wait();
            co_await s->write_head({}, true);
        },
        server_limits);
    auto stats = std::make_shared<Http2Stats>();
    Http2Limits client_limits;
    client_limits.max_concurrent_streams = 2;  // as if the server's SETTINGS had arrived
    // With all three connections full a request waits for a slot; 50 ms here, then overflow.
    Http2Pool pool(io.get_executor(), client_limits, stats, Http2PoolLimits{3, 1024, std::chrono::milliseconds(50)});
    int connects = 0;
    ConnectFn connect = [&]() -> asio::awaitable<ConnectResult> {
        ++connects;
        auto socket = co_await connect_socket(server.port());
        co_return ConnectResult{{}, make_byte_stream(std::move(socket))};
    };
    ConnectFn failing = []() -> asio::awaitable<ConnectResult> {
        co_return ConnectResult{make_error_code(boost::asio::error::connection_refused), nullptr};
    };
    run(io, [&]() -> asio::awaitable<void> {
        // Sequential requests share one connection.
        for (int i = 0; i < 3; ++i) {
            auto s = co_await pool.open_stream("svc-a", make_request("GET", "/warm"), true, connect);
            REQUIRE(s);
            { auto h_ = co_await (*s)->read_head(); REQUIRE(h_.has_value()); }
        }
        CHECK(connects == 1);
        std::vector<std::shared_ptr<ClientStream>> held;
        for (int i = 0; i < 6; ++i) {
            auto s = co_await pool.open_stream("svc-a", make_request("GET", "/held"), true, connect);
            REQUIRE(s);
            held.push_back(*s);
        }
        CHECK(connects == 3);
        CHECK(pool.connection_count("svc-a") == 3);
        auto over = co_await pool.open_stream("svc-a", make_request("GET", "/x"), true, connect);
        REQUIRE_FALSE(over);
        CHECK(over.error() == Http2Error::pool_overflow);
        auto other = co_await pool.open_stream("svc-b", make_request("GET", "/x"), true, failing);
        REQUIRE_FALSE(other);
        CHECK(other.error() == Http2Error::connect_failed);
        answer.release();
        for (auto& s : held) { auto h_ = co_await s->read_head(); REQUIRE(h_.has_value()); }
        held.clear();
        // A connection that received GOAWAY is dropped; the next stream goes elsewhere.
        for (auto& c : server.connections) c.goaway();
        while (stats->goaway_received < 3) co_await yield();
        auto fresh = co_await pool.open_stream("svc-a", make_request("GET", "/warm"), true, connect);
        REQUIRE(fresh);
        { auto h_ = co_await (*fresh)->read_head(); REQUIRE(h_.has_value()); }
        CHECK(connects == 4);
        CHECK(pool.connection_count("svc-a") == 1);
        pool.shutdown();
    }());
    CHECK(stats->pool_connections_opened == 4);
    CHECK(stats->pool_connect_failures == 1);
    CHECK(stats->pool_overflow == 1);
    CHECK(stats->pool_pending == 1);
    CHECK(stats->pool_pending_timeouts == 1);
    CHECK(stats->pool_streams_opened == 10);
    CHECK(stats->goaway_received == 3);
}

TEST_CASE("Http2Pool: maxRequestsPerConnection drains a connection after that many requests") {
    asio::io_context io;
    Gate answer(io.get_executor());
    Listener server(io, [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
        co_await read_all(*s);
        if (s->head().path == "/held") co_await answer.wait();
        co_await s->write_head({}, true);
    });
    auto stats = std::make_shared<Http2Stats>();
    Http2Pool pool(io.get_executor(), Http2Limits{}, stats);
    int connects = 0;
    ConnectFn connect = [&]() -> asio::awaitable<ConnectResult> {
        ++connects;
        auto socket = co_await connect_socket(server.port());
        co_return ConnectResult{{}, make_byte_stream(std::move(socket))};
    };
    run(io, [&]() -> asio::awaitable<void> {
        // Five sequential requests, at most two per connection: three connections.
        for (int i = 0; i < 5; ++i) {
            auto s = co_await pool.open_stream("svc", make_request("GET", "/x"), true, connect, 2);
            REQUIRE(s);
            auto h = co_await (*s)->read_head();
            REQUIRE(h.has_value());
        }
        CHECK(connects == 3);
        // A drained connection's streams still complete: the second request on a connection is
        // held while a third goes to a new one.
        auto first = co_await pool.open_stream("svc2", make_request("GET", "/x"), true, connect, 2);
        REQUIRE(first);
        { auto h = co_await (*first)->read_head(); REQUIRE(h.has_value()); }
        auto held = co_await pool.open_stream("svc2", make_request("GET", "/held"), true, connect, 2);
        REQUIRE(held);
        auto next = co_await pool.open_stream("svc2", make_request("GET", "/x"), true, connect, 2);
        REQUIRE(next);
        { auto h = co_await (*next)->read_head(); REQUIRE(h.has_value()); }
        CHECK(connects == 5);
        answer.release();
        auto h = co_await (*held)->read_head();
        CHECK(h.has_value());
        // Without a limit, one connection carries them all.
        for (int i = 0; i < 5; ++i) {
            auto s = co_await pool.open_stream("svc3", make_request("GET", "/x"), true, connect);
            REQUIRE(s);
            auto r = co_await (*s)->read_head();
            REQUIRE(r.has_value());
        }
        CHECK(connects == 6);
        pool.shutdown();
    }());
    CHECK(stats->pool_connections_drained == 3);
}

TEST_CASE("Http2Pool: a burst on a cold pool waits for the connection being made, then for stream slots") {
    asio::io_context io;
    Http2Limits server_limits;
    server_limits.max_concurrent_streams = 2;
    Listener server(
        io,
        [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
            co_await read_all(*s);
            co_await s->write_head({}, true);
        },
        server_limits);
    auto stats = std::make_shared<Http2Stats>();
    Http2Limits client_limits;
    client_limits.max_concurrent_streams = 2;
    Http2Pool pool(io.get_executor(), client_limits, stats, Http2PoolLimits{1});
    int connects = 0, answered = 0, failed = 0;
    ConnectFn connect = [&]() -> asio::awaitable<ConnectResult> {
        ++connects;
        auto socket = co_await connect_socket(server.port());
        co_return ConnectResult{{}, make_byte_stream(std::move(socket))};
    };
    run(io, [&]() -> asio::awaitable<void> {
        // Ten streams at once on a pool with no connection yet, one connection allowed, two
        // streams on it at a time: every one waits its turn and none is refused.
        for (int i = 0; i < 10; ++i) {
            asio::co_spawn(io, [&]() -> asio::awaitable<void> {
                auto s = co_await pool.open_stream("svc", make_request("GET", "/x"), true, connect);
                if (!s) { ++failed; co_return; }
                auto h = co_await (*s)->read_head();
                ++(h ? answered : failed);
            }, asio::detached);
        }
        while (answered + failed < 10) co_await yield();
        pool.shutdown();
    }());
    CHECK(answered == 10);
    CHECK(failed == 0);
    CHECK(connects == 1);
    CHECK(stats->pool_overflow == 0);
    CHECK(stats->pool_pending >= 8);
}
