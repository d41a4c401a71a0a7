// Flag parsing shared by the control-plane binaries.
#include "common/args.h"

#include <charconv>
#include <iostream>

namespace remora::common {

Args::Args(const std::vector<std::string>& argv, std::set<std::string> value_flags,
           std::set<std::string> bool_flags) {
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (!a.starts_with("--") || a == "--") {
            positional_.push_back(a);
            continue;
        }
        std::string name = a.substr(2);
        std::optional<std::string> value;
        if (size_t eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        if (bool_flags.count(name)) {
            if (value) throw UsageError("--" + name + " takes no value");
            values_[name].push_back("true");
        } else if (value_flags.count(name)) {
            if (!value) {
                if (i + 1 >= argv.size()) throw UsageError("--" + name + " needs a value");
                value = argv[++i];
            }
            values_[name].push_back(*value);
        } else {
            throw UsageError("unknown flag --" + name);
        }
    }
}

std::optional<std::string> Args::get(const std::string& flag) const {
    auto it = values_.find(flag);
    if (it == values_.end()) return std::nullopt;
    return it->second.back();
}

std::string Args::get_or(const std::string& flag, const std::string& fallback) const {
    return get(flag).value_or(fallback);
}

std::vector<std::string> Args::all(const std::string& flag) const {
    auto it = values_.find(flag);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool Args::has(const std::string& flag) const {
    return values_.count(flag) > 0;
}

std::string Args::require(const std::string& flag) const {
    auto v = get(flag);
    if (!v || v->empty()) throw UsageError("--" + flag + " is required");
    return *v;
}

int run_tool(const char* name, int argc, char** argv,
             int (*body)(const std::vector<std::string>& args)) {
    try {
        return body(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const UsageError& e) {
        std::cerr << name << ": " << e.what() << "\n(see " << name << " --help)\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << name << ": " << e.what() << "\n";
        return 1;
    }
}

std::map<std::string, std::string> parse_label_list(std::string_view text) {
    std::map<std::string, std::string> out;
    while (!text.empty()) {
        size_t comma = text.find(',');
        std::string_view pair = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        size_t eq = pair.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            throw std::invalid_argument("label \"" + std::string(pair) + "\": expected KEY=VALUE");
        }
        out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
    }
    return out;
}

long long parse_duration_seconds(const std::string& flag, const std::string& text) {
    long long n = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, n);
    if (ec != std::errc() || n <= 0) {
        throw UsageError("--" + flag + " \"" + text +
                         "\": expected a positive duration like 90d, 24h, 30m, 45s");
    }
    std::string unit(p, end);
    long long mult = 0;
    if (unit.empty() || unit == "s")
        mult = 1;
    else if (unit == "m")
        mult = 60;
    else if (unit == "h")
        mult = 3600;
    else if (unit == "d")
        mult = 86400;
    else
        throw UsageError("--" + flag + " \"" + text + "\": unknown unit \"" + unit +
                         "\" (use s, m, h, d)");
    if (n > (1LL << 40) / mult) throw UsageError("--" + flag + " \"" + text + "\": too large");
    return n * mult;
}

}  // namespace remora::common

namespace remora::common {

boost::asio::ip::tcp::endpoint parse_endpoint(const std::string& flag, const std::string& text) {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos)
        throw UsageError("--" + flag + " \"" + text + "\": expected ADDR:PORT");
    std::string host = text.substr(0, colon);
    std::string port_text = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535) {
        throw UsageError("--" + flag + " \"" + text + "\": bad port");
    }
    boost::system::error_code aec;
    auto addr = boost::asio::ip::make_address(host.empty() ? "0.0.0.0" : host, aec);
    if (aec)
        throw UsageError("--" + flag + " \"" + text + "\": \"" + host + "\" is not an IP address");
    return {addr, static_cast<unsigned short>(port)};
}

std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep) {
    std::string host = ep.address().to_string();
    if (ep.address().is_v6()) host = "[" + host + "]";
    return host + ":" + std::to_string(ep.port());
}

}  // namespace remora::common
