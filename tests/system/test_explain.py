#!/usr/bin/env python3
"""System test: remoractl explain agrees with the data path. For Istio's task recipes (request
routing, traffic shifting, fault abort, request timeouts, circuit breaking, no route / no endpoint,
HTTP authorization, an mTLS mismatch), explain's verdict, shares and reasons, read from the
control plane's snapshots, are compared with what real requests through the sidecars get.

    python3 tests/system/test_explain.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

The cluster is test_istio_tasks.py's: Bookinfo's Services with ClusterIPs, productpage,
reviews-v1/2/3, ratings-v1 and httpbin pods with sidecars, destination-rule-all.yaml.

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import check  # noqa: E402
from test_mesh import CONTROL, describe, run_suite  # noqa: E402
from test_istio_tasks import (HTTPBIN_BREAKER, ONLY_PREFIX_VS, SAMPLES, TIMEOUT_VS, apply_sample,  # noqa: E402
                              apply_text, count, ctl, delete_sample, setup, store_version)

DENY_ADMIN = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector:
    matchLabels: {app: ratings}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin*"]
"""

STRICT_AND_PLAINTEXT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ratings-strict, namespace: default}
spec:
  selector:
    matchLabels: {app: ratings}
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    tls: {mode: DISABLE}
"""


def apply_for(m, name, text, pods, timeout=5):
    """Applies a policy that changes only `pods`' snapshots (the others are not sent again) and
    waits until those have applied the store's current version."""
    ctl(m, "apply", "-f", m.file(name, text))
    want = store_version(m)
    deadline = time.monotonic() + timeout
    while True:
        ps = {p["podName"]: p for p in json.loads(ctl(m, "proxy-status", "-o", "json").stdout)}
        if all(ps[p]["status"] == "SYNCED" and ps[p]["configVersion"] == want for p in pods):
            return
        check(time.monotonic() < deadline, f"{pods} did not apply config version {want}",
              [json.dumps({p: ps[p] for p in pods})])
        time.sleep(0.05)


def explain(m, *args):
    """remoractl explain ... -o json against the control plane: (report, exit status). The exit
    status must say what the report's verdict says."""
    r = ctl(m, "explain", *args, "-o", "json", check_rc=False)
    check(r.returncode in (0, 1), f"remoractl explain {' '.join(args)} exited {r.returncode}", describe(r))
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        check(False, "remoractl explain -o json printed no JSON", describe(r))
    check((r.returncode == 0) == doc["verdict"]["served"],
          f"exit {r.returncode} but the verdict says served={doc['verdict']['served']}", [r.stdout[:3000]])
    return doc, r.returncode


def text(m, *args):
    r = ctl(m, "explain", *args, check_rc=False)
    return r.stdout, r.returncode


def shares(doc):
    """The pods explain says answer, with their shares (served outcomes only)."""
    out = {}
    for o in doc["verdict"]["outcomes"]:
        if o["served"] and o["status"] == 0:
            pod = o["where"].split(" (")[0]
            out[pod] = out.get(pod, 0) + o["share"]
    return out


def refusals(doc):
    """'STATUS FLAG' -> share, for the refused outcomes."""
    out = {}
    for o in doc["verdict"]["outcomes"]:
        if not o["served"]:
            key = f"{o['status']} {o['flag']}".strip()
            out[key] = out.get(key, 0) + o["share"]
    return out


def agree(doc, real, n, tolerance=0.0):
    """The real counts (count()'s result over n requests) against explain's shares."""
    predicted = shares(doc)
    got = {pod: k / n for pod, k in real["seen"].items()}
    check(set(got) <= set(predicted) and all(abs(got.get(p, 0) - s) <= tolerance for p, s in predicted.items()),
          f"explain predicted {predicted}, {n} real requests gave {got} (±{tolerance})",
          [json.dumps(doc["verdict"])])


def test_a_request_routing(m):
    """Request Routing: jason to v2 by his header; everyone else to v1; the miss is explained."""
    m.involved = ["productpage"]
    apply_sample(m, "virtual-service-all-v1.yaml")
    apply_sample(m, "virtual-service-reviews-test-v2.yaml")
    jason, rc = explain(m, "--from", "productpage", "http://reviews:9080/", "-H", "end-user: jason")
    check(rc == 0 and shares(jason) == {"reviews-v2": 1.0}, f"jason: {jason['verdict']}")
    agree(jason, count(m, "productpage", "reviews", 20, headers={"end-user": "jason"}), 20)
    alice, rc = explain(m, "--from", "productpage", "http://reviews:9080/", "-H", "end-user: alice")
    check(shares(alice) == {"reviews-v1": 1.0}, f"alice: {alice['verdict']}")
    agree(alice, count(m, "productpage", "reviews", 20, headers={"end-user": "alice"}), 20)
    rules = alice["routing"]["rules"]
    check(len(rules) == 2 and not rules[0]["matched"] and rules[1]["matched"] and
          rules[0]["whyNot"] == ['header end-user: "alice" is not exact "jason"'],
          f"the rules tried for alice: {rules}")
    # The same question for a workload that is not running, by its labels.
    labels, rc = explain(m, "--from-labels", "app=productpage,version=v1", "--service-account",
                         "bookinfo-productpage", "http://reviews:9080/", "-H", "end-user: jason")
    check(rc == 0 and shares(labels) == {"reviews-v2": 1.0}, f"--from-labels: {labels['verdict']}")
    out, rc = text(m, "--from", "productpage", "http://reviews:9080/", "-H", "end-user: jason")
    check(rc == 0 and out.startswith("served by reviews-v2") and "VirtualService default/reviews" in out,
          "explain's text", [out[:2000]])


def test_b_traffic_shifting(m):
    """Traffic Shifting 80/20: explain's shares against 400 real requests."""
    m.involved = ["productpage"]
    apply_sample(m, "virtual-service-reviews-80-20.yaml")
    doc, rc = explain(m, "--from", "productpage", "http://reviews:9080/")
    check(rc == 0 and shares(doc) == {"reviews-v1": 0.8, "reviews-v2": 0.2}, f"80/20: {doc['verdict']}")
    agree(doc, count(m, "productpage", "reviews", 400), 400, tolerance=0.07)
    apply_sample(m, "virtual-service-all-v1.yaml")


def test_c_fault_abort(m):
    """Fault Injection, abort: jason's calls to ratings are 500 FI, exit 1; others reach ratings."""
    m.involved = ["reviews-v2"]
    apply_sample(m, "virtual-service-ratings-test-abort.yaml")
    doc, rc = explain(m, "--from", "reviews-v2", "http://ratings:9080/", "-H", "end-user: jason")
    check(rc == 1 and refusals(doc) == {"500 FI": 1.0} and doc["verdict"]["summary"].startswith("500 FI"),
          f"jason's abort: {doc['verdict']}")
    real = count(m, "reviews-v2", "ratings", 10, headers={"end-user": "jason"})
    check(real["codes"] == {"500 FI": 10}, f"real requests: {real}")
    other, rc = explain(m, "--from", "reviews-v2", "http://ratings:9080/")
    check(rc == 0, f"others: {other['verdict']}")
    agree(other, count(m, "reviews-v2", "ratings", 10), 10)
    delete_sample(m, "virtual-service-ratings-test-abort.yaml")


def test_d_timeout_and_circuit_breaker(m):
    """Request Timeouts and Circuit Breaking: the route's timeout and the pool's limits explain
    shows are the ones the proxy enforces (504 UT after 0.5 s; 503 UO under load)."""
    m.involved = ["productpage"]
    apply_text(m, "timeout.yaml", TIMEOUT_VS)
    doc, rc = explain(m, "--from", "productpage", "http://reviews:9080/slow?ms=2000")
    check(rc == 0 and doc["route"]["timeout"] == "500ms" and shares(doc) == {"reviews-v2": 1.0},
          f"timeout: {doc.get('route')} {doc['verdict']}")
    rc, status, body, r = m.curl("productpage", "http://reviews:9080/slow?ms=2000", "-D", "-", max_time=10)
    check(status == 504 and "x-remora-response-flags: UT" in body, f"the slow request gave {status}", [describe(r)])
    apply_text(m, "httpbin-breaker.yaml", HTTPBIN_BREAKER)
    doc, rc = explain(m, "--from", "productpage", "http://httpbin:8000/get")
    dest = doc["destinations"][0]
    pool = dest["connectionPool"]
    check(rc == 0 and pool["maxConnections"] == "1" and pool["http1MaxPendingRequests"] == "1" and
          pool["maxRequestsPerConnection"] == "1" and dest["outlierDetection"]["consecutive5xxErrors"] == 1 and
          dest["destinationRule"] == "httpbin.default", f"httpbin's pool: {dest}")
    agree(doc, count(m, "productpage", "httpbin", 1, path="/get", port=8000), 1)
    flag, rc = text(m, "--flag", "UO")
    check(rc == 0 and flag.startswith("UO (503)") and "maxConnections" in flag, "explain --flag UO", [flag])


def test_e_no_route_and_no_endpoint(m):
    """404 NR for a request no rule takes (each miss explained); 503 UH for a service without
    endpoints; both exit 1, as the real requests fail."""
    m.involved = ["reviews-v2"]
    apply_text(m, "only-prefix.yaml", ONLY_PREFIX_VS)
    doc, rc = explain(m, "--from", "reviews-v2", "http://ratings:9080/elsewhere")
    check(rc == 1 and refusals(doc) == {"404 NR": 1.0} and
          doc["routing"]["rules"][0]["whyNot"] == ['uri: "/elsewhere" is not prefix "/only"'],
          f"/elsewhere: {doc['verdict']} {doc.get('routing')}")
    rc, status, body, r = m.curl("reviews-v2", "http://ratings:9080/elsewhere", "-D", "-")
    check(status == 404 and "x-remora-response-flags: NR" in body, f"real: {status}", [describe(r)])
    ok, rc = explain(m, "--from", "reviews-v2", "http://ratings:9080/only/this")
    check(rc == 0, f"/only/this: {ok['verdict']}")
    agree(ok, count(m, "reviews-v2", "ratings", 5, path="/only/this"), 5)
    doc, rc = explain(m, "--from", "reviews-v2", "http://details:9080/")
    check(rc == 1 and refusals(doc) == {"503 UH": 1.0}, f"details: {doc['verdict']}")
    rc, status, body, r = m.curl("reviews-v2", "http://details:9080/", "-D", "-")
    check(status == 503 and "x-remora-response-flags: UH" in body, f"real: {status}", [describe(r)])
    ctl(m, "delete", "-f", m.file("only-prefix.yaml", ONLY_PREFIX_VS))


def test_f_authorization(m):
    """HTTP authorization: a DENY policy on ratings' /admin: explain names the policy and rule
    first and exits 1; the real request is 403; other paths pass in both."""
    m.involved = ["reviews-v2", "ratings-v1"]
    apply_for(m, "deny-admin.yaml", DENY_ADMIN, ["ratings-v1"])
    out, rc = text(m, "--from", "reviews-v2", "http://ratings:9080/admin/users", "-X", "POST")
    check(rc == 1 and out.splitlines()[0] == "403 RBAC by default/deny-admin rule 0",
          f"explain exited {rc}", [out[:3000]])
    rc, status, body, r = m.curl("reviews-v2", "http://ratings:9080/admin/users", "-X", "POST")
    check(status == 403 and "RBAC: access denied" in body, f"the real request gave {status}", [describe(r)])
    doc, rc = explain(m, "--from", "reviews-v2", "http://ratings:9080/ratings/0")
    server = doc["destinations"][0]["endpoints"][0]["server"]
    check(rc == 0 and server["authorization"]["decision"] == "ALLOW" and server["name"] == "ratings-v1",
          f"/ratings/0: {doc['verdict']} {server}")
    agree(doc, count(m, "reviews-v2", "ratings", 5, path="/ratings/0"), 5)
    ctl(m, "delete", "-f", m.file("deny-admin.yaml", DENY_ADMIN))


def test_g_mtls_mismatch(m):
    """A DestinationRule sending plaintext to a workload whose PeerAuthentication is STRICT:
    explain says the server's sidecar cuts it; the real request fails the same way."""
    m.involved = ["reviews-v2", "ratings-v1"]
    apply_for(m, "strict-plaintext.yaml", STRICT_AND_PLAINTEXT, ["ratings-v1", "reviews-v2"])
    doc, rc = explain(m, "--from", "reviews-v2", "http://ratings:9080/")
    ep = doc["destinations"][0]["endpoints"][0]
    check(rc == 1 and not ep["mtls"] and ep["server"]["mtlsMode"] == "STRICT" and
          ep["server"]["peerAuthentications"] == ["default/ratings-strict"], f"explain: {doc['verdict']} {ep}")
    rc, status, body, r = m.curl("reviews-v2", "http://ratings:9080/", "-D", "-")
    predicted = list(refusals(doc))[0]
    flag = predicted.split(" ", 1)[1] if " " in predicted else ""
    check(status == int(predicted.split(" ")[0]) and f"x-remora-response-flags: {flag}" in body,
          f"explain predicted {predicted}; the real request gave {status}", [describe(r)])
    ctl(m, "delete", "-f", m.file("strict-plaintext.yaml", STRICT_AND_PLAINTEXT))
    ctl(m, "apply", "-f", os.path.join(SAMPLES, "destination-rule-all.yaml"))


def test_h_outlier_ejection(m):
    """Outlier detection: after httpbin's one endpoint answers 500 (consecutive5xxErrors 1),
    explain run in the client's pod with --proxy-admin sees it ejected and predicts 503 UH, as the
    real request then gets."""
    m.involved = ["productpage"]
    apply_text(m, "httpbin-breaker.yaml", HTTPBIN_BREAKER)
    rc, status, body, r = m.curl("productpage", "http://httpbin:8000/status?code=500")
    check(status == 500, f"httpbin's 500 came back as {status}", [describe(r)])
    r = m.c.run("productpage", [m.ctl_bin, "explain", "--from", "productpage", "http://httpbin:8000/get",
                                "--proxy-admin", "127.0.0.1:15000", "--control", CONTROL, "--state-dir", m.state,
                                "-o", "json"], check=False, timeout=30)
    check(r.returncode == 1, f"explain with --proxy-admin exited {r.returncode}", [describe(r)])
    doc = json.loads(r.stdout)
    ep = doc["destinations"][0]["endpoints"][0]
    check(ep["health"] == "ejected by outlier detection" and refusals(doc) == {"503 UH": 1.0},
          f"explain: {ep} {doc['verdict']}")
    rc, status, body, r = m.curl("productpage", "http://httpbin:8000/get", "-D", "-")
    check(status == 503 and "x-remora-response-flags: UH" in body, f"the real request gave {status}", [describe(r)])


TESTS = [
    ("a_request_routing", test_a_request_routing),
    ("b_traffic_shifting", test_b_traffic_shifting),
    ("c_fault_abort", test_c_fault_abort),
    ("d_timeout_and_circuit_breaker", test_d_timeout_and_circuit_breaker),
    ("e_no_route_and_no_endpoint", test_e_no_route_and_no_endpoint),
    ("f_authorization", test_f_authorization),
    ("g_mtls_mismatch", test_g_mtls_mismatch),
    ("h_outlier_ejection", test_h_outlier_ejection),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-x", "remora-test-explain-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
