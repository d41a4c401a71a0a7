// `remoractl trace`: what happened to one request, from the access logs of the sidecars it
// crossed, joined by x-request-id.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace remora::control {

// One access-log line, JSON or Envoy text, as remora-proxy writes it.
struct AccessLogLine {
    std::string start_time, method, path, protocol, flags, request_id, authority, upstream_host,
        upstream_cluster, traceparent, peer, reporter, source;
    long long code = 0, bytes_received = 0, bytes_sent = 0, duration_ms = 0;
};

// Nullopt when the line is neither format.
std::optional<AccessLogLine> parse_access_log_line(const std::string& line);

// Prints the lines of `files` whose request id is `request_id`, oldest first; returns how many.
size_t trace_request(const std::string& request_id, const std::vector<std::string>& files,
                     std::ostream& out);

}  // namespace remora::control
