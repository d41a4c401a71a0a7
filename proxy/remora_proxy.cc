// remora-proxy: the sidecar. Outbound capture on 15001, inbound on 15006, admin on 127.0.0.1:15000,
// health on 15021, the pod's status port 15020 when asked (--agent); or explicit listeners for running on loopback without iptables.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdlib>
#include <functional>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <csignal>
#include <iostream>
#include <random>
#include <thread>

#include "common/args.h"
#include "common/http_server.h"
#include "common/log.h"
#include "proxy/agent/app_prober.h"
#include "proxy/agent/status_port.h"
#include "proxy/authz/authz.h"
#include "proxy/identity/identity_agent.h"
#include "proxy/meshconfig/mesh_config.h"
#include "control/translate/translate.h"
#include "proxy/server/workers.h"
#include "proxy/subscription/subscriber.h"

#ifdef REMORA_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

using namespace remora;
using namespace remora::proxy;
using common::Args;
using common::UsageError;
namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

constexpr const char* kUsage = R"(usage: remora-proxy [flags]

The Remora sidecar proxy.

Identity (one of):
  --control HOST:PORT --token-file F   obtain the SVID from remora-control, renew at half-life
      [--namespace NS --service-account SA] [--cert-ttl 24h]
      (several replicas: --control A:PORT,B:PORT; certificates and config fail over between
      them with backoff and jitter)
  --cert-chain F --key F               static SVID from files
  --trust-bundle F                     roots to verify peers (and the CA) against (required)
  --trust-domain TD                    default cluster.local

Traffic:
  (with --control and neither --config nor --registry, the proxy subscribes to remora-control for
   its configuration: it registers this pod, receives its snapshot and every change to it, and
   keeps serving on the last one while the control plane is away)
  --pod-name NAME          this pod's name, as proxy-status shows it (default <workload>-<pod ip>)
  --registry FILE          Istio ServiceEntry/WorkloadEntry YAML: the mesh's services
  --config PATH            Istio YAML (file or directory): Services, ServiceEntries, WorkloadEntries,
                           VirtualServices, DestinationRules, PeerAuthentications,
                           AuthorizationPolicies; outbound
                           requests follow its routes (for this --namespace, --service-account,
                           --labels); an invalid file stops the proxy with file:line:col
  --outbound ADDR:PORT     captured outbound listener (default 0.0.0.0:15001; "off" disables)
  --inbound ADDR:PORT      captured inbound listener (default 0.0.0.0:15006; "off" disables)
  --mtls-mode MODE         inbound STRICT (default), PERMISSIVE or DISABLE; with --config,
                           PeerAuthentication decides (per port with portLevelMtls) unless this
                           is given; --config's AuthorizationPolicies are enforced on inbound
  --listen-outbound ADDR:PORT --upstream HOST:PORT [--upstream-identity SPIFFE-ID]
                           explicit outbound listener: plaintext HTTP in, mTLS to --upstream
  --listen-inbound ADDR:PORT --app HOST:PORT
                           explicit inbound listener: mTLS in, plaintext to --app
  (explicit listeners turn the capture listeners off unless --outbound/--inbound are given)

Operation:
  --admin ADDR:PORT        admin (default 127.0.0.1:15000)
  --health ADDR:PORT       readiness (default 0.0.0.0:15021)
  --agent ADDR:PORT        the pod's status port, as Istio's agent on 15020 (off by default; the
                           injector sets 0.0.0.0:15020): POST /quitquitquit from localhost drains
                           and exits 0 (a Job's last step), GET /healthz/ready
  --concurrency N          worker threads (default 2)
  --drain-duration D       SIGTERM drains for D (default 5s; MeshConfig terminationDrainDuration):
                           still accepting, Connection: close / GOAWAY, readiness 503; then exits.
                           SIGINT stops accepting at once and exits when in-flight work is done
                           (at most D)
  --exit-on-zero-active-connections  after SIGTERM, exit as soon as no connection is left
                           (Istio's EXIT_ON_ZERO_ACTIVE_CONNECTIONS; also read from that env var)
  --request-header-timeout D  a client must send a whole request header within D (default 10s)
  --idle-timeout D         keep-alive idle timeout (default 60s)
  --stream-idle-timeout D  a request whose body or answer stalls this long ends: 408 SI while
                           the request arrives, 504 SI waiting for the answer (default 300s)
  --request-timeout D      the whole request must arrive within D, else 408 (default 0s: none)
  --connect-timeout D      upstream connect and TLS handshake timeout (default 10s)
  --protocol-detection-timeout S  an undeclared port's client silent this long is carried as TCP
                           (server-first protocols; default 1, seconds, fractions allowed)
  --h2-upgrade-policy P    UPGRADE (default): HTTP/1.1 between sidecars rides multiplexed HTTP/2
                           over few mTLS connections; DO_NOT_UPGRADE keeps HTTP/1.1 (a
                           DestinationRule's connectionPool.http.h2UpgradePolicy wins)
  --mesh-config FILE       Istio MeshConfig YAML (accessLogFile, accessLogEncoding, trustDomain,
                           defaultConfig.tracing, concurrency, terminationDrainDuration,
                           streamIdleTimeout, requestTimeout, h2UpgradePolicy); flags given here
                           override it
Telemetry:
  --workload-name NAME     this pod's workload (a Deployment's name), for metric labels and spans
  --labels K=V,...         the pod's labels (app, version, service.istio.io/canonical-name, ...)
  --pod-ip IP              this pod's address, for spans and the node id
  --metrics ADDR:PORT      Prometheus metrics (default 0.0.0.0:15090; "off" stops recording them)
  --access-log FILE        one line per request ("/dev/stdout"); off by default
  --access-log-encoding E  TEXT (Envoy's format, default) or JSON
  --zipkin-address H:P     export spans as Zipkin v2 JSON to http://H:P/api/v2/spans
  --trace-sampling PCT     percent of new traces sampled (default 1; a caller's decision wins)
)";

std::optional<MtlsMode> mtls_mode_of(const std::string& text) {
    if (text == "STRICT") return MtlsMode::strict;
    if (text == "PERMISSIVE") return MtlsMode::permissive;
    if (text == "DISABLE") return MtlsMode::disable;
    return std::nullopt;
}

const char* mtls_mode_name(MtlsMode m) {
    return m == MtlsMode::strict ? "STRICT" : m == MtlsMode::permissive ? "PERMISSIVE" : "DISABLE";
}

tcp::endpoint resolve_host_port(const std::string& flag, const std::string& text) {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) throw UsageError("--" + flag + " \"" + text + "\": expected HOST:PORT");
    std::string host = text.substr(0, colon);
    if (host == "localhost") host = "127.0.0.1";
    return common::parse_endpoint(flag, host + text.substr(colon));
}

struct Proxy {
    asio::io_context io{1};
    TlsStore tls;
    ConfigStore config;
    std::atomic<bool> draining{false};
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<ListenerSpec> listeners;
    std::unique_ptr<IdentityAgent> identity;
    std::unique_ptr<ConfigSubscriber> subscriber;  // set when the config comes from remora-control
    std::atomic<bool> snapshot_applied{false};
    std::unique_ptr<common::HttpServer> admin, health, metrics, agent;
    std::shared_ptr<const TelemetryConfig> telemetry;
    std::chrono::seconds drain_duration{5};
    bool exit_on_zero_active = false;  // Istio's EXIT_ON_ZERO_ACTIVE_CONNECTIONS
    bool listeners_open = true;
    asio::steady_timer drain_timer{io};
    bool exiting = false;

    bool ready() const {
        return tls.current() && config.current() && (!subscriber || snapshot_applied.load());
    }

    std::vector<const WorkerStats*> stats() const {
        std::vector<const WorkerStats*> out;
        for (const auto& w : workers) out.push_back(&w->stats());
        return out;
    }

    // Counters kept outside the workers' stats: the HTTP/2 codec's and pool's, summed over workers
    // (remora.http2.<name>), and the identity agent's (remora.identity.<name>).
    std::map<std::string, uint64_t> extra_counters() const {
        std::map<std::string, uint64_t> out;
        if (identity && identity->from_ca()) {
            const IdentityCounts c = identity->counts();
            out["remora.identity.certificate_requests"] = c.requests;
            out["remora.identity.certificate_request_failures"] = c.request_failures;
            out["remora.identity.certificate_renewals"] = c.renewals;
            out["remora.identity.certificate_renewal_failures"] = c.renewal_failures;
        }
        if (subscriber) {
            // The config subscription's connection to remora-control: kept alive across polls,
            // so opened stays at one per control plane (plus one per restart, failover, SVID
            // renewal or drain) while polls grow with every push.
            const SubscriptionStatus st = subscriber->status();
            out["remora.config.polls"] = st.polls;
            out["remora.config.connections_opened"] = st.connections_opened;
            out["remora.config.connections_closed_by_server"] = st.connections_closed_by_server;
            // Snapshot answers: bytes on the wire (gzip) and inflated.
            out["remora.config.bytes_received"] = st.bytes_received;
            out["remora.config.snapshot_bytes"] = st.snapshot_bytes;
        }
        for (const auto& w : workers) {
            http2::for_each_counter(w->http2_stats(), [&](const char* name, uint64_t n) {
                auto& v = out[std::string("remora.http2.") + name];
                v = std::string_view(name) == "peak_buffered_bytes" ? std::max(v, n) : v + n;
            });
        }
        return out;
    }

    std::string prometheus() const {
        std::vector<const WorkerMetrics*> ms;
        for (const auto& w : workers) ms.push_back(&w->metrics());
        std::string out = render_istio_metrics(ms);
        out += render_stats_prometheus(stats());
        auto gauge = [&](const char* name, const char* help, const std::string& value) {
            out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name +
                   " " + value + "\n";
        };
        auto counter = [&](const char* name, const char* help, uint64_t value) {
            out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name +
                   " " + std::to_string(value) + "\n";
        };
        if (auto snap = tls.current()) {
            auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                snap->leaf().not_after().time_since_epoch()).count();
            gauge("remora_cert_expiration_timestamp_seconds", "When this proxy's certificate expires.",
                  std::to_string(secs));
        }
        if (identity && identity->from_ca()) {
            // One family, labelled by kind and result: `rate(...{result="failure"}[5m]) > 0` with no
            // success since is the alert that comes before an expired certificate.
            const IdentityCounts c = identity->counts();
            out += "# HELP remora_identity_certificate_requests_total Certificate requests to the CA "
                   "(kind: request with the bootstrap token, renewal over mTLS), by result.\n"
                   "# TYPE remora_identity_certificate_requests_total counter\n";
            auto line = [&](const char* kind, const char* result, uint64_t n) {
                out += std::string("remora_identity_certificate_requests_total{kind=\"") + kind +
                       "\",result=\"" + result + "\"} " + std::to_string(n) + "\n";
            };
            line("request", "success", c.requests);
            line("request", "failure", c.request_failures);
            line("renewal", "success", c.renewals);
            line("renewal", "failure", c.renewal_failures);
        }
        if (subscriber) {
            SubscriptionStatus st = subscriber->status();
            gauge("remora_config_connected", "1 while the config subscription reaches remora-control.",
                  st.connected ? "1" : "0");
            counter("remora_config_updates_total", "Snapshots received and applied.", st.updates);
            counter("remora_config_rejections_total", "Snapshots received and refused (NACK).", st.rejections);
            counter("remora_config_failures_total", "Polls that could not reach remora-control.", st.failures);
            counter("remora_config_polls_total", "Config polls remora-control answered.", st.polls);
            counter("remora_config_connections_opened_total",
                    "Connections opened to remora-control for config polls (kept alive across polls).",
                    st.connections_opened);
            counter("remora_config_connections_closed_by_server_total",
                    "Kept connections remora-control had closed between polls (replaced at once).",
                    st.connections_closed_by_server);
            counter("remora_config_received_bytes_total",
                    "Bytes of snapshot answers as they came from remora-control (gzip-compressed).",
                    st.bytes_received);
            counter("remora_config_snapshot_bytes_total", "Bytes of snapshot answers once inflated.",
                    st.snapshot_bytes);
            gauge("remora_config_snapshot_bytes", "The size of the last snapshot received (JSON).",
                  std::to_string(st.last_snapshot_bytes));
        }
        uint64_t idle = 0;
        for (const auto& w : workers) idle += w->idle_upstream_connections();
        gauge("remora_upstream_cx_idle", "Upstream connections kept alive in the pools, idle.", std::to_string(idle));
        uint64_t h2 = 0;
        for (const auto& w : workers) h2 += w->http2_upstream_connections();
        gauge("remora_upstream_cx_http2", "Multiplexed HTTP/2 upstream connections held in the pools.",
              std::to_string(h2));
        // Istio's build gauge, which its mesh dashboard counts proxies by.
        out += "# HELP istio_build Istio component build info.\n# TYPE istio_build gauge\n"
               "istio_build{component=\"proxy\",tag=\"" REMORA_VERSION "\"} 1\n";
        gauge("remora_server_ready", "1 once certificate and configuration are loaded.", ready() ? "1" : "0");
        gauge("remora_server_draining", "1 while draining.", draining.load() ? "1" : "0");
        auto cfg = config.current();
        gauge("remora_outlier_detection_ejections_active", "Endpoints ejected by outlier detection now.",
              std::to_string(cfg && cfg->routes ? cfg->routes->states()->ejections_active() : 0));
        uint64_t overflow = 0;
        for (const WorkerMetrics* m : ms) overflow += m->series_overflow();
        counter("remora_metrics_series_overflow_total", "Requests not counted: the per-worker series limit was reached.", overflow);
        const TelemetryConfig& t = *telemetry;
        counter("remora_access_log_dropped_total", "Access-log lines dropped because the buffer was full.",
                t.access_log ? t.access_log->dropped() : 0);
        counter("remora_access_log_written_total", "Access-log lines written.", t.access_log ? t.access_log->written() : 0);
        counter("remora_tracing_spans_sent_total", "Spans the collector accepted.", t.zipkin ? t.zipkin->sent() : 0);
        counter("remora_tracing_spans_dropped_total", "Spans dropped: queue full or collector unreachable.",
                t.zipkin ? t.zipkin->dropped() : 0);
        counter("remora_tracing_export_failures_total", "Failed POSTs to the span collector.",
                t.zipkin ? t.zipkin->failed_posts() : 0);
        return out;
    }
    uint64_t active() const {
        uint64_t n = 0;
        for (const auto& w : workers) n += w->active_connections();
        return n;
    }
    uint64_t active_requests() const {
        uint64_t n = 0;
        for (const auto& w : workers) n += w->active_requests();
        return n;
    }

    // Two ways to drain. Graceful (SIGTERM, POST /drain), as Envoy under Istio's agent for a pod
    // being deleted: the listeners keep accepting for the drain duration, since callers that have
    // not yet seen this endpoint removed still send here, and the app may still call out while it
    // shuts down; every HTTP/1.1 response says Connection: close and every HTTP/2 connection gets
    // GOAWAY on its next request, so clients move away; readiness fails. Then (SIGTERM) exit,
    // earlier once no connection is left with --exit-on-zero-active-connections. Quick (SIGINT,
    // POST /quitquitquit, as a Job's end or Ctrl-C): stop accepting now, finish what is in
    // flight, exit when the last connection is done or after the drain duration.
    void start_drain(bool then_exit, bool graceful) {
        exiting = exiting || then_exit;
        const bool first = !draining.exchange(true);
        if (first) {
            common::log_line("remora-proxy", graceful ? "draining: still accepting for " +
                                                            std::to_string(drain_duration.count()) +
                                                            "s, connections close after their current response"
                                                      : "draining: no new connections; finishing in-flight work");
            // The control plane withdraws this pod's endpoints from the other proxies now, not
            // when the registration expires after the exit.
            if (subscriber) subscriber->set_draining();
        }
        if (!graceful && listeners_open) {
            listeners_open = false;
            for (auto& w : workers) w->stop_accepting();
        }
        if (exiting && (first || !graceful)) {
            wait_then_exit(std::chrono::steady_clock::now() + drain_duration, graceful && !exit_on_zero_active);
        }
    }

    // Exits at `deadline`, or before it once no connection is active (unless `full`). At the
    // deadline the listeners close (a late caller gets a refused connection, which it retries
    // elsewhere) and requests still in flight get up to one more drain duration to finish: a
    // request accepted during the drain is answered, not cut.
    void wait_then_exit(std::chrono::steady_clock::time_point deadline, bool full) {
        drain_timer.expires_after(std::chrono::milliseconds(100));
        drain_timer.async_wait([this, deadline, full](boost::system::error_code ec) {
            if (ec) return;
            if ((full || active() > 0) && std::chrono::steady_clock::now() < deadline) {
                wait_then_exit(deadline, full);
                return;
            }
            if (listeners_open) {
                listeners_open = false;
                for (auto& w : workers) w->stop_accepting();
            }
            finish_then_exit(std::chrono::steady_clock::now() + drain_duration);
        });
    }

    void finish_then_exit(std::chrono::steady_clock::time_point deadline) {
        drain_timer.expires_after(std::chrono::milliseconds(50));
        drain_timer.async_wait([this, deadline](boost::system::error_code ec) {
            if (ec) return;
            if (active_requests() > 0 && std::chrono::steady_clock::now() < deadline) {
                finish_then_exit(deadline);
                return;
            }
            common::log_line("remora-proxy", "exiting with " + std::to_string(active()) +
                                                 " connection(s) still open");
            for (auto& w : workers) w->stop();
            if (identity) identity->stop();
            if (subscriber) subscriber->stop();
            if (admin) admin->stop();
            if (metrics) metrics->stop();
            if (health) health->stop();
            if (agent) agent->stop();
            io.stop();
        });
    }

    json::object certs_json() const {
        json::object o;
        auto snap = tls.current();
        if (!snap) {
            o["identity"] = nullptr;
            o["state"] = "waiting for the first certificate";
            return o;
        }
        auto cert = [](const certs::Certificate& c) {
            json::object x;
            x["serial"] = c.serial_hex();
            x["subject"] = c.subject();
            x["not_before"] = certs::format_time(c.not_before());
            x["not_after"] = certs::format_time(c.not_after());
            json::array uris;
            for (auto& u : c.uri_sans()) uris.emplace_back(u);
            x["uri_sans"] = std::move(uris);
            return x;
        };
        o["identity"] = snap->id.str();
        o["serial"] = snap->leaf().serial_hex();
        o["not_before"] = certs::format_time(snap->leaf().not_before());
        o["not_after"] = certs::format_time(snap->leaf().not_after());
        json::array chain, roots;
        for (auto& c : snap->chain) chain.push_back(cert(c));
        for (auto& c : snap->bundle.roots()) roots.push_back(cert(c));
        o["cert_chain"] = std::move(chain);
        o["trust_bundle"] = std::move(roots);
        return o;
    }

    json::object config_json() const {
        json::object o;
        auto cfg = config.current();
        o["namespace"] = cfg->ns;
        o["trust_domain"] = cfg->trust_domain;
        o["inbound_mtls_mode"] = mtls_mode_name(cfg->inbound_mode);
        o["outbound_traffic_policy"] = cfg->registry_only ? "REGISTRY_ONLY" : "ALLOW_ANY";
        json::object port_modes;
        for (const auto& [port, m] : cfg->inbound_port_modes) port_modes[std::to_string(port)] = mtls_mode_name(m);
        o["inbound_port_mtls_modes"] = std::move(port_modes);
        o["concurrency"] = workers.size();
        json::array ls;
        for (const ListenerSpec& l : listeners) {
            ls.push_back(json::object{{"name", listener_name(l.kind)},
                                      {"address", common::format_endpoint(l.address)}});
        }
        o["listeners"] = std::move(ls);
        if (cfg->upstream) {
            o["upstream"] = json::object{
                {"address", common::format_endpoint(cfg->upstream->address)},
                {"mtls", cfg->upstream->mtls},
                {"expected_identity", cfg->upstream->expected_identity
                                          ? json::value(*cfg->upstream->expected_identity)
                                          : json::value(nullptr)}};
        }
        if (cfg->app) o["app"] = common::format_endpoint(*cfg->app);
        if (subscriber) {
            SubscriptionStatus st = subscriber->status();
            o["subscription"] = json::object{{"connected", st.connected},
                                             {"applied_version", st.applied_version},
                                             {"config_version", st.config_version},
                                             {"rejected_version", st.rejected_version},
                                             {"rejected_error", st.rejected_error},
                                             {"last_error", st.last_error},
                                             {"updates", st.updates},
                                             {"rejections", st.rejections},
                                             {"failures", st.failures},
                                             {"polls", st.polls},
                                             {"connections_opened", st.connections_opened},
                                             {"connections_closed_by_server",
                                              st.connections_closed_by_server},
                                             {"bytes_received", st.bytes_received},
                                             {"snapshot_bytes", st.snapshot_bytes},
                                             {"last_snapshot_bytes", st.last_snapshot_bytes}};
        }
        if (cfg->routes) {
            const auto& snap = cfg->routes->snapshot();
            json::array vhs, clusters;
            for (const auto& vh : snap.virtual_hosts) {
                json::array domains, routes;
                for (const auto& d : vh.domains) domains.emplace_back(d);
                for (const auto& r : vh.routes) {
                    json::array wcs;
                    for (const auto& wc : r.clusters) wcs.push_back(json::object{{"cluster", wc.cluster}, {"weight", wc.weight}});
                    routes.push_back(json::object{{"name", r.name}, {"matches", r.matches.size()}, {"clusters", std::move(wcs)}});
                }
                vhs.push_back(json::object{{"name", vh.name}, {"domains", std::move(domains)}, {"routes", std::move(routes)}});
            }
            for (const auto& c : snap.clusters) {
                json::array eps;
                for (const auto& e : c.endpoints) {
                    eps.push_back(json::object{{"address", e.address + ":" + std::to_string(e.port)},
                                               {"mtls", e.mtls}, {"identity", e.identity}});
                }
                clusters.push_back(json::object{{"name", c.name}, {"load_balancer", c.load_balancer.simple},
                                                {"tls_mode", c.tls_mode}, {"endpoints", std::move(eps)}});
            }
            o["virtual_hosts"] = std::move(vhs);
            o["clusters"] = std::move(clusters);
            o["inbound_mtls_policy"] = snap.inbound.mtls_mode;
            json::array authz;
            for (const auto& p : snap.inbound.authz) {
                authz.push_back(json::object{{"name", p.name}, {"action", p.action}, {"rules", p.rules.size()}});
            }
            o["authorization_policies"] = std::move(authz);
        }
        const Limits& l = cfg->limits;
        o["limits"] = json::object{{"max_request_header_bytes", l.max_request_header_bytes},
                                   {"request_header_timeout_s", l.request_header_timeout.count()},
                                   {"idle_timeout_s", l.idle_timeout.count()},
                                   {"connect_timeout_s", l.connect_timeout.count()},
                                   {"stream_idle_timeout_s", l.stream_idle_timeout.count()},
                                   {"request_timeout_s", l.request_timeout.count()},
                                   {"protocol_detection_timeout_ms", l.protocol_detection_timeout.count()}};
        return o;
    }

    // Envoy's /clusters text: "cluster::key::value" and "cluster::host::key::value" lines, with
    // an endpoint ejected by outlier detection flagged /failed_outlier_check.
    std::string clusters_text() const {
        auto cfg = config.current();
        if (!cfg || !cfg->routes) return "";
        const RouteTable& table = *cfg->routes;
        std::string out;
        for (const auto& c : table.snapshot().clusters) {
            const ClusterHealth& h = table.health(c);
            const ClusterState& st = h.state();
            h.filtering();  // runs a due sweep, so ejections that ended show as ended
            auto line = [&](const std::string& key, const std::string& value) {
                out += c.name + "::" + key + "::" + value + "\n";
            };
            auto num = [](uint64_t v) { return std::to_string(v); };
            line("default_priority::max_connections", num(c.limits.max_connections));
            line("default_priority::max_pending_requests", num(c.limits.http1_max_pending_requests));
            line("default_priority::max_requests", num(c.limits.http2_max_requests));
            line("default_priority::max_retries", num(c.limits.max_retries));
            line("rq_active", num(st.requests.load(std::memory_order_relaxed)));
            line("rq_pending_active", num(st.pending.load(std::memory_order_relaxed)));
            line("rq_retry_active", num(st.retries.load(std::memory_order_relaxed)));
            line("outlier::ejections_active", num(st.ejected.load(std::memory_order_relaxed)));
            line("outlier::ejections_enforced_total", num(st.ejections_total.load(std::memory_order_relaxed)));
            line("outlier::ejections_overflow", num(st.ejections_overflow.load(std::memory_order_relaxed)));
            for (size_t i = 0; i < c.endpoints.size(); ++i) {
                const std::string host = c.endpoints[i].address + ":" + std::to_string(c.endpoints[i].port);
                line(host + "::health_flags", h.ejected(i) ? "/failed_outlier_check" : "healthy");
            }
        }
        return out;
    }

    common::HttpResponse admin_handler(const common::HttpRequest& req) {
        std::string_view target = req.target();
        std::string_view path = target.substr(0, target.find('?'));
        auto text = [&](unsigned status, std::string body) {
            auto res = common::json_response(status, std::move(body), req.version());
            res.set(http::field::content_type, "text/plain");
            return res;
        };
        if (path == "/ready") return ready() ? text(200, "LIVE\n") : text(503, "PRE_INITIALIZING\n");
        if (path == "/stats") {
            bool as_json = target.find("format=json") != std::string_view::npos;
            auto res = text(200, render_stats(stats(), as_json, extra_counters()));
            if (as_json) res.set(http::field::content_type, "application/json");
            return res;
        }
        if (path == "/clusters") return text(200, clusters_text());
        if (path == "/certs") return common::json_response(200, json::serialize(certs_json()), req.version());
        if (path == "/config_dump") {
            return common::json_response(200, json::serialize(config_json()), req.version());
        }
        if (path == "/drain" || path == "/quitquitquit") {
            if (req.method() != http::verb::post) return text(405, "use POST\n");
            bool quit = path == "/quitquitquit";
            asio::post(io, [this, quit] { start_drain(quit, !quit); });
            return text(200, "OK\n");
        }
        return text(404, "admin: /ready /stats /clusters /certs /config_dump /drain /quitquitquit\n");
    }
};

// The snapshot's inbound policy: PeerAuthentication picks the inbound mode, per port with
// portLevelMtls, unless --mtls-mode said otherwise; AuthorizationPolicy is compiled here, once per
// snapshot. Throws std::invalid_argument when a policy cannot be compiled.
void apply_inbound_policy(ProxyConfig& cfg, const snapshot::Snapshot& snap, bool mode_flag_given,
                          MtlsMode fallback = MtlsMode::permissive) {
    const snapshot::InboundPolicy& in = snap.inbound;
    cfg.authz = in.authz.empty() ? nullptr : std::make_shared<const authz::Engine>(in.authz);
    if (mode_flag_given) return;
    cfg.inbound_mode = in.peer_authentications.empty() ? fallback
                                                       : mtls_mode_of(in.mtls_mode).value_or(MtlsMode::permissive);
    cfg.inbound_port_modes.clear();
    for (const auto& [port, m] : in.port_mtls) {
        if (auto pm = mtls_mode_of(m)) cfg.inbound_port_modes[port] = *pm;
    }
}

// While a large --config (over 1 MiB of YAML: thousands of services) becomes a route table,
// mimalloc takes its memory in 2 MiB pages: the model, the snapshot and the table are hundreds of
// MiB at 40,000 services, and faulting them in 4 KiB at a time was a third of the time to ready
// (104,000 page faults against 13,000; docs/benchmark.md). Small configurations keep 4 KiB pages,
// which keep an idle sidecar about 3 MiB smaller.
class LargePagesWhileLoading {
  public:
    explicit LargePagesWhileLoading([[maybe_unused]] const std::string& path) {
#ifdef REMORA_MIMALLOC
        std::error_code ec;
        std::uintmax_t bytes = 0;
        if (std::filesystem::is_directory(path, ec)) {
            for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
                 !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
                if (it->is_regular_file(ec)) bytes += it->file_size(ec);
            }
        } else {
            bytes = std::filesystem::file_size(path, ec);
        }
        if (!ec && bytes > (1u << 20) && !mi_option_is_enabled(mi_option_large_os_pages)) {
            mi_option_set_enabled(mi_option_large_os_pages, true);
            enabled_ = true;
        }
#endif
    }
    ~LargePagesWhileLoading() {
#ifdef REMORA_MIMALLOC
        if (enabled_) mi_option_set_enabled(mi_option_large_os_pages, false);
#endif
    }
    LargePagesWhileLoading(const LargePagesWhileLoading&) = delete;
    LargePagesWhileLoading& operator=(const LargePagesWhileLoading&) = delete;

  private:
    [[maybe_unused]] bool enabled_ = false;
};

// --config: Istio YAML translated for this workload, as remora-control would, into a route table.
// The route table of a static proxy: the Istio YAML of --registry (the mesh's ServiceEntries and
// WorkloadEntries) and of --config (any kinds), read into one model and translated for this
// workload as remora-control would. Both flags are inputs to the same translation: a --registry
// file is a --config file that, by convention, holds the service registry.
std::shared_ptr<const RouteTable> load_routes(const std::vector<std::pair<std::string, std::string>>& inputs,
                                              const Args& args, const ProxyConfig& cfg, const MeshConfig& mesh) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    std::string names;
    for (const auto& [flag, path] : inputs) names += (names.empty() ? "" : ", ") + flag + " " + path;
    control::model::Config istio;
    {
        LargePagesWhileLoading large_pages(inputs.back().second);  // --config: the large one
        for (const auto& [flag, path] : inputs) control::model::load_path(istio, path);
    }
    const auto t1 = Clock::now();
    for (const auto* w : istio.warnings()) common::log_line("remora-proxy", w->str());
    if (istio.has_errors()) {
        std::string all;
        for (const auto* e : istio.errors()) all += "\n  " + e->str();
        throw std::runtime_error(names + ": invalid Istio configuration:" + all);
    }
    control::translate::WorkloadRef w;
    w.ns = cfg.ns;
    w.service_account = args.get_or("service-account", "default");
    if (auto l = args.get("labels")) {
        try {
            w.labels = common::parse_label_list(*l);
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("--labels: ") + e.what());
        }
    }
    control::translate::Options o;
    o.trust_domain = cfg.trust_domain;
    o.root_namespace = mesh.root_namespace;
    auto snap = control::translate::translate(istio, w, o);
    istio = {};  // before the table: its memory is reused for the table's instead of faulted in
    const auto t2 = Clock::now();
    for (const std::string& n : snap.notes) common::log_line("remora-proxy", names + ": " + n);
    const std::size_t hosts = snap.virtual_hosts.size(), clusters = snap.clusters.size();
    auto table = std::make_shared<const RouteTable>(std::move(snap));
    const auto t3 = Clock::now();
    auto ms = [](Clock::duration d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    };
    common::log_line("remora-proxy", names + ": " + std::to_string(hosts) + " virtual host(s), " +
                                         std::to_string(clusters) + " cluster(s) (read " + ms(t1 - t0) +
                                         " ms, translated " + ms(t2 - t1) + " ms, route table " +
                                         ms(t3 - t2) + " ms)");
    return table;
}

// The MeshConfig remora-control serves (GET /v1/meshconfig), asked for with this proxy's SVID
// once it has one (waiting at most 15 s for it). nullopt, logged, when it cannot be had: the proxy
// then starts on Istio's defaults. Read at start only: like Istio's defaultConfig, a change takes
// effect when the proxy restarts.
std::optional<MeshConfig> fetch_mesh_config(const IdentityOptions& id, const TlsStore& tls, const LogFn& log) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!tls.current() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    auto snap = tls.current();
    if (!snap) {
        log("no certificate after 15 s: starting with the default mesh config, not remora-control's");
        return std::nullopt;
    }
    certs::CaClientOptions opts;
    opts.bundle = snap->bundle;
    opts.trust_domain = snap->trust_domain;
    opts.client_chain = snap->chain;
    opts.client_key = snap->key;
    opts.timeout = std::chrono::seconds(5);
    const std::string where = "remora-control /v1/meshconfig";
    try {
        // The first replica that answers.
        certs::CaClientResult res;
        certs::ControlFailover controls(id.control_host, id.control_port, id.more_controls);
        for (std::size_t tried = 0;; ++tried) {
            opts.host = controls.current().host;
            opts.port = controls.current().port;
            try {
                res = certs::call_control(opts, "GET", "/v1/meshconfig", "");
                break;
            } catch (const std::exception&) {
                if (tried + 1 >= controls.size()) throw;
                controls.failed();
            }
        }
        if (res.status != 200) throw std::runtime_error("HTTP " + std::to_string(res.status) + ": " + res.body);
        MeshConfig mesh = MeshConfig::parse(res.body, where);  // JSON is YAML
        for (const std::string& note : mesh.notes) log(where + ": " + note);
        log("mesh config from " + where);
        return mesh;
    } catch (const std::exception& e) {
        log(where + ": " + e.what() + "; starting with the default mesh config");
        return std::nullopt;
    }
}

// Telemetry settings: the proxy's flags, else the mesh config, else Istio's defaults.
std::shared_ptr<const TelemetryConfig> make_telemetry(const Args& args, const MeshConfig& mesh,
                                                      const std::string& ns, const LogFn& log) {
    auto t = std::make_shared<TelemetryConfig>();
    std::map<std::string, std::string> labels;
    if (auto l = args.get("labels")) {
        try {
            labels = common::parse_label_list(*l);
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("--labels: ") + e.what());
        }
    }
    t->self = WorkloadInfo::from_labels(args.get_or("workload-name", ""), ns, std::move(labels));
    t->peer_metadata = encode_peer_metadata(t->self);
    t->pod_ip = args.get_or("pod-ip", "");
    t->node_id = "sidecar~" + (t->pod_ip.empty() ? std::string("0.0.0.0") : t->pod_ip) + "~" +
                 t->self.name + "." + ns + "~" + ns + ".svc.cluster.local";
    t->metrics = args.get_or("metrics", "") != "off";
    std::string sampling = args.get_or("trace-sampling", "");
    t->sampling_percent = mesh.tracing_sampling;
    if (!sampling.empty()) {
        size_t used = 0;
        try {
            t->sampling_percent = std::stod(sampling, &used);
        } catch (...) {
            used = 0;
        }
        if (used != sampling.size() || t->sampling_percent < 0 || t->sampling_percent > 100) {
            throw UsageError("--trace-sampling \"" + sampling + "\": a percentage from 0 to 100");
        }
    }
    std::string encoding = args.get_or("access-log-encoding", mesh.access_log_encoding);
    for (char& c : encoding) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (encoding == "JSON") t->access_log_encoding = AccessLogEncoding::json;
    else if (encoding != "TEXT") throw UsageError("--access-log-encoding \"" + encoding + "\": TEXT or JSON");
    std::string log_file = args.get_or("access-log", mesh.access_log_file);
    if (!log_file.empty()) t->access_log = std::make_shared<AccessLogWriter>(log_file);
    std::string zipkin = args.get_or("zipkin-address", mesh.zipkin_address);
    if (!zipkin.empty()) {
        size_t colon = zipkin.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == zipkin.size()) {
            throw UsageError("--zipkin-address \"" + zipkin + "\": expected HOST:PORT");
        }
        ZipkinOptions z;
        z.host = zipkin.substr(0, colon);
        z.port = zipkin.substr(colon + 1);
        t->zipkin = std::make_shared<ZipkinExporter>(z, log);
    }
    return t;
}

int run(const std::vector<std::string>& argv) {
    common::set_server_header("remora-proxy");
    Args args(argv,
              {"control", "token-file", "namespace", "service-account", "cert-ttl", "cert-chain", "key",
               "trust-bundle", "trust-domain", "registry", "config", "outbound", "inbound", "mtls-mode",
               "listen-outbound", "upstream", "upstream-identity", "listen-inbound", "app", "admin",
               "health", "agent", "concurrency", "drain-duration", "request-header-timeout", "idle-timeout",
               "stream-idle-timeout", "request-timeout",
               "connect-timeout", "protocol-detection-timeout", "mesh-config", "workload-name", "labels", "pod-ip", "metrics",
               "access-log", "access-log-encoding", "zipkin-address", "trace-sampling", "pod-name",
               "h2-upgrade-policy"},
              {"help", "exit-on-zero-active-connections"});
    if (args.has("help")) {
        std::cout << kUsage;
        return 0;
    }
    if (!args.positional().empty()) throw UsageError("unexpected argument " + args.positional().front());

    MeshConfig mesh;
    if (auto m = args.get("mesh-config")) {
        mesh = MeshConfig::load_file(*m);
        for (const std::string& note : mesh.notes) common::log_line("remora-proxy", *m + ": " + note);
    }
    auto cfg = std::make_shared<ProxyConfig>();
    cfg->trust_domain = args.get_or("trust-domain", mesh.trust_domain);
    cfg->ns = args.get_or("namespace", "default");
    std::string mode = args.get_or("mtls-mode", "STRICT");
    for (char& c : mode) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto parsed_mode = mtls_mode_of(mode);
    if (!parsed_mode) throw UsageError("--mtls-mode \"" + mode + "\": STRICT, PERMISSIVE or DISABLE");
    cfg->inbound_mode = *parsed_mode;
    const std::string upgrade = args.get_or("h2-upgrade-policy", mesh.h2_upgrade_policy.empty() ? "UPGRADE" : mesh.h2_upgrade_policy);
    if (upgrade != "UPGRADE" && upgrade != "DO_NOT_UPGRADE")
        throw UsageError("--h2-upgrade-policy \"" + upgrade + "\": UPGRADE or DO_NOT_UPGRADE");
    cfg->h2_upgrade_default = upgrade == "UPGRADE";

    IdentityOptions id;
    id.trust_bundle_file = args.require("trust-bundle");
    id.trust_domain = cfg->trust_domain;
    if (args.has("control")) {
        if (args.has("cert-chain") || args.has("key")) throw UsageError("--control and --cert-chain/--key exclude each other");
        std::string control = args.require("control");
        // Several replicas: "a:15012,b:15012"; the agents fail over between them.
        std::vector<certs::ControlAddress> controls;
        try {
            controls = certs::parse_control_addresses(control);
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("--control ") + e.what());
        }
        id.control_host = controls.front().host;
        id.control_port = controls.front().port;
        id.more_controls.assign(controls.begin() + 1, controls.end());
        id.token_file = args.require("token-file");
        id.expected_ns = args.get_or("namespace", "");
        id.expected_sa = args.get_or("service-account", "");
        if (auto t = args.get("cert-ttl")) id.ttl = std::chrono::seconds(common::parse_duration_seconds("cert-ttl", *t));
    } else {
        id.cert_chain_file = args.require("cert-chain");
        id.key_file = args.require("key");
    }

    std::vector<ListenerSpec> listeners;
    bool explicit_mode = args.has("listen-outbound") || args.has("listen-inbound");
    auto capture = [&](const char* flag, const char* fallback, ListenerKind kind) {
        std::string v = args.get_or(flag, explicit_mode ? "off" : fallback);
        if (v != "off") listeners.push_back({kind, common::parse_endpoint(flag, v)});
    };
    capture("outbound", "0.0.0.0:15001", ListenerKind::outbound_capture);
    capture("inbound", "0.0.0.0:15006", ListenerKind::inbound_capture);
    if (auto l = args.get("listen-outbound")) {
        listeners.push_back({ListenerKind::outbound_explicit, common::parse_endpoint("listen-outbound", *l)});
        UpstreamTarget t;
        t.cluster = "explicit-upstream";
        t.address = resolve_host_port("upstream", args.require("upstream"));
        t.mtls = true;
        if (auto want = args.get("upstream-identity")) {
            if (!certs::SpiffeId::parse(*want)) throw UsageError("--upstream-identity \"" + *want + "\" is not a SPIFFE ID");
            t.expected_identity = *want;
        }
        cfg->upstream = t.finalize();
    }
    if (auto l = args.get("listen-inbound")) {
        listeners.push_back({ListenerKind::inbound_explicit, common::parse_endpoint("listen-inbound", *l)});
        cfg->app = resolve_host_port("app", args.require("app"));
    }
    if (listeners.empty()) throw UsageError("no listener: every listener is off");
    auto secs = [&](const char* flag, std::chrono::seconds fallback) {
        auto v = args.get(flag);
        return v ? std::chrono::seconds(common::parse_duration_seconds(flag, *v)) : fallback;
    };
    cfg->limits.request_header_timeout = secs("request-header-timeout", cfg->limits.request_header_timeout);
    cfg->limits.idle_timeout = secs("idle-timeout", cfg->limits.idle_timeout);
    cfg->limits.connect_timeout = secs("connect-timeout", cfg->limits.connect_timeout);
    cfg->limits.tls_handshake_timeout = cfg->limits.connect_timeout;
    if (auto v = args.get("protocol-detection-timeout")) {
        const double s = std::stod(*v);
        if (!(s > 0) || s > 3600) throw UsageError("--protocol-detection-timeout must be seconds in (0, 3600]");
        cfg->limits.protocol_detection_timeout = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
    }
    {
        std::vector<std::pair<std::string, std::string>> inputs;
        if (auto r = args.get("registry")) inputs.emplace_back("--registry", *r);
        if (auto c = args.get("config")) inputs.emplace_back("--config", *c);
        if (!inputs.empty()) {
            cfg->routes = load_routes(inputs, args, *cfg, mesh);
            // Without --config the proxy keeps its historical STRICT default (a --registry proxy
            // was always strict unless told otherwise); --config follows Istio's PERMISSIVE.
            const MtlsMode fallback = args.has("config") ? MtlsMode::permissive : MtlsMode::strict;
            try {
                apply_inbound_policy(*cfg, cfg->routes->snapshot(), args.has("mtls-mode"), fallback);
            } catch (const std::invalid_argument& e) {
                throw std::runtime_error(inputs.back().first + " " + inputs.back().second + ": " + e.what());
            }
        }
    }
    Proxy proxy;
    auto log = [](const std::string& m) { common::log_line("remora-proxy", m); };
    proxy.identity = std::make_unique<IdentityAgent>(id, proxy.tls, [] { return std::chrono::system_clock::now(); },
                                                     log, std::random_device{}());
    proxy.identity->start();
    const bool subscribing = args.has("control") && !args.has("config") && !args.has("registry") && !explicit_mode;
    if (subscribing && !args.has("mesh-config")) {
        // The mesh's settings come from remora-control, as a sidecar's bootstrap comes from istiod.
        if (auto fetched = fetch_mesh_config(id, proxy.tls, log)) {
            mesh = std::move(*fetched);
            if (!args.has("trust-domain") && mesh.trust_domain != cfg->trust_domain) {
                log("the mesh's trustDomain is " + mesh.trust_domain + " but this proxy verifies peers in " +
                    cfg->trust_domain + "; give --trust-domain to change it");
            }
        }
    }
    const bool mesh_registry_only = mesh.outbound_traffic_policy == "REGISTRY_ONLY";
    // A Sidecar's outboundTrafficPolicy (carried in the snapshot) replaces the mesh's mode.
    auto registry_only_for = [mesh_registry_only](const snapshot::Snapshot& snap) {
        return snap.outbound_traffic_policy.empty() ? mesh_registry_only
                                                    : snap.outbound_traffic_policy == "REGISTRY_ONLY";
    };
    cfg->registry_only = cfg->routes ? registry_only_for(cfg->routes->snapshot()) : mesh_registry_only;
    // The HTTP connection manager's stream timeouts: a flag, else the MeshConfig, else Envoy's defaults.
    if (mesh.stream_idle_seconds) cfg->limits.stream_idle_timeout = std::chrono::seconds(*mesh.stream_idle_seconds);
    if (mesh.request_timeout_seconds) cfg->limits.request_timeout = std::chrono::seconds(*mesh.request_timeout_seconds);
    cfg->limits.stream_idle_timeout = secs("stream-idle-timeout", cfg->limits.stream_idle_timeout);
    if (auto v = args.get("request-timeout")) {
        cfg->limits.request_timeout = *v == "0" || *v == "0s"
                                          ? std::chrono::seconds(0)
                                          : std::chrono::seconds(common::parse_duration_seconds("request-timeout", *v));
    }
    std::string conc = args.get_or("concurrency", mesh.concurrency && *mesh.concurrency > 0
                                                      ? std::to_string(*mesh.concurrency) : "2");
    int concurrency = 0;
    try {
        concurrency = std::stoi(conc);
    } catch (...) {
    }
    if (concurrency < 1 || concurrency > 64 || std::to_string(concurrency) != conc) {
        throw UsageError("--concurrency \"" + conc + "\": a number from 1 to 64");
    }

    proxy.drain_duration = std::chrono::seconds(common::parse_duration_seconds(
        "drain-duration", args.get_or("drain-duration", std::to_string(mesh.termination_drain_seconds.value_or(5)) + "s")));
    const char* ezac = std::getenv("EXIT_ON_ZERO_ACTIVE_CONNECTIONS");
    proxy.exit_on_zero_active = args.has("exit-on-zero-active-connections") || (ezac && std::string(ezac) == "true");
    proxy.telemetry = make_telemetry(args, mesh, cfg->ns, log);
    proxy.listeners = listeners;
    proxy.config.publish(cfg);
    std::random_device seeds;
    for (int i = 0; i < concurrency; ++i) {
        uint64_t seed = (static_cast<uint64_t>(seeds()) << 32) | seeds();
        proxy.workers.push_back(std::make_unique<Worker>(proxy.tls, proxy.config, proxy.draining, log,
                                                         proxy.telemetry, seed));
        proxy.workers.back()->bind(listeners);
    }
    proxy.admin = std::make_unique<common::HttpServer>(
        proxy.io, common::parse_endpoint("admin", args.get_or("admin", "127.0.0.1:15000")),
        [&proxy](const common::HttpRequest& r, const common::PeerInfo&) { return proxy.admin_handler(r); },
        nullptr, common::HttpLimits{}, log);
    proxy.health = std::make_unique<common::HttpServer>(
        proxy.io, common::parse_endpoint("health", args.get_or("health", "0.0.0.0:15021")),
        [&proxy](const common::HttpRequest& r, const common::PeerInfo&) {
            if (r.target() != "/healthz/ready") return common::json_response(404, R"({"error":"try /healthz/ready"})", r.version());
            bool ok = proxy.ready() && !proxy.draining.load();
            return common::json_response(ok ? 200 : 503, ok ? R"({"status":"ready"})" : R"({"status":"not ready"})", r.version());
        },
        nullptr, common::HttpLimits{}, log);
    // Kubelet's app probes, which the injector rewrote to go through this port.
    const char* probers_env = std::getenv("ISTIO_KUBE_APP_PROBERS");
    auto app_probers = std::make_shared<const remora::proxy::agent::AppProbers>(
        remora::proxy::agent::AppProbers::parse(probers_env ? probers_env : ""));
    if (!app_probers->empty()) remora::proxy::agent::serve_app_probes(*proxy.health, app_probers);
    if (auto at = args.get("agent"); at && *at != "off") {
        remora::proxy::agent::StatusPortActions actions{
            [&proxy] { return proxy.ready() && !proxy.draining.load(); },
            [&proxy] {
                common::log_line("remora-proxy", "POST /quitquitquit on the status port");
                asio::post(proxy.io, [&proxy] { proxy.start_drain(true, false); });
            }};
        proxy.agent = std::make_unique<common::HttpServer>(
            proxy.io, common::parse_endpoint("agent", *at),
            [actions](const common::HttpRequest& r, const common::PeerInfo& peer) {
                return remora::proxy::agent::status_port_answer(r, peer, actions);
            },
            nullptr, common::HttpLimits{}, log);
    }

    std::string metrics_at = args.get_or("metrics", "0.0.0.0:15090");
    if (metrics_at != "off") {
        proxy.metrics = std::make_unique<common::HttpServer>(
            proxy.io, common::parse_endpoint("metrics", metrics_at),
            [&proxy](const common::HttpRequest& r, const common::PeerInfo&) {
                std::string_view target = r.target();
                if (target.substr(0, target.find('?')) != "/stats/prometheus") {
                    auto res = common::json_response(404, "try /stats/prometheus\n", r.version());
                    res.set(http::field::content_type, "text/plain");
                    return res;
                }
                auto res = common::json_response(200, proxy.prometheus(), r.version());
                res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
                return res;
            },
            nullptr, common::HttpLimits{}, log);
    }
    if (subscribing) {
        SubscriptionOptions so;
        so.control_host = id.control_host;
        so.control_port = id.control_port;
        so.more_controls = id.more_controls;
        so.trust_domain = cfg->trust_domain;
        so.pod_name = args.get_or("pod-name", "");
        so.workload_name = args.get_or("workload-name", "");
        so.pod_ip = args.get_or("pod-ip", "");
        so.proxy_version = "remora-proxy";
        so.labels = proxy.telemetry->self.labels;
        bool mode_flag = args.has("mtls-mode");
        proxy.subscriber = std::make_unique<ConfigSubscriber>(
            so, proxy.tls,
            [&proxy, mode_flag, registry_only_for](snapshot::Snapshot snap, const std::string&) -> std::string {
                auto current = proxy.config.current();
                auto next = std::make_shared<ProxyConfig>(*current);
                try {
                    // The new table keeps the proxy's upstream state (ejections, breaker counts).
                    next->routes = std::make_shared<const RouteTable>(
                        std::move(snap), current->routes ? current->routes->states() : nullptr);
                    apply_inbound_policy(*next, next->routes->snapshot(), mode_flag);
                    next->registry_only = registry_only_for(next->routes->snapshot());
                } catch (const std::exception& e) {
                    return e.what();  // NACK: the last good configuration stays
                }
                proxy.config.publish(std::move(next));
                proxy.snapshot_applied = true;
                return "";
            },
            log, std::random_device{}());
    }
    if (proxy.subscriber) proxy.subscriber->start();
    for (auto& w : proxy.workers) w->start();
    proxy.admin->start();
    proxy.health->start();
    if (proxy.agent) proxy.agent->start();
    if (proxy.metrics) proxy.metrics->start();
    std::string ls;
    for (const ListenerSpec& l : listeners) ls += std::string(" ") + listener_name(l.kind) + "=" + common::format_endpoint(l.address);
    common::log_line("remora-proxy", "started: concurrency=" + std::to_string(concurrency) + ls +
                                         " admin=" + common::format_endpoint(proxy.admin->local_endpoint()) +
                                         " health=" + common::format_endpoint(proxy.health->local_endpoint()) +
                                         (proxy.agent ? " agent=" + common::format_endpoint(proxy.agent->local_endpoint()) : "") +
                                         (proxy.metrics ? " metrics=" + common::format_endpoint(proxy.metrics->local_endpoint()) : ""));

    asio::signal_set signals(proxy.io, SIGINT, SIGTERM);
    // SIGTERM (Kubernetes deleting the pod): graceful drain, then exit. SIGINT (Ctrl-C): quick.
    // A second signal turns a graceful drain quick.
    std::function<void()> wait_signal = [&] {
        signals.async_wait([&](boost::system::error_code ec, int sig) {
            if (ec) return;
            common::log_line("remora-proxy", std::string("signal ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
            proxy.start_drain(true, sig == SIGTERM && !proxy.draining.load());
            wait_signal();
        });
    };
    wait_signal();
    proxy.io.run();
    if (proxy.subscriber) proxy.subscriber->stop();
    for (auto& w : proxy.workers) w->join();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef REMORA_MIMALLOC
    // A reference keeps libmimalloc linked (--as-needed would drop it); once loaded it is malloc.
    (void)mi_version();
#endif
    std::signal(SIGPIPE, SIG_IGN);
    return remora::common::run_tool("remora-proxy", argc, argv, run);
}
