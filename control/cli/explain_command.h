// `remoractl explain`: one request end to end (routing, endpoints, mTLS, authorization) from the
// control plane's snapshots or, offline, from Istio YAML; and `explain --flag F` for a response flag.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace remora::control::cli {

// argv: the words after "explain". Exit 0 when the request would be served, 1 when refused.
int explain_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

}  // namespace remora::control::cli
