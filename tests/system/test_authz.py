#!/usr/bin/env python3
"""System test of inbound security in the sidecar: AuthorizationPolicy and PeerAuthentication read
by the server's proxy (--config), through real proxies, mTLS and iptables in a local cluster.

    python3 tests/system/test_authz.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node      remora-control (CA)
    httpbin   namespace foo, sa httpbin, labels app=httpbin,version=v1; echo app on :8000 and :9090;
              its proxy is restarted with each test's policies (--config)
    sleep     meshed client, namespace foo, sa sleep (spiffe://cluster.local/ns/foo/sa/sleep)
    dev       meshed client, namespace dev, sa sleep
    legacy    no sidecar: plaintext to httpbin's pod address, as the "legacy" namespace of Istio's
              mutual TLS migration task

The last test runs httpbin's proxy subscribed to remora-control instead, with the policy applied
and deleted by remoractl.

Policies come from Istio's own YAML where /work/shared/istio-samples has it (the examples of
authorization_policy.proto, peer-authn-strict-and-disable-port-mtls-in.yaml) and the outcome
checked is the one Istio documents for them.

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import APP_UID, CONTROL, PROXY_UID, Mesh, Proxy, describe, run_suite  # noqa: E402

SAMPLES = os.environ.get("REMORA_ISTIO_SAMPLES",
                         os.path.join(HERE, "..", "..", "..", "shared", "istio-samples"))
HTTPBIN_VIP = "198.19.0.30"
DENIED_BODY = "RBAC: access denied"

REGISTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  addresses: [{vip}]
  ports:
  - {{number: 8000, name: http, protocol: HTTP}}
  - {{number: 9090, name: http-alt, protocol: HTTP}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: httpbin}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: httpbin, namespace: foo}}
spec:
  address: {ip}
  labels: {{app: httpbin, security.istio.io/tlsMode: istio}}
  serviceAccount: httpbin
"""

# Principal, namespace, method, path, header and port rules together: DENY first, then any ALLOW.
MIXED = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/foo/sa/sleep"]}
    to:
    - operation: {methods: ["GET"], paths: ["/info*", "/headers"]}
  - from:
    - source: {namespaces: ["dev"]}
    to:
    - operation: {methods: ["POST"]}
  - when:
    - key: request.headers[x-token]
      values: ["letmein"]
  - to:
    - operation: {ports: ["9090"], methods: ["GET"], paths: ["/public/*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-for-this-workload, namespace: foo}
spec:
  selector: {matchLabels: {app: productpage}}
"""

# Istio's mutual TLS migration task: "lock down to mutual TLS by namespace".
NAMESPACE_STRICT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
  namespace: "foo"
spec:
  mtls:
    mode: STRICT
"""

WORKLOAD_MODE = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: httpbin, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  mtls: {{mode: {mode}}}
"""

AUDIT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: foo}
spec:
  action: AUDIT
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
"""

ROOT_DENY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny-dev, namespace: remora-system}
spec:
  action: DENY
  rules:
  - from:
    - source: {namespaces: ["dev"]}
"""


def sample_docs(path):
    with open(os.path.join(SAMPLES, path)) as f:
        return [d for d in f.read().split("\n---\n") if "kind:" in d]


def api_example(line):
    """One document of authorization_policy.proto's examples, by the line its comment names."""
    for d in sample_docs("api-examples/authorization_policy.examples.yaml"):
        if f"authorization_policy.proto line {line}\n" in d:
            return d
    raise Failure(f"no example from authorization_policy.proto line {line} in the samples")


class AuthzMesh(Mesh):
    """The mesh with clients in more than one namespace."""

    def token(self, sa, ns="default"):
        r = self.c.run("node", [self.ctl_bin, "token", "create", "--namespace", ns,
                                "--service-account", sa, "--state-dir", self.state])
        return self.file(f"token-{ns}-{sa}", r.stdout.strip() + "\n")

    def start_proxy(self, pod, sa, extra=(), ns="default"):
        log = os.path.join(self.tmp, f"proxy-{pod}.log")
        argv = [self.proxy_bin, "--control", CONTROL, "--token-file", self.token(sa, ns),
                "--trust-bundle", self.root, "--namespace", ns, "--service-account", sa,
                "--registry", self.registry, "--drain-duration", "1s", *extra]
        with open(log, "a") as f:
            f.write(f"==== {' '.join(argv)}\n")
        proc = self.c.spawn(pod, argv, user=(PROXY_UID, PROXY_UID), log_path=log)
        self.proxies[pod] = Proxy(pod, sa, proc, argv, log)
        return self.proxies[pod]

    def serve(self, policies, labels="app=httpbin,version=v1"):
        """(Re)starts httpbin's proxy with these Istio documents as its --config."""
        old = self.proxies.get("httpbin")
        if old and old.proc.poll() is None:
            old.proc.terminate()
            old.proc.wait(timeout=10)
        self.generation = getattr(self, "generation", 0) + 1
        config = self.file(f"policies-{self.generation}.yaml", "\n---\n".join(policies) + "\n")
        self.access_log = self.file(f"access-{self.generation}.log", "")
        os.chown(self.access_log, PROXY_UID, PROXY_UID)
        self.start_proxy("httpbin", "httpbin", ["--config", config, "--labels", labels,
                                                "--access-log", self.access_log], ns="foo")
        self.wait_ready("httpbin")
        self.involved = ["httpbin"]

    def call(self, pod, path, method="GET", headers=(), port=8000):
        """(curl exit, status, body) of one request from a pod to httpbin."""
        if pod == "legacy":
            url = f"http://{self.ip('httpbin')}:{port}{path}"
        else:
            url = f"http://httpbin.foo.svc.cluster.local:{port}{path}"
        args = ["-X", method]
        for h in headers:
            args += ["-H", h]
        rc, status, body, _ = self.curl(pod, url, *args, user=None if pod == "legacy" else APP_UID)
        return rc, status, body

    def expect(self, cases):
        """cases: (pod, method, path, headers, port, expected status). Every mismatch reported;
        a 403 must carry Envoy's body."""
        wrong = []
        for pod, method, path, headers, port, want in cases:
            rc, status, body = self.call(pod, path, method, headers, port)
            got = status if rc == 0 else f"curl exit {rc}"
            if got != want:
                wrong.append(f"{pod} {method} :{port}{path} {list(headers)}: got {got}, expected {want}"
                             f" ({body[:80]!r})")
            elif want == 403 and body != DENIED_BODY:
                wrong.append(f"{pod} {method} {path}: 403 body {body!r}, expected {DENIED_BODY!r}")
        check(not wrong, f"{len(wrong)} of {len(cases)} requests did not get the expected answer", wrong)

    def prometheus(self, pod):
        r = self.c.run("node", ["curl", "-sS", "--max-time", "5",
                                f"http://{self.ip(pod)}:15090/stats/prometheus"], check=False)
        check(r.returncode == 0, f"no metrics from {pod}", describe(r))
        return r.stdout


def metric_lines(text, name, **labels):
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            out.append(line)
    return out


def value_of(text, name):
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def setup(m):
    c = m.c
    for name in ("httpbin", "sleep", "dev", "legacy"):
        c.add_pod(name)
    c.add_service(["httpbin.foo.svc.cluster.local", "httpbin.foo"], HTTPBIN_VIP)
    m.file("registry.yaml", REGISTRY.format(vip=HTTPBIN_VIP, ip=m.ip("httpbin")))
    m.start_control()
    for port in (8000, 9090):
        m.start_app("httpbin", port)
        m.wait_app("httpbin", port)
    for pod in ("httpbin", "sleep", "dev"):
        m.init(pod)
    m.start_proxy("sleep", "sleep", ns="foo")
    m.start_proxy("dev", "sleep", ns="dev")
    m.serve([])
    for pod in ("sleep", "dev"):
        m.wait_ready(pod)


EVERYONE = ["sleep", "dev", "legacy"]


def test_a_no_policy_allows_everyone(m):
    m.serve([])
    m.expect([(p, "GET", "/get", (), 8000, 200) for p in EVERYONE] +
             [(p, "POST", "/post", (), 9090, 200) for p in EVERYONE])


def test_b_allow_nothing_denies_everything_403_rbac(m):
    # authorization_policy.proto: "allow-nothing" in foo (spec: {}) denies every request.
    m.serve([api_example(165)])
    m.involved = ["httpbin", "sleep"]
    m.expect([(p, "GET", "/get", (), 8000, 403) for p in EVERYONE] +
             [(p, "POST", "/anything", (), 9090, 403) for p in EVERYONE])
    stats = m.stats("httpbin")
    check(stats.get("rbac_denied") == 6 and stats.get("rbac_allowed", 0) == 0,
          f"/stats rbac_denied={stats.get('rbac_denied')} rbac_allowed={stats.get('rbac_allowed')}; "
          "expected 6 and 0")
    prom = m.prometheus("httpbin")
    check(value_of(prom, "remora_rbac_denied_total") == 6,
          f"remora_rbac_denied_total is {value_of(prom, 'remora_rbac_denied_total')}, expected 6")
    lines = metric_lines(prom, "istio_requests_total", reporter="destination", response_code="403",
                         response_flags="RBAC")
    check(lines and sum(float(l.rsplit(" ", 1)[1]) for l in lines) == 6,
          "istio_requests_total has no 6 destination 403s with response_flags RBAC",
          [l for l in prom.splitlines() if l.startswith("istio_requests_total")])
    check(metric_lines(prom, "istio_requests_total", response_flags="RBAC",
                       source_principal="spiffe://cluster.local/ns/foo/sa/sleep",
                       connection_security_policy="mutual_tls"),
          "no RBAC-denied series for sleep's principal over mutual_tls")
    # The client's sidecar sees the 403 as the answer (it is no failure of its own).
    client = m.prometheus("sleep")
    check(metric_lines(client, "istio_requests_total", reporter="source", response_code="403"),
          "the client sidecar did not report the 403")
    time.sleep(0.3)  # the access log is written by a background thread
    with open(m.access_log) as f:
        lines = f.readlines()
    denied = [l for l in lines if '" 403 RBAC ' in l]
    check(len(denied) == 6, f"{len(denied)} access-log lines with 403 RBAC, expected 6", lines[-8:])


def test_c_allow_all_rule_allows_everything(m):
    # authorization_policy.proto: "allow-all" (rules: [{}]) allows every request.
    m.serve([api_example(177)])
    m.expect([(p, "DELETE", "/anything", (), 8000, 200) for p in EVERYONE])
    check(m.stats("httpbin").get("rbac_allowed") == 3, "rbac_allowed is not 3 after 3 allowed requests")


def test_d_deny_post_from_namespace_dev(m):
    # authorization_policy.proto: DENY POST from namespace dev. Plaintext has no namespace, so
    # the legacy client's POST is not denied; every GET is allowed (no ALLOW policy).
    m.serve([api_example(93)])
    m.involved = ["httpbin", "dev"]
    m.expect([("dev", "POST", "/post", (), 8000, 403), ("dev", "GET", "/get", (), 8000, 200),
              ("sleep", "POST", "/post", (), 8000, 200), ("legacy", "POST", "/post", (), 8000, 200)])


def test_e_principal_namespace_path_method_header_port(m):
    m.serve([MIXED])
    m.involved = ["httpbin", "sleep", "dev"]
    token, bad = ("x-token: letmein",), ("x-token: nope",)
    m.expect([
        ("sleep", "GET", "/info/1", (), 8000, 200),
        ("sleep", "GET", "/info?verbose=1", (), 8000, 200),  # the query is not part of the path
        ("sleep", "GET", "/headers", (), 8000, 200),
        ("sleep", "POST", "/info", (), 8000, 403),   # sleep may only GET
        ("sleep", "GET", "/status", (), 8000, 403),  # nor other paths
        ("sleep", "GET", "/admin", (), 8000, 403),   # DENY before ALLOW
        ("dev", "POST", "/data", (), 8000, 200),     # namespace dev may POST
        ("dev", "GET", "/info", (), 8000, 403),      # principal is not sleep's in foo
        ("dev", "GET", "/info", token, 8000, 200),   # the header rule
        ("dev", "GET", "/admin", token, 8000, 403),  # DENY still first
        ("legacy", "GET", "/info", (), 8000, 403),   # plaintext: no principal
        ("legacy", "POST", "/data", (), 8000, 403),  # plaintext: no namespace
        ("legacy", "GET", "/info", token, 8000, 200),
        ("legacy", "GET", "/info", bad, 8000, 403),
        ("legacy", "GET", "/public/x", (), 9090, 200),  # ports: the original destination port
        ("legacy", "GET", "/public/x", (), 8000, 403),
        ("sleep", "GET", "/public/x", (), 9090, 200),
        ("sleep", "POST", "/public/x", (), 9090, 403),
    ])
    dump = json.loads(m.admin("httpbin", "/config_dump"))
    got = [(p["action"], p["name"]) for p in dump.get("authorization_policies", [])]
    check(got == [("DENY", "deny-admin.foo"), ("ALLOW", "httpbin.foo")],
          f"/config_dump authorization_policies {got}: the productpage policy must not apply")


def test_f_root_namespace_policy_is_mesh_wide(m):
    m.serve([ROOT_DENY, api_example(177)])
    m.expect([("dev", "GET", "/get", (), 8000, 403), ("sleep", "GET", "/get", (), 8000, 200),
              ("legacy", "GET", "/get", (), 8000, 200)])


def test_g_audit_never_denies(m):
    m.serve([AUDIT])
    m.expect([("sleep", "GET", "/admin/x", (), 8000, 200), ("legacy", "GET", "/other", (), 8000, 200)])
    stats = m.stats("httpbin")
    check(stats.get("rbac_audited") == 1 and stats.get("rbac_denied", 0) == 0,
          f"rbac_audited={stats.get('rbac_audited')} rbac_denied={stats.get('rbac_denied')}; "
          "expected one audited request and no denial")


def test_h_strict_refuses_plaintext(m):
    # The mTLS migration task: with STRICT in foo, the sidecar clients still get 200 and the
    # legacy (plaintext) client's connection is closed.
    m.serve([NAMESPACE_STRICT])
    m.involved = ["httpbin"]
    before = m.stats("httpbin").get("downstream_cx_refused_plaintext", 0)
    m.expect([("sleep", "GET", "/ip", (), 8000, 200), ("dev", "GET", "/ip", (), 9090, 200)])
    rc, status, _ = m.call("legacy", "/ip")
    check(rc in (52, 56) and status == 0,
          f"plaintext under STRICT answered: curl exit {rc}, HTTP {status}; expected the connection closed")
    check(m.stats("httpbin").get("downstream_cx_refused_plaintext", 0) == before + 1,
          "the refusal is not counted in downstream_cx_refused_plaintext")


def test_i_permissive_accepts_both(m):
    m.serve([WORKLOAD_MODE.format(mode="PERMISSIVE")])
    doc = m.get_json("sleep", "http://httpbin.foo.svc.cluster.local:8000/headers")
    check("URI=spiffe://cluster.local/ns/foo/sa/sleep" in doc["headers"].get("x-forwarded-client-cert", ""),
          "the mTLS request reached the app without sleep's identity in XFCC", [json.dumps(doc)])
    doc = m.get_json("legacy", f"http://{m.ip('httpbin')}:8000/headers", user=None)
    check("x-forwarded-client-cert" not in doc["headers"], "a plaintext request got an XFCC header")


def test_j_disable_serves_plaintext(m):
    m.serve([WORKLOAD_MODE.format(mode="DISABLE")])
    m.involved = ["httpbin", "sleep"]
    dump = json.loads(m.admin("httpbin", "/config_dump"))
    check(dump.get("inbound_mtls_mode") == "DISABLE", f"inbound_mtls_mode {dump.get('inbound_mtls_mode')}")
    doc = m.get_json("legacy", f"http://{m.ip('httpbin')}:8000/plain", user=None)
    check(doc.get("pod") == "httpbin", "plaintext under DISABLE did not reach the app")
    # A sidecar that talks mTLS to a DISABLE port is Istio's documented misconfiguration: the
    # server does not terminate TLS, the handshake fails, the client's sidecar answers 503 (UF).
    m.expect([("sleep", "GET", "/mtls", (), 8000, 503)])
    check(m.stats("httpbin").get("tls_handshake_ok", 0) == 0, "a DISABLE port terminated TLS")


def test_k_port_level_mtls(m):
    # Istio's sample: STRICT for workloads labelled app=a, DISABLE on port 9090. It has no
    # namespace (default); the server here lives in foo, so that is the only change.
    doc = sample_docs("peer-authn-strict-and-disable-port-mtls-in.yaml")[0]
    doc = doc.replace("  name: strict-and-disable-mtls\n", "  name: strict-and-disable-mtls\n  namespace: foo\n")
    m.serve([doc], labels="app=a")
    m.involved = ["httpbin", "sleep"]
    rc, status, _ = m.call("legacy", "/strict", port=8000)
    check(rc in (52, 56), f"plaintext to the STRICT port 8000 answered: curl exit {rc}, HTTP {status}")
    m.expect([("legacy", "GET", "/disabled", (), 9090, 200), ("sleep", "GET", "/strict", (), 8000, 200),
              ("sleep", "GET", "/disabled", (), 9090, 503)])
    dump = json.loads(m.admin("httpbin", "/config_dump"))
    check(dump.get("inbound_mtls_mode") == "STRICT" and dump.get("inbound_port_mtls_modes") == {"9090": "DISABLE"},
          f"config_dump: {dump.get('inbound_mtls_mode')} {dump.get('inbound_port_mtls_modes')}")


def test_l_authz_with_strict_and_large_bodies(m):
    # A denied POST with a body the proxy never reads: 403, then the connection closes; the next
    # request on a new connection is decided on its own.
    m.serve([NAMESPACE_STRICT, MIXED])
    body = os.path.join(m.tmp, "body.bin")
    with open(body, "wb") as f:
        f.write(b"x" * 300000)
    rc, status, text, r = m.curl("sleep", "http://httpbin.foo.svc.cluster.local:8000/admin",
                                 "-X", "POST", "--data-binary", f"@{body}")
    check(rc == 0 and status == 403 and text == DENIED_BODY, f"denied POST: exit {rc}, HTTP {status}",
          [describe(r)])
    m.expect([("sleep", "GET", "/info", (), 8000, 200), ("dev", "POST", "/data", (), 8000, 200)])


def test_m_policy_applied_with_remoractl_reaches_a_subscribed_proxy(m):
    # The same policies through the control plane: httpbin's proxy subscribes (no --config), the
    # policy is applied and deleted with remoractl while the proxy runs.
    old = m.proxies.get("httpbin")
    if old and old.proc.poll() is None:
        old.proc.terminate()
        old.proc.wait(timeout=10)
    log = os.path.join(m.tmp, "proxy-httpbin.log")
    argv = [m.proxy_bin, "--control", CONTROL, "--token-file", m.token("httpbin", "foo"),
            "--trust-bundle", m.root, "--namespace", "foo", "--service-account", "httpbin",
            "--pod-name", "httpbin", "--pod-ip", m.ip("httpbin"), "--workload-name", "httpbin",
            "--labels", "app=httpbin,version=v1", "--drain-duration", "1s"]
    proc = m.c.spawn("httpbin", argv, user=(PROXY_UID, PROXY_UID), log_path=log)
    m.proxies["httpbin"] = Proxy("httpbin", "httpbin", proc, argv, log)
    m.wait_ready("httpbin")
    m.involved = ["httpbin"]

    def ctl(*args):
        r = m.c.run("node", [m.ctl_bin, *args, "--control", CONTROL, "--state-dir", m.state],
                    check=False, timeout=30)
        check(r.returncode == 0, f"remoractl {' '.join(args)} failed", describe(r))

    def settles_to(want, pod="dev", path="/get", timeout=5.0):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            rc, status, _ = m.call(pod, path)
            got = status if rc == 0 else f"curl exit {rc}"
            if got == want:
                return
            time.sleep(0.1)
        raise Failure(f"{pod} GET {path}: still {got} {timeout} s after remoractl, expected {want}")

    m.expect([("dev", "GET", "/get", (), 8000, 200)])
    policy = m.file("mesh-deny-dev.yaml", ROOT_DENY)
    ctl("apply", "-f", policy)
    settles_to(403)
    m.expect([("dev", "GET", "/get", (), 8000, 403), ("sleep", "GET", "/get", (), 8000, 200),
              ("legacy", "GET", "/get", (), 8000, 200)])
    ctl("delete", "-f", policy)
    settles_to(200)


TESTS = [
    ("a_no_policy_allows_everyone", test_a_no_policy_allows_everyone),
    ("b_allow_nothing_denies_everything_403_rbac", test_b_allow_nothing_denies_everything_403_rbac),
    ("c_allow_all_rule_allows_everything", test_c_allow_all_rule_allows_everything),
    ("d_deny_post_from_namespace_dev", test_d_deny_post_from_namespace_dev),
    ("e_principal_namespace_path_method_header_port", test_e_principal_namespace_path_method_header_port),
    ("f_root_namespace_policy_is_mesh_wide", test_f_root_namespace_policy_is_mesh_wide),
    ("g_audit_never_denies", test_g_audit_never_denies),
    ("h_strict_refuses_plaintext", test_h_strict_refuses_plaintext),
    ("i_permissive_accepts_both", test_i_permissive_accepts_both),
    ("j_disable_serves_plaintext", test_j_disable_serves_plaintext),
    ("k_port_level_mtls", test_k_port_level_mtls),
    ("l_authz_with_strict_and_large_bodies", test_l_authz_with_strict_and_large_bodies),
    ("m_policy_applied_with_remoractl_reaches_a_subscribed_proxy",
     test_m_policy_applied_with_remoractl_reaches_a_subscribed_proxy),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-z", "remora-test-authz-", setup, TESTS,
                     mesh_class=AuthzMesh)


if __name__ == "__main__":
    sys.exit(main())
