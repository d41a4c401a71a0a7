// HTTP/1.1 head serialization and Beast-to-HeaderMap conversion.
#include "proxy/http1/codec.h"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>

#include <cstdio>
#include <string>

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

namespace {

class CodecCategory final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "remora.http1"; }
    std::string message(int e) const override {
        switch (static_cast<CodecError>(e)) {
            case CodecError::missing_host: return "HTTP/1.1 request without Host";
            case CodecError::duplicate_host: return "more than one Host header";
            case CodecError::invalid_host: return "Host is not a valid authority";
            case CodecError::connect_not_allowed: return "CONNECT is not allowed";
            case CodecError::bad_chunk_size: return "invalid chunk size";
            case CodecError::chunk_size_overflow: return "chunk size too large";
            case CodecError::bare_lf: return "chunk line ended by a bare LF";
            case CodecError::chunk_data_overrun: return "chunk data longer than its size";
            case CodecError::chunk_line_too_long: return "chunk line or trailers too long";
        }
        return "HTTP/1.1 codec error";
    }
};

// RFC 3986 authority characters (reg-name, IPv6 literal, port), without userinfo: RFC 9110 §7.2
// has no "@" in Host.
bool valid_host(std::string_view host) {
    for (char c : host) {
        const auto u = static_cast<unsigned char>(c);
        const bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                        std::string_view("-._~%!$&'()*+,;=:[]").find(c) != std::string_view::npos;
        if (!ok) return false;
    }
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

const boost::system::error_category& codec_category() noexcept {
    static const CodecCategory category;
    return category;
}

bool is_request_error(const boost::system::error_code& ec) noexcept {
    if (ec.category() == codec_category()) return true;
    if (ec.category() != bhttp::make_error_code(bhttp::error::bad_chunk).category()) return false;
    return ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
           ec != bhttp::error::need_more && ec != bhttp::error::need_buffer;
}

boost::system::error_code check_request_head(const bhttp::request_header<>& head) {
    if (head.method() == bhttp::verb::connect) return CodecError::connect_not_allowed;
    std::size_t hosts = 0;
    for (auto it = head.find(bhttp::field::host); it != head.end() && it->name() == bhttp::field::host;
         ++it) {
        ++hosts;
        if (!valid_host(it->value())) return CodecError::invalid_host;
    }
    if (hosts == 0 && head.version() >= 11) return CodecError::missing_host;
    if (hosts > 1) return CodecError::duplicate_host;
    return {};
}

std::size_t ChunkedFraming::feed(std::string_view bytes, boost::system::error_code& ec) {
    ec = {};
    auto fail = [&](CodecError e) {
        state_ = State::failed;
        error_ = e;
        ec = e;
    };
    if (state_ == State::failed) {
        ec = error_;
        return 0;
    }
    std::size_t i = 0;
    while (i < bytes.size() && state_ != State::done) {
        const char c = bytes[i];
        switch (state_) {
            case State::size: {
                const int v = hex_value(c);
                if (v >= 0) {
                    constexpr uint64_t kMaxChunkSize = uint64_t{1} << 62;
                    if (size_ > (kMaxChunkSize >> 4)) {
                        fail(CodecError::chunk_size_overflow);
                        return i;
                    }
                    size_ = size_ * 16 + static_cast<uint64_t>(v);
                    ++digits_;
                    if (size_ > kMaxChunkSize) {
                        fail(CodecError::chunk_size_overflow);
                        return i;
                    }
                } else if (digits_ == 0) {
                    fail(CodecError::bad_chunk_size);  // "zz", "-5", " 5", an empty size
                    return i;
                } else if (c == ';' || c == ' ' || c == '\t') {
                    state_ = State::ext;  // chunk-ext, with optional whitespace before ';'
                    ext_named_ = c == ';';
                } else if (c == '\r') {
                    state_ = State::size_lf;
                } else if (c == '\n') {
                    fail(CodecError::bare_lf);
                    return i;
                } else {
                    fail(CodecError::bad_chunk_size);  // "0x5", "5z"
                    return i;
                }
                break;
            }
            case State::ext:
                if (!ext_named_ && c != ' ' && c != '\t' && c != ';' && c != '\r') {
                    fail(CodecError::bad_chunk_size);  // "5 x": only whitespace before ';'
                    return i;
                }
                ext_named_ |= c == ';';
                if (c == '\r') {
                    state_ = State::size_lf;
                } else if (c == '\n') {
                    fail(CodecError::bare_lf);
                    return i;
                } else if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
                    fail(CodecError::bad_chunk_size);
                    return i;
                }
                break;
            case State::size_lf:
                if (c != '\n') {
                    fail(CodecError::bad_chunk_size);  // CR not followed by LF
                    return i;
                }
                line_ = 0;
                digits_ = 0;
                if (size_ == 0) {
                    state_ = State::trailer;
                    trailer_line_empty_ = true;
                } else {
                    state_ = State::data;
                }
                ++i;
                continue;
            case State::data: {
                const std::size_t n = static_cast<std::size_t>(
                    std::min<uint64_t>(size_, bytes.size() - i));
                size_ -= n;
                i += n;
                if (size_ == 0) state_ = State::data_cr;
                continue;
            }
            case State::data_cr:
                if (c != '\r') {
                    fail(c == '\n' ? CodecError::bare_lf : CodecError::chunk_data_overrun);
                    return i;
                }
                state_ = State::data_lf;
                break;
            case State::data_lf:
                if (c != '\n') {
                    fail(CodecError::chunk_data_overrun);
                    return i;
                }
                state_ = State::size;
                line_ = 0;
                ++i;
                continue;
            case State::trailer:
                if (c == '\r') {
                    state_ = State::trailer_lf;
                } else if (c == '\n') {
                    fail(CodecError::bare_lf);
                    return i;
                } else {
                    trailer_line_empty_ = false;
                }
                break;
            case State::trailer_lf:
                if (c != '\n') {
                    fail(CodecError::bare_lf);
                    return i;
                }
                if (trailer_line_empty_) {
                    state_ = State::done;
                    return i + 1;
                }
                state_ = State::trailer;
                trailer_line_empty_ = true;
                break;
            case State::done:
            case State::failed:
                break;
        }
        ++i;
        ++line_;
        const bool in_line = state_ == State::size || state_ == State::ext || state_ == State::size_lf;
        if ((in_line && line_ > kMaxChunkLineBytes) ||
            ((state_ == State::trailer || state_ == State::trailer_lf) && line_ > kMaxTrailerBytes)) {
            fail(CodecError::chunk_line_too_long);
            return i;
        }
    }
    return i;
}

}  // namespace remora::proxy::http1
