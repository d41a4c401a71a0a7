// The mesh page's HTML and script, and the JSON it reads (the graph, one proxy, explain).
#include "control/server/mesh_page.h"

#include <boost/json.hpp>

#include "control/explain/explain.h"
#include "control/server/config_api.h"
#include "proxy/snapshot/snapshot_json.h"

namespace remora::control::server {

namespace json = boost::json;
namespace http = boost::beast::http;
using common::HttpResponse;
using common::json_response;

namespace {

constexpr const char* kPage = R"page(<!doctype html>
<html><head><meta charset="utf-8"><title>Remora mesh</title>
<script src="/mesh/cytoscape.min.js"></script>
<style>
body{font:14px sans-serif;margin:1em 1.5em;color:#222}h1{font-size:20px;margin:.2em 0}h2{font-size:16px;margin:1em 0 .3em}
#graph{width:100%;height:420px;border:1px solid #ccc;border-radius:4px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;font-size:13px}th{background:#eee}
.bad{color:#b00}.cols{display:flex;gap:2em;flex-wrap:wrap}.cols>div{flex:1;min-width:420px}
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:360px;font-size:12px}#graph-summary{display:none}
</style></head><body>
<h1>Remora mesh</h1><div id="at"></div>
<div id="graph"></div><pre id="graph-summary"></pre>
<div class="cols"><div>
<h2>Who calls whom</h2><table id="edges"><thead><tr><th>source</th><th>destination</th><th>service</th>
<th>req/s</th><th>errors</th><th>p99 ms</th><th>mTLS</th></tr></thead><tbody></tbody></table>
<h2>Proxies</h2><table id="proxies"><thead><tr><th>proxy</th><th>address</th><th>config</th>
<th>identity</th><th>certificate expires</th><th>metrics</th></tr></thead><tbody></tbody></table>
</div><div>
<h2>Selected workload</h2><pre id="selected">click a workload in the graph</pre>
<h2>Explain a request</h2>
<form id="explain">from <select name="from"></select> <input name="method" value="GET" size="6">
<input name="url" value="http://" size="40"><br><input name="header" placeholder="header: value" size="30">
<button>explain</button></form><pre id="explanation"></pre>
</div></div>
<script>
let cy = null, shape = "";
const $ = (s) => document.querySelector(s);
function cell(row, text, bad) { const td = row.insertCell(); td.textContent = text; if (bad) td.className = "bad"; }
function edgeLabel(e) {
  return e.rps.toFixed(1) + " rps, " + (100 * e.errorRate).toFixed(0) + "% err, p99 " + e.p99Ms.toFixed(0) + " ms" +
         (e.mtls >= 1 ? ", mTLS" : "");
}
function draw(g) {
  if (!window.cytoscape) { $("#graph").textContent = "(the graph library was not built in: see docs/observability.md)"; return; }
  const names = new Set(g.proxies.map((p) => p.workload));
  g.edges.forEach((e) => { names.add(e.source); names.add(e.destination); });
  const nodes = [...names].sort().map((n) => ({ data: { id: n, label: n.replace(/\.[^.]*$/, "") } }));
  const edges = g.edges.map((e) => ({ data: { id: e.source + ">" + e.destination, source: e.source,
    target: e.destination, label: edgeLabel(e), bad: e.errorRate > 0 ? 1 : 0, mtls: e.mtls >= 1 ? 1 : 0 } }));
  const now = JSON.stringify([nodes.map((n) => n.data.id), edges.map((e) => e.data.id)]);
  if (!cy || now !== shape) {
    if (cy) cy.destroy();
    cy = cytoscape({ container: $("#graph"), elements: nodes.concat(edges), wheelSensitivity: 0.2,
      style: [
        { selector: "node", style: { label: "data(label)", "background-color": "#4a7bd0", color: "#222",
          "font-size": 12, "text-valign": "bottom", "text-margin-y": 4 } },
        { selector: "edge", style: { label: "data(label)", width: 2, "line-color": "#888", "target-arrow-color": "#888",
          "target-arrow-shape": "triangle", "curve-style": "bezier", "font-size": 10, "text-rotation": "none",
          "text-background-color": "#fff", "text-background-opacity": 0.8 } },
        { selector: "edge[bad = 1]", style: { "line-color": "#c33", "target-arrow-color": "#c33" } },
        { selector: "edge[mtls = 0]", style: { "line-style": "dashed" } } ],
      layout: { name: "breadthfirst", directed: true, padding: 40, spacingFactor: 1.5 } });
    cy.on("tap", "node", (ev) => select(ev.target.id()));
    shape = now;
  } else {
    edges.forEach((e) => cy.getElementById(e.data.id).data(e.data));
  }
  $("#graph-summary").textContent = cy.edges().map((e) => e.source().id() + " -> " + e.target().id() + ": " +
    e.data("label")).join("\n");
}
async function select(workload) {
  const p = lastGraph.proxies.find((x) => x.workload === workload);
  if (!p) { $("#selected").textContent = workload + ": no proxy registered"; return; }
  const d = await (await fetch("/mesh/proxy?name=" + encodeURIComponent(p.name))).json();
  $("#selected").textContent = JSON.stringify(d, null, 2);
}
let lastGraph = { proxies: [], edges: [] };
async function refresh() {
  try {
    const g = await (await fetch("/mesh/graph.json")).json();
    lastGraph = g;
    const edges = $("#edges tbody"); edges.innerHTML = "";
    for (const e of g.edges) {
      const r = edges.insertRow();
      cell(r, e.source); cell(r, e.destination); cell(r, e.service); cell(r, e.rps.toFixed(2));
      cell(r, (100 * e.errorRate).toFixed(1) + "%", e.errorRate > 0); cell(r, e.p99Ms.toFixed(1));
      cell(r, e.mtls >= 1 ? "yes" : (100 * e.mtls).toFixed(0) + "%", e.mtls < 1);
    }
    const proxies = $("#proxies tbody"); proxies.innerHTML = "";
    const from = $("#explain select"), chosen = from.value;
    from.innerHTML = "";
    for (const p of g.proxies) {
      const r = proxies.insertRow();
      cell(r, p.name); cell(r, p.podIp); cell(r, p.status + (p.nack ? ": " + p.nack : ""), p.status !== "SYNCED");
      cell(r, p.identity); cell(r, p.certNotAfter ? new Date(1000 * p.certNotAfter).toISOString() : "-");
      cell(r, p.metrics ? "scraped" : "unreachable", !p.metrics);
      const o = document.createElement("option"); o.value = o.textContent = p.name; from.appendChild(o);
    }
    if (chosen) from.value = chosen;
    draw(g);
    $("#at").textContent = g.intervalSeconds > 0
      ? "scraped " + new Date(1000 * g.scrapedAt).toISOString() + ", every " + g.intervalSeconds + " s"
      : "proxies' metrics not scraped (remora-control --mesh-scrape-interval 0)";
  } catch (err) { $("#at").textContent = "error: " + err; }
}
$("#explain").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target), q = new URLSearchParams();
  for (const k of ["from", "url", "method", "header"]) if (f.get(k)) q.set(k, f.get(k));
  const d = await (await fetch("/mesh/explain?" + q)).json();
  $("#explanation").textContent = d.error ? "error: " + d.error : d.text;
});
refresh(); setInterval(refresh, 2000);
</script></body></html>
)page";

HttpResponse typed(unsigned status, std::string body, const char* type, unsigned version) {
    HttpResponse res = json_response(status, std::move(body), version);
    res.set(http::field::content_type, type);
    return res;
}

std::string error_doc(const std::string& what) { return json::serialize(json::object{{"error", what}}) + "\n"; }

}  // namespace

bool MeshPage::serves(std::string_view target) {
    std::string_view path = target.substr(0, target.find('?'));
    return path == "/mesh" || path == "/mesh/" || path.starts_with("/mesh/");
}

std::string MeshPage::proxy_json(const std::string& name) const {
    auto r = registry_.find(name);
    if (!r) return error_doc("no proxy named " + name);
    json::object o{{"name", r->id}, {"workload", r->reg.workload_name}, {"namespace", r->ns},
                   {"serviceAccount", r->service_account}, {"status", registry::sync_status_name(r->status())}};
    if (r->sent_snapshot) {
        try {
            proxy::snapshot::Snapshot s = proxy::snapshot::from_json(json::parse(*r->sent_snapshot));
            json::array routes;
            for (const auto& vh : s.virtual_hosts) {
                std::string vs;
                json::array rules;
                for (const auto& rt : vh.routes) {
                    if (!rt.virtual_service.empty()) vs = rt.virtual_service;
                    json::array to;
                    for (const auto& c : rt.clusters) to.push_back(json::string(c.cluster + " " + std::to_string(c.weight)));
                    rules.push_back(json::object{{"rule", rt.name}, {"matchBlocks", rt.matches.size()}, {"to", std::move(to)}});
                }
                routes.push_back(json::object{{"host", vh.name}, {"protocol", vh.protocol}, {"virtualService", vs},
                                              {"rules", std::move(rules)}});
            }
            o["routes"] = std::move(routes);
            json::array policies;
            for (const auto& p : s.inbound.authz) policies.push_back(json::string(p.action + " " + p.name));
            json::array pas;
            for (const auto& p : s.inbound.peer_authentications) pas.push_back(json::string(p));
            o["inbound"] = json::object{{"mtlsMode", s.inbound.mtls_mode}, {"peerAuthentications", std::move(pas)},
                                        {"authorizationPolicies", std::move(policies)}};
        } catch (const std::exception& e) {
            o["error"] = e.what();
        }
    }
    return json::serialize(o) + "\n";
}

std::string MeshPage::explain_json(const std::string& from, const std::string& url, const std::string& method,
                                   const std::vector<std::string>& headers) {
    auto client = registry_.find(from);
    if (!client) return error_doc("no proxy named " + from);
    if (!client->sent_snapshot) return error_doc("proxy " + from + " has not been sent a snapshot yet");
    try {
        explain::Request request = explain::parse_request(url, method, headers);
        explain::Inputs in;
        in.client = {client->reg.pod_name, client->ns, client->service_account, client->reg.pod_ip, client->reg.labels};
        in.trust_domain = trust_domain_;
        in.snapshot = proxy::snapshot::from_json(json::parse(*client->sent_snapshot));
        in.source = "the snapshot remora-control sent to " + client->id;
        in.server_for = [this](const proxy::snapshot::Cluster&, const proxy::snapshot::Endpoint& e) {
            explain::Server s;
            for (const auto& r : registry_.list()) {
                if (r.reg.pod_ip != e.address || !r.sent_snapshot) continue;
                s.known = true;
                s.workload = {r.reg.pod_name, r.ns, r.service_account, r.reg.pod_ip, r.reg.labels};
                s.inbound = proxy::snapshot::from_json(json::parse(*r.sent_snapshot)).inbound;
                s.source = "the snapshot remora-control sent to " + r.id;
                return s;
            }
            const size_t n = e.identity.find("/ns/"), a = e.identity.find("/sa/");
            if (n != std::string::npos && a != std::string::npos && a > n) {
                s.known = true;
                s.workload = {"", e.identity.substr(n + 4, a - n - 4), e.identity.substr(a + 4), e.address, e.labels};
                s.inbound = distribution_.snapshot_for(s.workload.ns, s.workload.service_account, e.labels).inbound;
                s.source = "no proxy registered at " + e.address + ": the snapshot remora-control computes for it";
            }
            return s;
        };
        json::object report = explain::explain(in, request);
        std::string text = explain::render_text(report);
        return json::serialize(json::object{{"report", std::move(report)}, {"text", std::move(text)}}) + "\n";
    } catch (const std::exception& e) {
        return error_doc(e.what());
    }
}

HttpResponse MeshPage::handle(const common::HttpRequest& req) {
    auto [path, query] = split_target(req.target());
    const unsigned v = req.version();
    if (path == "/mesh" || path == "/mesh/") return typed(200, kPage, "text/html; charset=utf-8", v);
    if (path == "/mesh/graph.json") return json_response(200, graph_.graph_json(), v);
    if (path == "/mesh/cytoscape.min.js") {
        if (kGraphLibrary.empty()) return typed(404, "// not built in\n", "application/javascript", v);
        HttpResponse res = typed(200, std::string(kGraphLibrary), "application/javascript", v);
        res.set(http::field::cache_control, "max-age=86400");
        return res;
    }
    if (path == "/mesh/proxy") return json_response(200, proxy_json(query["name"]), v);
    if (path == "/mesh/explain") {
        std::vector<std::string> headers;
        if (!query["header"].empty()) headers.push_back(query["header"]);
        std::string body = explain_json(query["from"], query["url"], query["method"].empty() ? "GET" : query["method"], headers);
        return json_response(body.starts_with("{\"error\"") ? 400 : 200, std::move(body), v);
    }
    return json_response(404, error_doc("not found: /mesh, /mesh/graph.json, /mesh/proxy?name=, /mesh/explain?from=&url="), v);
}

}  // namespace remora::control::server
