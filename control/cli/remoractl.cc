// remoractl: the command-line tool for operating a Remora mesh (in the spirit of istioctl).
#include <filesystem>
#include <iostream>

#include "certs/jwt.h"
#include "certs/keys.h"
#include "certs/verifier.h"
#include "control/ca/state_dir.h"
#include "control/cli/analyze_command.h"
#include "control/cli/config_commands.h"
#include "control/cli/explain_command.h"
#include "control/cli/kube_commands.h"
#include "control/cli/trace.h"
#include "certs/ca_client.h"
#include "common/args.h"
#include "common/files.h"

namespace {

using namespace remora;
using namespace remora::control;
using namespace remora::common;
namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usage: remoractl <command> [flags]

Commands:
  token create --namespace NS --service-account SA [--ttl 1h] [--state-dir DIR]
               [--audience remora-ca]
      Print a bootstrap token (JWT, ES256) signed with the control plane's key.
  ca root [--state-dir DIR]
      Print the mesh's root certificate (PEM).
  cert request --control HOST:PORT --trust-bundle FILE --out DIR
               (--token-file FILE | --cert-dir DIR) [--ttl 1h] [--trust-domain TD]
      Generate a key and CSR, ask the CA for a certificate (first time with a bootstrap token,
      later over mTLS with the current certificate in --cert-dir), verify what comes back, and
      write key.pem (0600), cert-chain.pem and root-cert.pem to --out.

  analyze [-o log|json|yaml] [--failure-threshold L] [--output-threshold L]
          [--suppress CODE=RESOURCE]... [-A | -n NS] [--meshConfigFile FILE]
          [--analyzers NAME,...] [--no-remora-warnings] FILE|DIR...   (-L lists analyzers)
      Check Istio YAML as istioctl analyze does: schema validation (IST0106), unknown hosts,
      ports and subsets (IST0101, IST0112), conflicting mesh VirtualServices (IST0109), subsets
      that select no workload (IST0173), DestinationRules for unknown hosts (IST0174), TLS
      without caCertificates (IST0128, IST0129), ServiceEntries needing addresses (IST0134);
      then the valid Istio features remora does not implement. Exit 79 when a message at or
      above --failure-threshold (Error) is found.

  apply -f FILE|DIR [-f ...]      Create or replace the resources in the control plane's store
                                 (as kubectl apply); refused with analyze's messages if invalid.
  get KIND [NAME] [-n NS | -A] [-o yaml|json|wide]
                                 List or show stored resources. KIND: virtualservice (vs),
                                 destinationrule (dr), serviceentry (se), workloadentry (we),
                                 peerauthentication (pa), authorizationpolicy (ap),
                                 service (svc: Kubernetes Services, whose selectors pick the
                                 registered pods as endpoints).
  delete -f FILE|DIR              Delete the resources the files name.
  proxy-status [NAME] [-o json]   Subscribed proxies (of every replica): address, SYNCED / STALE /
                                 NACK (and why), the snapshot version applied, the store version
                                 it came from, identity and certificate expiry.
  proxy-config clusters|routes|endpoints|listeners|secret|all NAME [-o json]
                                 The configuration the control plane sent proxy NAME
                                 ("pod.namespace" or the pod name), as istioctl's tables.
      These talk to --control HOST:PORT (default localhost:15012), verify it with
      --trust-bundle (default <state-dir>/root-cert.pem) and authenticate with the admin token
      in --state-dir, or with --cert-dir DIR (cert-chain.pem, key.pem) holding a certificate
      for spiffe://<td>/ns/remora-system/sa/remoractl. Exit 1 when the control plane refuses.

  explain (--from POD | --from-labels k=v,... [-n NS] [--service-account SA]) URL
          [-X METHOD] [-H 'name: value']... [-o text|json] [--proxy-admin HOST:PORT]
          [--config DIR [--meshConfigFile FILE]]
      One request end to end, decided by the proxies' own routing and authorization code: the
      virtual host and port protocol, each VirtualService rule tried and why it did not match,
      the weighted destinations and every outcome's share, endpoints (and outlier ejection from
      the client's proxy admin with --proxy-admin), timeouts, retries, faults, mirrors, header
      operations, connection pool limits, mTLS on both sides, the server's PeerAuthentication
      and AuthorizationPolicy verdict. From the control plane's snapshots (connection flags as
      above), or offline from Istio YAML with --config (WorkloadEntries are the pods). Exit 0
      when the request would be served, 1 when refused (the reason on the first line).
  explain --flag FLAG|all [-o json]
      What a response flag (UF, UH, UO, URX, NR, UT, UC, DC, DI, FI, RBAC, DPE) means, its likely
      causes, and the commands that check each (docs/response-flags.md).

  kube-inject -f FILE|- [-o FILE] [--image IMG] [--control-address HOST:PORT]
              [--trust-domain TD] [--native-sidecar]
      Print the manifests with the Remora sidecar injected as Istio's injector does: Pods,
      Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs gain remora-init
      and remora-proxy; other kinds pass through. Pod annotations sidecar.istio.io/inject,
      proxy.istio.io/config, sidecar.istio.io/proxyCPU|proxyMemory[Limit], logLevel,
      nativeSidecar and traffic.sidecar.istio.io/* are honoured (docs/kubernetes.md).

  manifest generate [--profile default|minimal|demo] [--set KEY=VALUE]... [--state-dir DIR]
                    [--cluster-jwks FILE] [-o FILE]
  install           (same flags)
      Print everything a Kubernetes cluster needs (namespace remora-system, the Istio CRDs,
      RBAC, the MeshConfig ConfigMap, the CA Secret, the root certificate ConfigMaps,
      remora-control's Deployment and Service, the injector's MutatingWebhookConfiguration)
      for `kubectl apply -f -`. The mesh CA comes from --state-dir (created if absent). Keys:
      namespace, hub, tag, trustDomain, control.replicas, control.resources.requests.cpu|memory,
      crds.enabled, injector.enabled|failurePolicy|reinvocationPolicy|nativeSidecar|
      holdApplicationUntilProxyStarts, rootCertNamespaces (comma-separated), meshConfig.FIELD.

  trace REQUEST-ID LOG-FILE...
      What happened to one request: the access-log lines (JSON or text) of every sidecar it
      crossed, joined by x-request-id, oldest first. Exit 1 when no line has that id.

--state-dir defaults to ./remora-state, --trust-domain to cluster.local.
)";

template <class T>
T must(certs::Result<T> r, const std::string& what) {
    if (!r) throw std::runtime_error(what + ": " + r.error().message());
    return std::move(*r);
}

int token_create(const std::vector<std::string>& argv) {
    Args args(argv, {"namespace", "service-account", "ttl", "state-dir", "audience"});
    std::string ns = args.require("namespace");
    std::string sa = args.require("service-account");
    long long ttl = parse_duration_seconds("ttl", args.get_or("ttl", "1h"));
    fs::path dir = args.get_or("state-dir", "./remora-state");
    // Refuse names that could not become a SPIFFE ID now, not at the CA later.
    must(certs::SpiffeId::for_service_account("cluster.local", ns, sa),
         "--namespace/--service-account \"" + ns + "/" + sa + "\"");
    certs::PrivateKey key = load_jwt_key(dir);
    std::cout << certs::sign_service_account_token(
                     key, {ns, sa}, args.get_or("audience", "remora-ca"), "remora-control",
                     std::chrono::system_clock::now(), std::chrono::seconds(ttl))
              << "\n";
    return 0;
}

int ca_root(const std::vector<std::string>& argv) {
    Args args(argv, {"state-dir"});
    fs::path dir = args.get_or("state-dir", "./remora-state");
    std::string pem = read_file(dir / kRootCertFile);
    must(certs::Certificate::from_pem(pem), (dir / kRootCertFile).string());
    std::cout << pem;
    return 0;
}

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.pop_back();
    size_t start = 0;
    while (start < s.size() && std::isspace(static_cast<unsigned char>(s[start])))
        ++start;
    return s.substr(start);
}

int cert_request(const std::vector<std::string>& argv) {
    Args args(argv,
              {"control", "trust-bundle", "token-file", "cert-dir", "out", "ttl", "trust-domain"});
    certs::CaClientOptions opts;
    cli::set_control_address(opts, args.require("control"));
    fs::path out = args.require("out");
    std::string bundle_file = args.require("trust-bundle");
    if (args.has("token-file") == args.has("cert-dir")) {
        throw UsageError(
            "give exactly one of --token-file (first certificate) or --cert-dir (renewal)");
    }

    opts.trust_domain = args.get_or("trust-domain", "cluster.local");
    opts.bundle = must(certs::TrustBundle::from_pem(read_file(bundle_file)), bundle_file);
    if (auto token_file = args.get("token-file")) {
        opts.bearer_token = trim(read_file(*token_file));
        if (opts.bearer_token->empty())
            throw UsageError("--token-file " + *token_file + " is empty");
    } else {
        cli::load_client_cert(opts, *args.get("cert-dir"));
    }

    std::optional<std::chrono::seconds> ttl;
    if (auto t = args.get("ttl")) ttl = std::chrono::seconds(parse_duration_seconds("ttl", *t));
    std::optional<certs::IssuedSvid> svid;
    try {
        svid.emplace(certs::request_svid(opts, ttl));
    } catch (const certs::CaRefused& e) {
        std::cerr << "remoractl: " << e.what() << "\n";
        return 1;
    }
    const std::vector<certs::Certificate>& chain = svid->chain;
    const certs::PrivateKey& key = svid->key;
    const certs::SpiffeId& id = svid->id;
    const certs::Certificate& root = chain.back();
    std::vector<certs::Certificate> without_root(
        chain.begin(), chain.end() - (chain.size() > 1 && root.is_self_signed()));

    std::error_code fec;
    fs::create_directories(out, fec);
    if (fec) throw std::runtime_error("cannot create " + out.string() + ": " + fec.message());
    write_file_atomic(out / "key.pem", key.to_pem(), 0600);
    write_file_atomic(out / "cert-chain.pem", certs::to_pem(without_root), 0644);
    write_file_atomic(out / "root-cert.pem", root.to_pem(), 0644);
    const certs::Certificate& leaf = chain.front();
    std::cout << "identity:   " << id.str() << "\n"
              << "serial:     " << leaf.serial_hex() << "\n"
              << "not before: " << certs::format_time(leaf.not_before()) << "\n"
              << "not after:  " << certs::format_time(leaf.not_after()) << "\n"
              << "wrote:      " << (out / "key.pem").string() << ", "
              << (out / "cert-chain.pem").string() << ", " << (out / "root-cert.pem").string()
              << "\n";
    return 0;
}

int run(const std::vector<std::string>& argv) {
    auto pop2 = [&](std::string_view a, std::string_view b) {
        return argv.size() >= 2 && argv[0] == a && argv[1] == b;
    };
    if (argv.empty() || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help") {
        std::cout << kUsage;
        return argv.empty() ? 2 : 0;
    }
    std::vector<std::string> rest(argv.begin() + std::min<size_t>(2, argv.size()), argv.end());
    if (pop2("token", "create")) return token_create(rest);
    if (pop2("ca", "root")) return ca_root(rest);
    if (pop2("cert", "request")) return cert_request(rest);
    if (argv[0] == "analyze") {
        return cli::analyze_command({argv.begin() + 1, argv.end()}, std::cout);
    }
    std::vector<std::string> after(argv.begin() + 1, argv.end());
    if (argv[0] == "apply") return cli::apply_command(after, std::cout, std::cerr);
    if (argv[0] == "delete") return cli::delete_command(after, std::cout, std::cerr);
    if (argv[0] == "get") return cli::get_command(after, std::cout, std::cerr);
    if (argv[0] == "proxy-status" || argv[0] == "ps") {
        return cli::proxy_status_command(after, std::cout, std::cerr);
    }
    if (argv[0] == "proxy-config" || argv[0] == "pc") {
        return cli::proxy_config_command(after, std::cout, std::cerr);
    }
    if (argv[0] == "explain") return cli::explain_command(after, std::cout, std::cerr);
    if (argv[0] == "kube-inject") {
        return cli::kube_inject_command(after, std::cin, std::cout, std::cerr);
    }
    if (pop2("manifest", "generate")) {
        return cli::manifest_generate_command(rest, false, std::cout, std::cerr);
    }
    if (argv[0] == "install") return cli::manifest_generate_command(after, true, std::cout, std::cerr);
    if (argv[0] == "trace") {
        if (argv.size() < 3) throw UsageError("usage: remoractl trace REQUEST-ID LOG-FILE...");
        std::vector<std::string> files(argv.begin() + 2, argv.end());
        if (trace_request(argv[1], files, std::cout) == 0) {
            std::cerr << "remoractl: no access-log line has request id " << argv[1] << "\n";
            return 1;
        }
        return 0;
    }
    throw UsageError("unknown command \"" + argv[0] + (argv.size() > 1 ? " " + argv[1] : "") +
                     "\"");
}

}  // namespace

int main(int argc, char** argv) {
    return remora::common::run_tool("remoractl", argc, argv, run);
}
