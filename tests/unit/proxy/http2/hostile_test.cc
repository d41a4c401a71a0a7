// Hostile peers sending hand-made HTTP/2 frames over a raw socket: each attack closes the
// connection (GOAWAY where Envoy sends one), bumps its counter, and the listener still serves.
#include "fixture.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <nghttp2/nghttp2.h>

using namespace h2test;

namespace {

constexpr uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kGoaway = 7,
                  kContinuation = 9;
constexpr uint8_t kEndStream = 0x1, kEndHeaders = 0x4;
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
    std::string f;
    auto len = uint32_t(payload.size());
    f += char(len >> 16);
    f += char(len >> 8);
    f += char(len);
    f += char(type);
    f += char(flags);
    f += char((stream >> 24) & 0x7f);
    f += char(stream >> 16);
    f += char(stream >> 8);
    f += char(stream);
    f += payload;
    return f;
}

// HPACK integer with an n-bit prefix (RFC 7541 §5.1); `first` carries the pattern bits.
std::string hpack_int(uint8_t first, int prefix_bits, std::size_t value) {
    std::string out;
    std::size_t max = (1u << prefix_bits) - 1;
    if (value < max) {
        out += char(first | value);
        return out;
    }
    out += char(first | max);
    value -= max;
    while (value >= 128) {
        out += char((value % 128) | 0x80);
        value /= 128;
    }
    out += char(value);
    return out;
}

// Literal field without indexing, new name (RFC 7541 §6.2.2).
std::string literal(std::string_view name, std::string_view value) {
    return hpack_int(0x00, 4, 0) + hpack_int(0, 7, name.size()) + std::string(name) +
           hpack_int(0, 7, value.size()) + std::string(value);
}

// :method GET, :scheme http, :path / from the static table; :authority as a literal.
std::string request_block() {
    return std::string("\x82\x86\x84", 3) + literal(":authority", "backend.test");
}

std::string client_start() { return std::string(kPreface) + frame(kSettings, 0, 0, ""); }

struct Frame {
    uint8_t type;
    uint8_t flags;
    uint32_t stream;
    std::string payload;
};

std::vector<Frame> parse_frames(std::string_view in) {
    std::vector<Frame> frames;
    std::size_t pos = 0;
    while (in.size() - pos >= 9) {
        auto p = reinterpret_cast<const uint8_t*>(in.data() + pos);
        std::size_t len = (std::size_t(p[0]) << 16) | (p[1] << 8) | p[2];
        if (in.size() - pos - 9 < len) break;
        Frame f{p[3], p[4], (uint32_t(p[5] & 0x7f) << 24) | (p[6] << 16) | (p[7] << 8) | p[8],
                std::string(in.substr(pos + 9, len))};
        frames.push_back(std::move(f));
        pos += 9 + len;
    }
    return frames;
}

// Sends `bytes`, then reads frames until the server closes the connection.
asio::awaitable<std::vector<Frame>> attack(uint16_t port, std::string bytes,
                                           bool read_first = false) {
    auto socket = co_await connect_socket(port);
    std::string in;
    if (!read_first) {
        auto [wec, n] = co_await asio::async_write(socket, asio::buffer(bytes), nothrow);
        (void)wec;
        (void)n;
    }
    std::array<char, 65536> buf;
    bool wrote = !read_first;
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), nothrow);
        if (ec) break;
        in.append(buf.data(), n);
        if (!wrote) {  // after the server's SETTINGS: write without reading further
            wrote = true;
            co_await asio::async_write(socket, asio::buffer(bytes), nothrow);
        }
    }
    co_return parse_frames(in);
}

std::optional<uint32_t> goaway_code(const std::vector<Frame>& frames) {
    for (const auto& f : frames)
        if (f.type == kGoaway && f.payload.size() >= 8) {
            auto p = reinterpret_cast<const uint8_t*>(f.payload.data());
            return (uint32_t(p[4]) << 24) | (p[5] << 16) | (p[6] << 8) | p[7];
        }
    return std::nullopt;
}

constexpr uint32_t kEnhanceYourCalm = 0xb;

}  // namespace

TEST_CASE("rapid reset: a client that resets most of its streams at once is disconnected") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string bytes = client_start();
    for (uint32_t i = 0; i < 400; ++i) {
        uint32_t id = 2 * i + 1;
        bytes += frame(kHeaders, kEndHeaders | kEndStream, id, request_block());
        bytes += frame(kRstStream, 0, id, std::string("\0\0\0\x8", 4));  // CANCEL
    }
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        CHECK(goaway_code(frames) == kEnhanceYourCalm);
        CHECK(co_await served(server.port()));
    }());
    CHECK(server.stats().rapid_reset == 1);
    CHECK(server.stats().goaway_sent >= 1);
}

TEST_CASE("a client cancelling a few streams is not a rapid reset") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string bytes = client_start();
    for (uint32_t i = 0; i < 20; ++i) {
        uint32_t id = 2 * i + 1;
        bytes += frame(kHeaders, kEndHeaders | kEndStream, id, request_block());
        if (i % 4 == 0) bytes += frame(kRstStream, 0, id, std::string("\0\0\0\x8", 4));
    }
    bytes += frame(kGoaway, 0, 0, std::string(8, '\0'));  // then leave politely
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        int responses = 0;
        for (const auto& f : frames)
            if (f.type == kHeaders) ++responses;
        CHECK(responses == 15);
    }());
    CHECK(server.stats().rapid_reset == 0);
}

TEST_CASE("CONTINUATION flood closes the connection") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string bytes = client_start();
    bytes += frame(kHeaders, 0, 1, request_block());
    for (int i = 0; i < 50; ++i) bytes += frame(kContinuation, 0, 1, literal("x-pad", "y"));
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        CHECK(goaway_code(frames) == kEnhanceYourCalm);
        CHECK(co_await served(server.port()));
    }());
    CHECK(server.stats().continuation_flood == 1);
}

TEST_CASE("a header block in a few CONTINUATION frames is fine") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string bytes = client_start();
    bytes += frame(kHeaders, kEndStream, 1, request_block());
    for (int i = 0; i < 3; ++i) bytes += frame(kContinuation, 0, 1, literal("x-pad", "y"));
    bytes += frame(kContinuation, kEndHeaders, 1, literal("x-last", "z"));
    bytes += frame(kGoaway, 0, 0, std::string(8, '\0'));
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        bool answered = false;
        for (const auto& f : frames)
            if (f.type == kHeaders && f.stream == 1) answered = true;
        CHECK(answered);
    }());
    CHECK(server.stats().continuation_flood == 0);
}

TEST_CASE("SETTINGS with too many entries closes the connection") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string entries;
    for (int i = 0; i < 100; ++i) entries += std::string("\x00\x03\x00\x00\x00\x64", 6);
    std::string bytes = std::string(kPreface) + frame(kSettings, 0, 0, entries);
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        CHECK(goaway_code(frames) == kEnhanceYourCalm);
        CHECK(co_await served(server.port()));
    }());
    CHECK(server.stats().settings_flood == 1);
}

TEST_CASE("SETTINGS flood by a client that does not read the ACKs closes the connection") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string bytes = client_start();
    for (int i = 0; i < 20000; ++i) bytes += frame(kSettings, 0, 0, "");
    run(io, [&]() -> asio::awaitable<void> {
        co_await attack(server.port(), bytes);
        CHECK(co_await served(server.port()));
    }());
    CHECK(server.stats().outbound_control_flood == 1);
}

TEST_CASE("HPACK bomb: a small header block that decodes past the header list limit") {
    asio::io_context io;
    Listener server(io, echo_handler);
    // One 4000-byte value into the dynamic table (index 62), then referenced 500 times: ~4.6 KB
    // on the wire, ~2 MB decoded.
    std::string block = request_block();
    std::string big(4000, 'a');
    block += hpack_int(0x40, 6, 0) + hpack_int(0, 7, 6) + "x-bomb" + hpack_int(0, 7, big.size()) +
             big;
    for (int i = 0; i < 500; ++i) block += char(0x80 | 62);
    std::string bytes = client_start() + frame(kHeaders, kEndHeaders | kEndStream, 1, block);
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        CHECK(goaway_code(frames) == kEnhanceYourCalm);
        CHECK(co_await served(server.port()));
    }());
    CHECK(server.stats().header_overflow == 1);
}

TEST_CASE("empty DATA frame flood closes the connection") {
    asio::io_context io;
    Listener server(io, echo_handler);
    std::string bytes = client_start() + frame(kHeaders, kEndHeaders, 1, request_block());
    for (int i = 0; i < 10; ++i) bytes += frame(kData, 0, 1, "");
    run(io, [&]() -> asio::awaitable<void> {
        auto frames = co_await attack(server.port(), bytes);
        CHECK(goaway_code(frames) == kEnhanceYourCalm);
        CHECK(co_await served(server.port()));
    }());
    CHECK(server.stats().empty_frame_flood == 1);
}

TEST_CASE("a client ignoring SETTINGS_MAX_CONCURRENT_STREAMS gets no more handlers than allowed") {
    asio::io_context io;
    Http2Limits limits;
    limits.max_concurrent_streams = 5;
    int active = 0, max_active = 0;
    Listener server(
        io,
        [&](std::shared_ptr<ServerStream> s) -> asio::awaitable<void> {
            ++active;
            max_active = std::max(max_active, active);
            auto body = co_await read_all(*s);  // the attack's bodies never end: handlers stay
            --active;
            if (body.ended) co_await s->write_head({}, true);
        },
        limits);
    std::string bytes;
    for (uint32_t i = 0; i < 8; ++i)
        bytes += frame(kHeaders, kEndHeaders, 2 * i + 1, request_block());
    run(io, [&]() -> asio::awaitable<void> {
        // Wait for the server's SETTINGS, ACK them, then open 8 streams at once.
        auto frames = co_await attack(
            server.port(), client_start() + frame(kSettings, 1, 0, "") + bytes, true);
        bool refused_or_closed = goaway_code(frames).has_value();
        for (const auto& f : frames)
            if (f.type == kRstStream && f.payload == std::string("\0\0\0\x7", 4))
                refused_or_closed = true;
        CHECK(refused_or_closed);
        CHECK(co_await served(server.port()));
    }());
    CHECK(max_active == 5);
}

TEST_CASE("the client skips 1xx heads from a hand-made server and reads the final one") {
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    auto raw_server = [&]() -> asio::awaitable<void> {
        auto [ec, socket] = co_await acceptor.async_accept(nothrow);
        REQUIRE_FALSE(ec);
        std::string in;
        std::array<char, 16384> buf;
        auto has_headers = [&] {
            if (in.size() < kPreface.size()) return false;
            for (const auto& f : parse_frames(std::string_view(in).substr(kPreface.size())))
                if (f.type == kHeaders) return true;
            return false;
        };
        while (!has_headers()) {
            auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), nothrow);
            REQUIRE_FALSE(rec);
            in.append(buf.data(), n);
        }
        // :status 100, then :status 103 with a link field, then :status 200 (static index 8).
        std::string out = frame(kSettings, 0, 0, "") + frame(kSettings, 1, 0, "");
        out += frame(kHeaders, kEndHeaders, 1, std::string("\x08\x03" "100", 5));
        out += frame(kHeaders, kEndHeaders, 1,
                     std::string("\x08\x03" "103", 5) + literal("link", "</a.css>"));
        out += frame(kHeaders, kEndHeaders, 1, std::string("\x88", 1) + literal("x-final", "yes"));
        out += frame(kData, kEndStream, 1, "body");
        co_await asio::async_write(socket, asio::buffer(out), nothrow);
        // Keep the socket open until the client is done.
        co_await socket.async_read_some(asio::buffer(buf), nothrow);
    };
    asio::co_spawn(io, raw_server(), asio::detached);
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(acceptor.local_endpoint().port());
        auto s = conn.open(make_request("GET", "/"), true);
        REQUIRE(s);
        auto head = co_await (*s)->read_head();
        REQUIRE(head.has_value());
        CHECK(head->status == 200);
        CHECK(head->headers.get("x-final") == std::optional<std::string_view>("yes"));
        CHECK_FALSE(head->headers.contains("link"));
        auto body = co_await read_all(**s);
        CHECK(body.ended);
        CHECK(body.data == "body");
        conn.close();
    }());
}

// Request ids and trace context are new on every request: the client sends them as literals
// never indexed, so they do not push the fields that repeat (a long peer-metadata value, the user
// agent) out of the HPACK dynamic table. Read back with nghttp2's own decoder on a raw server.
TEST_CASE("per-request ids go out never indexed; repeating fields stay in the HPACK table") {
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    constexpr int kRequests = 40;
    const std::string peer_metadata(400, 'm');
    std::vector<std::vector<std::pair<std::string, uint8_t>>> blocks;  // fields and flags, per request
    std::vector<std::size_t> table_sizes;                              // decoder's table after each
    auto raw_server = [&]() -> asio::awaitable<void> {
        auto [ec, socket] = co_await acceptor.async_accept(nothrow);
        REQUIRE_FALSE(ec);
        nghttp2_hd_inflater* inflater = nullptr;
        REQUIRE(nghttp2_hd_inflate_new(&inflater) == 0);
        std::string in;
        std::array<char, 16384> buf;
        std::size_t used = kPreface.size();
        while (int(blocks.size()) < kRequests) {
            auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), nothrow);
            if (rec) break;
            in.append(buf.data(), n);
            if (in.size() < used) continue;
            auto frames = parse_frames(std::string_view(in).substr(used));
            for (const auto& f : frames) {
                used += 9 + f.payload.size();
                if (f.type != kHeaders) continue;
                REQUIRE((f.flags & kEndHeaders) != 0);
                std::vector<std::pair<std::string, uint8_t>> fields;
                auto p = reinterpret_cast<const uint8_t*>(f.payload.data());
                std::size_t left = f.payload.size();
                for (;;) {
                    nghttp2_nv nv;
                    int flags = 0;
                    auto r = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, p, left, 1);
                    REQUIRE(r >= 0);
                    p += r;
                    left -= std::size_t(r);
                    if (flags & NGHTTP2_HD_INFLATE_EMIT)
                        fields.emplace_back(std::string(reinterpret_cast<char*>(nv.name), nv.namelen), nv.flags);
                    if (flags & NGHTTP2_HD_INFLATE_FINAL) break;
                    if (r == 0 && left == 0) break;
                }
                nghttp2_hd_inflate_end_headers(inflater);
                blocks.push_back(std::move(fields));
                table_sizes.push_back(nghttp2_hd_inflate_get_dynamic_table_size(inflater));
            }
        }
        nghttp2_hd_inflate_del(inflater);
        socket.close();
    };
    asio::co_spawn(io, raw_server(), asio::detached);
    run(io, [&]() -> asio::awaitable<void> {
        auto conn = co_await connect_client(acceptor.local_endpoint().port());
        for (int i = 0; i < kRequests; ++i) {
            auto req = make_request("GET", "/");
            req.headers.add("user-agent", "test/1.0");
            req.headers.add("x-envoy-peer-metadata", peer_metadata);
            req.headers.add("X-Request-Id", "5f0c6a2e-0000-4000-8000-" + std::to_string(100000000000 + i));
            req.headers.add("traceparent", "00-" + std::string(24, 'a') + std::to_string(10000000 + i) +
                                               "-00f067aa0ba902b7-01");
            REQUIRE(conn.open(req, true));
        }
        while (int(blocks.size()) < kRequests) co_await yield();
        conn.close();
    }());
    REQUIRE(blocks.size() == std::size_t(kRequests));
    for (const auto& fields : blocks) {
        for (const auto& [name, flags] : fields) {
            const bool unique = name == "x-request-id" || name == "traceparent";
            CHECK_MESSAGE(((flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0) == unique, name);
        }
    }
    // The table holds what repeats; per-request values never enter it, so it stops growing.
    CHECK(table_sizes.front() > peer_metadata.size());
    CHECK(table_sizes.back() == table_sizes.front());
}
