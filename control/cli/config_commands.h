// `remoractl apply -f`, `get KIND [NAME]`, `delete -f`: the control plane's config store over the
// 15012 API, authenticated by the admin token (state dir) or remoractl's client certificate.
#pragma once

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

namespace remora::control::cli {

// argv: the words after the command name. Results go to `out`, refusals and warnings to `err`;
// returns the exit code (1 when the control plane refused).
int apply_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);
int delete_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);
int get_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

// kubectl's AGE column: "45s", "12m", "5h", "3d".
std::string format_age(std::chrono::seconds age);

}  // namespace remora::control::cli
