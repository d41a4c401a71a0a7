// libFuzzer target: bytes as the HTTP/2 codec (nghttp2 driven by proxy/http2's reader and writer)
// sees them from a peer. First byte: bit 0 picks the side (even: the bytes come from a client, to
// a server connection whose handler reads each request body and answers, with trailers or a
// reset depending on the path; odd: they come from an upstream, to a client connection that has
// opened two streams and reads their responses); the other bits cut the input into reads of
// different sizes, as TCP would. The input ends with EOF. The connection may do anything a peer
// can make it do, but never crash, leak, read out of bounds or run forever.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/http2/client.h"
#include "proxy/http2/server.h"

namespace asio = boost::asio;
namespace http2 = remora::proxy::http2;
namespace http = remora::proxy::http;

namespace {

// The peer: reads hand out the input in pieces of 1..max_piece bytes, then EOF; writes vanish.
class FuzzPeer final : public http2::ByteStream {
public:
    FuzzPeer(asio::any_io_executor ex, std::string_view input, std::size_t max_piece)
        : ex_(std::move(ex)), input_(input), max_piece_(max_piece) {}

    asio::any_io_executor get_executor() override { return ex_; }

    asio::awaitable<IoResult> read_some(asio::mutable_buffer buffer) override {
        if (closed_) co_return IoResult{asio::error::operation_aborted, 0};
        if (input_.empty()) co_return IoResult{asio::error::eof, 0};
        // The piece size varies with the position, so one input exercises several framings.
        std::size_t piece = 1 + (pos_ * 7919 + input_.size()) % max_piece_;
        std::size_t n = std::min({piece, input_.size(), buffer.size()});
        std::memcpy(buffer.data(), input_.data(), n);
        input_.remove_prefix(n);
        pos_ += n;
        co_return IoResult{{}, n};
    }

    asio::awaitable<IoResult> write(asio::const_buffer buffer) override {
        if (closed_) co_return IoResult{asio::error::broken_pipe, 0};
        written_ += buffer.size();
        co_return IoResult{{}, buffer.size()};
    }

    void close() noexcept override { closed_ = true; }

private:
    asio::any_io_executor ex_;
    std::string_view input_;
    std::size_t max_piece_;
    std::size_t pos_ = 0;
    std::size_t written_ = 0;
    bool closed_ = false;
};

http2::Http2Limits small_limits() {
    http2::Http2Limits l;
    l.max_concurrent_streams = 8;
    l.max_header_list_bytes = 8 * 1024;
    l.initial_stream_window = 16 * 1024;
    l.initial_connection_window = 64 * 1024;
    return l;
}

// Reads the request body (at most a few chunks, each read bounded in time) and answers by path.
asio::awaitable<void> serve(std::shared_ptr<http2::ServerStream> s) {
    std::size_t body = 0;
    for (int i = 0; i < 64; ++i) {
        http2::BodyEvent ev = co_await s->read_body(std::chrono::milliseconds(20));
        if (ev.kind == http2::BodyEvent::Kind::data) {
            body += ev.data.size();
            continue;
        }
        if (ev.kind == http2::BodyEvent::Kind::reset && ev.error != boost::beast::error::timeout) co_return;
        break;
    }
    const std::string& path = s->head().path;
    if (path.find('r') != std::string::npos) {
        s->reset(8);
        co_return;
    }
    http::ResponseHead head;
    head.status = 200;
    head.headers.add("content-type", "text/plain");
    const std::string answer = "got " + std::to_string(body) + " bytes for " + path;
    if (co_await s->write_head(head, false)) co_return;
    const auto* p = reinterpret_cast<const uint8_t*>(answer.data());
    if (path.find('t') != std::string::npos) {
        if (co_await s->write_body({p, answer.size()}, false)) co_return;
        http::Trailers t;
        t.add("grpc-status", "0");
        (void)co_await s->write_trailers(std::move(t));
    } else {
        (void)co_await s->write_body({p, answer.size()}, true);
    }
}

asio::awaitable<void> fetch(std::shared_ptr<http2::ClientStream> s) {
    auto head = co_await s->read_head();
    if (!head) co_return;
    for (int i = 0; i < 64; ++i) {
        http2::BodyEvent ev = co_await s->read_body(std::chrono::milliseconds(20));
        if (ev.kind != http2::BodyEvent::Kind::data) break;
    }
}

void run_server(std::string_view input, std::size_t max_piece) {
    asio::io_context io;
    http2::ServerConnection conn(std::make_unique<FuzzPeer>(io.get_executor(), input, max_piece),
                                 [](std::shared_ptr<http2::ServerStream> s) { return serve(std::move(s)); },
                                 small_limits());
    asio::co_spawn(io, conn.run(), asio::detached);
    io.run_for(std::chrono::seconds(2));
}

void run_client(std::string_view input, std::size_t max_piece) {
    asio::io_context io;
    http2::ClientConnection conn(std::make_unique<FuzzPeer>(io.get_executor(), input, max_piece),
                                 small_limits());
    asio::co_spawn(io, conn.run(), asio::detached);
    http::RequestHead req;
    req.method = "POST";
    req.scheme = "http";
    req.authority = "upstream:8080";
    req.path = "/a";
    if (auto s = conn.open(req, false)) {
        auto stream = *s;
        asio::co_spawn(io, [stream]() -> asio::awaitable<void> {
            static const uint8_t body[] = "hello";
            if (!co_await stream->write_body({body, 5}, true)) co_await fetch(stream);
        }, asio::detached);
    }
    req.method = "GET";
    req.path = "/b";
    if (auto s = conn.open(req, true)) asio::co_spawn(io, fetch(*s), asio::detached);
    io.run_for(std::chrono::seconds(2));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::size_t max_piece = 1 + (data[0] >> 1) * 64;  // 1 .. 8129 bytes per read
    if (data[0] % 2 == 0) {
        run_server(input, max_piece);
    } else {
        run_client(input, max_piece);
    }
    return 0;
}
