#!/usr/bin/env python3
"""System test of faults under steady load: rolling restarts, a killed app, a CA outage across a
renewal, a DNS failure and a partitioned endpoint, every request counted by status and flag.

    python3 tests/system/test_faults.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

One cluster (prefix remora-f<pid>):

    node        remora-control (CA, config, registry), MeshConfig terminationDrainDuration 2s
    client      sa client, subscribed to remora-control (endpoints are the registered pods)
    static      sa client, --config faults.yaml: ServiceEntry/WorkloadEntry (static endpoints),
                a DestinationRule (subsets with outlierDetection, connectTimeout) and a
                VirtualService choosing them by the header x-fault (else Istio's default retries)
    legacy      sa client, --registry registry.yaml (the static registry, no --config)
    web-1/2     sa web, labels app=web, subscribed proxies (drain 2 s from the MeshConfig), echo
                app on :8080; service web (Kubernetes Service in remora-control, ServiceEntry in
                the files), VIP 198.19.0.40
    ca-client   sa ca-client, --config faults.yaml, --cert-ttl 30s (started by the CA test)
    ca-server   sa ca-server, --registry, --cert-ttl 30s, echo app; service caweb, 198.19.0.41

The load is a Python client in the caller's pod (uid 1000, captured by iptables): a few threads at
a set rate over keep-alive connections to the VIP, every request recorded with its times, status,
x-remora-response-flags and the pod that answered (or the error).

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import calendar
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import APP_UID, NODE_IP, describe, run_suite, tail  # noqa: E402
from test_distribution import (apply, dump, endpoints_of, proxy_status, start_control,  # noqa: E402
                               start_subscribed_proxy, wait_for)

WEB_VIP, CAWEB_VIP = "198.19.0.40", "198.19.0.41"
WEB_PODS = ("web-1", "web-2")
DRAIN_S = 2  # MeshConfig defaultConfig.terminationDrainDuration, read by the subscribed proxies
CERT_TTL_S = 30
WEB = "web.default.svc.cluster.local"
DEFAULT_CLUSTER = f"outbound|8080||{WEB}"
# The rolling restarts' requests take 25 ms in the app, as real work does: each load's three
# clients are busy most of the time, so requests are in flight on the replica whose proxy is about
# to exit (a drain that cuts them at its end is caught nearly every run). Three clients per load.
SLOW = "/slow?ms=25"

MESH_CONFIG = f"""\
defaultConfig:
  terminationDrainDuration: {DRAIN_S}s
"""

# The control plane's view: a Kubernetes Service; its endpoints are the registered web pods.
CONTROL_CONFIG = f"""\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: {WEB_VIP}
  selector: {{app: web}}
  ports: [{{name: http, port: 8080}}]
"""

# The static clients' view (--registry, and the first half of --config).
REGISTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: default}}
spec:
  hosts: [web.default.svc.cluster.local]
  addresses: [{web_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: web}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web-1, namespace: default}}
spec:
  address: {web1}
  labels: {{app: web, security.istio.io/tlsMode: istio}}
  serviceAccount: web
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web-2, namespace: default}}
spec:
  address: {web2}
  labels: {{app: web, security.istio.io/tlsMode: istio}}
  serviceAccount: web
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: caweb, namespace: default}}
spec:
  hosts: [caweb.default.svc.cluster.local]
  addresses: [{caweb_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: {caserver}
    labels: {{app: caweb, security.istio.io/tlsMode: istio}}
    serviceAccount: ca-server
"""

# Each fault scenario has its own subset, so outlier state (ejections, their multipliers) from one
# scenario never leaks into another; the default route has no DestinationRule policy at all and
# Istio's default retries.
KILL_OD = "{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}"
PARTITION_OD = ("{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, "
                "maxEjectionPercent: 50}")
ROUTING = f"""\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: default}}
spec:
  host: web
  subsets:
  - name: kill-retry
    labels: {{app: web}}
    trafficPolicy: {{outlierDetection: {KILL_OD}}}
  - name: kill-noretry
    labels: {{app: web}}
    trafficPolicy: {{outlierDetection: {KILL_OD}}}
  - name: partition
    labels: {{app: web}}
    trafficPolicy:
      connectionPool: {{tcp: {{connectTimeout: 1s}}}}
      outlierDetection: {PARTITION_OD}
  - name: partition-h1
    labels: {{app: web}}
    trafficPolicy:
      connectionPool:
        tcp: {{connectTimeout: 1s}}
        http: {{h2UpgradePolicy: DO_NOT_UPGRADE, maxRequestsPerConnection: 1}}
      outlierDetection: {PARTITION_OD}
  - name: partition-h1-route-timeout
    labels: {{app: web}}
    trafficPolicy:
      connectionPool:
        http: {{h2UpgradePolicy: DO_NOT_UPGRADE, maxRequestsPerConnection: 1}}
      outlierDetection: {PARTITION_OD}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: [web]
  http:
  - match: [{{headers: {{x-fault: {{exact: kill-retry}}}}}}]
    route: [{{destination: {{host: web, subset: kill-retry}}}}]
  - match: [{{headers: {{x-fault: {{exact: kill-noretry}}}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: web, subset: kill-noretry}}}}]
  - match: [{{headers: {{x-fault: {{exact: partition}}}}}}]
    timeout: 3s
    retries: {{attempts: 0}}
    route: [{{destination: {{host: web, subset: partition}}}}]
  - match: [{{headers: {{x-fault: {{exact: partition-h1}}}}}}]
    timeout: 3s
    retries: {{attempts: 0}}
    route: [{{destination: {{host: web, subset: partition-h1}}}}]
  - match: [{{headers: {{x-fault: {{exact: partition-h1-route-timeout}}}}}}]
    timeout: 1s
    retries: {{attempts: 0}}
    route: [{{destination: {{host: web, subset: partition-h1-route-timeout}}}}]
  - route: [{{destination: {{host: web}}}}]
---
# New mTLS connections to ca-server all the time, so the CA test sees handshakes made with the
# certificate of the moment (the old one while the CA is down, the renewed one after). HTTP/1.1,
# so that each connection's requests are few and sequential.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: caweb, namespace: default}}
spec:
  host: caweb
  trafficPolicy:
    connectionPool: {{http: {{h2UpgradePolicy: DO_NOT_UPGRADE, maxRequestsPerConnection: 20}}}}
"""

# Runs in a pod as the app: `threads` clients, together at about `rate` requests/s, over keep-alive
# connections (a new one every `per_conn` requests), until `seconds` pass or `stop_file` exists.
# Prints {"t0": unix time, "records": [[start, end, status, flag, pod or error], ...]} (times in
# seconds after t0; status 0 for an exception).
LOAD = r'''
import http.client, json, os, sys, threading, time
a = json.loads(sys.argv[1])
records, lock = [], threading.Lock()
t0 = time.time()
period = a["threads"] / float(a["rate"])
def stopped():
    return time.time() - t0 >= a["seconds"] or os.path.exists(a["stop_file"])
def worker(k):
    conn, n = None, 0
    nxt = time.time() + period * k / a["threads"]
    headers = dict(a.get("headers", {}))
    headers["Host"] = a["host_header"]
    while not stopped():
        now = time.time()
        if nxt > now:
            time.sleep(nxt - now)
        nxt = max(nxt + period, time.time() - period)  # late: no burst to catch up
        if conn is None or n % a.get("per_conn", 50) == 0:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(a["host"], a["port"], timeout=a.get("timeout", 15))
        n += 1
        start = time.time()
        try:
            conn.request("GET", a["path"], headers=headers)
            res = conn.getresponse()
            body = res.read()
            flag = res.getheader("x-remora-response-flags") or ""
            if res.status == 200:
                try:
                    who = json.loads(body)["pod"]
                except Exception:
                    who = "not the app's JSON: %r" % body[:80]
            else:
                who = body[:160].decode("utf-8", "replace").strip()
            rec = [start - t0, time.time() - t0, res.status, flag, who]
        except Exception as e:
            rec = [start - t0, time.time() - t0, 0, "", "%s: %s" % (type(e).__name__, e)]
            conn.close()
            conn = None
        with lock:
            records.append(rec)
threads = [threading.Thread(target=worker, args=(k,)) for k in range(a["threads"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
records.sort()
print(json.dumps({"t0": t0,
                  "records": [[round(r[0], 3), round(r[1], 3)] + r[2:] for r in records]}))
'''


# ---------------------------------------------------------------------------------------------
# Load and what it saw


class Load:
    """The load client running in `pod` (spawned, so the test acts while it runs)."""
    count = 0

    def __init__(self, m, pod, host=WEB_VIP, host_header="web:8080", path="/", headers=None,
                 threads=3, rate=150, seconds=60, per_conn=50, pods=WEB_PODS):
        Load.count += 1
        self.m, self.pod, self.threads, self.rate, self.pods = m, pod, threads, rate, pods
        self.stop_file = os.path.join(m.tmp, f"stop-load-{Load.count}")
        args = {"host": host, "port": 8080, "host_header": host_header, "path": path,
                "headers": headers or {}, "threads": threads, "rate": rate, "seconds": seconds,
                "per_conn": per_conn, "stop_file": self.stop_file}
        self.log = os.path.join(m.tmp, f"load-{Load.count}-{pod}.log")
        self.proc = m.c.spawn(pod, ["python3", m.load, json.dumps(args)], user=(APP_UID, APP_UID),
                              log_path=self.log)
        self.started = time.time()

    def stop(self):
        open(self.stop_file, "w").close()

    def result(self, timeout=40, stop=True):
        """Stops the load (or lets it run its `seconds`); returns the LoadResult."""
        if stop:
            self.stop()
        try:
            self.proc.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - reported below
            self.m.c.stop(self.proc, grace=1)
        text = open(self.log, errors="replace").read().strip()
        check(self.proc.returncode == 0 and text, f"the load client in {self.pod} failed "
              f"(exit {self.proc.returncode})", text[-2000:])
        try:
            doc = json.loads(text.splitlines()[-1])
        except ValueError:
            raise Failure(f"the load client in {self.pod} printed no JSON", [text[-2000:]])
        return LoadResult(self.pod, doc, self.pods)


class LoadResult:
    def __init__(self, pod, doc, pods):
        self.pod, self.pods = pod, pods
        self.t0 = doc["t0"]
        # [start, end, status, flag, who] with absolute (unix) times
        self.records = [[self.t0 + r[0], self.t0 + r[1]] + r[2:] for r in doc["records"]]
        self.events = []

    def failures(self):
        """Requests not answered 200 by one of the pods of the service."""
        return [r for r in self.records if not (r[2] == 200 and r[4] in self.pods)]

    def seconds(self):
        return (self.records[-1][1] - self.records[0][0]) if self.records else 0.0

    def answered_by(self, since=0.0, until=float("inf")):
        out = {}
        for r in self.records:
            if r[2] == 200 and since <= r[0] and r[1] <= until:
                out[r[4]] = out.get(r[4], 0) + 1
        return out

    def by_flag(self, records=None):
        out = {}
        for r in (self.records if records is None else records):
            key = f"{r[2]} {r[3] or '-'}"
            out[key] = out.get(key, 0) + 1
        return out

    def when(self, t):
        """`t` relative to the load's start and to the last event before it."""
        last = [e for e in self.events if e[0] <= t]
        rel = f"+{t - self.t0:.2f}s"
        return rel + (f" ({t - last[-1][0]:.2f}s after {last[-1][1]})" if last else "")

    def describe(self, records):
        return [f"{self.when(r[0])}, took {r[1] - r[0]:.2f}s: HTTP {r[2]} flag {r[3] or '-'}: "
                f"{r[4]}" for r in records[:15]]

    def summary(self):
        rate = len(self.records) / self.seconds() if self.seconds() else 0
        return (f"{self.pod}: {len(self.records)} requests in {self.seconds():.1f}s "
                f"({rate:.0f}/s), {len(self.failures())} failed; by status and flag "
                f"{self.by_flag()}; answered by {self.answered_by()}")

    def timeline(self):
        return "events: " + "; ".join(f"{self.when(t)} {what}" for t, what in self.events)


def require_load(res, at_least):
    # A load that barely ran proves nothing: fails if the client could not keep up at all.
    check(len(res.records) >= at_least, f"{res.pod}: only {len(res.records)} requests in "
          f"{res.seconds():.1f}s (expected at least {at_least})", res.summary())


# ---------------------------------------------------------------------------------------------
# Helpers


def web_proxy(m, pod):
    start_subscribed_proxy(m, pod, "web", "app=web", "web")


def clusters(m, pod):
    return m.admin(pod, "/clusters")


def health_flag(m, pod, cluster, endpoint_pod):
    want = f"{cluster}::{m.ip(endpoint_pod)}:8080::health_flags::"
    for line in clusters(m, pod).splitlines():
        if line.startswith(want):
            return line[len(want):]
    return None


def stat(m, pod, name):
    return m.stats(pod).get(name, 0)


def kill_app(m, pod):
    proc = m.apps[(pod, 8080)]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    return time.time()


def restart_app(m, pod):
    m.start_app(pod, 8080)
    # Inside the pod, as root to 127.0.0.1: not captured, so this is the app itself.
    m.c.wait_port(pod, "127.0.0.1", 8080, timeout=15, proc=m.apps[(pod, 8080)])


def readiness(m, pod):
    r = m.c.curl("node", f"http://{m.ip(pod)}:15021/healthz/ready", "-o", "/dev/null", "-w",
                 "%{http_code}", max_time=3)
    return int(r.stdout) if r.stdout.strip().isdigit() else 0


def both_web_endpoints(m):
    return sorted(f"{m.ip(p)}:8080" for p in WEB_PODS)


def rolling_restart(m, events):
    """SIGTERM each web proxy in turn, wait for it to drain and exit, start a new one, wait until
    it is ready, registered (proxy-status shows its new certificate, SYNCED) and in the subscribed
    client's endpoints, then the other. Appends (time, what) to `events`."""
    for pod in WEB_PODS:
        old = m.proxies[pod]
        check(old.proc.poll() is None, f"{pod}'s proxy is not running before its restart")
        sent = time.time()
        os.killpg(old.proc.pid, signal.SIGTERM)
        events.append((sent, f"SIGTERM to {pod}'s proxy"))
        time.sleep(0.5)
        ready = readiness(m, pod)
        check(ready == 503, f"{pod}'s readiness while draining: {ready}, expected 503")
        try:
            code = old.proc.wait(timeout=DRAIN_S + 8)
        except Exception:  # noqa: BLE001
            raise Failure(f"{pod}'s proxy had not exited {DRAIN_S + 8}s after SIGTERM "
                          f"(drain {DRAIN_S}s)", [tail(old.log_path)])
        gone = time.time()
        events.append((gone, f"{pod}'s old proxy exited"))
        check(code == 0, f"{pod}'s proxy exited {code} after SIGTERM", tail(old.log_path))
        # It keeps serving for the MeshConfig's terminationDrainDuration (2 s), not the 5 s default
        # nor at once; fails if the drain duration is not taken from the control plane's MeshConfig.
        check(DRAIN_S - 0.5 <= gone - sent <= DRAIN_S + 5.5, f"{pod}'s proxy exited "
              f"{gone - sent:.1f}s after SIGTERM; the MeshConfig's drain is {DRAIN_S}s",
              tail(old.log_path))
        web_proxy(m, pod)
        m.wait_ready(pod)
        events.append((time.time(), f"{pod}'s new proxy ready"))
        serial = m.certs(pod).get("serial")
        wait_for(f"{pod}'s new proxy registered and SYNCED",
                 lambda: (lambda s: s.get("status") == "SYNCED" and
                          serial and serial.lower() in json.dumps(s).lower())(
                     proxy_status(m).get(pod, {})), 15, step=0.2)
        wait_for(f"the subscribed client lists both web endpoints after {pod}'s restart",
                 lambda: endpoints_of(dump(m, "client"), DEFAULT_CLUSTER) == both_web_endpoints(m),
                 15, step=0.2)
        events.append((time.time(), f"{pod} registered and in the client's endpoints"))
        time.sleep(1)  # the load reaches the new proxy before the next replica goes


# ---------------------------------------------------------------------------------------------
# Setup


def setup(m):
    c = m.c
    m.mesh_config = m.file("mesh.yaml", MESH_CONFIG)
    for name in ("client", "static", "legacy") + WEB_PODS + ("ca-client", "ca-server"):
        c.add_pod(name)
    c.add_service("web", WEB_VIP)
    c.add_service("caweb", CAWEB_VIP)
    registry = REGISTRY.format(web_vip=WEB_VIP, web1=m.ip("web-1"), web2=m.ip("web-2"),
                               caweb_vip=CAWEB_VIP, caserver=m.ip("ca-server"))
    m.file("registry.yaml", registry)
    m.faults = m.file("faults.yaml", registry + ROUTING)
    m.load = m.file("load.py", LOAD)
    start_control(m)
    apply(m, "control.yaml", CONTROL_CONFIG)
    for pod in WEB_PODS + ("ca-server",):
        m.start_app(pod, 8080)
    for pod in WEB_PODS + ("ca-server",):
        m.wait_app(pod, 8080)
    for pod in ("client", "static", "legacy") + WEB_PODS + ("ca-client", "ca-server"):
        m.init(pod)
    for pod in WEB_PODS:
        web_proxy(m, pod)
    start_subscribed_proxy(m, "client", "client", "app=client", "client")
    m.start_proxy("static", "client", ["--config", m.faults])
    m.start_proxy("legacy", "client")  # --registry registry.yaml
    for pod in ("client", "static", "legacy") + WEB_PODS:
        m.wait_ready(pod)
    wait_for("the subscribed client lists both web endpoints",
             lambda: endpoints_of(dump(m, "client"), DEFAULT_CLUSTER) == both_web_endpoints(m), 15)


# ---------------------------------------------------------------------------------------------
# Tests


def check_rolling_restart(m, loads):
    """Common to the rolling-restart tests: every load lost nothing, and both replicas answered
    before the first restart and after the last (the new proxies take traffic)."""
    events = []
    time.sleep(1.5)  # steady load first
    first = time.time()
    try:
        rolling_restart(m, events)
    finally:
        time.sleep(1.5)
        results = [load.result() for load in loads]
    last = events[-1][0]
    problems, details = [], []
    for res in results:
        res.events = events
        details += [res.summary(), res.timeline()]
        require_load(res, 300)
        failed = res.failures()
        if failed:
            problems.append(f"{res.pod} ({m.proxies[res.pod].argv[-2:]}) lost {len(failed)} of "
                            f"{len(res.records)} requests")
            details += [f"{res.pod}'s failures:"] + res.describe(failed)
            s = m.stats(res.pod)
            details.append(f"{res.pod}: " + ", ".join(f"{k}={s.get(k, 0)}" for k in (
                "upstream_rq_retry", "upstream_rq_retry_overflow", "upstream_rq_reset",
                "upstream_cx_connect_fail", "http2.streams_refused", "http2.goaway_received")))
        before, after = res.answered_by(until=first), res.answered_by(since=last)
        if set(before) != set(WEB_PODS) or set(after) != set(WEB_PODS):
            problems.append(f"{res.pod}: both replicas should answer before the restart and after "
                            f"it: before {before}, after {after}")
    check(not problems, "; ".join(problems), *details)
    for res in results:
        print(f"    {res.summary()}", flush=True)


def test_a_rolling_restart_subscribed_and_static_clients(m):
    # Two callers under load while web-1 and then web-2 get SIGTERM, drain 2 s, exit and are
    # replaced: `client` learns endpoints from remora-control (but only once the old proxy's
    # registration ends, when it exits); `static` has them from its --config file
    # (WorkloadEntries) and never learns anything. What saves their requests is the drain
    # (Connection: close / GOAWAY, in-flight work finished) and Istio's default retries
    # (connect-failure, refused-stream, 503) to the other replica. Fails on any request lost: a
    # drain that stops accepting early or cuts requests in flight when it exits (503 UC, which the
    # default policy does not retry), a GOAWAY'd stream not retried, a connect failure to the
    # replica being replaced not retried, a new proxy not taking traffic.
    m.involved = ["client", "static", "web-1", "web-2"]
    retries = stat(m, "static", "upstream_rq_retry")
    loads = [Load(m, "client", path=SLOW, threads=3, rate=100),
             Load(m, "static", path=SLOW, threads=3, rate=100)]
    check_rolling_restart(m, loads)
    print(f"    static client: {stat(m, 'static', 'upstream_rq_retry') - retries} retries",
          flush=True)


def test_b_rolling_restart_registry_client(m):
    # The same rolling restart seen by a proxy on the static registry (--registry, no --config):
    # it cannot know an endpoint goes away either, and Istio users expect the same default
    # retries for every sidecar. Fails if a --registry proxy forwards without them.
    m.involved = ["legacy", "web-1", "web-2"]
    check_rolling_restart(m, [Load(m, "legacy", path=SLOW, threads=3, rate=100)])


def test_c_killed_app_default_retries_then_ejected(m):
    # kill -9 of web-1's app under load on the route with Istio's default retries and a
    # DestinationRule with outlierDetection (3 consecutive 5xx): the requests web-1's sidecar
    # answers 503 (UC for those in flight, UF for the next ones) are retried on web-2, web-1 is
    # ejected, and from then on every request goes to web-2 at the first try. Fails if any request
    # is lost (503 not retried, as it would be if the sidecar answered 502), if nothing is
    # ejected, or if retries go on after the ejection.
    m.involved = ["static", "web-1", "web-2"]
    cluster = f"outbound|8080|kill-retry|{WEB}"
    ejections = stat(m, "static", "outlier_detection.ejections_enforced_total")
    retries = stat(m, "static", "upstream_rq_retry")
    load = Load(m, "static", path="/slow?ms=20", headers={"x-fault": "kill-retry"}, threads=3,
                rate=120)
    try:
        time.sleep(1.5)
        killed = kill_app(m, "web-1")
        time.sleep(1.5)
        mid_retries = stat(m, "static", "upstream_rq_retry")
        time.sleep(2)
        end_retries = stat(m, "static", "upstream_rq_retry")
        flag = health_flag(m, "static", cluster, "web-1")
    finally:
        res = load.result()
        restart_app(m, "web-1")
    res.events = [(killed, "kill -9 of web-1's app")]
    details = [res.summary(), res.timeline()]
    require_load(res, 200)
    check(res.answered_by(until=killed).get("web-1"), "web-1 answered nothing before the kill",
          *details)
    failed = res.failures()
    check(not failed, f"{len(failed)} requests failed after web-1's app was killed, with Istio's "
          "default retries", *(details + res.describe(failed)))
    check(not res.answered_by(since=killed + 0.2).get("web-1"), "web-1 still answered after its "
          "app was killed", *details)
    check(retries < mid_retries, "no request was retried: the kill hit nothing", *details)
    check(stat(m, "static", "outlier_detection.ejections_enforced_total") > ejections and
          flag == "/failed_outlier_check", f"web-1 was not ejected (health flag {flag})",
          clusters(m, "static"), *details)
    check(end_retries == mid_retries, f"{end_retries - mid_retries} retries 1.5 to 3.5 s after "
          "the kill: requests still went to the ejected web-1 first", *details)
    print(f"    {res.summary()}; {mid_retries - retries} retries", flush=True)


def test_d_killed_app_without_retries_fails_only_in_flight(m):
    # The same kill (web-2's app) on the route with retries {attempts: 0}: only the requests in
    # flight at the kill and those web-2 got before its ejection fail, at most the concurrency
    # plus consecutive5xxErrors, each a 503 flagged UC (cut mid-request) or UF (the app's port
    # refused). Fails if none fails (attempts 0 not honoured, or the kill hit nothing), if more
    # fail (no ejection), or if a failure is unflagged or late.
    m.involved = ["static", "web-1", "web-2"]
    threads, consecutive = 4, 3
    cluster = f"outbound|8080|kill-noretry|{WEB}"
    retries = stat(m, "static", "upstream_rq_retry")
    load = Load(m, "static", path="/slow?ms=20", headers={"x-fault": "kill-noretry"},
                threads=threads, rate=160)
    try:
        time.sleep(1.5)
        killed = kill_app(m, "web-2")
        time.sleep(3)
        flag = health_flag(m, "static", cluster, "web-2")
    finally:
        res = load.result()
        restart_app(m, "web-2")
    res.events = [(killed, "kill -9 of web-2's app")]
    failed = res.failures()
    details = [res.summary(), res.timeline()] + res.describe(failed)
    require_load(res, 200)
    check(res.answered_by(until=killed).get("web-2"), "web-2 answered nothing before the kill",
          *details)
    check(1 <= len(failed) <= threads + consecutive, f"{len(failed)} requests failed; expected "
          f"between 1 and {threads + consecutive} (the {threads} clients' requests in flight plus "
          f"consecutive5xxErrors {consecutive} before the ejection)", *details)
    bad = [r for r in failed if r[2] != 503 or r[3] not in ("UC", "UF")]
    check(not bad, "failures without a 503 and flag UC or UF", *(details + res.describe(bad)))
    late = [r for r in failed if r[0] > killed + 3 or r[1] < killed - 0.1]
    check(not late, "failures that do not belong to the kill (more than 3 s after it, or "
          "before it)", *(details + res.describe(late)))
    check(flag == "/failed_outlier_check", f"web-2 was not ejected (health flag {flag})",
          clusters(m, "static"), *details)
    check(stat(m, "static", "upstream_rq_retry") == retries, "requests were retried on a route "
          "with retries {attempts: 0}", *details)
    print(f"    {res.summary()}; failures by flag {res.by_flag(failed)}", flush=True)


def renewal_failures(m, pod, since):
    """Unix times (whole seconds) of the 'certificate renewal failed' lines logged since `since`."""
    out = []
    for line in open(m.proxies[pod].log_path, errors="replace"):
        if "certificate renewal failed" in line:
            try:
                t = calendar.timegm(time.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ"))
            except (ValueError, IndexError):
                continue
            if t >= int(since):
                out.append(t)
    return out


def test_e_ca_outage_across_renewal(m):
    # ca-client and ca-server start with --cert-ttl 30s (renewal due at about 15 s). remora-control
    # stops 3 s after they are ready and stays down past the half-life, until each proxy has
    # failed to renew three times: traffic goes on with the valid certificates (new mTLS
    # connections every 20 requests, so handshakes keep happening), each proxy logs its failed
    # renewals, retrying with backoff (1 s, then 2 s, ..., not in a tight loop); the control
    # plane starts again on the same --state-dir (same CA), both proxies renew (new serial) at
    # their next attempt, well before expiry, and not one request fails throughout. Fails on a
    # lost request, on a proxy that does not retry, retries without backoff, or does not renew
    # once the CA is back.
    m.involved = ["ca-client", "ca-server"]
    pods = ("ca-client", "ca-server")
    m.start_proxy("ca-server", "ca-server", ["--cert-ttl", f"{CERT_TTL_S}s"])
    m.start_proxy("ca-client", "ca-client", ["--config", m.faults, "--cert-ttl", f"{CERT_TTL_S}s"])
    for p in pods:
        m.wait_ready(p)
    t0 = time.time()
    first = {p: m.certs(p) for p in pods}
    load = Load(m, "ca-client", host=CAWEB_VIP, host_header="caweb:8080", threads=2, rate=60,
                seconds=90, pods=("ca-server",))
    events = []
    control_up = True
    try:
        time.sleep(3)
        handshakes = stat(m, "ca-server", "tls_handshake_ok")
        m.c.stop(m.control)
        control_up = False
        down = time.time()
        events.append((down, "remora-control stopped"))
        # Down past the half-life (~15 s after t0), until each proxy has failed three times
        # (about 3 s past it with a 1 s, 2 s backoff).
        wait_for("both proxies log three failed renewals",
                 lambda: all(len(renewal_failures(m, p, down)) >= 3 for p in pods),
                 CERT_TTL_S * 0.5 + 10, step=0.5)
        handshakes_down = stat(m, "ca-server", "tls_handshake_ok") - handshakes
        start_control(m)
        control_up = True
        up = time.time()
        events.append((up, "remora-control started again"))
        renewed = wait_for("both proxies renewed (new serial in /certs)",
                           lambda: (lambda c: c if all(c[p].get("serial") and
                                                      c[p]["serial"] != first[p]["serial"]
                                                      for p in pods) else None)(
                               {p: m.certs(p) for p in pods}),
                           max(2.0, t0 + CERT_TTL_S - 2 - time.time()), step=0.3)
        events.append((time.time(), "both renewed"))
        time.sleep(2)  # new handshakes with the new certificates
    finally:
        if not control_up:
            start_control(m)
        res = load.result()
    res.events = events
    fails = {p: renewal_failures(m, p, down) for p in pods}
    fails_down = {p: [t for t in f if t <= up] for p, f in fails.items()}
    details = [res.summary(), res.timeline(),
               "renewal failures logged (s after control stopped): " +
               json.dumps({p: [round(t - down) for t in f] for p, f in fails.items()})]
    require_load(res, 200)
    failed = res.failures()
    check(not failed, f"{len(failed)} requests failed across the CA outage and renewal",
          *(details + res.describe(failed)))
    check(handshakes_down > 0, "no new mTLS handshake while the CA was down: the test proved "
          "nothing about the certificate still in use", *details)
    for p in pods:
        f = fails_down[p]
        gaps = [b - a for a, b in zip(f, f[1:])]
        # 1 s doubling: 3 attempts (gaps 1 s, 2 s) in the ~3 s the CA stays down past the
        # half-life; a retry every second or faster gives more, and gaps that do not grow.
        check(3 <= len(f) <= 4 and all(g >= 1 for g in gaps) and gaps[-1] >= 2,
              f"{p}: renewal attempts while the CA was down at {[round(t - down) for t in f]} s "
              "after it stopped: expected a few, with a backoff that grows (1 s, 2 s, ...)",
              *details)
        check(renewed[p]["not_after"] > first[p]["not_after"], f"{p}: the renewed certificate "
              f"ends {renewed[p]['not_after']}, not after the first ({first[p]['not_after']})",
              *details)
        check(renewed[p].get("identity") == first[p].get("identity"), f"{p}: identity changed "
              "on renewal", *details)
        # The same story in the proxy's counters (what an alert on failing renewals reads).
        counts = {k: v for k, v in m.stats(p).items() if k.startswith("identity.")}
        check(counts.get("identity.certificate_requests") == 1 and
              counts.get("identity.certificate_renewals", 0) >= 1 and
              counts.get("identity.certificate_renewal_failures", 0) >= len(fails_down[p]),
              f"{p}: the identity counters do not tell the outage: {counts} (renewal failures "
              f"logged while the CA was down: {len(fails_down[p])})", *details)
        prom = m.c.run(p, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15090/stats/prometheus"],
                       check=False).stdout
        want = (f'remora_identity_certificate_requests_total{{kind="renewal",result="failure"}} '
                f'{counts.get("identity.certificate_renewal_failures")}')
        check(want in prom, f"{p}: /stats/prometheus lacks `{want}`",
              *[l for l in prom.splitlines() if "identity" in l])
    print(f"    {res.summary()}; {handshakes_down} handshakes on ca-server while the CA was down; "
          f"renewal failures {details[-1].split(': ', 1)[1]}", flush=True)


def test_f_dns_failure_does_not_touch_vip_routing(m):
    # The static pod loses DNS: no service names in its hosts file, and its resolv.conf names the
    # node's address, where nothing listens on 53. Lookups of service names now fail in the pod
    # (checked, so the test proves something), but the mesh routes by VIP and by the registry's
    # names, never by DNS: requests to the VIP, with Host web:8080 or with the bare VIP, all
    # succeed. Fails if the proxy resolves names itself (through the pod's resolv.conf).
    m.involved = ["static"]
    etc = os.path.join("/etc/netns", m.c.ns("static"))
    saved = {n: open(os.path.join(etc, n)).read() for n in ("hosts", "resolv.conf")}

    def write(name, text):  # in place: `ip netns exec` bind-mounts these files
        with open(os.path.join(etc, name), "r+") as f:
            f.write(text)
            f.truncate()

    try:
        write("hosts", "127.0.0.1\tlocalhost\n")
        write("resolv.conf", f"nameserver {NODE_IP}\noptions timeout:1 attempts:1\n")
        r = m.c.run("static", ["getent", "hosts", "web.default.svc.cluster.local"], check=False,
                    timeout=15)
        check(r.returncode != 0, "service names still resolve in the pod: DNS is not broken",
              describe(r))
        rc, status, body, r = m.curl("static", "http://web:8080/by-name", max_time=5)
        check(rc == 6, f"curl http://web:8080 in the pod without DNS: exit {rc} (expected 6, "
              "could not resolve)", describe(r))
        doc = m.get_json("static", f"http://{WEB_VIP}:8080/by-vip", "-H", "Host: web:8080",
                         what="a request to the VIP with Host web:8080")
        check(doc.get("pod") in WEB_PODS, f"answered by {doc.get('pod')}")
        doc = m.get_json("static", f"http://{WEB_VIP}:8080/bare-vip",
                         what="a request to the VIP with Host the VIP")
        check(doc.get("pod") in WEB_PODS, f"answered by {doc.get('pod')}")
        doc = m.get_json("static", f"http://{WEB_VIP}:8080/fqdn", "-H",
                         f"Host: {WEB}", what=f"a request to the VIP with Host {WEB}")
        check(doc.get("pod") in WEB_PODS, f"answered by {doc.get('pod')}")
        res = Load(m, "static", threads=2, rate=100, seconds=3).result(stop=False)
    finally:
        for name, text in saved.items():
            write(name, text)
    require_load(res, 100)  # a DNS wait per request (1 s) would leave a handful
    failed = res.failures()
    check(not failed, f"{len(failed)} requests to the VIP failed without DNS", res.summary(),
          *res.describe(failed))
    check(set(res.answered_by()) == set(WEB_PODS), "without DNS not both replicas answered",
          res.summary())


def check_partition_load(m, res, dropped, subset, threads, consecutive, flags, slowest):
    failed = res.failures()
    details = [res.summary(), res.timeline()] + res.describe(failed)
    # 80 in ~10 s: enough to see both replicas, the partition and the ejection; an ASan build on
    # a loaded 2-core machine managed 135 (the checks below need requests, not a rate).
    require_load(res, 80)
    check(res.answered_by(until=dropped).get("web-2"), f"{subset}: web-2 answered nothing before "
          "the partition", *details)
    check(failed, f"{subset}: no request failed: the partition hit nothing", *details)
    bound = threads + consecutive
    check(len(failed) <= bound, f"{subset}: {len(failed)} requests failed; expected at most "
          f"{bound} (the {threads} clients' requests to web-2, each held by a timeout, until "
          f"{consecutive} consecutive errors eject it)", *details)
    bad = [r for r in failed if (r[2], r[3]) not in flags]
    check(not bad, f"{subset}: failures other than {flags}", *(details + res.describe(bad)))
    slow = [r for r in failed if r[1] - r[0] > slowest]
    check(not slow, f"{subset}: failures that took more than {slowest} s to come back (a UF "
          "after ~10 s is the proxy's own --connect-timeout default, not the DestinationRule's "
          "connectTimeout 1s; a UT later than 3 s is a route timeout that does not cover the "
          "connect)", *(details + res.describe(slow)))
    late = [r for r in failed if r[0] > dropped + 5]
    check(not late, f"{subset}: requests still failing more than 5 s after the partition",
          *(details + res.describe(late)))
    flag = health_flag(m, "static", f"outbound|8080|{subset}|{WEB}", "web-2")
    check(flag == "/failed_outlier_check", f"{subset}: web-2 was not ejected (health flag {flag})",
          clusters(m, "static"), *details)
    after = res.answered_by(since=dropped + 5)
    check(after and set(after) == {"web-1"}, f"{subset}: after the ejection answers came from "
          f"{after}", *details)
    print(f"    {res.summary()}; failures by flag {res.by_flag(failed)}", flush=True)


def test_g_partitioned_endpoint(m):
    # Everything into web-2's namespace is dropped (iptables -I INPUT -j DROP, as root in the pod)
    # under two loads from the static client, each on a route with a 3 s timeout and no retries to
    # a subset with connectTimeout 1s and outlierDetection (2 consecutive errors, 60 s ejection):
    #   partition     HTTP/2 between the sidecars (the default): the pooled connection to web-2
    #                 goes silent, so a request on it gets 504 UT after the route's 3 s;
    #   partition-h1  HTTP/1.1 and maxRequestsPerConnection 1: every request needs a new
    #                 connection, which times out after the DestinationRule's 1 s: 503 UF.
    #   partition-h1-route-timeout  the same without connectTimeout (the proxy's 10 s) on a route
    #                 with a 1 s timeout: the route timeout covers the connect, as Envoy's does,
    #                 so the connect gives up at 1 s with 504 UT (not 503 UF after 10 s).
    # web-2 is ejected and everything goes to web-1. The failures are few (each client is held by
    # at most one timeout before the ejection), flagged, quick and over within a few seconds;
    # then the DROP goes. Fails if requests hang (no timeout, or the proxy's 10 s default connect
    # timeout instead of the DestinationRule's), go unflagged, keep failing (no ejection), or if
    # web-2 still gets traffic.
    m.involved = ["static", "web-2"]
    threads, consecutive = 3, 2
    loads = [Load(m, "static", headers={"x-fault": "partition"}, threads=threads, rate=90),
             Load(m, "static", headers={"x-fault": "partition-h1"}, threads=threads, rate=60),
             Load(m, "static", headers={"x-fault": "partition-h1-route-timeout"}, threads=threads,
                  rate=60)]
    dropped = None
    try:
        time.sleep(1.5)
        m.c.run("web-2", ["iptables", "-w", "-I", "INPUT", "-j", "DROP"])
        dropped = time.time()
        time.sleep(8)
    finally:
        if dropped is not None:
            m.c.run("web-2", ["iptables", "-w", "-D", "INPUT", "-j", "DROP"], check=False)
        results = [load.result() for load in loads]
    for res in results:
        res.events = [(dropped, "web-2 partitioned")]
    # HTTP/2: the request waits on the silent connection for the route timeout (3 s).
    check_partition_load(m, results[0], dropped, "partition", threads, consecutive,
                         ((504, "UT"), (503, "UF")), 5)
    # HTTP/1.1, a connection per request: the connect gives up after connectTimeout (1 s); the
    # proxy's own default (10 s) would show the DestinationRule's value is not applied. (A request
    # already sent when the DROP came waits for the route timeout: UT.)
    check_partition_load(m, results[1], dropped, "partition-h1", threads, consecutive,
                         ((503, "UF"), (504, "UT")), 4)
    # HTTP/1.1 with only the route timeout (1 s) to bound the connect: 504 UT within about 1 s.
    check_partition_load(m, results[2], dropped, "partition-h1-route-timeout", threads, consecutive,
                         ((504, "UT"),), 2.5)


TESTS = [
    ("a_rolling_restart_subscribed_and_static_clients",
     test_a_rolling_restart_subscribed_and_static_clients),
    ("b_rolling_restart_registry_client", test_b_rolling_restart_registry_client),
    ("c_killed_app_default_retries_then_ejected", test_c_killed_app_default_retries_then_ejected),
    ("d_killed_app_without_retries_fails_only_in_flight",
     test_d_killed_app_without_retries_fails_only_in_flight),
    ("e_ca_outage_across_renewal", test_e_ca_outage_across_renewal),
    ("f_dns_failure_does_not_touch_vip_routing", test_f_dns_failure_does_not_touch_vip_routing),
    ("g_partitioned_endpoint", test_g_partitioned_endpoint),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-f", "remora-test-faults-", setup, TESTS,
                     tools=("curl", "setpriv", "iptables-restore", "iptables", "python3",
                            "getent"))


if __name__ == "__main__":
    sys.exit(main())
