// stderr logging for the control plane; a mutex keeps lines whole (control plane, not hot path).
#include "common/log.h"

#include <chrono>
#include <cstdio>
#include <mutex>

#include "certs/keys.h"

namespace remora::common {

void log_line(std::string_view component, std::string_view message) {
    static std::mutex mu;
    std::string line = certs::format_time(std::chrono::system_clock::now());
    line.append(" ").append(component).append(": ").append(message).append("\n");
    std::lock_guard lock(mu);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

}  // namespace remora::common
