// Protocol detection from a connection's first bytes, as Envoy's tls_inspector and
// http_inspector do for Istio's undeclared ports.
#include "proxy/net/detect.h"

#include <array>
#include <cctype>

namespace remora::proxy {

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Methods an HTTP/1.x request line may start with (RFC 9110 and WebDAV's common ones, as
// Envoy's http_inspector accepts any token followed by a request target and HTTP/1.x; a known
// method keeps binary protocols whose first bytes happen to be letters out of the HTTP path).
constexpr std::array<std::string_view, 16> kMethods = {
    "GET ",  "HEAD ",  "POST ", "PUT ",  "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ",
    "PATCH ", "PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ", "UNLOCK "};

}  // namespace

const char* protocol_name(Protocol p) {
    switch (p) {
        case Protocol::unknown: return "unknown";
        case Protocol::http1: return "http/1.1";
        case Protocol::http2: return "h2c";
        case Protocol::tcp: return "tcp";
        case Protocol::tls: return "tls";
    }
    return "unknown";
}

Protocol declared_protocol(std::string_view written) {
    // Istio's names are case-insensitive (a ServiceEntry may say "http" or "MONGO").
    std::array<char, 16> buf{};
    if (written.size() >= buf.size()) return Protocol::unknown;
    for (size_t i = 0; i < written.size(); ++i) {
        buf[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(written[i])));
    }
    const std::string_view name(buf.data(), written.size());
    if (name == "HTTP") return Protocol::http1;
    if (name == "HTTP2" || name == "GRPC") return Protocol::http2;
    if (name == "TLS" || name == "HTTPS") return Protocol::tls;
    if (name == "TCP" || name == "MONGO" || name == "MYSQL" || name == "REDIS") return Protocol::tcp;
    return Protocol::unknown;  // "" and GRPC-Web
}

std::optional<Protocol> classify_first_bytes(std::string_view b) {
    if (b.empty()) return std::nullopt;
    // A TLS handshake record: content type 22, version major 3.
    if (static_cast<unsigned char>(b[0]) == 0x16) {
        if (b.size() < 2) return std::nullopt;
        return b[1] == 0x03 ? Protocol::tls : Protocol::tcp;
    }
    const size_t n = std::min(b.size(), kH2Preface.size());
    if (b.substr(0, n) == kH2Preface.substr(0, n)) {
        if (b.size() >= kH2Preface.size()) return Protocol::http2;
        return std::nullopt;  // "PRI * HTTP/2..." so far; "P" may still be POST, PUT or PATCH
    }
    bool could_be_method = false;
    for (std::string_view m : kMethods) {
        const size_t k = std::min(b.size(), m.size());
        if (b.substr(0, k) != m.substr(0, k)) continue;
        if (b.size() >= m.size()) return Protocol::http1;
        could_be_method = true;
    }
    if (could_be_method) return std::nullopt;
    return Protocol::tcp;
}

}  // namespace remora::proxy

namespace remora::proxy {

namespace {

// A cursor over the handshake bytes; every read is bounds-checked.
struct Reader {
    std::string_view b;
    size_t at = 0;
    bool ok = true;
    uint32_t u(size_t n) {
        if (!ok || b.size() - at < n) {
            ok = false;
            return 0;
        }
        uint32_t v = 0;
        for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
        at += n;
        return v;
    }
    std::string_view take(size_t n) {
        if (!ok || b.size() - at < n) {
            ok = false;
            return {};
        }
        std::string_view v = b.substr(at, n);
        at += n;
        return v;
    }
};

char lower_ascii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (lower_ascii(a[i]) != lower_ascii(b[i])) return false;
    }
    return true;
}

}  // namespace

ClientHelloParse parse_client_hello(std::string_view bytes) {
    using Status = ClientHelloParse::Status;
    ClientHelloParse out;
    // The handshake message, joined from as many handshake records as it spans.
    std::string handshake;
    size_t at = 0;
    size_t need = 0;  // the handshake message's full length once its header is known
    for (;;) {
        if (bytes.size() - at < 5) return out;  // need_more
        const auto type = static_cast<uint8_t>(bytes[at]);
        const auto major = static_cast<uint8_t>(bytes[at + 1]);
        const size_t len = (static_cast<size_t>(static_cast<uint8_t>(bytes[at + 3])) << 8) |
                           static_cast<uint8_t>(bytes[at + 4]);
        if (type != 0x16 || major != 3 || len == 0 || len > 16384) {
            out.status = Status::invalid;
            return out;
        }
        if (bytes.size() - at - 5 < len) {
            if (at + 5 + len > kMaxClientHelloBytes * 2) out.status = Status::invalid;
            return out;  // need_more (the record is not all here yet)
        }
        handshake.append(bytes.substr(at + 5, len));
        at += 5 + len;
        if (need == 0 && handshake.size() >= 4) {
            if (static_cast<uint8_t>(handshake[0]) != 0x01) {  // not a ClientHello
                out.status = Status::invalid;
                return out;
            }
            need = 4 + ((static_cast<size_t>(static_cast<uint8_t>(handshake[1])) << 16) |
                        (static_cast<size_t>(static_cast<uint8_t>(handshake[2])) << 8) |
                        static_cast<uint8_t>(handshake[3]));
            if (need > kMaxClientHelloBytes * 2) {
                out.status = Status::invalid;
                return out;
            }
        }
        if (need != 0 && handshake.size() >= need) break;
        if (at >= kMaxClientHelloBytes * 2) {
            out.status = Status::invalid;
            return out;
        }
    }
    Reader r{std::string_view(handshake).substr(4, need - 4)};
    r.take(2);               // legacy_version
    r.take(32);              // random
    r.take(r.u(1));          // legacy_session_id
    r.take(r.u(2));          // cipher_suites
    r.take(r.u(1));          // legacy_compression_methods
    if (!r.ok) {
        out.status = Status::invalid;
        return out;
    }
    out.status = Status::complete;
    if (r.at == r.b.size()) return out;  // no extensions
    Reader ext{r.take(r.u(2))};
    while (r.ok && ext.ok && ext.at < ext.b.size()) {
        const uint32_t type = ext.u(2);
        Reader body{ext.take(ext.u(2))};
        if (!ext.ok) break;
        if (type == 0) {  // server_name: a list of (type, name); host_name is type 0
            Reader list{body.take(body.u(2))};
            while (list.ok && list.at < list.b.size()) {
                const uint32_t name_type = list.u(1);
                std::string_view name = list.take(list.u(2));
                if (list.ok && name_type == 0 && out.hello.sni.empty()) out.hello.sni = std::string(name);
            }
            if (!list.ok) ext.ok = false;
        } else if (type == 16) {  // application_layer_protocol_negotiation
            Reader list{body.take(body.u(2))};
            while (list.ok && list.at < list.b.size()) {
                std::string_view proto = list.take(list.u(1));
                if (list.ok) out.hello.alpn.emplace_back(proto);
            }
            if (!list.ok) ext.ok = false;
        }
    }
    if (!r.ok || !ext.ok) {
        out.hello = {};
        out.status = Status::invalid;
    }
    return out;
}

bool offers_mesh_alpn(const ClientHello& hello) {
    for (const std::string& p : hello.alpn) {
        if (p == "istio" || p.starts_with("istio-")) return true;
    }
    return false;
}

bool sni_matches(std::string_view pattern, std::string_view server_name) {
    if (pattern == "*") return !server_name.empty();
    if (pattern.size() > 1 && pattern[0] == '*') {
        std::string_view suffix = pattern.substr(1);  // ".example.com"
        return server_name.size() > suffix.size() &&
               iequals(server_name.substr(server_name.size() - suffix.size()), suffix);
    }
    return iequals(pattern, server_name);
}

}  // namespace remora::proxy
