#!/usr/bin/env python3
"""System test of remora-control --kube: the Kubernetes API server as the source of Services,
endpoints, pods and Istio resources, while proxies in the local cluster take their configuration.

    python3 tests/system/test_kube_api.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

No Kubernetes API server can run here: tests/system/fake_kube_api.py STANDS IN FOR IT, speaking
the API's documented list/watch protocol (resourceVersion, chunked watch events, bookmarks,
410 Gone as status and as ERROR event, a connection dropped mid-stream), over TLS with a bearer
token, reached through a kubeconfig. Everything the tests change, they change through it.

    node         remora-control --kube --kubeconfig, and the fake API server on 127.0.0.1
    client       meshed, sa client; the tests' caller
    reviews-v1   meshed, sa reviews, app=reviews,version=v1
    reviews-v1b  a second v1 replica (marked not ready in its EndpointSlice in one test)
    reviews-v2   meshed, sa reviews, app=reviews,version=v2

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import re
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import CONTROL, MONITORING, describe, run_suite  # noqa: E402
from test_distribution import (LOAD, dump, endpoints_of, start_subscribed_proxy,  # noqa: E402
                               wait_for)

REVIEWS_VIP = "198.19.0.31"
REVIEWS = [("reviews-v1", "v1"), ("reviews-v1b", "v1"), ("reviews-v2", "v2")]
V1 = "outbound|8080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|8080|v2|reviews.default.svc.cluster.local"
TOKEN = "fake-sa-token-7f3a"
VS_PATH = "/apis/networking.istio.io/v1/virtualservices"


def api(m, method, path, body=None):
    """A call to the fake API server (its test controls or the API itself), from the node."""
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", m.api_ca, "-X", method,
            "-H", f"Authorization: Bearer {TOKEN}", "-w", "\n%{http_code}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    r = m.c.run("node", argv + [f"https://127.0.0.1:{m.api_port}{path}"], check=False, timeout=20,
                input=None if body is None else json.dumps(body))
    text, _, code = r.stdout.rpartition("\n")
    check(r.returncode == 0 and code.startswith("2"), f"fake API {method} {path}", describe(r))
    return json.loads(text) if text.strip() else None


def put(m, obj):
    return int(api(m, "POST", "/_fake/objects", obj)["resourceVersion"])


def pod(name, version):
    app = "client" if name == "client" else "reviews"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         # The injector's label: auto mTLS reaches the pod's sidecar.
                         "labels": {"app": app, "version": version,
                                    "security.istio.io/tlsMode": "istio"}},
            "spec": {"serviceAccountName": app, "containers": [{"name": "app", "image": "echo"}]},
            "status": {"phase": "Running"}}


def slice_of(m, not_ready=()):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "reviews-x7k2p", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "reviews"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [m.ip(p)], "conditions": {"ready": p not in not_ready},
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": p}}
                          for p, _ in REVIEWS]}


def virtual_service(name, host, subset=None, weight=None):
    dest = {"destination": {"host": host, **({"subset": subset} if subset else {})}}
    if weight is not None:
        dest["weight"] = weight
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [host], "http": [{"route": [dest]}]}}


SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "reviews", "namespace": "default"},
           "spec": {"clusterIP": REVIEWS_VIP, "selector": {"app": "reviews"},
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}}
DESTINATION_RULE = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": {"name": "reviews", "namespace": "default"},
                    "spec": {"host": "reviews",
                             "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                         {"name": "v2", "labels": {"version": "v2"}}]}}


def metrics(m):
    r = m.c.run("node", ["curl", "-sS", "--max-time", "5", f"http://{MONITORING}/metrics"], check=False)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("remora_kube_"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def requests_log(m):
    return api(m, "GET", "/_fake/requests")


def load(m, seconds=1.5):
    r = m.c.run("client", ["python3", m.load, json.dumps({"seconds": seconds})], timeout=seconds + 30)
    return json.loads(r.stdout)


def pods_answering(m, seconds=1.5):
    res = load(m, seconds)
    check(res and all(s == 200 for _, s, _ in res), "requests failed",
          [json.dumps([x for x in res if x[1] != 200][:5])])
    return {p for _, _, p in res}


def control_log(m):
    with open(m.control_log) as f:
        return f.read()


def setup(m):
    c = m.c
    for name in ["client"] + [p for p, _ in REVIEWS]:
        c.add_pod(name)
    c.add_service("reviews", REVIEWS_VIP)
    m.load = m.file("load.py", LOAD)

    # The fake API server: TLS with its own CA, a bearer token, in the node namespace.
    m.api_ca = os.path.join(m.tmp, "api-ca.pem")
    key, cert = os.path.join(m.tmp, "api-key.pem"), os.path.join(m.tmp, "api-cert.pem")
    c.run("node", ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=kube-apiserver",
                   "-addext", "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc"])
    with open(cert) as f:
        m.file("api-ca.pem", f.read())
    port_file = os.path.join(m.tmp, "api-port")
    m.api = c.spawn("node", ["python3", os.path.join(HERE, "fake_kube_api.py"), "--listen", "127.0.0.1:0",
                             "--port-file", port_file, "--cert", cert, "--key", key, "--token", TOKEN,
                             "--bookmark-every", "1"],
                    log_path=os.path.join(m.tmp, "fake-kube-api.log"))
    deadline = time.monotonic() + 15
    while not os.path.exists(port_file):
        check(time.monotonic() < deadline and m.api.poll() is None, "the fake API server did not start")
        time.sleep(0.05)
    with open(port_file) as f:
        m.api_port = int(f.read())
    kubeconfig = m.file("kubeconfig", f"""apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context: {{cluster: fake, user: remora-control}}
clusters:
- name: fake
  cluster: {{server: "https://127.0.0.1:{m.api_port}", certificate-authority: api-ca.pem}}
users:
- name: remora-control
  user: {{token: {TOKEN}}}
""")
    # The cluster's state, before the control plane starts: it lists all of it.
    put(m, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    put(m, pod("client", "v1"))
    for p, version in REVIEWS:
        put(m, pod(p, version))
    put(m, SERVICE)
    put(m, slice_of(m))
    put(m, DESTINATION_RULE)
    put(m, virtual_service("reviews", "reviews", "v1"))

    m.control = c.spawn("node", [m.control_bin, "--state-dir", m.state, "--listen", CONTROL,
                                 "--monitoring", MONITORING, "--kube", "--kubeconfig", kubeconfig],
                        log_path=m.control_log)
    c.wait_http("node", f"http://{MONITORING}/healthz", timeout=15, proc=m.control, status=200)
    r = c.run("node", [m.ctl_bin, "ca", "root", "--state-dir", m.state])
    m.file("root-cert.pem", r.stdout)
    wait_for("remora_kube_synced 1", lambda: metrics(m).get("remora_kube_synced") == 1, 15)

    for p, _ in REVIEWS:
        m.start_app(p, 8080)
        m.wait_app(p, 8080)
    m.init("client")
    start_subscribed_proxy(m, "client", "client", "app=client,version=v1", "client")
    for p, version in REVIEWS:
        m.init(p)
        start_subscribed_proxy(m, p, "reviews", f"app=reviews,version={version}", f"reviews-{version}")
    for p in ["client"] + [p for p, _ in REVIEWS]:
        m.wait_ready(p)


def test_a_routes_and_endpoints_from_the_api(m):
    m.involved = ["client"]
    want = sorted(f"{m.ip(p)}:8080" for p, v in REVIEWS if v == "v1")
    wait_for("the client's v1 cluster lists both v1 pods (from the EndpointSlice)",
             lambda: endpoints_of(dump(m, "client"), V1) == want, 10)
    check(pods_answering(m) <= {"reviews-v1", "reviews-v1b"}, "the VirtualService's v1 route")
    # A VirtualService changed through the API reaches the proxies.
    put(m, virtual_service("reviews", "reviews", "v2"))
    wait_for("traffic follows the VirtualService to v2", lambda: pods_answering(m, 0.5) == {"reviews-v2"}, 10)
    put(m, virtual_service("reviews", "reviews", "v1"))
    wait_for("and back to v1", lambda: pods_answering(m, 0.5) <= {"reviews-v1", "reviews-v1b"}, 10)
    # Read-only over remora's own API.
    path = m.file("vs.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                  "metadata: {name: reviews, namespace: default}\nspec: {hosts: [reviews]}\n")
    r = m.c.run("node", [m.ctl_bin, "apply", "-f", path, "--control", CONTROL, "--state-dir", m.state],
                check=False)
    check(r.returncode != 0 and "managed by the Kubernetes API" in (r.stdout + r.stderr),
          "remoractl apply of a resource the API server owns", [describe(r)])


def test_b_endpoints_follow_endpointslices(m):
    m.involved = ["client"]
    # Not ready: out of the endpoints though its proxy is connected and registered.
    put(m, slice_of(m, not_ready={"reviews-v1b"}))
    wait_for("the not-ready pod leaves the v1 endpoints",
             lambda: endpoints_of(dump(m, "client"), V1) == [f"{m.ip('reviews-v1')}:8080"], 10)
    got = pods_answering(m, 2)
    check(got == {"reviews-v1"}, "traffic only to the ready v1 pod", [repr(got)])
    put(m, slice_of(m))
    want = sorted(f"{m.ip(p)}:8080" for p, v in REVIEWS if v == "v1")
    wait_for("ready again: back in", lambda: endpoints_of(dump(m, "client"), V1) == want, 10)


def test_c_410_gone_relists_without_losing_state(m):
    m.involved = ["client"]
    before = metrics(m)
    changes = before.get("remora_kube_store_changes_total", 0)
    relists = before.get('remora_kube_relists_total{kind="VirtualService"}', 0)
    # ERROR 410 on every open watch (and the history forgotten): the source lists again.
    api(m, "POST", "/_fake/gone")
    wait_for("every kind relisted after ERROR 410",
             lambda: metrics(m).get('remora_kube_relists_total{kind="VirtualService"}', 0) > relists
             and metrics(m).get('remora_kube_relists_total{kind="EndpointSlice"}', 0) > 0, 15)
    # The relist found what was there: nothing was removed or changed in the store.
    time.sleep(0.5)
    check(metrics(m).get("remora_kube_store_changes_total", 0) == changes,
          "a relist of the same state changed the store", [tail_control(m)])
    check(pods_answering(m, 1) <= {"reviews-v1", "reviews-v1b"}, "routes kept across the relist")
    # 410 as the HTTP status of the watch request: history compacted, then the stream dropped, so
    # the watch comes back with a version the server no longer has.
    n = len(requests_log(m))
    api(m, "POST", "/_fake/compact?drop=1")
    wait_for("HTTP 410 on the watch, then a list",
             lambda: any(r["status"] == 410 and r["path"] == VS_PATH for r in requests_log(m)[n:])
             and any(r["path"] == VS_PATH and "watch" not in r["query"] for r in requests_log(m)[n:]), 15)
    # The new watch works: a change after the relists arrives.
    put(m, virtual_service("reviews", "reviews", "v2"))
    wait_for("a change after the relists", lambda: pods_answering(m, 0.5) == {"reviews-v2"}, 10)
    put(m, virtual_service("reviews", "reviews", "v1"))
    wait_for("and back", lambda: pods_answering(m, 0.5) <= {"reviews-v1", "reviews-v1b"}, 10)


def test_d_dropped_stream_resumes_from_last_version(m):
    m.involved = ["client"]
    rv = put(m, virtual_service("reviews", "reviews", "v1", weight=100))
    wait_for("the change is in the store", lambda: "weight: 100" in m.c.run(
        "node", [m.ctl_bin, "get", "virtualservice", "reviews", "-o", "yaml", "--control", CONTROL,
                 "--state-dir", m.state], check=False).stdout, 10)
    n = len(requests_log(m))
    api(m, "POST", "/_fake/drop")
    # A change while the watch is away is not lost: the watch resumes from the last version.
    put(m, virtual_service("reviews", "reviews", "v2"))
    wait_for("the change made while the stream was down arrives",
             lambda: pods_answering(m, 0.5) == {"reviews-v2"}, 15)
    after = [r for r in requests_log(m)[n:] if r["path"] == VS_PATH]
    check(after and all("watch=1" in r["query"] for r in after),
          "after a dropped stream the client listed again instead of resuming", [json.dumps(after)])
    q = dict(urllib.parse.parse_qsl(after[0]["query"]))
    check(int(q["resourceVersion"]) >= rv and q.get("allowWatchBookmarks") == "true",
          f"the watch resumed from resourceVersion {q.get('resourceVersion')}, not from {rv} or later",
          [json.dumps(after)])
    check(metrics(m).get('remora_kube_reconnects_total{kind="VirtualService"}', 0) >= 1,
          "the dropped stream was not counted")
    put(m, virtual_service("reviews", "reviews", "v1"))
    wait_for("and back", lambda: pods_answering(m, 0.5) <= {"reviews-v1", "reviews-v1b"}, 10)


def test_e_invalid_resource_skipped_and_counted(m):
    m.involved = ["client"]
    rejected = metrics(m).get('remora_kube_rejected_resources_total{kind="VirtualService"}', 0)
    # An invalid new VirtualService, and a valid DestinationRule in the same moment.
    put(m, virtual_service("bad", "ratings", weight=-5))
    put(m, {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "ratings", "namespace": "default"}, "spec": {"host": "ratings"}})
    # The valid reviews VirtualService made invalid: its last valid version stays in force.
    put(m, virtual_service("reviews", "reviews", "v2", weight=-5))

    def get(kind):
        return m.c.run("node", [m.ctl_bin, "get", kind, "--control", CONTROL, "--state-dir", m.state],
                       check=False).stdout
    wait_for("the valid DestinationRule goes in", lambda: "ratings" in get("destinationrules"), 10)
    check("bad" not in get("virtualservices"), "the invalid VirtualService was stored")
    wait_for("both rejections counted",
             lambda: metrics(m).get('remora_kube_rejected_resources_total{kind="VirtualService"}', 0)
             == rejected + 2, 10)
    log = control_log(m)
    check(re.search(r"kube event: type=Warning reason=InvalidResource object=VirtualService default/bad "
                    r"resourceVersion=\d+ message=\".*weight", log),
          "no Event-like log line for the invalid resource", [tail_control(m)])
    check(pods_answering(m, 1) <= {"reviews-v1", "reviews-v1b"},
          "the last valid reviews VirtualService stays in force")
    # Fixed: taken.
    put(m, virtual_service("reviews", "reviews", "v2"))
    wait_for("the fixed VirtualService is taken", lambda: pods_answering(m, 0.5) == {"reviews-v2"}, 10)
    put(m, virtual_service("reviews", "reviews", "v1"))
    api(m, "DELETE", "/_fake/objects?kind=VirtualService&namespace=default&name=bad")


def tail_control(m, n=30):
    return "control log:\n" + "\n".join(control_log(m).splitlines()[-n:])


TESTS = [
    ("a_routes_and_endpoints_from_the_api", test_a_routes_and_endpoints_from_the_api),
    ("b_endpoints_follow_endpointslices", test_b_endpoints_follow_endpointslices),
    ("c_410_gone_relists_without_losing_state", test_c_410_gone_relists_without_losing_state),
    ("d_dropped_stream_resumes_from_last_version", test_d_dropped_stream_resumes_from_last_version),
    ("e_invalid_resource_skipped_and_counted", test_e_invalid_resource_skipped_and_counted),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-ka", "remora-test-kubeapi-", setup, TESTS,
                     tools=("curl", "setpriv", "iptables-restore", "python3", "openssl"))


if __name__ == "__main__":
    sys.exit(main())
