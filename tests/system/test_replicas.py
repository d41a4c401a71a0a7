#!/usr/bin/env python3
"""System test of several remora-control replicas sharing state on a 3-member etcd cluster.

    python3 tests/system/test_replicas.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node         etcd e1 e2 e3 (loopback of the node namespace, a real 3-member cluster) and
                 remora-control r1 r2 r3 (--store etcd), on 198.18.0.1:15012 / 15112 / 15212
    client       meshed; --control r3,r1,r2 (subscribed to replica 3); the tests' caller
    reviews-v1   meshed; --control r1,r2,r3     reviews-v2  meshed; --control r2,r3,r1

Endpoints of a pod registered with one replica reach proxies on another (leased registrations in
etcd); a change applied through replica 1 reaches the client on replica 3 (etcd watch); a
killed replica's proxies move to another with no failed request; one etcd member down changes
nothing; two down: apply fails with a clear error (HTTP 503) and traffic goes on; then recovery.

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing (etcd: Debian's
etcd-server and etcd-client).
"""

import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import NODE_IP  # noqa: E402
from harness import Failure, check  # noqa: E402
from test_mesh import PROXY_UID, Mesh, Proxy, describe, run_suite  # noqa: E402
from test_distribution import (BASE, LOAD, ROUTE_TO, REVIEWS_VIP, V1, V2, endpoints_of,  # noqa: E402
                               wait_for)

REPLICAS = [f"{NODE_IP}:{15012 + 100 * i}" for i in range(3)]
MONITORS = [f"{NODE_IP}:{15014 + 100 * i}" for i in range(3)]
ETCD_CLIENT = [f"127.0.0.1:{23791 + i}" for i in range(3)]
ETCD_PEER = [f"127.0.0.1:{23891 + i}" for i in range(3)]
ETCD_ENDPOINTS = ",".join(ETCD_CLIENT)
PODS = {"client": ("client", "app=client,version=v1", "client", [2, 0, 1]),
        "reviews-v1": ("reviews", "app=reviews,version=v1", "reviews-v1", [0, 1, 2]),
        "reviews-v2": ("reviews", "app=reviews,version=v2", "reviews-v2", [1, 2, 0])}


class ReplicaMesh(Mesh):
    def __init__(self, cluster, bin_dir, tmp):
        super().__init__(cluster, bin_dir, tmp)
        self.etcd = [None] * 3
        self.replicas = [None] * 3
        self.states = [os.path.join(tmp, f"state-r{i + 1}") for i in range(3)]
        self.state = self.states[0]  # remoractl token create, ca root (the same CA everywhere)
        self.control_log = os.path.join(tmp, "control-r1.log")

    def start_etcd(self, i):
        cluster = ",".join(f"e{j + 1}=http://{ETCD_PEER[j]}" for j in range(3))
        argv = ["etcd", "--name", f"e{i + 1}", "--data-dir", os.path.join(self.tmp, f"etcd-{i + 1}"),
                "--listen-client-urls", f"http://{ETCD_CLIENT[i]}",
                "--advertise-client-urls", f"http://{ETCD_CLIENT[i]}",
                "--listen-peer-urls", f"http://{ETCD_PEER[i]}",
                "--initial-advertise-peer-urls", f"http://{ETCD_PEER[i]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "remora-test",
                # Quick elections on loopback, so a lost member costs little.
                "--heartbeat-interval", "50", "--election-timeout", "500"]
        self.etcd[i] = self.c.spawn("node", argv, log_path=os.path.join(self.tmp, f"etcd-{i + 1}.log"))

    def etcd_healthy(self, i):
        r = self.c.run("node", ["curl", "-sS", "--max-time", "2", f"http://{ETCD_CLIENT[i]}/health"],
                       check=False, timeout=10)
        return r.returncode == 0 and '"health":"true"' in r.stdout.replace(" ", "")

    def start_replica(self, i):
        log = os.path.join(self.tmp, f"control-r{i + 1}.log")
        argv = [self.control_bin, "--store", "etcd", "--etcd-endpoints", ETCD_ENDPOINTS,
                "--ca-key-encryption-key-file", self.kek, "--state-dir", self.states[i],
                "--listen", REPLICAS[i], "--monitoring", MONITORS[i], "--registration-ttl", "3s"]
        self.replicas[i] = self.c.spawn("node", argv, log_path=log)

    def wait_replica(self, i):
        self.c.wait_http("node", f"http://{MONITORS[i]}/healthz", timeout=30, proc=self.replicas[i],
                         status=200)

    def kill(self, proc):
        """SIGKILL: a crash, not a shutdown (a replica does not revoke its lease)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def ctl(m, i, *args, check_rc=True, timeout=60):
    r = m.c.run("node", [m.ctl_bin, *args, "--control", REPLICAS[i], "--state-dir", m.states[i]],
                check=False, timeout=timeout)
    if check_rc:
        check(r.returncode == 0, f"remoractl {' '.join(args)} through replica {i + 1} failed", describe(r))
    return r


def apply(m, i, name, text, check_rc=True):
    return ctl(m, i, "apply", "-f", m.file(name, text), check_rc=check_rc)


def proxy_status(m, i):
    r = ctl(m, i, "proxy-status", "-o", "json", check_rc=False)
    if r.returncode != 0:
        return {}
    return {p["podName"]: p for p in json.loads(r.stdout)}


def metric(m, i, name):
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORS[i]}/metrics"], check=False)
    for line in r.stdout.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return None


def start_proxy(m, pod):
    sa, labels, workload, order = PODS[pod]
    log = os.path.join(m.tmp, f"proxy-{pod}.log")
    control = ",".join(REPLICAS[j] for j in order)
    argv = [m.proxy_bin, "--control", control, "--token-file", m.token(sa), "--trust-bundle", m.root,
            "--namespace", "default", "--service-account", sa, "--pod-name", pod,
            "--pod-ip", m.ip(pod), "--workload-name", workload, "--labels", labels]
    with open(log, "a") as f:
        f.write(f"==== {' '.join(argv)}\n")
    proc = m.c.spawn(pod, argv, user=(PROXY_UID, PROXY_UID), log_path=log)
    m.proxies[pod] = Proxy(pod, sa, proc, argv, log)


def dump(m, pod):
    return json.loads(m.admin(pod, "/config_dump"))


def run_load(m, seconds, pause=0.005):
    return m.c.spawn("client", ["python3", m.load, json.dumps({"seconds": seconds, "pause": pause})],
                     user=(1000, 1000), log_path=os.path.join(m.tmp, f"load-{time.time():.3f}.log"))


def load_result(proc, timeout):
    proc.wait(timeout=timeout)
    with open(proc.log_path) as f:
        lines = f.read().strip().splitlines()
    check(proc.returncode == 0 and lines, "the load client failed", lines[-5:])
    return json.loads(lines[-1])


def setup(m):
    c = m.c
    m.kek = m.file("ca-kek", os.urandom(32).hex() + "\n", mode=0o600)
    for pod in PODS:
        c.add_pod(pod)
    c.add_service("reviews", REVIEWS_VIP)
    m.load = m.file("load.py", LOAD)
    for i in range(3):
        m.start_etcd(i)
    wait_for("the 3-member etcd cluster healthy", lambda: all(m.etcd_healthy(i) for i in range(3)), 20,
             step=0.2)
    # All three at once: one creates the CA (create-if-absent), the others read it.
    for i in range(3):
        m.start_replica(i)
    for i in range(3):
        m.wait_replica(i)
    r = c.run("node", [m.ctl_bin, "ca", "root", "--state-dir", m.states[0]])
    m.file("root-cert.pem", r.stdout)
    apply(m, 0, "base.yaml", BASE + "---\n" + ROUTE_TO.format(subset="v1"))
    for pod in ("reviews-v1", "reviews-v2"):
        m.start_app(pod, 8080)
        m.wait_app(pod, 8080)
    for pod in PODS:
        m.init(pod)
        start_proxy(m, pod)
    for pod in PODS:
        m.wait_ready(pod)
    # reviews-v1 registered with replica 1, the client is on replica 3: shared through etcd.
    want = [f"{m.ip('reviews-v1')}:8080"]
    wait_for("the client's v1 cluster lists reviews-v1 (registered with another replica)",
             lambda: endpoints_of(dump(m, "client"), V1) == want, 15)


def test_a_one_ca_every_replica(m):
    roots = []
    for i in range(3):
        with open(os.path.join(m.states[i], "root-cert.pem")) as f:
            roots.append(f.read().strip())
    check(roots[0] == roots[1] == roots[2], "the replicas have different roots")
    created = []
    for i in range(3):
        with open(os.path.join(m.tmp, f"control-r{i + 1}.log")) as f:
            text = f.read()
        created.append("created CA in etcd" in text)
        check("created CA in etcd" in text or "loaded CA in etcd" in text,
              f"replica {i + 1} does not say where its CA came from", [text[-2000:]])
    check(created.count(True) == 1, f"{created.count(True)} replicas created a CA, expected exactly one")
    token = m.token("probe")
    for i in range(3):
        out = os.path.join(m.tmp, f"cert-r{i + 1}")
        r = m.c.run("node", [m.ctl_bin, "cert", "request", "--control", REPLICAS[i], "--trust-bundle", m.root,
                             "--token-file", token, "--out", out], check=False, timeout=30)
        check(r.returncode == 0, f"a certificate from replica {i + 1}", describe(r))
        with open(os.path.join(out, "root-cert.pem")) as f:
            check(f.read().strip() == roots[0], f"replica {i + 1} answered with another root")
        # The leaf verifies against the one root (the answer's chain ends with it).
        v = m.c.run("node", ["openssl", "verify", "-CAfile", m.root, os.path.join(out, "cert-chain.pem")],
                    check=False)
        check(v.returncode == 0, f"the certificate from replica {i + 1} does not verify against the root",
              describe(v))
    # The signing material in etcd is sealed: no key in the clear.
    r = m.c.run("node", ["etcdctl", "--endpoints", ETCD_ENDPOINTS, "get", "/remora/ca", "--print-value-only"],
                env={"ETCDCTL_API": "3"})
    sealed = json.loads(r.stdout)
    check(sealed.get("alg") == "AES-256-GCM" and "PRIVATE KEY" not in r.stdout and "BEGIN" not in r.stdout,
          "/remora/ca in etcd is not a sealed value", [r.stdout[:300]])


def test_b_proxies_synced_on_their_replicas(m):
    m.involved = ["client"]
    for pod, (_, _, _, order) in PODS.items():
        i = order[0]
        wait_for(f"{pod} SYNCED on replica {i + 1}",
                 lambda: proxy_status(m, i).get(pod, {}).get("status") == "SYNCED", 15, step=0.3)
    # Through one replica, proxy-status lists the proxies of all three, each with its replica (as
    # istioctl proxy-status lists every istiod's).
    def all_synced():
        st = proxy_status(m, 0)
        return st if set(st) == set(PODS) and all(p.get("status") == "SYNCED" for p in st.values()) else None
    st = wait_for("every pod SYNCED in proxy-status through replica 1", all_synced, 10, step=0.3)
    m.replica_ids = {PODS[pod][3][0]: st[pod].get("replica") for pod in PODS}
    check(len(set(m.replica_ids.values())) == 3 and all(m.replica_ids.values()),
          "proxy-status does not name each pod's replica", [json.dumps(st)])
    table = ctl(m, 1, "proxy-status").stdout
    check("REPLICA" in table.splitlines()[0] and all(f" {r}" in table for r in m.replica_ids.values())
          and all(pod in table for pod in PODS), "the proxy-status table through replica 2", [table])
    cfg = ctl(m, 0, "proxy-config", "clusters", "client", "-o", "json")
    check("outbound|8080||reviews" in cfg.stdout,
          "proxy-config through replica 1 of the client (on replica 3)", [cfg.stdout[:300], cfg.stderr])
    doc = m.get_json("client", "http://reviews:8080/")
    check(doc["pod"] == "reviews-v1", f"a request went to {doc['pod']}")
    # The same config version (an etcd revision) on every replica.
    versions = [metric(m, i, "remora_control_config_version") for i in range(3)]
    check(versions[0] and versions[0] == versions[1] == versions[2],
          "the replicas report different config versions", [repr(versions)])


def test_c_apply_on_replica_1_reaches_a_proxy_on_replica_3(m):
    m.involved = ["client"]
    load = run_load(m, 4.0)
    time.sleep(1.5)
    applied_at = time.time()
    apply(m, 0, "to-v2.yaml", ROUTE_TO.format(subset="v2"))
    done_at = time.time()
    res = load_result(load, 30)
    failed = [x for x in res if x[1] != 200]
    check(not failed, f"{len(failed)} of {len(res)} requests failed during the change", failed[:5])
    first_v2 = next((x[0] for x in res if x[2] == "reviews-v2"), None)
    check(first_v2 is not None, "no request reached v2 after the change (applied through replica 1)",
          [json.dumps(res[-5:])])
    last_v1 = max((x[0] for x in res if x[2] != "reviews-v2"), default=0)
    took = last_v1 - done_at
    check(took < 1.0, f"the client on replica 3 still went to v1 {took:.3f} s after the apply on replica 1",
          [f"apply took {done_at - applied_at:.3f} s"])
    versions = wait_for("every replica at the same config version",
                        lambda: (lambda v: v if v[0] and v[0] == v[1] == v[2] else None)(
                            [metric(m, i, "remora_control_config_version") for i in range(3)]), 5)
    print(f"  replica 3's proxy on the new route {max(0.0, last_v1 - applied_at):.3f} s after apply "
          f"began on replica 1 (config version {versions[0]}, {len(res)} requests, none failed)")


def test_d_kill_a_replica_under_load(m):
    m.involved = ["client"]
    load = run_load(m, 5.0)
    time.sleep(1.0)
    m.kill(m.replicas[2])  # the client's
    killed_at = time.monotonic()

    dead = getattr(m, "replica_ids", {}).get(2)

    def synced_on():
        # Through either live replica (proxy-status asks the dead one too, which fails and is
        # named on stderr): SYNCED on a replica other than the dead one.
        for i in (0, 1):
            p = proxy_status(m, i).get("client", {})
            if p.get("status") == "SYNCED" and (dead is None or p.get("replica") != dead):
                return f"replica {p.get('replica')}"
        return None
    on = wait_for("the client SYNCED on replica 1 or 2", synced_on, 15, step=0.1)
    took = time.monotonic() - killed_at
    res = load_result(load, 30)
    failed = [x for x in res if x[1] != 200]
    check(res and not failed, f"{len(failed)} of {len(res)} requests failed with replica 3 killed", failed[:5])
    check(len({x[2] for x in res}) == 1, "routing changed when the replica died", [repr({x[2] for x in res})])
    print(f"  the client is SYNCED on {on} {took:.1f} s after replica 3 died ({len(res)} requests, none failed)")
    # The new replica's status is about the snapshot it already held.
    sub = dump(m, "client")["subscription"]
    check(sub["rejections"] == 0 and sub["applied_version"], "the client's subscription", [json.dumps(sub)])


def test_e_one_etcd_member_down_changes_nothing(m):
    m.involved = ["client"]
    m.kill(m.etcd[2])
    load = run_load(m, 3.0)
    apply(m, 0, "to-v1.yaml", ROUTE_TO.format(subset="v1"))
    res = load_result(load, 30)
    failed = [x for x in res if x[1] != 200]
    check(res and not failed, f"{len(failed)} of {len(res)} requests failed with one etcd member down", failed[:5])
    wait_for("the client on the v1 route", lambda: m.get_json("client", "http://reviews:8080/")["pod"] == "reviews-v1",
             5, step=0.2)


def test_f_two_etcd_members_down_then_recovery(m):
    m.involved = ["client"]
    m.kill(m.etcd[1])
    load = run_load(m, 8.0, pause=0.01)
    r = apply(m, 0, "to-v2-noquorum.yaml", ROUTE_TO.format(subset="v2"), check_rc=False)
    check(r.returncode != 0 and "503" in r.stderr and "cannot take writes" in r.stderr,
          "an apply without etcd quorum did not fail with a clear error", [describe(r)])
    res = load_result(load, 30)
    failed = [x for x in res if x[1] != 200]
    check(res and not failed, f"{len(failed)} of {len(res)} requests failed without etcd quorum", failed[:5])
    check(all(x[2] == "reviews-v1" for x in res), "without quorum the route changed")
    # Recovery: the members come back with their data; writes work again.
    m.start_etcd(1)
    m.start_etcd(2)
    wait_for("etcd healthy again", lambda: all(m.etcd_healthy(i) for i in range(3)), 30, step=0.3)
    wait_for("an apply through replica 2 succeeds again",
             lambda: apply(m, 1, "to-v2.yaml", ROUTE_TO.format(subset="v2"), check_rc=False).returncode == 0,
             30, step=1.0)
    wait_for("the client on the v2 route after recovery",
             lambda: m.get_json("client", "http://reviews:8080/")["pod"] == "reviews-v2", 5, step=0.2)


def test_g_bad_flags_and_the_wrong_key(m):
    def start(*flags):
        return m.c.run("node", [m.control_bin, "--state-dir", os.path.join(m.tmp, "state-bad"),
                                "--listen", f"{NODE_IP}:15412", "--monitoring", f"{NODE_IP}:15414", *flags],
                       check=False, timeout=30)
    r = start("--store", "etcd", "--etcd-endpoints", ETCD_ENDPOINTS)
    check(r.returncode == 2 and "--ca-key-encryption-key-file" in r.stderr, "--store etcd without a key", describe(r))
    r = start("--etcd-endpoints", ETCD_ENDPOINTS)
    check(r.returncode == 2 and "--etcd-endpoints needs --store etcd" in r.stderr, "etcd flags without --store etcd",
          describe(r))
    r = start("--store", "zk")
    check(r.returncode == 2 and "expected dir or etcd" in r.stderr, "--store zk", describe(r))
    # Another key than the one the CA was sealed with: refused, and the sealed CA is not replaced.
    def sealed_ca():
        return m.c.run("node", ["etcdctl", "--endpoints", ETCD_ENDPOINTS, "get", "/remora/ca", "--print-value-only"],
                       env={"ETCDCTL_API": "3"}).stdout
    before = sealed_ca()
    other = m.file("other-kek", os.urandom(32).hex() + "\n", mode=0o600)
    r = start("--store", "etcd", "--etcd-endpoints", ETCD_ENDPOINTS, "--ca-key-encryption-key-file", other)
    check(r.returncode != 0 and "does not open with this key" in r.stderr, "a replica with the wrong key", describe(r))
    check(sealed_ca() == before, "the sealed CA in etcd changed")


TESTS = [
    ("a_one_ca_every_replica", test_a_one_ca_every_replica),
    ("b_proxies_synced_on_their_replicas", test_b_proxies_synced_on_their_replicas),
    ("c_apply_on_replica_1_reaches_a_proxy_on_replica_3", test_c_apply_on_replica_1_reaches_a_proxy_on_replica_3),
    ("d_kill_a_replica_under_load", test_d_kill_a_replica_under_load),
    ("e_one_etcd_member_down_changes_nothing", test_e_one_etcd_member_down_changes_nothing),
    ("f_two_etcd_members_down_then_recovery", test_f_two_etcd_members_down_then_recovery),
    ("g_bad_flags_and_the_wrong_key", test_g_bad_flags_and_the_wrong_key),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-e", "remora-test-replicas-", setup, TESTS,
                     mesh_class=ReplicaMesh,
                     tools=("curl", "setpriv", "iptables-restore", "python3", "etcd", "etcdctl"))


if __name__ == "__main__":
    sys.exit(main())
