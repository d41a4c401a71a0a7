// The HTTP/1.1 codec's own checks: Host as RFC 9112 §3.2 wants it, CONNECT refused, and chunked
// framing read strictly (sizes, line endings, data length, bounds), byte by byte.
#include <doctest/doctest.h>

#include <boost/beast/http.hpp>

#include <string>

#include "proxy/http1/codec.h"

namespace bhttp = boost::beast::http;
namespace http1 = remora::proxy::http1;
using http1::CodecError;

namespace {

boost::system::error_code head_check(const std::string& text) {
    bhttp::request_parser<bhttp::empty_body> p;
    boost::system::error_code ec;
    p.put(boost::asio::buffer(text), ec);
    REQUIRE_FALSE(ec);
    REQUIRE(p.is_header_done());
    return http1::check_request_head(p.get().base());
}

// The framing's verdict on `body`, fed whole and then one byte at a time (both must agree).
boost::system::error_code framing(const std::string& body, std::size_t* used = nullptr) {
    http1::ChunkedFraming whole;
    boost::system::error_code ec;
    std::size_t n = whole.feed(body, ec);
    http1::ChunkedFraming bytes;
    boost::system::error_code ec2;
    std::size_t n2 = 0;
    for (std::size_t i = 0; i < body.size() && !ec2 && !bytes.done(); ++i)
        n2 += bytes.feed(body.substr(i, 1), ec2);
    CHECK(ec == ec2);
    CHECK(whole.done() == bytes.done());
    if (!ec) CHECK(n == n2);
    if (used) *used = n;
    return ec;
}

}  // namespace

TEST_CASE("Host: one, a valid authority, and required on HTTP/1.1") {
    CHECK_FALSE(head_check("GET / HTTP/1.1\r\nHost: reviews:9080\r\n\r\n"));
    CHECK_FALSE(head_check("GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"));
    CHECK_FALSE(head_check("GET / HTTP/1.0\r\n\r\n"));  // HTTP/1.0 needs none
    CHECK_FALSE(head_check("GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n"));  // empty is allowed
    CHECK(head_check("GET / HTTP/1.1\r\n\r\n") == CodecError::missing_host);
    CHECK(head_check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == CodecError::duplicate_host);
    CHECK(head_check("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n") == CodecError::duplicate_host);
    for (const char* bad : {"a b", "a/b", "user@a", "a\"b", "a<b", "a\\b", "a{b", "a^b", "\xc3\xa9"}) {
        CAPTURE(bad);
        CHECK(head_check(std::string("GET / HTTP/1.1\r\nHost: ") + bad + "\r\n\r\n") ==
              CodecError::invalid_host);
    }
}

TEST_CASE("CONNECT is refused (a sidecar tunnels nothing)") {
    CHECK(head_check("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n") ==
          CodecError::connect_not_allowed);
}

TEST_CASE("valid chunked bodies: extensions, trailers, leading zeros, upper case hex") {
    std::size_t used = 0;
    CHECK_FALSE(framing("5\r\nhello\r\n0\r\n\r\n", &used));
    CHECK(used == 15);
    CHECK_FALSE(framing("5;name=value\r\nhello\r\nA ; x\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n"));
    CHECK_FALSE(framing("0005\r\nhello\r\n00\r\n\r\n"));
    // Bytes after the body (the next request) are not the body's.
    CHECK_FALSE(framing("0\r\n\r\nGET / HTTP/1.1\r\n", &used));
    CHECK(used == 5);
}

TEST_CASE("invalid chunk sizes are refused at the first bad byte") {
    CHECK(framing("zz\r\nhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing("-5\r\nhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing("0x5\r\nhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing(" 5\r\nhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing("5 x\r\nhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing("\r\nhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing("5\rhello\r\n0\r\n\r\n") == CodecError::bad_chunk_size);
    CHECK(framing("ffffffffffffffffff\r\n") == CodecError::chunk_size_overflow);
    CHECK(framing("4000000000000001\r\n") == CodecError::chunk_size_overflow);
}

TEST_CASE("bare LF, over-long chunk data and unbounded lines are refused") {
    CHECK(framing("5\nhello\n0\n\n") == CodecError::bare_lf);
    CHECK(framing("5\r\nhello\n0\r\n\r\n") == CodecError::bare_lf);
    CHECK(framing("5\r\nhello\r\n0\r\n\n") == CodecError::bare_lf);
    CHECK(framing("5;a\nhello") == CodecError::bare_lf);
    CHECK(framing("5\r\nhelloEXTRA\r\n0\r\n\r\n") == CodecError::chunk_data_overrun);
    CHECK(framing("5\r\nhello\rX") == CodecError::chunk_data_overrun);
    CHECK(framing("5;" + std::string(http1::kMaxChunkLineBytes, 'a')) ==
          CodecError::chunk_line_too_long);
    CHECK(framing("0\r\n" + std::string(http1::kMaxTrailerBytes + 1, 'a')) ==
          CodecError::chunk_line_too_long);
    // Once refused, always refused.
    http1::ChunkedFraming f;
    boost::system::error_code ec;
    f.feed("zz", ec);
    CHECK(ec == CodecError::bad_chunk_size);
    CHECK(f.feed("5\r\n", ec) == 0);
    CHECK(ec == CodecError::bad_chunk_size);
}

TEST_CASE("codec errors are request errors; a reset is not") {
    CHECK(http1::is_request_error(CodecError::bare_lf));
    CHECK(http1::is_request_error(bhttp::error::bad_chunk));
    CHECK_FALSE(http1::is_request_error(bhttp::error::partial_message));
    CHECK_FALSE(http1::is_request_error(boost::asio::error::connection_reset));
}
