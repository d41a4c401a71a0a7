#!/usr/bin/env python3
"""System test of Remora's Kubernetes pieces that run without a cluster, on loopback only.

`remoractl install` generates the manifests; remora-control is started with exactly the arguments
of the generated Deployment (paths mapped to a temporary dir, addresses to loopback ports), with
the generated CA Secret and MeshConfig; then a real TLS client plays the API server: it trusts
only the caBundle of the generated MutatingWebhookConfiguration, checks the certificate for the
Service's DNS name, and POSTs AdmissionReviews to /inject. remora-agent's readiness wait (the
postStart hook) is run against a local HTTP server. remora-proxy runs the injector's rewritten
app probes (HTTPS against a Python TLS server, gRPC health checks against a grpcio server) and
exits 0 on POST /quitquitquit to its status port.

    python3 tests/system/test_kube.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

Exit status: 0 all passed, 1 some failed.
"""

import argparse
import base64
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, clip  # noqa: E402

SERVICE_DNS = "remora-control.remora-system.svc"

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "web-6b7c9d8f5-",
        "namespace": "shop",
        "labels": {"app": "web", "version": "v1"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "web-6b7c9d8f5", "uid": "1"}],
    },
    "spec": {
        "serviceAccountName": "web",
        "containers": [{
            "name": "web", "image": "web:1",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        }],
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def review(obj, uid="3a6e0d47-5f5f-11e8-bc74-36e6bb280816", kind="Pod"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "shop", "operation": "CREATE", "object": obj}}


def apply_patch(doc, patch):
    """RFC 6902 "add" on object members, the only operation the injector sends."""
    doc = json.loads(json.dumps(doc))
    for op in patch:
        check(op["op"] == "add", f"unexpected patch op {op['op']}")
        parts = op["path"].lstrip("/").split("/")
        cur = doc
        for p in parts[:-1]:
            cur = cur[p]
        cur[parts[-1]] = op["value"]
    return doc


class Context:
    def __init__(self, bin_dir, tmp):
        self.bin_dir = bin_dir
        self.tmp = tmp
        self.remoractl = os.path.join(bin_dir, "control", "remoractl")
        self.control_bin = os.path.join(bin_dir, "control", "remora-control")
        self.agent_bin = os.path.join(bin_dir, "proxy", "agent", "remora-agent")
        self.proxy_bin = os.path.join(bin_dir, "proxy", "remora-proxy")
        self.proc = None
        self.log = os.path.join(tmp, "control.log")
        self.docs = []

    def tail(self):
        try:
            with open(self.log) as f:
                return "remora-control log:\n" + clip(f.read()[-3000:])
        except OSError:
            return ""

    def one(self, kind, name=None):
        found = [d for d in self.docs if d["kind"] == kind
                 and (name is None or d["metadata"]["name"] == name)]
        check(len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}")
        return found[0]

    def tls_context(self):
        """Trusts only the caBundle of the generated webhook configuration, as the API server."""
        hooks = self.one("MutatingWebhookConfiguration")["webhooks"]
        bundle = base64.b64decode(hooks[0]["clientConfig"]["caBundle"]).decode()
        ctx = ssl.create_default_context(cadata=bundle)
        return ctx

    def post(self, path, body, server_hostname=SERVICE_DNS, method="POST"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with socket.create_connection(("127.0.0.1", self.webhook_port), timeout=10) as sock:
            with self.tls_context().wrap_socket(sock, server_hostname=server_hostname) as tls:
                req = (f"{method} {path} HTTP/1.1\r\nHost: {SERVICE_DNS}:443\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                       "Connection: close\r\n\r\n").encode() + raw
                tls.sendall(req)
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return status, payload

    def metrics(self):
        with socket.create_connection(("127.0.0.1", self.monitoring_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode()


def t_install_and_start(ctx):
    out = subprocess.run([ctx.remoractl, "install", "--state-dir", os.path.join(ctx.tmp, "state"),
                          "--set", "control.replicas=2",
                          # No API server for --kube here (test_kube_api.py tests it, with a
                          # stand-in for one).
                          "--set", "control.kubeApi=false"],
                         capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, "remoractl install failed", out.stderr)
    ctx.docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    check(ctx.one("Deployment")["spec"]["replicas"] == 2, "replicas not 2")
    container = ctx.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    # The Deployment's volumes, written where its mounts point (mapped under tmp).
    files = {
        "/etc/remora/cacerts": ctx.one("Secret", "remora-cacerts")["stringData"],
        "/etc/remora/mesh": ctx.one("ConfigMap", "remora")["data"],
    }
    mapped = {}
    for mount, data in files.items():
        d = os.path.join(ctx.tmp, mount.strip("/").replace("/", "_"))
        os.makedirs(d, exist_ok=True)
        for name, text in data.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        mapped[mount] = d
    mapped["/var/lib/remora"] = os.path.join(ctx.tmp, "control-state")
    ctx.api_port, ctx.monitoring_port, ctx.webhook_port = free_port(), free_port(), free_port()
    ports = {"0.0.0.0:15012": f"127.0.0.1:{ctx.api_port}",
             "0.0.0.0:15014": f"127.0.0.1:{ctx.monitoring_port}",
             "0.0.0.0:15017": f"127.0.0.1:{ctx.webhook_port}"}
    args = []
    for a in container["args"][1:]:
        for mount, d in mapped.items():
            if a.startswith(mount):
                a = d + a[len(mount):]
        args.append(ports.get(a, a))
    check(container["args"][0] == "remora-control", "the Deployment does not run remora-control")
    ctx.proc = subprocess.Popen([ctx.control_bin, *args], stdout=open(ctx.log, "w"),
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        check(ctx.proc.poll() is None, "remora-control exited with the Deployment's arguments",
              " ".join(args), ctx.tail())
        try:
            if "sidecar_injection_requests_total 0" in ctx.metrics():
                return
        except OSError:
            pass
        time.sleep(0.2)
    check(False, "remora-control did not come up", ctx.tail())


def t_inject_pod(ctx):
    status, body = ctx.post("/inject", review(POD))
    check(status == 200, f"status {status}", body)
    r = json.loads(body)
    check(r["kind"] == "AdmissionReview" and r["apiVersion"] == "admission.k8s.io/v1",
          "not an AdmissionReview", body)
    resp = r["response"]
    check(resp["uid"] == "3a6e0d47-5f5f-11e8-bc74-36e6bb280816", "uid not echoed")
    check(resp["allowed"] is True, "not allowed", body)
    check(resp.get("patchType") == "JSONPatch", "no JSONPatch", body)
    pod = apply_patch(POD, json.loads(base64.b64decode(resp["patch"])))
    names = [c["name"] for c in pod["spec"]["containers"]]
    inits = [c["name"] for c in pod["spec"]["initContainers"]]
    check(names == ["remora-proxy", "web"], f"containers {names}")
    check(inits == ["remora-init"], f"init containers {inits}")
    proxy = pod["spec"]["containers"][0]
    check(proxy["image"] == "localhost/remora-proxy:0.1.0", f"image {proxy['image']}")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    check(env["ISTIO_META_WORKLOAD_NAME"] == "web", "workload name", env)
    check(env["CA_ADDR"] == "remora-control.remora-system.svc:15012", "CA_ADDR", env)
    probers = json.loads(env["ISTIO_KUBE_APP_PROBERS"])
    check(probers["/app-health/web/readyz"]["httpGet"]["port"] == 8080, "probe port", probers)
    web = pod["spec"]["containers"][1]
    check(web["readinessProbe"]["httpGet"] == {"path": "/app-health/web/readyz", "port": 15021,
                                              "scheme": "HTTP"}, "probe not rewritten", web)
    check(pod["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio", "tlsMode label")
    ctx.injected = pod

    # The API server sends the pod again on reinvocation: no second sidecar.
    status, body = ctx.post("/inject", review(pod))
    resp = json.loads(body)["response"]
    check(status == 200 and resp["allowed"] and "patch" not in resp, "injected twice", body)


def t_opt_out_and_other_kinds(ctx):
    pod = json.loads(json.dumps(POD))
    pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    status, body = ctx.post("/inject", review(pod))
    resp = json.loads(body)["response"]
    check(status == 200 and resp["allowed"] and "patch" not in resp, "opted-out pod patched", body)
    status, body = ctx.post("/inject", review({"spec": {"ports": []}}, kind="Service"))
    resp = json.loads(body)["response"]
    check(status == 200 and resp["allowed"] and "patch" not in resp, "Service patched", body)


def t_malformed_reviews_are_admitted(ctx):
    for raw in [b"this is not json", b"{}", b'{"request": {"uid": 5}}', b"[]",
                json.dumps(review("not a pod")).encode()]:
        status, body = ctx.post("/inject", raw)
        check(status == 200, f"status {status} for {raw[:40]!r}", body)
        resp = json.loads(body)["response"]
        check(resp["allowed"] is True, f"refused {raw[:40]!r}", body)
        check(any("malformed" in w for w in resp.get("warnings", [])), "no warning", body)
        check("patch" not in resp, "patched a malformed review", body)
    # A pod whose own annotation cannot be used is admitted too, with the reason.
    pod = json.loads(json.dumps(POD))
    pod["metadata"]["annotations"] = {"proxy.istio.io/config": "concurrency: [oops"}
    status, body = ctx.post("/inject", review(pod))
    resp = json.loads(body)["response"]
    check(status == 200 and resp["allowed"] and "patch" not in resp, "bad annotation", body)
    check(any("proxy.istio.io/config" in w for w in resp["warnings"]), "no reason", body)
    status, _ = ctx.post("/inject", b"", method="GET")
    check(status == 405, f"GET /inject answered {status}")


def t_certificate_names_the_service(ctx):
    try:
        ctx.post("/inject", review(POD), server_hostname="evil.example")
    except ssl.SSLCertVerificationError:
        pass
    else:
        check(False, "the webhook's certificate was accepted for another name")


def t_counters(ctx):
    m = ctx.metrics()
    values = {}
    for line in m.splitlines():
        if line.startswith("sidecar_injection_"):
            k, v = line.split()
            values[k] = int(v)
    check(values.get("sidecar_injection_success_total") == 1, "success", values)
    check(values.get("sidecar_injection_failure_total") == 5, "failure", values)
    check(values.get("sidecar_injection_skip_total") == 4, "skip", values)
    check(values.get("sidecar_injection_requests_total") == 10, "requests", values)


class Ready(http.server.BaseHTTPRequestHandler):
    ready_after = 0.0

    def do_GET(self):  # noqa: N802 - http.server's name
        ok = self.path == "/healthz/ready" and time.monotonic() >= Ready.ready_after
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def t_agent_waits_for_readiness(ctx):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Ready.ready_after = time.monotonic() + 1.5
        t0 = time.monotonic()
        r = subprocess.run([ctx.agent_bin, "wait", "--port", str(port), "--timeout", "10s",
                            "--period-ms", "100"], capture_output=True, text=True, timeout=20)
        took = time.monotonic() - t0
        check(r.returncode == 0, f"remora-agent wait exited {r.returncode}", r.stderr)
        check(took >= 1.4, f"returned after {took:.2f}s, before the proxy was ready")
        Ready.ready_after = time.monotonic() + 3600
        r = subprocess.run([ctx.agent_bin, "wait", "--port", str(port), "--timeout", "1s",
                            "--period-ms", "100"], capture_output=True, text=True, timeout=20)
        check(r.returncode == 1, f"never-ready proxy: exit {r.returncode}", r.stderr)
    finally:
        server.shutdown()
    # Nothing listening at all: a timeout too, not a hang or a crash.
    r = subprocess.run([ctx.agent_bin, "wait", "--port", str(free_port()), "--timeout", "1s"],
                       capture_output=True, text=True, timeout=20)
    check(r.returncode == 1, f"nothing listening: exit {r.returncode}", r.stderr)


MIXED = """apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: "fast", count: "3"}
---
apiVersion: example.io/v1
kind: Frobnicator
metadata: {name: f}
spec:
  template: {spec: {containers: [{name: x, image: x}]}}
  replicas: 3
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: work:1}]
"""


def t_kube_inject_cli(ctx):
    def inject(text):
        return subprocess.run([ctx.remoractl, "kube-inject", "-f", "-"], input=text,
                              capture_output=True, text=True, timeout=30)
    r = inject(MIXED)
    check(r.returncode == 0, f"kube-inject exited {r.returncode}", r.stderr)
    before = [d for d in yaml.safe_load_all(MIXED) if d]
    after = [d for d in yaml.safe_load_all(r.stdout) if d]
    check(len(after) == 3, f"{len(after)} documents out of 3")
    # Unknown kinds and ConfigMaps pass through untouched, even with a pod template inside.
    check(after[0] == before[0] and after[1] == before[1], "a non-workload was changed",
          r.stdout)
    spec = after[2]["spec"]["template"]["spec"]
    check([c["name"] for c in spec["containers"]] == ["remora-proxy", "work"],
          "the Job was not injected", r.stdout)
    check(any(a == "--agent" for a in spec["containers"][0]["args"]),
          "the Job's proxy has no status port for /quitquitquit", spec["containers"][0]["args"])
    again = inject(r.stdout)
    check(again.returncode == 0 and again.stdout == r.stdout, "injecting twice changed the output")
    bad = inject("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [oops\nspec: {}\n")
    check(bad.returncode != 0 and bad.stdout == "", "YAML that does not parse was accepted",
          bad.stdout)
    check("<stdin>:4:" in bad.stderr or "<stdin>:5:" in bad.stderr,
          "the error does not name the line", bad.stderr)
    check("not YAML" in bad.stderr, "the error does not say what is wrong", bad.stderr)


# A gRPC health service (grpc.health.v1.Health/Check) without generated code: the request and
# answer are encoded by hand (HealthCheckRequest{service = 1}, HealthCheckResponse{status = 1}).
GRPC_HEALTH_SERVER = r"""
import grpc
from concurrent import futures
STATUS = {"": 1, "shop.Cart": 1, "shop.Down": 2}   # 1 SERVING, 2 NOT_SERVING
def check(request, context):
    service = request[2:].decode() if request[:1] == b"\n" else ""
    if service not in STATUS:
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    return bytes([8, STATUS[service]])
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


class TlsApp(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/ok" else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def http_call(url, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def grpc_python():
    for py in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([py, "-c", "import grpc"], capture_output=True).returncode == 0:
            return py
    return None


def t_proxy_runs_app_probes_and_quits(ctx):
    tmp = os.path.join(ctx.tmp, "probes")
    os.makedirs(tmp)
    key, cert = os.path.join(tmp, "app.key"), os.path.join(tmp, "app.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=app.shop", "-days", "1",
                        "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "openssl req failed", r.stderr)
    tls_app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TlsApp)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    tls_app.socket = sctx.wrap_socket(tls_app.socket, server_side=True)
    threading.Thread(target=tls_app.serve_forever, daemon=True).start()
    py = grpc_python()
    check(py is not None, "no Python with grpcio (python3-grpcio)")
    grpc_app = subprocess.Popen([py, "-c", GRPC_HEALTH_SERVER], stdout=subprocess.PIPE, text=True)
    proxy = None
    try:
        grpc_port = int(grpc_app.stdout.readline())
        tls_port = tls_app.server_address[1]
        # What the injector writes for a pod with these probes (see test_kube's t_inject_pod).
        probers = {
            "/app-health/web/livez": {"httpGet": {"path": "/ok", "port": tls_port,
                                                  "scheme": "HTTPS"}},
            "/app-health/web/readyz": {"httpGet": {"path": "/fail", "port": tls_port,
                                                   "scheme": "HTTPS"}},
            "/app-health/cart/livez": {"grpc": {"port": grpc_port, "service": "shop.Cart"}},
            "/app-health/cart/readyz": {"grpc": {"port": grpc_port, "service": "shop.Down"}},
            "/app-health/cart/startupz": {"grpc": {"port": grpc_port, "service": "shop.Gone"}},
            "/app-health/all/livez": {"grpc": {"port": grpc_port, "service": None}},
        }
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write(subprocess.run([ctx.remoractl, "token", "create", "--namespace", "shop",
                                    "--service-account", "web", "--state-dir",
                                    os.path.join(ctx.tmp, "state")],
                                   capture_output=True, text=True, timeout=30).stdout.strip())
        empty = os.path.join(tmp, "empty.yaml")
        open(empty, "w").close()
        health, agent = free_port(), free_port()
        log = os.path.join(tmp, "proxy.log")
        proxy = subprocess.Popen(
            [ctx.proxy_bin, "--control", f"127.0.0.1:{ctx.api_port}", "--token-file", token,
             "--trust-bundle", os.path.join(ctx.tmp, "state", "root-cert.pem"),
             "--config", empty, "--outbound", "127.0.0.1:0", "--inbound", "off",
             "--admin", "127.0.0.1:0", "--health", f"127.0.0.1:{health}", "--metrics", "off",
             "--agent", f"127.0.0.1:{agent}"],
            env=dict(os.environ, ISTIO_KUBE_APP_PROBERS=json.dumps(probers)),
            stdout=open(log, "w"), stderr=subprocess.STDOUT)

        def proxy_log():
            with open(log) as f:
                return "remora-proxy log:\n" + clip(f.read()[-3000:])

        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", agent), timeout=1).close()
                break
            except OSError:
                check(proxy.poll() is None and time.monotonic() < deadline,
                      "remora-proxy did not open its status port", proxy_log())
                time.sleep(0.1)
        want = {"/app-health/web/livez": 200, "/app-health/web/readyz": 503,
                "/app-health/cart/livez": 200, "/app-health/cart/readyz": 503,
                "/app-health/cart/startupz": 503, "/app-health/all/livez": 200}
        got = {path: http_call(f"http://127.0.0.1:{health}{path}")[0] for path in want}
        check(got == want, f"app probes through the proxy: {got}", proxy_log())

        status, _ = http_call(f"http://127.0.0.1:{agent}/quitquitquit")
        check(status == 405, f"GET /quitquitquit answered {status}")
        check(proxy.poll() is None, "the proxy exited on a GET /quitquitquit")
        status, body = http_call(f"http://127.0.0.1:{agent}/quitquitquit", method="POST")
        check(status == 200 and body == "OK\n", f"POST /quitquitquit: {status} {body!r}")
        try:
            rc = proxy.wait(30)
        except subprocess.TimeoutExpired:
            check(False, "remora-proxy still running 30 s after /quitquitquit", proxy_log())
        check(rc == 0, f"remora-proxy exited {rc} after /quitquitquit", proxy_log())
    finally:
        tls_app.shutdown()
        grpc_app.kill()
        grpc_app.wait()
        if proxy and proxy.poll() is None:
            proxy.kill()
            proxy.wait()


TESTS = [
    ("install and start remora-control from the manifests", t_install_and_start),
    ("webhook injects a pod", t_inject_pod),
    ("webhook leaves opted-out pods and other kinds alone", t_opt_out_and_other_kinds),
    ("webhook admits malformed reviews with a warning", t_malformed_reviews_are_admitted),
    ("webhook certificate names the Service", t_certificate_names_the_service),
    ("injector counters", t_counters),
    ("remora-agent wait holds until ready", t_agent_waits_for_readiness),
    ("kube-inject: other kinds untouched, twice a no-op, bad YAML names the line",
     t_kube_inject_cli),
    ("remora-proxy runs HTTPS and gRPC app probes, exits on /quitquitquit",
     t_proxy_runs_app_probes_and_quits),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="build dir")
    ap.add_argument("-k", dest="only", help="run only tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="remora-test-kube-")
    ctx = Context(os.path.abspath(opts.bin_dir), tmp)
    runner = Runner()
    started = time.monotonic()
    try:
        runner.run(TESTS, ctx, only=opts.only, always=("install and start remora-control from the manifests",),
                   failure_details=lambda c: [c.tail()])
    finally:
        if ctx.proc:
            ctx.proc.terminate()
            try:
                ctx.proc.wait(10)
            except subprocess.TimeoutExpired:
                ctx.proc.kill()
        runner.keep_or_remove(tmp, opts.keep)
    runner.summary(started)
    return runner.exit_code()


if __name__ == "__main__":
    sys.exit(main())
