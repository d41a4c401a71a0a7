// Sidecar injection as Istio does it: a workload's pod template gains remora-init and
// remora-proxy, volumes, labels and annotations; shared by `remoractl kube-inject` and the webhook.
#pragma once

#include <boost/json/value.hpp>

#include <stdexcept>
#include <string>

namespace remora::control::kube {

// What the mesh-wide injection template is made of (remoractl flags, remora-control's values).
struct InjectOptions {
    std::string proxy_image = "localhost/remora-proxy:0.1.0";
    std::string control_address = "remora-control.remora-system.svc:15012";
    std::string trust_domain = "cluster.local";
    std::string root_cert_configmap = "remora-ca-root-cert";
    std::string token_audience = "remora-ca";
    // Native sidecars (Kubernetes >= 1.28): the proxy as an init container with
    // restartPolicy: Always. A pod's sidecar.istio.io/nativeSidecar annotation overrides it.
    bool native_sidecar = false;
    // Without native sidecars: the proxy is the first container and a postStart hook waits for
    // its readiness, so the app never starts before its proxy. proxy.istio.io/config overrides.
    bool hold_application_until_proxy_starts = true;
};

enum class InjectOutcome {
    injected,
    already_injected,  // sidecar.istio.io/status present: injecting twice is a no-op
    opted_out,         // sidecar.istio.io/inject: "false", or hostNetwork
    not_a_workload,    // a kind without a pod template: passed through untouched
};

const char* outcome_name(InjectOutcome o);

// A pod annotation the injector cannot use (e.g. proxy.istio.io/config that is not YAML).
struct InjectError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Injects into one Kubernetes object of any kind, in place. `ns` is the namespace to assume when
// the object names none (the webhook knows it from the AdmissionRequest).
InjectOutcome inject_object(boost::json::value& object, const InjectOptions& options,
                            const std::string& ns = "");

// Injects into a pod (metadata + spec), in place. `workload_name` and `owner` feed the proxy's
// telemetry (ISTIO_META_WORKLOAD_NAME / _OWNER) as Istio's do.
InjectOutcome inject_pod(boost::json::object& pod_metadata, boost::json::object& pod_spec,
                         const InjectOptions& options, const std::string& workload_name,
                         const std::string& owner);

// A stream of YAML documents injected and printed back as YAML ("---"-separated); kinds without
// a pod template pass through. A syntax error throws InjectError "SOURCE:LINE:COL: ...".
std::string inject_yaml(const std::string& yaml_text, const std::string& source_name,
                        const InjectOptions& options);

}  // namespace remora::control::kube
