// Runs the helper programs remora-init drives (iptables-save, iptables-restore): text on stdin,
// output and exit status back.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace remora::init {

struct ProcessResult {
    int exit_code = -1;  // 128 + the signal number when a signal ended it
    std::string out;
    std::string err;
};

// A helper printing more than this on stdout or stderr is killed and reported as an error.
inline constexpr std::size_t kMaxProcessOutputBytes = 256u << 20;

// Runs the program at `argv[0]` (a path, not searched in PATH) with `input` on its stdin and waits
// for it. Throws std::system_error when it cannot be started, std::runtime_error when it prints
// more than kMaxProcessOutputBytes.
ProcessResult run_process(const std::vector<std::string>& argv, std::string_view input);

// The first executable regular file `name` in `path_list` (PATH's colon-separated directories),
// or "" when there is none. Empty entries are skipped rather than meaning ".".
std::string find_program(std::string_view name, std::string_view path_list);

}  // namespace remora::init
