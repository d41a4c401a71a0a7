// HTTP/1.1 head serialization and Beast-to-HeaderMap conversion.
#include "proxy/http1/codec.h"

#include <boost/beast/http/status.hpp>

#include <cstdio>

namespace remora::proxy::http1 {

namespace bhttp = boost::beast::http;

void to_header_map(const bhttp::fields& fields, http::HeaderMap& out) {
    for (const auto& f : fields) {
        if (f.name() == bhttp::field::host) continue;
        out.add(f.name_string(), f.value());
    }
}

namespace {

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
}

// The head's own fields, without those the framing decides.
void append_fields(std::string& out, const http::HeaderMap& headers, Framing framing) {
    for (const auto& e : headers) {
        if (e.name == "transfer-encoding") continue;
        if (e.name == "content-length" && framing != Framing::length) continue;
        if (e.name == "connection" || e.name == "keep-alive") continue;
        append_field(out, e.name, e.value);
    }
    if (framing == Framing::chunked) out.append("transfer-encoding: chunked\r\n");
}

}  // namespace

void append_request_head(std::string& out, const http::RequestHead& head, Framing framing) {
    out.reserve(out.size() + 64 + head.path.size() + head.headers.byte_size() + head.headers.size() * 4);
    out.append(head.method);
    out.push_back(' ');
    out.append(head.path.empty() ? std::string_view("/") : std::string_view(head.path));
    out.append(" HTTP/1.1\r\n");
    if (!head.authority.empty()) append_field(out, "host", head.authority);
    append_fields(out, head.headers, framing);
    for (const auto& e : head.headers) {
        // An Upgrade request keeps its Connection: upgrade (the request path set it on purpose).
        if (e.name == "connection") append_field(out, e.name, e.value);
    }
    out.append("\r\n");
}

void append_response_head(std::string& out, const http::ResponseHead& head, Framing framing,
                          unsigned version, bool keep_alive) {
    out.reserve(out.size() + 64 + head.headers.byte_size() + head.headers.size() * 4);
    out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    out.append(std::to_string(head.status));
    out.push_back(' ');
    std::string_view reason = bhttp::obsolete_reason(static_cast<bhttp::status>(head.status));
    out.append(reason.empty() ? std::string_view("Unknown") : reason);
    out.append("\r\n");
    append_fields(out, head.headers, framing);
    bool upgrade = false;
    for (const auto& e : head.headers) {
        if (e.name == "connection") {
            append_field(out, e.name, e.value);  // a 101's "Connection: Upgrade"
            upgrade = true;
        }
    }
    if (!upgrade) {
        if (!keep_alive && version != 10) out.append("connection: close\r\n");
        if (keep_alive && version == 10) out.append("connection: keep-alive\r\n");
    }
    out.append("\r\n");
}

void append_chunk_header(std::string& out, std::size_t size) {
    char buf[24];
    int n = std::snprintf(buf, sizeof buf, "%zx\r\n", size);
    out.append(buf, static_cast<std::size_t>(n));
}

void append_last_chunk(std::string& out, const http::Trailers* trailers) {
    out.append("0\r\n");
    if (trailers) {
        for (const auto& e : *trailers) append_field(out, e.name, e.value);
    }
    out.append("\r\n");
}

}  // namespace remora::proxy::http1
