#include "common/gzip.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <iterator>
#include <stdexcept>

namespace remora::common {

namespace {

constexpr int kGzipWindow = 15 + 16;  // zlib: a gzip wrapper instead of zlib's

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

std::string gzip(std::string_view data, int level) {
    return gzip({data}, level);
}

std::string gzip(std::initializer_list<std::string_view> parts, int level) {
    if (parts.size() == 0) return gzip(std::string_view(), level);
    z_stream z{};
    if (deflateInit2(&z, std::clamp(level, 1, 9), Z_DEFLATED, kGzipWindow, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        throw std::runtime_error("gzip: deflateInit2 failed");
    }
    // The output grows as it comes: JSON compresses 20 to 30 times, and sizing it by
    // deflateBound would allocate and clear the input's size, and keep it as capacity.
    std::size_t in_size = 0;
    for (std::string_view p : parts) in_size += p.size();
    const std::size_t chunk = std::max<std::size_t>(in_size / 16, 16 * 1024);
    std::string out;
    std::size_t used = 0;
    for (const std::string_view& p : parts) {
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(p.data()));
        z.avail_in = static_cast<uInt>(p.size());
        const int flush = &p == std::prev(parts.end()) ? Z_FINISH : Z_NO_FLUSH;
        for (;;) {
            if (used == out.size()) out.resize(out.size() + std::max(chunk, out.size() / 2));
            z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
            z.avail_out = static_cast<uInt>(out.size() - used);
            const int rc = deflate(&z, flush);
            used = out.size() - z.avail_out;
            if (rc == Z_STREAM_ERROR) {
                deflateEnd(&z);
                throw std::runtime_error("gzip: deflate failed");
            }
            if (flush == Z_FINISH ? rc == Z_STREAM_END : z.avail_in == 0 && z.avail_out != 0) break;
        }
    }
    deflateEnd(&z);
    out.resize(used);
    out.shrink_to_fit();
    return out;
}

std::optional<std::string> gunzip(std::string_view data, std::size_t max_bytes, std::string* error) {
    auto fail = [&](const std::string& why) -> std::optional<std::string> {
        if (error) *error = why;
        return std::nullopt;
    };
    if (data.size() < 2 || static_cast<unsigned char>(data[0]) != 0x1f || static_cast<unsigned char>(data[1]) != 0x8b) {
        return fail("not gzip data");
    }
    std::string out;
    std::size_t at = 0;  // start of the member being read
    while (at < data.size()) {
        z_stream z{};
        if (inflateInit2(&z, kGzipWindow) != Z_OK) return fail("inflateInit2 failed");
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + at));
        z.avail_in = static_cast<uInt>(data.size() - at);
        int rc = Z_OK;
        while (rc != Z_STREAM_END) {
            if (out.size() >= max_bytes) {
                inflateEnd(&z);
                return fail("inflates to more than " + std::to_string(max_bytes) + " bytes");
            }
            const std::size_t have = out.size();
            const std::size_t room = std::min<std::size_t>(std::max<std::size_t>(have, 64 * 1024), max_bytes - have);
            out.resize(have + room);
            z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
            z.avail_out = static_cast<uInt>(room);
            rc = inflate(&z, Z_NO_FLUSH);
            out.resize(have + room - z.avail_out);
            if (rc == Z_STREAM_END) break;
            if (rc == Z_BUF_ERROR && z.avail_in == 0) {
                inflateEnd(&z);
                return fail("gzip data cut short");
            }
            if (rc != Z_OK && rc != Z_BUF_ERROR) {
                std::string why = z.msg ? z.msg : "inflate failed";
                inflateEnd(&z);
                return fail("corrupt gzip data: " + why);
            }
        }
        at += z.total_in;
        inflateEnd(&z);
        if (z.total_in == 0) break;
    }
    return out;
}

bool accepts_gzip(std::string_view value) {
    bool any = false, gzip_listed = false, gzip_ok = false;
    while (!value.empty()) {
        const std::size_t comma = value.find(',');
        std::string_view item = trim(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        std::string_view coding = trim(item.substr(0, item.find(';')));
        bool ok = true;
        for (std::size_t semi = item.find(';'); semi != std::string_view::npos; semi = item.find(';', semi + 1)) {
            std::string_view param = trim(item.substr(semi + 1, item.find(';', semi + 1) - semi - 1));
            if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
                // q=0, q=0.0, q=0.000: refused; anything else above 0 allows it.
                std::string_view q = param.substr(2);
                ok = q.find_first_not_of("0.") != std::string_view::npos;
            }
        }
        if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) {
            gzip_listed = true;
            gzip_ok = ok;
        } else if (coding == "*") {
            any = ok;
        }
    }
    return gzip_listed ? gzip_ok : any;
}

}  // namespace remora::common
