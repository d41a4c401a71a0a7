// Workload identity from labels and the peer-metadata header between sidecars.
#include <doctest/doctest.h>

#include <stdexcept>

#include "proxy/telemetry/workload.h"

using namespace remora::proxy;

TEST_CASE("canonical service and revision follow Istio's label precedence") {
    auto w = WorkloadInfo::from_labels("reviews-v2", "bookinfo", {{"app", "reviews"}, {"version", "v2"}});
    CHECK(w.app == "reviews");
    CHECK(w.version == "v2");
    CHECK(w.canonical_service == "reviews");
    CHECK(w.canonical_revision == "v2");

    auto c = WorkloadInfo::from_labels("x", "ns", {{"app", "a"},
                                                   {"app.kubernetes.io/name", "k8s-name"},
                                                   {"service.istio.io/canonical-name", "canon"},
                                                   {"service.istio.io/canonical-revision", "r7"}});
    CHECK(c.canonical_service == "canon");
    CHECK(c.canonical_revision == "r7");
    CHECK(c.app == "a");

    auto bare = WorkloadInfo::from_labels("orders", "shop", {});
    CHECK(bare.app == "unknown");
    CHECK(bare.version == "unknown");
    CHECK(bare.canonical_service == "orders");  // the workload name when no label says
    CHECK(bare.canonical_revision == "latest");
    CHECK(WorkloadInfo::from_labels("", "shop", {}).name == "unknown");
}

TEST_CASE("peer metadata survives the header round trip, odd characters included") {
    auto w = WorkloadInfo::from_labels("web v1;x=1", "prod", {{"app", "web%"}, {"version", "1.0"}});
    std::string header = encode_peer_metadata(w);
    CHECK(header.find(' ') == std::string::npos);
    CHECK(header.find("wl=web%20v1%3Bx%3D1") != std::string::npos);
    auto back = decode_peer_metadata(header);
    REQUIRE(back);
    CHECK(back->name == "web v1;x=1");
    CHECK(back->ns == "prod");
    CHECK(back->app == "web%");
    CHECK(back->version == "1.0");
    CHECK(back->canonical_service == w.canonical_service);
    CHECK(back->cluster == "Kubernetes");
}

TEST_CASE("malformed peer metadata is an unknown peer, never an error") {
    CHECK_FALSE(decode_peer_metadata(""));
    CHECK_FALSE(decode_peer_metadata("ns=default"));            // no workload name
    CHECK_FALSE(decode_peer_metadata("wl=a"));                  // no namespace
    CHECK_FALSE(decode_peer_metadata("wl=a;ns"));               // pair without '='
    CHECK_FALSE(decode_peer_metadata("wl=a%2;ns=b"));           // truncated escape
    CHECK_FALSE(decode_peer_metadata("wl=a%zz;ns=b"));          // not hex
    CHECK_FALSE(decode_peer_metadata("wl=a%0A;ns=b"));          // a newline smuggled into a label
    CHECK_FALSE(decode_peer_metadata("wl=a b;ns=b"));           // raw space
    CHECK_FALSE(decode_peer_metadata(std::string(3000, 'a')));  // too long
    auto ok = decode_peer_metadata("wl=a;ns=b;future=1");       // a newer peer's extra key
    REQUIRE(ok);
    CHECK(ok->name == "a");
}

