#!/usr/bin/env python3
"""System test of tests/system/cluster.py, the network-namespace cluster the system tests use.

    python3 tests/system/test_cluster.py [-k SUBSTRING]

Prints `PASS name` or `FAIL name: reason` (followed by indented details) per test, then
`N passed, N failed`. Exit status: 0 all passed, 1 some failed, 77 not root / no `ip` / no curl.
Creates namespaces named remora-t<pid>*, addresses only in 198.18.0.0/15 and 198.19.0.0/16.
"""

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cluster  # noqa: E402
from cluster import LocalCluster, ClusterError, ClusterUnavailable  # noqa: E402
from harness import Failure, Runner, check  # noqa: E402,F401

VIP = "198.19.0.10"
PREFIX = f"remora-t{os.getpid()}"


def describe(r):
    return (f"command: {' '.join(map(str, r.args))}\nexit: {r.returncode}\n"
            f"stdout: {(r.stdout or '').strip()[:1500]}\nstderr: {(r.stderr or '').strip()[:1500]}")


# ---------------------------------------------------------------------------------------------
# Independent views of the system (not through the module under test)


def netns_names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def root_links():
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    return [(d.get("ifname", ""), d.get("ifalias", "") or "") for d in json.loads(out or "[]")]


def etc_netns():
    try:
        return os.listdir("/etc/netns")
    except OSError:
        return []


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def remains(prefix, veths=(), pids=()):
    """Everything still present that a cluster with `prefix` made; [] when clean."""
    left = [f"netns {n}" for n in netns_names() if n.startswith(prefix + "-")]
    left += [f"/etc/netns/{n}" for n in etc_netns() if n.startswith(prefix + "-")]
    for name, alias in root_links():
        if name.startswith(prefix) or alias.startswith(prefix) or name in veths:
            left.append(f"root-namespace link {name} ({alias})")
    left += [f"process {p}" for p in pids if pid_alive(p)]
    if os.path.exists(f"/run/remora-cluster/{prefix}.json"):
        left.append(f"/run/remora-cluster/{prefix}.json")
    return left


def wait_gone(prefix, veths=(), pids=(), limit=3.0):
    """Namespace destruction is asynchronous in the kernel: allow it a moment."""
    deadline = time.monotonic() + limit
    while True:
        left = remains(prefix, veths, pids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Tests on a shared cluster


class Ctx:
    def __init__(self, tmp):
        self.tmp = tmp
        self.c = None
        self.server = None

    def shared(self):
        if self.c is None:
            self.c = LocalCluster(PREFIX)
            self.c.start()
            self.c.add_pod("a")
            self.c.add_pod("b")
        return self.c

    def http_server(self):
        c = self.shared()
        if self.server is None or self.server.poll() is not None:
            self.server = c.spawn("b", ["python3", "-m", "http.server", "8080", "--bind",
                                        "0.0.0.0", "--directory", self.tmp],
                                  log_path=os.path.join(self.tmp, "http-b.log"))
            with open(os.path.join(self.tmp, "index.html"), "w") as f:
                f.write("hello from pod b\n")
            c.wait_port("a", c.pod_ip("b"), 8080, timeout=10, proc=self.server)
        return self.server


def test_pods_have_addresses_and_routes(ctx):
    c = ctx.shared()
    for name in ("a", "b"):
        r = c.run(name, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=False)
        check(r.returncode == 0 and f"{c.pod_ip(name)}/15" in r.stdout,
              f"pod {name} eth0 lacks {c.pod_ip(name)}/15", describe(r))
        r = c.run(name, ["ip", "route", "show", "default"], check=False)
        check("via 198.18.0.1" in r.stdout, f"pod {name} has no default route via 198.18.0.1",
              describe(r))
    check(c.pod_ip("a").startswith("198.18.1.") and c.pod_ip("a") != c.pod_ip("b"),
          f"unexpected automatic addresses {c.pod_ip('a')} {c.pod_ip('b')}")


def test_pod_to_pod_by_ip(ctx):
    c = ctx.shared()
    ctx.http_server()
    r = c.curl("a", f"http://{c.pod_ip('b')}:8080/index.html", max_time=5)
    check(r.returncode == 0 and "hello from pod b" in r.stdout, "curl a -> b by IP failed",
          describe(r))


def test_pod_to_pod_by_name(ctx):
    c = ctx.shared()
    ctx.http_server()
    c.add_service("web", c.pod_ip("b"))
    for host in ("web", "web.default", "web.default.svc.cluster.local"):
        r = c.curl("a", f"http://{host}:8080/index.html", "-w", "\n%{remote_ip}", max_time=5)
        check(r.returncode == 0 and "hello from pod b" in r.stdout
              and r.stdout.strip().endswith(c.pod_ip("b")),
              f"curl a -> b by name {host} failed", describe(r))
    code = c.wait_http("a", "http://web:8080/", timeout=5, status=200)
    check(code == 200, f"wait_http returned {code}")


def test_hosts_resolve_services(ctx):
    c = ctx.shared()
    with open("/etc/hosts") as f:
        root_hosts = f.read()
    # a process already running in pod a: the rewrite must reach it (same inode)
    sleeper = c.spawn("a", ["sleep", "30"])
    time.sleep(0.1)
    c.add_service("hello", VIP)
    late = c.add_pod("late")  # pods created after the service get it too
    for pod in ("a", "b", late.name):
        for name in cluster.service_names("hello"):
            r = c.run(pod, ["getent", "hosts", name], check=False)
            check(r.returncode == 0 and r.stdout.split()[0] == VIP,
                  f"{name} does not resolve to {VIP} in pod {pod}", describe(r))
    with open(f"/proc/{sleeper.pid}/root/etc/hosts") as f:
        seen = f.read()
    check("hello.default.svc.cluster.local" in seen,
          "a process started before add_service does not see the new hosts entry", seen)
    r = c.run("a", ["cat", "/etc/resolv.conf"])
    check("nameserver 127.0.0.1" in r.stdout, "pod resolv.conf lacks nameserver 127.0.0.1",
          describe(r))
    t0 = time.monotonic()
    r = c.run("a", ["getent", "hosts", "no-such-service.default.svc.cluster.local"], check=False)
    took = time.monotonic() - t0
    check(r.returncode != 0 and took < 3, f"unknown name: exit {r.returncode} after {took:.1f}s "
          "(expected a quick failure)", describe(r))
    c.remove_service("hello")
    r = c.run("a", ["getent", "hosts", "hello"], check=False)
    check(r.returncode != 0, "hello still resolves after remove_service", describe(r))
    with open("/etc/hosts") as f:
        check(f.read() == root_hosts, "the root namespace's /etc/hosts changed")
    c.stop(sleeper)


VIP_CONNECT = r"""
import errno, socket, sys
s = socket.socket()
s.settimeout(2)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("CONNECTED")
except socket.timeout:
    print("TIMEOUT")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)), e.strerror)
"""


def test_vip_is_routable(ctx):
    c = ctx.shared()
    r = c.run("a", ["ip", "route", "get", VIP], check=False)
    check(r.returncode == 0, f"no route to {VIP} in pod a", describe(r))
    r = c.run("a", ["python3", "-c", VIP_CONNECT, VIP, "80"], check=False, timeout=10)
    out = r.stdout.strip()
    check("ENETUNREACH" not in out, "VIP is unreachable (no default route?)", describe(r))
    check(out.startswith("ECONNREFUSED") or out == "TIMEOUT",
          f"connect to {VIP}:80 gave {out!r}; expected refused or timeout", describe(r))
    # cluster.py promises more: the node answers for unintercepted VIPs, so it fails fast
    check(out.startswith("ECONNREFUSED"),
          f"connect to {VIP}:80 gave {out!r}; expected a fast 'connection refused'", describe(r))


def test_spawn_as_uid_1337(ctx):
    c = ctx.shared()
    p = c.spawn("a", ["sleep", "30"], user=1337)
    deadline = time.monotonic() + 3
    status = ""
    while time.monotonic() < deadline:
        with open(f"/proc/{p.pid}/status") as f:
            status = f.read()
        if "\nUid:\t1337\t" in status:
            break
        time.sleep(0.02)  # still setpriv before its exec
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].split()
              for line in status.splitlines() if ":" in line}
    check(fields.get("Uid") == ["1337"] * 4, f"Uid is {fields.get('Uid')}", status)
    check(fields.get("Gid") == ["1337"] * 4, f"Gid is {fields.get('Gid')}", status)
    check(fields.get("Groups", []) == [], f"supplementary groups {fields.get('Groups')}")
    check(os.stat(f"/proc/{p.pid}/ns/net").st_ino == os.stat(f"/run/netns/{c.ns('a')}").st_ino,
          "the process is not in pod a's network namespace")
    r = c.run("a", ["id", "-u"], user=1337)
    check(r.stdout.strip() == "1337", f"run(user=1337): id -u = {r.stdout.strip()}", describe(r))
    rc = c.stop(p)
    check(not pid_alive(p.pid), f"stop() left pid {p.pid} running (rc {rc})")


# ---------------------------------------------------------------------------------------------
# Teardown tests (each on its own cluster)


def build_small(c, stubborn=False):
    c.add_pod("x")
    c.add_pod("y", ip="198.18.2.7")
    c.add_service("svc", "198.19.0.20")
    p1 = c.spawn("x", ["sleep", "60"], user=1337)
    # a process that ignores SIGTERM and forks a grandchild: teardown must still get both
    # (costs the 3 s SIGTERM grace period, so only once)
    script = "trap '' TERM; sleep 60 & wait" if stubborn else "sleep 60 & wait"
    p2 = c.spawn("y", ["bash", "-c", script])
    return [p1.pid, p2.pid], [c.pods[n].veth for n in ("x", "y")]


def test_teardown_removes_everything(ctx):
    prefix = PREFIX + "a"
    with LocalCluster(prefix) as c:
        pids, veths = build_small(c, stubborn=True)
        time.sleep(0.1)
        grandchildren = [int(x) for x in subprocess.run(
            ["pgrep", "-g", str(pids[1])], capture_output=True, text=True).stdout.split()]
        present = remains(prefix, veths, pids)
        check(any(x.startswith("netns") for x in present)
              and any(x.startswith("/etc/netns") for x in present),
              "the cluster's namespaces/dirs are not visible while it runs", *present)
    left = wait_gone(prefix, veths, pids + grandchildren)
    check(not left, "teardown left things behind", *left)
    c.teardown()  # idempotent
    check(not cluster.leftovers(prefix + "-")["netns"], "second teardown recreated something")


def test_teardown_on_exception(ctx):
    prefix = PREFIX + "b"
    pids = veths = ()
    try:
        with LocalCluster(prefix) as c:
            pids, veths = build_small(c)
            raise RuntimeError("boom midway")
    except RuntimeError as e:
        check(str(e) == "boom midway", f"unexpected exception {e}")
    else:
        raise Failure("the exception was swallowed")
    left = wait_gone(prefix, veths, pids)
    check(not left, "teardown after an exception left things behind", *left)


def test_teardown_tolerates_partial_setup(ctx):
    prefix = PREFIX + "c"
    c = LocalCluster(prefix)
    c.start()
    c.add_pod("x")
    # a namespace vanishes behind the cluster's back
    subprocess.run(["ip", "netns", "delete", c.ns("x")], check=True)
    # add_pod fails halfway: its namespace name already exists
    subprocess.run(["ip", "netns", "add", f"{prefix}-z"], check=True)
    try:
        c.add_pod("z")
        raise Failure("add_pod into an existing namespace did not fail")
    except cluster.CommandError:
        pass
    try:
        c.add_pod("w", ip="198.19.0.5")
        raise Failure("a pod address in the VIP range was accepted")
    except ValueError:
        pass
    c.teardown()
    c.teardown()
    left = wait_gone(prefix)
    check(not left, "teardown after a partial setup left things behind", *left)
    try:
        c.add_pod("again")
        raise Failure("add_pod after teardown did not fail")
    except ClusterError:
        pass


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import cluster
with cluster.LocalCluster(sys.argv[2]) as c:
    c.add_pod("x")
    c.add_pod("y")
    c.add_service("svc", "198.19.0.30")
    p = c.spawn("x", ["sleep", "120"], user=1337)
    print("READY", p.pid, " ".join(c.pods[n].veth for n in ("x", "y")), flush=True)
    time.sleep(60)
print("NOT REACHED", flush=True)
"""


def start_child(prefix):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, HERE, prefix], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("READY"):
        proc.kill()
        out, err = proc.communicate()
        raise Failure("child cluster did not come up", f"stdout: {line}{out}\nstderr: {err}")
    parts = line.split()
    return proc, int(parts[1]), parts[2:]


def child_killed_by(sig, expect_rc):
    prefix = PREFIX + {signal.SIGTERM: "s", signal.SIGINT: "i"}[sig]
    proc, pid, veths = start_child(prefix)
    present = remains(prefix, veths, [pid])
    check(len(present) >= 4, "the child's cluster is not visible", *present)
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise Failure(f"child did not exit after signal {sig}", err)
    check(proc.returncode in expect_rc, f"child exited with {proc.returncode}, expected "
          f"{expect_rc}", f"stdout: {out}", f"stderr: {err}")
    check("NOT REACHED" not in out, "child kept running after the signal", out)
    left = wait_gone(prefix, veths, [pid])
    check(not left, f"teardown on signal {sig} left things behind", *left, f"stderr: {err}")


def test_teardown_on_sigterm(ctx):
    child_killed_by(signal.SIGTERM, (143,))


def test_teardown_on_sigint(ctx):
    child_killed_by(signal.SIGINT, (-signal.SIGINT, 130))


def test_cleanup_stale_after_sigkill(ctx):
    c = ctx.shared()  # a live cluster whose prefix the cleanup pattern also matches
    prefix = PREFIX + "k"
    proc, pid, veths = start_child(prefix)
    proc.kill()
    proc.communicate()
    present = remains(prefix, veths)
    check(any(x.startswith("netns") for x in present), "SIGKILL left nothing to clean up?")
    r = subprocess.run([sys.executable, os.path.join(HERE, "cluster.py"), "cleanup",
                        "--prefix", PREFIX], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "cluster.py cleanup failed", describe(r))
    check(f"{prefix}-x" in r.stdout, "cleanup did not report the stale namespace", describe(r))
    left = wait_gone(prefix, veths, [pid])
    check(not left, "cleanup left things behind", *left, describe(r))
    check(os.path.exists(f"/run/netns/{c.ns('a')}") and os.path.exists(f"/run/netns/{c.node_ns}"),
          "cleanup removed the live cluster of this process", describe(r))
    r = c.run("a", ["ip", "route", "show", "default"], check=False)
    check("198.18.0.1" in r.stdout, "the live cluster is damaged after cleanup", describe(r))


def test_shared_cluster_teardown(ctx):
    c = ctx.shared()
    pids = [p.pid for p in c.procs]
    veths = [p.veth for p in c.pods.values()]
    c.teardown()
    ctx.c = None
    left = wait_gone(PREFIX, veths, pids)
    check(not left, "teardown of the shared cluster left things behind", *left)


TESTS = [
    ("pods_have_addresses_and_routes", test_pods_have_addresses_and_routes),
    ("pod_to_pod_by_ip", test_pod_to_pod_by_ip),
    ("pod_to_pod_by_name", test_pod_to_pod_by_name),
    ("hosts_resolve_services", test_hosts_resolve_services),
    ("vip_is_routable", test_vip_is_routable),
    ("spawn_as_uid_1337", test_spawn_as_uid_1337),
    ("teardown_removes_everything", test_teardown_removes_everything),
    ("teardown_on_exception", test_teardown_on_exception),
    ("teardown_tolerates_partial_setup", test_teardown_tolerates_partial_setup),
    ("teardown_on_sigterm", test_teardown_on_sigterm),
    ("teardown_on_sigint", test_teardown_on_sigint),
    ("cleanup_stale_after_sigkill", test_cleanup_stale_after_sigkill),
    ("shared_cluster_teardown", test_shared_cluster_teardown),
]


def server_log(ctx):
    """The tail of the log of the server the failed test started, if any."""
    return [cluster._log_tail(ctx.server).strip()] if ctx.server is not None else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", dest="only", help="run only tests whose name contains this")
    opts = ap.parse_args()

    try:
        cluster.check_available()
    except ClusterUnavailable as e:
        print(f"SKIP: {e}")
        return 77
    for tool in ("curl", "setpriv", "bash", "getent"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77

    tmp = tempfile.mkdtemp(prefix="remora-test-cluster-")
    ctx = Ctx(tmp)
    runner = Runner()
    started = time.monotonic()
    try:
        runner.run(TESTS, ctx, only=opts.only, failure_details=server_log,
                   reraise=(ClusterUnavailable,))
    except ClusterUnavailable as e:
        print(f"SKIP: {e}")
        return 77
    finally:
        if ctx.c is not None:
            ctx.c.teardown()
        for suffix in ("", "a", "b", "c", "s", "i", "k"):
            cluster.cleanup_stale(PREFIX + suffix + "-")
        runner.keep_or_remove(tmp)
    runner.summary(started)
    return runner.exit_code()


if __name__ == "__main__":
    sys.exit(main())
