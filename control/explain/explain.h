// remoractl explain: one request through the configuration the proxies run, decided by the
// proxy's own code (RouteTable's matching and weights, the authz Engine, retry coverage) and
// described for people (text) and tools (JSON), so the explanation cannot disagree with the
// data path. The caller supplies snapshots: sent by the control plane, or translated offline.
#pragma once

#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "control/model/model.h"
#include "control/translate/translate.h"
#include "proxy/snapshot/snapshot.h"

namespace remora::control::explain {

namespace snap = proxy::snapshot;

// The request, as the app would send it to its sidecar.
struct Request {
    std::string method = "GET";
    std::string scheme = "http";
    std::string host;  // as written in the URL, without the port
    uint32_t port = 80;
    bool port_given = false;
    std::string path = "/";  // with the query string
    std::vector<std::pair<std::string, std::string>> headers;  // names lowercase, in order
    // The Host header a client sends: host, with the port unless it is the scheme's default.
    std::string authority() const;
};

// URL "http://reviews:9080/path?q", method, and headers "Name: value". Throws
// std::invalid_argument naming what is wrong.
Request parse_request(const std::string& url, const std::string& method,
                      const std::vector<std::string>& headers);

// A workload: the caller, or the one behind an endpoint.
struct Workload {
    std::string name;  // pod or WorkloadEntry name; "" when unknown
    std::string ns = "default";
    std::string service_account = "default";
    std::string ip;  // "" when unknown
    snap::Labels labels;
    std::string spiffe_id(const std::string& trust_domain) const;
};

// What explain knows of the server behind one endpoint.
struct Server {
    bool known = false;  // a workload was found for the endpoint's address
    Workload workload;
    // Its inbound policy (PeerAuthentication, AuthorizationPolicy); none when it has no sidecar
    // (or none explain knows of).
    std::optional<snap::InboundPolicy> inbound;
    std::string source;  // where the policy came from, for the reader
};

struct Inputs {
    Workload client;
    std::string trust_domain = "cluster.local";
    snap::Snapshot snapshot;   // the client's
    std::string source;        // where the snapshot came from, for the reader
    // The mesh's outboundTrafficPolicy is REGISTRY_ONLY; a Sidecar's mode in the snapshot
    // (snapshot.outbound_traffic_policy) wins over it either way.
    bool registry_only = false;
    // The server behind an endpoint of a cluster.
    std::function<Server(const snap::Cluster&, const snap::Endpoint&)> server_for;
    // Outlier ejection from the client's running proxy (its admin /clusters), by
    // "<cluster>::<address>:<port>"; none when not asked for.
    std::optional<std::map<std::string, bool>> ejected;
};

// Offline (--config): the workload named `name` (a WorkloadEntry, else a Pod; in `ns` unless
// empty); none when the files have no such workload.
std::optional<Workload> find_workload(const model::Config& config, const std::string& name, const std::string& ns);

// Offline inputs for `client`: its snapshot by the translation remora-control runs, and each
// endpoint's server found by address among the WorkloadEntries (with a sidecar when labelled
// security.istio.io/tlsMode=istio, as Istio's injector marks pods).
Inputs offline_inputs(std::shared_ptr<const model::Config> config, const Workload& client,
                      const translate::Options& options, const std::string& source);

// The report: JSON with "verdict" first ({"served", "summary", "outcomes"}), then the request,
// the client, the host and its port protocol, the rules tried, the route's policies, each
// destination with its share, pool limits, endpoints and their servers' mTLS and authz.
boost::json::object explain(const Inputs& in, const Request& request);

// The same for people: the verdict (the reason first when refused), then the details.
std::string render_text(const boost::json::object& report);

// Would every outcome be served (the exit status: 0 served, 1 refused)?
bool served(const boost::json::object& report);

// Envoy's "/clusters" text (remora-proxy's admin) → ejected state by "<cluster>::<host>".
std::map<std::string, bool> parse_admin_clusters(const std::string& text);

// Response flags remora emits: what each means, likely causes, and the commands that check them.
struct FlagDoc {
    std::string flag, status, meaning;
    std::vector<std::string> causes;
    std::vector<std::string> checks;
};
const std::vector<FlagDoc>& response_flags();
const FlagDoc* find_flag(const std::string& flag);  // case-insensitive; null when unknown
std::string render_flag(const FlagDoc& doc);

}  // namespace remora::control::explain
