// One log line per event on stderr: UTC time, component, message; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace remora::common {

void log_line(std::string_view component, std::string_view message);

}  // namespace remora::common
