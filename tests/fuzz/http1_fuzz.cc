// libFuzzer target: bytes as the HTTP/1.1 codec sees them from a client (first byte even) or from
// an upstream (odd): Beast's parser with the proxy's limits, the codec's head checks, the strict
// chunked framing ahead of it, and the head rewritten as the proxy would send it on.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http1/codec.h"

namespace bhttp = boost::beast::http;
namespace http1 = remora::proxy::http1;
namespace http = remora::proxy::http;

namespace {

template <bool isRequest>
void parse(std::string_view bytes) {
    bhttp::parser<isRequest, bhttp::string_body> p;
    p.header_limit(16 * 1024);
    p.body_limit(64 * 1024);
    p.eager(false);
    boost::system::error_code ec;
    std::size_t used = p.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec || !p.is_header_done()) return;
    std::string_view body = bytes.substr(used);
    http1::ChunkedFraming framing;
    if (p.chunked()) {
        boost::system::error_code fec;
        framing.feed(body, fec);
    }
    p.eager(true);
    while (!ec && !body.empty() && !p.is_done()) {
        std::size_t n = p.put(boost::asio::buffer(body.data(), body.size()), ec);
        if (n == 0) break;
        body.remove_prefix(n);
    }
    http::HeaderMap headers;
    http1::to_header_map(p.get().base(), headers);
    std::string out;
    if constexpr (isRequest) {
        (void)http1::check_request_head(p.get().base());
        http::RequestHead head;
        head.method = p.get().method_string();
        head.path = p.get().target();
        head.authority = p.get()[bhttp::field::host];
        head.headers = headers;
        http1::append_request_head(out, head, p.chunked() ? http1::Framing::chunked : http1::Framing::length);
    } else {
        http::ResponseHead head;
        head.status = p.get().result_int();
        head.headers = headers;
        http1::append_response_head(out, head, http1::Framing::chunked, p.get().version(), p.keep_alive());
        http1::append_chunk_header(out, p.get().body().size());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] % 2 == 0) {
        parse<true>(bytes);
        // The framing check alone, on every byte as a chunked body: never past the end.
        http1::ChunkedFraming framing;
        boost::system::error_code ec;
        std::size_t used = 0;
        for (std::size_t i = 0; i < bytes.size() && !ec && !framing.done(); i += 7) {
            used += framing.feed(bytes.substr(i, 7), ec);
        }
        if (used > bytes.size()) __builtin_trap();
    } else {
        parse<false>(bytes);
    }
    return 0;
}
