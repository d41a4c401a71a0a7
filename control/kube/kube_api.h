// The Kubernetes API as remora-control reads it: where the API server is and how to authenticate
// (in-cluster service account or a kubeconfig), the kinds it lists and watches, and the
// list/watch protocol's state (resourceVersion, watch events, 410 Gone) as plain logic without I/O.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace remora::control::kube {

struct KubeConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// How to reach and authenticate to the API server.
struct ApiServer {
    std::string host;  // a name or an address (IPv6 without brackets)
    std::string port = "443";
    bool tls = true;                    // https://; http:// only for tests and local proxies
    std::string ca_pem;                 // trust for the server's certificate; empty: system roots
    bool insecure_skip_verify = false;  // kubeconfig's insecure-skip-tls-verify
    std::string token;                  // bearer token, as given
    std::filesystem::path token_file;   // or read from here before each connection (rotated)
    std::string client_cert_pem, client_key_pem;  // client certificate authentication
    std::string described;  // where this came from, for logs ("in-cluster", "kubeconfig F ctx C")

    std::string url() const;  // "https://10.96.0.1:443"
    // The Authorization header value ("Bearer ..."), or "" for none.
    std::string authorization() const;
};

// In-cluster: KUBERNETES_SERVICE_HOST/PORT from `env` and the service account's token and CA in
// `sa_dir`. Throws KubeConfigError naming what is missing.
using EnvFn = std::function<std::optional<std::string>(const std::string&)>;
ApiServer in_cluster(const std::filesystem::path& sa_dir, const EnvFn& env);
inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// A kubeconfig file: its current-context (or `context` when not empty), that context's cluster
// (server, certificate-authority[-data], insecure-skip-tls-verify) and user (token, tokenFile,
// client-certificate[-data] and client-key[-data]). Relative paths are relative to the file.
// Throws KubeConfigError naming the file and the field.
ApiServer load_kubeconfig(const std::filesystem::path& file, const std::string& context = "");

// One kind remora-control watches. `paths` are the collection URLs to try in order (an Istio CRD
// served at v1, else at v1beta1); a 404 moves to the next.
struct WatchedKind {
    std::string kind;                       // "VirtualService"
    std::vector<std::string> paths;         // "/apis/networking.istio.io/v1/virtualservices"
    std::vector<std::string> api_versions;  // the apiVersion of each path
};
// Services, EndpointSlices, Pods, Namespaces and the Istio kinds the store holds.
std::vector<WatchedKind> watched_kinds();

// One line of a watch stream: {"type": "...", "object": {...}}.
struct WatchEvent {
    enum class Type { Added, Modified, Deleted, Bookmark, Error };
    Type type = Type::Added;
    boost::json::object object;
    std::string resource_version;  // object.metadata.resourceVersion
    int code = 0;                  // ERROR: the Status's code (410 = the version is too old)
    std::string message;           // ERROR: the Status's message
};
const char* event_type_name(WatchEvent::Type t);  // "ADDED", ...
// Throws std::runtime_error for a line that is not a watch event (not JSON, unknown type, no
// object, an object without metadata.name).
WatchEvent parse_watch_event(std::string_view line);

// Splits complete lines off the front of `buffer` (a watch body as it arrives), leaving a partial
// last line there. Empty lines are dropped.
std::vector<std::string> take_lines(std::string& buffer);

// One kind's cache and its place in the list/watch protocol (what client-go calls a reflector):
// list to get every object and the list's resourceVersion, watch from that version, apply each
// event and remember its version, relist when the server says the version is gone (410), and
// after a dropped connection watch again from the last version seen, without relisting.
class Reflector {
  public:
    explicit Reflector(std::string kind, std::string api_version)
        : kind_(std::move(kind)), api_version_(std::move(api_version)) {}

    bool needs_list() const { return needs_list_; }
    // Whether a list has succeeded at least once (the cache holds the server's state).
    bool synced() const { return synced_; }
    const std::string& resource_version() const { return resource_version_; }
    const std::string& kind() const { return kind_; }
    void set_api_version(std::string v) { api_version_ = std::move(v); }

    // The list page request target and the watch request target for the collection at `path`.
    std::string list_target(const std::string& path, const std::string& continue_token,
                            unsigned limit) const;
    std::string watch_target(const std::string& path, unsigned timeout_seconds) const;

    // A list page's body ({"metadata": {"resourceVersion", "continue"}, "items": [...]}):
    // items are gathered; the last page (no continue token) replaces the cache at once, so a
    // relist never leaves a moment without state. Returns the continue token ("" at the end).
    // Throws std::runtime_error for a body that is not a list.
    std::string on_list_page(std::string_view body);
    // True when the last list changed the cache (objects added, removed or changed).
    bool last_list_changed() const { return last_list_changed_; }

    enum class Step { Changed, Unchanged, Relist, Failed };
    // A watch event: Changed/Unchanged for ADDED/MODIFIED/DELETED/BOOKMARK (the version moves);
    // Relist for ERROR 410 (the cache stays until the relist replaces it); Failed for another
    // ERROR (watch again from the same version).
    Step on_event(const WatchEvent& event);
    // The watch request was answered 410 Gone.
    void on_gone() { needs_list_ = true; }
    // The list at this path is not served (404) and there is nothing else to try: the kind is
    // empty and counts as synced.
    void on_not_served();

    // Objects by "namespace/name" ("name" for cluster-scoped kinds), each with kind and
    // apiVersion set (list items come without them).
    const std::map<std::string, boost::json::object>& objects() const { return objects_; }
    static std::string key_of(const boost::json::object& obj);

  private:
    void stamp(boost::json::object& obj) const;

    std::string kind_, api_version_;
    std::map<std::string, boost::json::object> objects_;
    std::map<std::string, boost::json::object> pending_;  // list pages so far
    std::string pending_version_;
    std::string resource_version_;
    bool needs_list_ = true;
    bool synced_ = false;
    bool last_list_changed_ = false;
};

// The text the store keeps for an object from the API: block YAML without the server's
// bookkeeping (status, managedFields, resourceVersion, generation, uid, the last-applied
// annotation), so a change that is only bookkeeping changes nothing downstream.
std::string object_yaml(const boost::json::object& obj);

// What the watched objects give the store: Services, the Istio resources, and a WorkloadEntry
// for every ready EndpointSlice address (labels and service account from its Pod).
struct RenderedDoc {
    std::string kind, ns, name;
    std::string source;  // "kube:VirtualService default/reviews"
    std::string yaml;
    std::string resource_version;  // the object's, for the Event-like log of a rejection
};
// `objects` maps a kind name ("Service", "EndpointSlice", "Pod", ...) to its objects by key.
std::vector<RenderedDoc> render(
    const std::map<std::string, const std::map<std::string, boost::json::object>*>& objects);

}  // namespace remora::control::kube
