// Access-log lines (JSON or Envoy text) parsed back and joined by request id.
#include "control/cli/trace.h"

#include <boost/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <stdexcept>

namespace remora::control {

namespace {

std::string json_str(const boost::json::object& o, const char* key) {
    auto it = o.find(key);
    if (it == o.end() || !it->value().is_string()) return "";
    return std::string(it->value().as_string());
}

long long json_int(const boost::json::object& o, const char* key) {
    auto it = o.find(key);
    if (it == o.end()) return 0;
    if (it->value().is_int64()) return it->value().as_int64();
    if (it->value().is_uint64()) return static_cast<long long>(it->value().as_uint64());
    return 0;
}

// Splits Envoy's text format: bare words, [bracketed] and "quoted" fields.
std::vector<std::string> fields_of(const std::string& line) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < line.size()) {
        if (line[i] == ' ' || line[i] == '\n') {
            ++i;
            continue;
        }
        char close = line[i] == '[' ? ']' : line[i] == '"' ? '"' : ' ';
        size_t start = close == ' ' ? i : i + 1;
        size_t end = line.find(close, start);
        if (end == std::string::npos) end = line.size();
        out.push_back(line.substr(start, end - start));
        i = end + 1;
    }
    return out;
}

long long number(const std::string& s) {
    try {
        return std::stoll(s);
    } catch (...) {
        return 0;
    }
}

std::string dash_empty(const std::string& s) { return s == "-" ? "" : s; }

}  // namespace

std::optional<AccessLogLine> parse_access_log_line(const std::string& line) {
    AccessLogLine l;
    if (!line.empty() && line[0] == '{') {
        boost::system::error_code ec;
        auto v = boost::json::parse(line, ec);
        if (ec || !v.is_object()) return std::nullopt;
        const auto& o = v.as_object();
        l.start_time = json_str(o, "start_time");
        l.method = json_str(o, "method");
        l.path = json_str(o, "path");
        l.protocol = json_str(o, "protocol");
        l.code = json_int(o, "response_code");
        l.flags = json_str(o, "response_flags");
        l.bytes_received = json_int(o, "bytes_received");
        l.bytes_sent = json_int(o, "bytes_sent");
        l.duration_ms = json_int(o, "duration");
        l.request_id = json_str(o, "request_id");
        l.authority = json_str(o, "authority");
        l.upstream_host = json_str(o, "upstream_host");
        l.upstream_cluster = json_str(o, "upstream_cluster");
        l.traceparent = json_str(o, "traceparent");
        l.peer = json_str(o, "downstream_peer_uri_san");
        l.reporter = json_str(o, "reporter");
        return l;
    }
    if (line.empty() || line[0] != '[') return std::nullopt;
    // [start] "method path protocol" code flags rx tx duration ust "xff" "ua" "id" "authority"
    // "upstream" cluster "traceparent" "peer" reporter
    std::vector<std::string> f = fields_of(line);
    if (f.size() < 17) return std::nullopt;
    l.start_time = f[0];
    std::vector<std::string> req = fields_of(f[1]);
    if (req.size() == 3) {
        l.method = dash_empty(req[0]);
        l.path = dash_empty(req[1]);
        l.protocol = req[2];
    }
    l.code = number(f[2]);
    l.flags = f[3];
    l.bytes_received = number(f[4]);
    l.bytes_sent = number(f[5]);
    l.duration_ms = number(f[6]);
    l.request_id = dash_empty(f[10]);
    l.authority = dash_empty(f[11]);
    l.upstream_host = dash_empty(f[12]);
    l.upstream_cluster = dash_empty(f[13]);
    l.traceparent = dash_empty(f[14]);
    l.peer = dash_empty(f[15]);
    l.reporter = f[16];
    return l;
}

size_t trace_request(const std::string& request_id, const std::vector<std::string>& files,
                     std::ostream& out) {
    std::vector<AccessLogLine> found;
    for (const std::string& file : files) {
        std::ifstream in(file);
        if (!in) throw std::runtime_error(file + ": cannot read");
        std::string line;
        while (std::getline(in, line)) {
            if (line.find(request_id) == std::string::npos) continue;  // cheap filter first
            auto l = parse_access_log_line(line);
            if (!l || l->request_id != request_id) continue;
            l->source = std::filesystem::path(file).filename().string();
            found.push_back(std::move(*l));
        }
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const auto& a, const auto& b) { return a.start_time < b.start_time; });
    if (found.empty()) return 0;
    out << "request " << request_id;
    if (!found.front().traceparent.empty() && found.front().traceparent.size() >= 35) {
        out << "  trace " << found.front().traceparent.substr(3, 32);
    }
    out << "\n";
    out << std::left << std::setw(25) << "START" << std::setw(12) << "REPORTER" << std::setw(22)
        << "LOG" << std::setw(5) << "CODE" << std::setw(6) << "FLAGS" << std::setw(8) << "MS"
        << std::setw(22) << "UPSTREAM" << "PEER / REQUEST\n";
    for (const AccessLogLine& l : found) {
        out << std::left << std::setw(25) << l.start_time << std::setw(12) << l.reporter
            << std::setw(22) << l.source << std::setw(5) << l.code << std::setw(6) << l.flags
            << std::setw(8) << l.duration_ms << std::setw(22)
            << (l.upstream_host.empty() ? "-" : l.upstream_host)
            << (l.peer.empty() ? "-" : l.peer) << "  " << l.method << " " << l.authority << l.path
            << "\n";
    }
    return found.size();
}

}  // namespace remora::control
