// The HTTP/1.1 server codec: requests read from a downstream connection with Beast's parser and
// served one at a time through the protocol-neutral request path; responses framed by hand,
// the head held to leave with the first body bytes (one write, one TLS record).
#include "proxy/http1/session.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <atomic>
#include <cstring>
#include <optional>
#include <tuple>

#include "proxy/http1/client_stream.h"
#include "proxy/http1/codec.h"
#include "proxy/request/local_reply.h"
#include "proxy/request/request_path.h"
#include "proxy/tcp/splice.h"

namespace remora::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

// The most of a refused request's body read and dropped so its caller can read the answer.
constexpr uint64_t kMaxDiscardedBody = 1024 * 1024;

struct HeaderDeadline {
    bool fired = false;
    bool done = false;
};

// The deadline of one body read: its timer cancels the read instead of closing the socket (as
// Beast's own deadline would), so the client can still be answered 408. Shared with the timer's
// handler, which may run after the read it was armed for: `generation` tells it apart.
struct BodyReadDeadline {
    uint64_t generation = 0;
    bool pending = false;  // a read is in progress (the socket may be touched)
    bool fired = false;
};

template <class S>
class Http1ServerStream final : public http::ServerStream {
public:
    Http1ServerStream(S& s, beast::flat_buffer& buf, bhttp::request_parser<bhttp::buffer_body>& p, Downstream& info,
                      WorkerContext& ctx)
        : s_(s), buf_(buf), p_(p), info_(info), ctx_(ctx), limits_(info.config->limits) {
        auto& req = p_.get();
        version_ = req.version();
        head_.protocol = version_ == 10 ? http::Protocol::http10 : http::Protocol::http11;
        head_.method = req.method_string();
        head_.path = req.target();
        head_.authority = req[bhttp::field::host];
        head_.scheme = "http";
        head_.headers.reserve(16);
        http1::to_header_map(req.base(), head_.headers);
        keep_alive_ = req.keep_alive();
        head_request_ = req.method() == bhttp::verb::head;
        expect_continue_ = beast::iequals(req[bhttp::field::expect], "100-continue");
        // Chunked framing is checked strictly ahead of Beast (codec.h), from the body bytes
        // that came with the head on.
        if (p_.chunked()) {
            checked_.emplace(s_, &chunked_);
            chunked_.feed({static_cast<const char*>(buf_.data().data()), buf_.size()}, framing_error_);
        } else {
            checked_.emplace(s_, nullptr);
        }
    }

    bool body_done() const noexcept override { return p_.is_done(); }

    asio::awaitable<http::BodyPart> read_body(std::chrono::steady_clock::duration wait) override {
        http::BodyPart part;
        if (expect_continue_ && !continue_sent_ && !head_started_ && !p_.is_done()) {
            // Envoy's default: this proxy says go on, rather than forward the expectation.
            continue_sent_ = true;
            beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(10));
            co_await asio::async_write(s_, asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), use_nothrow);
        }
        while (!p_.is_done()) {
            p_.get().body().data = info_.relay_buffer.data();
            p_.get().body().size = info_.relay_buffer.size();
            auto [ec, n] = framing_error_ ? std::tuple(framing_error_, std::size_t{0}) : co_await bounded_read(wait);
            if (ec == bhttp::error::need_buffer) ec = {};
            if (ec == beast::error::timeout) {
                // Stalled: the request path answers (408 or a cut); the connection ends after it.
                failed_ = true;
                keep_alive_ = false;
                part.kind = http::BodyPart::Kind::error;
                part.error = ec;
                co_return part;
            }
            if (ec) {
                failed_ = true;
                if (!head_started_ && http1::is_request_error(ec)) co_await refuse_body(ec);
                part.kind = http::BodyPart::Kind::error;
                part.error = ec;
                co_return part;
            }
            const size_t got = info_.relay_buffer.size() - p_.get().body().size;
            if (got > 0) {
                part.kind = http::BodyPart::Kind::data;
                part.data = std::string_view(info_.relay_buffer.data(), got);
                co_return part;
            }
            // Progress without body bytes: a chunk header.
        }
        part.kind = http::BodyPart::Kind::end;
        co_return part;
    }

    asio::awaitable<error_code> send_head(http::ResponseHead& head, bool end_stream) override {
        if (!p_.is_done() && !failed_) co_await drain_request();
        head_started_ = true;
        if (ctx_.draining.load(std::memory_order_relaxed)) keep_alive_ = false;
        const bool has_length = head.headers.contains("content-length");
        if (head_request_ || http1::bodiless_status(head.status)) {
            no_body_ = true;
            framing_ = has_length ? http1::Framing::length : http1::Framing::none;
        } else if (end_stream && !has_length) {
            head.headers.set("content-length", "0");
            framing_ = http1::Framing::length;
        } else if (has_length) {
            framing_ = http1::Framing::length;
        } else if (version_ == 11) {
            framing_ = http1::Framing::chunked;
        } else {
            framing_ = http1::Framing::close;  // HTTP/1.0 without a length: the close ends it
            keep_alive_ = false;
        }
        out_.clear();
        http1::append_response_head(out_, head, framing_, version_ ? version_ : 11, keep_alive_);
        if (end_stream) {
            response_done_ = true;
            co_return co_await write_out({});
        }
        co_return error_code{};
    }

    asio::awaitable<error_code> send_body(std::string_view data, bool end_stream) override {
        if (no_body_) data = {};
        if (end_stream) response_done_ = true;
        if (framing_ == http1::Framing::chunked && !no_body_) {
            if (!data.empty()) {
                http1::append_chunk_header(out_, data.size());
                if (end_stream) {
                    out_.append(data);
                    out_.append("\r\n");
                    http1::append_last_chunk(out_, nullptr);
                    co_return co_await write_out({});
                }
                error_code ec = co_await write_out(data);
                out_ = "\r\n";  // ends this chunk; goes with the next write
                co_return ec;
            }
            if (end_stream) http1::append_last_chunk(out_, nullptr);
            if (out_.empty() || (!end_stream && out_ == "\r\n")) co_return error_code{};
            co_return co_await write_out({});
        }
        if (data.empty() && !end_stream) co_return error_code{};
        if (data.empty() && out_.empty()) co_return error_code{};
        co_return co_await write_out(data);
    }

    asio::awaitable<error_code> send_trailers(const http::Trailers& t) override {
        response_done_ = true;
        if (framing_ == http1::Framing::chunked && !no_body_) http1::append_last_chunk(out_, &t);
        if (out_.empty()) co_return error_code{};
        co_return co_await write_out({});
    }

    asio::awaitable<error_code> flush() override {
        if (out_.empty() || out_ == "\r\n") co_return error_code{};
        co_return co_await write_out({});
    }

    void reset() noexcept override {
        failed_ = true;
        keep_alive_ = false;
        error_code ignored;
        beast::get_lowest_layer(s_).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    }

    bool head_sent() const noexcept override { return head_started_; }
    // The connection closes after this response (a request that could not be read).
    void close_after_response() noexcept { keep_alive_ = false; }

    asio::awaitable<void> tunnel(http::ResponseHead& head, http::ClientStream& upstream, uint64_t& received,
                                 uint64_t& sent) override {
        keep_alive_ = false;
        head_started_ = true;
        response_done_ = true;
        auto* h1 = dynamic_cast<http1::ClientStream*>(&upstream);
        if (!h1) co_return;
        UpstreamConn& conn = h1->connection();
        out_.clear();
        http1::append_response_head(out_, head, http1::Framing::none, 11, true);
        if (co_await write_out({})) co_return;
        co_await std::visit(
            [&](auto& up) -> asio::awaitable<void> {
                if constexpr (!std::is_same_v<std::decay_t<decltype(up)>, std::monostate>) {
                    beast::get_lowest_layer(s_).expires_never();
                    beast::get_lowest_layer(up).expires_never();
                    // Bytes that came with the heads go first, each to the other side.
                    if (conn.buffer.size() > 0) {
                        sent += conn.buffer.size();
                        auto [e1, n1] = co_await asio::async_write(s_, conn.buffer.data(), use_nothrow);
                        if (e1) co_return;
                        conn.buffer.consume(conn.buffer.size());
                    }
                    if (buf_.size() > 0) {
                        received += buf_.size();
                        auto [e2, n2] = co_await asio::async_write(up, buf_.data(), use_nothrow);
                        if (e2) co_return;
                        buf_.consume(buf_.size());
                    }
                    std::atomic<uint64_t> in{0}, out{0};
                    co_await splice(s_, up, limits_.stream_idle_timeout, &in, &out);
                    received += in.load(std::memory_order_relaxed);
                    sent += out.load(std::memory_order_relaxed);
                }
            },
            conn.stream);
    }

    // The connection may carry another request: both messages ended cleanly and both sides
    // want it kept.
    bool reusable() const noexcept {
        return keep_alive_ && !failed_ && response_done_ && p_.is_done() && framing_ != http1::Framing::close;
    }

private:
    // One read of the body, waiting at most `wait` (beast::error::timeout past it). Bytes already
    // buffered are parsed without a timer.
    asio::awaitable<std::tuple<error_code, std::size_t>> bounded_read(std::chrono::steady_clock::duration wait) {
        beast::get_lowest_layer(s_).expires_never();
        if (buf_.size() > 0 && !p_.chunked()) co_return co_await bhttp::async_read_some(*checked_, buf_, p_, use_nothrow);
        if (!deadline_) {
            deadline_ = std::make_shared<BodyReadDeadline>();
            timer_.emplace(co_await asio::this_coro::executor);
        }
        const uint64_t generation = ++deadline_->generation;
        deadline_->pending = true;
        deadline_->fired = false;
        timer_->expires_after(wait);
        timer_->async_wait([d = deadline_, generation, &sock = beast::get_lowest_layer(s_).socket()](error_code tec) {
            if (tec || d->generation != generation || !d->pending) return;
            d->fired = true;
            error_code ignored;
            sock.cancel(ignored);
        });
        auto [ec, n] = co_await bhttp::async_read_some(*checked_, buf_, p_, use_nothrow);
        deadline_->pending = false;
        timer_->cancel();
        if (deadline_->fired) ec = beast::error::timeout;
        co_return std::tuple(ec, n);
    }

    asio::awaitable<error_code> write_out(std::string_view data) {
        beast::get_lowest_layer(s_).expires_after(limits_.stream_idle_timeout);
        std::array<asio::const_buffer, 2> parts{asio::buffer(out_), asio::buffer(data)};
        auto [ec, n] = co_await asio::async_write(s_, parts, use_nothrow);
        out_.clear();
        if (ec) {
            failed_ = true;
            keep_alive_ = false;
        }
        co_return ec;
    }

    // A reply before the whole request body was read (a refusal, an early answer): the rest is
    // read and dropped (up to a bound) first, since closing on unread bytes resets the
    // connection and the caller would never see the reply. A caller still waiting for
    // 100-continue is answered at once instead, and the connection closes after it.
    asio::awaitable<void> drain_request() {
        if (expect_continue_ && !continue_sent_) {
            keep_alive_ = false;
            co_return;
        }
        uint64_t total = 0;
        while (!p_.is_done() && total <= kMaxDiscardedBody) {
            p_.get().body().data = info_.relay_buffer.data();
            p_.get().body().size = info_.relay_buffer.size();
            beast::get_lowest_layer(s_).expires_after(limits_.request_header_timeout);
            if (framing_error_) break;
            auto [ec, n] = co_await bhttp::async_read_some(*checked_, buf_, p_, use_nothrow);
            if (ec && ec != bhttp::error::need_buffer) break;
            total += info_.relay_buffer.size() - p_.get().body().size;
        }
        if (!p_.is_done()) keep_alive_ = false;
    }

    // A request body whose framing is broken: answered 400 here, since the request path can
    // only give up on it, and the connection closes (where the next message starts is unknown).
    asio::awaitable<void> refuse_body(error_code ec) {
        ctx_.stats.inc(Counter::downstream_rq_bad_request);
        ctx_.log("conn=" + std::to_string(info_.id) + " " + info_.remote + " refused request body: " + ec.message());
        http::ResponseHead head;
        head.status = 400;
        head.headers.set("content-type", "text/plain");
        head.headers.set("content-length", "23");
        keep_alive_ = false;
        framing_ = http1::Framing::length;
        out_.clear();
        http1::append_response_head(out_, head, framing_, version_ ? version_ : 11, false);
        head_started_ = true;
        response_done_ = true;
        no_body_ = true;
        co_await write_out("malformed HTTP request\n");
    }

    S& s_;
    beast::flat_buffer& buf_;
    bhttp::request_parser<bhttp::buffer_body>& p_;
    Downstream& info_;
    WorkerContext& ctx_;
    const Limits& limits_;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool head_request_ = false;
    bool expect_continue_ = false;
    bool continue_sent_ = false;
    bool head_started_ = false;
    bool response_done_ = false;
    bool no_body_ = false;
    bool failed_ = false;
    http1::Framing framing_ = http1::Framing::none;
    http1::ChunkedFraming chunked_;
    std::optional<http1::CheckedBodyStream<S>> checked_;
    error_code framing_error_;  // found in the body bytes that came with the head
    std::shared_ptr<BodyReadDeadline> deadline_;  // made on the first body read that has to wait
    std::optional<asio::steady_timer> timer_;
    std::string out_;  // the head (and chunk framing) waiting to go with the next bytes
};

// Reads one request head from `down`. False when the connection ended (or the request was
// refused): nothing more is read from it.
template <class S>
asio::awaitable<bool> serve_one(S& down, beast::flat_buffer& dbuf, Downstream& info, WorkerContext& ctx) {
    // Idle wait for the next request's first bytes (Beast's deadline closes an idle connection),
    // then a deadline for the whole header. Reading, not polling the socket: with TLS, OpenSSL
    // may already hold the request it read together with the handshake.
    if (dbuf.size() == 0) {
        beast::get_lowest_layer(down).expires_after(info.config->limits.idle_timeout);
        auto [iec, n] = co_await down.async_read_some(dbuf.prepare(kRelayChunk), use_nothrow);
        if (iec) co_return false;
        dbuf.commit(n);
    }
    if (uint64_t g = ctx.config.generation(); g != info.config_generation) {
        info.config = ctx.config.current();
        info.config_generation = g;
    }
    const Limits& limits = info.config->limits;
    bhttp::request_parser<bhttp::buffer_body> parser;
    parser.header_limit(limits.max_request_header_bytes);
    parser.body_limit(boost::none);  // bodies are streamed, never held whole

    // Usually the whole header came with the first read: parse it from the buffer, no timer.
    error_code ec;
    if (dbuf.size() > 0) {
        parser.eager(false);  // stop after the header, as async_read_header does
        size_t used = parser.put(dbuf.data(), ec);
        dbuf.consume(used);
        if (ec == bhttp::error::need_more) ec = {};
    }
    if (!ec && !parser.is_header_done()) {
        // The header deadline cancels the read instead of closing the socket, so the client still
        // gets its 408.
        auto deadline = std::make_shared<HeaderDeadline>();
        beast::get_lowest_layer(down).expires_never();
        asio::steady_timer header_timer(co_await asio::this_coro::executor);
        header_timer.expires_after(limits.request_header_timeout);
        header_timer.async_wait([deadline, &down](error_code tec) {
            if (tec || deadline->done) return;  // `down` is only touched while the read is pending
            deadline->fired = true;
            error_code ignored;
            beast::get_lowest_layer(down).socket().cancel(ignored);
        });
        auto [rec, nread] = co_await bhttp::async_read_header(down, dbuf, parser, use_nothrow);
        deadline->done = true;
        header_timer.cancel();
        ec = deadline->fired ? beast::error::timeout : rec;
    }
    if (!ec) ec = http1::check_request_head(parser.get());
    if (ec) {
        if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
            ec == asio::ssl::error::stream_truncated) {
            co_return false;
        }
        ProxyError e = ProxyError::bad_request;
        if (ec == beast::error::timeout) {
            e = ProxyError::header_timeout;
            ctx.stats.inc(Counter::downstream_rq_header_timeout);
        } else if (ec == bhttp::error::header_limit) {
            e = ProxyError::headers_too_large;
            ctx.stats.inc(Counter::downstream_rq_headers_too_large);
        } else {
            ctx.stats.inc(Counter::downstream_rq_bad_request);
        }
        ctx.log("conn=" + std::to_string(info.id) + " " + info.remote + " refused request: " + ec.message());
        // A stand-in request for the reply: the one read could not be parsed.
        bhttp::request_parser<bhttp::buffer_body> blank;
        error_code ignored;
        blank.put(asio::buffer(std::string_view("GET / HTTP/1.1\r\n\r\n")), ignored);
        Http1ServerStream<S> stream(down, dbuf, blank, info, ctx);
        stream.close_after_response();
        if (ec == http1::CodecError::connect_not_allowed) e = ProxyError::method_not_allowed;
        co_await refuse_request(stream, e, info, ctx);
        co_return false;
    }
    Http1ServerStream<S> stream(down, dbuf, parser, info, ctx);
    co_await serve_request(stream, info, ctx);
    co_return stream.reusable();
}

template <class S>
asio::awaitable<void> serve_http(S& down, Downstream& info, WorkerContext& ctx, std::string_view prefix) {
    beast::flat_buffer dbuf;
    if (!prefix.empty()) {
        auto room = dbuf.prepare(prefix.size());
        std::memcpy(room.data(), prefix.data(), prefix.size());
        dbuf.commit(prefix.size());
    }
    while (co_await serve_one(down, dbuf, info, ctx)) {
    }
}

}  // namespace

asio::awaitable<void> serve_http1(PlainStream& down, Downstream& info, WorkerContext& ctx, std::string_view prefix) {
    co_await serve_http(down, info, ctx, prefix);
}

asio::awaitable<void> serve_http1(TlsStream& down, Downstream& info, WorkerContext& ctx, std::string_view prefix) {
    co_await serve_http(down, info, ctx, prefix);
}

}  // namespace remora::proxy
