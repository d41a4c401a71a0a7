#!/usr/bin/env python3
"""System test of the sidecar's outbound resilience: outlier detection, a retryBudget, retries
of requests with bodies, mirroring and least-request balancing, through real proxies in a local
cluster reading Istio YAML (--config).

    python3 tests/system/test_resilience.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node        remora-control (CA)
    client      meshed; its proxy runs with --config resilience.yaml
    reviews-v1  meshed, echo app on :8080 (labels app=reviews, version=v1)
    reviews-v2  meshed, echo app on :8080 (labels app=reviews, version=v2)
    shadow      meshed, echo app on :8080 recording every request (the mirror target)
    ghost       a pod with nothing listening (a mirror target that is down)

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import check  # noqa: E402
from test_mesh import APP_UID, ECHO_APP, describe, run_suite  # noqa: E402

REVIEWS_VIP, SHADOW_VIP, GHOST_VIP = "198.19.0.30", "198.19.0.31", "198.19.0.32"

SERVICES = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [{vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: reviews}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v1, namespace: default}}
spec:
  address: {v1}
  labels: {{app: reviews, version: v1, security.istio.io/tlsMode: istio}}
  serviceAccount: reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v2, namespace: default}}
spec:
  address: {v2}
  labels: {{app: reviews, version: v2, security.istio.io/tlsMode: istio}}
  serviceAccount: reviews
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shadow, namespace: default}}
spec:
  hosts: [shadow.default.svc.cluster.local]
  addresses: [{shadow_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: {shadow}
    labels: {{app: shadow, security.istio.io/tlsMode: istio}}
    serviceAccount: shadow
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ghost, namespace: default}}
spec:
  hosts: [ghost.default.svc.cluster.local]
  addresses: [{ghost_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: {ghost}
    labels: {{app: ghost}}
"""

ROUTING = """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    retryBudget: {percent: 20, minRetryConcurrency: 3}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: guarded
    labels: {app: reviews}
    trafficPolicy:
      outlierDetection:
        consecutive5xxErrors: 3
        interval: 1s
        baseEjectionTime: 3s
        maxEjectionPercent: 50
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /guarded}}]
    rewrite: {uri: /flaky}
    retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: guarded}}]
  - match: [{uri: {prefix: /storm}}]
    rewrite: {uri: /flaky}
    retries: {attempts: 10, retryOn: 5xx}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /body}}]
    rewrite: {uri: /flaky}
    retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /mirror-half}}]
    rewrite: {uri: /flaky}
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 50}
  - match: [{uri: {prefix: /mirror-all}}]
    rewrite: {uri: /flaky}
    route: [{destination: {host: reviews, subset: v1}}]
    mirrors:
    - destination: {host: shadow}
  - match: [{uri: {prefix: /mirror-dead}}]
    rewrite: {uri: /flaky}
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: ghost}
  - route: [{destination: {host: reviews}}]
"""

# Runs in the client pod: `threads` clients at once, each sending `n` requests over keep-alive;
# which pod answered, statuses, latencies. An optional body file is POSTed with every request.
LOAD = r'''
import collections, http.client, json, sys, threading, time
a = json.loads(sys.argv[1])
body = open(a["body_file"], "rb").read() if a.get("body_file") else None
seen, codes, lat, errors = collections.Counter(), collections.Counter(), [], []
bodies_ok = [0]
lock = threading.Lock()
def client(t):
    conn = http.client.HTTPConnection(a["host"], a["port"], timeout=20)
    for i in range(a["n"]):
        started = time.monotonic()
        try:
            headers = {"Host": a["host_header"]}
            if body is not None and a.get("pause"):
                def parts():
                    third = len(body) // 3
                    for k in range(3):
                        if k:
                            time.sleep(a["pause"])
                        yield body[k * third:(k + 1) * third if k < 2 else len(body)]
                conn.request("POST", a["path"] + "&i=%d-%d" % (t, i), body=parts(), headers=headers, encode_chunked=True)
            elif body is not None and a.get("chunked"):
                conn.request("POST", a["path"] + "&i=%d-%d" % (t, i), body=iter([body[:7000], body[7000:]]), headers=headers, encode_chunked=True)
            elif body is not None:
                conn.request("POST", a["path"] + "&i=%d-%d" % (t, i), body=body, headers=headers)
            else:
                conn.request("GET", a["path"] + "&i=%d-%d" % (t, i), headers=headers)
            res = conn.getresponse()
            data = res.read()
            took = (time.monotonic() - started) * 1000
            with lock:
                codes[str(res.status)] += 1
                lat.append(took)
                if res.status == 200:
                    doc = json.loads(data)
                    seen[doc["pod"]] += 1
                    if body is None or doc["body_length"] == len(body) and doc["body_sha256"] == a.get("sha256"):
                        bodies_ok[0] += 1
        except Exception as e:
            with lock:
                errors.append("%s: %s" % (type(e).__name__, e))
            conn.close()
            conn = http.client.HTTPConnection(a["host"], a["port"], timeout=20)
threads = [threading.Thread(target=client, args=(t,)) for t in range(a.get("threads", 1))]
for t in threads:
    t.start()
for t in threads:
    t.join()
lat.sort()
print(json.dumps({"seen": seen, "codes": codes, "errors": errors[:5], "failed": len(errors),
                  "bodies_ok": bodies_ok[0],
                  "p50_ms": lat[len(lat) // 2] if lat else 0, "max_ms": lat[-1] if lat else 0}))
'''


def load(m, path, n=1, threads=1, body=None, chunked=False, pause=0):
    args = {"host": "reviews", "port": 8080, "host_header": "reviews:8080", "path": path,
            "n": n, "threads": threads, "chunked": chunked, "pause": pause}
    if body is not None:
        import hashlib
        args["body_file"] = m.file(f"body-{len(body)}.bin", body)
        args["sha256"] = hashlib.sha256(body).hexdigest()
    r = m.c.run("client", ["python3", m.load, json.dumps(args)], user=APP_UID, check=False, timeout=180)
    check(r.returncode == 0, "the load client failed", describe(r))
    return json.loads(r.stdout.strip().splitlines()[-1])


def stat(m, name):
    return m.stats("client").get(name, 0)


def clusters(m):
    return m.admin("client", "/clusters")


def health_flag(m, cluster, pod):
    want = f"{cluster}::{m.ip(pod)}:8080::health_flags::"
    for line in clusters(m).splitlines():
        if line.startswith(want):
            return line[len(want):]
    return None


def recorded(m):
    with open(m.record) as f:
        return [json.loads(line) for line in f if line.strip()]


GUARDED = "outbound|8080|guarded|reviews.default.svc.cluster.local"


def setup(m):
    c = m.c
    for name in ("client", "reviews-v1", "reviews-v2", "shadow", "ghost"):
        c.add_pod(name)
    c.add_service("reviews", REVIEWS_VIP)
    c.add_service("shadow", SHADOW_VIP)
    c.add_service("ghost", GHOST_VIP)
    services = SERVICES.format(vip=REVIEWS_VIP, v1=m.ip("reviews-v1"), v2=m.ip("reviews-v2"),
                               shadow_vip=SHADOW_VIP, shadow=m.ip("shadow"), ghost_vip=GHOST_VIP,
                               ghost=m.ip("ghost"))
    m.file("registry.yaml", services)
    m.routing = m.file("resilience.yaml", services + ROUTING)
    m.load = m.file("load.py", LOAD)
    m.record = m.file("shadow-record.jsonl", "", mode=0o666)
    m.start_control()
    for pod in ("reviews-v1", "reviews-v2"):
        m.start_app(pod, 8080)
    log = os.path.join(m.tmp, "app-shadow-8080.log")
    m.apps[("shadow", 8080)] = c.spawn("shadow", ["python3", ECHO_APP, "--port", "8080", "--name", "shadow",
                                                  "--record", m.record], user=(APP_UID, APP_UID), log_path=log)
    for pod in ("reviews-v1", "reviews-v2", "shadow"):
        m.wait_app(pod, 8080)
    m.init("client")
    m.start_proxy("client", "client", ["--config", m.routing])
    for pod, sa in (("reviews-v1", "reviews"), ("reviews-v2", "reviews"), ("shadow", "shadow")):
        m.init(pod)
        m.start_proxy(pod, sa)
    for pod in ("client", "reviews-v1", "reviews-v2", "shadow"):
        m.wait_ready(pod)


def test_a_outlier_detection_ejects_and_returns(m):
    m.involved = ["client"]
    before = stat(m, "outlier_detection.ejections_enforced_total")
    # reviews-v1 answers 503: after 3 in a row it is ejected, and v2 takes everything.
    res = load(m, "/guarded?fail_pod=reviews-v1", n=60)
    failed = res["codes"].get("503", 0)
    check(failed == 3, f"{failed} requests answered 503 before reviews-v1 was ejected; "
          "consecutive5xxErrors is 3", [json.dumps(res)])
    check(res["seen"].get("reviews-v2") == 57, "traffic did not all go to reviews-v2", [json.dumps(res)])
    check(stat(m, "outlier_detection.ejections_enforced_total") - before == 1,
          "the ejection is not counted in /stats")
    check(health_flag(m, GUARDED, "reviews-v1") == "/failed_outlier_check" and
          health_flag(m, GUARDED, "reviews-v2") == "healthy",
          "/clusters does not flag reviews-v1 /failed_outlier_check", [clusters(m)])
    r = m.c.run("client", ["curl", "-sS", "http://127.0.0.1:15090/stats/prometheus"], check=False)
    check("remora_outlier_detection_ejections_enforced_total 1" in r.stdout and
          "remora_outlier_detection_ejections_active 1" in r.stdout,
          "Prometheus has no ejection metrics", [r.stdout[-1500:]])
    # While ejected, healthy requests avoid it too.
    res = load(m, "/guarded?x=1", n=30)
    check(res["seen"] == {"reviews-v2": 30}, f"during the ejection traffic went to {res['seen']}")
    # Back after baseEjectionTime (3 s), at the next 1 s sweep.
    time.sleep(4.2)
    res = load(m, "/guarded?x=2", n=60)
    check(res["codes"] == {"200": 60} and res["seen"].get("reviews-v1", 0) >= 10,
          f"after baseEjectionTime reviews-v1 did not get traffic again: {json.dumps(res)}")
    check(health_flag(m, GUARDED, "reviews-v1") == "healthy", "/clusters still flags reviews-v1",
          [clusters(m)])


def test_b_outlier_detection_respects_max_ejection_percent(m):
    m.involved = ["client"]
    time.sleep(1.2)  # a sweep after the last test
    before = stat(m, "outlier_detection.ejections_overflow")
    # Both fail: the first to reach 3 in a row is ejected; 50% of 2 forbids the second.
    res = load(m, "/guarded?fail_pod=all", n=20)
    check(res["codes"] == {"503": 20}, f"expected every request to fail: {json.dumps(res)}")
    flags = [health_flag(m, GUARDED, p) for p in ("reviews-v1", "reviews-v2")]
    check(sorted(flags) == ["/failed_outlier_check", "healthy"],
          f"maxEjectionPercent 50 of 2 endpoints should eject exactly one: {flags}", [clusters(m)])
    check(stat(m, "outlier_detection.ejections_overflow") - before >= 1,
          "the refused ejection is not counted")
    time.sleep(7.5)  # the second ejection lasts 2 x 3 s


def test_c_least_request_prefers_the_fast_endpoint(m):
    m.involved = ["client"]
    res = load(m, "/flaky?slow_pod=reviews-v1&ms=300", n=15, threads=8)
    fast = res["seen"].get("reviews-v2", 0)
    total = sum(res["seen"].values())
    check(res["codes"] == {"200": 120}, f"requests failed: {json.dumps(res)}")
    # Power of two choices samples two endpoints with replacement, as Envoy does: with two
    # endpoints, a quarter of the picks draw the slow one twice and must take it, so about 75% go
    # to the fast one (round robin would give 50%). 65% leaves room for a noisy machine.
    check(fast >= 0.65 * total, f"reviews-v2 (fast) got {fast} of {total} requests with reviews-v1 "
          "taking 300 ms; LEAST_REQUEST should send most to the fast one", [json.dumps(res)])


def test_d_retry_budget_stops_a_retry_storm(m):
    m.involved = ["client"]
    n = 60
    before_total, before_overflow = stat(m, "upstream_rq_total"), stat(m, "upstream_rq_retry_overflow")
    before_retry = stat(m, "upstream_rq_retry")
    res = load(m, "/storm?fail_pod=all", n=1, threads=n)
    check(res["codes"] == {"503": n}, f"every request should end 503: {json.dumps(res)}")
    sent = stat(m, "upstream_rq_total") - before_total
    retried = stat(m, "upstream_rq_retry") - before_retry
    overflow = stat(m, "upstream_rq_retry_overflow") - before_overflow
    print(f"    retry storm: {n} requests x (1 + 10 attempts) would be {n * 11}; upstream saw {sent}, "
          f"{retried} retries, {overflow} refused by the budget", flush=True)
    check(sent <= n * 11 * 0.4, f"upstream saw {sent} requests for {n} failing requests with attempts 10: "
          f"the DestinationRule's retryBudget should keep it far below {n * 11}")
    check(overflow > 0, "no retry was refused (upstream_rq_retry_overflow)")


def test_e_post_body_retried_whole(m):
    m.involved = ["client"]
    body = bytes((i * 7) % 251 for i in range(20000))
    before = stat(m, "upstream_rq_retry")
    res = load(m, "/body?fail_pod=reviews-v1", n=12, body=body)
    check(res["codes"] == {"200": 12} and res["seen"] == {"reviews-v2": 12} and res["bodies_ok"] == 12,
          f"a 20000-byte POST was not retried on reviews-v2 with its whole body: {json.dumps(res)}")
    check(stat(m, "upstream_rq_retry") - before >= 1, "no request was retried (all hit v2 first?)")
    res = load(m, "/body?fail_pod=reviews-v1", n=12, body=body, chunked=True)
    check(res["codes"] == {"200": 12} and res["bodies_ok"] == 12,
          f"a chunked 20000-byte POST was not retried whole: {json.dumps(res)}")
    # A slow client: its body comes in three parts with pauses, so it streams to the first attempt
    # (reviews-v1 reads it all, then fails) and the retry resends the copy whole to reviews-v2.
    res = load(m, "/body?fail_pod=reviews-v1", n=6, body=body, chunked=True, pause=0.3)
    check(res["codes"] == {"200": 6} and res["seen"] == {"reviews-v2": 6} and res["bodies_ok"] == 6,
          f"a slow client's chunked POST was not retried whole: {json.dumps(res)}")


def test_f_body_over_the_bound_is_streamed_not_retried(m):
    m.involved = ["client"]
    body = bytes((i * 13) % 251 for i in range(1024 * 1024 + 64 * 1024))  # over the 1 MiB copy
    before = stat(m, "retry_or_shadow_abandoned")
    res = load(m, "/body?fail_pod=reviews-v1", n=16, body=body)
    ok, failed = res["codes"].get("200", 0), res["codes"].get("503", 0)
    check(ok + failed == 16 and failed >= 1 and res["bodies_ok"] == ok,
          f"a 1.06 MiB POST should reach the app whole and not be retried (503 from v1 stays): {json.dumps(res)}")
    check(stat(m, "retry_or_shadow_abandoned") - before == 16, "the bodies over the bound are not counted")
    res = load(m, "/body?fail_pod=reviews-v1", n=8, body=body, chunked=True)
    ok = res["codes"].get("200", 0)
    check(res["bodies_ok"] == ok and ok + res["codes"].get("503", 0) == 8,
          f"a chunked 1.06 MiB POST was damaged: {json.dumps(res)}")


def test_g_mirror_gets_its_percentage_with_shadow_host(m):
    m.involved = ["client"]
    open(m.record, "w").close()
    res = load(m, "/mirror-half?x=1", n=400)
    check(res["codes"] == {"200": 400} and res["seen"] == {"reviews-v1": 400},
          f"the real requests did not all go to reviews-v1: {json.dumps(res)}")
    time.sleep(1)
    got = recorded(m)
    hosts = {r["host"] for r in got}
    share = 100.0 * len(got) / 400
    check(abs(share - 50) <= 8, f"the mirror saw {len(got)} of 400 requests ({share:.1f}%); mirrorPercentage is 50")
    check(hosts == {"reviews-shadow:8080"}, f"mirrored requests came with Host {hosts}; Istio says reviews-shadow:8080")
    # A body is mirrored whole.
    open(m.record, "w").close()
    body = b"mirror me " * 500
    res = load(m, "/mirror-all?x=2", n=5, body=body)
    time.sleep(0.5)
    got = recorded(m)
    check(res["codes"] == {"200": 5} and len(got) == 5 and all(r["body_length"] == len(body) and r["method"] == "POST" for r in got),
          f"POST bodies were not mirrored whole: {json.dumps(res)} {got[:2]}")


def test_h_slow_or_dead_mirror_never_slows_the_real_request(m):
    m.involved = ["client"]
    before = stat(m, "upstream_rq_mirror")
    res = load(m, "/mirror-all?slow_pod=shadow&ms=2000", n=10)
    check(res["codes"] == {"200": 10} and res["max_ms"] < 500,
          f"with the mirror taking 2 s the real requests took up to {res['max_ms']:.0f} ms: {json.dumps(res)}")
    check(stat(m, "upstream_rq_mirror") - before == 10, "the mirrored requests are not counted")
    before_failed = stat(m, "upstream_rq_mirror_failed")
    res = load(m, "/mirror-dead?x=3", n=20)
    check(res["codes"] == {"200": 20} and res["max_ms"] < 500,
          f"with the mirror target down the real requests suffered: {json.dumps(res)}")
    time.sleep(0.5)
    check(stat(m, "upstream_rq_mirror_failed") - before_failed == 20,
          "the mirror's connect failures are not counted in upstream_rq_mirror_failed")


TESTS = [
    ("a_outlier_detection_ejects_and_returns", test_a_outlier_detection_ejects_and_returns),
    ("b_outlier_detection_respects_max_ejection_percent", test_b_outlier_detection_respects_max_ejection_percent),
    ("c_least_request_prefers_the_fast_endpoint", test_c_least_request_prefers_the_fast_endpoint),
    ("d_retry_budget_stops_a_retry_storm", test_d_retry_budget_stops_a_retry_storm),
    ("e_post_body_retried_whole", test_e_post_body_retried_whole),
    ("f_body_over_the_bound_is_streamed_not_retried", test_f_body_over_the_bound_is_streamed_not_retried),
    ("g_mirror_gets_its_percentage_with_shadow_host", test_g_mirror_gets_its_percentage_with_shadow_host),
    ("h_slow_or_dead_mirror_never_slows_the_real_request", test_h_slow_or_dead_mirror_never_slows_the_real_request),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-z", "remora-test-resilience-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
