// remora-control: the mesh's certificate authority and config store (TLS API on 15012,
// monitoring on 15014).
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <charconv>
#include <filesystem>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <thread>

#include "certs/ca_client.h"
#include "control/ca/ca_service.h"
#include "control/ca/state_dir.h"
#include "control/kube/kube_source.h"
#include "control/etcd/etcd_state.h"
#include "control/kube/webhook.h"
#include "control/server/config_api.h"
#include "control/server/mesh_graph.h"
#include "control/server/mesh_page.h"
#include "control/server/distribution.h"
#include "control/store/config_dir.h"
#include "control/store/store.h"
#include "proxy/meshconfig/mesh_config.h"
#include "common/args.h"
#include "common/log.h"
#include "common/http_server.h"

namespace {

using namespace remora;
using namespace remora::control;
using namespace remora::common;
namespace asio = boost::asio;
namespace http = boost::beast::http;

constexpr const char* kUsage = R"(usage: remora-control [flags]

The Remora control plane: the mesh's certificate authority and its store of Istio config.

  --state-dir DIR        root, keys, JWKS, admin token and config store (default ./remora-state)
  --listen ADDR:PORT     TLS API: POST /v1/certificates, /v1/config, /v1/meshconfig
                         (default 0.0.0.0:15012)
  --monitoring ADDR:PORT /healthz, /metrics, and the live mesh page /mesh (the service graph
                         with req/s, errors, p99, mTLS from the proxies' metrics, the proxies, a
                         workload's routes and policies, explain; /mesh/graph.json), plaintext
                         (default 0.0.0.0:15014)
  --trust-domain TD      SPIFFE trust domain (default cluster.local)
  --ca-cert FILE         sign with this CA certificate (followed by its chain up to the root)
  --ca-key FILE          the key of --ca-cert
  --root-cert FILE       the root of --ca-cert, when --ca-cert does not end with it
  --jwks FILE            also trust bootstrap tokens signed by these keys (repeatable)
  --max-ttl DURATION     longest certificate lifetime a caller may ask for (default 90d)
  --threads N            I/O threads (default 2)
  --config-dir DIR       also serve the Istio YAML in DIR (e.g. a mounted ConfigMap), reloaded
                         on every change; its resources are read-only over the API
  --kube                 also take Services, EndpointSlices (ready endpoints), Pods and the Istio
                         resources from the Kubernetes API server, listed and watched: in-cluster
                         with the service account (KUBERNETES_SERVICE_HOST/PORT and
                         /var/run/secrets/kubernetes.io/serviceaccount), or with --kubeconfig;
                         Services' endpoints then come from EndpointSlices, not registrations;
                         its resources are read-only over the API
  --kubeconfig FILE      with --kube: the API server, CA and credentials from this kubeconfig
  --kube-context NAME    with --kubeconfig: this context instead of the current-context
  --mesh-config FILE     Istio MeshConfig (the istio ConfigMap's `mesh` key), served as
                         GET /v1/meshconfig; its trustDomain applies unless --trust-domain is given
  --debounce-after D     push a change to proxies once no other came for D (Istio's
                         PILOT_DEBOUNCE_AFTER; default 100ms as there; 0: push at once)
  --debounce-max D       ... but at most D after the first change (PILOT_DEBOUNCE_MAX; default 10s)
  --mesh-scrape-interval D
                         how often the mesh page reads every registered proxy's metrics at its
                         pod address, port 15090 (default 2s; 0: never, the page then shows
                         proxies but no traffic)

Shared state for several replicas (each serves CA and distribution; any answers any proxy):
  --store dir|etcd       where the config, the CA and the proxy registry live: the state dir
                         (default), or etcd v3, shared by every replica given the same endpoints
  --etcd-endpoints LIST  etcd members, HOST:PORT or http(s)://HOST:PORT, comma-separated
  --etcd-prefix P        the keys' prefix (default /remora)
  --etcd-ca FILE         TLS to etcd: the CA of its serving certificates (https:// endpoints)
  --etcd-cert FILE       TLS to etcd: this replica's client certificate (with --etcd-key)
  --etcd-key FILE
  --ca-key-encryption-key-file FILE
                         with --store etcd (required): the AES-256 key (64 hex digits, e.g.
                         openssl rand -hex 32) that seals the CA's signing material in etcd;
                         give every replica the same file; it is never written to etcd
  --registration-grace DURATION
                         how long a proxy stays registered (an endpoint of its services) after
                         its last answer was written with no new poll from it (default 3s)
  --registration-ttl DURATION
                         with --store etcd: the lease that holds this replica's proxies'
                         registrations; they expire this long after the replica dies (default 5s)
  --advertise-address HOST:PORT
                         with --store etcd: where remoractl reaches this replica's config API,
                         published for proxy-status through the other replicas (default: the
                         --listen address, or $POD_IP with its port when it listens on all)

Sidecar injector (a Kubernetes mutating admission webhook, POST /inject, AdmissionReview v1):
  --webhook ADDR:PORT    serve it here over TLS, with this control plane's certificate (its DNS
                         names include remora-control.remora-system.svc); off by default
  --inject-image IMG     the sidecar image (default localhost/remora-proxy:0.1.0)
  --inject-control-address HOST:PORT
                         where injected proxies find the control plane
                         (default remora-control.remora-system.svc:15012)
  --inject-native-sidecar  inject the proxy as a native sidecar (Kubernetes >= 1.28)
  --inject-no-hold       do not hold the app's start until its proxy is ready
)";

const std::vector<std::string> kControlDns = {"localhost", "remora-control.remora-system.svc"};

// Issues the control plane's own SVID and installs a fresh TLS context for new connections.
std::chrono::seconds renew_own_certificate(CertificateAuthority& ca, TlsContextSlot& slot) {
    const auto ttl = std::chrono::hours(24);
    certs::PrivateKey key = certs::PrivateKey::generate_p256();
    auto id = certs::SpiffeId::for_service_account(ca.config().trust_domain, "remora-system",
                                                   "remora-control")
                  .value();
    certs::Certificate leaf = ca.issue_own(key.public_key(), id, ttl, kControlDns);
    slot.set(make_server_tls_context(certs::chain_for(ca.signer(), leaf), key));
    log_line("remora-control", "serving with certificate serial=" + leaf.serial_hex() +
                                   " identity=" + id.str() +
                                   " not_after=" + certs::format_time(leaf.not_after()));
    auto life = std::chrono::duration_cast<std::chrono::seconds>(leaf.not_after() -
                                                                 std::chrono::system_clock::now());
    return std::max(std::chrono::seconds(60), life / 2);
}

void schedule_renewal(asio::steady_timer& timer, std::chrono::seconds after,
                      CertificateAuthority& ca, TlsContextSlot& slot) {
    timer.expires_after(after);
    timer.async_wait([&timer, &ca, &slot](boost::system::error_code ec) {
        if (ec) return;
        std::chrono::seconds next{60};
        try {
            next = renew_own_certificate(ca, slot);
        } catch (const std::exception& e) {
            log_line("remora-control", std::string("renewing own certificate failed: ") + e.what());
        }
        schedule_renewal(timer, next, ca, slot);
    });
}

HttpResponse api_handler(CertificateAuthority& ca, server::ConfigApi& config_api,
                         server::Distribution& distribution, const HttpRequest& req,
                         const PeerInfo& peer) {
    if (server::ConfigApi::serves(req.target())) return config_api.handle(req, peer);
    if (server::Distribution::serves(req.target())) return distribution.handle(req, peer);
    if (req.target() != "/v1/certificates") {
        return json_response(404,
                             R"({"error":"not found: the API is POST /v1/certificates, )"
                             R"(/v1/config, /v1/config/version, /v1/meshconfig, /v1/proxies"})",
                             req.version());
    }
    if (req.method() != http::verb::post) {
        HttpResponse res =
            json_response(405, R"({"error":"method not allowed: use POST"})", req.version());
        res.set(http::field::allow, "POST");
        return res;
    }
    Caller caller;
    if (auto it = req.find(http::field::authorization); it != req.end()) {
        caller.authorization = std::string(it->value());
    }
    caller.peer_chain = peer.peer_chain;
    caller.remote = peer.remote;
    CaResponse r = ca.sign(caller, req.body());
    return json_response(static_cast<unsigned>(r.status), std::move(r.body), req.version());
}

// Istio's injector counters (sidecar_injection_*), for the same dashboards and alerts.
struct InjectionStats {
    std::atomic<uint64_t> requests{0}, success{0}, skip{0}, failure{0};
    std::string prometheus() const {
        std::string out;
        auto counter = [&](const char* name, const char* help, uint64_t v) {
            out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name +
                   " counter\n" + name + " " + std::to_string(v) + "\n";
        };
        counter("sidecar_injection_requests_total", "Total number of injection requests.",
                requests.load());
        counter("sidecar_injection_success_total", "Total number of successful injections.",
                success.load());
        counter("sidecar_injection_skip_total", "Total number of skipped injections.",
                skip.load());
        counter("sidecar_injection_failure_total",
                "Total number of failed injection requests (admitted without a sidecar).",
                failure.load());
        return out;
    }
};

HttpResponse webhook_handler(const kube::InjectOptions& options, InjectionStats& stats,
                             const HttpRequest& req) {
    if (req.target() != "/inject") {
        return json_response(404, R"({"error":"not found: POST /inject"})", req.version());
    }
    if (req.method() != http::verb::post) {
        HttpResponse res =
            json_response(405, R"({"error":"method not allowed: use POST"})", req.version());
        res.set(http::field::allow, "POST");
        return res;
    }
    ++stats.requests;
    kube::WebhookAnswer a = kube::review_admission(req.body(), options);
    if (a.malformed) {
        ++stats.failure;
        log_line("remora-control", "injector: malformed AdmissionReview admitted unchanged");
    } else if (a.outcome == kube::InjectOutcome::injected) {
        ++stats.success;
    } else {
        ++stats.skip;
    }
    return json_response(200, std::move(a.body), req.version());
}

HttpResponse monitoring_handler(CertificateAuthority& ca, const server::Distribution& distribution,
                                server::MeshPage& mesh_page, const InjectionStats& injection,
                                const kube::KubeSource* kube_source, const HttpRequest& req) {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        return json_response(405, R"({"error":"method not allowed: use GET"})", req.version());
    }
    if (req.target() == "/healthz" || req.target() == "/ready") {
        return json_response(200, R"({"status":"ok"})", req.version());
    }
    if (req.target() == "/metrics") {
        HttpResponse res =
            json_response(200, ca.metrics().prometheus(ca.signer().root()) + distribution.prometheus() +
                              injection.prometheus() +
                              (kube_source ? kube_source->prometheus() : std::string()),
                          req.version());
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        return res;
    }
    if (server::MeshPage::serves(req.target())) return mesh_page.handle(req);
    return json_response(404, R"({"error":"not found: try /healthz, /metrics, /mesh or /mesh/graph.json"})",
                         req.version());
}

// --debounce-after / --debounce-max / --mesh-scrape-interval: a Go duration ("100ms", "10s"), 0 to 1 h.
std::chrono::milliseconds debounce_flag(const Args& args, const char* flag,
                                        std::chrono::milliseconds fallback) {
    auto text = args.get(flag);
    if (!text) return fallback;
    auto d = *text == "0" ? std::optional<model::Duration>(model::Duration{0}) : model::parse_duration(*text);
    if (!d || *d < model::Duration{0} || *d > std::chrono::hours(1)) {
        throw UsageError(std::string("--") + flag + " \"" + *text + "\": expected a duration such as 100ms or 10s, at most 1h");
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

int run(const std::vector<std::string>& argv) {
    Args args(argv,
              {"state-dir", "listen", "monitoring", "trust-domain", "ca-cert", "ca-key",
               "root-cert", "jwks", "max-ttl", "threads", "config-dir", "mesh-config", "webhook",
               "inject-image", "inject-control-address", "kubeconfig", "kube-context", "debounce-after",
               "debounce-max", "mesh-scrape-interval", "store", "etcd-endpoints", "etcd-prefix", "etcd-ca", "etcd-cert", "etcd-key",
               "ca-key-encryption-key-file", "registration-ttl", "registration-grace", "advertise-address"},
              {"help", "inject-native-sidecar", "inject-no-hold", "kube"});
    if (args.has("help")) {
        std::cout << kUsage;
        return 0;
    }
    if (!args.positional().empty())
        throw UsageError("unexpected argument " + args.positional().front());
    std::string state_dir = args.get_or("state-dir", "./remora-state");
    auto listen = parse_endpoint("listen", args.get_or("listen", "0.0.0.0:15012"));
    auto monitoring = parse_endpoint("monitoring", args.get_or("monitoring", "0.0.0.0:15014"));
    std::optional<asio::ip::tcp::endpoint> webhook;
    if (auto w = args.get("webhook")) webhook = parse_endpoint("webhook", *w);
    kube::InjectOptions inject_options;
    inject_options.proxy_image = args.get_or("inject-image", inject_options.proxy_image);
    inject_options.control_address =
        args.get_or("inject-control-address", inject_options.control_address);
    inject_options.native_sidecar = args.has("inject-native-sidecar");
    inject_options.hold_application_until_proxy_starts = !args.has("inject-no-hold");
    InjectionStats injection_stats;
    // MeshConfig first: a bad file stops the start with its file:line:col, before anything binds.
    proxy::MeshConfig mesh;
    if (auto file = args.get("mesh-config")) {
        mesh = proxy::MeshConfig::load_file(*file);
        log_line("remora-control", "mesh config from " + *file);
        for (const std::string& note : mesh.notes)
            log_line("remora-control", "mesh config: " + note);
    }
    CaConfig config;
    config.trust_domain = args.get_or("trust-domain", mesh.trust_domain);
    mesh.trust_domain = config.trust_domain;
    inject_options.trust_domain = config.trust_domain;
    std::optional<std::string> config_dir = args.get("config-dir");
    if (config_dir && !std::filesystem::is_directory(*config_dir)) {
        throw UsageError("--config-dir " + *config_dir + ": not a directory");
    }
    // --kube's API server and credentials, read before anything binds: a bad kubeconfig stops the
    // start naming file and field.
    std::optional<kube::ApiServer> kube_server;
    if (args.has("kube")) {
        if (auto file = args.get("kubeconfig")) {
            kube_server = kube::load_kubeconfig(*file, args.get_or("kube-context", ""));
        } else {
            kube_server = kube::in_cluster(kube::kServiceAccountDir, [](const std::string& n) {
                const char* v = std::getenv(n.c_str());
                return v ? std::optional<std::string>(v) : std::nullopt;
            });
        }
    } else if (args.has("kubeconfig") || args.has("kube-context")) {
        throw UsageError("--kubeconfig and --kube-context go with --kube");
    }
    config.max_ttl =
        std::chrono::seconds(parse_duration_seconds("max-ttl", args.get_or("max-ttl", "90d")));
    std::string threads_text = args.get_or("threads", "2");
    int threads = 0;
    auto [end, tec] =
        std::from_chars(threads_text.data(), threads_text.data() + threads_text.size(), threads);
    if (tec != std::errc() || end != threads_text.data() + threads_text.size() || threads < 1 ||
        threads > 64) {
        throw UsageError("--threads \"" + threads_text + "\": must be a number from 1 to 64");
    }

    // --store etcd: everything checked before anything binds.
    const std::string store_kind = args.get_or("store", "dir");
    if (store_kind != "dir" && store_kind != "etcd") {
        throw UsageError("--store \"" + store_kind + "\": expected dir or etcd");
    }
    std::unique_ptr<etcd::EtcdClient> etcd_client;
    std::optional<etcd::SecretBox> ca_box;
    const std::string etcd_prefix = args.get_or("etcd-prefix", "/remora");
    std::chrono::seconds registration_ttl{5};
    std::string advertise;  // this replica's config API for the others' proxy-status
    const std::chrono::seconds registration_grace(
        parse_duration_seconds("registration-grace", args.get_or("registration-grace", "3s")));
    if (registration_grace.count() < 1) throw UsageError("--registration-grace: at least 1s");
    if (store_kind == "etcd") {
        etcd::EtcdOptions eo;
        try {
            eo.endpoints = etcd::parse_endpoints(args.require("etcd-endpoints"), args.has("etcd-ca"));
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("--etcd-endpoints: ") + e.what());
        }
        eo.ca_file = args.get_or("etcd-ca", "");
        eo.cert_file = args.get_or("etcd-cert", "");
        eo.key_file = args.get_or("etcd-key", "");
        if (eo.cert_file.empty() != eo.key_file.empty())
            throw UsageError("--etcd-cert and --etcd-key go together");
        if (etcd_prefix.empty() || etcd_prefix.front() != '/')
            throw UsageError("--etcd-prefix \"" + etcd_prefix + "\": must start with /");
        ca_box.emplace(etcd::SecretBox::from_file(args.require("ca-key-encryption-key-file")));
        registration_ttl = std::chrono::seconds(
            parse_duration_seconds("registration-ttl", args.get_or("registration-ttl", "5s")));
        if (registration_ttl.count() < 2) throw UsageError("--registration-ttl: at least 2s");
        if (auto a = args.get("advertise-address")) {
            try {
                if (certs::parse_control_addresses(*a).size() != 1) {
                    throw std::invalid_argument("\"" + *a + "\": expected one HOST:PORT");
                }
            } catch (const std::invalid_argument& e) {
                throw UsageError(std::string("--advertise-address: ") + e.what());
            }
            advertise = *a;
        } else if (!listen.address().is_unspecified()) {
            advertise = format_endpoint(listen);
        } else if (const char* pod_ip = std::getenv("POD_IP"); pod_ip && *pod_ip) {
            advertise = std::string(pod_ip).find(':') != std::string::npos
                            ? "[" + std::string(pod_ip) + "]:" + std::to_string(listen.port())
                            : std::string(pod_ip) + ":" + std::to_string(listen.port());
        }
        etcd_client = std::make_unique<etcd::EtcdClient>(std::move(eo));
    } else {
        for (const char* flag : {"etcd-endpoints", "etcd-ca", "etcd-cert", "etcd-key",
                                 "ca-key-encryption-key-file", "registration-ttl", "etcd-prefix",
                                 "advertise-address"}) {
            if (args.has(flag)) throw UsageError(std::string("--") + flag + " needs --store etcd");
        }
    }

    std::optional<OperatorCa> operator_ca;
    if (args.has("ca-cert") || args.has("ca-key")) {
        operator_ca = OperatorCa{args.require("ca-cert"), args.require("ca-key"),
                                 args.get_or("root-cert", "")};
    } else if (args.has("root-cert")) {
        throw UsageError("--root-cert needs --ca-cert and --ca-key");
    }

    // Bind both ports before touching the state dir: a busy port must not leave a new CA behind.
    asio::io_context io(threads);
    std::optional<CertificateAuthority> ca;  // set below, before the servers start
    std::optional<store::ConfigStore> config_store;
    std::optional<server::ConfigApi> config_api;
    std::optional<registry::ProxyRegistry> proxy_registry;
    std::optional<server::Distribution> distribution;
    std::optional<server::MeshGraph> mesh_graph;
    std::optional<server::MeshPage> mesh_page;
    std::optional<kube::KubeSource> kube_source;
    TlsContextSlot slot;
    LogFn log = [](const std::string& m) { log_line("remora-control", m); };
    auto bind = [&](const char* flag, const asio::ip::tcp::endpoint& ep, HttpHandler handler,
                    const TlsContextSlot* tls) {
        HttpLimits limits;
        // Istio YAML is bigger than a CSR: up to 4 MiB per request (a ConfigMap holds 1 MiB).
        // So is a pod in an AdmissionReview.
        if (tls) {
            limits.body_bytes_by_prefix = {{"/v1/config", 4 * 1024 * 1024},
                                           {"/inject", 4 * 1024 * 1024}};
        }
        try {
            return std::make_unique<HttpServer>(io, ep, std::move(handler), tls, limits, log);
        } catch (const std::runtime_error& e) {
            throw std::runtime_error(std::string("--") + flag + ": " + e.what());
        }
    };
    auto api = bind(
        "listen", listen,
        [&ca, &config_api, &distribution](const HttpRequest& r, const PeerInfo& p) {
            return api_handler(*ca, *config_api, *distribution, r, p);
        },
        &slot);
    auto mon = bind(
        "monitoring", monitoring,
        [&ca, &distribution, &mesh_page, &injection_stats, &kube_source](const HttpRequest& r,
                                                                          const PeerInfo&) {
            return monitoring_handler(*ca, *distribution, *mesh_page, injection_stats,
                                      kube_source ? &*kube_source : nullptr, r);
        },
        nullptr);
    std::unique_ptr<HttpServer> hook;
    if (webhook) {
        hook = bind(
            "webhook", *webhook,
            [&inject_options, &injection_stats](const HttpRequest& r, const PeerInfo&) {
                return webhook_handler(inject_options, injection_stats, r);
            },
            &slot);
    }

    std::optional<std::string> shared_admin_token;
    std::optional<CaState> loaded_state;
    if (etcd_client) {
        etcd::SharedCa shared = etcd::load_or_create_shared_ca(
            *etcd_client, etcd_prefix, *ca_box, state_dir, config.trust_domain, operator_ca,
            std::chrono::system_clock::now(), std::chrono::seconds(60), log);
        shared_admin_token = std::move(shared.admin_token);
        loaded_state.emplace(std::move(shared.state));
    } else {
        loaded_state.emplace(load_or_create_ca(state_dir, config.trust_domain, operator_ca,
                                               std::chrono::system_clock::now()));
    }
    CaState& state = *loaded_state;
    log_line("remora-control",
             std::string(state.created ? "created" : "loaded") + " CA " +
                 (etcd_client ? "in etcd " + etcd_prefix + "/ca (sealed)" : "in " + state_dir) +
                 ": signer=\"" + state.signer.cert.subject() +
                 "\" root serial=" + state.signer.root().serial_hex() +
                 " root not_after=" + certs::format_time(state.signer.root().not_after()));

    certs::Jwks trusted = certs::Jwks::parse(certs::jwks_json(state.jwt_key)).value();
    for (const std::string& file : args.all("jwks")) {
        certs::Jwks extra = certs::Jwks::load_file(file);
        log_line("remora-control",
                 "trusting " + std::to_string(extra.size()) + " token key(s) from " + file);
        trusted.merge(extra);
    }

    ca.emplace(
        std::move(state.signer), std::move(trusted), config,
        [] { return std::chrono::system_clock::now(); }, log);

    if (etcd_client) {
        config_store.emplace(
            std::make_unique<etcd::EtcdConfigBackend>(*etcd_client, etcd_prefix, log),
            [] { return std::chrono::system_clock::now(); }, log);
    } else {
        config_store.emplace(
            std::filesystem::path(state_dir) / kConfigStoreDir,
            [] { return std::chrono::system_clock::now(); }, log);
    }
    server::ApiAuth auth;
    auth.admin_token =
        shared_admin_token ? *shared_admin_token : load_or_create_admin_token(state_dir);
    auth.bundle = ca->bundle();
    auth.trust_domain = config.trust_domain;
    proxy_registry.emplace([] { return std::chrono::steady_clock::now(); },
                           [] { return std::chrono::system_clock::now(); },
                           registration_grace);
    server::DistributionOptions dist_options;
    dist_options.debounce_after = debounce_flag(args, "debounce-after", dist_options.debounce_after);
    dist_options.debounce_max = debounce_flag(args, "debounce-max", dist_options.debounce_max);
    dist_options.translate.trust_domain = config.trust_domain;
    dist_options.translate.root_namespace = mesh.root_namespace;
    std::unique_ptr<etcd::RegistrySync> registry_sync;
    if (etcd_client) {
        registry_sync = std::make_unique<etcd::RegistrySync>(
            *etcd_client, etcd_prefix, *proxy_registry, registration_ttl, log, advertise);
        dist_options.replica_id = registry_sync->replica_id();
        dist_options.peers = [sync = registry_sync.get()] {
            std::vector<std::pair<std::string, std::string>> out;
            for (const auto& p : sync->peers()) out.emplace_back(p.id, p.address);
            return out;
        };
    }
    distribution.emplace(io, *config_store, *proxy_registry, auth, dist_options, log);
    const auto scrape_interval =
        debounce_flag(args, "mesh-scrape-interval", std::chrono::milliseconds(2000));
    mesh_graph.emplace(*proxy_registry, scrape_interval);
    mesh_page.emplace(*proxy_registry, *distribution, *mesh_graph, config.trust_domain);
    config_api.emplace(*config_store, std::move(auth), mesh, log);
    std::optional<store::ConfigDirWatcher> watcher;
    if (config_dir) {
        watcher.emplace(*config_dir, *config_store, log);
        if (!watcher->start()) {
            log_line("remora-control", "--config-dir " + *config_dir +
                                           ": not loaded (see above); watching it for a valid state");
        }
    }
    if (kube_server) {
        proxy_registry->set_endpoints_from_registrations(false);
        kube_source.emplace(std::move(*kube_server), *config_store, log);
        kube_source->start();
    }
    asio::steady_timer renew_timer(io);
    schedule_renewal(renew_timer, renew_own_certificate(*ca, slot), *ca, slot);

    api->defer(server::Distribution::kSubscribePath,
               [&distribution](const HttpRequest& r, const PeerInfo& p,
                               std::shared_ptr<common::Responder> responder) {
                   distribution->subscribe(r, p, std::move(responder));
               });
    distribution->start();
    if (registry_sync) registry_sync->start();
    if (scrape_interval.count() > 0) mesh_graph->start();
    api->start();
    mon->start();
    if (hook) {
        hook->start();
        log_line("remora-control", "serving the sidecar injector on " +
                                       format_endpoint(hook->local_endpoint()) + " (TLS, /inject)");
    }
    log_line("remora-control", "serving CA and config API on " +
                                   format_endpoint(api->local_endpoint()) +
                                   " (TLS), monitoring on " +
                                   format_endpoint(mon->local_endpoint()) + ", trust domain " +
                                   config.trust_domain);

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int sig) {
        log_line("remora-control", "signal " + std::to_string(sig) + ": shutting down");
        api->stop();
        mon->stop();
        if (hook) hook->stop();
        distribution->stop();
        if (registry_sync) registry_sync->stop();
        mesh_graph->stop();
        renew_timer.cancel();
        io.stop();
        if (watcher) watcher->stop();
        if (kube_source) kube_source->stop();
    });

    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i)
        pool.emplace_back([&io] { io.run(); });
    io.run();
    for (std::thread& t : pool)
        t.join();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    return remora::common::run_tool("remora-control", argc, argv, run);
}
