// The outbound route table built from a snapshot: virtual hosts by every domain and address a
// request may use, routes with their matchers compiled (RE2, as Istio), and clusters by name.
// Immutable once built; shared by every worker.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "proxy/routing/cluster_state.h"
#include "proxy/routing/load_balancer.h"
#include "proxy/snapshot/snapshot.h"

namespace re2 {
class RE2;
}

namespace remora::proxy {

struct UpstreamTarget;

// What route matching may look at in a request.
struct RequestView {
    std::string_view method, path, authority, scheme = "http";
    std::string_view source_ip;  // the downstream peer, for consistentHash.useSourceIp
    // A header's value, or nullopt when absent (names are lowercase).
    virtual std::optional<std::string_view> header(std::string_view name) const = 0;
    virtual ~RequestView() = default;
};

// Why one match block of a route did not accept a request: the first of its conditions that
// failed, in the order the table checks them. Views into the table and the request.
struct MatchMiss {
    enum class Field { uri, scheme, method, authority, header, without_header, query_param };
    Field field = Field::uri;
    std::string_view name;                        // the header or query parameter
    const snapshot::StringMatcher* want = nullptr;  // what the block asks for
    std::optional<std::string_view> got;          // the request's value; none when absent
};

// One route as matching saw it: matched, or the reason each of its blocks missed.
struct RouteTrace {
    const snapshot::Route* route = nullptr;
    bool matched = false;
    std::vector<MatchMiss> misses;  // one per match block, in order (empty when matched)
};

class RouteTable {
public:
    // Throws std::invalid_argument naming the route when a regex does not compile. `states` is
    // the proxy's upstream state (breakers, outlier detection) by cluster name: pass the same one
    // to every table the proxy builds so a new configuration keeps it. Null: a fresh one.
    explicit RouteTable(snapshot::Snapshot snapshot, std::shared_ptr<ClusterStates> states = nullptr);
    ~RouteTable();
    RouteTable(const RouteTable&) = delete;
    RouteTable& operator=(const RouteTable&) = delete;

    const snapshot::Snapshot& snapshot() const { return snapshot_; }
    // By Host header ("reviews", "reviews:9080", FQDN, VIP...), case-insensitively.
    const snapshot::VirtualHost* find_host(std::string_view host) const;
    // By the address the app dialled: a service VIP:port or an endpoint's address:port.
    const snapshot::VirtualHost* find_address(const boost::asio::ip::tcp::endpoint& dst) const;
    // Some service port `port` is HTTP (HTTP, HTTP2, gRPC, gRPC-Web) or undeclared (detected):
    // Istio has an HTTP listener on 0.0.0.0:<port>, which takes HTTP to any address on that
    // port and routes it by Host.
    bool http_port(uint16_t port) const { return http_ports_.contains(port); }
    const snapshot::Cluster* cluster(std::string_view name) const;
    // The hash ring of a cluster whose policy is consistentHash; null otherwise.
    const HashRing* ring(const snapshot::Cluster& cluster) const;
    // The cluster's shared state (counters that outlive this configuration) and its endpoints'
    // outlier detection, in endpoint order.
    ClusterState& state(const snapshot::Cluster& cluster) const;
    const ClusterHealth& health(const snapshot::Cluster& cluster) const;
    const std::shared_ptr<ClusterStates>& states() const { return states_; }
    // Endpoint `index` of `cluster` as a request's target (target_for's answer), made the first
    // time any worker asks and kept with the table: the request path neither parses the address
    // nor builds the names and the pool key per request. A target without a key is unusable.
    const UpstreamTarget& target(const snapshot::Cluster& cluster, size_t index) const;
    // The first route of `vh` whose match blocks accept the request (blocks ORed, conditions
    // within a block ANDed); null when none does.
    const snapshot::Route* match(const snapshot::VirtualHost& vh, const RequestView& req) const;
    // The same decision, explained (remoractl explain): every route of `vh` up to and including
    // the first that matches, with each earlier block's first failed condition. Not for the
    // request path: it allocates.
    std::vector<RouteTrace> trace(const snapshot::VirtualHost& vh, const RequestView& req) const;

private:
    struct Matcher;
    struct CompiledBlock;
    struct CompiledRoute;
    // The first condition of `b` that `req` fails; none when the block accepts it.
    static std::optional<MatchMiss> miss(const CompiledBlock& b, const RequestView& req);
    snapshot::Snapshot snapshot_;
    std::unordered_map<std::string, const snapshot::VirtualHost*> by_domain_;
    // Domains written "*<suffix>", by suffix, longest first.
    std::vector<std::pair<std::string, const snapshot::VirtualHost*>> wildcard_domains_;
    std::unordered_map<std::string, const snapshot::VirtualHost*> by_address_;
    std::unordered_set<uint16_t> http_ports_;
    struct StringHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, const snapshot::Cluster*, StringHash, std::equal_to<>> clusters_;
    struct Targets;
    std::unordered_map<const snapshot::Cluster*, std::unique_ptr<Targets>> targets_;
    std::unordered_map<const snapshot::VirtualHost*, std::vector<CompiledRoute>> routes_;
    std::unordered_map<const snapshot::Cluster*, HashRing> rings_;
    std::shared_ptr<ClusterStates> states_;
    std::unordered_map<const snapshot::Cluster*, std::unique_ptr<ClusterHealth>> health_;
};

// A destination by weight (weight / sum of weights); the first when every weight is 0.
const snapshot::WeightedCluster* pick_weighted(const std::vector<snapshot::WeightedCluster>& clusters,
                                               std::mt19937_64& rng);

// What a route does to the request it forwards or answers, shared by the request path and
// remoractl explain. Location for a redirect: the request's parts, replaced where the rule says.
std::string redirect_location(const snapshot::Route& r, std::string_view host, std::string_view path);
// rewrite.uri: the matched prefix replaced when a prefix matched, else the whole path (the query
// string stays).
std::string rewritten_path(const snapshot::Route& r, std::string_view target);

}  // namespace remora::proxy
