// The status port (15020): POST /quitquitquit stops the proxy only when it comes from inside the
// pod (localhost), with a clear answer otherwise; readiness; unknown paths.
#include <doctest/doctest.h>

#include "proxy/agent/status_port.h"

using namespace remora::proxy::agent;
namespace http = boost::beast::http;
using remora::common::HttpRequest;
using remora::common::PeerInfo;

namespace {

HttpRequest request(http::verb method, const char* target) {
    HttpRequest r{method, target, 11};
    r.prepare_payload();
    return r;
}

PeerInfo from(const char* remote) {
    PeerInfo p;
    p.remote = remote;
    return p;
}

}  // namespace

TEST_CASE("loopback peers, as the HTTP server formats them") {
    CHECK(is_loopback_peer("127.0.0.1:43210"));
    CHECK(is_loopback_peer("127.0.0.6:1"));  // Istio's inbound passthrough source
    CHECK(is_loopback_peer("::1:43210"));
    CHECK(is_loopback_peer("[::1]:43210"));
    CHECK(is_loopback_peer("::ffff:127.0.0.1:80"));
    CHECK(!is_loopback_peer("198.18.61.1:43210"));
    CHECK(!is_loopback_peer("::ffff:198.18.61.1:80"));
    CHECK(!is_loopback_peer("fe80::1:80"));
    CHECK(!is_loopback_peer("unknown"));
    CHECK(!is_loopback_peer(""));
}

TEST_CASE("POST /quitquitquit from localhost quits; from elsewhere or with GET it does not") {
    int quits = 0;
    StatusPortActions actions{[] { return true; }, [&] { ++quits; }};

    auto r = status_port_answer(request(http::verb::post, "/quitquitquit"), from("127.0.0.1:5"),
                                actions);
    CHECK(r.result_int() == 200);
    CHECK(r.body() == "OK\n");
    CHECK(quits == 1);

    r = status_port_answer(request(http::verb::post, "/quitquitquit"), from("198.18.61.1:40000"),
                           actions);
    CHECK(r.result_int() == 403);
    CHECK(r.body().find("only requests from localhost") != std::string::npos);
    CHECK(r.body().find("198.18.61.1:40000") != std::string::npos);
    CHECK(quits == 1);

    r = status_port_answer(request(http::verb::get, "/quitquitquit"), from("127.0.0.1:5"), actions);
    CHECK(r.result_int() == 405);
    CHECK(r[http::field::allow] == "POST");
    CHECK(quits == 1);
}

TEST_CASE("readiness and unknown paths") {
    bool ready = false;
    StatusPortActions actions{[&] { return ready; }, [] {}};
    auto r = status_port_answer(request(http::verb::get, "/healthz/ready"), from("198.18.61.1:1"),
                                actions);
    CHECK(r.result_int() == 503);
    ready = true;
    r = status_port_answer(request(http::verb::get, "/healthz/ready"), from("198.18.61.1:1"),
                           actions);
    CHECK(r.result_int() == 200);
    r = status_port_answer(request(http::verb::post, "/quit"), from("127.0.0.1:1"), actions);
    CHECK(r.result_int() == 404);
    CHECK(r.body().find("/quitquitquit") != std::string::npos);
}
