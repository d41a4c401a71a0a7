// Unit tests for proxy/http: HeaderMap, hop-by-hop stripping, gRPC helpers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/http/header_map.h"
#include "proxy/http/message.h"

using namespace remora::proxy::http;

TEST_CASE("HeaderMap stores lowercase names and finds them in any case") {
    HeaderMap h;
    h.add("Content-Type", "text/plain");
    h.add("X-Multi", "a");
    h.add("x-multi", "b");
    CHECK(h.size() == 3);
    CHECK(h[0].name == "content-type");
    CHECK(h.get("CONTENT-TYPE") == std::optional<std::string_view>("text/plain"));
    CHECK(h.find("x-MULTI") == std::optional<std::string_view>("a"));
    CHECK_FALSE(h.get("absent").has_value());
    CHECK(h.byte_size() == std::string_view("content-typetext/plainx-multiax-multib").size());
}

TEST_CASE("HeaderMap set replaces every field of the name in place; remove counts") {
    HeaderMap h{{"a", "1"}, {"B", "2"}, {"a", "3"}, {"c", "4"}};
    h.set("A", "x");
    REQUIRE(h.size() == 3);
    CHECK(h[0].name == "a");
    CHECK(h[0].value == "x");
    CHECK(h[1].name == "b");
    h.set("new", "n");
    CHECK(h[3].name == "new");
    CHECK(h.remove("B") == 1);
    CHECK(h.remove("b") == 0);
    std::string joined;
    for (const auto& e : h) joined += std::string(e.name) + "=" + std::string(e.value) + ";";
    CHECK(joined == "a=x;c=4;new=n;");
}

TEST_CASE("strip_hop_by_hop removes connection-specific fields and tokens named in Connection") {
    HeaderMap h{{"Connection", "keep-alive, X-Private , te"},
                {"Keep-Alive", "timeout=5"},
                {"Proxy-Connection", "close"},
                {"Transfer-Encoding", "chunked"},
                {"Upgrade", "websocket"},
                {"Proxy-Authorization", "Basic x"},
                {"X-Private", "secret"},
                {"TE", "trailers, deflate;q=0.5"},
                {"x-kept", "yes"}};
    strip_hop_by_hop(h);
    CHECK(h.size() == 2);
    CHECK(h.get("x-kept") == std::optional<std::string_view>("yes"));
    CHECK(h.get("te") == std::optional<std::string_view>("trailers"));
    CHECK_FALSE(h.contains("x-private"));

    HeaderMap g{{"te", "gzip"}, {"a", "b"}};
    CHECK(strip_hop_by_hop(g) == 1);
    CHECK_FALSE(g.contains("te"));
}

TEST_CASE("is_grpc looks at content-type") {
    RequestHead r;
    CHECK_FALSE(is_grpc(r));
    r.headers.set("content-type", "application/grpc");
    CHECK(is_grpc(r));
    r.headers.set("content-type", "application/grpc+proto");
    CHECK(is_grpc(r));
    r.headers.set("content-type", "Application/GRPC;charset=utf-8");
    CHECK(is_grpc(r));
    r.headers.set("content-type", "application/grpcx");
    CHECK_FALSE(is_grpc(r));
    r.headers.set("content-type", "application/json");
    CHECK_FALSE(is_grpc(r));
}

TEST_CASE("grpc-timeout parses every unit and refuses malformed values") {
    CHECK(parse_grpc_timeout_ms("1H") == 3600000u);
    CHECK(parse_grpc_timeout_ms("2M") == 120000u);
    CHECK(parse_grpc_timeout_ms("3S") == 3000u);
    CHECK(parse_grpc_timeout_ms("250m") == 250u);
    CHECK(parse_grpc_timeout_ms("1500u") == 2u);
    CHECK(parse_grpc_timeout_ms("1n") == 1u);
    CHECK(parse_grpc_timeout_ms("0m") == 0u);
    CHECK(parse_grpc_timeout_ms("99999999S") == 99999999000u);
    CHECK_FALSE(parse_grpc_timeout_ms("123456789S").has_value());  // 9 digits
    CHECK_FALSE(parse_grpc_timeout_ms("S").has_value());
    CHECK_FALSE(parse_grpc_timeout_ms("10").has_value());
    CHECK_FALSE(parse_grpc_timeout_ms("10s").has_value());
    CHECK_FALSE(parse_grpc_timeout_ms("-1S").has_value());
    CHECK_FALSE(parse_grpc_timeout_ms("").has_value());
}

TEST_CASE("HeaderMap: views stay valid while the map grows, is moved, and is copied apart") {
    HeaderMap h;
    h.add("Host", "a.example");
    const std::string_view host = *h.get("host");
    const std::string big(5000, 'v');  // bigger than a block: a block of its own
    for (int i = 0; i < 200; ++i) h.add("x-field-" + std::to_string(i), "value-" + std::to_string(i));
    h.add("x-big", big);
    h.set("host", host);  // from a view into the same map
    CHECK(host == "a.example");
    CHECK(*h.get("host") == "a.example");
    CHECK(*h.get("x-big") == big);
    CHECK(*h.get("x-field-199") == "value-199");
    HeaderMap moved = std::move(h);
    CHECK(host == "a.example");  // moving the map moves no bytes
    HeaderMap copy = moved;
    moved.clear();
    CHECK(copy.size() == 202);
    CHECK(*copy.get("x-field-7") == "value-7");
    CHECK(*copy.get("x-big") == big);
    CHECK(copy[0].name == "host");
    copy = copy;  // self-assignment keeps it
    CHECK(copy.byte_size() > 5000);
}

// The map skips its scan for names it certainly does not hold (a 64-bit filter of names added).
// Checked against a plain list of pairs, over many names that share filter bits, in every case.
TEST_CASE("HeaderMap: get, set and remove agree with a plain list, through the name filter") {
    std::vector<std::pair<std::string, std::string>> model;
    auto lower = [](std::string s) {
        for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
        return s;
    };
    auto model_get = [&](const std::string& name) -> std::optional<std::string> {
        for (auto& [n, v] : model)
            if (n == lower(name)) return v;
        return std::nullopt;
    };
    std::vector<std::string> names;
    for (const char* base : {"x-a", "x-b", "via", "te", "trailer", "x-request-id", "connection", "upgrade",
                             "keep-alive", "x-forwarded-for", "content-length", "Host", "x-b3-spanid"}) {
        names.push_back(base);
        std::string upper = base;
        for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
        names.push_back(upper);
        names.push_back(std::string(base) + "z");
    }
    HeaderMap h;
    uint64_t state = 12345;
    auto next = [&] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<std::size_t>(state >> 33);
    };
    for (int step = 0; step < 4000; ++step) {
        const std::string& name = names[next() % names.size()];
        const std::string value = "v" + std::to_string(step);
        switch (next() % 5) {
            case 0:
                h.add(name, value);
                model.emplace_back(lower(name), value);
                break;
            case 1: {
                h.set(name, value);
                auto first = std::find_if(model.begin(), model.end(), [&](auto& p) { return p.first == lower(name); });
                if (first == model.end()) {
                    model.emplace_back(lower(name), value);
                } else {
                    first->second = value;
                    model.erase(std::remove_if(first + 1, model.end(), [&](auto& p) { return p.first == lower(name); }),
                                model.end());
                }
                break;
            }
            case 2: {
                auto before = model.size();
                model.erase(std::remove_if(model.begin(), model.end(), [&](auto& p) { return p.first == lower(name); }),
                            model.end());
                CHECK(h.remove(name) == before - model.size());
                break;
            }
            case 3:
                if (next() % 50 == 0) {
                    h.clear();
                    model.clear();
                }
                break;
            default: {
                HeaderMap copy = h;  // copies keep the filter
                auto got = copy.get(name);
                auto want = model_get(name);
                REQUIRE(got.has_value() == want.has_value());
                if (got) CHECK(*got == *want);
            }
        }
        REQUIRE(h.size() == model.size());
        for (const auto& n : names) {
            auto got = h.get(n);
            auto want = model_get(n);
            REQUIRE(got.has_value() == want.has_value());
            if (got) REQUIRE(*got == *want);
            REQUIRE(h.contains(n) == want.has_value());
        }
    }
}

// Names are lowercased eight bytes at a time: every byte value, at every position of a word.
TEST_CASE("HeaderMap lowercases names of every length and byte, and nothing else") {
    for (int b = 0; b < 256; ++b) {
        for (std::size_t len = 1; len <= 19; ++len) {
            for (std::size_t at = 0; at < len; ++at) {
                std::string name(len, 'Q');
                name[at] = char(b);
                HeaderMap h;
                h.add(name, "v");
                std::string want = name;
                for (char& c : want) c = (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
                REQUIRE(h[0].name == want);
            }
        }
    }
}
