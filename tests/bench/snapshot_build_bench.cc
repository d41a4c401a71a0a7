// How long a configuration of N services takes to become a proxy's route table, and the memory it
// holds: Istio YAML (N ServiceEntries, one VirtualService and DestinationRule per ten) read into
// the model, analyzed as `remoractl analyze` does, translated into a snapshot and compiled into a
// RouteTable. Reports, never asserts: run it as `meson test -C build --benchmark snapshot_build`
// or directly with the sizes to compare (default 1000 10000 40000).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "control/analyze/analyzer.h"
#include "control/model/model.h"
#include "control/translate/translate.h"
#include "proxy/routing/route_table.h"

#ifdef REMORA_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

// N ServiceEntries of about 250 bytes each (43,784 of them are 10 MB); every tenth service also
// has a VirtualService (a retry policy and a timeout) and a DestinationRule with two subsets.
std::string services_yaml(std::size_t n) {
    std::string y;
    y.reserve(n * 300);
    char buf[1024];
    for (std::size_t i = 0; i < n; ++i) {
        std::snprintf(buf, sizeof buf,
                      "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
                      "  name: svc-%zu\n  namespace: bench\nspec:\n  hosts:\n"
                      "  - svc-%zu.bench.example\n  addresses:\n  - 198.19.%zu.%zu\n  ports:\n"
                      "  - number: 80\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n"
                      "  endpoints:\n  - address: 198.18.%zu.%zu\n    labels: {version: v%zu}\n",
                      i, i, (i / 250) % 256, i % 250 + 1, (i / 250) % 256, i % 250 + 1, i % 2);
        y += buf;
        if (i % 10 != 0) continue;
        std::snprintf(buf, sizeof buf,
                      "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
                      "  name: svc-%zu\n  namespace: bench\nspec:\n  hosts:\n"
                      "  - svc-%zu.bench.example\n  http:\n  - match:\n    - uri:\n"
                      "        prefix: /v1\n    route:\n    - destination:\n"
                      "        host: svc-%zu.bench.example\n        subset: v1\n"
                      "    timeout: 5s\n    retries:\n      attempts: 2\n  - route:\n"
                      "    - destination:\n        host: svc-%zu.bench.example\n"
                      "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
                      "  name: svc-%zu\n  namespace: bench\nspec:\n  host: svc-%zu.bench.example\n"
                      "  subsets:\n  - name: v0\n    labels: {version: v0}\n  - name: v1\n"
                      "    labels: {version: v1}\n",
                      i, i, i, i, i, i);
        y += buf;
    }
    return y;
}

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Resident and peak resident memory of this process, MiB.
std::pair<double, double> rss_mib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    double rss = 0, peak = 0;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) rss = std::atof(line.c_str() + 6) / 1024;
        if (line.rfind("VmHWM:", 0) == 0) peak = std::atof(line.c_str() + 6) / 1024;
    }
    return {rss, peak};
}

}  // namespace

int main(int argc, char** argv) {
#ifdef REMORA_MIMALLOC
    (void)mi_version();  // as remora-proxy: keeps libmimalloc linked, so it is the allocator
#endif
    namespace model = remora::control::model;
    namespace translate = remora::control::translate;
    // --emit N FILE: write the YAML of N services to FILE (for remora-proxy --config) and stop.
    if (argc == 4 && std::string(argv[1]) == "--emit") {
        std::ofstream out(argv[3], std::ios::binary);
        out << services_yaml(std::strtoul(argv[2], nullptr, 10));
        return out.good() ? 0 : 1;
    }
    std::vector<std::size_t> sizes;
    for (int i = 1; i < argc; ++i)
        sizes.push_back(std::strtoul(argv[i], nullptr, 10));
    if (sizes.empty()) sizes = {1000, 10000, 40000};
    std::printf("%8s %8s %9s %9s %9s %9s %9s %9s %9s %8s\n", "services", "MB", "load_ms",
                "analyze_ms", "xlate_ms", "table_ms", "ready_ms", "model_MiB", "rss_MiB",
                "peak_MiB");
    for (std::size_t n : sizes) {
        const std::string yaml = services_yaml(n);
        auto t0 = Clock::now();
        model::Config config = model::load_yaml(yaml, "bench.yaml");
        const double load = ms_since(t0);
        const double model_rss = rss_mib().first;
        if (config.has_errors()) {
            std::fprintf(stderr, "invalid: %s\n", config.errors().front()->str().c_str());
            return 1;
        }
        auto t1 = Clock::now();
        auto messages = remora::control::analyze::analyze(config, {});
        const double analyze = ms_since(t1);
        translate::WorkloadRef w;
        w.ns = "bench";
        auto t2 = Clock::now();
        auto snap = translate::translate(config, w, {});
        const double xlate = ms_since(t2);
        const std::size_t hosts = snap.virtual_hosts.size();
        auto t3 = Clock::now();
        remora::proxy::RouteTable table(std::move(snap));
        const double build = ms_since(t3);
        auto [rss, peak] = rss_mib();
        std::printf("%8zu %8.1f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %8.0f\n", n,
                    static_cast<double>(yaml.size()) / 1e6, load, analyze, xlate, build,
                    load + xlate + build, model_rss, rss, peak);
        if (hosts < n) std::fprintf(stderr, "only %zu virtual hosts\n", hosts);
        (void)messages;
    }
    return 0;
}
