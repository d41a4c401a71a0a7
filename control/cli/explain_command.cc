// remoractl explain: flags, where the snapshots come from (the control plane, or --config offline
// through the same translation remora-control runs), and the report.
#include "control/cli/explain_command.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <map>
#include <memory>

#include "common/args.h"
#include "control/cli/config_commands.h"
#include "control/explain/explain.h"
#include "control/model/model.h"
#include "control/translate/translate.h"
#include "proxy/meshconfig/mesh_config.h"
#include "proxy/snapshot/snapshot_json.h"

namespace remora::control::cli {

namespace json = boost::json;
namespace snap = proxy::snapshot;
using common::Args;
using common::UsageError;
using explain::Server;
using explain::Workload;

namespace {

constexpr const char* kUsage =
    "usage: remoractl explain (--from POD | --from-labels k=v,... [-n NS] [--service-account SA]) URL\n"
    "                         [-X METHOD] [-H 'name: value']... [-o text|json]\n"
    "                         [--config DIR [--meshConfigFile FILE]] [--proxy-admin HOST:PORT]\n"
    "       remoractl explain --flag FLAG|all [-o json]";

std::vector<std::string> long_flags(const std::vector<std::string>& argv) {
    static const std::map<std::string, std::string> kShort = {
        {"-X", "--request"}, {"-H", "--header"}, {"-n", "--namespace"}, {"-o", "--output"}};
    std::vector<std::string> out;
    for (const std::string& a : argv) {
        auto it = kShort.find(a);
        out.push_back(it == kShort.end() ? a : it->second);
    }
    return out;
}

snap::Labels parse_labels(const std::string& text) {
    try {
        return common::parse_label_list(text);
    } catch (const std::invalid_argument& e) {
        throw UsageError(std::string("--from-labels: ") + e.what());
    }
}

// "spiffe://td/ns/NS/sa/SA" → namespace and service account.
bool parse_identity(const std::string& id, std::string& ns, std::string& sa) {
    size_t n = id.find("/ns/"), s = id.find("/sa/");
    if (n == std::string::npos || s == std::string::npos || s < n) return false;
    ns = id.substr(n + 4, s - n - 4);
    sa = id.substr(s + 4);
    return true;
}

// GET http://ADDR/clusters from a proxy's admin port.
std::string admin_get(const std::string& address, const std::string& target) {
    namespace asio = boost::asio;
    namespace beast = boost::beast;
    auto ep = common::parse_endpoint("--proxy-admin", address);
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(5));
    stream.connect(ep);
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, target, 11};
    req.set(beast::http::field::host, address);
    beast::http::write(stream, req);
    beast::flat_buffer buf;
    beast::http::response_parser<beast::http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    beast::http::read(stream, buf, parser);
    if (parser.get().result_int() != 200) {
        throw std::runtime_error("--proxy-admin " + address + target + ": HTTP " + std::to_string(parser.get().result_int()));
    }
    return parser.get().body();
}

json::object parse_json_object(const std::string& body, const std::string& what) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) throw std::runtime_error(what + ": the control plane's answer is not JSON");
    return v.as_object();
}

std::string jstr(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

snap::Labels jlabels(const json::object& o) {
    snap::Labels out;
    if (const json::value* v = o.if_contains("labels"); v && v->is_object()) {
        for (const auto& kv : v->as_object()) {
            if (kv.value().is_string()) out[std::string(kv.key())] = std::string(kv.value().as_string());
        }
    }
    return out;
}

// Online: the control plane's proxies and snapshots.
class ControlSource {
  public:
    explicit ControlSource(const Args& args) : opts_(control_connection(args)) {}

    json::object get(const std::string& target) {
        certs::CaClientResult res = certs::call_control(opts_, "GET", target, "");
        if (res.status != 200) {
            std::ostringstream err;
            print_control_refusal(res.status, res.body, err);
            throw std::runtime_error("GET " + target + ": " + err.str());
        }
        return parse_json_object(res.body, "GET " + target);
    }

    const json::array& proxies() {
        if (!proxies_) {
            json::object o = get("/v1/proxies");
            const json::value* v = o.if_contains("proxies");
            proxies_ = v && v->is_array() ? v->as_array() : json::array{};
        }
        return *proxies_;
    }

    // The snapshot the control plane sent proxy `name`.
    snap::Snapshot sent_snapshot(const std::string& name) {
        json::object o = get("/v1/proxies/" + url_encode(name) + "/snapshot");
        const json::value* s = o.if_contains("snapshot");
        if (!s || s->is_null()) throw std::runtime_error("proxy " + name + " has not been sent a snapshot yet");
        return snap::from_json(*s);
    }

    // The snapshot the control plane computes for a workload, running or not.
    snap::Snapshot computed_snapshot(const std::string& ns, const std::string& sa, const snap::Labels& labels) {
        std::string l;
        for (const auto& [k, v] : labels) l += (l.empty() ? "" : ",") + k + "=" + v;
        json::object o = get("/v1/snapshot?namespace=" + url_encode(ns) + "&serviceAccount=" + url_encode(sa) +
                             "&labels=" + url_encode(l));
        return snap::from_json(o.at("snapshot"));
    }

  private:
    certs::CaClientOptions opts_;
    std::optional<json::array> proxies_;
};

Workload workload_of(const json::object& p) {
    Workload w;
    w.name = jstr(p, "podName").empty() ? jstr(p, "name") : jstr(p, "podName");
    w.ns = jstr(p, "namespace");
    w.service_account = jstr(p, "serviceAccount");
    w.ip = jstr(p, "podIp");
    w.labels = jlabels(p);
    return w;
}

}  // namespace

int explain_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
    Args args(long_flags(argv),
              connection_flags_with({"from", "from-labels", "namespace", "service-account", "request", "header",
                                     "output", "config", "meshConfigFile", "proxy-admin", "flag", "root-namespace"}),
              {});
    if (auto flag = args.get("flag"); flag && (*flag == "all" || *flag == "ALL")) {
        for (const auto& d : explain::response_flags()) out << explain::render_flag(d) << "\n";
        return 0;
    }
    if (auto flag = args.get("flag")) {
        const explain::FlagDoc* doc = explain::find_flag(*flag);
        if (!doc) {
            std::string known;
            for (const auto& d : explain::response_flags()) known += (known.empty() ? "" : ", ") + d.flag;
            throw UsageError("unknown response flag \"" + *flag + "\"; remora emits " + known);
        }
        if (args.get_or("output", "text") == "json") {
            json::object o{{"flag", doc->flag}, {"status", doc->status}, {"meaning", doc->meaning}};
            json::array causes, checks;
            for (const auto& c : doc->causes) causes.push_back(json::string(c));
            for (const auto& c : doc->checks) checks.push_back(json::string(c));
            o["causes"] = std::move(causes);
            o["checks"] = std::move(checks);
            out << json::serialize(o) << "\n";
        } else {
            out << explain::render_flag(*doc);
        }
        return 0;
    }
    if (args.positional().size() != 1) throw UsageError(kUsage);
    if (args.has("from") == args.has("from-labels")) throw UsageError(std::string("give --from POD or --from-labels\n") + kUsage);
    const std::string output = args.get_or("output", "text");
    if (output != "text" && output != "json") throw UsageError("--output \"" + output + "\": use text or json");
    explain::Request request;
    try {
        request = explain::parse_request(args.positional()[0], args.get_or("request", "GET"), args.all("header"));
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }

    explain::Inputs in;
    std::string ns_flag = args.get_or("namespace", "");
    std::string from = args.get_or("from", "");
    if (size_t dot = from.find('.'); dot != std::string::npos && ns_flag.empty()) {  // POD.NAMESPACE
        ns_flag = from.substr(dot + 1);
        from = from.substr(0, dot);
    }

    if (auto dir = args.get("config")) {
        // Offline: the same translation remora-control runs, over the files.
        auto config = std::make_shared<model::Config>();
        model::load_path(*config, *dir);
        for (const auto* w : config->warnings()) err << "warning: " << w->str() << "\n";
        if (config->has_errors()) {
            std::string all;
            for (const auto* e : config->errors()) all += "\n  " + e->str();
            throw std::runtime_error("--config " + *dir + ": invalid Istio configuration (remora-control would refuse it):" + all);
        }
        proxy::MeshConfig mesh;
        if (auto f = args.get("meshConfigFile")) mesh = proxy::MeshConfig::load_file(*f);
        translate::Options topts;
        topts.trust_domain = args.get_or("trust-domain", mesh.trust_domain);
        topts.root_namespace = args.get_or("root-namespace", mesh.root_namespace);
        Workload client;
        if (!from.empty()) {
            std::optional<Workload> w = explain::find_workload(*config, from, ns_flag);
            if (!w) throw UsageError("--from " + from + ": no WorkloadEntry or Pod of that name in " + *dir);
            client = *w;
            if (auto sa = args.get("service-account")) client.service_account = *sa;
        } else {
            client.ns = ns_flag.empty() ? "default" : ns_flag;
            client.service_account = args.get_or("service-account", "default");
            client.labels = parse_labels(args.get_or("from-labels", ""));
        }
        in = explain::offline_inputs(config, client, topts, "translated from " + *dir + " (offline)");
        in.registry_only = mesh.outbound_traffic_policy == "REGISTRY_ONLY";
    } else {
        auto control = std::make_shared<ControlSource>(args);
        json::object mesh = control->get("/v1/meshconfig");
        in.trust_domain = args.get_or("trust-domain", jstr(mesh, "trustDomain").empty() ? "cluster.local" : jstr(mesh, "trustDomain"));
        if (const json::value* otp = mesh.if_contains("outboundTrafficPolicy"); otp && otp->is_object()) {
            in.registry_only = jstr(otp->as_object(), "mode") == "REGISTRY_ONLY";
        }
        if (!from.empty()) {
            const json::object* found = nullptr;
            for (const auto& pv : control->proxies()) {
                const json::object& p = pv.as_object();
                if ((jstr(p, "name") == from || jstr(p, "podName") == from) &&
                    (ns_flag.empty() || jstr(p, "namespace") == ns_flag)) {
                    found = &p;
                    break;
                }
            }
            if (!found) {
                err << "remoractl: no proxy named " << from << (ns_flag.empty() ? "" : " in namespace " + ns_flag)
                    << " (see remoractl proxy-status; --from-labels explains a workload that is not running)\n";
                return 2;
            }
            in.client = workload_of(*found);
            in.snapshot = control->sent_snapshot(jstr(*found, "name"));
            in.source = "the snapshot remora-control sent to " + jstr(*found, "name") + " (version " +
                        jstr(*found, "sentVersion") + ", " + jstr(*found, "status") + ")";
        } else {
            in.client.ns = ns_flag.empty() ? "default" : ns_flag;
            in.client.service_account = args.get_or("service-account", "default");
            in.client.labels = parse_labels(args.get_or("from-labels", ""));
            in.snapshot = control->computed_snapshot(in.client.ns, in.client.service_account, in.client.labels);
            in.source = "the snapshot remora-control computes for these labels (no running proxy)";
        }
        auto cache = std::make_shared<std::map<std::string, snap::InboundPolicy>>();
        in.server_for = [control, cache](const snap::Cluster&, const snap::Endpoint& e) {
            Server s;
            for (const auto& pv : control->proxies()) {
                const json::object& p = pv.as_object();
                if (jstr(p, "podIp") != e.address) continue;
                s.known = true;
                s.workload = workload_of(p);
                const std::string name = jstr(p, "name");
                auto it = cache->find(name);
                if (it == cache->end()) it = cache->emplace(name, control->sent_snapshot(name).inbound).first;
                s.inbound = it->second;
                s.source = "the snapshot remora-control sent to " + name;
                return s;
            }
            // Not running: what the control plane would send it, when the endpoint has a sidecar.
            std::string ns, sa;
            if (!e.identity.empty() && parse_identity(e.identity, ns, sa)) {
                s.known = true;
                s.workload = {"", ns, sa, e.address, e.labels};
                const std::string key = ns + "/" + sa + "@" + e.address;
                auto it = cache->find(key);
                if (it == cache->end()) it = cache->emplace(key, control->computed_snapshot(ns, sa, e.labels).inbound).first;
                s.inbound = it->second;
                s.source = "no proxy registered at " + e.address + ": the snapshot remora-control computes for it";
            }
            return s;
        };
    }
    if (auto admin = args.get("proxy-admin")) {
        in.ejected = explain::parse_admin_clusters(admin_get(*admin, "/clusters"));
    }

    json::object report = explain::explain(in, request);
    if (output == "json") {
        out << json::serialize(report) << "\n";
    } else {
        out << explain::render_text(report);
    }
    return explain::served(report) ? 0 : 1;
}

}  // namespace remora::control::cli
