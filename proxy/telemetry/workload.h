// Who this proxy's workload is (for metric labels and spans), and the peer-metadata header that
// carries it between sidecars, as Istio's metadata exchange does.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace remora::proxy {

// Between sidecars only: the outbound proxy adds it to requests, the inbound one to responses;
// each removes the other's before the app sees the message.
inline constexpr std::string_view kPeerMetadataHeader = "x-remora-peer-metadata";

struct WorkloadInfo {
    std::string name = "unknown";  // the workload (a Deployment's name)
    std::string ns = "default";
    std::string app = "unknown";      // label `app`
    std::string version = "unknown";  // label `version`
    std::string canonical_service = "unknown";
    std::string canonical_revision = "latest";
    std::string cluster = "Kubernetes";
    std::map<std::string, std::string> labels;

    // Fills app, version and the canonical names from labels as Istio does
    // (service.istio.io/canonical-name, app.kubernetes.io/name, app, else the workload name).
    static WorkloadInfo from_labels(std::string name, std::string ns,
                                    std::map<std::string, std::string> labels);
};

// "wl=<name>;ns=<ns>;app=<app>;ver=<version>;cs=<canonical>;cr=<revision>;cl=<cluster>", values
// percent-encoded.
std::string encode_peer_metadata(const WorkloadInfo& w);
// Nullopt when malformed (an unknown peer then, never an error for the request).
std::optional<WorkloadInfo> decode_peer_metadata(std::string_view text);

}  // namespace remora::proxy
