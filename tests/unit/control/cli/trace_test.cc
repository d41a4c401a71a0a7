// remoractl trace: both access-log encodings parsed back, joined by request id, oldest first.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "control/cli/trace.h"

using namespace remora::control;

namespace {
const char* kText =
    "[2026-11-21T10:00:00.120Z] \"GET /reviews/0 HTTP/1.1\" 200 - 0 295 7 4 \"-\" \"curl/7.88.1\" "
    "\"rid-1\" \"reviews:9080\" \"127.0.0.1:9080\" inbound|9080|| "
    "\"00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01\" "
    "\"spiffe://cluster.local/ns/default/sa/productpage\" destination";
const char* kJson =
    R"({"start_time":"2026-11-21T10:00:00.100Z","method":"GET","path":"/reviews/0","protocol":"HTTP/1.1",)"
    R"("response_code":200,"response_flags":"-","bytes_received":0,"bytes_sent":295,"duration":9,)"
    R"("upstream_service_time":"8","request_id":"rid-1","authority":"reviews:9080",)"
    R"("upstream_host":"198.18.0.5:9080","upstream_cluster":"outbound|9080||reviews.default.svc.cluster.local",)"
    R"("traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-2222222222222222-01",)"
    R"("downstream_peer_uri_san":"spiffe://cluster.local/ns/default/sa/reviews","reporter":"source"})";
}  // namespace

TEST_CASE("both encodings parse back to the same fields") {
    auto t = parse_access_log_line(kText);
    REQUIRE(t);
    CHECK(t->start_time == "2026-11-21T10:00:00.120Z");
    CHECK(t->method == "GET");
    CHECK(t->path == "/reviews/0");
    CHECK(t->code == 200);
    CHECK(t->flags == "-");
    CHECK(t->bytes_sent == 295);
    CHECK(t->duration_ms == 7);
    CHECK(t->request_id == "rid-1");
    CHECK(t->upstream_host == "127.0.0.1:9080");
    CHECK(t->peer == "spiffe://cluster.local/ns/default/sa/productpage");
    CHECK(t->reporter == "destination");
    auto j = parse_access_log_line(kJson);
    REQUIRE(j);
    CHECK(j->request_id == "rid-1");
    CHECK(j->duration_ms == 9);
    CHECK(j->reporter == "source");
    CHECK_FALSE(parse_access_log_line("remora-proxy: started"));
    CHECK_FALSE(parse_access_log_line("{not json"));
    CHECK_FALSE(parse_access_log_line("[2026] \"GET / HTTP/1.1\" 200"));  // too few fields
}

TEST_CASE("lines of one request from several files, oldest first; other ids left out") {
    auto dir = std::filesystem::temp_directory_path() / ("remora-trace-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "server.log") << kText << "\n"
                                      << "[2026-11-21T09:00:00.000Z] \"GET / HTTP/1.1\" 200 - 0 1 1 1 "
                                         "\"-\" \"-\" \"rid-2\" \"a\" \"b\" c \"-\" \"-\" destination\n";
    std::ofstream(dir / "client.log") << kJson << "\n";
    std::ostringstream out;
    size_t n = trace_request("rid-1", {(dir / "server.log").string(), (dir / "client.log").string()}, out);
    CHECK(n == 2);
    std::string text = out.str();
    CHECK(text.find("trace 4bf92f3577b34da6a3ce929d0e0e4736") != std::string::npos);
    size_t src = text.find("source"), dst = text.find("destination");
    CHECK(src != std::string::npos);
    CHECK(dst != std::string::npos);
    CHECK(src < dst);  // the client's line started first
    CHECK(text.find("rid-2") == std::string::npos);
    std::ostringstream none;
    CHECK(trace_request("rid-9", {(dir / "client.log").string()}, none) == 0);
    CHECK_THROWS_WITH(trace_request("rid-1", {(dir / "missing.log").string()}, none),
                      doctest::Contains("missing.log: cannot read"));
    std::filesystem::remove_all(dir);
}
