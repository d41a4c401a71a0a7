#!/usr/bin/env python3
"""System test of config distribution: proxies that take their configuration from remora-control
(no --config, no --registry), changed with remoractl apply while traffic flows.

    python3 tests/system/test_distribution.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node         remora-control (CA, config store, distribution, registry)
    client       meshed, sa client; subscribes; the tests' caller
    reviews-v1   meshed, sa reviews, labels app=reviews,version=v1, echo app on :8080
    reviews-v1b  a second v1 replica (its proxy is killed in the registry test)
    reviews-v2   meshed, sa reviews, labels app=reviews,version=v2

The service (a Kubernetes Service with selector app=reviews), its DestinationRule and
VirtualService are applied with remoractl; endpoints are the registered pods.

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import CONTROL, MONITORING, PROXY_UID, Proxy, describe, run_suite  # noqa: E402

REVIEWS_VIP = "198.19.0.30"
REVIEWS = [("reviews-v1", "v1"), ("reviews-v1b", "v1"), ("reviews-v2", "v2")]

BASE = f"""\
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  clusterIP: {REVIEWS_VIP}
  selector: {{app: reviews}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""

ROUTE_TO = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"""

INVALID = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -5
"""

# Runs in the client pod: requests over keep-alive for `seconds`, each recorded as
# [unix time when answered, status, pod or error].
LOAD = r'''
import http.client, json, sys, time
a = json.loads(sys.argv[1])
out = []
conn = http.client.HTTPConnection("reviews", 8080, timeout=5)
end = time.time() + a["seconds"]
while time.time() < end:
    try:
        conn.request("GET", "/", headers={"Host": "reviews:8080"})
        res = conn.getresponse()
        body = res.read()
        pod = json.loads(body)["pod"] if res.status == 200 else res.getheader("x-remora-response-flags")
        out.append([time.time(), res.status, pod])
    except Exception as e:
        out.append([time.time(), 0, "%s: %s" % (type(e).__name__, e)])
        conn.close()
        conn = http.client.HTTPConnection("reviews", 8080, timeout=5)
    time.sleep(a.get("pause", 0.005))
print(json.dumps(out))
'''


def ctl(m, *args, check_rc=True):
    r = m.c.run("node", [m.ctl_bin, *args, "--control", CONTROL, "--state-dir", m.state],
                check=False, timeout=30)
    if check_rc:
        check(r.returncode == 0, f"remoractl {' '.join(args)} failed", describe(r))
    return r


def apply(m, name, text):
    return ctl(m, "apply", "-f", m.file(name, text))


def start_subscribed_proxy(m, pod, sa, labels, workload, extra=()):
    log = os.path.join(m.tmp, f"proxy-{pod}.log")
    argv = [m.proxy_bin, "--control", CONTROL, "--token-file", m.token(sa), "--trust-bundle", m.root,
            "--namespace", "default", "--service-account", sa, "--pod-name", pod,
            "--pod-ip", m.ip(pod), "--workload-name", workload, "--labels", labels, *extra]
    with open(log, "a") as f:
        f.write(f"==== {' '.join(argv)}\n")
    proc = m.c.spawn(pod, argv, user=(PROXY_UID, PROXY_UID), log_path=log)
    m.proxies[pod] = Proxy(pod, sa, proc, argv, log)


def proxy_status(m):
    r = ctl(m, "proxy-status", "-o", "json")
    return {p["podName"]: p for p in json.loads(r.stdout)}


def dump(m, pod):
    return json.loads(m.admin(pod, "/config_dump"))


def endpoints_of(d, cluster):
    for c in d.get("clusters", []):
        if c["name"] == cluster:
            return sorted(e["address"] for e in c["endpoints"])
    return None


def wait_for(what, fn, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise Failure(f"{what}: not within {timeout} s", [repr(last)[:2000]])


def all_synced(m, pods):
    st = proxy_status(m)
    return st if all(st.get(p, {}).get("status") == "SYNCED" for p in pods) else None


MESH_CONFIG = """\
accessLogFile: /dev/stdout
accessLogEncoding: JSON
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
defaultConfig:
  tracing: {sampling: 100}
"""


def start_control(m, extra=()):
    """remora-control as the mesh tests start it, with a MeshConfig the proxies must pick up."""
    m.control = m.c.spawn("node", [m.control_bin, "--state-dir", m.state, "--listen", CONTROL,
                                   "--monitoring", MONITORING, "--mesh-config", m.mesh_config, *extra],
                          log_path=m.control_log)
    m.c.wait_http("node", f"http://{MONITORING}/healthz", timeout=15, proc=m.control, status=200)
    r = m.c.run("node", [m.ctl_bin, "ca", "root", "--state-dir", m.state])
    m.file("root-cert.pem", r.stdout)


def setup(m):
    c = m.c
    m.mesh_config = m.file("mesh.yaml", MESH_CONFIG)
    for name in ["client"] + [p for p, _ in REVIEWS]:
        c.add_pod(name)
    c.add_service("reviews", REVIEWS_VIP)
    m.load = m.file("load.py", LOAD)
    start_control(m)
    apply(m, "base.yaml", BASE + "---\n" + ROUTE_TO.format(subset="v1"))
    for pod, _ in REVIEWS:
        m.start_app(pod, 8080)
        m.wait_app(pod, 8080)
    m.init("client")
    start_subscribed_proxy(m, "client", "client", "app=client,version=v1", "client")
    for pod, version in REVIEWS:
        m.init(pod)
        start_subscribed_proxy(m, pod, "reviews", f"app=reviews,version={version}", f"reviews-{version}")
    for pod in ["client"] + [p for p, _ in REVIEWS]:
        m.wait_ready(pod)
    # Every replica registered and in the client's snapshot.
    want = sorted(f"{m.ip(p)}:8080" for p, v in REVIEWS if v == "v1")
    wait_for("the client's v1 cluster lists both v1 pods",
             lambda: endpoints_of(dump(m, "client"), V1) == want, 10)


V1 = "outbound|8080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|8080|v2|reviews.default.svc.cluster.local"


# Runs in the client pod: one keep-alive connection; a request, then (idle) wait until a file
# appears, then another request on the same connection. Prints the pods that answered.
IDLE_ACROSS_CHANGE = r'''
import http.client, json, os, sys, time
a = json.loads(sys.argv[1])
conn = http.client.HTTPConnection("reviews", 8080, timeout=5)
seen = []
for i in range(2):
    if i == 1:
        open(a["go"] + ".first", "w").close()
        deadline = time.time() + 20
        while not os.path.exists(a["go"]) and time.time() < deadline:
            time.sleep(0.05)
    conn.request("GET", "/", headers={"Host": "reviews:8080"})
    res = conn.getresponse()
    seen.append([res.status, json.loads(res.read()).get("pod") if res.status == 200 else None,
                 conn.sock.getsockname()[1]])
print(json.dumps(seen))
'''


def run_load(m, seconds, pause=0.005):
    return m.c.spawn("client", ["python3", m.load, json.dumps({"seconds": seconds, "pause": pause})],
                     user=(1000, 1000), log_path=os.path.join(m.tmp, f"load-{time.time():.0f}.log"))


def load_result(proc, timeout):
    proc.wait(timeout=timeout)
    with open(proc.log_path) as f:
        lines = f.read().strip().splitlines()
    check(proc.returncode == 0 and lines, "the load client failed", lines[-5:])
    return json.loads(lines[-1])


def test_a_proxies_subscribe_register_and_sync(m):
    m.involved = ["client"]
    st = wait_for("every proxy SYNCED", lambda: all_synced(m, ["client", "reviews-v1", "reviews-v2"]), 10)
    c = st["client"]
    check(c["name"] == "client.default" and c["podIp"] == m.ip("client") and
          c["certificate"]["spiffeId"] == "spiffe://cluster.local/ns/default/sa/client" and
          c["ackedVersion"] == c["sentVersion"] and len(c["ackedVersion"]) == 16,
          "proxy-status does not show the client's registration and ACK", [json.dumps(c)])
    d = dump(m, "client")
    check(d["subscription"]["applied_version"] == c["ackedVersion"] and d["subscription"]["connected"],
          "the client's /config_dump does not show the version proxy-status has", [json.dumps(d["subscription"])])
    r = ctl(m, "proxy-status")
    check("SYNCED" in r.stdout and "client.default" in r.stdout and "CERT EXPIRES" in r.stdout,
          "remoractl proxy-status table", [r.stdout])
    r = ctl(m, "proxy-config", "clusters", "client")
    check("reviews.default.svc.cluster.local" in r.stdout and "reviews.default" in r.stdout and
          "v2" in r.stdout, "proxy-config clusters", [r.stdout])
    r = ctl(m, "proxy-config", "endpoints", "client.default")
    for pod, _ in REVIEWS:
        check(f"{m.ip(pod)}:8080" in r.stdout, f"proxy-config endpoints lacks {pod}", [r.stdout])
    r = ctl(m, "proxy-config", "routes", "client")
    check("reviews.default.svc.cluster.local:8080" in r.stdout and "reviews.default" in r.stdout,
          "proxy-config routes", [r.stdout])
    r = ctl(m, "proxy-config", "secret", "client")
    check("Cert Chain" in r.stdout and "ROOTCA" in r.stdout, "proxy-config secret", [r.stdout])
    # The MeshConfig came from remora-control: JSON access logs on stdout (the proxy's log).
    m.get_json("client", "http://reviews:8080/mesh-config-probe")
    def logged():
        with open(m.proxies["client"].log_path) as f:
            return [l for l in f if l.startswith("{") and "/mesh-config-probe" in l]
    lines = wait_for("a JSON access-log line for the probe in the client proxy's log", logged, 5)
    check(json.loads(lines[0]).get("response_code") == 200, "the access-log line", lines[:1])
    # The control plane's monitoring port: Istio's pilot_xds gauges and push counters.
    metrics = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORING}/metrics"]).stdout
    check(re.search(r"(?m)^pilot_xds 4$", metrics) and
          re.search(r'(?m)^remora_control_proxies\{status="SYNCED"\} 4$', metrics) and
          int(re.search(r'(?m)^pilot_xds_pushes\{type="snapshot"\} (\d+)$', metrics).group(1)) >= 4,
          "the monitoring port does not count the four subscribed proxies and their pushes",
          [l for l in metrics.splitlines() if "pilot" in l or "remora_control" in l])
    r = ctl(m, "proxy-config", "clusters", "nobody", check_rc=False)
    check(r.returncode == 1 and "no proxy named" in r.stderr, "an unknown proxy name", [describe(r)])


def test_b_apply_while_traffic_flows(m):
    m.involved = ["client"]
    # 8 s: the load must outlast apply + 1 s also in an ASan build, where apply took 2.7 s.
    load = run_load(m, 8.0)
    time.sleep(1.5)
    applied_at = time.time()
    apply(m, "to-v2.yaml", ROUTE_TO.format(subset="v2"))
    done_at = time.time()
    res = load_result(load, 30)
    failed = [x for x in res if x[1] != 200]
    check(not failed, f"{len(failed)} of {len(res)} requests failed during the change", failed[:5])
    before = [x for x in res if x[0] < applied_at]
    check(before and all(x[2].startswith("reviews-v1") for x in before),
          "before the change not every request went to v1", [json.dumps(before[-5:])])
    first_v2 = next((x[0] for x in res if x[2] == "reviews-v2"), None)
    check(first_v2 is not None, "no request reached v2 after the change", [json.dumps(res[-5:])])
    last_v1 = max((x[0] for x in res if x[2] != "reviews-v2"), default=0)
    took = last_v1 - done_at
    check(took < 1.0, f"requests still went to v1 {took:.3f} s after remoractl apply returned",
          [f"apply took {done_at - applied_at:.3f} s; first v2 answer {first_v2 - applied_at:.3f} s after it began"])
    after = [x for x in res if x[0] > done_at + 1.0]
    check(after, "the load ended before apply returned + 1 s: nothing to check after the change",
          [f"apply took {done_at - applied_at:.3f} s; last request {res[-1][0] - applied_at:.3f} s after it began"])
    check(all(x[2] == "reviews-v2" for x in after), "after the change not all went to v2")
    print(f"  new route in use {max(0.0, last_v1 - applied_at):.3f} s after apply began "
          f"({len(res)} requests, none failed)")


def test_c_invalid_apply_refused_old_keeps_working(m):
    m.involved = ["client"]
    before = proxy_status(m)["client"]["ackedVersion"]
    r = ctl(m, "apply", "-f", m.file("invalid.yaml", INVALID), check_rc=False)
    check(r.returncode == 1 and "IST0106" in r.stderr and "invalid.yaml:9" in r.stderr and "weight" in r.stderr,
          "an invalid VirtualService was not refused with its file:line and field", [describe(r)])
    for _ in range(20):
        doc = m.get_json("client", "http://reviews:8080/")
        check(doc["pod"] == "reviews-v2", f"after the refused apply a request went to {doc['pod']}")
    check(proxy_status(m)["client"]["ackedVersion"] == before, "the client's snapshot changed")


def test_d_control_plane_down_traffic_goes_on(m):
    m.involved = ["client"]
    opened = m.stats("client")["config.connections_opened"]
    m.c.stop(m.control)
    try:
        load = run_load(m, 3.0, pause=0.01)
        res = load_result(load, 30)
        failed = [x for x in res if x[1] != 200]
        check(res and not failed, f"{len(failed)} of {len(res)} requests failed with the control plane down",
              failed[:5])
        check(all(x[2] == "reviews-v2" for x in res), "with the control plane down routing changed")
        sub = wait_for("the client notices the control plane is gone",
                       lambda: (lambda s: s if not s["connected"] else None)(dump(m, "client")["subscription"]), 30)
        check(sub["applied_version"], "the client dropped its snapshot", [json.dumps(sub)])
    finally:
        start_control(m)
    # Back: every proxy reconnects (backoff at most 8 s) and is in sync again.
    wait_for("every proxy SYNCED after the control plane came back",
             lambda: all_synced(m, ["client"] + [p for p, _ in REVIEWS]), 20, step=0.5)
    doc = m.get_json("client", "http://reviews:8080/")
    check(doc["pod"] == "reviews-v2", "after the restart the stored route is lost")
    check(m.stats("client")["config.connections_opened"] > opened,
          "the client polls the restarted control plane without a new connection?")


def test_e0_draining_proxy_leaves_every_snapshot(m):
    """SIGTERM on a subscribed proxy: while it drains (still serving, 5 s) it tells the control
    plane, which withdraws its pod's endpoint from every other proxy at once, as Kubernetes takes
    a terminating pod out of its EndpointSlices; new requests go to the other replica. Fails when
    the endpoint stays until the registration expires after the exit. Then the proxy starts
    again and is back in the snapshots."""
    m.involved = ["client", "reviews-v1b"]
    apply(m, "to-v1.yaml", ROUTE_TO.format(subset="v1"))
    want_all = sorted(f"{m.ip(p)}:8080" for p, v in REVIEWS if v == "v1")
    wait_for("the client has both v1 endpoints", lambda: endpoints_of(dump(m, "client"), V1) == want_all, 10)
    proc = m.proxies["reviews-v1b"].proc
    os.killpg(proc.pid, signal.SIGTERM)
    termed = time.monotonic()
    want = [f"{m.ip('reviews-v1')}:8080"]
    for pod in ("client", "reviews-v1", "reviews-v2"):
        wait_for(f"reviews-v1b's endpoint leaves {pod}'s snapshot while it drains",
                 lambda: endpoints_of(dump(m, pod), V1) == want, 4)
    took = time.monotonic() - termed
    check(proc.poll() is None, "reviews-v1b's proxy exited before its endpoint was withdrawn: "
          "the test proved nothing about draining")
    st = proxy_status(m).get("reviews-v1b", {})
    check(st.get("draining") is True, "proxy-status does not say reviews-v1b is draining", [json.dumps(st)])
    res = load_result(run_load(m, 1.0), 30)
    check(res and all(x[1] == 200 and x[2] == "reviews-v1" for x in res),
          "requests during the drain did not all reach reviews-v1", [json.dumps(res[:5])])
    proc.wait(timeout=20)
    m.init("reviews-v1b")
    start_subscribed_proxy(m, "reviews-v1b", "reviews", "app=reviews,version=v1", "reviews-v1")
    m.wait_ready("reviews-v1b")
    wait_for("reviews-v1b back in the client's snapshot", lambda: endpoints_of(dump(m, "client"), V1) == want_all, 10)
    print(f"  endpoint withdrawn from every snapshot {took:.2f} s after SIGTERM, the proxy still draining")


def test_e_killed_proxy_leaves_every_snapshot(m):
    m.involved = ["client"]
    apply(m, "to-v1.yaml", ROUTE_TO.format(subset="v1"))
    gone = m.ip("reviews-v1b")
    want_all = sorted(f"{m.ip(p)}:8080" for p, v in REVIEWS if v == "v1")
    wait_for("the client has both v1 endpoints", lambda: endpoints_of(dump(m, "client"), V1) == want_all, 10)
    killed_at = time.monotonic()
    os.killpg(m.proxies["reviews-v1b"].proc.pid, signal.SIGKILL)
    m.proxies["reviews-v1b"].proc.wait(timeout=10)
    want = [f"{m.ip('reviews-v1')}:8080"]
    for pod in ("client", "reviews-v1", "reviews-v2"):
        wait_for(f"{gone} leaves {pod}'s snapshot", lambda: endpoints_of(dump(m, pod), V1) == want, 8)
    took = time.monotonic() - killed_at
    check("reviews-v1b" not in proxy_status(m), "proxy-status still lists the killed proxy")
    # Traffic to v1 now reaches only the live replica.
    res = load_result(run_load(m, 1.0), 30)
    check(res and all(x[1] == 200 and x[2] == "reviews-v1" for x in res),
          "requests after the removal did not all reach reviews-v1", [json.dumps(res[:5])])
    print(f"  endpoint removed from every snapshot {took:.2f} s after the proxy was killed")


def test_g_registry_only_blackholes_the_rest(m):
    """MeshConfig outboundTrafficPolicy REGISTRY_ONLY (from the control plane): a pod's connection
    to an address that is no mesh service is closed, not passed through."""
    m.involved = ["client"]
    check(dump(m, "client").get("outbound_traffic_policy") == "REGISTRY_ONLY",
          "the client's /config_dump does not show REGISTRY_ONLY from the mesh config")
    before = m.stats("client").get("downstream_cx_blackhole", 0)
    rc, status, body, r = m.curl("client", f"http://{MONITORING}/healthz")
    check(rc != 0 and status == 0, "a request to the node's monitoring port (not a mesh service) got through",
          [describe(r)])
    check(m.stats("client").get("downstream_cx_blackhole", 0) == before + 1,
          "the closed connection is not counted in downstream_cx_blackhole")
    doc = m.get_json("client", "http://reviews:8080/")  # mesh services still work
    check(doc["pod"].startswith("reviews"), f"a mesh request went to {doc['pod']}")


def test_h_idle_keepalive_connection_takes_the_change(m):
    """A keep-alive connection idle while the configuration changes: its next request follows
    the new route (the configuration is taken when a request begins, not when the previous one
    ended)."""
    m.involved = ["client"]
    apply(m, "h-to-v1.yaml", ROUTE_TO.format(subset="v1"))
    wait_for("all proxies SYNCED", lambda: all_synced(m, ["client", "reviews-v1", "reviews-v2"]), 10)
    signals = os.path.join(m.tmp, "signals")
    os.makedirs(signals, exist_ok=True)
    os.chmod(signals, 0o777)  # the pod's app (uid 1000) writes its marker here
    go = os.path.join(signals, "go")  # the test's signal; the pod writes go.first
    script = m.file("idle.py", IDLE_ACROSS_CHANGE)
    proc = m.c.spawn("client", ["python3", script, json.dumps({"go": go})], user=(1000, 1000),
                     log_path=os.path.join(m.tmp, "idle.log"))
    wait_for("the first request answered", lambda: os.path.exists(go + ".first"), 10)
    apply(m, "h-to-v2.yaml", ROUTE_TO.format(subset="v2"))
    wait_for("the client applied the change", lambda: all_synced(m, ["client"]), 10)
    with open(go, "w"):
        pass
    res = load_result(proc, 30)
    check(res[0][1].startswith("reviews-v1") and res[1][1] == "reviews-v2" and res[0][2] == res[1][2],
          "on one keep-alive connection idle across the change, the second request did not follow "
          "the new route", [json.dumps(res)])


TIMEOUT_ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - timeout: {seconds}s
    route: [{{destination: {{host: reviews, subset: v1}}}}]
"""


def test_h2_polls_keep_one_connection(m):
    """Each push answers the proxy's long-poll and the proxy polls again at once: on the same
    TLS connection (HTTP/1.1 keep-alive), not a new one per poll (a thousand proxies reconnecting
    after every push kept the control plane handshaking, and their registrations expired).
    Twenty pushes: twenty more polls, not one more connection. Fails when every poll
    reconnects."""
    m.involved = ["client"]
    before = m.stats("client")
    for i in range(20):
        updates = dump(m, "client")["subscription"]["updates"]
        apply(m, f"h2-{i}.yaml", TIMEOUT_ROUTE.format(seconds=30 + i))
        wait_for(f"the client applied push {i + 1}",
                 lambda: dump(m, "client")["subscription"]["updates"] > updates, 10, step=0.05)
    after = m.stats("client")
    polls = after["config.polls"] - before["config.polls"]
    opened = after["config.connections_opened"] - before["config.connections_opened"]
    check(polls >= 20, f"20 pushes answered {polls} polls", [json.dumps(after)])
    check(opened == 0 and before["config.connections_opened"] >= 1,
          f"{polls} polls opened {opened} new connections to remora-control "
          f"(before: {before['config.connections_opened']})", [json.dumps(after)])
    sub = dump(m, "client")["subscription"]
    check(sub["polls"] >= after["config.polls"],
          "/config_dump's subscription does not count the polls", [json.dumps(sub)])
    print(f"  {polls} polls on {before['config.connections_opened']} connection(s) opened since "
          "the proxy started")
    # The answers came gzip-compressed (the proxy asks for it) and inflated to the snapshots it
    # applied: fewer bytes on the wire than read. Fails when the control plane sends them as
    # they are, or the proxy does not ask.
    wire = after["config.bytes_received"] - before["config.bytes_received"]
    read = after["config.snapshot_bytes"] - before["config.snapshot_bytes"]
    check(0 < wire and wire * 3 < read,
          f"20 snapshots took {wire} bytes on the wire for {read} bytes of JSON (not gzip?)",
          [json.dumps(after)])
    print(f"  snapshots: {read} bytes of JSON in {wire} bytes of gzip")


def test_f_bad_subscriptions_refused(m):
    m.involved = []
    # No client certificate: 401, with the reason.
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", "--cacert", m.root, "-w", "\n%{http_code}",
                         "-X", "POST", "-d", "{}", "--resolve", f"remora-control:15012:{CONTROL.split(':')[0]}",
                         f"https://{CONTROL}/v1/proxies/subscribe", "-k"], check=False)
    check(r.stdout.strip().endswith("401") and "SVID" in r.stdout, "a subscription without a certificate",
          [describe(r)])
    # proxy-status needs the admin credential.
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", "-k", "-w", "\n%{http_code}",
                         f"https://{CONTROL}/v1/proxies"], check=False)
    check(r.stdout.strip().endswith("401"), "GET /v1/proxies without credentials", [describe(r)])


def test_i_proxy_status_stale_during_the_debounce(m):
    """With a debounce window, an applied change is not pushed yet: proxy-status must not say
    SYNCED for the proxies it changes until they ACK the new version (a script that applies,
    waits for SYNCED and sends traffic would otherwise race the push). Last: it leaves the
    control plane debouncing."""
    m.involved = ["client"]
    m.c.stop(m.control)
    start_control(m, ["--debounce-after", "3s"])
    wait_for("the proxies SYNCED after the restart",  # (test e killed reviews-v1b's)
             lambda: all_synced(m, ["client", "reviews-v1", "reviews-v2"]), 20, step=0.5)
    before = proxy_status(m)["client"]["ackedVersion"]
    now = m.get_json("client", "http://reviews:8080/")["pod"]
    want = "v1" if now == "reviews-v2" else "v2"  # a change, whatever ran before
    apply(m, "i-change.yaml", ROUTE_TO.format(subset=want))
    st = proxy_status(m)["client"]
    check(st["status"] == "STALE" and st["ackedVersion"] == before,
          "right after the apply, inside the debounce window, proxy-status does not say STALE",
          [json.dumps(st)])
    st = wait_for("the client SYNCED on the new version",
                  lambda: (lambda s: s if s["status"] == "SYNCED" else None)(proxy_status(m)["client"]), 20)
    check(st["ackedVersion"] != before, "SYNCED on the old version", [json.dumps(st)])
    doc = m.get_json("client", "http://reviews:8080/")
    check(doc["pod"].startswith(f"reviews-{want}"), f"after SYNCED the request went to {doc['pod']}")


def test_j_renewed_svid_carries_the_subscription(m):
    """A proxy whose SVID is renewed presents the new certificate on its next config poll: one
    new control connection (the kept one carries the old certificate), proxy-status shows the new
    serial, and pushes keep reaching it. Fails when the subscription goes on with the old
    certificate (it would be refused once that expires) or stops after a renewal. reviews-v2
    restarts with a 16 s certificate, renewed at half-life."""
    m.involved = ["reviews-v2"]
    proc = m.proxies["reviews-v2"].proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    m.init("reviews-v2")
    start_subscribed_proxy(m, "reviews-v2", "reviews", "app=reviews,version=v2", "reviews-v2",
                           ["--cert-ttl", "16s"])
    m.wait_ready("reviews-v2")
    first = wait_for("reviews-v2 registered with its first certificate",
                     lambda: proxy_status(m).get("reviews-v2", {}).get("certificate", {}).get("serial"), 10)
    opened = m.stats("reviews-v2")["config.connections_opened"]
    wait_for("reviews-v2 renewed its certificate",
             lambda: m.stats("reviews-v2").get("identity.certificate_renewals", 0) >= 1, 20, step=0.5)
    # A push answers the poll in flight (on the old connection); the next poll carries the new one.
    apply(m, "j-change.yaml", TIMEOUT_ROUTE.format(seconds=77))
    st = wait_for("proxy-status shows reviews-v2's renewed certificate, SYNCED",
                  lambda: (lambda s: s if s.get("certificate", {}).get("serial") not in (None, first)
                           and s.get("status") == "SYNCED" else None)(proxy_status(m).get("reviews-v2", {})),
                  30, step=0.5)
    stats = m.stats("reviews-v2")
    check(stats["config.connections_opened"] > opened,
          "the renewed certificate was not presented on a new control connection", [json.dumps(stats)])
    check(dump(m, "reviews-v2")["subscription"]["last_error"] == "",
          "the subscription reports an error after the renewal", [json.dumps(dump(m, "reviews-v2")["subscription"])])
    print(f"  certificate {first[:8]}... renewed as {st['certificate']['serial'][:8]}...; "
          f"{stats['config.connections_opened'] - opened} new control connection(s)")


TESTS = [
    ("a_proxies_subscribe_register_and_sync", test_a_proxies_subscribe_register_and_sync),
    ("b_apply_while_traffic_flows", test_b_apply_while_traffic_flows),
    ("c_invalid_apply_refused_old_keeps_working", test_c_invalid_apply_refused_old_keeps_working),
    ("d_control_plane_down_traffic_goes_on", test_d_control_plane_down_traffic_goes_on),
    ("e0_draining_proxy_leaves_every_snapshot", test_e0_draining_proxy_leaves_every_snapshot),
    ("e_killed_proxy_leaves_every_snapshot", test_e_killed_proxy_leaves_every_snapshot),
    ("f_bad_subscriptions_refused", test_f_bad_subscriptions_refused),
    ("g_registry_only_blackholes_the_rest", test_g_registry_only_blackholes_the_rest),
    ("h_idle_keepalive_connection_takes_the_change", test_h_idle_keepalive_connection_takes_the_change),
    ("h2_polls_keep_one_connection", test_h2_polls_keep_one_connection),
    ("i_proxy_status_stale_during_the_debounce", test_i_proxy_status_stale_during_the_debounce),
    ("j_renewed_svid_carries_the_subscription", test_j_renewed_svid_carries_the_subscription),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-d", "remora-test-dist-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
