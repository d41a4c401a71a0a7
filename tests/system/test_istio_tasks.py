#!/usr/bin/env python3
"""System test: Istio's traffic-management tasks, run as Istio's documentation runs them, with the
samples' own YAML applied to remora-control with remoractl and proxies that take their
configuration from it (tasks: request routing, fault injection, traffic shifting, request
timeouts, circuit breaking; mTLS migration and HTTP authorization are in test_authz.py).

    python3 tests/system/test_istio_tasks.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node          remora-control; bookinfo.yaml's and httpbin.yaml's Services (the local cluster
                  gives them ClusterIPs, as Kubernetes would) and destination-rule-all.yaml
    productpage   sa bookinfo-productpage: the caller of reviews, as in Bookinfo
    reviews-v1/2/3  sa bookinfo-reviews, labels app=reviews,version=vN; reviews-v2 also calls ratings
    ratings-v1    sa bookinfo-ratings
    httpbin       sa httpbin, port 8000
    (every app is the echo app: it answers with its pod's name, can be slowed or made to fail)

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import CONTROL, PROXY_UID, Proxy, describe, run_suite  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "..", "shared", "istio-samples")
VIPS = {"productpage": "198.19.1.1", "details": "198.19.1.2", "ratings": "198.19.1.3",
        "reviews": "198.19.1.4", "httpbin": "198.19.1.5"}
PODS = [  # pod, service account, app, version, port
    ("productpage", "bookinfo-productpage", "productpage", "v1", 9080),
    ("reviews-v1", "bookinfo-reviews", "reviews", "v1", 9080),
    ("reviews-v2", "bookinfo-reviews", "reviews", "v2", 9080),
    ("reviews-v3", "bookinfo-reviews", "reviews", "v3", 9080),
    ("ratings-v1", "bookinfo-ratings", "ratings", "v1", 9080),
    ("httpbin", "httpbin", "httpbin", "v1", 8000),
]

# Istio's request-timeouts task, as its page applies it (inline YAML there, not a sample file).
TIMEOUT_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    timeout: 0.5s
"""

# Istio's circuit-breaking task's DestinationRule, as its page applies it.
HTTPBIN_BREAKER = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""

# Runs in a pod: N requests (keep-alive), counting who answered; statuses and flags otherwise.
COUNTER = r'''
import collections, http.client, json, sys
a = json.loads(sys.argv[1])
seen, codes = collections.Counter(), collections.Counter()
conn = http.client.HTTPConnection(a["host"], a["port"], timeout=15)
for i in range(a["n"]):
    try:
        conn.request("GET", a.get("path", "/"), headers=dict(a.get("headers", {}), Host="%s:%d" % (a["host"], a["port"])))
        res = conn.getresponse()
        body = res.read()
        codes["%d %s" % (res.status, res.getheader("x-remora-response-flags") or "-")] += 1
        if res.status == 200:
            seen[json.loads(body)["pod"]] += 1
    except Exception as e:
        codes[type(e).__name__] += 1
        conn.close()
        conn = http.client.HTTPConnection(a["host"], a["port"], timeout=15)
print(json.dumps({"seen": seen, "codes": codes}))
'''

# fortio's role in the circuit-breaking task: C connections, N requests in all, no pause.
FORTIO = r'''
import collections, http.client, json, sys, threading
a = json.loads(sys.argv[1])
codes = collections.Counter()
lock = threading.Lock()
def worker(n):
    conn = http.client.HTTPConnection(a["host"], a["port"], timeout=15)
    for _ in range(n):
        try:
            conn.request("GET", a["path"], headers={"Host": "%s:%d" % (a["host"], a["port"])})
            res = conn.getresponse()
            res.read()
            key = "%d %s" % (res.status, res.getheader("x-remora-response-flags") or "-")
        except Exception as e:
            key = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(a["host"], a["port"], timeout=15)
        with lock:
            codes[key] += 1
threads = [threading.Thread(target=worker, args=(a["n"] // a["c"],)) for _ in range(a["c"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(codes))
'''


def sample(name):
    with open(os.path.join(SAMPLES, name)) as f:
        return f.read()


def with_cluster_ips(text):
    """The samples' Services get ClusterIPs, as the Kubernetes API server would assign them."""
    docs = re.split(r"(?m)^---\s*$", text)
    out = []
    for d in docs:
        m = re.search(r"(?m)^kind:\s*Service\s*$", d)
        name = re.search(r"(?m)^  name:\s*(\S+)", d)
        if m and name and name.group(1) in VIPS:
            d = re.sub(r"(?m)^spec:\s*$", f"spec:\n  clusterIP: {VIPS[name.group(1)]}", d, count=1)
        out.append(d)
    return "---".join(out)


def ctl(m, *args, check_rc=True):
    r = m.c.run("node", [m.ctl_bin, *args, "--control", CONTROL, "--state-dir", m.state],
                check=False, timeout=30)
    if check_rc:
        check(r.returncode == 0, f"remoractl {' '.join(args)} failed", describe(r))
    return r


def apply_text(m, name, text):
    ctl(m, "apply", "-f", m.file(name, text))
    settle(m)


def apply_sample(m, name):
    ctl(m, "apply", "-f", os.path.join(SAMPLES, name))
    settle(m)


def delete_sample(m, name):
    ctl(m, "delete", "-f", os.path.join(SAMPLES, name))
    settle(m)


def settle(m, timeout=5):
    """Every proxy SYNCED on the store's current version."""
    deadline = time.monotonic() + timeout
    while True:
        r = ctl(m, "proxy-status", "-o", "json")
        ps = json.loads(r.stdout)
        if len(ps) == len(PODS) and all(p["status"] == "SYNCED" for p in ps):
            versions = {p["configVersion"] for p in ps}
            if len(versions) == 1 and versions == {store_version(m)}:
                return
        if time.monotonic() > deadline:
            raise Failure("the proxies did not all apply the new configuration", [r.stdout[:2000]])
        time.sleep(0.05)


VERSION_PROBE = r'''
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False  # the control plane's SVID names a SPIFFE ID, not a host
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=5)
c.request("GET", "/v1/config/version", headers={"Authorization": "Bearer " + open(sys.argv[3]).read().strip()})
print(json.loads(c.getresponse().read())["version"])
'''


def store_version(m):
    """The store's version (GET /v1/config/version with the admin token)."""
    if not hasattr(m, "version_probe"):
        m.version_probe = m.file("version_probe.py", VERSION_PROBE)
    r = m.c.run("node", ["python3", m.version_probe, CONTROL, m.root, os.path.join(m.state, "admin-token")],
                check=False)
    check(r.returncode == 0, "GET /v1/config/version failed", describe(r))
    return int(r.stdout.strip())


def count(m, pod, host, n, path="/", headers=None, port=9080):
    r = m.c.run(pod, ["python3", m.counter, json.dumps(
        {"host": host, "port": port, "n": n, "path": path, "headers": headers or {}})],
        user=1000, check=False, timeout=300)
    check(r.returncode == 0, "the counting client failed", describe(r))
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_proxy(m, pod, sa, app, version):
    log = os.path.join(m.tmp, f"proxy-{pod}.log")
    argv = [m.proxy_bin, "--control", CONTROL, "--token-file", m.token(sa), "--trust-bundle", m.root,
            "--namespace", "default", "--service-account", sa, "--pod-name", pod,
            "--pod-ip", m.ip(pod), "--workload-name", f"{app}-{version}",
            "--labels", f"app={app},version={version}"]
    proc = m.c.spawn(pod, argv, user=(PROXY_UID, PROXY_UID), log_path=log)
    m.proxies[pod] = Proxy(pod, sa, proc, argv, log)


def setup(m):
    c = m.c
    for pod, *_ in PODS:
        c.add_pod(pod)
    for svc, vip in VIPS.items():
        c.add_service(svc, vip)
    m.counter = m.file("counter.py", COUNTER)
    m.fortio = m.file("fortio.py", FORTIO)
    m.start_control()
    ctl(m, "apply", "-f", m.file("bookinfo.yaml", with_cluster_ips(sample("bookinfo.yaml"))))
    ctl(m, "apply", "-f", m.file("httpbin.yaml", with_cluster_ips(sample("httpbin.yaml"))))
    ctl(m, "apply", "-f", os.path.join(SAMPLES, "destination-rule-all.yaml"))
    for pod, sa, app, version, port in PODS:
        m.start_app(pod, port)
        m.wait_app(pod, port)
    for pod, sa, app, version, port in PODS:
        m.init(pod)
        start_proxy(m, pod, sa, app, version)
    for pod, *_ in PODS:
        m.wait_ready(pod)
    settle(m, timeout=15)


def test_a_request_routing(m):
    """Istio's "Request Routing": all traffic to v1, then jason to v2."""
    m.involved = ["productpage"]
    apply_sample(m, "virtual-service-all-v1.yaml")
    res = count(m, "productpage", "reviews", 60)
    check(res["seen"] == {"reviews-v1": 60}, f"with virtual-service-all-v1 reviews answered from {res}")
    apply_sample(m, "virtual-service-reviews-test-v2.yaml")
    jason = count(m, "productpage", "reviews", 30, headers={"end-user": "jason"})
    others = count(m, "productpage", "reviews", 30, headers={"end-user": "alice"})
    check(jason["seen"] == {"reviews-v2": 30}, f"jason's requests: {jason}; Istio's task: all v2")
    check(others["seen"] == {"reviews-v1": 30}, f"other users' requests: {others}; Istio's task: all v1")


def test_b_fault_injection_delay(m):
    """Istio's "Fault Injection", delay: jason's calls from reviews-v2 to ratings wait 7 s."""
    m.involved = ["reviews-v2"]
    apply_sample(m, "virtual-service-ratings-test-delay.yaml")
    started = time.monotonic()
    doc = m.get_json("reviews-v2", "http://ratings:9080/", "-H", "end-user: jason", max_time=20)
    took = time.monotonic() - started
    check(took >= 7.0 and doc["pod"] == "ratings-v1",
          f"jason's request to ratings answered by {doc['pod']} after {took:.2f} s; the task injects 7 s")
    started = time.monotonic()
    doc = m.get_json("reviews-v2", "http://ratings:9080/", "-H", "end-user: alice", max_time=20)
    took_other = time.monotonic() - started
    check(took_other < 5.0, f"another user's request waited {took_other:.2f} s: the delay is jason's only")


def test_c_fault_injection_abort(m):
    """Istio's "Fault Injection", abort: jason's calls to ratings fail with HTTP 500."""
    m.involved = ["reviews-v2"]
    apply_sample(m, "virtual-service-ratings-test-abort.yaml")
    jason = count(m, "reviews-v2", "ratings", 20, headers={"end-user": "jason"})
    check(jason["codes"] == {"500 FI": 20}, f"jason's requests: {jason}; the task aborts all with 500")
    others = count(m, "reviews-v2", "ratings", 20)
    check(others["seen"] == {"ratings-v1": 20}, f"other requests: {others}")
    delete_sample(m, "virtual-service-ratings-test-abort.yaml")


def test_d_traffic_shifting(m):
    """Istio's "Traffic Shifting": all to v1, then 50% to v3, then all to v3 (and 80/20, 90/10)."""
    m.involved = ["productpage"]
    apply_sample(m, "virtual-service-all-v1.yaml")
    res = count(m, "productpage", "reviews", 40)
    check(res["seen"] == {"reviews-v1": 40}, f"all-v1: {res}")
    for name, shares, n, tolerance in (("virtual-service-reviews-50-v3.yaml", {"reviews-v1": 50, "reviews-v3": 50}, 600, 6),
                                       ("virtual-service-reviews-80-20.yaml", {"reviews-v1": 80, "reviews-v2": 20}, 600, 5),
                                       ("virtual-service-reviews-90-10.yaml", {"reviews-v1": 90, "reviews-v2": 10}, 1000, 3)):
        apply_sample(m, name)
        res = count(m, "productpage", "reviews", n)
        got = {pod: 100.0 * k / n for pod, k in res["seen"].items()}
        check(sum(res["seen"].values()) == n and set(got) <= set(shares) and
              all(abs(got.get(pod, 0) - share) <= tolerance for pod, share in shares.items()),
              f"{name}: shares {got} over {n} requests; expected {shares} within ±{tolerance} points",
              [json.dumps(res)])
    apply_sample(m, "virtual-service-reviews-v3.yaml")
    res = count(m, "productpage", "reviews", 40)
    check(res["seen"] == {"reviews-v3": 40}, f"reviews-v3: {res}")


def test_e_request_timeouts(m):
    """Istio's "Request Timeouts": reviews (v2) gets 0.5 s; a slower answer is a 504 after 0.5 s."""
    m.involved = ["productpage"]
    apply_text(m, "timeout.yaml", TIMEOUT_VS)
    started = time.monotonic()
    rc, status, body, r = m.curl("productpage", "http://reviews:9080/slow?ms=2000", "-D", "-", max_time=10)
    took = time.monotonic() - started
    check(status == 504 and "upstream request timeout" in body and "x-remora-response-flags: UT" in body,
          f"a 2 s answer under a 0.5 s timeout gave {status}", [describe(r)])
    check(0.5 <= took < 2.0, f"the timeout answered after {took:.2f} s (0.5 s configured, the app takes 2 s)")
    doc = m.get_json("productpage", "http://reviews:9080/slow?ms=10")
    check(doc["pod"] == "reviews-v2", f"within the timeout the answer came from {doc['pod']}")


def test_f_circuit_breaking(m):
    """Istio's "Circuit Breaking": httpbin with maxConnections 1 and 1 pending request; fortio
    with 2 connections mostly passes, with 3 more of its requests trip the breaker (503 UO)."""
    m.involved = ["productpage"]
    apply_text(m, "httpbin-breaker.yaml", HTTPBIN_BREAKER)
    one = count(m, "productpage", "httpbin", 1, path="/get", port=8000)
    check(one["seen"] == {"httpbin": 1}, f"one request to httpbin: {one}")

    def fortio(c, n):
        r = m.c.run("productpage", ["python3", m.fortio, json.dumps(
            {"host": "httpbin", "port": 8000, "path": "/slow?ms=50", "c": c, "n": n})],
            user=1000, check=False, timeout=120)
        check(r.returncode == 0, "the load client failed", describe(r))
        return json.loads(r.stdout.strip().splitlines()[-1])
    two = fortio(2, 20)
    three = fortio(3, 30)
    for name, got, n in (("2 connections", two, 20), ("3 connections", three, 30)):
        check(sum(got.values()) == n and set(got) <= {"200 -", "503 UO"},
              f"{name}: {got}; expected only 200s and 503 UO overflows")
    check(three.get("503 UO", 0) > 0, f"3 concurrent connections never tripped the breaker: {three}")
    check(three.get("200 -", 0) > 0, f"with 3 connections nothing passed: {three}")
    stats = m.stats("productpage")
    check(stats.get("rq_flag_UO", 0) >= two.get("503 UO", 0) + three.get("503 UO", 0),
          "the overflows are not counted in /stats", [json.dumps({k: v for k, v in stats.items() if v})])


ONLY_PREFIX_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - uri:
        prefix: /only
    route:
    - destination:
        host: ratings
        subset: v1
"""


def test_g_no_route_404_nr_no_endpoint_503_uh(m):
    """Envoy's answers when routing cannot go on: a request no rule of its host's VirtualService
    matches is 404 NR; a service with no endpoint (details: bookinfo's Service, but no details pod
    here) is 503 UH."""
    m.involved = ["reviews-v2"]
    apply_text(m, "only-prefix.yaml", ONLY_PREFIX_VS)
    doc = m.get_json("reviews-v2", "http://ratings:9080/only/this")
    check(doc["pod"] == "ratings-v1", f"/only/this answered by {doc['pod']}")
    rc, status, body, r = m.curl("reviews-v2", "http://ratings:9080/elsewhere", "-D", "-")
    check(status == 404 and "x-remora-response-flags: NR" in body, f"a request no rule matches gave {status}",
          [describe(r)])
    rc, status, body, r = m.curl("reviews-v2", "http://details:9080/", "-D", "-")
    check(status == 503 and "x-remora-response-flags: UH" in body,
          f"a service without endpoints gave {status}", [describe(r)])
    stats = m.stats("reviews-v2")
    check(stats.get("rq_flag_NR", 0) >= 1 and stats.get("rq_flag_UH", 0) >= 1,
          "NR and UH are not counted in /stats", [json.dumps({k: v for k, v in stats.items() if v})])


TESTS = [
    ("a_request_routing", test_a_request_routing),
    ("b_fault_injection_delay", test_b_fault_injection_delay),
    ("c_fault_injection_abort", test_c_fault_injection_abort),
    ("d_traffic_shifting", test_d_traffic_shifting),
    ("e_request_timeouts", test_e_request_timeouts),
    ("f_circuit_breaking", test_f_circuit_breaking),
    ("g_no_route_404_nr_no_endpoint_503_uh", test_g_no_route_404_nr_no_endpoint_503_uh),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-t", "remora-test-tasks-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
