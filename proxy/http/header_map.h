// Protocol-neutral HTTP header fields: ordered (name, value) pairs with lowercase names, shared by
// the HTTP/1.1 and HTTP/2 codecs and by the request phases written once above them.
//
// Names and values live in the map's own storage blocks (one allocation for a typical header
// block, not two per field), and Entry holds views into them. A view stays valid while the map
// lives, across add(), set(), remove() and moves of the map: blocks are never reallocated or
// reused, only added; clear() and assignment end them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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
        std::string_view name;  // always lowercase
        std::string_view value;
        bool operator==(const Entry&) const = default;
    };
    using const_iterator = std::vector<Entry>::const_iterator;

    HeaderMap() = default;
    HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> fields);
    HeaderMap(const HeaderMap& other);
    HeaderMap& operator=(const HeaderMap& other);
    HeaderMap(HeaderMap&&) noexcept = default;
    HeaderMap& operator=(HeaderMap&&) noexcept = default;

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
    void clear() noexcept;
    // Room for n fields (and their bytes, about 32 each) without another allocation.
    void reserve(std::size_t n);

    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    const_iterator begin() const noexcept { return entries_.begin(); }
    const_iterator end() const noexcept { return entries_.end(); }
    const Entry& operator[](std::size_t i) const noexcept { return entries_[i]; }
    // Bytes of names and values, without framing: what header size limits are measured in.
    std::size_t byte_size() const noexcept;

    bool operator==(const HeaderMap& o) const { return entries_ == o.entries_; }

private:
    // Copies `s` into the current block (lowercased when asked), adding a block when it is full.
    std::string_view store(std::string_view s, bool lowercase);
    void add_bytes(std::size_t n);
    // One of 64 bits for a name, from its length and its first and last letters (any case).
    static uint64_t name_bit(std::string_view name) noexcept {
        if (name.empty()) return 1;
        auto low = [](char c) { return unsigned(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) & 0xffu; };
        const unsigned h = unsigned(name.size()) * 7u + low(name.front()) * 3u + low(name.back());
        return uint64_t{1} << (h & 63u);
    }
    // Whether a field of this name may be present; false means certainly absent.
    bool may_hold(std::string_view name) const noexcept { return (names_ & name_bit(name)) != 0; }

    std::vector<Entry> entries_;
    // The bits of every name added since the last clear(): most lookups and removals are of
    // absent names (hop-by-hop fields, trace headers) and end here without a scan.
    uint64_t names_ = 0;
    std::unique_ptr<char[]> first_;                // most maps need only this block
    std::vector<std::unique_ptr<char[]>> blocks_;  // the others
    char* free_ = nullptr;  // the unused end of the last block
    std::size_t left_ = 0;
};

}  // namespace remora::proxy::http
