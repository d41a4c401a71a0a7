// The objects a cluster needs to run Remora (remoractl manifest generate / install): namespace,
// CRDs, RBAC, MeshConfig, CA, remora-control and the sidecar injector, from a profile and --set.
#pragma once

#include <boost/json/value.hpp>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/kube/inject.h"

namespace remora::control::kube {

struct ValuesError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Install values: a profile's defaults, then --set key=value in order. Keys are flat dotted
// names ("control.replicas", "meshConfig.accessLogFile"); Istio's spellings of the same values
// (values.pilot.replicaCount, values.global.hub, ...) are accepted as aliases.
class InstallValues {
  public:
    // Profiles: default, minimal (no injector), demo (access logs, 100% tracing, small requests).
    explicit InstallValues(const std::string& profile = "default");

    // "key=value"; throws ValuesError for an unknown key or a bad value, naming both.
    void set(const std::string& assignment);

    std::string get(const std::string& key) const;
    bool flag(const std::string& key) const;
    long long number(const std::string& key) const;
    const std::string& profile() const { return profile_; }
    // meshConfig.* keys, without the prefix, in order.
    const std::map<std::string, std::string>& mesh_config() const { return mesh_; }
    // The injection template these values give (image, control address, modes).
    InjectOptions inject_options() const;

    static std::vector<std::string> profiles();
    static std::vector<std::string> known_keys();

  private:
    std::string profile_;
    std::map<std::string, std::string> values_;
    std::map<std::string, std::string> mesh_;
};

// What cannot come from values: the mesh CA, made (or read) by remoractl from its state dir.
struct InstallCa {
    std::string root_cert_pem;
    std::string ca_cert_pem;  // signing certificate (the root itself for a self-signed mesh CA)
    std::string ca_key_pem;
    std::string cluster_jwks;  // optional: the cluster's service-account issuer keys (JWKS JSON)
};

std::vector<boost::json::value> generate_manifests(const InstallValues& values,
                                                   const InstallCa& ca);

// The MeshConfig YAML (the `mesh` key of the remora ConfigMap) the values give.
std::string mesh_config_yaml(const InstallValues& values);

}  // namespace remora::control::kube
