#!/usr/bin/env python3
"""System test of Istio routing in the sidecar: a VirtualService canary and a header match through
real proxies in a local cluster, with the proxy reading Istio YAML (--config).

    python3 tests/system/test_routing.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node        remora-control (CA)
    client      meshed; its proxy runs with --config routing.yaml (SE + WEs + DR + VS)
    reviews-v1  meshed, echo app on :8080, labels app=reviews, version=v1
    reviews-v2  meshed, echo app on :8080, labels app=reviews, version=v2

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import check  # noqa: E402
from test_mesh import describe, run_suite  # noqa: E402

REVIEWS_VIP = "198.19.0.20"

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
"""

ROUTING = """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: guarded
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        tcp: {maxConnections: 1}
        http: {http1MaxPendingRequests: 1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 50}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /timeout}}]
    rewrite: {uri: /slow}
    timeout: 0.5s
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new-place, authority: elsewhere.example}
  - match: [{uri: {prefix: /flaky}, queryParams: {case: {exact: pertry}}}]
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: "5xx"}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /flaky}}]
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /breaker}}]
    rewrite: {uri: /flaky}
    retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: guarded}}]
  - match: [{uri: {prefix: /headers}}]
    headers:
      request: {set: {x-route: canary}, remove: [x-drop-me]}
      response: {add: {x-served-by: remora}}
    route: [{destination: {host: reviews, subset: v2}, headers: {request: {set: {x-subset: v2}}}}]
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
"""

# Runs in the client pod: N requests over keep-alive, counting which pod answered.
COUNTER = r'''
import collections, http.client, json, sys
a = json.loads(sys.argv[1])
seen, errors, codes = collections.Counter(), [], collections.Counter()
conn = http.client.HTTPConnection(a["host"], a["port"], timeout=5)
for i in range(a["n"]):
    try:
        conn.request("GET", a.get("path", "/r/") + str(i), headers=dict(a.get("headers", {}), Host=a["host_header"]))
        res = conn.getresponse()
        body = res.read()
        codes[str(res.status)] += 1
        if a.get("path") and not (a.get("count_pods") and res.status == 200):
            continue
        if res.status == 200:
            seen[json.loads(body)["pod"]] += 1
        else:
            errors.append("HTTP %d %s" % (res.status, res.getheader("x-remora-response-flags")))
    except Exception as e:
        errors.append("%s: %s" % (type(e).__name__, e))
        conn.close()
        conn = http.client.HTTPConnection(a["host"], a["port"], timeout=5)
print(json.dumps({"seen": seen, "errors": errors[:10], "failed": len(errors), "codes": codes}))
'''


# Runs in the client pod: N requests at once, each on its own connection; statuses and flags.
PARALLEL = r'''
import collections, http.client, json, sys, threading
a = json.loads(sys.argv[1])
out = collections.Counter()
lock = threading.Lock()
def one(i):
    try:
        conn = http.client.HTTPConnection(a["host"], a["port"], timeout=10)
        conn.request("GET", a["path"] + str(i), headers={"Host": a["host_header"]})
        res = conn.getresponse()
        res.read()
        key = "%d %s" % (res.status, res.getheader("x-remora-response-flags") or "-")
    except Exception as e:
        key = type(e).__name__
    with lock:
        out[key] += 1
threads = [threading.Thread(target=one, args=(i,)) for i in range(a["n"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
'''


def count(m, n, headers=None):
    r = m.c.run("client", ["python3", m.counter, json.dumps(
        {"host": "reviews", "port": 8080, "host_header": "reviews:8080", "n": n,
         "headers": headers or {}})], user=1000, check=False, timeout=120)
    check(r.returncode == 0, "the counting client failed", describe(r))
    return json.loads(r.stdout.strip().splitlines()[-1])


def count_path(m, path, n):
    return count_path_headers(m, path, n, {})


def count_path_headers(m, path, n, headers):
    r = m.c.run("client", ["python3", m.counter, json.dumps(
        {"host": "reviews", "port": 8080, "host_header": "reviews:8080", "n": n, "path": path,
         "headers": headers, "count_pods": True})],
        user=1000, check=False, timeout=120)
    check(r.returncode == 0, "the counting client failed", describe(r))
    return json.loads(r.stdout.strip().splitlines()[-1])


def setup(m):
    c = m.c
    for name in ("client", "reviews-v1", "reviews-v2"):
        c.add_pod(name)
    c.add_service("reviews", REVIEWS_VIP)
    services = SERVICES.format(vip=REVIEWS_VIP, v1=m.ip("reviews-v1"), v2=m.ip("reviews-v2"))
    m.file("registry.yaml", services)
    m.routing = m.file("routing.yaml", services + ROUTING)
    m.counter = m.file("counter.py", COUNTER)
    m.parallel = m.file("parallel.py", PARALLEL)
    m.start_control()
    for pod in ("reviews-v1", "reviews-v2"):
        m.start_app(pod, 8080)
        m.wait_app(pod, 8080)
    m.init("client")
    m.start_proxy("client", "client", ["--config", m.routing])
    for pod in ("reviews-v1", "reviews-v2"):
        m.init(pod)
        m.start_proxy(pod, "reviews")
    for pod in ("client", "reviews-v1", "reviews-v2"):
        m.wait_ready(pod)


def test_a_canary_90_10(m):
    m.involved = ["client"]
    res = count(m, 2000)
    check(res["failed"] == 0, f"{res['failed']} of 2000 requests failed", res["errors"])
    v2 = res["seen"].get("reviews-v2", 0)
    share = 100.0 * v2 / 2000
    check(abs(share - 10) <= 3, f"v2 got {share:.1f}% of 2000 requests; the VirtualService says 10",
          [json.dumps(res["seen"])])


def test_b_header_match_goes_to_v2_only(m):
    m.involved = ["client"]
    res = count(m, 100, {"end-user": "jason"})
    check(res["failed"] == 0 and res["seen"] == {"reviews-v2": 100},
          f"jason's requests went to {dict(res['seen'])}, expected all 100 to reviews-v2", res["errors"])
    res = count(m, 100, {"end-user": "Jason"})  # header values match case-sensitively
    check(res["seen"].get("reviews-v1", 0) > 50, f"'Jason' was routed as jason: {dict(res['seen'])}")


def test_c_config_dump_shows_routes(m):
    dump = json.loads(m.admin("client", "/config_dump"))
    vhs = {v["name"]: v for v in dump.get("virtual_hosts", [])}
    vh = vhs.get("reviews.default.svc.cluster.local:8080")
    names = [r["name"] for r in vh["routes"]] if vh else []
    check(names == [f"route-{i}" for i in range(12)] and
          [c["weight"] for c in vh["routes"][-1]["clusters"]] == [90, 10],
          "/config_dump has no reviews virtual host with the twelve rules, the canary last",
          [json.dumps(dump)[:2000]])
    check(dump.get("inbound_mtls_mode") == "PERMISSIVE" and dump.get("inbound_mtls_policy") == "PERMISSIVE",
          "with --config and no PeerAuthentication the inbound mode should be Istio's PERMISSIVE",
          [json.dumps({k: dump.get(k) for k in ("inbound_mtls_mode", "inbound_mtls_policy")})])
    clusters = {c["name"]: c for c in dump["clusters"]}
    v1 = clusters.get("outbound|8080|v1|reviews.default.svc.cluster.local")
    check(v1 and [e["address"] for e in v1["endpoints"]] == [f"{m.ip('reviews-v1')}:8080"] and
          v1["endpoints"][0]["identity"] == "spiffe://cluster.local/ns/default/sa/reviews",
          "subset v1's cluster is not the v1 pod with its identity", [json.dumps(dump["clusters"])])


def test_d_invalid_config_stops_with_file_line_col(m):
    bad = m.file("bad.yaml", ROUTING.replace("weight: 10", "weight: -10"))
    r = m.c.run("node", [m.proxy_bin, "--config", bad, "--cert-chain", "/nonexistent", "--key", "/x",
                         "--trust-bundle", m.root, "--outbound", "127.0.0.1:0", "--inbound", "off",
                         "--admin", "127.0.0.1:0", "--health", "127.0.0.1:0", "--metrics", "off"],
                check=False, timeout=20)
    check(r.returncode != 0 and f"{bad}:" in r.stderr and "weight" in r.stderr,
          "an invalid --config did not stop the proxy with a file:line:col message", describe(r))


def curl(m, path, *args, max_time=10):
    return m.curl("client", f"http://reviews:8080{path}", *args, max_time=max_time)


def stat(m, name):
    return m.stats("client").get(name, 0)


def test_e_fault_abort_and_percentage(m):
    m.involved = ["client"]
    rc, status, body, r = curl(m, "/abort", "-D", "-")
    check(status == 418 and "fault filter abort" in body and "x-remora-response-flags: FI" in body,
          f"a 100% abort answered {status}", describe(r))
    before = stat(m, "rq_flag_FI")
    res = count_path(m, "/half", 400)
    aborted = res["codes"].get("500", 0)
    check(140 <= aborted <= 260, f"{aborted} of 400 requests aborted at 50%", [json.dumps(res)])
    check(stat(m, "rq_flag_FI") - before == aborted, "rq_flag_FI does not count the aborts")


def test_f_fault_delay(m):
    m.involved = ["client"]
    before = stat(m, "rq_flag_DI")
    started = time.monotonic()
    rc, status, body, r = curl(m, "/delay")
    took = time.monotonic() - started
    check(status == 200 and took >= 1.0, f"a 1 s delay fault answered {status} after {took:.2f} s",
          describe(r))
    check(stat(m, "rq_flag_DI") - before == 1, "rq_flag_DI did not count the delayed request")


def test_g_route_timeout_504_ut(m):
    m.involved = ["client"]
    rc, status, body, r = curl(m, "/timeout?ms=3000", "-D", "-")
    check(status == 504 and "upstream request timeout" in body and "x-remora-response-flags: UT" in body,
          f"a 0.5 s route timeout on a 3 s answer gave {status}", describe(r))
    doc = m.get_json("client", "http://reviews:8080/timeout?ms=10")  # rewritten to /slow, in time
    check(doc["path"] == "/slow" and doc["query"] == "ms=10", f"the app saw {doc['path']}?{doc['query']}")


def test_h_direct_response_and_redirect(m):
    m.involved = ["client"]
    rc, status, body, r = curl(m, "/direct")
    check(status == 418 and body == "short and stout", f"direct response: {status} {body!r}")
    rc, status, body, r = curl(m, "/moved", "-D", "-")
    check(status == 301 and "location: http://elsewhere.example/new-place" in body.lower(),
          f"redirect: {status}", describe(r))


def test_i_header_operations(m):
    m.involved = ["client"]
    rc, status, body, r = curl(m, "/headers", "-D", "-", "-H", "x-drop-me: 1")
    head, _, payload = body.replace("\r\n", "\n").partition("\n\n")
    check(status == 200 and "x-served-by: remora" in head.lower(), "the response header was not added",
          describe(r))
    doc = json.loads(payload)
    h = doc["headers"]
    check(h.get("x-route") == "canary" and h.get("x-subset") == "v2" and "x-drop-me" not in h and
          doc["pod"] == "reviews-v2", "request header operations not applied", [json.dumps(h)])


def test_j_default_retries_hide_a_failing_replica(m):
    m.involved = ["client"]
    before = stat(m, "upstream_rq_retry")
    res = count_path(m, "/flaky?fail_pod=reviews-v1&n=", 300)
    ok = res["codes"].get("200", 0)
    check(ok >= 300 * 0.999, f"{ok} of 300 succeeded with one of two replicas answering 503 "
          "(Istio's default policy retries 503 twice)", [json.dumps(res)])
    retried = stat(m, "upstream_rq_retry") - before
    check(retried >= 100, f"only {retried} retries for ~150 requests that hit the failing replica")


def test_k_per_try_timeout_then_retry_succeeds(m):
    m.involved = ["client"]
    failures = []
    for i in range(10):
        rc, status, body, r = curl(m, f"/flaky?case=pertry&slow_pod=reviews-v1&ms=3000&i={i}", max_time=8)
        if status != 200 or json.loads(body)["pod"] != "reviews-v2":
            failures.append(f"request {i}: {status} {body[:80]}")
    check(not failures, "a slow replica was not cut by perTryTimeout and retried on the other", failures)


def test_l_retries_exhausted_answer_urx(m):
    m.involved = ["client"]
    before = stat(m, "rq_flag_URX")
    rc, status, body, r = curl(m, "/flaky?fail_pod=all")
    check(status == 503, f"with every replica failing the client got {status}", describe(r))
    check(stat(m, "rq_flag_URX") - before == 1, "the exhausted retries were not flagged URX")


def test_m_consistent_hash_keeps_a_user_on_one_endpoint(m):
    m.involved = ["client"]
    where = {}
    for user in [f"user-{i}" for i in range(10)]:
        res = count_path_headers(m, "/flaky?n=", 10, {"x-user": user})
        pods = {k for k, v in res["seen"].items() if v}
        check(len(pods) == 1 and res["failed"] == 0,
              f"{user}'s 10 requests went to {dict(res['seen'])}: consistentHash should pin them")
        where[user] = pods.pop()
    check(len(set(where.values())) == 2, f"10 users all hashed to one endpoint: {where}")


def test_n_circuit_breaker_overflows_with_uo(m):
    m.involved = ["client"]
    before = stat(m, "rq_flag_UO")
    r = m.c.run("client", ["python3", m.parallel, json.dumps(
        {"host": "reviews", "port": 8080, "host_header": "reviews:8080", "n": 20,
         "path": "/breaker?slow_pod=reviews-v1&ms=1500&i="})], user=1000, check=False, timeout=60)
    check(r.returncode == 0, "the parallel client failed", describe(r))
    got = json.loads(r.stdout.strip().splitlines()[-1])
    uo = got.get("503 UO", 0)
    ok = got.get("200 -", 0)
    check(uo >= 15 and ok >= 1 and uo + ok == 20,
          f"20 concurrent requests under maxConnections 1 + 1 pending: {got}; expected fast 503 UO for "
          "all but one or two")
    check(stat(m, "rq_flag_UO") - before == uo, "the overflows are not counted in /stats rq_flag_UO")


TESTS = [
    ("a_canary_90_10", test_a_canary_90_10),
    ("b_header_match_goes_to_v2_only", test_b_header_match_goes_to_v2_only),
    ("c_config_dump_shows_routes", test_c_config_dump_shows_routes),
    ("d_invalid_config_stops_with_file_line_col", test_d_invalid_config_stops_with_file_line_col),
    ("e_fault_abort_and_percentage", test_e_fault_abort_and_percentage),
    ("f_fault_delay", test_f_fault_delay),
    ("g_route_timeout_504_ut", test_g_route_timeout_504_ut),
    ("h_direct_response_and_redirect", test_h_direct_response_and_redirect),
    ("i_header_operations", test_i_header_operations),
    ("j_default_retries_hide_a_failing_replica", test_j_default_retries_hide_a_failing_replica),
    ("k_per_try_timeout_then_retry_succeeds", test_k_per_try_timeout_then_retry_succeeds),
    ("l_retries_exhausted_answer_urx", test_l_retries_exhausted_answer_urx),
    ("m_consistent_hash_keeps_a_user_on_one_endpoint", test_m_consistent_hash_keeps_a_user_on_one_endpoint),
    ("n_circuit_breaker_overflows_with_uo", test_n_circuit_breaker_overflows_with_uo),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-r", "remora-test-routing-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
