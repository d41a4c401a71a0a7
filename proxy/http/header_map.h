// Protocol-neutral HTTP header fields: ordered (name, value) pairs with lowercase names, shared by
// the HTTP/1.1 and HTTP/2 codecs and by the request phases written once above them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::proxy::http {

// ASCII lowercase comparison: header names are tokens, never UTF-8.
bool iequals(std::string_view a, std::string_view b) noexcept;
std::string to_lower(std::string_view s);

class HeaderMap {
public:
    struct Entry {
        std::string name;  // always lowercase
        std::string value;
    };
    using const_iterator = std::vector<Entry>::const_iterator;

    HeaderMap() = default;
    HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> fields);

    // The first value of `name` (any case), or none.
    std::optional<std::string_view> get(std::string_view name) const noexcept;
    // Same as get(); kept for readers who think of it as a lookup.
    std::optional<std::string_view> find(std::string_view name) const noexcept { return get(name); }
    bool contains(std::string_view name) const noexcept { return get(name).has_value(); }
    // Appends a field, keeping any earlier ones of the same name.
    void add(std::string_view name, std::string_view value);
    // Replaces every field of that name with one (at the position of the first, or at the end).
    void set(std::string_view name, std::string_view value);
    // Removes every field of that name; returns how many were removed.
    std::size_t remove(std::string_view name);
    void clear() noexcept { entries_.clear(); }
    void reserve(std::size_t n) { entries_.reserve(n); }

    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    const_iterator begin() const noexcept { return entries_.begin(); }
    const_iterator end() const noexcept { return entries_.end(); }
    const Entry& operator[](std::size_t i) const noexcept { return entries_[i]; }
    // Bytes of names and values, without framing: what header size limits are measured in.
    std::size_t byte_size() const noexcept;

    bool operator==(const HeaderMap&) const = default;

private:
    std::vector<Entry> entries_;
};

}  // namespace remora::proxy::http
