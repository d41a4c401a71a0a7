// remoractl's config commands: read files, call the config API, print kubectl's way.
#include "control/cli/config_commands.h"

#include <boost/json.hpp>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <cstdio>

#include "certs/ca_client.h"
#include "common/args.h"
#include "common/files.h"
#include "control/ca/state_dir.h"
#include "control/store/store.h"

namespace remora::control::cli {

namespace fs = std::filesystem;
namespace json = boost::json;
using common::Args;
using common::UsageError;

namespace {

// kubectl's short flags as remoractl's long ones.
std::vector<std::string> long_flags(const std::vector<std::string>& argv) {
    std::vector<std::string> out;
    for (const std::string& a : argv) {
        if (a == "-f") out.push_back("--filename");
        else if (a == "-n") out.push_back("--namespace");
        else if (a == "-o") out.push_back("--output");
        else if (a == "-A") out.push_back("--all-namespaces");
        else if (a.rfind("-o", 0) == 0 && a.size() > 2 && a[2] != '-') {
            out.push_back("--output=" + a.substr(2));
        } else out.push_back(a);
    }
    return out;
}

const std::set<std::string> kConnectionFlags = {"control", "trust-bundle", "state-dir",
                                                "cert-dir", "trust-domain"};

std::set<std::string> with_connection_flags(std::set<std::string> flags) {
    flags.insert(kConnectionFlags.begin(), kConnectionFlags.end());
    return flags;
}

certs::CaClientOptions connection(const Args& args) {
    certs::CaClientOptions opts;
    set_control_address(opts, args.get_or("control", "localhost:15012"));
    opts.trust_domain = args.get_or("trust-domain", "cluster.local");
    fs::path state = args.get_or("state-dir", "./remora-state");
    std::string bundle_file = args.get_or("trust-bundle", (state / kRootCertFile).string());
    auto bundle = certs::TrustBundle::from_pem(common::read_file(bundle_file));
    if (!bundle) throw std::runtime_error(bundle_file + ": " + bundle.error().message());
    opts.bundle = std::move(*bundle);
    if (auto dir = args.get("cert-dir")) {
        load_client_cert(opts, *dir);
    } else {
        if (!fs::exists(state / kAdminTokenFile)) {
            throw UsageError("no admin credential: " + (state / kAdminTokenFile).string() +
                             " does not exist; give --state-dir (the control plane's) or "
                             "--cert-dir with a certificate for ns/remora-system/sa/remoractl");
        }
        opts.bearer_token = load_admin_token(state);
    }
    return opts;
}

std::string encode(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out.push_back(static_cast<char>(c));
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

json::object parse_object(const std::string& body) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) {
        throw std::runtime_error("the control plane's answer is not JSON: " + body.substr(0, 200));
    }
    return v.as_object();
}

std::string str(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// Columns padded to the widest cell plus three spaces, as kubectl and istioctl print them.
void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
    if (rows.empty()) return;
    std::vector<std::size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (std::size_t c = 0; c < r.size() && c < width.size(); ++c)
            width[c] = std::max(width[c], r[c].size());
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t c = 0; c < r.size(); ++c) {
            line += r[c];
            if (c + 1 < r.size()) line += std::string(width[c] - r[c].size() + 3, ' ');
        }
        out << line << "\n";
    }
}

// "Error from server (400): refused: ..." and the messages; returns 1.
int print_refusal(int status, const std::string& body, std::ostream& err) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) {
        err << "Error from server (" << status << "): " << body << "\n";
        return 1;
    }
    const json::object& o = v.as_object();
    err << "Error from server (" << status << "): " << str(o, "error") << "\n";
    if (const json::value* m = o.if_contains("messages"); m && m->is_array()) {
        for (const json::value& line : m->as_array())
            if (line.is_string()) err << std::string(line.as_string()) << "\n";
    }
    return 1;
}

void print_warnings(const json::object& o, std::ostream& err) {
    if (const json::value* w = o.if_contains("warnings"); w && w->is_array()) {
        for (const json::value& line : w->as_array())
            if (line.is_string()) err << "Warning: " << std::string(line.as_string()) << "\n";
    }
}

// FILE, or every *.yaml / *.yml under DIR (sorted), or "-" for stdin.
std::vector<std::pair<std::string, std::string>> read_inputs(const std::vector<std::string>& names) {
    if (names.empty()) throw UsageError("give -f FILE|DIR (repeatable; - for stdin)");
    std::vector<std::pair<std::string, std::string>> out;
    for (const std::string& name : names) {
        if (name == "-") {
            std::ostringstream text;
            text << std::cin.rdbuf();
            out.emplace_back("-", text.str());
            continue;
        }
        std::error_code ec;
        if (fs::is_directory(name, ec)) {
            std::vector<fs::path> files;
            for (auto it = fs::recursive_directory_iterator(name, ec);
                 !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
                auto ext = it->path().extension();
                if (it->is_regular_file() && (ext == ".yaml" || ext == ".yml"))
                    files.push_back(it->path());
            }
            std::sort(files.begin(), files.end());
            if (files.empty()) throw UsageError(name + ": no *.yaml or *.yml files");
            for (const fs::path& f : files)
                out.emplace_back(f.string(), common::read_file(f));
        } else if (fs::exists(name, ec)) {
            out.emplace_back(name, common::read_file(name));
        } else {
            throw UsageError(name + ": no such file or directory");
        }
    }
    return out;
}

std::string lower(std::string s) {
    for (char& c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// apply and delete: one request per file, as kubectl does; exit 1 if any was refused.
int change_command(const std::vector<std::string>& argv, bool remove, std::ostream& out,
                   std::ostream& err) {
    Args args(long_flags(argv), with_connection_flags({"filename"}));
    if (!args.positional().empty()) {
        throw UsageError("unexpected argument " + args.positional().front() +
                         " (give files with -f)");
    }
    auto inputs = read_inputs(args.all("filename"));
    certs::CaClientOptions opts = connection(args);
    int rc = 0;
    for (const auto& [name, text] : inputs) {
        certs::CaClientResult res =
            certs::call_control(opts, remove ? "DELETE" : "POST", "/v1/config?source=" + encode(name),
                                text, "application/yaml");
        if (res.status != 200) {
            if (inputs.size() > 1) err << name << ":\n";
            rc = print_refusal(res.status, res.body, err);
            continue;
        }
        json::object o = parse_object(res.body);
        print_warnings(o, err);
        if (const json::value* items = o.if_contains("items"); items && items->is_array()) {
            for (const json::value& iv : items->as_array()) {
                if (!iv.is_object()) continue;
                const json::object& i = iv.as_object();
                std::string action = str(i, "action");
                if (action == "skipped") {
                    err << "skipped " << str(i, "detail") << "\n";
                    continue;
                }
                std::string group = str(i, "group");
                std::string kind = lower(str(i, "kind")) + (group.empty() ? "" : "." + group);
                if (remove) {
                    out << kind << " \"" << str(i, "name") << "\" deleted\n";
                } else {
                    out << kind << "/" << str(i, "name") << " " << action << "\n";
                }
            }
        }
    }
    return rc;
}

}  // namespace

std::set<std::string> connection_flags_with(std::set<std::string> flags) {
    return with_connection_flags(std::move(flags));
}

certs::CaClientOptions control_connection(const Args& args) { return connection(args); }

std::string url_encode(std::string_view s) { return encode(s); }

int print_control_refusal(int status, const std::string& body, std::ostream& err) {
    return print_refusal(status, body, err);
}

void set_control_address(certs::CaClientOptions& options, const std::string& control) {
    std::size_t colon = control.rfind(':');
    if (colon == std::string::npos) {
        throw UsageError("--control \"" + control + "\": expected HOST:PORT");
    }
    options.host = control.substr(0, colon);
    if (options.host.size() > 2 && options.host.front() == '[')
        options.host = options.host.substr(1, options.host.size() - 2);
    options.port = control.substr(colon + 1);
}

void load_client_cert(certs::CaClientOptions& options, const fs::path& dir) {
    auto chain = certs::Certificate::chain_from_pem(common::read_file(dir / "cert-chain.pem"));
    if (!chain) {
        throw std::runtime_error((dir / "cert-chain.pem").string() + ": " +
                                 chain.error().message());
    }
    auto key = certs::PrivateKey::from_pem(common::read_file(dir / "key.pem"));
    if (!key) throw std::runtime_error((dir / "key.pem").string() + ": " + key.error().message());
    options.client_chain = std::move(*chain);
    options.client_key = std::move(*key);
}

std::string format_age(std::chrono::seconds age) {
    long long s = std::max<long long>(0, age.count());
    if (s < 120) return std::to_string(s) + "s";
    if (s < 60 * 60) return std::to_string(s / 60) + "m";
    if (s < 48 * 3600) return std::to_string(s / 3600) + "h";
    return std::to_string(s / 86400) + "d";
}

int apply_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
    return change_command(argv, false, out, err);
}

int delete_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
    return change_command(argv, true, out, err);
}

int get_command(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
    Args args(long_flags(argv), with_connection_flags({"namespace", "output"}),
              {"all-namespaces"});
    const auto& pos = args.positional();
    if (pos.empty() || pos.size() > 2) {
        throw UsageError("usage: remoractl get KIND [NAME] [-n NS | -A] [-o yaml|json]");
    }
    auto kind = store::kind_from_name(pos[0]);
    if (!kind) {
        throw UsageError("unknown kind \"" + pos[0] +
                         "\": virtualservice (vs), destinationrule (dr), serviceentry (se), "
                         "workloadentry (we), peerauthentication (pa), authorizationpolicy (ap), "
                         "service (svc)");
    }
    std::string output = args.get_or("output", "table");
    if (output != "table" && output != "wide" && output != "yaml" && output != "json") {
        throw UsageError("--output \"" + output + "\": use yaml or json");
    }
    std::string name = pos.size() == 2 ? pos[1] : "";
    // As kubectl: a name without -n means the default namespace; a listing without -n shows all.
    std::string ns = args.get_or("namespace", name.empty() ? "" : "default");
    if (args.has("all-namespaces")) ns.clear();
    std::string target = std::string("/v1/config?kind=") + store::kind_name(*kind);
    if (!ns.empty()) target += "&namespace=" + encode(ns);
    if (!name.empty()) target += "&name=" + encode(name);
    if (output == "yaml") target += "&format=yaml";
    certs::CaClientOptions opts = connection(args);
    certs::CaClientResult res = certs::call_control(opts, "GET", target, "");
    if (res.status != 200) return print_refusal(res.status, res.body, err);
    if (output == "yaml") {
        out << res.body;
        return 0;
    }
    json::object o = parse_object(res.body);
    const json::value* items_v = o.if_contains("items");
    if (!items_v || !items_v->is_array()) throw std::runtime_error("answer without items");
    const json::array& items = items_v->as_array();
    if (output == "json") {
        if (!name.empty() && items.size() == 1) {
            out << json::serialize(items[0].as_object().at("object")) << "\n";
            return 0;
        }
        json::array objects;
        for (const json::value& i : items)
            objects.push_back(i.as_object().at("object"));
        json::object list{{"apiVersion", "v1"}, {"kind", "List"}, {"items", std::move(objects)}};
        out << json::serialize(list) << "\n";
        return 0;
    }
    if (items.empty()) {
        err << "No resources found" << (ns.empty() ? "" : " in " + ns + " namespace") << ".\n";
        return 0;
    }
    const auto now = std::chrono::system_clock::now();
    std::vector<std::vector<std::string>> rows = {{"NAMESPACE", "NAME", "AGE"}};
    if (output == "wide") rows[0].insert(rows[0].end(), {"VERSION", "ORIGIN", "SOURCE"});
    for (const json::value& iv : items) {
        const json::object& i = iv.as_object();
        auto created = std::chrono::system_clock::time_point(
            std::chrono::seconds(i.at("created").to_number<int64_t>()));
        std::vector<std::string> row = {
            str(i, "namespace"), str(i, "name"),
            format_age(std::chrono::duration_cast<std::chrono::seconds>(now - created))};
        if (output == "wide") {
            row.insert(row.end(), {std::to_string(i.at("resourceVersion").to_number<uint64_t>()),
                                   str(i, "origin"), str(i, "source")});
        }
        rows.push_back(std::move(row));
    }
    print_table(rows, out);
    return 0;
}

namespace {

int64_t num(const json::object& o, const char* key) {
    const json::value* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
    return 0;
}

std::string unix_time(int64_t seconds) {
    if (seconds <= 0) return "-";
    return certs::format_time(certs::SystemTime(std::chrono::seconds(seconds)));
}

std::string short_version(const std::string& v) {
    return v.empty() ? "-" : v;
}

// "reviews, reviews.default + 5 more..." as istioctl abbreviates domain lists.
std::string domains_text(const json::array& domains) {
    std::vector<std::string> names;
    for (const auto& d : domains) {
        if (d.is_string() && std::string_view(d.as_string()).find(':') == std::string_view::npos) {
            names.emplace_back(d.as_string());
        }
    }
    std::sort(names.begin(), names.end(),
              [](const std::string& a, const std::string& b) { return a.size() < b.size() || (a.size() == b.size() && a < b); });
    if (names.empty()) return "*";
    std::string out = names[0];
    if (names.size() > 1) out += ", " + names[1];
    if (names.size() > 2) out += " + " + std::to_string(names.size() - 2) + " more...";
    return out;
}

std::string match_text(const json::object& route) {
    const json::value* ms = route.if_contains("matches");
    if (!ms || !ms->is_array() || ms->as_array().empty()) return "/*";
    std::vector<std::string> parts;
    for (const auto& mv : ms->as_array()) {
        if (!mv.is_object()) continue;
        const json::object& m = mv.as_object();
        std::string t = "/*";
        if (const json::value* u = m.if_contains("uri"); u && u->is_object()) {
            std::string kind = str(u->as_object(), "kind"), value = str(u->as_object(), "value");
            t = kind == "prefix" ? value + "*" : kind == "regex" ? "~" + value : value;
        }
        std::vector<std::string> extra;
        if (const json::value* h = m.if_contains("headers"); h && h->is_array()) {
            for (const auto& hv : h->as_array()) {
                if (hv.is_object()) extra.push_back("header " + str(hv.as_object(), "name"));
            }
        }
        if (m.if_contains("method")) extra.push_back("method");
        if (const json::value* q = m.if_contains("query_params"); q && q->is_array() && !q->as_array().empty()) {
            extra.push_back("query");
        }
        for (const auto& e : extra) t += " (" + e + ")";
        parts.push_back(t);
    }
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : " OR ") + p;
    return out;
}

// The other replicas /v1/proxies named (--store etcd), each as a connection like `opts` to its
// advertised address; a replica that advertises none is named on `err`.
std::vector<std::pair<std::string, certs::CaClientOptions>> other_replicas(
    const certs::CaClientOptions& opts, const json::object& proxies, std::ostream& err) {
    std::vector<std::pair<std::string, certs::CaClientOptions>> out;
    const json::value* list = proxies.if_contains("otherReplicas");
    if (!list || !list->is_array()) return out;
    for (const auto& v : list->as_array()) {
        if (!v.is_object()) continue;
        const std::string id = str(v.as_object(), "replica"), address = str(v.as_object(), "address");
        if (address.empty()) {
            err << "replica " << id << " advertises no address (remora-control --advertise-address): "
                << "its proxies are not listed\n";
            continue;
        }
        certs::CaClientOptions peer = opts;
        try {
            set_control_address(peer, address);
        } catch (const UsageError&) {
            err << "replica " << id << " advertises \"" << address << "\", not HOST:PORT\n";
            continue;
        }
        out.emplace_back(id + " (" + address + ")", std::move(peer));
    }
    return out;
}

json::object fetch_proxy(const certs::CaClientOptions& opts, const std::string& name, int& status,
                         std::string& body, std::ostream& err) {
    const std::string target = "/v1/proxies/" + encode(name) + "/snapshot";
    certs::CaClientResult res = certs::call_control(opts, "GET", target, "");
    if (res.status == 404) {
        // Subscribed to another replica, maybe: ask the ones this one knows.
        certs::CaClientResult all = certs::call_control(opts, "GET", "/v1/proxies", "");
        if (all.status == 200) {
            for (const auto& [who, peer] : other_replicas(opts, parse_object(all.body), err)) {
                try {
                    certs::CaClientResult r = certs::call_control(peer, "GET", target, "");
                    if (r.status == 404) continue;
                    res = std::move(r);
                    break;
                } catch (const std::exception& e) {
                    err << "replica " << who << ": " << e.what() << "\n";
                }
            }
        }
    }
    status = res.status;
    body = res.body;
    if (res.status != 200) return {};
    return parse_object(res.body);
}

}  // namespace

int proxy_status_command(const std::vector<std::string>& argv, std::ostream& out,
                         std::ostream& err) {
    Args args(long_flags(argv), with_connection_flags({"output"}), {});
    std::string output = args.get_or("output", "table");
    if (output != "table" && output != "json") throw UsageError("--output \"" + output + "\": use json");
    if (args.positional().size() > 1) throw UsageError("usage: remoractl proxy-status [NAME] [-o json]");
    certs::CaClientOptions opts = connection(args);
    certs::CaClientResult res = certs::call_control(opts, "GET", "/v1/proxies", "");
    if (res.status != 200) return print_refusal(res.status, res.body, err);
    json::object o = parse_object(res.body);
    std::string only = args.positional().empty() ? "" : args.positional()[0];
    json::array shown;
    auto take = [&](const json::object& answer) {
        const json::value* list = answer.if_contains("proxies");
        if (!list || !list->is_array()) throw std::runtime_error("answer without proxies");
        for (const auto& pv : list->as_array()) {
            if (!pv.is_object()) continue;
            const json::object& p = pv.as_object();
            if (!only.empty() && str(p, "name") != only && str(p, "podName") != only) continue;
            shown.push_back(pv);
        }
    };
    take(o);
    // With several replicas, each lists the proxies subscribed to it: ask every one, as
    // istioctl proxy-status asks every istiod. One that does not answer is named, the rest shown.
    const bool replicas = o.contains("replica");
    for (const auto& [who, peer] : other_replicas(opts, o, err)) {
        try {
            certs::CaClientResult r = certs::call_control(peer, "GET", "/v1/proxies", "");
            if (r.status != 200) {
                err << "replica " << who << " refused: " << r.status << " " << r.body.substr(0, 200) << "\n";
                continue;
            }
            take(parse_object(r.body));
        } catch (const std::exception& e) {
            err << "replica " << who << " did not answer: " << e.what() << "\n";
        }
    }
    if (output == "json") {
        out << json::serialize(shown) << "\n";
        return 0;
    }
    if (shown.empty()) {
        err << (only.empty() ? std::string("No proxies are subscribed.") : "No proxy named " + only + ".") << "\n";
        return only.empty() ? 0 : 1;
    }
    std::vector<std::vector<std::string>> rows = {
        {"NAME", "ADDRESS", "CONFIG", "VERSION", "CONFIG VERSION", "IDENTITY", "CERT EXPIRES"}};
    if (replicas) rows[0].push_back("REPLICA");
    std::vector<std::string> nacks;
    for (const auto& pv : shown) {
        const json::object& p = pv.as_object();
        const json::value* c = p.if_contains("certificate");
        json::object cert = c && c->is_object() ? c->as_object() : json::object{};
        std::string status = str(p, "status");
        rows.push_back({str(p, "name"), str(p, "podIp"), status, short_version(str(p, "ackedVersion")),
                        std::to_string(num(p, "configVersion")), str(cert, "spiffeId"),
                        unix_time(num(cert, "notAfter"))});
        if (replicas) rows.back().push_back(str(p, "replica"));
        if (status == "NACK") {
            nacks.push_back(str(p, "name") + " refused " + str(p, "nackedVersion") + ": " + str(p, "nackError"));
        }
    }
    print_table(rows, out);
    for (const auto& n : nacks) out << "NACK " << n << "\n";
    return 0;
}

int proxy_config_command(const std::vector<std::string>& argv, std::ostream& out,
                         std::ostream& err) {
    Args args(long_flags(argv), with_connection_flags({"output"}), {});
    const auto& pos = args.positional();
    const std::string usage =
        "usage: remoractl proxy-config clusters|routes|endpoints|listeners|secret|all NAME [-o json]";
    if (pos.size() != 2) throw UsageError(usage);
    const std::string& what = pos[0];
    static const std::set<std::string> kinds = {"cluster",  "clusters",  "route",    "routes",
                                                "endpoint", "endpoints", "listener", "listeners",
                                                "secret",   "secrets",   "all"};
    if (!kinds.count(what)) throw UsageError("unknown proxy-config \"" + what + "\": " + usage);
    std::string output = args.get_or("output", "table");
    if (output != "table" && output != "json") throw UsageError("--output \"" + output + "\": use json");
    certs::CaClientOptions opts = connection(args);
    int status = 0;
    std::string body;
    json::object p = fetch_proxy(opts, pos[1], status, body, err);
    if (status != 200) return print_refusal(status, body, err);
    const json::value* sv = p.if_contains("snapshot");
    if (!sv || !sv->is_object()) {
        err << "proxy " << str(p, "name") << " has not been sent a snapshot yet\n";
        return 1;
    }
    const json::object& snap = sv->as_object();
    if (output == "json") {
        out << json::serialize(snap) << "\n";
        return 0;
    }
    auto array_of = [](const json::object& o, const char* key) -> const json::array& {
        static const json::array empty;
        const json::value* v = o.if_contains(key);
        return v && v->is_array() ? v->as_array() : empty;
    };
    bool all = what == "all";
    auto is = [&](const char* k) { return all || what.rfind(k, 0) == 0; };
    bool first = true;
    auto section = [&] {
        if (!first) out << "\n";
        first = false;
    };
    if (is("cluster")) {
        section();
        std::vector<std::vector<std::string>> rows = {
            {"SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"}};
        for (const auto& cv : array_of(snap, "clusters")) {
            const json::object& c = cv.as_object();
            std::string subset = str(c, "subset"), dr = str(c, "destination_rule");
            rows.push_back({str(c, "service_host"), std::to_string(num(c, "port")),
                            subset.empty() ? "-" : subset, "outbound", "EDS", dr.empty() ? "" : dr});
        }
        rows.push_back({"BlackHoleCluster", "-", "-", "-", "STATIC", ""});
        rows.push_back({"InboundPassthroughCluster", "-", "-", "-", "ORIGINAL_DST", ""});
        rows.push_back({"PassthroughCluster", "-", "-", "-", "ORIGINAL_DST", ""});
        print_table(rows, out);
    }
    if (is("route")) {
        section();
        std::vector<std::vector<std::string>> rows = {
            {"NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"}};
        for (const auto& vv : array_of(snap, "virtual_hosts")) {
            const json::object& vh = vv.as_object();
            std::string vname = str(vh, "name");
            std::string port = vname.substr(vname.rfind(':') + 1);
            for (const auto& rv : array_of(vh, "routes")) {
                const json::object& r = rv.as_object();
                std::string vs = str(r, "virtual_service");
                rows.push_back({port, vname, domains_text(array_of(vh, "domains")), match_text(r),
                                vs.empty() ? "" : vs});
            }
        }
        print_table(rows, out);
    }
    if (is("endpoint")) {
        section();
        std::vector<std::vector<std::string>> rows = {{"ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"}};
        for (const auto& cv : array_of(snap, "clusters")) {
            const json::object& c = cv.as_object();
            for (const auto& ev : array_of(c, "endpoints")) {
                const json::object& e = ev.as_object();
                rows.push_back({str(e, "address") + ":" + std::to_string(num(e, "port")), "HEALTHY",
                                "OK", str(c, "name")});
            }
        }
        print_table(rows, out);
    }
    if (is("listener")) {
        section();
        std::string mode = "PERMISSIVE";
        if (const json::value* in = snap.if_contains("inbound"); in && in->is_object()) {
            mode = str(in->as_object(), "mtls_mode");
        }
        std::vector<std::vector<std::string>> rows = {{"ADDRESS", "PORT", "MATCH", "DESTINATION"}};
        rows.push_back({"0.0.0.0", "15001", "ALL", "PassthroughCluster"});
        rows.push_back({"0.0.0.0", "15006", "ALL (inbound, mTLS " + mode + ")", "InboundPassthroughCluster"});
        std::set<int64_t> ports;
        for (const auto& cv : array_of(snap, "clusters")) ports.insert(num(cv.as_object(), "port"));
        for (int64_t port : ports) {
            rows.push_back({"0.0.0.0", std::to_string(port), "App: http/1.1", "Route: " + std::to_string(port)});
        }
        rows.push_back({"0.0.0.0", "15021", "ALL", "Inline Route: /healthz/ready*"});
        rows.push_back({"0.0.0.0", "15090", "ALL", "Inline Route: /stats/prometheus*"});
        print_table(rows, out);
    }
    if (is("secret")) {
        section();
        std::vector<std::vector<std::string>> rows = {
            {"RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"}};
        const json::value* c = p.if_contains("certificate");
        if (c && c->is_object()) {
            const json::object& cert = c->as_object();
            auto now = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
            bool valid = num(cert, "notBefore") <= now && now < num(cert, "notAfter");
            rows.push_back({"default", "Cert Chain", "ACTIVE", valid ? "true" : "false", str(cert, "serial"),
                            unix_time(num(cert, "notAfter")), unix_time(num(cert, "notBefore"))});
        }
        for (const auto& rv : array_of(p, "roots")) {
            const json::object& r = rv.as_object();
            rows.push_back({"ROOTCA", "CA", "ACTIVE", "true", str(r, "serial"), unix_time(num(r, "notAfter")),
                            unix_time(num(r, "notBefore"))});
        }
        print_table(rows, out);
    }
    return 0;
}

}  // namespace remora::control::cli
