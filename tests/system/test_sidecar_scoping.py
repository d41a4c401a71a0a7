#!/usr/bin/env python3
"""System test of Sidecar egress scoping: proxies subscribed to remora-control in two namespaces,
scoped by Istio Sidecar resources applied with remoractl while they run.

    python3 tests/system/test_sidecar_scoping.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node       remora-control (CA, config store, distribution, registry); MeshConfig default
               (outboundTrafficPolicy ALLOW_ANY)
    near-1     team-a, sa near, app=near: echo app on :8080 behind Service near.team-a
    far-1      team-b, sa far, app=far: echo app on :8080 behind Service far.team-b
    client-a   team-a, sa client, app=client (mesh ALLOW_ANY)
    client-s   team-a, sa client, app=strict, its own --mesh-config with REGISTRY_ONLY
    client-b   team-b, sa client, app=client: no Sidecar ever applies to it

What a scoped proxy gets for a host its Sidecar leaves out is Istio's: the destination is not in
its registry, so under ALLOW_ANY the connection is passed through to the original destination
(plaintext, no client certificate: the app sees no XFCC) and under REGISTRY_ONLY an HTTP request
on a port the mesh serves as HTTP gets block_all's 502 and anything else goes to the
BlackHoleCluster (closed, counted in downstream_cx_blackhole). Calls go to far-1's pod address:
a service VIP passed through reaches nothing here (no kube-proxy in the local cluster).

A Sidecar's outboundTrafficPolicy replaces the mesh's mode for the proxies it applies to (the
control plane carries it in their snapshot), in either direction.

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import APP_UID, CONTROL, PROXY_UID, Proxy, describe, headers_of, run_suite  # noqa: E402

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: near, namespace: team-a}
spec:
  clusterIP: 198.19.0.60
  selector: {app: near}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: far, namespace: team-b}
spec:
  clusterIP: 198.19.0.61
  selector: {app: far}
  ports: [{name: http, port: 8080}]
"""

# team-a's default: its own namespace and the mesh's root namespace, as Istio's docs suggest.
TEAM_A_DEFAULT = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: team-a}
spec:
  egress:
  - hosts: ["./*", "remora-system/*"]
"""

# The strict client's own: team-b only (it wins over the namespace's default).
STRICT_ONLY_FAR = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: strict, namespace: team-a}
spec:
  workloadSelector: {labels: {app: strict}}
  egress:
  - hosts: ["team-b/*"]
"""

REGISTRY_ONLY = "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"

# Sidecars that set outboundTrafficPolicy: team-a's proxies REGISTRY_ONLY, team-b's ALLOW_ANY
# (each scoped to its own namespace), and app=strict ALLOW_ANY over its mesh's REGISTRY_ONLY.
POLICY_SIDECARS = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: team-a}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: team-b}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy: {mode: ALLOW_ANY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: strict, namespace: team-a}
spec:
  workloadSelector: {labels: {app: strict}}
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy: {mode: ALLOW_ANY}
"""

NEAR = "near.team-a.svc.cluster.local"
FAR = "far.team-b.svc.cluster.local"
PODS = {  # pod: (namespace, service account, labels)
    "near-1": ("team-a", "near", "app=near"),
    "far-1": ("team-b", "far", "app=far"),
    "client-a": ("team-a", "client", "app=client"),
    "client-s": ("team-a", "client", "app=strict"),
    "client-b": ("team-b", "client", "app=client"),
}
CLIENTS = ["client-a", "client-s", "client-b"]


def ctl(m, *args):
    r = m.c.run("node", [m.ctl_bin, *args, "--control", CONTROL, "--state-dir", m.state],
                check=False, timeout=30)
    check(r.returncode == 0, f"remoractl {' '.join(args)} failed", describe(r))
    return r


def apply(m, name, text):
    return ctl(m, "apply", "-f", m.file(name, text))


def delete(m, name, text):
    return ctl(m, "delete", "-f", m.file(name, text))


def token(m, ns, sa):
    r = m.c.run("node", [m.ctl_bin, "token", "create", "--namespace", ns, "--service-account", sa,
                         "--state-dir", m.state])
    return m.file(f"token-{ns}-{sa}", r.stdout.strip() + "\n")


def start_proxy(m, pod, extra=()):
    ns, sa, labels = PODS[pod]
    log = os.path.join(m.tmp, f"proxy-{pod}.log")
    argv = [m.proxy_bin, "--control", CONTROL, "--token-file", token(m, ns, sa),
            "--trust-bundle", m.root, "--namespace", ns, "--service-account", sa,
            "--pod-name", pod, "--pod-ip", m.ip(pod), "--workload-name", pod.split("-")[0],
            "--labels", labels, *extra]
    with open(log, "a") as f:
        f.write(f"==== {' '.join(argv)}\n")
    proc = m.c.spawn(pod, argv, user=(PROXY_UID, PROXY_UID), log_path=log)
    m.proxies[pod] = Proxy(pod, sa, proc, argv, log)


def dump(m, pod):
    return json.loads(m.admin(pod, "/config_dump"))


def hosts_of(m, pod):
    """The service hosts of the pod's virtual hosts and of its clusters."""
    d = dump(m, pod)
    vhosts = {v["name"].rsplit(":", 1)[0] for v in d.get("virtual_hosts", [])}
    clusters = {c["name"].split("|")[3] for c in d.get("clusters", [])}
    return vhosts, clusters


def wait_for(what, fn, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise Failure(f"{what}: not within {timeout} s", [repr(last)[:2000]])


def sees(m, pod, want):
    """Waits until the pod's snapshot holds exactly `want` of {near, far}."""
    def ok():
        vhosts, clusters = hosts_of(m, pod)
        got = {h for h in (NEAR, FAR) if h in vhosts and h in clusters}
        return got == set(want) and {h for h in (NEAR, FAR) if h in vhosts or h in clusters} == set(want)
    wait_for(f"{pod}'s snapshot holding exactly {sorted(want)}", ok, 15)


def via_mesh(m, pod, target, ns):
    """A request from `pod` to `target`'s pod address answered over mTLS by its sidecar: the app
    sees the caller's SPIFFE ID in XFCC."""
    doc = m.get_json(pod, f"http://{m.ip(target)}:8080/", what=f"{pod} -> {target}")
    xfcc = headers_of(doc).get("x-forwarded-client-cert", "")
    check(doc.get("pod") == target and f"URI=spiffe://cluster.local/ns/{ns}/sa/client" in xfcc,
          f"{pod} -> {target} did not go through the mesh (no client identity in XFCC)",
          [json.dumps(doc, indent=1)])


def passed_through(m, pod, target):
    """ALLOW_ANY: the connection goes to the original destination as it is, in plaintext."""
    before = m.stats(pod).get("downstream_cx_passthrough", 0)
    doc = m.get_json(pod, f"http://{m.ip(target)}:8080/", what=f"{pod} -> {target} (passthrough)")
    check(doc.get("pod") == target and "x-forwarded-client-cert" not in headers_of(doc),
          f"{pod} -> {target} was not passed through (the app saw a client certificate)",
          [json.dumps(doc, indent=1)])
    after = m.stats(pod).get("downstream_cx_passthrough", 0)
    check(after >= before + 1, f"{pod} downstream_cx_passthrough went {before} -> {after}")


RAW_EXCHANGE = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(bytes.fromhex(sys.argv[3]))
s.shutdown(socket.SHUT_WR)
got = b""
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
except OSError as e:
    print("error", e)
print("received", len(got))
"""


def raw_exchange(m, pod, ip, port, data):
    """Bytes sent from `pod` to ip:port as they are; how many came back before the close."""
    r = m.c.run(pod, ["python3", "-c", RAW_EXCHANGE, ip, str(port), data.hex()], user=APP_UID,
                check=False, timeout=20)
    check(r.returncode == 0 and "received" in r.stdout, f"raw exchange {pod} -> {ip}:{port} failed",
          [describe(r)])
    return int(r.stdout.split()[-1])


def blackholed(m, pod, target):
    """REGISTRY_ONLY, to an address outside the registry. On a port that a service of the proxy
    serves as HTTP (8080 here), Istio's HTTP listener routes by Host and answers a host it does not
    know from its block_all virtual host: 502 (downstream_rq_blackhole). Anything but HTTP on that
    port, and anything on a port no service has, goes to the BlackHoleCluster: closed without an
    answer (downstream_cx_blackhole)."""
    before = m.stats(pod)
    rc, status, body, r = m.curl(pod, f"http://{m.ip(target)}:8080/")
    check(status == 502, f"{pod} -> {target}:8080 got {status or 'no answer'} under REGISTRY_ONLY, "
          "not Istio's block_all 502", [describe(r)])
    got = raw_exchange(m, pod, m.ip(target), 8080, b"\x00\x01\x02 not http\r\n")
    check(got == 0, f"{pod} -> {target}:8080, not HTTP: {got} bytes came back under REGISTRY_ONLY")
    rc, status, body, r = m.curl(pod, f"http://{m.ip(target)}:8081/")
    check(rc != 0 and status == 0, f"{pod} -> {target}:8081 (no service has it) got an answer "
          "under REGISTRY_ONLY", [describe(r)])
    after = m.stats(pod)
    for name, n in (("downstream_rq_blackhole", 1), ("downstream_cx_blackhole", 2)):
        check(after.get(name, 0) == before.get(name, 0) + n,
              f"{pod} {name} went {before.get(name, 0)} -> {after.get(name, 0)}, not +{n}")


def setup(m):
    c = m.c
    for pod in PODS:
        c.add_pod(pod)
    for name, ns, vip in (("near", "team-a", "198.19.0.60"), ("far", "team-b", "198.19.0.61")):
        c.add_service([f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"], vip)
    m.start_control()
    apply(m, "services.yaml", SERVICES)
    for pod in ("near-1", "far-1"):
        m.start_app(pod, 8080)
        m.wait_app(pod, 8080)
    strict_mesh = m.file("mesh-registry-only.yaml", REGISTRY_ONLY)
    for pod in PODS:
        m.init(pod)
        start_proxy(m, pod, ["--mesh-config", strict_mesh] if pod == "client-s" else [])
    for pod in PODS:
        m.wait_ready(pod)
    for pod in CLIENTS:
        sees(m, pod, [NEAR, FAR])
    # The endpoints are the registered pods.
    wait_for("client-a's cluster for far lists far-1", lambda: any(
        cl["name"] == f"outbound|8080||{FAR}" and cl["endpoints"] for cl in dump(m, "client-a")["clusters"]), 15)


def test_a_unscoped_proxies_reach_every_namespace(m):
    m.involved = CLIENTS
    check(dump(m, "client-s").get("outbound_traffic_policy") == "REGISTRY_ONLY" and
          dump(m, "client-a").get("outbound_traffic_policy") == "ALLOW_ANY",
          "the clients' outboundTrafficPolicy is not the one set up")
    for pod in CLIENTS:
        ns = PODS[pod][0]
        via_mesh(m, pod, "near-1", ns)
        via_mesh(m, pod, "far-1", ns)


def test_b_namespace_sidecar_scopes_team_a(m):
    """team-a's default Sidecar: its proxies keep team-a's services and lose team-b's; what they
    get for far instead depends on their outboundTrafficPolicy; team-b's proxy is untouched."""
    m.involved = CLIENTS
    apply(m, "team-a-default.yaml", TEAM_A_DEFAULT)
    sees(m, "client-a", [NEAR])
    sees(m, "client-s", [NEAR])
    sees(m, "client-b", [NEAR, FAR])
    via_mesh(m, "client-a", "near-1", "team-a")
    via_mesh(m, "client-s", "near-1", "team-a")
    passed_through(m, "client-a", "far-1")
    blackholed(m, "client-s", "far-1")
    via_mesh(m, "client-b", "far-1", "team-b")
    # By name (far's VIP, outside client-s's registry now), block_all's 502 too.
    rc, status, _, r = m.curl("client-s", "http://far.team-b:8080/")
    check(status == 502, f"client-s -> far.team-b by name under its Sidecar: {status or 'no answer'}, "
          "not block_all's 502", [describe(r)])


def test_c_workload_selector_wins_over_the_namespace_default(m):
    """A Sidecar picking app=strict: client-s takes it (team-b only), client-a keeps team-a's."""
    m.involved = CLIENTS
    apply(m, "strict.yaml", STRICT_ONLY_FAR)
    sees(m, "client-s", [FAR])
    sees(m, "client-a", [NEAR])
    via_mesh(m, "client-s", "far-1", "team-a")
    blackholed(m, "client-s", "near-1")
    via_mesh(m, "client-a", "near-1", "team-a")
    passed_through(m, "client-a", "far-1")


def test_d_removed_sidecars_give_the_mesh_back(m):
    m.involved = CLIENTS
    delete(m, "strict.yaml", STRICT_ONLY_FAR)
    delete(m, "team-a-default.yaml", TEAM_A_DEFAULT)
    for pod in CLIENTS:
        sees(m, pod, [NEAR, FAR])
    via_mesh(m, "client-a", "far-1", "team-a")
    via_mesh(m, "client-s", "far-1", "team-a")
    via_mesh(m, "client-s", "near-1", "team-a")


def test_e_sidecar_outbound_traffic_policy(m):
    """A Sidecar's outboundTrafficPolicy replaces the mesh's for its proxies: team-a's
    REGISTRY_ONLY blackholes a destination outside its scope while team-b's ALLOW_ANY passes the
    same kind of destination through; app=strict's ALLOW_ANY Sidecar overrides its own
    --mesh-config's REGISTRY_ONLY. Removing them gives each proxy its mesh's mode back."""
    m.involved = CLIENTS
    apply(m, "policy-sidecars.yaml", POLICY_SIDECARS)
    sees(m, "client-a", [NEAR])
    sees(m, "client-s", [NEAR])
    sees(m, "client-b", [FAR])
    policy = lambda pod: dump(m, pod).get("outbound_traffic_policy")  # noqa: E731
    wait_for("client-a REGISTRY_ONLY, client-b and client-s ALLOW_ANY", lambda: (
        policy("client-a"), policy("client-b"), policy("client-s")) == (
        "REGISTRY_ONLY", "ALLOW_ANY", "ALLOW_ANY"), 15)
    via_mesh(m, "client-a", "near-1", "team-a")
    blackholed(m, "client-a", "far-1")      # mesh ALLOW_ANY, its Sidecar REGISTRY_ONLY
    passed_through(m, "client-b", "near-1")  # its Sidecar ALLOW_ANY
    passed_through(m, "client-s", "far-1")   # mesh REGISTRY_ONLY, its Sidecar ALLOW_ANY
    delete(m, "policy-sidecars.yaml", POLICY_SIDECARS)
    for pod in CLIENTS:
        sees(m, pod, [NEAR, FAR])
    wait_for("every client back on its mesh's mode", lambda: (
        policy("client-a"), policy("client-b"), policy("client-s")) == (
        "ALLOW_ANY", "ALLOW_ANY", "REGISTRY_ONLY"), 15)


TESTS = [
    ("a_unscoped_proxies_reach_every_namespace", test_a_unscoped_proxies_reach_every_namespace),
    ("b_namespace_sidecar_scopes_team_a", test_b_namespace_sidecar_scopes_team_a),
    ("c_workload_selector_wins_over_the_namespace_default",
     test_c_workload_selector_wins_over_the_namespace_default),
    ("d_removed_sidecars_give_the_mesh_back", test_d_removed_sidecars_give_the_mesh_back),
    ("e_sidecar_outbound_traffic_policy", test_e_sidecar_outbound_traffic_policy),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-sc", "remora-test-sidecar-", setup, TESTS)


if __name__ == "__main__":
    sys.exit(main())
