// SPIFFE-ID rules, one check per rule of the SPIFFE-ID standard.
#include <doctest/doctest.h>

#include <string>

#include "certs/spiffe_id.h"

using remora::certs::SpiffeId;
using remora::certs::SpiffeIdErrc;

namespace {
remora::certs::error_code parse_error(std::string_view uri) {
    auto r = SpiffeId::parse(uri);
    return r ? remora::certs::error_code{} : r.error();
}
}  // namespace

TEST_CASE("valid SPIFFE IDs parse into trust domain and path") {
    auto id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/sleep");
    REQUIRE(id);
    CHECK(id->trust_domain() == "cluster.local");
    CHECK(id->path() == "/ns/default/sa/sleep");
    CHECK(id->str() == "spiffe://cluster.local/ns/default/sa/sleep");
    CHECK(id->principal() == "cluster.local/ns/default/sa/sleep");
    CHECK(id->ns() == "default");
    CHECK(id->service_account() == "sleep");

    auto td_only = SpiffeId::parse("spiffe://example.org");
    REQUIRE(td_only);
    CHECK(td_only->path().empty());
    CHECK_FALSE(td_only->ns());

    CHECK(SpiffeId::parse("spiffe://a-b_c.9/Path.With-Mixed_Case/x"));
    CHECK_FALSE(SpiffeId::parse("spiffe://td/ns/a/sa/b/extra")->ns());
}

TEST_CASE("each SPIFFE-ID rule has its own refusal") {
    CHECK(parse_error("") == SpiffeIdErrc::empty);
    CHECK(parse_error("http://cluster.local/x") == SpiffeIdErrc::wrong_scheme);
    CHECK(parse_error("SPIFFE://cluster.local/x") == SpiffeIdErrc::wrong_scheme);
    CHECK(parse_error("spiffe:/cluster.local") == SpiffeIdErrc::wrong_scheme);
    CHECK(parse_error("spiffe:///ns/x") == SpiffeIdErrc::empty_trust_domain);
    CHECK(parse_error("spiffe://") == SpiffeIdErrc::empty_trust_domain);
    CHECK(parse_error("spiffe://Cluster.local/x") == SpiffeIdErrc::bad_trust_domain_char);
    CHECK(parse_error("spiffe://clu%ster/x") == SpiffeIdErrc::bad_trust_domain_char);
    CHECK(parse_error("spiffe://cluster.local:8443/x") == SpiffeIdErrc::port_or_userinfo);
    CHECK(parse_error("spiffe://user@cluster.local/x") == SpiffeIdErrc::port_or_userinfo);
    CHECK(parse_error("spiffe://td/ns/a b") == SpiffeIdErrc::bad_path_char);
    CHECK(parse_error("spiffe://td/ns/%41") == SpiffeIdErrc::bad_path_char);
    CHECK(parse_error("spiffe://td/ns//sa") == SpiffeIdErrc::empty_segment);
    CHECK(parse_error("spiffe://td/ns/./sa") == SpiffeIdErrc::dot_segment);
    CHECK(parse_error("spiffe://td/ns/../sa") == SpiffeIdErrc::dot_segment);
    CHECK(parse_error("spiffe://td/ns/sa/") == SpiffeIdErrc::trailing_slash);
    CHECK(parse_error("spiffe://td/") == SpiffeIdErrc::trailing_slash);
    CHECK(parse_error("spiffe://td/ns?x=1") == SpiffeIdErrc::query_or_fragment);
    CHECK(parse_error("spiffe://td/ns#frag") == SpiffeIdErrc::query_or_fragment);
    CHECK(parse_error("spiffe://td?x") == SpiffeIdErrc::query_or_fragment);
}

TEST_CASE("a SPIFFE ID is at most 2048 bytes") {
    std::string prefix = "spiffe://td/";
    std::string at_limit = prefix + std::string(2048 - prefix.size(), 'a');
    CHECK(SpiffeId::parse(at_limit));
    CHECK(parse_error(at_limit + "a") == SpiffeIdErrc::too_long);
}

TEST_CASE("service-account identities are built and read back") {
    auto id = SpiffeId::for_service_account("cluster.local", "bookinfo", "reviews");
    REQUIRE(id);
    CHECK(id->str() == "spiffe://cluster.local/ns/bookinfo/sa/reviews");
    CHECK(id->ns() == "bookinfo");
    CHECK(id->service_account() == "reviews");
    CHECK_FALSE(SpiffeId::for_service_account("cluster.local", "", "x"));
    CHECK_FALSE(SpiffeId::for_service_account("cluster.local", "a/b", "x"));
    CHECK_FALSE(SpiffeId::for_service_account("Bad.TD", "a", "x"));
}

TEST_CASE("refusals carry a token and a sentence") {
    auto ec = parse_error("spiffe://td/ns/../x");
    CHECK(remora::certs::reason_token(ec) == "dot_segment");
    CHECK(ec.message().find("'..'") != std::string::npos);
}
