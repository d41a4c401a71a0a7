// HeaderMap: a vector of lowercase-named fields, searched linearly (requests carry few headers),
// their bytes in append-only blocks.
#include "proxy/http/header_map.h"

#include <algorithm>
#include <cstring>

namespace remora::proxy::http {

namespace {
constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
// A block holds a typical request's or response's fields; bigger fields get a block of their own.
constexpr std::size_t kBlockBytes = 1024;
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

namespace {
// `stored` is lowercase (every stored name is); `name` may be of any case.
bool same_name(std::string_view stored, std::string_view name) noexcept {
    if (stored.size() != name.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i)
        if (stored[i] != lower(name[i])) return false;
    return true;
}
}  // namespace

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = lower(c);
    return out;
}

HeaderMap::HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
    entries_.reserve(fields.size());
    for (const auto& [n, v] : fields) add(n, v);
}

HeaderMap::HeaderMap(const HeaderMap& other) : names_(other.names_) {
    if (other.entries_.empty()) return;
    entries_.reserve(other.entries_.size());
    add_bytes(other.byte_size());
    for (const Entry& e : other.entries_) entries_.push_back(Entry{store(e.name, false), store(e.value, false)});
}

HeaderMap& HeaderMap::operator=(const HeaderMap& other) {
    if (this != &other) *this = HeaderMap(other);
    return *this;
}

void HeaderMap::add_bytes(std::size_t n) {
    const std::size_t size = std::max(n, kBlockBytes);
    auto block = std::make_unique_for_overwrite<char[]>(size);
    free_ = block.get();
    left_ = size;
    if (!first_) {
        first_ = std::move(block);
    } else {
        blocks_.push_back(std::move(block));
    }
}

std::string_view HeaderMap::store(std::string_view s, bool lowercase) {
    if (s.empty()) return {};
    if (s.size() > left_) add_bytes(s.size());
    char* out = free_;
    if (lowercase) {
        // Eight bytes at a time: a byte gets 0x20 when it is 'A'..'Z' (bytes from 0x80 never do).
        std::size_t i = 0;
        for (; i + 8 <= s.size(); i += 8) {
            uint64_t w;
            std::memcpy(&w, s.data() + i, 8);
            constexpr uint64_t kOnes = 0x0101010101010101ull;
            const uint64_t low7 = w & (0x7f * kOnes);
            const uint64_t from_a = low7 + (0x80 - 'A') * kOnes;     // high bit: byte >= 'A'
            const uint64_t past_z = low7 + (0x80 - 'Z' - 1) * kOnes;  // high bit: byte > 'Z'
            const uint64_t upper = from_a & ~past_z & ~w & (0x80 * kOnes);
            w |= upper >> 2;
            std::memcpy(out + i, &w, 8);
        }
        for (; i < s.size(); ++i) out[i] = lower(s[i]);
    } else {
        std::memcpy(out, s.data(), s.size());
    }
    free_ += s.size();
    left_ -= s.size();
    return {out, s.size()};
}

void HeaderMap::reserve(std::size_t n) {
    entries_.reserve(n);
    if (left_ < n * 32) add_bytes(n * 32);
}

void HeaderMap::clear() noexcept {
    entries_.clear();
    first_.reset();
    blocks_.clear();
    free_ = nullptr;
    left_ = 0;
    names_ = 0;
}

std::optional<std::string_view> HeaderMap::get(std::string_view name) const noexcept {
    if (!may_hold(name)) return std::nullopt;
    for (const auto& e : entries_)
        if (same_name(e.name, name)) return e.value;
    return std::nullopt;
}

void HeaderMap::add(std::string_view name, std::string_view value) {
    if (entries_.empty() && entries_.capacity() < 16) entries_.reserve(16);
    const std::string_view n = store(name, true);
    entries_.push_back(Entry{n, store(value, false)});
    names_ |= name_bit(name);
}

void HeaderMap::set(std::string_view name, std::string_view value) {
    if (!may_hold(name)) {
        add(name, value);
        return;
    }
    auto first = std::find_if(entries_.begin(), entries_.end(),
                              [&](const Entry& e) { return same_name(e.name, name); });
    if (first == entries_.end()) {
        add(name, value);
        return;
    }
    first->value = store(value, false);
    auto rest = std::remove_if(first + 1, entries_.end(),
                               [&](const Entry& e) { return same_name(e.name, name); });
    entries_.erase(rest, entries_.end());
}

std::size_t HeaderMap::remove(std::string_view name) {
    if (!may_hold(name)) return 0;
    auto rest = std::remove_if(entries_.begin(), entries_.end(),
                               [&](const Entry& e) { return same_name(e.name, name); });
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
