#!/usr/bin/env python3
"""System test: Istio's Grafana dashboards and Kiali's graph work, unmodified, on Remora's metrics.
Debian's prometheus scrapes every sidecar of the local cluster (a static config written here, as
Istio's Prometheus addon scrapes :15090/stats/prometheus) while paced traffic flows; then the
PromQL of Istio's mesh, service and workload dashboards (grafana.com 7639, 7636, 7630; istio/istio
manifests/addons/dashboards/istio-mesh-dashboard.gen.json, istio-service-dashboard.json,
istio-workload-dashboard.json: each query below names its panel, with the dashboards' variables
set as a user would pick them) and of Kiali's graph (istio_requests_total and
istio_tcp_sent_bytes_total by reporter, grouped by the source and destination workload,
namespace, canonical service and revision labels) is evaluated, and every query must return the
series and values the traffic sent implies.

    python3 tests/system/test_dashboards.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

The cluster is test_istio_tasks.py's (Bookinfo with ClusterIPs, productpage, reviews-v1/2/3,
ratings-v1, httpbin; all reviews traffic to v1), plus a TCP Service tcp-echo (port name "tcp")
on the httpbin pod. Traffic, for 10 s: productpage -> reviews 10 req/s answered 200 and 2 req/s
answered 500, reviews-v2 -> ratings 5 req/s, productpage -> tcp-echo 2 connections/s.

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import html
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import MONITORING, describe, run_suite  # noqa: E402
import test_istio_tasks as tasks  # noqa: E402

PROM_PORT = 19090
TCP_VIP = "198.19.1.6"
RATE = "4s"  # $__rate_interval for a 1 s scrape interval
SECONDS = 10
OK_RPS, ERR_RPS, RATINGS_RPS, TCP_CPS = 10, 2, 5, 2
TOLERANCE = 0.35  # relative, for request rates measured over a few seconds

TCP_ECHO = f"""\
apiVersion: v1
kind: Service
metadata: {{name: tcp-echo, namespace: default}}
spec:
  clusterIP: {TCP_VIP}
  selector: {{app: httpbin}}
  ports: [{{name: tcp, port: 9000}}]
"""

# Runs in a pod: `rps` requests a second for `seconds`, paced; a new connection per request when
# "close" (TCP connections opened and closed), else one keep-alive connection.
LOAD = r'''
import http.client, json, sys, time
a = json.loads(sys.argv[1])
n = int(a["rps"] * a["seconds"])
start = time.monotonic()
conn = None
codes = {}
for i in range(n):
    delay = start + i / a["rps"] - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        if conn is None:
            conn = http.client.HTTPConnection(a["host"], a["port"], timeout=10)
        conn.request("GET", a["path"], headers={"Host": "%s:%d" % (a["host"], a["port"]),
                                                "Connection": "close" if a.get("close") else "keep-alive"})
        res = conn.getresponse()
        res.read()
        codes[str(res.status)] = codes.get(str(res.status), 0) + 1
        if a.get("close"):
            conn.close()
            conn = None
    except Exception as e:
        codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
        conn = None
print(json.dumps(codes))
'''

PROM_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: remora-sidecars
  metrics_path: /stats/prometheus
  static_configs:
  - targets: {targets}
"""


def setup(m):
    tasks.setup(m)
    m.c.add_service("tcp-echo", TCP_VIP)
    m.start_app("httpbin", 9000)
    m.wait_app("httpbin", 9000)
    tasks.apply_text(m, "tcp-echo.yaml", TCP_ECHO)
    tasks.apply_sample(m, "virtual-service-all-v1.yaml")
    targets = [f"{m.ip(pod)}:15090" for pod, *_ in tasks.PODS]
    config = m.file("prometheus.yml", PROM_CONFIG.format(targets=json.dumps(targets)))
    data = os.path.join(m.tmp, "prometheus-data")
    os.makedirs(data)
    m.prometheus = m.c.spawn("node", ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                                      f"--web.listen-address=127.0.0.1:{PROM_PORT}"],
                             log_path=os.path.join(m.tmp, "prometheus.log"))
    deadline = time.monotonic() + 30
    while len(up_targets(m)) < len(targets):
        if time.monotonic() > deadline:
            raise Failure("prometheus does not scrape every sidecar", [json.dumps(prom(m, "up"))[:2000]])
        time.sleep(0.5)
    m.load_file = m.file("load.py", LOAD)
    m.window = send_traffic(m)


def prom(m, query, at=None):
    """The result vector of an instant query (at `at`, epoch seconds)."""
    args = ["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{PROM_PORT}/api/v1/query",
            "--data-urlencode", f"query={query}"]
    if at is not None:
        args += ["--data-urlencode", f"time={at:.3f}"]
    r = m.c.run("node", args, check=False, timeout=20)
    check(r.returncode == 0, f"prometheus query failed: {query}", describe(r))
    doc = json.loads(r.stdout)
    check(doc.get("status") == "success", f"prometheus refused {query}: {doc.get('error')}", [r.stdout[:1000]])
    return doc["data"]["result"]


def up_targets(m):
    try:
        return [s for s in prom(m, "up") if s["value"][1] == "1"]
    except (Failure, ValueError):
        return []


def start_traffic(m, seconds=SECONDS):
    """Paced load from two pods at once; returns what finish_traffic() waits for."""
    loads = [("productpage", {"host": "reviews", "port": 9080, "path": "/", "rps": OK_RPS}),
             ("productpage", {"host": "reviews", "port": 9080, "path": "/status?code=500", "rps": ERR_RPS}),
             ("reviews-v2", {"host": "ratings", "port": 9080, "path": "/", "rps": RATINGS_RPS}),
             ("productpage", {"host": "tcp-echo", "port": 9000, "path": "/", "rps": TCP_CPS, "close": True})]
    procs = []
    for pod, a in loads:
        a["seconds"] = seconds
        log = os.path.join(m.tmp, f"load-{pod}-{a['host']}-{a['rps']}-{time.monotonic_ns()}.log")
        procs.append((a, m.c.spawn(pod, ["python3", m.load_file, json.dumps(a)], user=1000, log_path=log)))
    return procs


def finish_traffic(procs):
    for a, p in procs:
        p.wait(timeout=a["seconds"] + 30)
        with open(p.log_path) as f:
            out = f.read().strip().splitlines()
        want = "500" if "500" in a["path"] else "200"
        got = json.loads(out[-1]) if out else {}
        check(got == {want: int(a["rps"] * a["seconds"])}, f"load {a}: {got}", [p.log_path])


def send_traffic(m):
    """The load, waited for; returns (start, end) in epoch seconds."""
    start = time.time()
    finish_traffic(start_traffic(m))
    end = time.time()
    time.sleep(3)  # prometheus scrapes past the window
    return start, end


def at(m):
    """An instant inside the load, late enough for every rate window to lie in it."""
    start, end = m.window
    return end - 1.5


def fill(query, **variables):
    """A dashboard query with its Grafana variables set (as a user picks them)."""
    variables.setdefault("__rate_interval", RATE)
    for name in sorted(variables, key=len, reverse=True):
        query = query.replace("$" + name, variables[name])
    return query


def value(series):
    return float(series["value"][1])


def near(got, want, what, tolerance=TOLERANCE):
    check(abs(got - want) <= tolerance * max(want, 1e-9), f"{what}: {got:.3f}, expected {want:.3f} (±{tolerance:.0%})")


def one(m, query, what):
    result = prom(m, query, at(m))
    check(len(result) == 1, f"{what}: expected one series, got {len(result)}", [query, json.dumps(result)[:2000]])
    return value(result[0])


def by(m, query, keys, what):
    """Series by the tuple of `keys` labels."""
    result = prom(m, query, at(m))
    check(result, f"{what}: no series", [query])
    out = {}
    for s in result:
        out[tuple(s["metric"].get(k, "") for k in keys)] = value(s)
    return out


HTTP_TOTAL = OK_RPS + ERR_RPS + RATINGS_RPS
REVIEWS = "reviews.default.svc.cluster.local"
TCP_SERVICE = "tcp-echo.default.svc.cluster.local"


def test_a_mesh_dashboard(m):
    """Istio Mesh Dashboard (7639): global volume, success rate, 4xx and 5xx, the per-workload
    table (volume, p50/p90/p99, success), TCP by workload, and the proxies by build."""
    m.involved = ["productpage", "reviews-v2"]
    src = 'reporter=~"source|waypoint"'
    near(one(m, fill(f'round(sum (rate(istio_requests_total{{{src}}}[$__rate_interval])), 0.01)'), "global request volume"),
         HTTP_TOTAL, "global request volume (req/s)")
    near(one(m, fill(f'sum (rate(istio_requests_total{{{src},response_code!~"5.."}}[$__rate_interval])) / '
                     f'sum (rate(istio_requests_total{{{src}}}[$__rate_interval]))'), "global success rate"),
         (OK_RPS + RATINGS_RPS) / HTTP_TOTAL, "global success rate", tolerance=0.1)
    check(one(m, fill(f'round(sum (rate(istio_requests_total{{{src},response_code=~"4.."}}[$__rate_interval])), 0.01)or vector(0)'),
              "4xxs") == 0, "4xxs: expected 0")
    near(one(m, fill(f'round(sum (rate(istio_requests_total{{{src},response_code=~"5.."}}[$__rate_interval])), 0.01)or vector(0)'),
             "5xxs"), ERR_RPS, "5xxs (req/s)")
    keys = ("destination_workload", "destination_workload_var")
    volume = by(m, fill(f'label_join(sum by (destination_workload,destination_workload_namespace,destination_service) '
                        f'(rate(istio_requests_total{{{src}}}[$__rate_interval])), "destination_workload_var", ".", '
                        f'"destination_workload", "destination_workload_namespace")'), keys, "HTTP/gRPC workloads")
    check(set(volume) == {("reviews-v1", "reviews-v1.default"), ("ratings-v1", "ratings-v1.default")},
          f"the workloads table lists {sorted(volume)}")
    near(volume[("reviews-v1", "reviews-v1.default")], OK_RPS + ERR_RPS, "reviews-v1 volume")
    near(volume[("ratings-v1", "ratings-v1.default")], RATINGS_RPS, "ratings-v1 volume")
    for q in ("0.5", "0.9", "0.99"):
        lat = by(m, fill(f'label_join(histogram_quantile({q}, sum by (le,destination_workload,destination_workload_namespace) '
                         f'(rate(istio_request_duration_milliseconds_bucket{{{src}}}[$__rate_interval]))), '
                         f'"destination_workload_var", ".", "destination_workload", "destination_workload_namespace")'),
                 ("destination_workload",), f"P{q} latency")
        check(set(lat) == {("reviews-v1",), ("ratings-v1",)} and all(0 < v < 1000 for v in lat.values()),
              f"P{q} latency by workload (ms): {lat}")
    ok = by(m, fill(f'label_join(sum by (destination_workload,destination_workload_namespace) '
                    f'(rate(istio_requests_total{{{src},response_code!~"5.."}}[$__rate_interval]))/sum by '
                    f'(destination_workload,destination_workload_namespace) (rate(istio_requests_total{{{src}}}'
                    f'[$__rate_interval])), "destination_workload_var", ".", "destination_workload", '
                    f'"destination_workload_namespace")'), ("destination_workload",), "success rate by workload")
    near(ok[("reviews-v1",)], OK_RPS / (OK_RPS + ERR_RPS), "reviews-v1 success rate", tolerance=0.1)
    near(ok[("ratings-v1",)], 1.0, "ratings-v1 success rate", tolerance=0.01)
    for metric in ("istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"):
        tcp = by(m, fill(f'label_join(sum by (destination_workload,destination_workload_namespace,destination_service) '
                         f'(rate({metric}{{{src}}}[$__rate_interval])), "destination_workload_var", ".", '
                         f'"destination_workload", "destination_workload_namespace")'),
                 ("destination_workload", "destination_service"), f"TCP workloads ({metric})")
        check(set(tcp) == {("httpbin-v1", TCP_SERVICE)} and all(v > 0 for v in tcp.values()),
              f"TCP workloads by {metric}: {tcp}")
    build = by(m, "sum by (component,tag) (istio_build)", ("component",), "proxies by build")
    check(build == {("proxy",): float(len(tasks.PODS))}, f"istio_build: {build}")


def test_b_service_dashboard(m):
    """Istio Service Dashboard (7636) for reviews (reporter destination, all clients) and for
    the TCP service."""
    m.involved = ["productpage", "reviews-v1"]
    v = {"service": REVIEWS, "qrep": "destination", "srcwl": ".*", "srcns": ".*"}
    sel = 'reporter=~"$qrep",destination_service="$service"'
    near(one(m, fill(f'round(sum(irate(istio_requests_total{{{sel}}}[$__rate_interval])), 0.001)', **v), "Client Request Volume"),
         OK_RPS + ERR_RPS, "reviews' request volume")
    near(one(m, fill(f'sum(irate(istio_requests_total{{{sel},response_code!~"5.*"}}[$__rate_interval])) / '
                     f'(sum(irate(istio_requests_total{{{sel}}}[$__rate_interval])) or on () vector(1))', **v),
             "Client Success Rate"), OK_RPS / (OK_RPS + ERR_RPS), "reviews' success rate", tolerance=0.1)
    for q in ("0.50", "0.90", "0.99"):
        sec = one(m, fill(f'(histogram_quantile({q}, sum(irate(istio_request_duration_milliseconds_bucket{{{sel}}}'
                          f'[$__rate_interval])) by (le)) / 1000) or histogram_quantile({q}, '
                          f'sum(irate(istio_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])) by (le))', **v),
                  f"Client Request Duration P{q}")
        check(0 < sec < 1, f"P{q} request duration {sec} s")
    src = ('destination_service="$service", reporter=~"$qrep", source_workload=~"$srcwl", '
           'source_workload_namespace=~"$srcns"')
    codes = by(m, fill(f'round(sum(irate(istio_requests_total{{connection_security_policy="mutual_tls",{src}}}'
                       f'[$__rate_interval])) by (source_workload, source_workload_namespace, response_code), 0.001)', **v),
               ("source_workload", "response_code"), "Incoming Requests By Source And Response Code (mTLS)")
    check(set(codes) == {("productpage-v1", "200"), ("productpage-v1", "500")}, f"incoming by source and code: {codes}")
    near(codes[("productpage-v1", "200")], OK_RPS, "productpage-v1's 200s")
    near(codes[("productpage-v1", "500")], ERR_RPS, "productpage-v1's 500s")
    plain = prom(m, fill(f'round(sum(irate(istio_requests_total{{connection_security_policy!="mutual_tls", {src}}}'
                         f'[$__rate_interval])) by (source_workload, source_workload_namespace, response_code), 0.001)', **v),
                 at(m))
    check(plain == [], f"the non-mTLS panel: every request here is mTLS, yet {plain}")
    for metric in ("istio_request_bytes", "istio_response_bytes"):
        size = by(m, fill(f'histogram_quantile(0.50, sum(irate({metric}_bucket{{{src}, connection_security_policy="mutual_tls"}}'
                          f'[$__rate_interval])) by (source_workload, source_workload_namespace, le))', **v),
                  ("source_workload",), f"{metric} P50 by source")
        check(set(size) == {("productpage-v1",)} and all(v > 0 for v in size.values()), f"{metric} P50: {size}")
    t = {"service": TCP_SERVICE, "qrep": "destination", "srcwl": ".*", "srcns": ".*"}
    for metric in ("istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"):
        tcp = by(m, fill(f'round(sum(irate({metric}{{connection_security_policy="mutual_tls", {src}}}[$__rate_interval])) '
                         f'by (source_workload, source_workload_namespace), 0.001)', **t),
                 ("source_workload",), f"{metric} by source (mTLS)")
        check(set(tcp) == {("productpage-v1",)} and all(v > 0 for v in tcp.values()), f"tcp-echo's {metric}: {tcp}")


def test_c_workload_dashboard(m):
    """Istio Workload Dashboard (7630): reviews-v1's inbound (volume, success, duration, by
    source) and productpage-v1's outbound (by destination service, TCP client traffic)."""
    m.involved = ["productpage", "reviews-v1"]
    v = {"namespace": "default", "workload": "reviews-v1", "qrep": "destination", "srcwl": ".*", "srcns": ".*"}
    sel = 'reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload"'
    near(one(m, fill(f'round(sum(irate(istio_requests_total{{{sel}}}[$__rate_interval])), 0.001)', **v), "Incoming Request Volume"),
         OK_RPS + ERR_RPS, "reviews-v1's incoming volume")
    near(one(m, fill(f'sum(irate(istio_requests_total{{{sel},response_code!~"5.*"}}[$__rate_interval])) / '
                     f'sum(irate(istio_requests_total{{{sel}}}[$__rate_interval]))', **v), "Incoming Success Rate"),
         OK_RPS / (OK_RPS + ERR_RPS), "reviews-v1's success rate", tolerance=0.1)
    sec = one(m, fill('(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"$qrep",'
                      'destination_workload=~"$workload", destination_workload_namespace=~"$namespace"}[$__rate_interval])) '
                      'by (le)) / 1000) or histogram_quantile(0.99, sum(irate(istio_request_duration_seconds_bucket{'
                      'reporter=~"$qrep",destination_workload=~"$workload", destination_workload_namespace=~"$namespace"}'
                      '[$__rate_interval])) by (le))', **v), "Request Duration P99")
    check(0 < sec < 1, f"reviews-v1's P99 {sec} s")
    ok = by(m, fill('sum(irate(istio_requests_total{reporter=~"$qrep", connection_security_policy="mutual_tls", '
                    'destination_workload_namespace=~"$namespace", destination_workload=~"$workload",response_code!~"5.*", '
                    'source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, '
                    'source_workload_namespace) / sum(irate(istio_requests_total{reporter=~"$qrep", connection_security_policy='
                    '"mutual_tls", destination_workload_namespace=~"$namespace", destination_workload=~"$workload", '
                    'source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, '
                    'source_workload_namespace)', **v), ("source_workload",), "Incoming Success Rate By Source")
    check(set(ok) == {("productpage-v1",)}, f"success by source: {ok}")
    near(ok[("productpage-v1",)], OK_RPS / (OK_RPS + ERR_RPS), "productpage-v1's success at reviews-v1", tolerance=0.1)
    out = {"namespace": "default", "workload": "productpage-v1", "dstsvc": ".*", "qrep": "destination"}
    dest = by(m, fill('round(sum(irate(istio_requests_total{destination_principal=~"spiffe.*", source_workload_namespace=~'
                      '"$namespace", source_workload=~"$workload", reporter="source", destination_service=~"$dstsvc"}'
                      '[$__rate_interval])) by (destination_service, response_code), 0.001)', **out),
              ("destination_service", "response_code"), "Outgoing Requests By Destination And Response Code (mTLS)")
    check(set(dest) == {(REVIEWS, "200"), (REVIEWS, "500")}, f"productpage-v1's outgoing: {dest}")
    near(dest[(REVIEWS, "200")], OK_RPS, "productpage-v1 -> reviews 200s")
    client = one(m, fill('sum(irate(istio_tcp_sent_bytes_total{reporter=~"$qrep", source_workload_namespace=~"$namespace", '
                         'source_workload=~"$workload"}[$__rate_interval])) + sum(irate(istio_tcp_received_bytes_total{'
                         'reporter=~"$qrep", source_workload_namespace=~"$namespace", source_workload=~"$workload"}'
                         '[$__rate_interval]))', **out), "TCP Client Traffic")
    check(client > 0, f"productpage-v1's TCP client traffic {client} B/s")


KIALI_HTTP_BY = ("source_cluster,source_workload_namespace,source_workload,source_canonical_service,"
                 "source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,"
                 "destination_service_name,destination_workload_namespace,destination_workload,"
                 "destination_canonical_service,destination_canonical_revision,request_protocol,response_code,"
                 "grpc_response_status,response_flags")
KIALI_TCP_BY = ("source_cluster,source_workload_namespace,source_workload,source_canonical_service,"
                "source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,"
                "destination_service_name,destination_workload_namespace,destination_workload,"
                "destination_canonical_service,destination_canonical_revision,response_flags")


def test_d_kiali_graph(m):
    """Kiali's graph of namespace default: the edges from istio_requests_total and
    istio_tcp_sent_bytes_total by reporter, with workload, canonical service and revision labels."""
    m.involved = ["productpage", "reviews-v2"]
    edge_keys = ("source_workload", "source_canonical_service", "source_canonical_revision",
                 "destination_workload", "destination_canonical_service", "destination_canonical_revision",
                 "destination_service_name", "response_code")
    for reporter in ("source", "destination"):
        edges = by(m, f'sum(rate(istio_requests_total{{reporter="{reporter}",source_workload_namespace="default"}}[{RATE}])) '
                      f'by ({KIALI_HTTP_BY}) > 0', edge_keys, f"Kiali's HTTP edges ({reporter})")
        want = {("productpage-v1", "productpage", "v1", "reviews-v1", "reviews", "v1", "reviews", "200"): OK_RPS,
                ("productpage-v1", "productpage", "v1", "reviews-v1", "reviews", "v1", "reviews", "500"): ERR_RPS,
                ("reviews-v2", "reviews", "v2", "ratings-v1", "ratings", "v1", "ratings", "200"): RATINGS_RPS}
        check(set(edges) == set(want), f"Kiali's HTTP edges by {reporter}: {sorted(edges)}")
        for k, rps in want.items():
            near(edges[k], rps, f"{reporter} edge {k[0]} -> {k[3]} {k[7]}")
    mtls = by(m, f'sum(rate(istio_requests_total{{reporter="destination",source_workload_namespace="default",'
                 f'connection_security_policy="mutual_tls"}}[{RATE}])) by (source_workload,destination_workload) > 0',
              ("source_workload", "destination_workload"), "Kiali's security (mTLS) edges")
    check(set(mtls) == {("productpage-v1", "reviews-v1"), ("reviews-v2", "ratings-v1")}, f"mTLS edges: {mtls}")
    tcp_keys = ("source_workload", "source_canonical_service", "destination_workload", "destination_canonical_service",
                "destination_service_name")
    for reporter in ("source", "destination"):
        tcp = by(m, f'sum(rate(istio_tcp_sent_bytes_total{{reporter="{reporter}",source_workload_namespace="default"}}'
                    f'[{RATE}])) by ({KIALI_TCP_BY}) > 0', tcp_keys, f"Kiali's TCP edges ({reporter})")
        check(set(tcp) == {("productpage-v1", "productpage", "httpbin-v1", "httpbin", "tcp-echo")},
              f"Kiali's TCP edges by {reporter}: {tcp}")


def test_e_live_mesh_graph(m):
    """remora-control's live mesh page: while traffic flows, /mesh/graph.json (scraped by the
    control plane from the proxies it knows) shows the edges with the rates, error rate, p99 and
    mTLS the traffic has, and every proxy SYNCED with its metrics reachable; /mesh is the page."""
    m.involved = ["productpage", "reviews-v2"]
    procs = start_traffic(m)
    time.sleep(SECONDS * 0.7)
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORING}/mesh/graph.json"], check=False)
    finish_traffic(procs)
    check(r.returncode == 0, "GET /mesh/graph.json failed", describe(r))
    graph = json.loads(r.stdout)
    edges = {(e["source"], e["destination"]): e for e in graph["edges"]}
    check(set(edges) == {("productpage-v1.default", "reviews-v1.default"), ("reviews-v2.default", "ratings-v1.default")},
          f"the graph's edges: {sorted(edges)}", [r.stdout[:3000]])
    reviews = edges[("productpage-v1.default", "reviews-v1.default")]
    near(reviews["rps"], OK_RPS + ERR_RPS, "productpage -> reviews req/s in the graph", tolerance=0.4)
    check(abs(reviews["errorRate"] - ERR_RPS / (OK_RPS + ERR_RPS)) < 0.1 and reviews["mtls"] == 1 and
          0 < reviews["p99Ms"] < 1000 and reviews["service"] == REVIEWS, f"the reviews edge: {reviews}")
    near(edges[("reviews-v2.default", "ratings-v1.default")]["rps"], RATINGS_RPS, "reviews -> ratings req/s", tolerance=0.4)
    proxies = graph["proxies"]
    check(len(proxies) == len(tasks.PODS) and all(p["status"] == "SYNCED" and p["metrics"] and p["certNotAfter"] > time.time()
                                                  for p in proxies), f"the graph's proxies: {proxies}")
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORING}/mesh"], check=False)
    check(r.returncode == 0 and "<title>Remora mesh</title>" in r.stdout and "/mesh/graph.json" in r.stdout,
          "GET /mesh is not the mesh page", [r.stdout[:500]])
    # A workload's routes and policies, and explain, as the page's click and form ask for them.
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORING}/mesh/proxy?name=productpage.default"],
                check=False)
    doc = json.loads(r.stdout)
    hosts = {x["host"]: x for x in doc.get("routes", [])}
    check(hosts.get(f"{REVIEWS}:9080", {}).get("virtualService") == "reviews.default" and
          doc["inbound"]["mtlsMode"] == "PERMISSIVE", f"/mesh/proxy: {r.stdout[:1500]}")
    r = m.c.run("node", ["curl", "-sS", "--max-time", "10", "-G", f"http://{MONITORING}/mesh/explain",
                         "--data-urlencode", "from=productpage.default", "--data-urlencode", "url=http://reviews:9080/"],
                check=False)
    doc = json.loads(r.stdout)
    check(doc.get("report", {}).get("verdict", {}).get("summary", "").startswith("served by reviews-v1") and
          doc["text"].startswith("served by reviews-v1"), f"/mesh/explain: {r.stdout[:1500]}")


def chromium(m, *args, timeout=90):
    """Headless Chromium in the node namespace (where remora-control's monitoring port is)."""
    profile = os.path.join(m.tmp, "chromium-profile")
    os.makedirs(profile, exist_ok=True)
    return m.c.run("node", ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
                   check=False, timeout=timeout)


def test_f_mesh_page_in_a_browser(m):
    """The mesh page in headless Chromium while traffic flows: the graph (drawn by the embedded
    library, no network) has the expected edges with their numbers, the tables list the edges and
    every proxy SYNCED; a screenshot is kept (docs/images/mesh-page.png is one)."""
    if not shutil.which("chromium"):
        raise Failure("chromium is not installed (scripts/setup.sh installs it)")
    m.involved = ["productpage", "reviews-v2"]
    r = m.c.run("node", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                         f"http://{MONITORING}/mesh/cytoscape.min.js"], check=False)
    check(r.stdout.startswith("200 ") and int(r.stdout.split()[1]) > 100000,
          f"the embedded graph library: {r.stdout}", [describe(r)])
    procs = start_traffic(m, seconds=25)
    time.sleep(6)
    url = f"http://{MONITORING}/mesh"
    shot = os.path.join(m.tmp, "mesh-page.png")
    chromium(m, "--virtual-time-budget=4000", "--window-size=1400,1000", "--hide-scrollbars", f"--screenshot={shot}", url)
    dom = chromium(m, "--virtual-time-budget=4000", "--dump-dom", url)
    finish_traffic(procs)
    check(dom.returncode == 0 and "<title>Remora mesh</title>" in dom.stdout, "chromium did not load /mesh", [describe(dom)])
    page = html.unescape(dom.stdout)
    start = page.find('<pre id="graph-summary">')
    summary = page[start + len('<pre id="graph-summary">'):page.find("</pre>", start)] if start >= 0 else ""
    lines = {line.split(":")[0]: line for line in summary.splitlines() if line}
    check(set(lines) == {"productpage-v1.default -> reviews-v1.default", "reviews-v2.default -> ratings-v1.default"},
          f"the drawn graph's edges: {sorted(lines)}", [summary[:2000]])
    reviews = lines["productpage-v1.default -> reviews-v1.default"]
    numbers = reviews.split(": ", 1)[1]  # "11.9 rps, 17% err, p99 88 ms, mTLS"
    near(float(numbers.split(" rps")[0]), OK_RPS + ERR_RPS, "the page's productpage -> reviews req/s", tolerance=0.4)
    err = float(numbers.split(", ")[1].split("%")[0])
    check(abs(err - 100 * ERR_RPS / (OK_RPS + ERR_RPS)) <= 8 and numbers.endswith("mTLS"), f"the reviews edge's label: {reviews}")
    check(page.count("SYNCED") >= len(tasks.PODS), "the proxies table does not show every proxy SYNCED", [page[-3000:]])
    check(os.path.exists(shot) and os.path.getsize(shot) > 10000, "no screenshot", [describe(dom)])


TESTS = [
    ("a_mesh_dashboard", test_a_mesh_dashboard),
    ("b_service_dashboard", test_b_service_dashboard),
    ("c_workload_dashboard", test_c_workload_dashboard),
    ("d_kiali_graph", test_d_kiali_graph),
    ("e_live_mesh_graph", test_e_live_mesh_graph),
    ("f_mesh_page_in_a_browser", test_f_mesh_page_in_a_browser),
]


def main():
    if not shutil.which("prometheus"):
        print("SKIP: prometheus is not installed")
        return 77
    return run_suite(__doc__.splitlines()[0], "remora-g", "remora-test-dash-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
