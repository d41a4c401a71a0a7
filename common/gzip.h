// gzip (RFC 1952) for large JSON answers: a proxy's snapshot is repetitive JSON (at 10,000
// services and 1,000 services per namespace, 11 MB that compress 20 to 30 times), and the
// control plane sends one to every proxy of a class on each push.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace remora::common {

// `data` compressed as a gzip member (zlib's level 1 to 9).
std::string gzip(std::string_view data, int level = 6);
// The concatenation of `parts`, compressed as one gzip member, without concatenating them first.
std::string gzip(std::initializer_list<std::string_view> parts, int level = 6);

// The data of one or more gzip members; nullopt, with the reason in `error`, when `data` is not
// gzip, is cut short or corrupt, or would inflate past `max_bytes` (a small answer that
// inflates to gigabytes is refused as it grows, not after).
std::optional<std::string> gunzip(std::string_view data, std::size_t max_bytes, std::string* error = nullptr);

// Whether an Accept-Encoding value allows gzip: `gzip` or `x-gzip` or `*` listed with a q-value
// above 0 (RFC 9110 12.5.3; `gzip;q=0` refuses it).
bool accepts_gzip(std::string_view accept_encoding);

}  // namespace remora::common
