// HTTP/1.1 upstream exchanges: hand-written request framing, Beast's response parser.
#include "proxy/http1/client_stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/ssl.hpp>

#include <array>

#include "proxy/server/context.h"

namespace remora::proxy::http1 {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

ClientStream::ClientStream(std::unique_ptr<UpstreamConn> conn, UpstreamPool& pool, uint32_t max_requests,
                           std::chrono::seconds idle_timeout, uint32_t max_header_bytes)
    : conn_(std::move(conn)),
      pool_(pool),
      max_requests_(max_requests),
      idle_timeout_(idle_timeout),
      max_header_bytes_(max_header_bytes),
      reused_(conn_ && conn_->requests > 0) {}

ClientStream::~ClientStream() = default;

asio::awaitable<error_code> ClientStream::write_out(std::string_view data) {
    error_code result;
    co_await std::visit(
        [&](auto& s) -> asio::awaitable<void> {
            if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
                result = asio::error::not_connected;
            } else {
                beast::get_lowest_layer(s).expires_after(idle_timeout_);
                std::array<asio::const_buffer, 2> parts{asio::buffer(out_), asio::buffer(data)};
                auto [ec, n] = co_await asio::async_write(s, parts, use_nothrow);
                result = ec;
            }
        },
        conn_->stream);
    out_.clear();
    co_return result;
}

asio::awaitable<error_code> ClientStream::send_head(const http::RequestHead& head, bool end_stream) {
    head_request_ = head.method == "HEAD";
    if (end_stream) {
        // A request that says it has a body but carries none: say so with a length (servers
        // answer 411 to a POST without one).
        framing_ = Framing::none;
        out_.clear();
        http::RequestHead const* h = &head;
        const bool wants_length = (head.method == "POST" || head.method == "PUT" || head.method == "PATCH") &&
                                  !head.headers.contains("content-length");
        if (wants_length) {
            http::RequestHead copy = head;
            copy.headers.set("content-length", "0");
            append_request_head(out_, copy, Framing::length);
        } else {
            append_request_head(out_, *h, head.headers.contains("content-length") ? Framing::length : Framing::none);
        }
        request_done_ = true;
        co_return co_await write_out({});
    }
    framing_ = head.headers.contains("content-length") ? Framing::length : Framing::chunked;
    out_.clear();
    append_request_head(out_, head, framing_);
    co_return error_code{};  // held: it goes with the first body bytes
}

asio::awaitable<error_code> ClientStream::send_body(std::string_view data, bool end_stream) {
    if (framing_ == Framing::chunked) {
        if (!data.empty()) append_chunk_header(out_, data.size());
        if (data.empty() && !end_stream) co_return error_code{};
        if (end_stream) {
            // The chunk's CRLF and the last chunk follow the data: a second small write would
            // cost a syscall, so the data is copied behind the framing instead.
            if (!data.empty()) {
                out_.append(data);
                out_.append("\r\n");
            }
            append_last_chunk(out_, nullptr);
            request_done_ = true;
            co_return co_await write_out({});
        }
        error_code ec = co_await write_out(data);
        if (ec) co_return ec;
        out_ = "\r\n";  // ends this chunk; goes with the next write
        co_return error_code{};
    }
    if (end_stream) request_done_ = true;
    if (data.empty() && !end_stream) co_return error_code{};
    co_return co_await write_out(data);
}

asio::awaitable<error_code> ClientStream::send_trailers(const http::Trailers& t) {
    if (framing_ == Framing::chunked) {
        append_last_chunk(out_, &t);
    }
    request_done_ = true;
    co_return co_await write_out({});
}

asio::awaitable<error_code> ClientStream::read_head(http::ResponseHead& head,
                                                    std::chrono::steady_clock::duration wait) {
    error_code result;
    if (!out_.empty()) {
        // A chunk's pending CRLF: the body ended without end_stream (should not happen).
        if ((result = co_await write_out({}))) co_return result;
    }
    co_await std::visit(
        [&](auto& s) -> asio::awaitable<void> {
            if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
                result = asio::error::not_connected;
            } else {
                for (;;) {
                    parser_.emplace();
                    parser_->body_limit(boost::none);
                    parser_->header_limit(max_header_bytes_);
                    if (head_request_) parser_->skip(true);
                    beast::get_lowest_layer(s).expires_after(wait);
                    auto [ec, n] = co_await bhttp::async_read_header(s, conn_->buffer, *parser_, use_nothrow);
                    if (ec) {
                        result = ec;
                        co_return;
                    }
                    const unsigned code = parser_->get().result_int();
                    if (code >= 200 || code == 101) break;  // 1xx: the real answer follows
                }
            }
        },
        conn_->stream);
    if (result) co_return result;
    conn_->requests++;
    auto& res = parser_->get();
    head.status = res.result_int();
    head.headers.clear();
    to_header_map(res.base(), head.headers);
    response_done_ = parser_->is_done();
    co_return error_code{};
}

bool ClientStream::body_ready() const noexcept {
    return response_done_ || (parser_ && parser_->is_done()) || conn_->buffer.size() > 0;
}

asio::awaitable<http::BodyPart> ClientStream::read_body(std::chrono::steady_clock::duration wait) {
    http::BodyPart part;
    if (!parser_ || parser_->is_done()) {
        response_done_ = true;
        part.kind = http::BodyPart::Kind::end;
        co_return part;
    }
    if (!chunk_) chunk_ = std::make_unique_for_overwrite<char[]>(kRelayChunk);  // not zeroed: 16 KiB a request
    error_code result;
    size_t got = 0;
    co_await std::visit(
        [&](auto& s) -> asio::awaitable<void> {
            if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
                result = asio::error::not_connected;
            } else {
                while (!parser_->is_done()) {
                    parser_->get().body().data = chunk_.get();
                    parser_->get().body().size = kRelayChunk;
                    beast::get_lowest_layer(s).expires_after(wait);
                    auto [ec, n] = co_await bhttp::async_read_some(s, conn_->buffer, *parser_, use_nothrow);
                    if (ec == bhttp::error::need_buffer) ec = {};
                    if (ec) {
                        result = ec;
                        co_return;
                    }
                    got = kRelayChunk - parser_->get().body().size;
                    if (got > 0) co_return;  // progress without bytes is a chunk header
                }
            }
        },
        conn_->stream);
    if (result) {
        part.kind = http::BodyPart::Kind::error;
        part.error = result;
        co_return part;
    }
    if (got == 0) {  // the end, with no bytes
        response_done_ = true;
        part.kind = http::BodyPart::Kind::end;
        co_return part;
    }
    part.kind = http::BodyPart::Kind::data;
    part.data = std::string_view(chunk_.get(), got);
    co_return part;
}

void ClientStream::finish(bool complete) noexcept {
    if (!conn_) return;
    // Back to the pool only at a clean message boundary: both messages ended, the upstream
    // wants to keep the connection, and nothing unread is left that could answer the next
    // request (a response with extra bytes would poison the pool).
    const bool clean = complete && request_done_ && parser_ && parser_->is_done() &&
                       parser_->get().keep_alive() && conn_->buffer.size() == 0 && out_.empty();
    if (complete && parser_ && parser_->is_done() && conn_->buffer.size() > 0) pool_.count_dirty();
    if (clean && (max_requests_ == 0 || conn_->requests < max_requests_)) {
        try {
            pool_.put(std::move(conn_));
        } catch (...) {
        }
    }
    conn_.reset();
}

}  // namespace remora::proxy::http1
