#!/usr/bin/env python3
"""System test of the control plane's config store, driven as a new user would drive it.

Runs remora-control on loopback ports with a temporary state dir and uses remoractl apply / get /
delete and curl: applies the bookinfo samples, reads them back, is refused an invalid file while
the old config stays, restarts the control plane and finds the config again, deletes, is refused
without credentials, follows a --config-dir change, and refuses a bad --mesh-config.

    python3 tests/system/test_config.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

Exit status: 0 all passed, 1 some failed, 77 curl missing.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Failure, Runner, check, clip  # noqa: E402

SAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "..", "..", "..", "shared", "istio-samples"))
DR_ALL = os.path.join(SAMPLES, "destination-rule-all.yaml")
VS_ALL_V1 = os.path.join(SAMPLES, "virtual-service-all-v1.yaml")

BAD_REVIEWS = """apiVersion: networking.istio.io/v1
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
    retries:
      attempts: 2
      retryOn: 5xxx
"""

DIR_VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  namespace: shop
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: {subset}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class Result:
    def __init__(self, argv, proc):
        self.argv, self.rc, self.out, self.err = argv, proc.returncode, proc.stdout, proc.stderr

    def describe(self):
        return (f"command: {' '.join(self.argv)}\nexit: {self.rc}\nstdout: {clip(self.out)}\n"
                f"stderr: {clip(self.err)}")


def run(argv, timeout=20):
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired as e:
        raise Failure(f"timed out after {timeout}s: {' '.join(argv)}", [clip(e.stderr)])
    return Result(argv, proc)


class Control:
    """One remora-control with its own ports; its log goes to a file."""

    def __init__(self, bin_dir, state_dir, log_path, extra=()):
        self.control = os.path.join(bin_dir, "control", "remora-control")
        self.remoractl = os.path.join(bin_dir, "control", "remoractl")
        self.state_dir = state_dir
        self.log_path = log_path
        self.extra = list(extra)
        self.api_port, self.mon_port = free_port(), free_port()
        self.proc = None

    def argv(self):
        return [self.control, "--state-dir", self.state_dir, "--listen",
                f"127.0.0.1:{self.api_port}", "--monitoring", f"127.0.0.1:{self.mon_port}",
                *self.extra]

    def start(self):
        with open(self.log_path, "a") as log:
            log.write(f"==== {' '.join(self.argv())}\n")
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"remora-control exited with {self.proc.returncode}", [self.tail()])
            try:
                with socket.create_connection(("127.0.0.1", self.api_port), timeout=0.5):
                    if os.path.exists(os.path.join(self.state_dir, "admin-token")):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise Failure("remora-control did not listen within 15 s", [self.tail()])

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc, self.proc = self.proc.returncode, None
        return rc

    def tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "log:\n" + "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def ctl(self, *args, cred=None):
        cred = cred if cred is not None else ["--state-dir", self.state_dir]
        return run([self.remoractl, *args, "--control", f"localhost:{self.api_port}",
                    "--trust-bundle", os.path.join(self.state_dir, "root-cert.pem"), *cred])

    def must(self, *args, cred=None):
        r = self.ctl(*args, cred=cred)
        check(r.rc == 0, f"remoractl {args[0]} failed", r.describe())
        return r

    def curl(self, path, token=None, method="GET", data=None):
        argv = ["curl", "-sS", "--max-time", "10", "--cacert",
                os.path.join(self.state_dir, "root-cert.pem"), "-X", method,
                "-w", "\n%{http_code}", f"https://localhost:{self.api_port}{path}"]
        if token is not None:
            argv += ["-H", f"Authorization: Bearer {token}"]
        if data is not None:
            argv += ["--data-binary", data]
        r = run(argv)
        check(r.rc == 0, "curl failed", r.describe())
        body, _, status = r.out.rpartition("\n")
        return int(status), body

    def token(self):
        with open(os.path.join(self.state_dir, "admin-token")) as f:
            return f.read().strip()

    def version(self):
        status, body = self.curl("/v1/config/version", token=self.token())
        check(status == 200, f"/v1/config/version answered {status}", body)
        return json.loads(body)["version"]


class Context:
    def __init__(self, bin_dir, tmp):
        self.bin_dir, self.tmp = bin_dir, tmp
        self.main = Control(bin_dir, os.path.join(tmp, "state"), os.path.join(tmp, "main.log"))
        self.others = []

    def new_control(self, name, extra=()):
        c = Control(self.bin_dir, os.path.join(self.tmp, name + "-state"),
                    os.path.join(self.tmp, name + ".log"), extra)
        self.others.append(c)
        return c


def test_start(ctx):
    ctx.main.start()
    mode = stat.S_IMODE(os.stat(os.path.join(ctx.main.state_dir, "admin-token")).st_mode)
    check(mode == 0o600, f"admin-token has mode {oct(mode)}, expected 0600")
    check(re.fullmatch(r"[0-9a-f]{64}", ctx.main.token()), "admin-token is not 32 bytes of hex")


def test_apply_and_get(ctx):
    m = ctx.main
    r = m.must("apply", "-f", DR_ALL)
    for name in ("productpage", "reviews", "ratings", "details"):
        check(f"destinationrule.networking.istio.io/{name} created" in r.out,
              f"apply did not say DestinationRule {name} was created", r.describe())
    r = m.must("apply", "-f", VS_ALL_V1)
    check("virtualservice.networking.istio.io/reviews created" in r.out, "VS not created",
          r.describe())
    r = m.must("apply", "-f", VS_ALL_V1)
    check("virtualservice.networking.istio.io/reviews unchanged" in r.out,
          "applying the same file again is not 'unchanged'", r.describe())
    r = m.must("get", "vs")
    lines = r.out.splitlines()
    check(lines and lines[0].split() == ["NAMESPACE", "NAME", "AGE"], "no table header",
          r.describe())
    names = sorted(line.split()[1] for line in lines[1:])
    check(names == ["details", "productpage", "ratings", "reviews"], f"get vs listed {names}",
          r.describe())
    r = m.must("get", "destinationrule", "reviews", "-o", "json")
    obj = json.loads(r.out)
    check([s["name"] for s in obj["spec"]["subsets"]] == ["v1", "v2", "v3"],
          "get dr reviews -o json: wrong subsets", r.describe())
    r = m.must("get", "virtualservices", "reviews", "-o", "yaml")
    check("subset: v1" in r.out and "kind: VirtualService" in r.out, "get -o yaml", r.describe())
    r = m.ctl("get", "vs", "nope")
    check(r.rc == 1 and "not found" in r.err, "get of a missing name did not fail", r.describe())


def test_invalid_refused_old_stays(ctx):
    m = ctx.main
    before = m.version()
    bad = write(os.path.join(ctx.tmp, "bad-reviews.yaml"), BAD_REVIEWS)
    r = m.ctl("apply", "-f", bad)
    check(r.rc == 1, "an invalid file was applied", r.describe())
    want = (f"Error [IST0106] (VirtualService default/reviews {bad}:1) Schema validation error: "
            f"{bad}:15:16: spec.http[0].retries.retryOn: unknown retry condition \"5xxx\"")
    check(want in r.err, "refusal does not carry analyze's IST0106 line", r.describe(),
          f"expected: {want}")
    r = m.must("get", "vs", "reviews", "-o", "yaml")
    check("subset: v1" in r.out and "5xxx" not in r.out, "the old VirtualService did not stay",
          r.describe())
    check(m.version() == before, "the version changed on a refused apply")


def test_durable_across_restart(ctx):
    m = ctx.main
    version = m.version()
    rc = m.stop()
    check(rc == 0, f"remora-control exited {rc} on SIGTERM")
    m.start()
    check(m.version() == version, f"version {m.version()} after restart, expected {version}")
    r = m.must("get", "dr", "-A")
    check(len(r.out.splitlines()) == 5, "DestinationRules lost across the restart", r.describe())
    r = m.must("get", "vs", "reviews", "-o", "yaml")
    check("subset: v1" in r.out, "VirtualService lost across the restart", r.describe())


def test_delete(ctx):
    m = ctx.main
    r = m.must("delete", "-f", VS_ALL_V1)
    check('virtualservice.networking.istio.io "reviews" deleted' in r.out, "delete output",
          r.describe())
    r = m.must("get", "vs")
    check("No resources found" in r.err and r.out.strip() == "", "VirtualServices remain",
          r.describe())
    r = m.ctl("delete", "-f", VS_ALL_V1)
    check(r.rc == 1 and "VirtualService default/reviews not found" in r.err,
          "deleting what is not there did not fail naming it", r.describe())
    r = m.must("get", "dr")
    check(len(r.out.splitlines()) == 5, "delete of the VS file touched DestinationRules",
          r.describe())


def test_unauthenticated_refused(ctx):
    m = ctx.main
    status, body = m.curl("/v1/config?kind=vs")
    check(status == 401 and "error" in json.loads(body), f"no credentials: {status}", body)
    status, body = m.curl("/v1/config", method="POST", data=BAD_REVIEWS)
    check(status == 401, f"POST without credentials answered {status}", body)
    status, body = m.curl("/v1/config/version", token="0" * 64)
    check(status == 401, f"a wrong token answered {status}", body)
    status, body = m.curl("/v1/config/version", token=m.token())
    check(status == 200, f"the admin token answered {status}", body)
    # A workload's certificate is not an admin credential; remoractl's identity is.
    root = os.path.join(m.state_dir, "root-cert.pem")
    for ns, sa, expect in (("default", "sleep", 1), ("remora-system", "remoractl", 0)):
        tok = run([m.remoractl, "token", "create", "--namespace", ns, "--service-account", sa,
                   "--state-dir", m.state_dir])
        check(tok.rc == 0, "token create failed", tok.describe())
        token_file = write(os.path.join(ctx.tmp, f"{sa}.token"), tok.out)
        certs = os.path.join(ctx.tmp, f"{sa}-certs")
        r = run([m.remoractl, "cert", "request", "--control", f"localhost:{m.api_port}",
                 "--trust-bundle", root, "--token-file", token_file, "--out", certs])
        check(r.rc == 0, "cert request failed", r.describe())
        r = m.ctl("get", "dr", cred=["--cert-dir", certs])
        check(r.rc == expect, f"get with the {ns}/{sa} certificate exited {r.rc}", r.describe())
        if expect:
            check("403" in r.err, "a workload certificate was not refused with 403", r.describe())
        else:
            check("reviews" in r.out, "remoractl's certificate did not list", r.describe())


def test_config_dir(ctx):
    d = os.path.join(ctx.tmp, "configmap")
    os.makedirs(d)
    f = write(os.path.join(d, "ratings.yaml"), DIR_VS.format(subset="v1"))
    c = ctx.new_control("dir", ["--config-dir", d]).start()
    r = c.must("get", "vs", "ratings", "-n", "shop", "-o", "wide")
    check("config-dir" in r.out and f in r.out, "the directory's resource is not served",
          r.describe())
    r = c.ctl("apply", "-f", f)
    check(r.rc == 1 and "managed by --config-dir" in r.err,
          "the API changed a directory-owned resource", r.describe())
    # A change to the file shows within about 2 s.
    write(f, DIR_VS.format(subset="v2"))
    deadline, seen = time.monotonic() + 2.5, ""
    while time.monotonic() < deadline:
        seen = c.must("get", "vs", "ratings", "-n", "shop", "-o", "yaml").out
        if "subset: v2" in seen:
            break
        time.sleep(0.1)
    check("subset: v2" in seen, "the file change was not picked up within 2.5 s", seen, c.tail())
    # An invalid state is logged with file:line:col, and the last good config stays.
    write(f, DIR_VS.format(subset="v2") + "    timeout: 0s\n")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and f"{f}:14:" not in c.log_text():
        time.sleep(0.1)
    check(f"{f}:14:" in c.log_text(), "the invalid directory was not logged with file:line",
          c.tail())
    r = c.must("get", "vs", "ratings", "-n", "shop", "-o", "yaml")
    check("subset: v2" in r.out and "timeout" not in r.out, "the last good config did not stay",
          r.describe())
    c.stop()


def test_no_input_crashes(ctx):
    """Valid Kubernetes objects yaml-cpp used to trip on, odd shapes and yaml-cpp's endless
    LoadAll input, at start, in a watched directory and over the API: never an exit or abort."""
    d = os.path.join(ctx.tmp, "odd-configmap")
    os.makedirs(d)
    write(os.path.join(d, "svc.yaml"),
          "apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec: {}\n---\n"
          "apiVersion: v1\nkind: Service\nmetadata:\n  name: headless\nspec:\n"
          "  clusterIP: None\n  selector: {app: db}\n")
    c = ctx.new_control("odd", ["--config-dir", d]).start()
    r = c.must("get", "svc")
    check("empty" in r.out and "headless" in r.out, "the Services were not served", r.describe())
    # A file that appears while it runs, with a document of the wrong shape.
    odd = write(os.path.join(d, "odd.yaml"), "apiVersion: networking.istio.io/v1\n"
                "kind: VirtualService\nmetadata: a-string\nspec: {hosts: [a]}\n")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and odd not in c.log_text():
        time.sleep(0.1)
    check(c.proc.poll() is None, "remora-control exited on a bad file in --config-dir", c.tail())
    check(odd in c.log_text(), "the bad file was not logged", c.tail())
    os.remove(odd)
    # Over the API: a Service with spec: {} is taken; odd shapes are refused, not a dropped stream.
    svc = write(os.path.join(ctx.tmp, "svc-empty.yaml"),
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: plain\nspec: {}\n")
    r = c.must("apply", "-f", svc)
    check("created" in r.out, "a Service with spec: {} was not created", r.describe())
    for i, text in enumerate(["kind: VirtualService\nmetadata: a-string\n",
                              "kind: Service\napiVersion: v1\nmetadata: [a]\n",
                              "  - a:\n    b:\n , c:\n"]):
        f = write(os.path.join(ctx.tmp, f"odd-{i}.yaml"), text)
        r = c.ctl("apply", "-f", f)
        check(r.rc == 1 and "Error from server (400)" in r.err,
              f"odd input {i} was not refused with 400", r.describe())
    check(c.proc.poll() is None, "remora-control exited on odd input", c.tail())
    c.stop()


def alias_bomb(flow):
    """Nine levels of eight aliases under status: (8^9 nodes once expanded, about 650 bytes)."""
    levels = ["a: &a [" + ",".join(['"lol"'] * 8) + "]"]
    for prev, c in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 8) + "]")
    if flow:  # one line: the store cannot cut status out by lines
        return ("{apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: "
                "{name: bomb}, spec: {hosts: [reviews], http: [{route: [{destination: "
                "{host: reviews}}]}]}, status: {" + ", ".join(levels) + "}}\n")
    return ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
            "  name: bomb\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n"
            "    - destination:\n        host: reviews\nstatus:\n" +
            "".join(f"  {line}\n" for line in levels))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_alias_bomb(ctx):
    """A VirtualService with a 9x8 alias bomb under status: (block style, and on one line where
    status cannot be cut out by lines) is refused with file:line by apply and analyze; nothing is
    stored, get -o json stays as it was, and remora-control's memory does not grow."""
    m = ctx.main
    before = rss_kib(m.proc.pid)
    listing = m.must("get", "vs", "-o", "json").out
    for name, flow, line in (("bomb-block.yaml", False, 17), ("bomb-flow.yaml", True, 1)):
        f = write(os.path.join(ctx.tmp, name), alias_bomb(flow))
        r = m.ctl("apply", "-f", f)
        check(r.rc == 1 and "Error from server (400)" in r.err and f"{f}:{line}:" in r.err and
              "nodes per alias expansion" in r.err, f"{name} was not refused", r.describe())
        r = run([m.remoractl, "analyze", f])
        check(r.rc != 0 and f"{f}:{line}:" in (r.out + r.err) and
              "nodes per alias expansion" in (r.out + r.err),
              f"remoractl analyze did not refuse {name}", r.describe())
    for _ in range(3):
        r = m.must("get", "vs", "-o", "json")
    check(r.out == listing, "get -o json changed", clip(r.out))
    grown = rss_kib(m.proc.pid) - before
    check(m.proc.poll() is None, "remora-control exited", m.tail())
    check(grown < 64 * 1024, f"remora-control grew by {grown} KiB")


def test_large_apply_413(ctx):
    """An apply over the 4 MiB limit is answered 413, whatever its size: 25 MB too."""
    m = ctx.main
    for mib in (5, 25):
        f = os.path.join(ctx.tmp, f"big-{mib}.yaml")
        with open(f, "w") as out:
            out.write("# " + "x" * 1000 + "\n")
            doc = ("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n"
                   "spec:\n  ports:\n  - port: 80\n")
            i = 0
            while out.tell() < mib * 1024 * 1024:
                out.write(doc.format(i=i))
                i += 1
        r = m.ctl("apply", "-f", f)
        check(r.rc == 1 and "413" in r.err and "reset" not in r.err,
              f"a {mib} MiB apply did not get 413", r.describe())
        argv = ["curl", "-sS", "--max-time", "30", "--cacert",
                os.path.join(m.state_dir, "root-cert.pem"), "-H", "Expect:", "-o", os.devnull,
                "-w", "%{http_code}", "-H", f"Authorization: Bearer {m.token()}",
                "-H", "Content-Type: application/yaml", "--data-binary", "@" + f,
                f"https://localhost:{m.api_port}/v1/config"]
        r = run(argv, timeout=40)
        check(r.rc == 0 and r.out.strip() == "413", f"curl of {mib} MiB did not get 413",
              r.describe())


def test_port_out_of_range(ctx):
    """A port outside 1-65535 is refused by apply and analyze, naming file, line and field."""
    m = ctx.main
    bad = write(os.path.join(ctx.tmp, "bad-port.yaml"),
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: far\nspec:\n"
                "  ports:\n  - name: http\n    port: 70000\n")
    r = m.ctl("apply", "-f", bad)
    check(r.rc == 1 and f"{bad}:8:" in r.err and "spec.ports[0].port" in r.err,
          "a Service port of 70000 was not refused with file:line:field", r.describe())
    r = run([m.remoractl, "analyze", bad])
    check(r.rc != 0 and f"{bad}:8:" in (r.out + r.err), "analyze did not refuse port 70000",
          r.describe())
    # The proxy's --config reads it before anything else (certificates, listeners).
    proxy = os.path.join(ctx.bin_dir, "proxy", "remora-proxy")
    r = run([proxy, "--trust-bundle", os.path.join(m.state_dir, "root-cert.pem"), "--cert-chain",
             "/nonexistent", "--key", "/nonexistent", "--config", bad, "--outbound", "127.0.0.1:0",
             "--inbound", "off", "--admin", "127.0.0.1:0", "--health", "127.0.0.1:0",
             "--metrics", "off"])
    check(r.rc == 1 and f"{bad}:8:11: Service default/far: spec.ports[0].port" in r.err,
          "remora-proxy --config did not refuse port 70000 with file:line:field", r.describe())


def test_mesh_config(ctx):
    good = write(os.path.join(ctx.tmp, "mesh.yaml"),
                 "trustDomain: example.org\naccessLogFile: /dev/stdout\n"
                 "defaultConfig:\n  tracing:\n    sampling: 10\n")
    c = ctx.new_control("mesh", ["--mesh-config", good]).start()
    status, body = c.curl("/v1/meshconfig", token=c.token())
    check(status == 200, f"/v1/meshconfig answered {status}", body)
    mesh = json.loads(body)
    check(mesh["trustDomain"] == "example.org" and mesh["accessLogFile"] == "/dev/stdout" and
          mesh["defaultConfig"]["tracing"]["sampling"] == 10, "wrong MeshConfig", body)
    status, _ = c.curl("/v1/meshconfig")
    check(status == 401, f"/v1/meshconfig without credentials answered {status}")
    c.stop()
    bad = write(os.path.join(ctx.tmp, "bad-mesh.yaml"),
                "trustDomain: example.org\noutboundTrafficPolicy:\n  mode: SOMETIMES\n")
    r = run([c.control, "--state-dir", os.path.join(ctx.tmp, "bad-mesh-state"), "--listen",
             f"127.0.0.1:{free_port()}", "--monitoring", f"127.0.0.1:{free_port()}",
             "--mesh-config", bad])
    check(r.rc == 1, f"a bad --mesh-config exited {r.rc}, expected 1", r.describe())
    check(re.search(re.escape(bad) + r":3:\d+: ", r.err), "no file:line:col in the error",
          r.describe())


TESTS = [
    ("start", test_start),
    ("apply_and_get", test_apply_and_get),
    ("invalid_refused_old_stays", test_invalid_refused_old_stays),
    ("durable_across_restart", test_durable_across_restart),
    ("delete", test_delete),
    ("unauthenticated_refused", test_unauthenticated_refused),
    ("config_dir", test_config_dir),
    ("no_input_crashes", test_no_input_crashes),
    ("mesh_config", test_mesh_config),
    ("alias_bomb", test_alias_bomb),
    ("large_apply_413", test_large_apply_413),
    ("port_out_of_range", test_port_out_of_range),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="build dir holding control/remora-control")
    ap.add_argument("-k", dest="only", help="run only tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = ap.parse_args()
    if not shutil.which("curl"):
        print("SKIP: curl is not installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="remora-test-config-")
    ctx = Context(os.path.abspath(opts.bin_dir), tmp)
    runner = Runner()
    started = time.monotonic()
    try:
        runner.run(TESTS, ctx, only=opts.only, always=("start",),
                   failure_details=lambda c: [c.main.tail()])
    finally:
        for c in [ctx.main, *ctx.others]:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        runner.keep_or_remove(tmp, opts.keep)
    runner.summary(started)
    return runner.exit_code()


if __name__ == "__main__":
    sys.exit(main())
