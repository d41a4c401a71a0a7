// `remoractl analyze`: consistency checks across Istio resources, with istioctl's message codes,
// levels and texts (pkg/config/analysis/msg/messages.yaml).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "control/model/model.h"

namespace remora::control::analyze {

enum class Level { Error, Warning, Info };

struct Message {
    std::string code;  // "IST0101"
    Level level = Level::Error;
    // The resource the message is about; kind is "" for problems of a whole file.
    std::string kind, ns, name;
    model::Location where;  // file and the line where the resource starts
    std::string text;

    // istioctl's line: `Error [IST0101] (VirtualService default/reviews file.yaml:12) Referenced
    // host+subset in destinationrule not found: "reviews+v3"`
    std::string str() const;
    // "Kind namespace/name", or "Kind name" for a cluster-scoped resource (a Namespace).
    std::string origin() const;
};

// The analyzers, named as Istio's.
enum class Analyzer {
    SchemaValidation,             // IST0106: the model's validation errors
    DestinationHost,              // IST0101 host / mirror host / host:port, IST0112
    DestinationRule,              // IST0101 host+subset / mirror+subset in destinationrule
    ConflictingMeshGatewayHosts,  // IST0109
    PodNotSelected,               // IST0173, IST0174
    CaCertificate,                // IST0128, IST0129
    ServiceEntryAddresses,        // IST0134
    AuthorizationPolicies,        // IST0127, IST0101 (namespaces)
    Deprecation,                  // IST0002
    Gateway,                      // IST0101 (gateway), IST0132: VirtualService gateway references
    ConflictingGateways,          // IST0145
    SidecarSelector,              // IST0101 (selector), IST0110, IST0111, IST0167
    IngressGatewayPort,           // IST0101 (selector), IST0162: Gateway ports on its Service
    TelemetrySelector,            // IST0101 (selector), IST0159
    TelemetryDefaultSelector,     // IST0160
    PortName,                     // IST0118, IST0150: Service port names
    GatewayCertificate,           // IST0138: Gateways sharing a certificate
    JwtClaimRoute,                // IST0149: JWT claim routes without RequestAuthentication
    ApplicationUid,               // IST0144: pods running as the proxy's UID
    Injection,                    // IST0102, IST0103, IST0123, IST0148: sidecar injection
    Annotations,                  // IST0107, IST0108, IST0125, IST0135: Istio annotations
    ServiceEntryProtocols,        // IST0177: one host and port, two protocols
    ServiceAssociation,           // IST0116, IST0137: a Deployment's Services disagree on ports
    BlockedCidrs,                 // IST0175: istiod fetches JWKS from anywhere
};

struct Options {
    Options(std::set<Analyzer> analyzers = {}) : only(std::move(analyzers)) {}  // NOLINT: {{...}}

    std::set<Analyzer> only;  // empty = all analyzers
    // MeshConfig defaultConfig.proxyMetadata (istioctl analyze --meshConfigFile): DNS capture
    // with address auto-allocation makes ServiceEntry addresses optional.
    std::map<std::string, std::string> proxy_metadata;
    // MeshConfig rootNamespace: an AuthorizationPolicy there applies to the whole mesh.
    std::string root_namespace = "istio-system";
    // istioctl --istioNamespace: where, for files only, istioctl adds its default ingress
    // gateway (a Pod labelled istio=ingressgateway and the istio-ingressgateway Service).
    std::string istio_namespace = "istio-system";
};

// Runs the analyzers on everything in `config` (invalid resources included, as istioctl does).
// Messages come sorted by file, line and code.
std::vector<Message> analyze(const model::Config& config, const Options& options = {});

bool has_errors(const std::vector<Message>& messages);

// istioctl's level names: "Error", "Warning", "Info" (any case); nullopt otherwise.
std::optional<Level> level_from_name(std::string name);
const char* level_name(Level level);
// Error > Warning > Info.
int severity(Level level);
// One line on what an analyzer checks (remoractl analyze --list-analyzers).
const char* analyzer_description(Analyzer a);

// "host", "mirror" etc. are Istio's words; exposed for the CLI's --analyzers flag.
const char* analyzer_name(Analyzer a);
std::vector<Analyzer> all_analyzers();

}  // namespace remora::control::analyze
