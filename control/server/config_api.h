// The config API on the control plane's TLS port (15012): POST/DELETE/GET /v1/config,
// GET /v1/config/version, GET /v1/meshconfig, with the admin credential checked first.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "certs/verifier.h"
#include "common/http_server.h"
#include "control/store/store.h"
#include "proxy/meshconfig/mesh_config.h"

namespace remora::control::server {

// Who may do what: the admin (bearer admin token, or an SVID for
// spiffe://<td>/ns/remora-system/sa/remoractl) changes and reads config; any workload SVID of the
// trust domain may also read the MeshConfig.
struct ApiAuth {
    std::string admin_token;
    certs::TrustBundle bundle;
    std::string trust_domain = "cluster.local";
    std::function<certs::SystemTime()> clock = [] { return std::chrono::system_clock::now(); };
};

enum class Access { Admin, Workload };

// nullopt when the caller may; otherwise the 401/403 JSON answer `{"error": "..."}`.
std::optional<common::HttpResponse> authorize(const ApiAuth& auth, const common::HttpRequest& req,
                                              const common::PeerInfo& peer, Access need);

// MeshConfig as JSON with Istio's field names (what proxies will fetch).
std::string mesh_config_json(const proxy::MeshConfig& mesh);

class ConfigApi {
  public:
    using Logger = std::function<void(const std::string&)>;
    ConfigApi(store::ConfigStore& store, ApiAuth auth, proxy::MeshConfig mesh, Logger log);

    // True for the paths this API serves (/v1/config, /v1/config/..., /v1/meshconfig).
    static bool serves(std::string_view target);
    common::HttpResponse handle(const common::HttpRequest& req, const common::PeerInfo& peer);

  private:
    common::HttpResponse change(const common::HttpRequest& req, bool remove,
                                const std::string& source);
    common::HttpResponse list(const common::HttpRequest& req,
                              const std::map<std::string, std::string>& query);

    store::ConfigStore& store_;
    ApiAuth auth_;
    std::string mesh_json_;
    Logger log_;
};

// "/v1/config?kind=vs&name=a%20b" → path and decoded query parameters (the last value wins).
std::pair<std::string, std::map<std::string, std::string>> split_target(std::string_view target);

}  // namespace remora::control::server
