#!/usr/bin/env python3
"""System test of the sidecar data path: a local cluster of network namespaces with remora-control,
remora-init and remora-proxy in every meshed pod, and real apps talking through them.

    python3 tests/system/test_mesh.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

One cluster (prefix remora-m<pid>) is shared by all tests:

    node        remora-control on 198.18.0.1:15012 (CA), monitoring on :15014
    client      sa client, meshed (--request-header-timeout 2s); the tests' usual caller
    hello-1/2   sa hello, meshed, echo app on :8080; service hello (VIP 198.19.0.10:8080)
    outside     not meshed (no proxy, no iptables); echo app on :9090
    perm        sa hello, meshed with --mtls-mode PERMISSIVE; service perm (198.19.0.11:8080)
    nocert      meshed, but its proxy's --control is unreachable: it never gets a certificate
    rot-client  sa rot-client, --cert-ttl 20s; calls service rot
    rot-server  sa rot-server, --cert-ttl 20s; service rot (198.19.0.12:8080)
    drain       sa client, meshed, --idle-timeout 3s, --stream-idle-timeout 2s,
                --request-timeout 4s; its proxy gets SIGTERM in the drain test (j), and is
                started again with --exit-on-zero-active-connections (j2)

Apps run as uid 1000 (captured by iptables); the proxies as 1337 (not captured).

Prints `PASS name` or `FAIL name: reason` (followed by indented details) per test, then
`N passed, N failed`. Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import ClusterUnavailable, LocalCluster, NODE_IP  # noqa: E402
from harness import Failure, Runner, check, clip, print_failure  # noqa: E402

ECHO_APP = os.path.join(HERE, "apps", "echo_app.py")
TRUST_DOMAIN = "cluster.local"
CONTROL = f"{NODE_IP}:15012"
MONITORING = f"{NODE_IP}:15014"
HELLO_VIP, PERM_VIP, ROT_VIP = "198.19.0.10", "198.19.0.11", "198.19.0.12"
APP_UID = 1000
PROXY_UID = 1337
SIDECAR_FLAGS = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                 "-x", "", "-b", "*", "-d", "15090,15021,15020"]


def spiffe(sa, ns="default"):
    return f"spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}"


def describe(proc, argv=None):
    argv = argv or proc.args
    cmd = " ".join((str(a) if len(str(a)) < 200 else str(a)[:60] + "...").replace("\n", "\\n")
                   for a in argv)
    return (f"command: {cmd}\nexit: {proc.returncode}\nstdout: {clip(proc.stdout)}\n"
            f"stderr: {clip(proc.stderr)}")


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------------------------
# A client that runs inside a pod (as the app's uid): raw sockets, keep-alive, pipelining, load,
# TLS probes. Written to the temp dir and run as `python3 podclient.py MODE JSON-ARGS`; prints
# one JSON object.

POD_CLIENT = r'''
import json, socket, ssl, sys, time, http.client

def read_response(f, head=False):
    line = f.readline(65536)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        l = f.readline(65536)
        if l in (b"\r\n", b"\n", b""):
            break
        k, _, v = l.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if head:
        pass  # the answer to HEAD has no body, whatever its Content-Length says
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int(f.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while f.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline(16)
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif status >= 200 and status not in (204, 304):
        body = f.read()
    return {"status": status, "headers": headers, "body": body.decode("utf-8", "replace")}

def closed_after(sock, f, timeout):
    """True if the peer closes the connection (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return f.read(1) == b""
    except ConnectionResetError:
        return True
    except (socket.timeout, TimeoutError):
        return False

def connect(a):
    s = socket.create_connection((a["host"], a["port"]), timeout=a.get("timeout", 10))
    return s, s.makefile("rb")

def mode_raw(a):
    """Send a["data"], read one response, report whether the connection then closes."""
    s, f = connect(a)
    out = {}
    t0 = time.monotonic()
    try:
        s.sendall(a["data"].encode("latin-1"))
        r = read_response(f)
        out["response"] = r
        out["seconds"] = time.monotonic() - t0
        out["closed"] = closed_after(s, f, a.get("close_within", 3)) if r else True
    except (ConnectionResetError, BrokenPipeError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
        out["seconds"] = time.monotonic() - t0
    except (socket.timeout, TimeoutError):
        out["error"] = "timeout"
        out["seconds"] = time.monotonic() - t0
    return out

def mode_sequence(a):
    """Requests one after another on one connection (keep-alive), or all written at once
    (pipelining) when a["pipeline"]."""
    s, f = connect(a)
    reqs = [r.encode("latin-1") for r in a["requests"]]
    out = {"responses": []}
    try:
        if a.get("pipeline"):
            s.sendall(b"".join(reqs))
            for _ in reqs:
                out["responses"].append(read_response(f))
        else:
            for i, r in enumerate(reqs):
                if i and a.get("delay"):
                    time.sleep(a["delay"])
                s.sendall(r)
                out["responses"].append(read_response(f, head=r.startswith(b"HEAD ")))
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    out["local_port"] = s.getsockname()[1]
    return out

def mode_hold(a):
    """One request on a connection, then keep it open for a["hold"] seconds."""
    s, f = connect(a)
    s.sendall(("GET /hold HTTP/1.1\r\nHost: %s\r\n\r\n" % a["host_header"]).encode())
    r = read_response(f)
    print(json.dumps({"local_port": s.getsockname()[1], "peer": s.getpeername()[0],
                      "status": r and r["status"]}), flush=True)
    time.sleep(a["hold"])
    return None

def mode_load(a):
    """Sequential requests for a["seconds"] seconds over keep-alive connections, a new connection
    every a["per_conn"] requests."""
    end = time.monotonic() + a["seconds"]
    ok = fail = conns = 0
    errors = []
    conn = None
    n = 0
    while time.monotonic() < end:
        if conn is None or n % a["per_conn"] == 0:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(a["host"], a["port"], timeout=5)
            conns += 1
        n += 1
        try:
            conn.request("GET", "/load/%d" % n, headers={"Host": a["host_header"]})
            res = conn.getresponse()
            body = res.read()
            if res.status == 200 and b'"pod"' in body:
                ok += 1
            else:
                fail += 1
                errors.append("request %d: HTTP %d %s %s" % (n, res.status,
                              res.getheader("x-remora-response-flags"), body[:200]))
        except Exception as e:
            fail += 1
            errors.append("request %d at %.1fs: %s: %s" % (n, a["seconds"] - (end - time.monotonic()),
                                                          type(e).__name__, e))
            conn.close()
            conn = None
        time.sleep(a.get("pause", 0.02))
    return {"ok": ok, "fail": fail, "connections": conns, "errors": errors[:10]}

def mode_tls(a):
    """mTLS handshake with a client certificate, then one request."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(a["ca"])
    ctx.load_cert_chain(a["cert"], a["key"])
    out = {"handshake": False}
    try:
        raw = socket.create_connection((a["host"], a["port"]), timeout=5)
        s = ctx.wrap_socket(raw)
        out["handshake"] = True
        out["version"] = s.version()
        s.sendall(b"GET /tls-probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        r = read_response(s.makefile("rb"))
        out["status"] = r and r["status"]
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    return out

def mode_tls_flight(a):
    """mTLS through memory BIOs, so the test decides whether the first request leaves in the same
    TCP segment as the client's Finished (a["coalesce"]) or in a later one."""
    ok = 0
    results = []
    for _ in range(a["tries"]):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(a["ca"])
        ctx.load_cert_chain(a["cert"], a["key"])
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out)
        sock = socket.create_connection((a["host"], a["port"]), timeout=3)
        try:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if out.pending:
                        sock.sendall(out.read())
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed during the handshake")
                    inc.write(data)
            if not a["coalesce"] and out.pending:
                sock.sendall(out.read())
                time.sleep(0.1)
            obj.write(b"GET /flight HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            sock.sendall(out.read())
            got = b""
            while b"\r\n" not in got:
                data = sock.recv(65536)
                if not data:
                    break
                inc.write(data)
                try:
                    got += obj.read(65536)
                except ssl.SSLWantReadError:
                    pass
            line = got.split(b"\r\n", 1)[0].decode("latin-1")
            results.append(line or "closed without an answer")
            if line.startswith("HTTP/1.1 200"):
                ok += 1
        except (socket.timeout, TimeoutError):
            results.append("no answer within 3 s")
        except Exception as e:
            results.append("%s: %s" % (type(e).__name__, e))
        finally:
            sock.close()
    return {"ok": ok, "results": results, "tls": obj.version()}

def mode_idle(a):
    """Connect, send nothing, report when the other side closes (or that it did not)."""
    s = socket.create_connection((a["host"], a["port"]), timeout=a["wait"])
    t0 = time.monotonic()
    try:
        data = s.recv(100)
        return {"closed_after": time.monotonic() - t0, "data": data.decode("latin-1")}
    except ConnectionResetError:
        return {"closed_after": time.monotonic() - t0, "reset": True}
    except (socket.timeout, TimeoutError):
        return {"closed_after": None}

def mode_trickle(a):
    """Send a["head"], then the body one byte every a["interval"] seconds (never idle long),
    until a response arrives or a["bytes"] are sent; report the response and when it came."""
    s, f = connect(a)
    t0 = time.monotonic()
    s.sendall(a["head"].encode("latin-1"))
    s.settimeout(a["interval"])
    sent = 0
    while sent < a["bytes"]:
        try:
            if s.recv(1, socket.MSG_PEEK):
                break  # the answer has started
            break      # closed
        except (socket.timeout, TimeoutError):
            pass
        try:
            s.sendall(b"x")
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
    s.settimeout(a.get("timeout", 10))
    try:
        r = read_response(f)
    except (ConnectionResetError, socket.timeout, TimeoutError) as e:
        r, err = None, str(e)
    out = {"response": r, "seconds": time.monotonic() - t0, "sent": sent}
    if r:
        out["closed"] = closed_after(s, f, 3)
    return out

def mode_h2stall(a):
    """HTTP/2 (prior knowledge, Python's h2): a POST declaring a["length"] body bytes sends
    a["send"] of them and then nothing; report the response head and when it came."""
    import h2.connection, h2.events
    s = socket.create_connection((a["host"], a["port"]), timeout=a.get("timeout", 10))
    c = h2.connection.H2Connection()
    c.initiate_connection()
    c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", a["authority"]),
                       (":path", a["path"]), ("content-length", str(a["length"]))])
    c.send_data(1, b"x" * a["send"])
    s.sendall(c.data_to_send())
    t0 = time.monotonic()
    out = {"status": None, "headers": {}}
    try:
        while out["status"] is None:
            data = s.recv(65536)
            if not data:
                out["error"] = "closed"
                break
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 1:
                    hs = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                          for k, v in ev.headers}
                    out["status"] = int(hs.get(":status", 0))
                    out["headers"] = hs
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == 1:
                    out["error"] = "reset %d" % ev.error_code
            s.sendall(c.data_to_send())
            if "error" in out:
                break
    except (socket.timeout, TimeoutError):
        out["error"] = "timeout"
    out["seconds"] = time.monotonic() - t0
    return out

mode, args = sys.argv[1], json.loads(sys.argv[2])
res = globals()["mode_" + mode](args)
if res is not None:
    print(json.dumps(res))
'''


# ---------------------------------------------------------------------------------------------
# The mesh under test


class Proxy:
    def __init__(self, pod, sa, proc, argv, log_path):
        self.pod, self.sa, self.proc, self.argv, self.log_path = pod, sa, proc, argv, log_path

    def describe(self, mesh=None, n=15):
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        stats = ""
        if mesh is not None and self.proc.poll() is None:
            try:
                s = mesh.stats(self.pod)
                stats = "non-zero /stats: " + ", ".join(f"{k}={v}" for k, v in sorted(s.items())
                                                         if v) + "\n"
            except Exception:  # noqa: BLE001 - best effort, for the report only
                pass
        return (f"proxy in pod {self.pod} ({state}): {' '.join(self.argv[-14:])}\n{stats}"
                f"last lines of {self.log_path}:\n{tail(self.log_path, n)}")


class Mesh:
    def __init__(self, cluster, bin_dir, tmp):
        self.c = cluster
        self.tmp = tmp
        self.control_bin = os.path.join(bin_dir, "control", "remora-control")
        self.ctl_bin = os.path.join(bin_dir, "control", "remoractl")
        self.proxy_bin = os.path.join(bin_dir, "proxy", "remora-proxy")
        self.init_bin = os.path.join(bin_dir, "proxy", "init", "remora-init")
        self.state = os.path.join(tmp, "control-state")
        self.root = os.path.join(tmp, "root-cert.pem")
        self.registry = os.path.join(tmp, "registry.yaml")
        self.pod_client = os.path.join(tmp, "podclient.py")
        self.proxies = {}
        self.apps = {}
        self.control = None
        self.control_log = os.path.join(tmp, "control.log")
        self.involved = []  # pods whose proxy logs a failing test prints

    def binaries(self):
        return [self.control_bin, self.ctl_bin, self.proxy_bin, self.init_bin]

    def file(self, name, data, mode=0o644):
        path = os.path.join(self.tmp, name)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def ip(self, pod):
        return self.c.pod_ip(pod)

    # -- control plane ---------------------------------------------------------------------------

    def start_control(self):
        self.control = self.c.spawn("node", [self.control_bin, "--state-dir", self.state,
                                             "--listen", CONTROL, "--monitoring", MONITORING],
                                    log_path=self.control_log)
        self.c.wait_http("node", f"http://{MONITORING}/healthz", timeout=15, proc=self.control,
                         status=200)
        r = self.c.run("node", [self.ctl_bin, "ca", "root", "--state-dir", self.state])
        self.file("root-cert.pem", r.stdout)

    def token(self, sa):
        r = self.c.run("node", [self.ctl_bin, "token", "create", "--namespace", "default",
                                "--service-account", sa, "--state-dir", self.state])
        return self.file(f"token-{sa}", r.stdout.strip() + "\n")

    def probe_cert(self):
        """A mesh client certificate (sa probe) made with remoractl, for TLS clients the tests
        drive themselves: {"ca", "cert", "key"} paths."""
        out = os.path.join(self.tmp, "probe-certs")
        if not os.path.exists(os.path.join(out, "key.pem")):
            self.c.run("node", [self.ctl_bin, "cert", "request", "--control", CONTROL,
                                "--trust-bundle", self.root, "--token-file", self.token("probe"),
                                "--out", out])
        return {"ca": self.root, "cert": os.path.join(out, "cert-chain.pem"),
                "key": os.path.join(out, "key.pem")}

    # -- pods ------------------------------------------------------------------------------------

    def start_app(self, pod, port=8080):
        log = os.path.join(self.tmp, f"app-{pod}-{port}.log")
        proc = self.c.spawn(pod, ["python3", ECHO_APP, "--port", port, "--name", pod],
                            user=(APP_UID, APP_UID), log_path=log)
        self.apps[(pod, port)] = proc
        return proc

    def wait_app(self, pod, port=8080):
        # From the node namespace, which has no iptables rules: straight to the app (or, for a
        # meshed pod, to its inbound capture, which is why this runs before remora-init).
        self.c.wait_port("node", self.ip(pod), port, timeout=15, proc=self.apps[(pod, port)])

    def init(self, pod):
        self.c.run(pod, [self.init_bin, *SIDECAR_FLAGS])

    def start_proxy(self, pod, sa, extra=(), control=CONTROL):
        log = os.path.join(self.tmp, f"proxy-{pod}.log")
        argv = [self.proxy_bin, "--control", control, "--token-file", self.token(sa),
                "--trust-bundle", self.root, "--namespace", "default", "--service-account", sa,
                "--registry", self.registry, *extra]
        with open(log, "a") as f:
            f.write(f"==== {' '.join(argv)}\n")
        proc = self.c.spawn(pod, argv, user=(PROXY_UID, PROXY_UID), log_path=log)
        self.proxies[pod] = Proxy(pod, sa, proc, argv, log)
        return self.proxies[pod]

    def wait_ready(self, pod, status=200, timeout=20):
        p = self.proxies[pod]
        self.c.wait_http("node", f"http://{self.ip(pod)}:15021/healthz/ready", timeout=timeout,
                         proc=p.proc, status=status)

    # -- admin -----------------------------------------------------------------------------------

    def admin(self, pod, path, method="GET"):
        r = self.c.run(pod, ["curl", "-sS", "--max-time", "5", "-X", method, "-w", "\n%{http_code}",
                             f"http://127.0.0.1:15000{path}"], check=False, timeout=10)
        body, _, code = r.stdout.rpartition("\n")
        check(r.returncode == 0 and code == "200",
              f"admin {method} {path} in pod {pod} failed", describe(r))
        return body

    def stats(self, pod):
        body = self.admin(pod, "/stats?format=json")
        try:
            return {k[len("remora."):] if k.startswith("remora.") else k: v
                    for k, v in json.loads(body).items()}
        except ValueError:
            raise Failure(f"/stats?format=json in pod {pod} is not JSON", [clip(body)])

    def certs(self, pod):
        body = self.admin(pod, "/certs")
        try:
            return json.loads(body)
        except ValueError:
            raise Failure(f"/certs in pod {pod} is not JSON", [clip(body)])

    # -- requests from pods ----------------------------------------------------------------------

    def curl(self, pod, url, *args, max_time=5, user=APP_UID, write_out=""):
        """curl in the pod; returns (exit, status, body text, CompletedProcess). `write_out` is
        appended to the body (after a space), the status goes on a last line of its own."""
        argv = ["curl", "-sS", "--max-time", f"{max_time:g}",
                "-w", (" " + write_out if write_out else "") + "\n%{http_code}", *args, url]
        r = self.c.run(pod, argv, user=user, check=False, timeout=max_time + 10)
        body, _, code = r.stdout.rpartition("\n")
        return r.returncode, int(code) if code.isdigit() else 0, body, r

    def get_json(self, pod, url, *args, what=None, **kw):
        """A request that must answer 200 with the echo app's JSON; returns the JSON."""
        rc, status, body, r = self.curl(pod, url, *args, **kw)
        what = what or f"curl {url} from pod {pod}"
        check(rc == 0 and status == 200, f"{what}: exit {rc}, HTTP {status}", describe(r))
        try:
            return json.loads(body)
        except ValueError:
            raise Failure(f"{what}: the answer is not the app's JSON", [describe(r)])

    def pod_client_run(self, pod, mode, args, timeout=30, user=APP_UID, python="python3"):
        r = self.c.run(pod, [python, self.pod_client, mode, json.dumps(args)], user=user,
                       check=False, timeout=timeout)
        check(r.returncode == 0, f"pod client {mode} in pod {pod} failed", describe(r))
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Failure(f"pod client {mode} printed no JSON", [describe(r)])


def ca_issued(m):
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORING}/metrics"])
    for line in r.stdout.splitlines():
        if line.startswith("remora_ca_certificates_issued_total "):
            return float(line.split()[1])
    return 0.0


def xfcc_pairs(value):
    """Envoy's XFCC element as {key: value} (one element; keys By, Hash, Subject, URI, DNS)."""
    out = {}
    for part in value.split(";"):
        k, _, v = part.partition("=")
        out.setdefault(k.strip(), v.strip().strip('"'))
    return out


def headers_of(doc):
    return doc.get("headers", {})


# ---------------------------------------------------------------------------------------------
# Setup


REGISTRY_YAML = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: hello, namespace: default}}
spec:
  hosts: [hello.default.svc.cluster.local]
  addresses: [{hello_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: hello}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: perm, namespace: default}}
spec:
  hosts: [perm.default.svc.cluster.local]
  addresses: [{perm_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: perm}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: rot, namespace: default}}
spec:
  hosts: [rot.default.svc.cluster.local]
  addresses: [{rot_vip}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: rot}}}}
---
# The registry file is Istio YAML like --config's. Requests to /stalled get no retries, so their
# body streams to the app as it arrives (with retries the proxy holds a body up to 1 MiB before
# sending it): h8a checks that a stalled body is cut on the app's side too.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hello, namespace: default}}
spec:
  hosts: [hello.default.svc.cluster.local]
  http:
  - match: [{{uri: {{prefix: /stalled}}}}]
    route: [{{destination: {{host: hello.default.svc.cluster.local}}}}]
    retries: {{attempts: 0}}
  - route: [{{destination: {{host: hello.default.svc.cluster.local}}}}]
{entries}"""

WORKLOAD_ENTRY = """\
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: {ip}
  labels: {{app: {app}, security.istio.io/tlsMode: istio}}
  serviceAccount: {sa}
"""

# pod: (service account, app label or None, extra proxy flags)
MESHED = {
    "client": ("client", None, ["--request-header-timeout", "2s"]),
    "hello-1": ("hello", "hello", []),
    "hello-2": ("hello", "hello", []),
    "perm": ("hello", "perm", ["--mtls-mode", "PERMISSIVE"]),
    "rot-client": ("rot-client", None, ["--cert-ttl", "20s"]),
    "rot-server": ("rot-server", "rot", ["--cert-ttl", "20s"]),
    "drain": ("client", None, ["--idle-timeout", "3s", "--stream-idle-timeout", "2s",
                               "--request-timeout", "4s"]),
    "nocert": ("nocert", None, []),
}
POD_ORDER = ["client", "hello-1", "hello-2", "outside", "perm", "nocert", "rot-client",
             "rot-server", "drain"]


def setup(mesh):
    c = mesh.c
    for name in POD_ORDER:
        c.add_pod(name)
    c.add_service("hello", HELLO_VIP)
    c.add_service("perm", PERM_VIP)
    c.add_service("rot", ROT_VIP)
    entries = "".join(WORKLOAD_ENTRY.format(name=p, ip=mesh.ip(p), app=app, sa=sa)
                      for p, (sa, app, _) in MESHED.items() if app)
    mesh.file("registry.yaml", REGISTRY_YAML.format(hello_vip=HELLO_VIP, perm_vip=PERM_VIP,
                                                    rot_vip=ROT_VIP, entries=entries))
    mesh.file("podclient.py", POD_CLIENT)
    mesh.start_control()
    servers = [p for p, (_, app, _) in MESHED.items() if app]
    for p in servers:
        mesh.start_app(p, 8080)
    mesh.start_app("outside", 9090)
    for p in servers:
        mesh.wait_app(p, 8080)
    mesh.wait_app("outside", 9090)
    for p, (sa, _, extra) in MESHED.items():
        mesh.init(p)
        mesh.start_proxy(p, sa, extra,
                         control=f"{NODE_IP}:1" if p == "nocert" else CONTROL)
    for p in MESHED:
        mesh.wait_ready(p, status=503 if p == "nocert" else 200)


# ---------------------------------------------------------------------------------------------
# Tests


def test_a_xfcc_identity(m):
    m.involved = ["client", "hello-1", "hello-2"]
    doc = m.get_json("client", "http://hello:8080/")
    xfcc = headers_of(doc).get("x-forwarded-client-cert")
    check(xfcc, "the app saw no x-forwarded-client-cert", json.dumps(doc, indent=1))
    kv = xfcc_pairs(xfcc)
    check(kv.get("URI") == spiffe("client"), f"XFCC URI is {kv.get('URI')!r}, expected "
          f"{spiffe('client')}", f"x-forwarded-client-cert: {xfcc}")
    check(kv.get("By") == spiffe("hello"), f"XFCC By is {kv.get('By')!r}, expected "
          f"{spiffe('hello')}", f"x-forwarded-client-cert: {xfcc}")
    forged = f"By={spiffe('hello')};URI={spiffe('admin', 'kube-system')}"
    doc = m.get_json("client", "http://hello:8080/forged", "-H",
                     f"X-Forwarded-Client-Cert: {forged}")
    got = headers_of(doc).get("x-forwarded-client-cert", "")
    check(got == xfcc, "a forged XFCC sent by the client was not replaced",
          f"sent: {forged}", f"app saw: {got}")


def test_b_service_names_round_robin(m):
    m.involved = ["client"]
    for name in ("hello", "hello.default", "hello.default.svc", "hello.default.svc.cluster.local"):
        doc = m.get_json("client", f"http://{name}:8080/by-name", what=f"request to {name}:8080")
        check(doc.get("pod") in ("hello-1", "hello-2"), f"{name}: answered by {doc.get('pod')}")
    # Istio's default balancer (LEAST_REQUEST; sequential requests tie, so a random pick): 30
    # requests all but never (p < 1e-5) give a replica fewer than 3.
    seen = []
    for i in range(30):
        seen.append(m.get_json("client", f"http://hello:8080/rr/{i}")["pod"])
    counts = {p: seen.count(p) for p in ("hello-1", "hello-2")}
    check(counts["hello-1"] >= 3 and counts["hello-2"] >= 3,
          f"30 requests were not spread over both replicas: {counts}")


def test_c_mtls_is_real(m):
    m.involved = ["client", "hello-1", "hello-2"]
    m.get_json("client", "http://hello:8080/c1")
    m.get_json("client", "http://hello:8080/c2")
    cs = m.stats("client")
    check(cs.get("tls_handshake_ok", 0) > 0 and cs.get("upstream_cx_total", 0) > 0,
          "client proxy: tls_handshake_ok or upstream_cx_total is 0",
          json.dumps(cs, indent=1, sort_keys=True))
    for p in ("hello-1", "hello-2"):
        s = m.stats(p)
        check(s.get("tls_handshake_ok", 0) > 0, f"{p} proxy: tls_handshake_ok is 0",
              json.dumps(s, indent=1, sort_keys=True))
    for p, sa in (("client", "client"), ("hello-1", "hello"), ("hello-2", "hello")):
        certs = m.certs(p)
        check(certs.get("identity") == spiffe(sa),
              f"/certs of {p} shows identity {certs.get('identity')!r}, expected {spiffe(sa)}",
              json.dumps(certs, indent=1)[:1500])
        uris = (certs.get("cert_chain") or [{}])[0].get("uri_sans")
        check(uris == [spiffe(sa)], f"/certs of {p}: leaf URI SANs {uris}")
    # Capture evidence: an app connection held open to the VIP, and what `ss` sees meanwhile.
    log = os.path.join(m.tmp, "hold.log")
    open(log, "w").close()
    hold = m.c.spawn("client", ["python3", m.pod_client, "hold",
                                json.dumps({"host": HELLO_VIP, "port": 8080,
                                            "host_header": "hello:8080", "hold": 6})],
                     user=(APP_UID, APP_UID), log_path=log)
    try:
        info = None
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and info is None:
            for line in open(log).read().splitlines():
                if line.startswith("{"):
                    info = json.loads(line)
            if info is None:
                check(hold.poll() is None, "the holding client exited", tail(log))
                time.sleep(0.1)
        check(info and info.get("status") == 200, "holding client got no 200", tail(log))
        r = m.c.run("client", ["ss", "-tnpe", "state", "established"])
        ss = r.stdout
        port = info["local_port"]
        app_line = [l for l in ss.splitlines()
                    if re.search(rf"\s{re.escape(m.ip('client'))}:{port}\s+{HELLO_VIP}:8080\s", l)]
        check(app_line and f"uid:{APP_UID}" in app_line[0],
              f"ss shows no app (uid {APP_UID}) connection to {HELLO_VIP}:8080 from port {port}",
              ss)
        redirected = [l for l in ss.splitlines()
                      if re.search(rf":15001\s+{re.escape(m.ip('client'))}:{port}\s", l)]
        check(redirected and "remora-proxy" in redirected[0] and f"uid:{PROXY_UID}" in redirected[0],
              f"ss shows no remora-proxy (uid {PROXY_UID}) socket on :15001 accepted from the "
              f"app's port {port}: the app's connection was not redirected", ss)
        hello_ips = {m.ip("hello-1"), m.ip("hello-2")}
        upstream = [l for l in ss.splitlines()
                    if any(re.search(rf"\s{re.escape(ip)}:8080\s", l) for ip in hello_ips)]
        check(upstream and all("remora-proxy" in l and f"uid:{PROXY_UID}" in l
                               for l in upstream),
              "ss: connections to the hello pods' 8080 should all be remora-proxy's (uid 1337)",
              ss)
    finally:
        m.c.stop(hold, grace=0.5)


def test_c2_request_in_same_segment_as_tls_finished(m):
    m.involved = ["hello-1"]
    # A TLS 1.3 client may send its first request right behind its Finished message; both then
    # arrive in one segment. remora-proxy's own upstream connections do this often.
    probe = dict(m.probe_cert(), host=m.ip("hello-1"), port=8080, tries=3)
    sep = m.pod_client_run("outside", "tls_flight", dict(probe, coalesce=False), user=None)
    check(sep["ok"] == 3, "mTLS request sent after the handshake: not answered "
          f"({sep['ok']}/3)", json.dumps(sep))
    co = m.pod_client_run("outside", "tls_flight", dict(probe, coalesce=True), user=None)
    check(co["ok"] == 3, "a request that arrives in the same TCP segment as the client's TLS "
          f"Finished is never answered ({co['ok']}/3 answered within 3 s; the same request "
          "sent in a later segment is answered)", json.dumps(co))


def test_d_plaintext_refused(m):
    m.involved = ["hello-1"]
    before = m.stats("hello-1").get("downstream_cx_refused_plaintext", 0)
    rc, status, body, r = m.curl("outside", f"http://{m.ip('hello-1')}:8080/", max_time=5,
                                 user=None)
    check(rc in (52, 56), f"plaintext to hello-1 from outside: curl exit {rc} (HTTP {status}), "
          "expected an empty reply (52) or a reset (56)", describe(r))
    after = m.stats("hello-1").get("downstream_cx_refused_plaintext", 0)
    check(after >= before + 1, f"downstream_cx_refused_plaintext went {before} -> {after}")
    # The app itself is fine: the same pod answers over the mesh.
    m.get_json("client", "http://hello:8080/after-plaintext")


def test_e_passthrough(m):
    m.involved = ["client"]
    before = m.stats("client").get("downstream_cx_passthrough", 0)
    doc = m.get_json("client", f"http://{m.ip('outside')}:9090/passthrough")
    check(doc.get("pod") == "outside", f"answered by {doc.get('pod')}")
    check("x-forwarded-client-cert" not in headers_of(doc),
          "passthrough traffic carries an XFCC header", json.dumps(doc, indent=1))
    check(doc.get("peer", "").startswith(m.ip("client") + ":"),
          f"the outside app saw the request from {doc.get('peer')}, expected the client pod")
    after = m.stats("client").get("downstream_cx_passthrough", 0)
    check(after >= before + 1, f"client downstream_cx_passthrough went {before} -> {after}")


def test_f_no_capture_loop(m):
    m.involved = ["client", "hello-1", "hello-2"]
    n = 5
    pods = ("client", "hello-1", "hello-2")
    before = {p: m.stats(p) for p in pods}
    for i in range(n):
        m.get_json("client", f"http://hello:8080/f/{i}", max_time=5)
    after = {p: m.stats(p) for p in pods}

    def delta(p, k):
        return after[p].get(k, 0) - before[p].get(k, 0)

    check(delta("client", "downstream_rq_total") == n,
          f"client downstream_rq_total grew by {delta('client', 'downstream_rq_total')} for {n} "
          "requests (the proxy's own traffic captured again?)")
    check(delta("client", "upstream_rq_total") == n,
          f"client upstream_rq_total grew by {delta('client', 'upstream_rq_total')} for {n}")
    inbound = delta("hello-1", "downstream_rq_total") + delta("hello-2", "downstream_rq_total")
    check(inbound == n, f"hello proxies' downstream_rq_total grew by {inbound} for {n} requests")
    check(delta("client", "downstream_cx_passthrough") == 0,
          "mesh requests counted as passthrough")


def test_g_call_own_pod_ip(m):
    m.involved = ["hello-1"]
    ip = m.ip("hello-1")
    # An app calling its own pod IP: the packets leave on lo, which Istio's rules (and so
    # remora-init's) do not capture for the app's uid, so the app answers itself directly.
    seen = []
    for i in range(4):
        doc = m.get_json("hello-1", f"http://{ip}:8080/self/{i}", max_time=5,
                         what=f"hello-1 calling its own pod IP {ip}:8080")
        seen.append(doc.get("pod"))
    check(all(p == "hello-1" for p in seen),
          f"requests from hello-1 to its own pod IP {ip} were answered by {seen}")
    # An app calling its own service: captured, and when the proxy picks its own pod, its mTLS
    # connection to its own IP goes out on lo and must come back through its inbound side
    # (not be captured as outbound again, which would loop).
    # Istio's LEAST_REQUEST picks at random between idle endpoints: 16 calls all miss hello-1
    # with probability 2^-16.
    seen = []
    for i in range(16):
        doc = m.get_json("hello-1", f"http://hello:8080/own-service/{i}", max_time=5,
                         what="hello-1 calling its own service hello:8080")
        seen.append(doc)
    mine = [d for d in seen if d.get("pod") == "hello-1"]
    check(mine, f"16 calls from hello-1 to hello:8080 never reached hello-1: "
          f"{[d.get('pod') for d in seen]}")
    for d in seen:
        kv = xfcc_pairs(headers_of(d).get("x-forwarded-client-cert", ""))
        check(kv.get("URI") == spiffe("hello") and kv.get("By") == spiffe("hello"),
              f"hello-1 -> hello (answered by {d.get('pod')}): XFCC "
              f"{headers_of(d).get('x-forwarded-client-cert')!r}, expected By and URI "
              f"{spiffe('hello')}")


def raw_to_hello(m, data, **kw):
    args = {"host": HELLO_VIP, "port": 8080, "data": data, "timeout": 10}
    args.update(kw)
    return m.pod_client_run("client", "raw", args)


def test_h1_garbage_gets_400(m):
    m.involved = ["client"]
    out = raw_to_hello(m, "THIS IS NOT HTTP AT ALL\r\n\r\n")
    res = out.get("response") or {}
    check(res.get("status") == 400, f"garbage: got {res.get('status')}, expected 400",
          json.dumps(out, indent=1)[:1500])
    check(out.get("closed"), "garbage: the connection stayed open after the 400")


def test_h2_huge_header_gets_431(m):
    m.involved = ["client"]
    data = "GET /big-header HTTP/1.1\r\nHost: hello:8080\r\nX-Big: " + "a" * (70 * 1024) + \
        "\r\n\r\n"
    out = raw_to_hello(m, data)
    res = out.get("response") or {}
    check(res.get("status") == 431, f"70 KiB header: got {res.get('status')}, expected 431",
          json.dumps({k: v for k, v in out.items()}, indent=1)[:1500])


def test_h3_slow_header_gets_408(m):
    m.involved = ["client"]
    out = raw_to_hello(m, "GET /slow-header HTTP/1.1\r\nHost: hello:8080\r\nX-Started: yes\r\n",
                       timeout=8)
    res = out.get("response") or {}
    check(res.get("status") == 408, f"unfinished header: got {res.get('status')} after "
          f"{out.get('seconds', 0):.1f}s, expected 408 (--request-header-timeout 2s)",
          json.dumps(out, indent=1)[:1500])
    check(1.5 <= out["seconds"] <= 5, f"408 came after {out['seconds']:.1f}s, expected ~2s")


def test_h4_upstream_dies_midway(m):
    m.involved = ["client", "hello-1", "hello-2"]
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        parallel = pool.submit(m.curl, "client", "http://hello:8080/slow?ms=1500", max_time=10)
        time.sleep(0.2)
        t0 = time.monotonic()
        rc, status, body, r = m.curl("client", "http://hello:8080/die", max_time=15)
        took = time.monotonic() - t0
        check(took < 5, f"/die took {took:.1f}s: the client hung on a dead upstream", describe(r))
        truncated = rc != 0 or len(body.encode()) < 1000
        check(truncated, f"/die: curl exit {rc}, HTTP {status}, {len(body)} bytes: expected a "
              "truncated response or an error", describe(r))
        prc, pstatus, pbody, pr = parallel.result(timeout=20)
        check(prc == 0 and pstatus == 200, f"a parallel request failed: exit {prc}, HTTP {pstatus}",
              describe(pr))
    finally:
        pool.shutdown(wait=True)
    for i in range(2):  # both replicas, so the one that died is among them
        m.get_json("client", f"http://hello:8080/after-die/{i}", max_time=5,
                   what="a request after /die")


def test_h5_request_bodies_intact(m):
    m.involved = ["client", "hello-1", "hello-2"]
    chunked = os.urandom(300 * 1024 + 7)
    big = os.urandom(5 * 1024 * 1024)
    for name, data, extra in (("chunked", chunked, ["-H", "Transfer-Encoding: chunked"]),
                              ("5 MB Content-Length", big, [])):
        path = m.file(f"body-{len(data)}", data)
        doc = m.get_json("client", "http://hello:8080/upload", "-X", "POST",
                         "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
                         *extra, "--data-binary", "@" + path, max_time=30, what=f"POST {name}")
        check(doc.get("body_length") == len(data),
              f"POST {name}: the app got {doc.get('body_length')} bytes, sent {len(data)}")
        check(doc.get("body_sha256") == hashlib.sha256(data).hexdigest(),
              f"POST {name}: the body arrived altered")
        if name == "chunked":
            h = headers_of(doc)
            check("chunked" in h.get("transfer-encoding", "") or
                  h.get("content-length") == str(len(data)),
                  "chunked POST: neither chunked nor a matching Content-Length at the app",
                  json.dumps(h, indent=1))
    # A large response streams through intact too.
    n = 20 * 1024 * 1024
    rc, status, body, r = m.curl("client", f"http://hello:8080/big?bytes={n}", "-o", "/dev/null",
                                 write_out="%{size_download}", max_time=30)
    size = body.split()[-1] if body.split() else ""
    check(rc == 0 and status == 200 and size == str(n),
          f"GET /big?bytes={n}: exit {rc}, HTTP {status}, {size} bytes", describe(r))


def test_h6_keepalive_and_pipelining(m):
    m.involved = ["client"]
    before = m.stats("client")
    req = "GET {} HTTP/1.1\r\nHost: hello:8080\r\n\r\n"
    out = m.pod_client_run("client", "sequence", {
        "host": HELLO_VIP, "port": 8080, "requests": [req.format("/ka/1"), req.format("/ka/2"),
                                                        req.format("/ka/3")]})
    res = out.get("responses", [])
    check(len(res) == 3 and all(r and r["status"] == 200 for r in res),
          "keep-alive: three requests on one connection did not all answer 200",
          json.dumps(out, indent=1)[:2000])
    paths = [json.loads(r["body"])["path"] for r in res]
    check(paths == ["/ka/1", "/ka/2", "/ka/3"], f"keep-alive answers out of order: {paths}")
    mid = m.stats("client")
    check(mid["downstream_cx_total"] - before["downstream_cx_total"] == 1,
          "keep-alive: the three requests used "
          f"{mid['downstream_cx_total'] - before['downstream_cx_total']} downstream connections")
    out = m.pod_client_run("client", "sequence", {
        "host": HELLO_VIP, "port": 8080, "pipeline": True,
        "requests": [req.format("/slow?ms=300"), req.format("/pipelined/2"),
                     "POST /pipelined/3 HTTP/1.1\r\nHost: hello:8080\r\nContent-Length: 5\r\n\r\n"
                     "hello"]})
    res = out.get("responses", [])
    check(len(res) == 3 and all(r and r["status"] == 200 for r in res),
          "pipelining: three requests written back to back did not all answer 200",
          json.dumps(out, indent=1)[:2000])
    docs = [json.loads(r["body"]) for r in res]
    paths = [d["path"] for d in docs]
    check(paths == ["/slow", "/pipelined/2", "/pipelined/3"],
          f"pipelined answers out of order: {paths}")
    check(docs[2]["body_length"] == 5, f"pipelined POST body: {docs[2]['body_length']} bytes")


def test_h7_idle_connection_closed(m):
    m.involved = ["drain"]
    # The drain pod's proxy runs with --idle-timeout 3s: a connection that never sends a byte
    # must be closed, or idle clients hold file descriptors forever.
    out = m.pod_client_run("drain", "idle", {"host": HELLO_VIP, "port": 8080, "wait": 8},
                           timeout=20)
    check(out.get("closed_after") is not None,
          "an idle connection to the outbound listener was still open after 8 s "
          "(--idle-timeout 3s)", json.dumps(out))
    check(out["closed_after"] <= 6, f"idle connection closed after {out['closed_after']:.1f}s, "
          "expected ~3 s")


def app_log_has(m, pods, text, within=5):
    deadline = time.monotonic() + within
    while True:
        for p in pods:
            path = os.path.join(m.tmp, f"app-{p}-8080.log")
            if os.path.exists(path) and text in open(path, errors="replace").read():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_h8a_stalled_body_gets_408_si_and_the_upstream_is_cut(m):
    # Content-Length 10, five bytes, then silence: the drain pod's proxy (--stream-idle-timeout
    # 2s) answers 408 with flag SI and cuts the request it had started upstream, which the app
    # sees as a body that ended early.
    m.involved = ["drain", "hello-1", "hello-2"]
    before = m.stats("drain")
    out = m.pod_client_run("drain", "raw", {
        "host": HELLO_VIP, "port": 8080, "timeout": 10,
        "data": "POST /stalled HTTP/1.1\r\nHost: hello:8080\r\nContent-Length: 10\r\n\r\n12345"},
        timeout=20)
    res = out.get("response") or {}
    check(res.get("status") == 408, f"stalled body: got {res.get('status')} after "
          f"{out.get('seconds', 0):.1f}s, expected 408", json.dumps(out, indent=1)[:1500])
    check(res["headers"].get("x-remora-response-flags") == "SI", "stalled body: flag "
          f"{res['headers'].get('x-remora-response-flags')!r}, expected SI", json.dumps(res))
    check(res["body"] == "stream timeout\n", f"stalled body: body {res['body']!r}")
    check(1.5 <= out["seconds"] <= 6, f"408 came after {out['seconds']:.1f}s, expected ~2 s")
    check(out.get("closed"), "the connection stayed open after the 408 (the rest of its body "
          "may still come: it cannot carry another request)")
    after = m.stats("drain")
    check(after["downstream_rq_idle_timeout"] - before["downstream_rq_idle_timeout"] == 1,
          "downstream_rq_idle_timeout did not count the stalled request")
    check(app_log_has(m, ["hello-1", "hello-2"], "connection closed inside the body"),
          "the app never saw its half-sent request cut: the upstream side was left open")
    # Over HTTP/2 (h2c prior knowledge to a port declared HTTP) the stream gets the same 408.
    h2 = m.pod_client_run("drain", "h2stall", {
        "host": HELLO_VIP, "port": 8080, "authority": "hello:8080", "path": "/stalled-h2",
        "length": 10, "send": 5}, timeout=20, python="/usr/bin/python3")
    check(h2.get("status") == 408 and h2["headers"].get("x-remora-response-flags") == "SI",
          f"stalled HTTP/2 body: {h2}")
    check(1.5 <= h2["seconds"] <= 6, f"HTTP/2 408 came after {h2['seconds']:.1f}s")


def test_h8b_request_timeout_bounds_a_trickled_body(m):
    # One byte every 0.5 s is never idle for 2 s, but the whole request must arrive within
    # --request-timeout 4s: 408 "request timeout" (no flag, as Envoy).
    m.involved = ["drain"]
    before = m.stats("drain")
    out = m.pod_client_run("drain", "trickle", {
        "host": HELLO_VIP, "port": 8080, "interval": 0.5, "bytes": 40,
        "head": "POST /trickle HTTP/1.1\r\nHost: hello:8080\r\nContent-Length: 40\r\n\r\n"},
        timeout=40)
    res = out.get("response") or {}
    check(res.get("status") == 408 and res.get("body") == "request timeout\n",
          f"trickled body: got {res.get('status')} {res.get('body')!r} after "
          f"{out.get('seconds', 0):.1f}s and {out.get('sent')} bytes, expected 408 request timeout",
          json.dumps(out, indent=1)[:1500])
    check(3.5 <= out["seconds"] <= 8, f"408 came after {out['seconds']:.1f}s, expected ~4 s")
    after = m.stats("drain")
    check(after["downstream_rq_timeout"] - before["downstream_rq_timeout"] == 1,
          "downstream_rq_timeout did not count the request")


def test_h8c_silent_upstream_gets_504_si(m):
    # The whole request went; the app sleeps 6 s. No route timeout (Istio's default), so the
    # stream idle timeout (2 s) ends the wait: 504 with flag SI.
    m.involved = ["drain"]
    t0 = time.monotonic()
    rc, status, body, r = m.curl("drain", "http://hello:8080/slow?ms=6000", "-D", "-",
                                 max_time=15)
    took = time.monotonic() - t0
    check(status == 504 and "x-remora-response-flags: si" in body.lower().replace("\r", ""),
          f"silent upstream: HTTP {status} after {took:.1f}s, expected 504 SI", describe(r))
    check(took < 5.5, f"504 came after {took:.1f}s, expected ~2 s")


POISON_APP = os.path.join(HERE, "apps", "poison_app.py")


def test_h9_extra_response_bytes_never_reach_another_request(m):
    # The perm pod's app on :8081 answers /poison with its response and a second one after it
    # ("POISONED"), /poison-late the same 200 ms later, 204 and HEAD with bodies they cannot
    # have. The inbound sidecar pools its app connections: a connection goes back only at a clean
    # message boundary with nothing unread, else it is closed and counted, so the next request
    # (on the same downstream connection, hence the same worker and pool) gets its own answer.
    m.involved = ["perm"]
    if ("perm", 8081) not in m.apps:
        log = os.path.join(m.tmp, "app-perm-8081.log")
        m.apps[("perm", 8081)] = m.c.spawn("perm", ["python3", POISON_APP, "--port", "8081"],
                                           user=(APP_UID, APP_UID), log_path=log)
        m.c.wait_port("perm", "127.0.0.1", 8081, timeout=15, proc=m.apps[("perm", 8081)])
    before = m.stats("perm")
    host = m.ip("perm")
    req = "{} {} HTTP/1.1\r\nHost: perm:8081\r\n\r\n"
    cases = [("GET", "/poison", 200, "ok"), ("GET", "/poison-late", 200, "ok"),
             ("GET", "/no-content", 204, ""), ("HEAD", "/head", 200, "")]
    for method, path, status, body in cases:
        out = m.pod_client_run("outside", "sequence", {
            "host": host, "port": 8081, "delay": 0.6,
            "requests": [req.format(method, path), req.format("GET", "/next"),
                         req.format("GET", "/next-again")]}, user=None)
        res = out.get("responses", [])
        got = [(r["status"], r["body"]) if r else None for r in res]
        check(len(res) == 3 and got[0] == (status, body),
              f"{method} {path}: got {got[:1]}, expected {(status, body)}", json.dumps(out)[:1500])
        check(got[1:] == [(200, "clean"), (200, "clean")],
              f"the requests after {method} {path} got {got[1:]}: another answer's bytes reached "
              "them (response queue poisoning)", json.dumps(out)[:1500])
    after = m.stats("perm")
    dirty = after.get("upstream_cx_closed_dirty", 0) - before.get("upstream_cx_closed_dirty", 0)
    check(dirty == 4, f"upstream_cx_closed_dirty counted {dirty} connections, expected 4 (one per "
          "answer with bytes after it)")


def test_i_rotation_under_load(m):
    m.involved = ["rot-client", "rot-server"]
    issued_before = ca_issued(m)
    t_start = time.monotonic()
    first = {p: m.certs(p) for p in ("rot-client", "rot-server")}
    for p, c in first.items():
        check(c.get("serial"), f"{p} has no certificate", json.dumps(c)[:800])
    serials = {p: [c["serial"]] for p, c in first.items()}
    result = {}

    def load():
        try:
            result["out"] = m.pod_client_run("rot-client", "load", {
                "host": ROT_VIP, "port": 8080, "host_header": "rot:8080", "seconds": 25,
                "per_conn": 25}, timeout=60)
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=load)
    t.start()
    while t.is_alive():
        for p in serials:
            try:
                s = m.certs(p).get("serial")
                if s and s != serials[p][-1]:
                    serials[p].append(s)
            except Failure:
                pass
        t.join(timeout=1)
    if "error" in result:
        raise result["error"]
    out = result["out"]
    issued = ca_issued(m) - issued_before
    took = time.monotonic() - t_start
    problems = []
    if out["ok"] < 100 or out["fail"]:
        problems.append(f"{out['ok']} requests succeeded, {out['fail']} failed during rotation "
                        f"({out['connections']} connections)")
    for p, s in serials.items():
        if len(s) < 2:
            problems.append(f"{p}: /certs serial never changed in 25 s with --cert-ttl 20s")
    # Two proxies renewing at half-life (~10 s) of a 20 s certificate: a handful of certificates.
    if issued > 12:
        problems.append(f"the CA issued {issued:.0f} certificates in {took:.0f} s for two proxies "
                        "with --cert-ttl 20s (renewal at half-life means about 2 each): a renewal "
                        "storm")
    check(not problems, "; ".join(problems), "\n".join(out["errors"]),
          "serials seen in /certs: " + json.dumps({p: s[:6] + (["..."] if len(s) > 6 else [])
                                                   for p, s in serials.items()}))
    last = m.certs("rot-client")
    check(last.get("identity") == spiffe("rot-client"), f"identity after rotation: "
          f"{last.get('identity')}")


def test_j_sigterm_drains(m):
    # SIGTERM, as Kubernetes sends a pod being deleted: the proxy drains for its drain duration
    # (5 s) as Envoy under Istio's agent does. In-flight work finishes; new connections are
    # still accepted (callers that have not seen the endpoint go still send here) but every
    # HTTP/1.1 response says Connection: close and an HTTP/2 connection gets GOAWAY; readiness
    # fails; then it exits 0.
    m.involved = ["drain"]
    p = m.proxies["drain"]
    check(p.proc.poll() is None, "the drain pod's proxy is not running")
    m.get_json("drain", "http://hello:8080/warm")
    result = {}

    def slow():
        t0 = time.monotonic()
        # 1.2 s: below the drain pod's 2 s stream idle timeout
        result["r"] = m.curl("drain", "http://hello:8080/slow?ms=1200", max_time=15)
        result["took"] = time.monotonic() - t0

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    sent = time.monotonic()
    os.killpg(p.proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    rc, status, body, r = m.curl("outside", f"http://{m.ip('drain')}:15021/healthz/ready",
                                 max_time=5, user=None)
    check(rc == 0 and status == 503, f"readiness while draining: exit {rc}, HTTP {status}, "
          "expected 503", describe(r))
    rc, status, body, r = m.curl("drain", "http://hello:8080/after-sigterm", "-D", "-",
                                 max_time=5)
    check(rc == 0 and status == 200, f"a new request while draining: exit {rc}, HTTP {status}, "
          "expected 200 (the listeners keep accepting during the drain)", describe(r))
    check("connection: close" in body.lower(), "a response while draining did not say "
          "Connection: close", describe(r))
    # HTTP/2 with prior knowledge (nghttp -v prints every frame; Python's h2 refuses frames
    # after a GOAWAY, even those of the streams it covers).
    r = m.c.run("drain", ["nghttp", "-nv", "-t", "5", "-H", ":authority: hello:8080",
                          f"http://{HELLO_VIP}:8080/h2-draining"], user=APP_UID, check=False,
                timeout=15)
    frames = r.stdout
    check(r.returncode == 0 and ":status: 200" in frames and "recv HEADERS frame" in frames,
          "an HTTP/2 request while draining was not answered 200", describe(r))
    check(re.search(r"recv GOAWAY frame <length=\d+, flags=0x00, stream_id=0>\s*\n\s*"
                    r"\(last_stream_id=(\d+), error_code=NO_ERROR", frames),
          "no GOAWAY (NO_ERROR, covering the request) on an HTTP/2 connection while draining",
          frames[-3000:])
    t.join(timeout=20)
    rc, status, body, r = result["r"]
    check(rc == 0 and status == 200, f"the in-flight request did not complete: exit {rc}, "
          f"HTTP {status}", describe(r))
    try:
        code = p.proc.wait(timeout=max(0.1, sent + 7 - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise Failure(f"the proxy had not exited {time.monotonic() - sent:.1f}s after SIGTERM "
                      "(drain is 5 s)")
    exited = time.monotonic() - sent
    check(code == 0, f"the proxy exited with {code} after SIGTERM")
    check(4.5 <= exited <= 6.5, f"the proxy exited {exited:.1f}s after SIGTERM (drain is 5 s: "
          "it keeps serving that long)")


def test_j2_exit_on_zero_active_connections(m):
    # Istio's EXIT_ON_ZERO_ACTIVE_CONNECTIONS: after SIGTERM the proxy exits as soon as the last
    # connection is gone instead of waiting out the drain duration. The drain pod's proxy is
    # started again with the flag (the previous one exited in test j).
    m.involved = ["drain"]
    old = m.proxies.get("drain")
    check(old is None or old.proc.poll() is not None, "the drain pod's proxy from test j still runs")
    p = m.start_proxy("drain", "client", ["--exit-on-zero-active-connections"])
    m.wait_ready("drain")
    result = {}

    def slow():
        result["r"] = m.curl("drain", "http://hello:8080/slow?ms=1500", max_time=15)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    sent = time.monotonic()
    os.killpg(p.proc.pid, signal.SIGTERM)
    t.join(timeout=20)
    rc, status, body, r = result["r"]
    check(rc == 0 and status == 200, f"the in-flight request did not complete: exit {rc}, "
          f"HTTP {status}", describe(r))
    try:
        code = p.proc.wait(timeout=max(0.1, sent + 7 - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise Failure("the proxy had not exited 7 s after SIGTERM")
    exited = time.monotonic() - sent
    check(code == 0, f"the proxy exited with {code} after SIGTERM")
    check(exited < 3.5, f"the proxy exited {exited:.1f}s after SIGTERM; with "
          "--exit-on-zero-active-connections it should go once its last connection (~1.1 s) ended")


def test_k_permissive(m):
    m.involved = ["perm"]
    doc = m.get_json("outside", f"http://{m.ip('perm')}:8080/plain", user=None,
                     what="plaintext from outside to the PERMISSIVE pod")
    check(doc.get("pod") == "perm", f"answered by {doc.get('pod')}")
    check("x-forwarded-client-cert" not in headers_of(doc),
          "a plaintext request reached the app with an XFCC header",
          json.dumps(headers_of(doc), indent=1))
    doc = m.get_json("client", "http://perm:8080/mtls", what="mTLS from client to perm")
    kv = xfcc_pairs(headers_of(doc).get("x-forwarded-client-cert", ""))
    check(kv.get("URI") == spiffe("client"), f"mTLS to PERMISSIVE pod: XFCC URI {kv.get('URI')!r}",
          json.dumps(headers_of(doc), indent=1))
    check(m.stats("perm").get("tls_handshake_ok", 0) > 0, "perm proxy counted no TLS handshake")
    check(m.stats("perm").get("downstream_cx_refused_plaintext", 0) == 0,
          "PERMISSIVE proxy refused a plaintext connection")


def test_l_no_certificate_no_mtls(m):
    m.involved = ["nocert"]
    p = m.proxies["nocert"]
    check(p.proc.poll() is None, f"the proxy with an unreachable control exited ({p.proc.returncode})")
    rc, status, body, r = m.curl("outside", f"http://{m.ip('nocert')}:15021/healthz/ready",
                                 "-D", "-", max_time=5, user=None)
    check(rc == 0 and status == 503, f"/healthz/ready without a certificate: exit {rc}, HTTP "
          f"{status}, expected 503", describe(r))
    check(re.search(r"(?im)^server: remora-proxy\r?$", body),
          "the proxy's health port does not answer as Server: remora-proxy", body[:600])
    certs = m.certs("nocert")
    check(not certs.get("identity"), "/certs shows an identity without a control plane",
          json.dumps(certs)[:800])
    probe = dict(m.probe_cert(), port=8080)
    ok = m.pod_client_run("outside", "tls", dict(probe, host=m.ip("hello-1")), user=None)
    check(ok.get("status") == 200, "control probe: mTLS with a mesh certificate to hello-1 failed, "
          "so the probe proves nothing", json.dumps(ok))
    bad = m.pod_client_run("outside", "tls", dict(probe, host=m.ip("nocert")), user=None)
    check(not bad.get("handshake") or bad.get("status") is None,
          "a proxy without a certificate completed an mTLS exchange", json.dumps(bad))
    check(not bad.get("handshake"), "TLS handshake with a proxy that has no certificate "
          "succeeded (it should fail)", json.dumps(bad))
    fails = {k: v for k, v in m.stats("nocert").items() if k.startswith("tls_handshake_fail")}
    check(sum(fails.values()) >= 1, "nocert proxy counted no refused handshake", json.dumps(fails))


TESTS = [
    ("a_xfcc_identity", test_a_xfcc_identity),
    ("b_service_names_round_robin", test_b_service_names_round_robin),
    ("c_mtls_is_real", test_c_mtls_is_real),
    ("c2_request_in_same_segment_as_tls_finished",
     test_c2_request_in_same_segment_as_tls_finished),
    ("d_plaintext_refused", test_d_plaintext_refused),
    ("e_passthrough", test_e_passthrough),
    ("f_no_capture_loop", test_f_no_capture_loop),
    ("g_call_own_pod_ip", test_g_call_own_pod_ip),
    ("h1_garbage_gets_400", test_h1_garbage_gets_400),
    ("h2_huge_header_gets_431", test_h2_huge_header_gets_431),
    ("h3_slow_header_gets_408", test_h3_slow_header_gets_408),
    ("h4_upstream_dies_midway", test_h4_upstream_dies_midway),
    ("h5_request_bodies_intact", test_h5_request_bodies_intact),
    ("h6_keepalive_and_pipelining", test_h6_keepalive_and_pipelining),
    ("h7_idle_connection_closed", test_h7_idle_connection_closed),
    ("h8a_stalled_body_gets_408_si_and_the_upstream_is_cut",
     test_h8a_stalled_body_gets_408_si_and_the_upstream_is_cut),
    ("h8b_request_timeout_bounds_a_trickled_body", test_h8b_request_timeout_bounds_a_trickled_body),
    ("h8c_silent_upstream_gets_504_si", test_h8c_silent_upstream_gets_504_si),
    ("h9_extra_response_bytes_never_reach_another_request",
     test_h9_extra_response_bytes_never_reach_another_request),
    ("i_rotation_under_load", test_i_rotation_under_load),
    ("j_sigterm_drains", test_j_sigterm_drains),
    ("j2_exit_on_zero_active_connections", test_j2_exit_on_zero_active_connections),
    ("k_permissive", test_k_permissive),
    ("l_no_certificate_no_mtls", test_l_no_certificate_no_mtls),
]


# ---------------------------------------------------------------------------------------------


def reset_involved(mesh):
    mesh.involved = []


def involved_proxies(mesh):
    """What the proxies of the pods the failed test involved say about themselves."""
    return [mesh.proxies[p].describe(mesh) for p in mesh.involved if p in mesh.proxies]


def first_line(e):
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def wait_for_binaries(paths, limit=60):
    """Someone may be rebuilding: wait a little for the binaries to reappear."""
    deadline = time.monotonic() + limit
    while True:
        missing = [p for p in paths if not os.access(p, os.X_OK)]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(1)


def run_suite(description, cluster_prefix, tmp_prefix, setup_fn, tests, mesh_class=None,
              tools=("curl", "setpriv", "iptables-restore", "python3")):
    """The main of a system test built on Mesh: flags, skip rules, one LocalCluster, setup, the
    tests with the involved proxies' state on failure, cleanup. Returns the exit status."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bin-dir", required=True, help="build dir holding control/ and proxy/")
    ap.add_argument("-k", dest="only", help="run only tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = ap.parse_args()
    for tool in tools:
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77
    if os.geteuid() != 0:
        print("SKIP: network namespaces need root")
        return 77
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=tmp_prefix)
    os.chmod(tmp, 0o755)
    runner = Runner()
    try:
        with LocalCluster(f"{cluster_prefix}{os.getpid()}") as cluster:
            mesh = (mesh_class or Mesh)(cluster, os.path.abspath(opts.bin_dir), tmp)
            missing = wait_for_binaries(mesh.binaries())
            if missing:
                print_failure("setup", f"missing binaries: {', '.join(missing)}", [])
                runner.failed += 1
                return 1
            try:
                setup_fn(mesh)
            except Exception as e:  # noqa: BLE001 - nothing can run without the mesh
                details = [traceback.format_exc()] + [p.describe() for p in mesh.proxies.values()]
                details.append(f"control log:\n{tail(mesh.control_log)}")
                print_failure("setup", f"{type(e).__name__}: {str(e).splitlines()[0]}", details)
                runner.failed += 1
                return 1
            print(f"setup: {len(cluster.pods)} pods, {len(mesh.proxies)} proxies ready "
                  f"({time.monotonic() - started:.1f}s)", flush=True)
            runner.run(tests, mesh, only=opts.only, before_each=reset_involved,
                       failure_details=involved_proxies, crash_details=involved_proxies,
                       crash_reason=first_line)
    except ClusterUnavailable as e:
        print(f"SKIP: {e}")
        return 77
    finally:
        runner.keep_or_remove(tmp, opts.keep)
        runner.summary(started)
    return runner.exit_code()


def main():
    return run_suite(__doc__.splitlines()[0], "remora-m", "remora-test-mesh-", setup, TESTS,
                     tools=("curl", "ss", "setpriv", "iptables-restore", "python3"))


if __name__ == "__main__":
    sys.exit(main())
