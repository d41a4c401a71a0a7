// A small command-line flag parser for remora-control and remoractl: --flag value, --flag=value,
// repeated flags, and a clear error for unknown or incomplete flags.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace remora::common {

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Args {
  public:
    // `value_flags` take a value; `bool_flags` do not. Anything else starting with "--" is an
    // error; other words are positional.
    Args(const std::vector<std::string>& argv, std::set<std::string> value_flags,
         std::set<std::string> bool_flags = {});

    std::optional<std::string> get(const std::string& flag) const;
    std::string get_or(const std::string& flag, const std::string& fallback) const;
    std::vector<std::string> all(const std::string& flag) const;
    bool has(const std::string& flag) const;
    std::string require(const std::string& flag) const;
    const std::vector<std::string>& positional() const { return positional_; }

  private:
    std::map<std::string, std::vector<std::string>> values_;
    std::vector<std::string> positional_;
};

// A command-line tool's main: runs `body` with the arguments after the program name; a UsageError
// exits 2 with a pointer to --help, any other exception exits 1; each prints "<name>: <what>".
int run_tool(const char* name, int argc, char** argv,
             int (*body)(const std::vector<std::string>& args));

// "app=x,version=v1" (--labels and the like) → map; throws std::invalid_argument naming the bad
// pair.
std::map<std::string, std::string> parse_label_list(std::string_view text);

// "90d", "24h", "30m", "45s", "3600" (seconds); throws UsageError naming `flag`.
long long parse_duration_seconds(const std::string& flag, const std::string& text);

}  // namespace remora::common

#include <boost/asio/ip/tcp.hpp>

namespace remora::common {
// "0.0.0.0:15012", "127.0.0.1:0", "[::1]:15012"; throws UsageError naming `flag`.
boost::asio::ip::tcp::endpoint parse_endpoint(const std::string& flag, const std::string& text);
// "127.0.0.1:15012" or "[::1]:15012".
std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep);
}  // namespace remora::common
