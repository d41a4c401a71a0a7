// remoractl analyze against upstream istioctl's own analyzer tests: for each case of
// tests/unit/control/upstream/cases.txt (from istio/istio's analyzers_test.go), the inputs go
// through the one analyzer named, and the messages (code, kind, [namespace/]name) must be
// upstream's expected ones, no more, no fewer. Prints the count of cases passed per analyzer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "control/analyze/analyzer.h"
#include "control/model/yaml_read.h"

using namespace remora::control;

namespace {

std::vector<std::string> split(const std::string& s, const std::string& sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        std::size_t at = s.find(sep, start);
        std::string part =
            s.substr(start, at == std::string::npos ? std::string::npos : at - start);
        part.erase(0, part.find_first_not_of(' '));
        part.erase(part.find_last_not_of(' ') + 1);
        out.push_back(part);
        if (at == std::string::npos) break;
        start = at + sep.size();
    }
    return out;
}

// Upstream's Go analyzer types, as analyzers_test.go names them.
std::optional<analyze::Analyzer> analyzer_for(const std::string& name) {
    static const std::map<std::string, analyze::Analyzer> known = {
        {"virtualservice.DestinationHostAnalyzer", analyze::Analyzer::DestinationHost},
        {"virtualservice.DestinationRuleAnalyzer", analyze::Analyzer::DestinationRule},
        {"virtualservice.ConflictingMeshGatewayHostsAnalyzer",
         analyze::Analyzer::ConflictingMeshGatewayHosts},
        {"destinationrule.SubsetSelectPodAnalyzer", analyze::Analyzer::PodNotSelected},
        {"destinationrule.CaCertificateAnalyzer", analyze::Analyzer::CaCertificate},
        {"serviceentry.ProtocolAddressesAnalyzer", analyze::Analyzer::ServiceEntryAddresses},
        {"authz.AuthorizationPoliciesAnalyzer", analyze::Analyzer::AuthorizationPolicies},
        {"deprecation.FieldAnalyzer", analyze::Analyzer::Deprecation},
        {"virtualservice.GatewayAnalyzer", analyze::Analyzer::Gateway},
        {"gateway.ConflictingGatewayAnalyzer", analyze::Analyzer::ConflictingGateways},
        {"sidecar.SelectorAnalyzer", analyze::Analyzer::SidecarSelector},
        {"gateway.IngressGatewayPortAnalyzer", analyze::Analyzer::IngressGatewayPort},
        {"telemetry.SelectorAnalyzer", analyze::Analyzer::TelemetrySelector},
        {"telemetry.DefaultSelectorAnalyzer", analyze::Analyzer::TelemetryDefaultSelector},
        {"service.PortNameAnalyzer", analyze::Analyzer::PortName},
        {"gateway.CertificateAnalyzer", analyze::Analyzer::GatewayCertificate},
        {"virtualservice.JWTClaimRouteAnalyzer", analyze::Analyzer::JwtClaimRoute},
        {"deployment.ApplicationUIDAnalyzer", analyze::Analyzer::ApplicationUid},
        {"injection.Analyzer", analyze::Analyzer::Injection},
        {"annotations.K8sAnalyzer", analyze::Analyzer::Annotations},
        {"authn.BlockedCIDRsAnalyzer", analyze::Analyzer::BlockedCidrs},
        {"deployment.ServiceAssociationAnalyzer", analyze::Analyzer::ServiceAssociation},
        {"serviceentry.ConflictingServiceEntryProtocolAnalyzer",
         analyze::Analyzer::ServiceEntryProtocols},
        {"schemaValidation.CollectionValidationAnalyzer(collections.VirtualService)",
         analyze::Analyzer::SchemaValidation},
    };
    auto it = known.find(name);
    if (it == known.end()) return std::nullopt;
    return it->second;
}

// Cases whose messages remora does not give yet (the analyzer exists, the check does not).
const std::vector<std::string> kKnownGaps = {};

}  // namespace

TEST_CASE("upstream istioctl analyzer cases") {
    const char* dir_env = std::getenv("REMORA_UPSTREAM_CASES");
    REQUIRE_MESSAGE(dir_env != nullptr, "REMORA_UPSTREAM_CASES is not set");
    const std::filesystem::path dir = dir_env;
    std::ifstream in(dir / "cases.txt");
    REQUIRE(in);
    std::map<std::string, std::pair<int, int>> tally;  // analyzer -> passed, run
    std::string line;
    int cases = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto f = split(line, "|");
        REQUIRE(f.size() == 5);
        const std::string& name = f[0];
        CAPTURE(name);
        auto analyzer = analyzer_for(f[1]);
        const std::string unknown = "unknown analyzer " + f[1];
        REQUIRE_MESSAGE(analyzer, unknown);
        ++cases;
        model::Config config;
        for (const auto& file : split(f[2], " "))
            model::load_path(config, dir / file);
        analyze::Options options;
        options.only = {*analyzer};
        if (f[3] != "-") {
            YAML::Node mesh = YAML::LoadFile((dir / f[3]).string());
            std::string root = model::scalar_text(model::field(mesh, "rootNamespace"));
            if (!root.empty()) options.root_namespace = root;
            YAML::Node md = model::field(mesh, {"defaultConfig", "proxyMetadata"});
            for (auto it = md.begin(); md.IsMap() && it != md.end(); ++it)
                options.proxy_metadata[it->first.Scalar()] = model::scalar_text(it->second);
        }
        std::vector<std::string> want;
        if (f[4] != "-") want = split(f[4], ";");
        std::vector<std::string> got;
        for (const auto& m : analyze::analyze(config, options)) {
            if (m.code == "IST0106" || m.code == "IST0133") continue;  // schema, not this analyzer
            // Upstream leaves the namespace out when the input does.
            bool with_ns = std::any_of(want.begin(), want.end(), [&](const std::string& w) {
                return w.find(" " + m.kind + " " + m.ns + "/" + m.name) != std::string::npos;
            });
            got.push_back(m.code + " " + m.kind + " " + (with_ns ? m.ns + "/" : "") + m.name);
        }
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
        bool pass = want == got;
        auto& [passed, run] = tally[f[1]];
        ++run;
        passed += pass ? 1 : 0;
        bool gap = std::find(kKnownGaps.begin(), kKnownGaps.end(), name) != kKnownGaps.end();
        if (gap) {
            CHECK_MESSAGE(!pass, "passes now: take it off kKnownGaps");
        } else {
            auto all = [](const std::vector<std::string>& v) {
                std::string out;
                for (const auto& s : v)
                    out += s + "; ";
                return out;
            };
            CHECK(all(got) == all(want));
        }
    }
    CHECK(cases > 0);
    for (const auto& [analyzer, counts] : tally) {
        MESSAGE(analyzer << ": " << counts.first << " of " << counts.second
                         << " upstream cases pass");
    }
}
