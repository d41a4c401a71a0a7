// remora-agent: the injected pod's small helper in the proxy image. `wait` is the postStart hook
// that holds the app's container until its proxy is ready (holdApplicationUntilProxyStarts).
#include <chrono>
#include <iostream>
#include <thread>

#include "common/args.h"
#include "common/http_server.h"
#include "proxy/agent/app_prober.h"

namespace {

using namespace remora;
using common::Args;
using common::UsageError;

constexpr const char* kUsage =
    R"(usage: remora-agent wait [--port 15021] [--timeout 60s] [--period-ms 500]

  wait   poll http://127.0.0.1:PORT/healthz/ready until it answers 200 (exit 0) or the timeout
         passes (exit 1); the injector runs it as the proxy container's postStart hook, so the
         kubelet starts the app only once its proxy is ready.
)";

int run(const std::vector<std::string>& argv) {
    common::set_server_header("remora-agent");
    if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
        std::cout << kUsage;
        return argv.empty() ? 2 : 0;
    }
    if (argv[0] != "wait") throw UsageError("unknown command \"" + argv[0] + "\"");
    Args args({argv.begin() + 1, argv.end()}, {"port", "timeout", "period-ms"});
    long long port = std::stoll(args.get_or("port", "15021"));
    if (port < 1 || port > 65535) throw UsageError("--port: out of range");
    auto timeout = std::chrono::seconds(
        common::parse_duration_seconds("timeout", args.get_or("timeout", "60s")));
    auto period = std::chrono::milliseconds(std::stoll(args.get_or("period-ms", "500")));
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto status = proxy::agent::http_get("127.0.0.1", static_cast<uint16_t>(port),
                                             "/healthz/ready", {}, std::chrono::milliseconds(1000));
        if (status == 200u) {
            std::cerr << "remora-agent: proxy ready\n";
            return 0;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            std::cerr << "remora-agent: proxy not ready after " << timeout.count() << "s\n";
            return 1;
        }
        std::this_thread::sleep_for(period);
    }
}

}  // namespace

int main(int argc, char** argv) {
    return common::run_tool("remora-agent", argc, argv, run);
}
