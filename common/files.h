// Whole-file reads and crash-safe writes (temporary file, fsync, rename, directory fsync).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace remora::common {

// Writes `data` to `path` via a temporary file in the same directory, fsync, rename and a directory
// fsync; the file is created with `mode` (0600 for private keys). Throws on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view data, unsigned mode);
// Reads a whole file; throws std::runtime_error naming the path.
std::string read_file(const std::filesystem::path& path);

}  // namespace remora::common
