// Workload identity for telemetry and its encoding in the peer-metadata header.
#include "proxy/telemetry/workload.h"

#include <stdexcept>

namespace remora::proxy {

namespace {

std::string label_or(const std::map<std::string, std::string>& labels,
                     std::initializer_list<const char*> keys, const std::string& fallback) {
    for (const char* k : keys) {
        auto it = labels.find(k);
        if (it != labels.end() && !it->second.empty()) return it->second;
    }
    return fallback;
}

bool plain(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '/';
}

void append_encoded(std::string& out, std::string_view v) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : v) {
        if (plain(c)) {
            out += c;
        } else {
            auto u = static_cast<unsigned char>(c);
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 15];
        }
    }
}

std::optional<std::string> decode_value(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (c == '%') {
            if (i + 2 >= v.size()) return std::nullopt;
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9') return h - '0';
                if (h >= 'A' && h <= 'F') return h - 'A' + 10;
                if (h >= 'a' && h <= 'f') return h - 'a' + 10;
                return -1;
            };
            int hi = hex(v[i + 1]), lo = hex(v[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            unsigned char decoded = static_cast<unsigned char>(hi * 16 + lo);
            if (decoded < 0x20 || decoded == 0x7f) return std::nullopt;  // no control bytes in labels
            out += static_cast<char>(decoded);
            i += 2;
        } else if (plain(c)) {
            out += c;
        } else {
            return std::nullopt;
        }
    }
    return out;
}

}  // namespace

WorkloadInfo WorkloadInfo::from_labels(std::string name, std::string ns,
                                       std::map<std::string, std::string> labels) {
    WorkloadInfo w;
    w.name = name.empty() ? "unknown" : std::move(name);
    w.ns = std::move(ns);
    w.app = label_or(labels, {"app"}, "unknown");
    w.version = label_or(labels, {"version"}, "unknown");
    w.canonical_service = label_or(
        labels, {"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"}, w.name);
    w.canonical_revision = label_or(
        labels, {"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"},
        "latest");
    w.labels = std::move(labels);
    return w;
}

std::string encode_peer_metadata(const WorkloadInfo& w) {
    std::string out;
    out.reserve(128);
    auto field = [&](const char* key, const std::string& v) {
        if (!out.empty()) out += ';';
        out += key;
        out += '=';
        append_encoded(out, v);
    };
    field("wl", w.name);
    field("ns", w.ns);
    field("app", w.app);
    field("ver", w.version);
    field("cs", w.canonical_service);
    field("cr", w.canonical_revision);
    field("cl", w.cluster);
    return out;
}

std::optional<WorkloadInfo> decode_peer_metadata(std::string_view text) {
    if (text.empty() || text.size() > 2048) return std::nullopt;
    WorkloadInfo w;
    bool have_name = false, have_ns = false;
    while (!text.empty()) {
        size_t semi = text.find(';');
        std::string_view pair = text.substr(0, semi);
        text = semi == std::string_view::npos ? std::string_view{} : text.substr(semi + 1);
        size_t eq = pair.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        std::string_view key = pair.substr(0, eq);
        auto value = decode_value(pair.substr(eq + 1));
        if (!value || value->empty()) return std::nullopt;
        if (key == "wl") {
            w.name = std::move(*value);
            have_name = true;
        } else if (key == "ns") {
            w.ns = std::move(*value);
            have_ns = true;
        } else if (key == "app") {
            w.app = std::move(*value);
        } else if (key == "ver") {
            w.version = std::move(*value);
        } else if (key == "cs") {
            w.canonical_service = std::move(*value);
        } else if (key == "cr") {
            w.canonical_revision = std::move(*value);
        } else if (key == "cl") {
            w.cluster = std::move(*value);
        }
        // Unknown keys: a newer peer; ignored.
    }
    if (!have_name || !have_ns) return std::nullopt;
    return w;
}

}  // namespace remora::proxy
