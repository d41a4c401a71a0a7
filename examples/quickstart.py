#!/usr/bin/env python3
"""Remora quickstart: a four-pod mesh in Linux network namespaces, end to end.

    sudo python3 examples/quickstart.py [--bin-dir build]

(examples/quickstart.sh builds everything first, then runs this.) It starts remora-control (the
mesh's CA, config store and config distribution) in the node namespace, applies the service hello
(a Kubernetes Service) and mesh-wide STRICT mTLS with `remoractl apply`, then four pods: `client`
and two replicas of `hello` (v1 and v2) with remora-init and remora-proxy (uid 1337) beside their
apps, the proxies subscribing to remora-control, and `outside`, which is not in the mesh. It shows
a plain `curl http://hello:8080/` from the client going over mTLS to both replicas, with the app
seeing the caller's SPIFFE ID; a canary VirtualService applied while the mesh runs sending every
request to v2; `remoractl proxy-status` and `proxy-config routes`; the outside pod's plaintext
attempt refused; and the proxies' /stats and /certs. Everything is removed at the end, also on
Ctrl-C or failure. Needs root.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
from cluster import ClusterUnavailable, LocalCluster, NODE_IP  # noqa: E402

ECHO_APP = os.path.join(ROOT, "tests", "system", "apps", "echo_app.py")
CONTROL = f"{NODE_IP}:15012"
MONITORING = f"{NODE_IP}:15014"
HELLO_VIP = "198.19.0.10"
APP_UID, PROXY_UID = 1000, 1337
INIT_FLAGS = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
              "-x", "", "-b", "*", "-d", "15090,15021,15020"]

MESH = """\
# The service hello: a Kubernetes Service; its endpoints are the pods that register with
# remora-control carrying its selector's labels.
apiVersion: v1
kind: Service
metadata: {{name: hello, namespace: default}}
spec:
  clusterIP: {vip}
  selector: {{app: hello}}
  ports: [{{name: http, port: 8080}}]
---
# Mesh-wide STRICT mTLS (the root namespace's PeerAuthentication, as in Istio).
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: remora-system}}
spec:
  mtls: {{mode: STRICT}}
"""

CANARY = """\
# All of hello's traffic to v2, as Istio's traffic-shifting task does.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hello, namespace: default}
spec:
  host: hello
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hello, namespace: default}
spec:
  hosts: [hello]
  http:
  - route:
    - {destination: {host: hello, subset: v1}, weight: 0}
    - {destination: {host: hello, subset: v2}, weight: 100}
"""

BOLD = "\033[1m" if sys.stdout.isatty() else ""
PLAIN = "\033[0m" if sys.stdout.isatty() else ""


def step(text):
    print(f"\n{BOLD}== {text}{PLAIN}", flush=True)


def say(text=""):
    for line in str(text).splitlines() or [""]:
        print("   " + line)
    sys.stdout.flush()


def tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])
    except OSError:
        return ""


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def wait_synced(c, ctl, admin, names, timeout=10.0):
    """Wait until `remoractl proxy-status` shows every one of `names` SYNCED: the proxy ACKed the
    snapshot it should run now (a change still in the control plane's debounce window shows as
    STALE), so the next request sees the change. Returns the last status table."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.run("node", [ctl, "proxy-status", "-o", "json", *admin], check=False)
        try:
            rows = json.loads(r.stdout)
            rows = rows.get("proxies", rows) if isinstance(rows, dict) else rows
            status = {p["podName"]: p["status"] for p in rows}
        except (ValueError, KeyError, TypeError):
            status = {}
        if all(status.get(n) == "SYNCED" for n in names) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, os.environ.get("BUILD_DIR", "build")))
    opts = ap.parse_args()
    bins = os.path.abspath(opts.bin_dir)
    control_bin = os.path.join(bins, "control", "remora-control")
    ctl = os.path.join(bins, "control", "remoractl")
    proxy_bin = os.path.join(bins, "proxy", "remora-proxy")
    init_bin = os.path.join(bins, "proxy", "init", "remora-init")
    for b in (control_bin, ctl, proxy_bin, init_bin):
        if not os.access(b, os.X_OK):
            print(f"quickstart: {b} is missing; build first (scripts/setup.sh)", file=sys.stderr)
            return 1

    work = tempfile.mkdtemp(prefix="remora-quickstart-")
    os.chmod(work, 0o755)  # the proxies (uid 1337) read their files from here
    ok = True
    try:
        with LocalCluster(f"remora-q{os.getpid()}") as c:
            ok = run(c, work, control_bin, ctl, proxy_bin, init_bin)
            step("Cleaning up: stopping processes, deleting the namespaces")
    except ClusterUnavailable as e:
        print(f"quickstart: {e} (run it as root)", file=sys.stderr)
        return 77
    except KeyboardInterrupt:
        print("\nquickstart: interrupted; processes stopped and namespaces deleted", flush=True)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("done; nothing is left behind" if ok else "done, but some steps FAILED (see above)")
    return 0 if ok else 1


def run(c, work, control_bin, ctl, proxy_bin, init_bin):
    ok = True
    step(f"1. remora-control (CA, config store, distribution) in the node namespace, on {CONTROL}")
    state = os.path.join(work, "state")
    control = c.spawn("node", [control_bin, "--state-dir", state, "--listen", CONTROL,
                               "--monitoring", MONITORING],
                      log_path=os.path.join(work, "control.log"))
    c.wait_http("node", f"http://{MONITORING}/healthz", timeout=15, proc=control, status=200)
    say(tail(os.path.join(work, "control.log"), 3))
    root = write(os.path.join(work, "root-cert.pem"),
                 c.run("node", [ctl, "ca", "root", "--state-dir", state]).stdout)
    subject = c.run("node", ["openssl", "x509", "-in", root, "-noout", "-subject", "-enddate"])
    say("mesh root (remoractl ca root): " + " ".join(subject.stdout.split("\n")).strip())

    step("2. Four pods; the service hello (VIP " + HELLO_VIP + ") resolves in every pod")
    pods = {n: c.add_pod(n) for n in ("client", "hello-1", "hello-2", "outside")}
    c.add_service("hello", HELLO_VIP)
    for n, p in pods.items():
        role = "not in the mesh" if n == "outside" else "meshed"
        say(f"{n:8} {p.ip:12} namespace {p.ns} ({role})")
    admin = ["--control", CONTROL, "--state-dir", state]
    mesh = write(os.path.join(work, "mesh.yaml"), MESH.format(vip=HELLO_VIP))
    r = c.run("node", [ctl, "apply", "-f", mesh, *admin], check=False)
    say(f"remoractl apply -f {mesh}:\n" + (r.stdout + r.stderr).strip())
    ok = ok and r.returncode == 0

    step("3. Apps: echo app on :8080 in hello-1 and hello-2 (uid 1000)")
    for n in ("hello-1", "hello-2"):
        app = c.spawn(n, ["python3", ECHO_APP, "--port", "8080", "--name", n],
                      user=(APP_UID, APP_UID), log_path=os.path.join(work, f"app-{n}.log"))
        c.wait_port("node", pods[n].ip, 8080, timeout=10, proc=app)
    say("python3 tests/system/apps/echo_app.py: answers JSON with the headers it received")

    step("4. Sidecars: remora-init (iptables), then remora-proxy as uid 1337")
    proxies = {}
    labels = {"client": "app=client", "hello-1": "app=hello,version=v1",
              "hello-2": "app=hello,version=v2"}
    for n, sa in (("client", "client"), ("hello-1", "hello"), ("hello-2", "hello")):
        c.run(n, [init_bin, *INIT_FLAGS])
        token = write(os.path.join(work, f"token-{n}"),
                      c.run("node", [ctl, "token", "create", "--namespace", "default",
                                     "--service-account", sa, "--state-dir", state]).stdout)
        log = os.path.join(work, f"proxy-{n}.log")
        proxies[n] = c.spawn(n, [proxy_bin, "--control", CONTROL, "--token-file", token,
                                 "--trust-bundle", root, "--namespace", "default",
                                 "--service-account", sa, "--pod-name", n, "--pod-ip", pods[n].ip,
                                 "--workload-name", n, "--labels", labels[n]],
                             user=(PROXY_UID, PROXY_UID), log_path=log)
    for n, proc in proxies.items():
        c.wait_http("node", f"http://{pods[n].ip}:15021/healthz/ready", timeout=20, proc=proc,
                    status=200)
        say(f"{n}: ready; " + tail(os.path.join(work, f"proxy-{n}.log"), 1).split(": ", 1)[-1])
    # Each proxy that registers adds endpoints to the others' snapshots: wait until every proxy
    # runs the snapshot that holds all of them (what `remoractl proxy-status` calls SYNCED).
    status = wait_synced(c, ctl, admin, list(proxies))
    say("remoractl proxy-status: " + ", ".join(f"{n} {status.get(n, '?')}" for n in proxies))
    rules = c.run("client", ["iptables-save", "-t", "nat"]).stdout
    say(f"client's nat table: {sum(1 for l in rules.splitlines() if l.startswith('-A'))} rules, "
        "e.g.:")
    say("\n".join("  " + l for l in rules.splitlines() if "REDIRECT --to-ports" in l))

    step("5. From the client pod (uid 1000): curl http://hello:8080/  (plain HTTP; mTLS between "
         "the sidecars)")
    for i in range(4):
        r = c.curl("client", "http://hello:8080/", max_time=5, user=APP_UID)
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            doc = None
        if r.returncode != 0 or not doc:
            ok = False
            say(f"request {i + 1}: FAILED (curl exit {r.returncode}) {r.stderr.strip()}")
            continue
        xfcc = doc["headers"].get("x-forwarded-client-cert", "(none)")
        say(f"request {i + 1}: answered by {doc['pod']}; the app saw")
        say(f"    x-forwarded-client-cert: {xfcc}")

    step("6. A canary: remoractl apply a DestinationRule and a VirtualService sending hello to v2")
    canary = write(os.path.join(work, "canary.yaml"), CANARY)
    r = c.run("node", [ctl, "apply", "-f", canary, *admin], check=False)
    say((r.stdout + r.stderr).strip())
    ok = ok and r.returncode == 0
    status = wait_synced(c, ctl, admin, list(proxies))  # within a fraction of a second
    say("remoractl proxy-status: " + ", ".join(f"{n} {status.get(n, '?')}" for n in proxies))
    seen = []
    for i in range(6):
        r = c.curl("client", "http://hello:8080/", max_time=5, user=APP_UID)
        try:
            seen.append(json.loads(r.stdout)["pod"])
        except (ValueError, KeyError):
            seen.append(f"FAILED (curl exit {r.returncode})")
    say("6 requests answered by: " + ", ".join(seen))
    ok = ok and all(p == "hello-2" for p in seen)
    r = c.run("node", [ctl, "proxy-status", *admin], check=False)
    say("remoractl proxy-status:\n" + (r.stdout + r.stderr).rstrip())
    r = c.run("node", [ctl, "proxy-config", "routes", "client", *admin], check=False)
    say("remoractl proxy-config routes client:\n" + (r.stdout + r.stderr).rstrip())

    step("7. From the outside pod (no sidecar): plaintext straight to hello-1's pod IP")
    r = c.curl("outside", f"http://{pods['hello-1'].ip}:8080/", max_time=5)
    if r.returncode == 0:
        ok = False
        say(f"NOT refused: {r.stdout.strip()[:300]}")
    else:
        say(f"refused under STRICT mTLS: curl exit {r.returncode}: {r.stderr.strip()}")
    say("hello-1's log: " + tail(os.path.join(work, "proxy-hello-1.log"), 1))

    step("8. The proxies' /stats (non-zero counters) and /certs, from their admin port")
    for n in proxies:
        stats = c.run(n, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15000/stats"],
                      check=False).stdout
        lines = [l for l in stats.splitlines() if not l.endswith(": 0")]
        say(f"{n} /stats: " + ", ".join(l.replace("remora.", "") for l in lines))
        certs = c.run(n, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15000/certs"],
                      check=False).stdout
        try:
            d = json.loads(certs)
            say(f"{n} /certs: {d.get('identity')} serial {d.get('serial')} "
                f"valid until {d.get('not_after')}")
        except ValueError:
            say(f"{n} /certs: {certs.strip()[:200]}")
    if not ok:
        step("Something failed: the last lines of the proxies' logs")
        for n in proxies:
            say(f"--- {n}")
            say(tail(os.path.join(work, f"proxy-{n}.log"), 6))
    return ok


if __name__ == "__main__":
    t0 = time.monotonic()
    rc = main()
    print(f"   ({time.monotonic() - t0:.1f}s)")
    sys.exit(rc)
