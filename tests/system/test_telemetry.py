#!/usr/bin/env python3
"""System test of Remora's observability: Istio metrics from both sidecars, a real Prometheus
scraping them, access logs, and traces exported to a Zipkin collector, in a local cluster.

    python3 tests/system/test_telemetry.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node      remora-control (CA); Zipkin test collectors on :9411 and, slow, on :9412;
              Prometheus on 127.0.0.1:9490 during the Prometheus test
    client    workload sleep (app=sleep, version=v1), meshed; JSON access log, spans to :9411
    hello-1   workload hello-v1 (app=hello, version=v1), meshed, echo app on :8080; service hello;
              its telemetry settings come from a MeshConfig file (TEXT access log, zipkin :9411)
    outside   not meshed; echo app on :9090 (passthrough traffic)
    slowz     workload slowz, meshed, 100% sampling, spans to the slow collector

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import NODE_IP  # noqa: E402
from harness import Failure, check, clip  # noqa: E402
from test_mesh import (HELLO_VIP, PROXY_UID, Mesh, describe, headers_of, run_suite, spiffe,  # noqa: E402
                       tail)

COLLECTOR = os.path.join(HERE, "apps", "zipkin_collector.py")
ZIPKIN, SLOW_ZIPKIN = f"{NODE_IP}:9411", f"{NODE_IP}:9412"
PROMETHEUS_WEB = "127.0.0.1:9490"
HELLO_SVC = "hello.default.svc.cluster.local"

REGISTRY_YAML = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: hello, namespace: default}}
spec:
  hosts: [{hello_svc}]
  addresses: [{hello_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: hello}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: hello-1, namespace: default}}
spec:
  address: {hello_ip}
  labels: {{app: hello, security.istio.io/tlsMode: istio}}
  serviceAccount: hello
"""

MESH_CONFIG = f"""\
accessLogFile: {{log}}
accessLogEncoding: TEXT
defaultConfig:
  tracing:
    sampling: 1
    zipkin:
      address: {ZIPKIN}
"""

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ISTIO_UNIT_LINT = 'istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"'
CALLER_SPAN = "00f067aa0ba902b7"


class Telemetry(Mesh):
    def log_file(self, pod):
        path = os.path.join(self.tmp, f"access-{pod}.log")
        with open(path, "a"):
            pass
        os.chown(path, PROXY_UID, PROXY_UID)
        return path

    def scrape(self, pod):
        r = self.c.run("node", ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                                f"http://{self.ip(pod)}:15090/stats/prometheus"],
                       check=False, timeout=10)
        body, _, code = r.stdout.rpartition("\n")
        check(r.returncode == 0 and code == "200", f"scraping {pod}:15090 failed", describe(r))
        return body

    def spans(self, port=9411):
        r = self.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{NODE_IP}:{port}/spans"],
                       check=False, timeout=10)
        check(r.returncode == 0, "the test collector did not answer", describe(r))
        return json.loads(r.stdout)


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] from Prometheus' text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise Failure("a metrics line is not in Prometheus' text format", [line])
        labels = dict(LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def value(samples, name, **want):
    """Sum of `name` over the samples whose labels include `want`."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in want.items()))


def labels_of(samples, name, **want):
    return [l for n, l, _ in samples if n == name and all(l.get(k) == x for k, x in want.items())]


def setup(m):
    c = m.c
    for name in ("client", "hello-1", "outside", "slowz"):
        c.add_pod(name)
    c.add_service("hello", HELLO_VIP)
    m.file("registry.yaml", REGISTRY_YAML.format(hello_ip=m.ip("hello-1"), hello_svc=HELLO_SVC,
                                                    hello_vip=HELLO_VIP))
    m.start_control()
    m.collector = c.spawn("node", ["python3", COLLECTOR, "--bind", NODE_IP, "--port", "9411"],
                          log_path=os.path.join(m.tmp, "collector.log"))
    m.slow_collector = c.spawn("node", ["python3", COLLECTOR, "--bind", NODE_IP, "--port", "9412",
                                        "--delay-ms", "20000"],
                               log_path=os.path.join(m.tmp, "slow-collector.log"))
    m.start_app("hello-1", 8080)
    m.start_app("outside", 9090)
    m.wait_app("hello-1", 8080)
    m.wait_app("outside", 9090)
    c.wait_port("node", NODE_IP, 9411, proc=m.collector)
    c.wait_port("node", NODE_IP, 9412, proc=m.slow_collector)
    m.access_client = m.log_file("client")
    m.access_hello = m.log_file("hello-1")
    mesh_config = m.file("mesh.yaml", MESH_CONFIG.format(log=m.access_hello))
    pods = {
        "client": ("client", ["--workload-name", "sleep", "--labels", "app=sleep,version=v1",
                              "--access-log", m.access_client, "--access-log-encoding", "JSON",
                              "--zipkin-address", ZIPKIN]),
        "hello-1": ("hello", ["--workload-name", "hello-v1", "--labels", "app=hello,version=v1",
                              "--mesh-config", mesh_config]),
        "slowz": ("slowz", ["--workload-name", "slowz", "--trace-sampling", "100",
                            "--zipkin-address", SLOW_ZIPKIN]),
    }
    for pod, (sa, extra) in pods.items():
        m.init(pod)
        m.start_proxy(pod, sa, ["--pod-ip", m.ip(pod), *extra])
    for pod in pods:
        m.wait_ready(pod)


# ---------------------------------------------------------------------------------------------


def test_a_metrics_from_both_reporters(m):
    m.involved = ["client", "hello-1"]
    before_c, before_h = parse_metrics(m.scrape("client")), parse_metrics(m.scrape("hello-1"))
    # 500, not 503: Istio's default retries would answer a 503 three times (retriable-status-codes).
    for code, n in (("200", 5), ("500", 3)):
        for _ in range(n):
            rc, status, body, r = m.curl("client", f"http://hello:8080/status?code={code}")
            check(rc == 0 and status == int(code), f"request for {code} got {status}", describe(r))
    after_c, after_h = parse_metrics(m.scrape("client")), parse_metrics(m.scrape("hello-1"))
    common = dict(source_workload="sleep", source_workload_namespace="default", source_app="sleep",
                  source_version="v1", source_principal=spiffe("client"),
                  destination_workload="hello-v1", destination_workload_namespace="default",
                  destination_app="hello", destination_version="v1",
                  destination_principal=spiffe("hello"), destination_service=HELLO_SVC,
                  destination_service_name="hello", destination_service_namespace="default",
                  destination_canonical_service="hello", source_canonical_service="sleep",
                  request_protocol="http", response_flags="-")
    reporters = (("client", before_c, after_c, dict(reporter="source", connection_security_policy="unknown")),
                 ("hello-1", before_h, after_h, dict(reporter="destination",
                                                     connection_security_policy="mutual_tls")))
    for pod, before, after, extra in reporters:
        for code, n in (("200", 5), ("500", 3)):
            want = dict(common, response_code=code, **extra)
            got = value(after, "istio_requests_total", **want) - value(before, "istio_requests_total", **want)
            near = labels_of(after, "istio_requests_total", response_code=code)
            check(got == n, f"{pod}: istio_requests_total for {code} moved by {got}, expected {n}",
                  [f"wanted labels: {want}", "series with that code:"] + [json.dumps(x) for x in near])
            hist = (value(after, "istio_request_duration_milliseconds_count", **want) -
                    value(before, "istio_request_duration_milliseconds_count", **want))
            check(hist == n, f"{pod}: duration histogram count moved by {hist}, expected {n}")
            inf = (value(after, "istio_request_duration_milliseconds_bucket", le="+Inf", **want) -
                   value(before, "istio_request_duration_milliseconds_bucket", le="+Inf", **want))
            check(inf == n, f"{pod}: the +Inf bucket moved by {inf}, expected {n}")
            rb = (value(after, "istio_response_bytes_sum", **want) -
                  value(before, "istio_response_bytes_sum", **want))
            check(rb > 100 * n, f"{pod}: istio_response_bytes_sum moved by {rb} for {n} JSON answers")


def test_b_metadata_header_never_reaches_apps(m):
    m.involved = ["client", "hello-1"]
    doc = m.get_json("client", "http://hello:8080/")
    seen = [k for k in headers_of(doc) if "peer-metadata" in k]
    check(not seen, "the server app saw the sidecars' metadata header", json.dumps(doc, indent=1))
    rc, status, body, r = m.curl("client", "http://hello:8080/", "-D", "-")
    check(rc == 0 and status == 200, "request failed", describe(r))
    check("peer-metadata" not in body.lower(), "the client app saw the metadata header in the response",
          clip(body))
    # A caller cannot claim a workload: a header it sends is dropped by its own sidecar... and a
    # forged one on a plaintext hop never reaches labels (the sidecar replaces it).
    before = parse_metrics(m.scrape("hello-1"))
    rc, status, body, r = m.curl("client", "http://hello:8080/", "-H",
                                 "x-remora-peer-metadata: wl=forged;ns=evil")
    check(status == 200, "request with a forged metadata header failed", describe(r))
    after = parse_metrics(m.scrape("hello-1"))
    forged = value(after, "istio_requests_total", source_workload="forged") - \
        value(before, "istio_requests_total", source_workload="forged")
    check(forged == 0, "a forged metadata header from the app became the source_workload label")


def test_c_passthrough_tcp_metrics(m):
    m.involved = ["client"]
    outside = f"{m.ip('outside')}:9090"
    before = parse_metrics(m.scrape("client"))
    doc = m.get_json("client", f"http://{outside}/")
    want = dict(reporter="source", source_workload="sleep", destination_service=outside,
                destination_service_name="PassthroughCluster", request_protocol="tcp")
    deadline = time.monotonic() + 5
    while True:
        after = parse_metrics(m.scrape("client"))
        d = {n: value(after, n, **want) - value(before, n, **want)
             for n in ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                       "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total")}
        if d["istio_tcp_connections_closed_total"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(d["istio_tcp_connections_opened_total"] == 1 and d["istio_tcp_connections_closed_total"] == 1,
          f"passthrough connection counts moved by {d}", [json.dumps(x) for x in
                                                          labels_of(after, "istio_tcp_connections_opened_total")])
    check(d["istio_tcp_sent_bytes_total"] > len(json.dumps(doc)) // 2,
          f"istio_tcp_sent_bytes_total moved by {d['istio_tcp_sent_bytes_total']}")
    check(d["istio_tcp_received_bytes_total"] > 40,
          f"istio_tcp_received_bytes_total moved by {d['istio_tcp_received_bytes_total']}")


def test_d_promtool_accepts_the_output(m):
    promtool = shutil.which("promtool")
    check(promtool, "promtool is not installed (Debian package prometheus)")
    for pod in ("client", "hello-1"):
        text = m.scrape(pod)
        r = m.c.run("node", [promtool, "check", "metrics"], input=text, check=False)
        # Exit 1 is a parse error; 3 lists lint problems. Istio's own metric name trips the unit
        # lint (milliseconds, not seconds) and must stay as Istio spells it; nothing else may.
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if l.strip() and l.strip() != ISTIO_UNIT_LINT]
        check(r.returncode in (0, 3) and not problems,
              f"promtool check metrics refuses {pod}'s output", describe(r))
        for family in ("istio_requests_total", "istio_request_duration_milliseconds",
                       "istio_request_bytes", "istio_response_bytes"):
            check(f"# TYPE {family} " in text, f"{pod} has no {family}")
    text = m.scrape("client")
    for family in ("istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
                   "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                   "remora_cert_expiration_timestamp_seconds", "remora_downstream_rq_total",
                   "remora_upstream_cx_idle", "remora_tracing_spans_sent_total"):
        check(f"# TYPE {family} " in text, f"client has no {family}")
    idle = value(parse_metrics(text), "remora_upstream_cx_idle")
    h2 = value(parse_metrics(text), "remora_upstream_cx_http2")
    check(idle + h2 >= 1, f"remora_upstream_cx_idle is {idle} and remora_upstream_cx_http2 {h2}: the "
          "client's pooled connection to hello-1 (HTTP/2 between sidecars) should stay between requests")
    exp = value(parse_metrics(text), "remora_cert_expiration_timestamp_seconds")
    check(time.time() < exp < time.time() + 25 * 3600,
          f"remora_cert_expiration_timestamp_seconds {exp} is not within a day from now")


def test_e_prometheus_scrapes_and_answers_promql(m):
    m.involved = ["client", "hello-1"]
    prom = shutil.which("prometheus")
    check(prom, "prometheus is not installed (Debian package prometheus)")
    cfg = m.file("prometheus.yml", f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: remora-sidecars
    metrics_path: /stats/prometheus
    static_configs:
      - targets: ["{m.ip('client')}:15090", "{m.ip('hello-1')}:15090"]
""")
    data = os.path.join(m.tmp, "prometheus-data")
    log = os.path.join(m.tmp, "prometheus.log")
    proc = m.c.spawn("node", [prom, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                              f"--web.listen-address={PROMETHEUS_WEB}"], log_path=log)
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            m.curl("client", "http://hello:8080/")
            time.sleep(0.1)
    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    query = 'sum by (destination_service) (rate(istio_requests_total{reporter="source"}[5s]))'
    url = f"http://{PROMETHEUS_WEB}/api/v1/query?query={urllib.parse.quote(query)}"
    last = ""
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            check(proc.poll() is None, "prometheus exited", [tail(log)])
            r = m.c.run("node", ["curl", "-sS", "--max-time", "3", url], check=False, timeout=10)
            last = r.stdout
            try:
                res = json.loads(r.stdout)["data"]["result"]
            except (ValueError, KeyError, TypeError):
                res = []
            rate = {x["metric"].get("destination_service"): float(x["value"][1]) for x in res}
            if rate.get(HELLO_SVC, 0) > 0:
                break
            time.sleep(1)
        else:
            targets = m.c.run("node", ["curl", "-sS", f"http://{PROMETHEUS_WEB}/api/v1/targets"],
                              check=False).stdout
            raise Failure("Prometheus never answered a request rate for the hello service",
                          [f"query: {query}", f"last answer: {clip(last)}", f"targets: {clip(targets)}",
                           tail(log)])
    finally:
        stop.set()
        t.join(10)
        m.c.stop(proc)


def test_f_w3c_trace_through_both_sidecars(m):
    m.involved = ["client", "hello-1"]
    tp = f"00-{TRACE}-{CALLER_SPAN}-01"
    doc = m.get_json("client", "http://hello:8080/traced", "-H", f"traceparent: {tp}",
                     "-H", "x-request-id: trace-test-1")
    h = headers_of(doc)
    seen = h.get("traceparent", "")
    check(seen.startswith(f"00-{TRACE}-") and seen.endswith("-01") and CALLER_SPAN not in seen,
          f"the app saw traceparent {seen!r}: expected trace {TRACE}, a new parent, sampled")
    check(h.get("x-request-id") == "trace-test-1", f"x-request-id became {h.get('x-request-id')!r}")
    server_span_id = seen.split("-")[2]
    spans = wait_spans(m, TRACE, 2)
    client = [s for s in spans if s.get("kind") == "CLIENT"]
    server = [s for s in spans if s.get("kind") == "SERVER"]
    check(len(client) == 1 and len(server) == 1, f"expected one CLIENT and one SERVER span, got "
          f"{[(s.get('kind'), s['localEndpoint'].get('serviceName')) for s in spans]}",
          [json.dumps(s) for s in spans])
    c, s = client[0], server[0]
    check(c.get("parentId") == CALLER_SPAN, f"client span's parent is {c.get('parentId')}, "
          f"expected the caller's span {CALLER_SPAN}")
    check(s.get("parentId") == c["id"], f"server span's parent is {s.get('parentId')}, expected "
          f"the client span {c['id']}")
    check(s["id"] == server_span_id, f"the app's parent span {server_span_id} is not the server "
          f"span {s['id']}")
    check(c["localEndpoint"].get("serviceName") == "sleep.default" and
          s["localEndpoint"].get("serviceName") == "hello.default",
          f"service names {c['localEndpoint']} / {s['localEndpoint']}")
    for span in (c, s):
        tags = span.get("tags", {})
        check(tags.get("http.method") == "GET" and tags.get("http.status_code") == "200" and
              tags.get("guid:x-request-id") == "trace-test-1" and
              tags.get("http.url", "").endswith("/traced") and "node_id" in tags and
              "istio.canonical_service" in tags,
              f"{span['kind']} span tags are not Istio's", [json.dumps(tags)])
    check(c["tags"].get("upstream_cluster") == f"outbound|8080||{HELLO_SVC}",
          f"client span upstream_cluster {c['tags'].get('upstream_cluster')}")
    check(c["timestamp"] <= s["timestamp"] and s["duration"] <= c["duration"] + 1000,
          "the server span does not sit inside the client span", [json.dumps(c), json.dumps(s)])
    errors = m.spans()["errors"]
    check(not errors, "the collector found invalid Zipkin v2 JSON", errors[:5])


def wait_spans(m, trace, n, limit=8):
    deadline = time.monotonic() + limit
    while True:
        spans = [s for s in m.spans()["spans"] if s.get("traceId") == trace]
        if len(spans) >= n or time.monotonic() > deadline:
            return spans
        time.sleep(0.3)


def test_g_b3_headers_are_continued(m):
    m.involved = ["client", "hello-1"]
    trace64 = "a3ce929d0e0e4736"
    doc = m.get_json("client", "http://hello:8080/", "-H", f"x-b3-traceid: {trace64}",
                     "-H", "x-b3-spanid: 1111111111111111", "-H", "x-b3-sampled: 1")
    h = headers_of(doc)
    check(h.get("x-b3-traceid") == trace64 and h.get("x-b3-sampled") == "1",
          f"B3 headers the app saw: {json.dumps({k: v for k, v in h.items() if 'b3' in k})}")
    check("traceparent" not in h, "a 64-bit B3 trace was turned into a traceparent")
    spans = wait_spans(m, trace64, 2)
    check(len(spans) == 2, f"{len(spans)} span(s) for the B3 trace, expected 2")
    server = [s for s in spans if s["kind"] == "SERVER"]
    check(server and h.get("x-b3-spanid") == server[0]["id"] and
          h.get("x-b3-parentspanid") == server[0].get("parentId"),
          "the app's x-b3-spanid/parentspanid are not the server span's", [json.dumps(spans)])
    single = f"{TRACE[:16]}{'5' * 16}-2222222222222222-1"
    doc = m.get_json("client", "http://hello:8080/", "-H", f"b3: {single}")
    b3 = headers_of(doc).get("b3", "")
    check(b3.startswith(f"{TRACE[:16]}{'5' * 16}-") and "-1-" in b3,
          f"single b3 header seen by the app: {b3!r}")


def test_h_unsampled_and_malformed(m):
    m.involved = ["client", "hello-1"]
    unsampled = "0af7651916cd43dd8448eb211c80319c"
    doc = m.get_json("client", "http://hello:8080/", "-H", f"traceparent: 00-{unsampled}-{CALLER_SPAN}-00")
    check(headers_of(doc).get("traceparent", "").endswith("-00"), "the caller's 'not sampled' was lost")
    doc = m.get_json("client", "http://hello:8080/", "-H", "traceparent: 00-garbage",
                     "-H", "b3: nonsense", "-H", "x-b3-traceid: zz")
    tp = headers_of(doc).get("traceparent", "")
    check(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", tp),
          f"after malformed trace headers the app saw traceparent {tp!r}: expected a fresh valid one")
    time.sleep(2.5)  # two flush intervals
    check(not [s for s in m.spans()["spans"] if s["traceId"] == unsampled],
          "spans were exported for a trace its caller did not sample")


def test_i_request_id_and_access_logs(m):
    m.involved = ["client", "hello-1"]
    doc = m.get_json("client", "http://hello:8080/logged?x=1", "-A", "telemetry-test/1")
    rid = headers_of(doc).get("x-request-id", "")
    check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid),
          f"x-request-id {rid!r} generated by the sidecar is not a UUID v4")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        client_lines = [l for l in open(m.access_client).read().splitlines() if rid in l]
        hello_lines = [l for l in open(m.access_hello).read().splitlines() if rid in l]
        if client_lines and hello_lines:
            break
        time.sleep(0.2)
    check(len(client_lines) == 1, f"{len(client_lines)} client access-log line(s) with {rid}",
          [tail(m.access_client, 5)])
    check(len(hello_lines) == 1, f"{len(hello_lines)} hello-1 access-log line(s) with {rid}",
          [tail(m.access_hello, 5)])
    j = json.loads(client_lines[0])
    check(j["method"] == "GET" and j["path"] == "/logged?x=1" and j["response_code"] == 200 and
          j["protocol"] == "HTTP/1.1" and j["response_flags"] == "-" and
          j["upstream_host"] == f"{m.ip('hello-1')}:8080" and j["user_agent"] == "telemetry-test/1" and
          j["downstream_peer_uri_san"] == spiffe("hello") and j["bytes_sent"] > 100 and
          j["reporter"] == "source" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", j["start_time"]),
          "the client's JSON access-log line is not right", [client_lines[0]])
    text = hello_lines[0]
    check(re.match(r'^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] "GET /logged\?x=1 HTTP/1\.1" 200 - 0 \d+ \d+ \d+ ', text)
          and f'"{spiffe("client")}" destination' in text and '"telemetry-test/1"' in text,
          "hello-1's text access-log line is not Envoy's format with the peer", [text])
    # remoractl trace joins both sidecars' lines, the caller's first.
    r = m.c.run("node", [m.ctl_bin, "trace", rid, m.access_client, m.access_hello], check=False)
    rows = [l.split() for l in r.stdout.splitlines()[2:]]
    check(r.returncode == 0 and len(rows) == 2 and rows[0][1:3] == ["source", "access-client.log"] and
          rows[1][1:3] == ["destination", "access-hello-1.log"],
          "remoractl trace does not join both sidecars' lines", describe(r))
    r = m.c.run("node", [m.ctl_bin, "trace", "no-such-id", m.access_client], check=False)
    check(r.returncode == 1 and "no access-log line" in r.stderr, "remoractl trace of an unknown id",
          describe(r))


def test_j_slow_collector_slows_no_request(m):
    m.involved = ["slowz"]
    failures = []
    for i in range(30):
        rc, status, body, r = m.curl("slowz", f"http://hello:8080/?n={i}", max_time=3)
        if status != 200:
            failures.append(f"request {i}: exit {rc}, HTTP {status}")
    check(not failures, "requests failed while spans went to a collector that takes 20 s per POST",
          failures[:5])
    # The exporter gave up on its batches (2 s timeout per POST) and counted them.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = parse_metrics(m.scrape("slowz"))
        if value(s, "remora_tracing_export_failures_total") >= 1:
            break
        time.sleep(1)
    else:
        raise Failure("remora_tracing_export_failures_total never moved for the slow collector")


TESTS = [
    ("a_metrics_from_both_reporters", test_a_metrics_from_both_reporters),
    ("b_metadata_header_never_reaches_apps", test_b_metadata_header_never_reaches_apps),
    ("c_passthrough_tcp_metrics", test_c_passthrough_tcp_metrics),
    ("d_promtool_accepts_the_output", test_d_promtool_accepts_the_output),
    ("e_prometheus_scrapes_and_answers_promql", test_e_prometheus_scrapes_and_answers_promql),
    ("f_w3c_trace_through_both_sidecars", test_f_w3c_trace_through_both_sidecars),
    ("g_b3_headers_are_continued", test_g_b3_headers_are_continued),
    ("h_unsampled_and_malformed", test_h_unsampled_and_malformed),
    ("i_request_id_and_access_logs", test_i_request_id_and_access_logs),
    ("j_slow_collector_slows_no_request", test_j_slow_collector_slows_no_request),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-t", "remora-test-telemetry-", setup, TESTS,
                     mesh_class=Telemetry)


if __name__ == "__main__":
    sys.exit(main())
