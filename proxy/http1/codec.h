// HTTP/1.1 framing over the protocol-neutral heads: Beast's parsed headers to a HeaderMap, and
// request and response heads serialized as text (one buffer, so a head and its first body bytes
// leave in one write), with chunked transfer coding written by hand.
#pragma once

#include <boost/beast/http/fields.hpp>

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

// Statuses whose responses never have a body (RFC 9110 §6.4.1).
constexpr bool bodiless_status(uint32_t status) noexcept {
    return status < 200 || status == 204 || status == 304;
}

}  // namespace remora::proxy::http1
