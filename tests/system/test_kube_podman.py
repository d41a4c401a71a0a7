#!/usr/bin/env python3
"""End to end under `podman kube play`: the images, remora-control from the generated manifests,
and injected Deployments (a client and a server app) on a podman network the test creates
(198.18.61.0/24).

    python3 tests/system/test_kube_podman.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

What podman 4.3 cannot do is adapted here, and only here (each is named in the code): a
containers.conf with ulimits it may set and runc; Secret volumes and projected service-account
tokens become ConfigMaps (a token from `remoractl token create`, trusted by the CA through
--cluster-jwks); downward-API fields other than metadata.name become literal values (each pod
gets a fixed address); init containers need restartPolicy OnFailure; Services are given to
remora-control with `remoractl apply` (over mTLS, with a certificate its CA issued) and their
names resolved through hostAliases; a Pod's annotations longer than 63 characters are dropped
(podman checks them as label values); container ports are dropped (podman publishes them on the
host); stale named volumes are removed first. podman 4.3 runs no lifecycle hooks and no Jobs:
the meshed Job's pod is created with `kube play --start=false` and started here container by
container as the kubelet does (init containers to completion, then each container, running its
postStart hook and waiting for it before the next one), with the manifest's own hook command run
in the proxy container. Exit 77 without root or podman.
"""

import argparse
import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, clip  # noqa: E402

NET = "remora-e2e"
SUBNET = "198.18.61.0/24"
CONTROL_IP = "198.18.61.10"
SERVER_IP = "198.18.61.20"
CLIENT_IP = "198.18.61.30"
PLAIN_IP = "198.18.61.40"
JOB_IP = "198.18.61.50"
SERVER_VIP = "198.19.61.20"
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TESTAPP = "localhost/remora-testapp:e2e"


def sh(argv, timeout=180, check_rc=True, env=None, input=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                       input=input)
    if check_rc:
        check(r.returncode == 0, f"{' '.join(argv[:4])} ... exited {r.returncode}",
              clip(r.stdout), clip(r.stderr))
    return r


class Context:
    def __init__(self, bin_dir, tmp):
        self.bin = bin_dir
        self.tmp = tmp
        self.remoractl = os.path.join(bin_dir, "control", "remoractl")
        self.state = os.path.join(tmp, "state")
        self.env = dict(os.environ, CONTAINERS_CONF=os.path.join(tmp, "containers.conf"))
        self.played = []
        self.volumes = []
        with open(os.path.join(REPO, "meson.build")) as f:
            self.version = next(line.split("'")[1] for line in f if "version:" in line)

    def podman(self, *args, timeout=180, check_rc=True):
        return sh(["podman", *args], timeout=timeout, check_rc=check_rc, env=self.env)

    def play(self, name, docs, ip, start=True):
        # podman keeps ConfigMap and emptyDir volumes as named volumes across plays: start from
        # fresh ones (an emptyDir is then filled from the image, owner included); but never one
        # this run made already: `volume rm -f` would take down the pods that use it.
        for d in docs:
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] not in self.volumes:
                self.podman("volume", "rm", "-f", d["metadata"]["name"], check_rc=False)
            spec = d.get("spec", {}).get("template", {}).get("spec") or d.get("spec") or {}
            for v in spec.get("volumes", []) if d["kind"] in ("Pod", "Deployment") else []:
                if "emptyDir" in v and v["name"] not in self.volumes:
                    self.podman("volume", "rm", "-f", v["name"], check_rc=False)
                    self.volumes.append(v["name"])
                elif "configMap" in v:
                    self.volumes.append(v["configMap"]["name"])
        path = os.path.join(self.tmp, name + ".yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        self.played.append(path)
        return self.podman("kube", "play", "--network", NET, "--ip", ip,
                           *([] if start else ["--start=false"]), path, timeout=300)

    def logs(self, container, tail=40):
        r = self.podman("logs", "--tail", str(tail), container, check_rc=False)
        return f"{container}:\n" + clip(r.stdout + r.stderr, 3000)

    def token(self, ns, sa):
        return sh([self.remoractl, "token", "create", "--namespace", ns, "--service-account", sa,
                   "--state-dir", self.state, "--ttl", "24h"]).stdout.strip()


def expand(arg, env):
    for name, value in env.items():
        arg = arg.replace(f"$({name})", value)
    return arg


def podman_adapt(docs, pod_ip, token=None, extra_config_maps=None):
    """The podman 4.3 adaptations named in the module docstring, on a copy of `docs`."""
    out = []
    for d in copy.deepcopy(docs):
        if d["kind"] == "Secret":  # Secret volumes are broken: the same data as a ConfigMap
            d = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": d["metadata"],
                 "data": d["stringData"]}
        if d["kind"] not in ("ConfigMap", "Deployment", "Pod"):
            continue
        if d["kind"] == "ConfigMap":
            d["metadata"].pop("namespace", None)
            out.append(d)
            continue
        spec = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]
        meta = d["spec"]["template"]["metadata"] if d["kind"] == "Deployment" else d["metadata"]
        ns = d["metadata"].get("namespace", "default")
        d["metadata"].pop("namespace", None)
        if d["kind"] == "Deployment":
            d["spec"]["replicas"] = 1
        # podman checks a Pod's annotation values as if they were label values (63 characters).
        if d["kind"] == "Pod":
            anns = meta.get("annotations", {})
            for k in [k for k, v in anns.items() if len(str(v)) > 63]:
                del anns[k]
        spec["restartPolicy"] = "OnFailure"  # an init container restarts forever under Always
        sa = spec.get("serviceAccountName", "default")
        values = {"metadata.namespace": ns, "spec.serviceAccountName": sa,
                  "status.podIP": pod_ip, "status.hostIP": pod_ip, "spec.nodeName": "podman"}
        pod_name = d["metadata"]["name"] + ("-pod-0" if d["kind"] == "Deployment" else "")
        values["metadata.name"] = pod_name
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            env = {}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if ref:
                    e.pop("valueFrom")
                    e["value"] = values[ref]
                if "value" in e:
                    env[e["name"]] = e["value"]
            # podman publishes a containerPort on the host: two pods would collide.
            c.pop("ports", None)
            # podman does not expand $(VAR) in args as the kubelet does.
            for key in ("command", "args"):
                if key in c:
                    c[key] = [expand(a, env) for a in c[key]]
        for v in spec.get("volumes", []):
            if "secret" in v:
                v["configMap"] = {"name": v.pop("secret")["secretName"]}
            if "projected" in v:  # the service-account token, from remoractl token create
                name = f"{meta['labels']['app']}-token"
                v.pop("projected")
                v["configMap"] = {"name": name}
                out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                            "data": {"remora-token": token}})
            if "downwardAPI" in v:  # labels and annotations files: not read by remora-proxy
                v.pop("downwardAPI")
                v["emptyDir"] = {}
        out.append(d)
    for cm in extra_config_maps or []:
        out.append(cm)
    return out


def wait_http(url, timeout=60, want=200):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == want:
                    return r.read().decode()
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        time.sleep(0.5)
    check(False, f"{url} did not answer {want} in {timeout}s: {last}")


def t_images(ctx):
    r = sh(["bash", os.path.join(REPO, "images", "build.sh"), ctx.bin], timeout=600)
    print("    " + r.stdout.strip().replace("\n", "\n    "))
    build_testapp(ctx)


def build_testapp(ctx):
    # The test app: Python's standard library echo app, from the host's /usr (test only).
    app = os.path.join(ctx.tmp, "testapp")
    os.makedirs(app)
    for link in ("bin", "lib", "lib64", "sbin"):
        os.symlink(f"usr/{link}", os.path.join(app, link))
    os.makedirs(os.path.join(app, "usr"))
    os.makedirs(os.path.join(app, "app"))
    shutil.copy(os.path.join(REPO, "tests", "system", "apps", "echo_app.py"), os.path.join(app, "app"))
    with open(os.path.join(ctx.tmp, "Containerfile.testapp"), "w") as f:
        f.write("FROM scratch\nCOPY . /\nENV PATH=/usr/bin:/bin\n")
    ctx.podman("build", "--quiet", "-f", os.path.join(ctx.tmp, "Containerfile.testapp"), "-t",
               TESTAPP, app)


def t_control_plane(ctx):
    jwks = os.path.join(ctx.tmp, "jwks.json")
    sh([ctx.remoractl, "manifest", "generate", "--state-dir", ctx.state])  # makes the mesh CA
    shutil.copy(os.path.join(ctx.state, "jwks.json"), jwks)
    out = sh([ctx.remoractl, "install", "--profile", "minimal", "--state-dir", ctx.state,
              "--cluster-jwks", jwks, "--set", f"tag={ctx.version}",
              # podman kube play has no API server for remora-control --kube to watch.
              "--set", "control.kubeApi=false"]).stdout
    ctx.install = [d for d in yaml.safe_load_all(out) if d]
    ctx.play("control", podman_adapt(ctx.install, CONTROL_IP), CONTROL_IP)
    wait_http(f"http://{CONTROL_IP}:15014/healthz", 60)
    # remoractl's own certificate from the CA in the pod, with a token it trusts via the JWKS.
    tok = os.path.join(ctx.tmp, "remoractl.token")
    with open(tok, "w") as f:
        f.write(ctx.token("remora-system", "remoractl"))
    ctx.cert_dir = os.path.join(ctx.tmp, "remoractl-cert")
    sh([ctx.remoractl, "cert", "request", "--control", f"{CONTROL_IP}:15012", "--trust-bundle",
        os.path.join(ctx.state, "root-cert.pem"), "--token-file", tok, "--out", ctx.cert_dir])


SERVICE = f"""apiVersion: v1
kind: Service
metadata: {{name: server, namespace: default}}
spec:
  clusterIP: {SERVER_VIP}
  selector: {{app: server}}
  ports: [{{name: http, port: 8080, targetPort: 8080}}]
---
# Mesh-wide STRICT mTLS (Istio's default without a PeerAuthentication is PERMISSIVE).
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: remora-system}}
spec:
  mtls: {{mode: STRICT}}
"""


def app_deployment(name, command):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"serviceAccountName": name,
                                           "hostAliases": [{"ip": SERVER_VIP, "hostnames": ["server"]}],
                                           "containers": [{"name": name, "image": TESTAPP,
                                                           "command": command,
                                                           "ports": [{"name": "http", "containerPort": 8080}],
                                                           "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                                                           "volumeMounts": [{"name": "host-usr", "mountPath": "/usr", "readOnly": True}]}],
                                           # The test app's Python comes from the host (test only).
                                           "volumes": [{"name": "host-usr", "hostPath": {"path": "/usr"}}]}}}}


def t_meshed_apps(ctx):
    svc = os.path.join(ctx.tmp, "service.yaml")
    with open(svc, "w") as f:
        f.write(SERVICE)
    sh([ctx.remoractl, "apply", "-f", svc, "--control", f"{CONTROL_IP}:15012", "--trust-bundle",
        os.path.join(ctx.state, "root-cert.pem"), "--cert-dir", ctx.cert_dir])
    root = next(d for d in ctx.install if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == "remora-ca-root-cert")
    for name, ip, command in [
            ("server", SERVER_IP, ["python3", "/app/echo_app.py", "--port", "8080", "--name", "server"]),
            ("client", CLIENT_IP, ["python3", "/app/echo_app.py", "--port", "8080"])]:
        raw = os.path.join(ctx.tmp, f"{name}-raw.yaml")
        with open(raw, "w") as f:
            yaml.safe_dump(app_deployment(name, command), f, sort_keys=False)
        injected = sh([ctx.remoractl, "kube-inject", "-f", raw, "--image",
                       f"localhost/remora-proxy:{ctx.version}", "--control-address",
                       f"{CONTROL_IP}:15012"]).stdout
        docs = [d for d in yaml.safe_load_all(injected) if d]
        rc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "remora-ca-root-cert"},
              "data": root["data"]}
        ctx.play(name, podman_adapt(docs, ip, ctx.token("default", name), [rc]), ip)
    for name in ("server", "client"):
        deadline = time.monotonic() + 90
        while True:
            r = ctx.podman("inspect", "--format", "{{.State.Status}}", f"{name}-pod-0-remora-proxy",
                           check_rc=False)
            if r.stdout.strip() == "running":
                h = ctx.podman("exec", f"{name}-pod-0-{name}", "python3", "-c",
                               "import urllib.request;print(urllib.request.urlopen("
                               "'http://127.0.0.1:15021/healthz/ready',timeout=2).status)",
                               check_rc=False)
                if h.stdout.strip() == "200":
                    break
            check(time.monotonic() < deadline, f"{name}'s proxy not ready",
                  ctx.logs(f"{name}-pod-0-remora-proxy"), ctx.logs(f"{name}-pod-0-remora-init"))
            time.sleep(1)


def t_request_over_mtls(ctx):
    code = ("import urllib.request,json;"
            "r=urllib.request.urlopen('http://server:8080/hello',timeout=10);"
            "print(r.status);print(r.read().decode())")
    r = ctx.podman("exec", "client-pod-0-client", "python3", "-c", code, check_rc=False)
    check(r.returncode == 0 and r.stdout.startswith("200"), "client's request failed",
          clip(r.stdout), clip(r.stderr), ctx.logs("client-pod-0-remora-proxy"),
          ctx.logs("server-pod-0-remora-proxy"))
    seen = json.loads(r.stdout.split("\n", 1)[1])
    xfcc = seen["headers"].get("x-forwarded-client-cert", "")
    check("URI=spiffe://cluster.local/ns/default/sa/client" in xfcc,
          "the server did not see the client's SPIFFE ID", xfcc)
    check("By=spiffe://cluster.local/ns/default/sa/server" in xfcc, "XFCC By", xfcc)


def t_plaintext_refused(ctx):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "plain", "image": TESTAPP,
                                    "command": ["python3", "/app/echo_app.py", "--port", "8080"],
                                    "volumeMounts": [{"name": "host-usr", "mountPath": "/usr",
                                                      "readOnly": True}]}],
                    "volumes": [{"name": "host-usr", "hostPath": {"path": "/usr"}}]}}
    ctx.play("plain", [pod], PLAIN_IP)
    code = ("import urllib.request\ntry:\n"
            f"    r=urllib.request.urlopen('http://{SERVER_IP}:8080/',timeout=5);print('status',r.status)\n"
            "except Exception as e:\n    print('refused',type(e).__name__,e)")
    r = ctx.podman("exec", "plain-plain", "python3", "-c", code, check_rc=False)
    check(r.stdout.startswith("refused"), "a plaintext request from an uninjected pod got through",
          clip(r.stdout), clip(r.stderr))


JOB_APP = """
import sys, urllib.request
# The app's first request, at start and without a retry: it goes through the mesh only if the
# proxy was ready before this container started (holdApplicationUntilProxyStarts).
try:
    r = urllib.request.urlopen('http://server:8080/job', timeout=10)
    print('request', r.status, r.read().decode(), flush=True)
except Exception as e:
    print('request failed', type(e).__name__, e, flush=True)
    sys.exit(3)
# The Job's last step, as with Istio: tell the sidecar to exit.
q = urllib.request.Request('http://127.0.0.1:15020/quitquitquit', method='POST')
print('quitquitquit', urllib.request.urlopen(q, timeout=5).status, flush=True)
"""


def job_manifest():
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "job", "namespace": "default"},
            "spec": {"backoffLimit": 0,
                     "template": {"metadata": {"labels": {"app": "job"}},
                                  "spec": {"serviceAccountName": "job",
                                           "restartPolicy": "Never",
                                           "hostAliases": [{"ip": SERVER_VIP, "hostnames": ["server"]}],
                                           "containers": [{"name": "app", "image": TESTAPP,
                                                           # one line: podman's YAML reader fails on
                                                           # the long folded string PyYAML writes
                                                           "command": ["python3", "-c", "import base64;exec(base64.b64decode('"
                                                                       + base64.b64encode(JOB_APP.encode()).decode() + "'))"],
                                                           "volumeMounts": [{"name": "host-usr", "mountPath": "/usr", "readOnly": True}]}],
                                           "volumes": [{"name": "host-usr", "hostPath": {"path": "/usr"}}]}}}}


def http_status(url, method="GET", timeout=5):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def t_job_holds_then_completes(ctx):
    raw = os.path.join(ctx.tmp, "job-raw.yaml")
    with open(raw, "w") as f:
        yaml.safe_dump(job_manifest(), f, sort_keys=False)
    injected = sh([ctx.remoractl, "kube-inject", "-f", raw, "--image",
                   f"localhost/remora-proxy:{ctx.version}", "--control-address",
                   f"{CONTROL_IP}:15012"]).stdout
    job = next(d for d in yaml.safe_load_all(injected) if d)
    check(job["kind"] == "Job", "kube-inject did not return the Job")
    # The Pod the Job controller would make from the template (podman runs no Jobs).
    tmpl = job["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "job", "namespace": "default", **tmpl["metadata"]},
           "spec": tmpl["spec"]}
    root = next(d for d in ctx.install if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == "remora-ca-root-cert")
    rc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "remora-ca-root-cert"},
          "data": root["data"]}
    docs = podman_adapt([pod], JOB_IP, ctx.token("default", "job"), [rc])
    played = next(d for d in docs if d["kind"] == "Pod")
    played["spec"]["restartPolicy"] = "Never"  # a failed first request must not be retried
    names = [c["name"] for c in played["spec"]["containers"]]
    check(names == ["remora-proxy", "app"], f"containers {names}: the proxy is not first")
    hook = played["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"]
    ctx.play("job", docs, JOB_IP, start=False)

    # The kubelet's order: init containers to completion; then each container in turn, its
    # postStart hook run and waited for before the next container starts.
    for init in played["spec"]["initContainers"]:
        ctx.podman("start", f"job-{init['name']}")
        code = ctx.podman("wait", f"job-{init['name']}", timeout=60).stdout.strip()
        check(code == "0", f"init container {init['name']} exited {code}",
              ctx.logs(f"job-{init['name']}"))
    # The control plane is paused, so the proxy cannot get its certificate and is not ready: the
    # hook must still be waiting a few seconds later (it cannot return while the pause lasts).
    control = "remora-control-pod-0-remora-control"
    ctx.podman("pause", control)
    try:
        ctx.podman("start", "job-remora-proxy")
        hook_proc = subprocess.Popen(["podman", "exec", "job-remora-proxy", *hook], env=ctx.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        held = hook_proc.poll() is None
    finally:
        ctx.podman("unpause", control)
    if not held:
        out, err = hook_proc.communicate()
        check(False, f"the postStart hook returned ({hook_proc.returncode}) while the proxy "
              "could not be ready", clip(err), ctx.logs("job-remora-proxy"))
    try:
        _, err = hook_proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        hook_proc.kill()
        check(False, "the postStart hook did not return once the control plane was back",
              ctx.logs("job-remora-proxy"))
    check(hook_proc.returncode == 0, f"the postStart hook {hook} exited {hook_proc.returncode}",
          clip(err), ctx.logs("job-remora-proxy"))
    # The hook returned: the proxy is ready now, before the app exists.
    status, body = http_status(f"http://{JOB_IP}:15021/healthz/ready")
    check(status == 200, f"postStart returned but readiness is {status}", body)
    # The status port refuses /quitquitquit from outside the pod (the host is not localhost).
    status, body = http_status(f"http://{JOB_IP}:15020/quitquitquit", method="POST")
    check(status == 403 and "localhost" in body, f"/quitquitquit from the host: {status}", body)
    check(ctx.podman("inspect", "--format", "{{.State.Status}}",
                     "job-remora-proxy").stdout.strip() == "running",
          "the proxy stopped on a /quitquitquit from outside the pod")

    ctx.podman("start", "job-app")
    code = ctx.podman("wait", "job-app", timeout=60).stdout.strip()
    out = ctx.logs("job-app")
    check(code == "0", f"the job's app exited {code}", out, ctx.logs("job-remora-proxy"))
    check("request 200" in out and "URI=spiffe://cluster.local/ns/default/sa/job" in out,
          "the job's first request did not reach the server over mTLS", out)
    check("quitquitquit 200" in out, "no 200 from /quitquitquit", out)
    # The proxy drains and exits 0 by itself, so the pod completes.
    code = ctx.podman("wait", "job-remora-proxy", timeout=60).stdout.strip()
    check(code == "0", f"remora-proxy exited {code} after /quitquitquit",
          ctx.logs("job-remora-proxy"))
    info = json.loads(ctx.podman("pod", "inspect", "job").stdout)
    info = info[0] if isinstance(info, list) else info
    check(info["State"] == "Exited", f"the job's pod is {info['State']}, not Exited")
    for c in info["Containers"]:
        if c["Name"] == info.get("InfraContainerID") or c["Id"] == info.get("InfraContainerID"):
            continue
        r = ctx.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c["Id"])
        check(r.stdout.split() == ["exited", "0"], f"{c['Name']}: {r.stdout.strip()}")


TESTS = [
    ("images", t_images),
    ("remora-control from the generated manifests", t_control_plane),
    ("injected client and server start", t_meshed_apps),
    ("client to server over mTLS with the caller's SPIFFE ID in XFCC", t_request_over_mtls),
    ("plaintext from an uninjected pod is refused", t_plaintext_refused),
    ("a meshed Job: held until its proxy is ready, then /quitquitquit completes the pod",
     t_job_holds_then_completes),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("-k", dest="only")
    ap.add_argument("--keep", action="store_true")
    opts = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("podman"):
        print("SKIP: needs root and podman")
        return 77
    tmp = tempfile.mkdtemp(prefix="remora-test-podman-")
    with open(os.path.join(tmp, "containers.conf"), "w") as f:
        # podman 4.3 here: crun cannot set its default RLIMIT_NOFILE, runc its default NPROC.
        f.write('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                '[engine]\nruntime = "runc"\n')
    ctx = Context(os.path.abspath(opts.bin_dir), tmp)
    ctx.podman("network", "rm", "-f", NET, check_rc=False)
    ctx.podman("network", "create", "--subnet", SUBNET, NET)
    runner = Runner()
    started = time.monotonic()
    try:
        runner.run(TESTS, ctx, only=opts.only, failure_details=lambda c: [
            c.logs(n) for n in c.podman("ps", "-a", "--format", "{{.Names}}",
                                         check_rc=False).stdout.split()
            if "remora" in n or "pod-" in n])
    finally:
        for path in reversed(ctx.played):
            ctx.podman("kube", "down", path, check_rc=False)
        for v in set(ctx.volumes):
            ctx.podman("volume", "rm", "-f", v, check_rc=False)
        ctx.podman("network", "rm", "-f", NET, check_rc=False)
        runner.keep_or_remove(tmp, opts.keep)
    runner.summary(started)
    return runner.exit_code()


if __name__ == "__main__":
    sys.exit(main())
