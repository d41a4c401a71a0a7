// gzip for the control plane's answers: round trips, what Python's and the gzip tool's output
// look like (multiple members), bombs refused while inflating, and Accept-Encoding's q-values.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "common/gzip.h"

using remora::common::accepts_gzip;
using remora::common::gunzip;
using remora::common::gzip;

TEST_CASE("gzip round-trips, and repetitive JSON shrinks") {
    std::string json = "{\"clusters\":[";
    for (int i = 0; i < 5000; ++i) {
        json += "{\"name\":\"outbound|8080||svc-" + std::to_string(i) +
                ".ns-0.svc.cluster.local\",\"endpoints\":[{\"address\":\"198.18.0.1\",\"port\":8080}]},";
    }
    json += "{}]}";
    const std::string z = gzip(json);
    CHECK(z.size() * 10 < json.size());
    CHECK(static_cast<unsigned char>(z[0]) == 0x1f);
    CHECK(static_cast<unsigned char>(z[1]) == 0x8b);
    auto back = gunzip(z, json.size());
    REQUIRE(back);
    CHECK(*back == json);
    CHECK(gunzip(gzip(""), 10) == std::string());
    // Random bytes (incompressible), at every level.
    std::mt19937 rng(7);
    std::string noise(100000, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    for (int level : {1, 6, 9}) CHECK(gunzip(gzip(noise, level), noise.size()) == noise);
}

TEST_CASE("gzip of parts is one member of their concatenation") {
    std::mt19937 rng(11);
    std::string noise(300000, '\0');  // past the output's first chunk even uncompressed
    for (char& c : noise) c = static_cast<char>(rng());
    const std::string head = "{\"version\":\"abc\",\"snapshot\":", tail = "}\n";
    for (int level : {1, 6}) {
        const std::string z = gzip({head, noise, "", tail}, level);
        CHECK(gunzip(z, 1 << 20) == head + noise + tail);
    }
    CHECK(gunzip(gzip({}), 10) == std::string());
    CHECK(gunzip(gzip({"", ""}), 10) == std::string());
    CHECK(gzip({"abc", "def"}) == gzip("abcdef"));
}

TEST_CASE("gunzip reads concatenated members, as gzip(1) writes them") {
    const std::string z = gzip("hello, ") + gzip("world");
    CHECK(gunzip(z, 100) == std::string("hello, world"));
}

TEST_CASE("gunzip refuses what is not gzip, cut short, corrupt, or a bomb") {
    std::string error;
    CHECK_FALSE(gunzip("{\"version\":\"1\"}", 100, &error));
    CHECK(error == "not gzip data");
    const std::string z = gzip(std::string(100000, 'a') + "tail");
    CHECK_FALSE(gunzip(z.substr(0, z.size() / 2), 1 << 20, &error));
    CHECK(error == "gzip data cut short");
    std::string corrupt = z;
    corrupt[z.size() / 2] ^= 0x55;
    corrupt[z.size() / 2 + 1] ^= 0x55;
    CHECK_FALSE(gunzip(corrupt, 1 << 20, &error));
    CHECK(error.starts_with("corrupt gzip data"));
    // 100 MB of zeros is 100 KB of gzip: refused at the bound, without inflating it all.
    const std::string bomb = gzip(std::string(100 << 20, '\0'), 9);
    CHECK(bomb.size() < 200 * 1024);
    CHECK_FALSE(gunzip(bomb, 1 << 20, &error));
    CHECK(error == "inflates to more than 1048576 bytes");
    // Trailing garbage after a member.
    CHECK_FALSE(gunzip(gzip("x") + "garbage", 100, &error));
}

TEST_CASE("Accept-Encoding: gzip allowed unless q=0") {
    CHECK(accepts_gzip("gzip"));
    CHECK(accepts_gzip("GZIP"));
    CHECK(accepts_gzip("deflate, gzip;q=1.0, br"));
    CHECK(accepts_gzip("x-gzip"));
    CHECK(accepts_gzip("*"));
    CHECK(accepts_gzip("br, *;q=0.5"));
    CHECK(accepts_gzip(" gzip ; q=0.001"));
    CHECK_FALSE(accepts_gzip(""));
    CHECK_FALSE(accepts_gzip("identity"));
    CHECK_FALSE(accepts_gzip("br, deflate"));
    CHECK_FALSE(accepts_gzip("gzip;q=0"));
    CHECK_FALSE(accepts_gzip("gzip;q=0.000"));
    CHECK_FALSE(accepts_gzip("*, gzip;q=0"));
    CHECK_FALSE(accepts_gzip("*;q=0"));
}
