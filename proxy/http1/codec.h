// HTTP/1.1 framing over the protocol-neutral heads: Beast's parsed headers to a HeaderMap, and
// request and response heads serialized as text (one buffer, so a head and its first body bytes
// leave in one write), with chunked transfer coding written by hand.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/message.h"

namespace remora::proxy::http1 {

// How a message's body is delimited on the wire.
enum class Framing {
    none,     // no body (or one the message cannot have: HEAD, 204, 304)
    length,   // Content-Length, taken from the head's headers
    chunked,  // Transfer-Encoding: chunked
    close,    // until the connection closes (HTTP/1.0 peers without a length)
};

// Every field of a parsed Beast message except Host, with lowercase names.
void to_header_map(const boost::beast::http::fields& fields, http::HeaderMap& out);

// "GET /path HTTP/1.1\r\nhost: …\r\n<headers><framing>\r\n". Transfer-Encoding and a
// Content-Length that disagrees with `framing` are not written from `head.headers`.
void append_request_head(std::string& out, const http::RequestHead& head, Framing framing);
// "HTTP/1.1 200 OK\r\n<headers><framing><connection>\r\n"; `version` 10 or 11.
void append_response_head(std::string& out, const http::ResponseHead& head, Framing framing,
                          unsigned version, bool keep_alive);
// The chunk header for `size` bytes ("1a2b\r\n"); the chunk ends with "\r\n".
void append_chunk_header(std::string& out, std::size_t size);
// The last chunk and trailers: "0\r\n<trailers>\r\n".
void append_last_chunk(std::string& out, const http::Trailers* trailers);

// Why the codec refuses a request: its own checks on top of Beast's parser, which is lenient
// where RFC 9112 asks a server to refuse (Host) and where a lenient reading of chunked framing
// lets a front end and a back end disagree on where a message ends (request smuggling).
enum class CodecError {
    missing_host = 1,        // HTTP/1.1 without Host (RFC 9112 §3.2)
    duplicate_host,          // more than one Host
    invalid_host,            // a Host no authority could be (space, '/', '@', controls, ...)
    connect_not_allowed,     // CONNECT: a sidecar tunnels nothing (405)
    bad_chunk_size,          // a chunk size not 1*HEXDIG ("zz", "-5", "0x5", " 5")
    chunk_size_overflow,     // more than 2^62 bytes
    bare_lf,                 // a chunk line ended by LF alone
    chunk_data_overrun,      // chunk data longer than its size (no CRLF where it should end)
    chunk_line_too_long,     // a chunk-size line (extensions) or the trailers past their bound
};
const boost::system::error_category& codec_category() noexcept;
inline boost::system::error_code make_error_code(CodecError e) noexcept {
    return {static_cast<int>(e), codec_category()};
}

// The longest chunk-size line (with its extensions) and trailer section a request may send:
// Beast's parser bounds neither, so a line that never ends would grow the buffer forever.
constexpr std::size_t kMaxChunkLineBytes = 4096;
constexpr std::size_t kMaxTrailerBytes = 16 * 1024;

// The request head's own checks, after Beast parsed it: Host as RFC 9112 §3.2 wants it (one, on
// HTTP/1.1, and a valid authority), and no CONNECT. Empty when the request may go on.
boost::system::error_code check_request_head(const boost::beast::http::request_header<>& head);

// A request the client got wrong (Beast's parse errors, the codec's own): answered 400, where
// any other read error (a reset, a timeout) has no one left to answer.
bool is_request_error(const boost::system::error_code& ec) noexcept;

// Reads chunked framing (RFC 9112 §7.1) strictly, byte by byte as it arrives, ahead of Beast's
// parser: a chunk size is 1*HEXDIG (no sign, prefix or space), at most 2^62, every line ends in
// CRLF, chunk data is exactly its size, the chunk line and the trailers are bounded. The first
// byte that breaks a rule makes feed() return that error, and every later call too.
class ChunkedFraming {
  public:
    // Bytes of the message body as they come; bytes after the end of the message (a pipelined
    // request) are not looked at. Returns how many were part of this body.
    std::size_t feed(std::string_view bytes, boost::system::error_code& ec);
    bool done() const noexcept { return state_ == State::done; }

  private:
    enum class State { size, ext, size_lf, data, data_cr, data_lf, trailer, trailer_lf, done, failed };
    State state_ = State::size;
    uint64_t size_ = 0;        // the chunk being read: its size, then what is left of it
    std::size_t digits_ = 0;   // hex digits of the size so far
    std::size_t line_ = 0;     // bytes of the current chunk line, or of the trailers
    bool trailer_line_empty_ = true;
    bool ext_named_ = false;   // a ';' began the chunk extensions
    CodecError error_{};
};

// A stream that shows every byte read through it to a ChunkedFraming before the caller (Beast's
// parser) sees it; a framing error ends the read with that error and the bytes unread. Without a
// ChunkedFraming (a body that is not chunked) it only passes reads on.
template <class Stream>
class CheckedBodyStream {
  public:
    using executor_type = typename Stream::executor_type;

    CheckedBodyStream(Stream& next, ChunkedFraming* framing) : next_(next), framing_(framing) {}
    executor_type get_executor() noexcept { return next_.get_executor(); }

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
            [this, buffers, started = false](auto& self, boost::system::error_code ec = {},
                                             std::size_t n = 0) mutable {
                if (!started) {
                    started = true;
                    next_.async_read_some(buffers, std::move(self));
                    return;
                }
                if (!ec && framing_ && !framing_->done()) {
                    std::size_t left = n;
                    for (auto it = boost::asio::buffer_sequence_begin(buffers);
                         left > 0 && !ec && it != boost::asio::buffer_sequence_end(buffers); ++it) {
                        const std::size_t take = std::min(left, it->size());
                        framing_->feed({static_cast<const char*>(it->data()), take}, ec);
                        left -= take;
                    }
                }
                self.complete(ec, n);
            },
            token, next_);
    }

  private:
    Stream& next_;
    ChunkedFraming* framing_;
};

// Statuses whose responses never have a body (RFC 9110 §6.4.1).
constexpr bool bodiless_status(uint32_t status) noexcept {
    return status < 200 || status == 204 || status == 304;
}

}  // namespace remora::proxy::http1

template <>
struct boost::system::is_error_code_enum<remora::proxy::http1::CodecError> : std::true_type {};
