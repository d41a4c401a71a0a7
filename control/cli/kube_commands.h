// `remoractl kube-inject`, `manifest generate` and `install`: Remora on Kubernetes.
#pragma once

#include <istream>
#include <ostream>
#include <string>
#include <vector>

namespace remora::control::cli {

// `kube-inject -f FILE|- [-o FILE] [--image IMG] [--control-address HOST:PORT]
// [--native-sidecar]`: the manifests with the sidecar injected, as YAML.
int kube_inject_command(const std::vector<std::string>& argv, std::istream& in, std::ostream& out,
                        std::ostream& err);

// `manifest generate` and `install` [--profile P] [--set k=v]... [--state-dir DIR]
// [--cluster-jwks FILE] [-o FILE]: every object a cluster needs, as YAML for `kubectl apply -f -`.
// The mesh CA comes from DIR (made there on first use, as remora-control would).
int manifest_generate_command(const std::vector<std::string>& argv, bool install, std::ostream& out,
                              std::ostream& err);

}  // namespace remora::control::cli
