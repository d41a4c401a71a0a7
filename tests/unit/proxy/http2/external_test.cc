// The server codec against real HTTP/2 clients from Debian's nghttp2-client (nghttp, h2load),
// skipped with a message when they are not installed.
#include "fixture.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <thread>

using namespace h2test;

namespace {

bool have(const char* tool) {
    std::string cmd = std::string("command -v ") + tool + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

// Runs a shell command, returning its exit status and output (stdout and stderr).
std::pair<int, std::string> shell(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return {-1, out};
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int status = ::pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Serves on a background thread while the test thread runs the tool.
struct BackgroundServer {
    asio::io_context io;
    Listener listener{io, echo_handler};
    std::thread thread;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    BackgroundServer() {
        thread = std::thread([this] { io.run(); });
    }
    ~BackgroundServer() { stop(); }
    void stop() {
        if (!thread.joinable()) return;
        asio::post(io, [this] {
            for (auto& c : listener.connections) c.close();
            work.reset();
            io.stop();
        });
        thread.join();
    }
};

}  // namespace

TEST_CASE("nghttp: POST with a body and trailers round trips through the server codec") {
    if (!have("nghttp")) {
        MESSAGE("skipped: nghttp not installed (apt-get install nghttp2-client)");
        return;
    }
    std::string file = "/tmp/remora_h2_body_" + std::to_string(::getpid());
    {
        std::ofstream f(file);
        for (int i = 0; i < 20000; ++i) f << "line " << i << "\n";
    }
    BackgroundServer server;
    auto port = std::to_string(server.listener.port());
    auto [status, out] = shell("timeout 30 nghttp -v -d " + file +
                               " --trailer 'x-checksum: 42' -H 'x-test: nghttp' http://127.0.0.1:" +
                               port + "/upload?x=1");
    server.stop();
    std::remove(file.c_str());
    INFO(out);
    CHECK(status == 0);
    CHECK(out.find(":status: 200") != std::string::npos);
    CHECK(out.find("x-method: POST") != std::string::npos);
    CHECK(out.find("x-path: /upload?x=1") != std::string::npos);
    CHECK(out.find("x-test: nghttp") != std::string::npos);
    CHECK(out.find("x-echo-x-checksum: 42") != std::string::npos);
    CHECK(out.find("line 19999") != std::string::npos);  // the echoed body
}

TEST_CASE("h2load: 2000 requests over 4 connections, 100 streams each, all succeed") {
    if (!have("h2load")) {
        MESSAGE("skipped: h2load not installed (apt-get install nghttp2-client)");
        return;
    }
    BackgroundServer server;
    auto port = std::to_string(server.listener.port());
    auto [status, out] =
        shell("timeout 60 h2load -n 2000 -c 4 -m 100 http://127.0.0.1:" + port + "/");
    server.stop();
    INFO(out);
    CHECK(status == 0);
    CHECK(out.find("2000 succeeded, 0 failed, 0 errored") != std::string::npos);
    CHECK(server.listener.stats().streams_inbound == 2000);
    CHECK(server.listener.stats().protocol_errors == 0);
}
