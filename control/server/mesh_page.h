// The live mesh page on remora-control's monitoring port: /mesh (the page: the service graph drawn
// with the embedded graph library, the proxies, a service's routes and policies on click, a form
// that runs explain), /mesh/graph.json (MeshGraph), /mesh/proxy?name=ID (one proxy's routes and
// inbound policies from the snapshot it was sent), /mesh/explain?from=POD&url=URL[&method=M]
// [&header=H]... (remoractl explain's report, from the snapshots sent), /mesh/cytoscape.min.js.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "control/registry/proxy_registry.h"
#include "control/server/distribution.h"
#include "control/server/mesh_graph.h"

namespace remora::control::server {

// The graph library, embedded at build time (control/ui/embed.py); empty when it was not installed.
extern const std::string_view kGraphLibrary;

class MeshPage {
  public:
    MeshPage(registry::ProxyRegistry& registry, Distribution& distribution, MeshGraph& graph,
             std::string trust_domain)
        : registry_(registry), distribution_(distribution), graph_(graph), trust_domain_(std::move(trust_domain)) {}

    static bool serves(std::string_view target);
    common::HttpResponse handle(const common::HttpRequest& req);

    // The explain report for a request from registered proxy `from` (JSON; "error" when it
    // cannot be made).
    std::string explain_json(const std::string& from, const std::string& url, const std::string& method,
                             const std::vector<std::string>& headers);
    std::string proxy_json(const std::string& name) const;

  private:
    registry::ProxyRegistry& registry_;
    Distribution& distribution_;
    MeshGraph& graph_;
    std::string trust_domain_;
};

}  // namespace remora::control::server
