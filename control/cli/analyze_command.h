// `remoractl analyze FILE|DIR...`: Istio's analyzers over local YAML, istioctl's output and exit
// codes (79 when an error is found).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace remora::control::cli {

// istioctl analyze's exit code when it finds an error-level message.
constexpr int kAnalyzeFoundIssues = 79;

// argv: the words after "analyze". Writes the report to `out`; returns the exit code.
int analyze_command(const std::vector<std::string>& argv, std::ostream& out);

}  // namespace remora::control::cli
