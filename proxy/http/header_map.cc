// HeaderMap: a vector of lowercase-named fields, searched linearly (requests carry few headers).
#include "proxy/http/header_map.h"

#include <algorithm>

namespace remora::proxy::http {

namespace {
constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = lower(c);
    return out;
}

HeaderMap::HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
    entries_.reserve(fields.size());
    for (const auto& [n, v] : fields) add(n, v);
}

std::optional<std::string_view> HeaderMap::get(std::string_view name) const noexcept {
    for (const auto& e : entries_)
        if (iequals(e.name, name)) return std::string_view(e.value);
    return std::nullopt;
}

void HeaderMap::add(std::string_view name, std::string_view value) {
    entries_.push_back(Entry{to_lower(name), std::string(value)});
}

void HeaderMap::set(std::string_view name, std::string_view value) {
    auto first = std::find_if(entries_.begin(), entries_.end(),
                              [&](const Entry& e) { return iequals(e.name, name); });
    if (first == entries_.end()) {
        add(name, value);
        return;
    }
    first->value.assign(value);
    auto rest = std::remove_if(first + 1, entries_.end(),
                               [&](const Entry& e) { return iequals(e.name, name); });
    entries_.erase(rest, entries_.end());
}

std::size_t HeaderMap::remove(std::string_view name) {
    auto rest = std::remove_if(entries_.begin(), entries_.end(),
                               [&](const Entry& e) { return iequals(e.name, name); });
    std::size_t n = std::size_t(entries_.end() - rest);
    entries_.erase(rest, entries_.end());
    return n;
}

std::size_t HeaderMap::byte_size() const noexcept {
    std::size_t n = 0;
    for (const auto& e : entries_) n += e.name.size() + e.value.size();
    return n;
}

}  // namespace remora::proxy::http
