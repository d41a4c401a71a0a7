#!/usr/bin/env python3
"""System test of the protocols other than HTTP/1.1 through real sidecars: Redis on a port named
tcp- and on an undeclared port (detected), server-first exchanges, half-close, gRPC (unary and a
10 MB server stream) with python3-grpcio on both sides, L4 AuthorizationPolicy, a VirtualService
tcp route, Istio's TCP metrics with the metadata exchange's labels, a WebSocket upgrade, the app's
own TLS routed by SNI (tls[] routes) and passed through a PERMISSIVE sidecar from outside the mesh,
TCP access-log lines (TEXT from the client's sidecar, JSON from the server's) with their flags.

    python3 tests/system/test_protocols.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

    node     remora-control (CA)
    client   meshed; its proxy runs with --config services.yaml (ServiceEntries + WorkloadEntry)
    server   meshed, --config policy.yaml (an AuthorizationPolicy); Redis on 6379 and 6380, a
             server-first "banner" app on 2525-2528, a gRPC server on 50051, TLS apps on 9443/9444
    outside  not meshed (no proxy, no iptables): a TLS client straight to the server pod

Exit status: 0 all passed, 1 some failed, 77 not root or tools missing.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Failure, check  # noqa: E402
from test_mesh import APP_UID, ECHO_APP, describe, run_suite  # noqa: E402

VIP = "198.19.0.40"
OTHER_VIP = "198.19.0.41"
CLOSED_VIP = "198.19.0.42"  # a plaintext endpoint (the outside pod) where nothing listens
EMPTY_VIP = "198.19.0.43"  # a service without endpoints
IDLE_VIP = "198.19.0.44"  # the banner app behind a 1 s TCP idle timeout
CAPPED_VIP = "198.19.0.45"  # the banner app behind tcp.maxConnections 1
GRPC_PYTHON = "/usr/bin/python3"  # Debian's interpreter, which has python3-grpcio

SERVICES = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: store, namespace: default}}
spec:
  hosts: [store.default.svc.cluster.local]
  addresses: [{vip}]
  ports:
  - {{number: 6379, name: tcp-redis, protocol: TCP}}
  - {{number: 6380, name: undeclared}}
  - {{number: 2525, name: tcp-banner, protocol: TCP}}
  - {{number: 2526, name: banner-undeclared}}
  - {{number: 2527, name: tcp-denied, protocol: TCP}}
  - {{number: 2528, name: tcp-routed, protocol: TCP}}
  - {{number: 2529, name: tcp-no-app, protocol: TCP}}
  - {{number: 50051, name: grpc, protocol: GRPC}}
  - {{number: 8090, name: http-ws, protocol: HTTP}}
  - {{number: 8080, name: http-echo, protocol: HTTP}}
  - {{number: 8443, name: http2-h2c, protocol: HTTP2}}
  - {{number: 9443, name: tls-a, protocol: TLS}}
  - {{number: 9444, name: tls-b, protocol: TLS}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: store}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: other, namespace: default}}
spec:
  hosts: [other.default.svc.cluster.local]
  addresses: [{other_vip}]
  ports:
  - {{number: 2525, name: tcp-banner, protocol: TCP}}
  - {{number: 8080, name: http-echo, protocol: HTTP}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: store}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: closed, namespace: default}}
spec:
  hosts: [closed.default.svc.cluster.local]
  addresses: [{closed_vip}]
  ports:
  - {{number: 2529, name: tcp-closed, protocol: TCP}}
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: {outside}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: empty, namespace: default}}
spec:
  hosts: [empty.default.svc.cluster.local]
  addresses: [{empty_vip}]
  ports:
  - {{number: 2530, name: tcp-empty, protocol: TCP}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: nobody}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: idle, namespace: default}}
spec:
  hosts: [idle.default.svc.cluster.local]
  addresses: [{idle_vip}]
  ports:
  - {{number: 2525, name: tcp-banner, protocol: TCP}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: store}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: capped, namespace: default}}
spec:
  hosts: [capped.default.svc.cluster.local]
  addresses: [{capped_vip}]
  ports:
  - {{number: 2525, name: tcp-banner, protocol: TCP}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: store}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: capped, namespace: default}}
spec:
  host: capped.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: idle, namespace: default}}
spec:
  host: idle.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {{idleTimeout: 1s}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: other-h1, namespace: default}}
spec:
  host: other.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      http: {{h2UpgradePolicy: DO_NOT_UPGRADE}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: store-1, namespace: default}}
spec:
  address: {server}
  labels: {{app: store, security.istio.io/tlsMode: istio}}
  serviceAccount: store
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: store-tcp, namespace: default}}
spec:
  hosts: [store, "*.store.example"]
  tls:
  - match: [{{port: 9443, sniHosts: [b.store.example, "*.b.store.example"]}}]
    route: [{{destination: {{host: store, port: {{number: 9444}}}}}}]
  tcp:
  - match: [{{port: 2528}}]
    route:
    - destination: {{host: other, port: {{number: 2525}}}}
  http:
  - match: [{{port: 50051, uri: {{prefix: /test.Svc/Denied}}}}]
    fault: {{abort: {{grpcStatus: PERMISSION_DENIED, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: store, port: {{number: 50051}}}}}}]
  - match: [{{port: 50051, uri: {{prefix: /test.Svc/NoRetry}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: store, port: {{number: 50051}}}}}}]
  - match: [{{port: 50051}}]
    retries: {{attempts: 3, retryOn: unavailable}}
    route: [{{destination: {{host: store, port: {{number: 50051}}}}}}]
  - match: [{{port: 8443, uri: {{prefix: /blocked}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: store, port: {{number: 8443}}}}}}]
  - match: [{{port: 8443}}]
    headers: {{response: {{add: {{x-remora-route: h2c}}}}}}
    route: [{{destination: {{host: store, port: {{number: 8443}}}}}}]
  - match: [{{port: 8080}}]
    headers: {{request: {{add: {{x-remora-route: echo}}}}}}
    route: [{{destination: {{host: store, port: {{number: 8080}}}}}}]
  - match: [{{port: 8090}}]
    route: [{{destination: {{host: store, port: {{number: 8090}}}}}}]
"""

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-2527, namespace: default}
spec:
  selector: {matchLabels: {app: store}}
  action: DENY
  rules:
  - to: [{operation: {ports: ["2527"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http-only-deny, namespace: default}
spec:
  selector: {matchLabels: {app: store}}
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/nobody"]}}]
    to: [{operation: {methods: ["GET"]}}]
"""

# The app's own TLS: a server per port that names itself, the server name (SNI) it was asked for
# and the ALPN it agreed, then closes. argv: cert key port:name...
TLS_APP = r'''
import socket, ssl, sys, threading
cert, key = sys.argv[1], sys.argv[2]
def serve(port, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    names = {}
    ctx.sni_callback = lambda sock, server_name, c: names.__setitem__(id(sock), server_name)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        try:
            t = ctx.wrap_socket(c, server_side=True)
            t.sendall(f"app={name} sni={names.pop(id(t), None)} alpn={t.selected_alpn_protocol()}\n".encode())
            t.close()
        except (OSError, ssl.SSLError) as e:
            print(f"port {port}: {e}", flush=True)
            c.close()
for spec in sys.argv[3:]:
    port, name = spec.split(":")
    threading.Thread(target=serve, args=(int(port), name), daemon=True).start()
threading.Event().wait()
'''

# A TLS client that does not verify (the app's certificate is self-signed) and prints what the
# server said. argv: host port sni|- alpn,list|-
TLS_CLIENT = r'''
import socket, ssl, sys
host, port, sni, alpn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if alpn != "-":
    ctx.set_alpn_protocols(alpn.split(","))
t = ctx.wrap_socket(socket.create_connection((host, port), timeout=10),
                    server_hostname=None if sni == "-" else sni)
data = b""
while True:
    chunk = t.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().strip())
'''

# A server-first app: on connect it sends a banner naming the port; then it reads until the
# client half-closes and answers with the number of bytes it got, then closes.
BANNER = r'''
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=one, args=(c, port), daemon=True).start()
def one(c, port):
    try:
        c.sendall(b"220 banner %d\r\n" % port)
        n = 0
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
        c.sendall(b"got %d\r\n" % n)
    finally:
        c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
'''

# The client side of BANNER: reads the banner without sending anything first (how long it took),
# then sends N bytes, half-closes and reads the answer.
BANNER_CLIENT = r'''
import json, socket, sys, time
a = json.loads(sys.argv[1])
t0 = time.monotonic()
out = {}
try:
    s = socket.create_connection((a["host"], a["port"]), timeout=a.get("timeout", 10))
    buf = b""
    while b"\r\n" not in buf:
        b = s.recv(4096)
        if not b: break
        buf += b
    out["banner"] = buf.decode(errors="replace").strip()
    out["banner_seconds"] = time.monotonic() - t0
    if buf and a.get("hold"):
        # Send nothing more: wait for the other side to close.
        out["closed"] = s.recv(4096) == b""
    elif buf:
        s.sendall(b"x" * a.get("send", 100000))
        s.shutdown(socket.SHUT_WR)
        rest = b""
        while True:
            b = s.recv(4096)
            if not b: break
            rest += b
        out["answer"] = rest.decode(errors="replace").strip()
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
'''

# gRPC without generated code: generic handlers over raw bytes.
GRPC_SERVER = r'''
import json, sys, threading, time
from concurrent import futures
import grpc
def echo(req, ctx):
    return b"echo:" + req
def stream(req, ctx):
    chunk = b"s" * 65536
    for _ in range(int(req.decode())):
        yield chunk
def collect(it, ctx):
    return str(sum(len(x) for x in it)).encode()
def chat(it, ctx):
    for x in it:
        yield b"re:" + x
calls = {"Flaky": 0, "NoRetry": 0, "FlakyCollect": 0, "FlakyCollectSizes": []}
lock = threading.Lock()
def flaky_collect(it, ctx):
    # Reads the whole request stream, then every other call fails with UNAVAILABLE. On its first
    # message it leaves a marker the slow client waits for before it sends its last.
    call_id = dict(ctx.invocation_metadata()).get("call-id", "-")
    n = 0
    for i, x in enumerate(it):
        if i == 0 and len(sys.argv) > 2:
            open("%s/first-%s" % (sys.argv[2], call_id), "a").close()
        n += len(x)
    with lock:
        calls["FlakyCollect"] += 1
        calls["FlakyCollectSizes"].append(n)
        k = calls["FlakyCollect"]
    if k % 2 == 1:
        ctx.abort(grpc.StatusCode.UNAVAILABLE, "replica busy")
    return str(n).encode()
def flaky(name):
    # Every other call fails with UNAVAILABLE before any message: a trailers-only response.
    def call(req, ctx):
        with lock:
            calls[name] += 1
            n = calls[name]
        if n % 2 == 1:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "replica busy")
        return b"ok:" + req
    return call
def denied(req, ctx):
    return b"the fault should have answered"
def sleep(req, ctx):
    time.sleep(3)
    return b"late"
def count(req, ctx):
    with lock:
        return json.dumps(calls).encode()
handlers = {
    "Echo": grpc.unary_unary_rpc_method_handler(echo),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
    "Collect": grpc.stream_unary_rpc_method_handler(collect),
    "Chat": grpc.stream_stream_rpc_method_handler(chat),
    "Flaky": grpc.unary_unary_rpc_method_handler(flaky("Flaky")),
    "NoRetry": grpc.unary_unary_rpc_method_handler(flaky("NoRetry")),
    "Denied": grpc.unary_unary_rpc_method_handler(denied),
    "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    "Count": grpc.unary_unary_rpc_method_handler(count),
    "FlakyCollect": grpc.stream_unary_rpc_method_handler(flaky_collect),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Svc", handlers),))
server.add_insecure_port("0.0.0.0:%s" % sys.argv[1])
server.start()
server.wait_for_termination()
'''

GRPC_CLIENT = r'''
import json, sys
import grpc
a = json.loads(sys.argv[1])
out = {}
with grpc.insecure_channel(a["target"]) as ch:
    grpc.channel_ready_future(ch).result(timeout=10)
    echo = ch.unary_unary("/test.Svc/Echo")
    out["unary"] = [echo(b"hi-%d" % i, timeout=10).decode() for i in range(a.get("calls", 20))]
    total = 0
    for chunk in ch.unary_stream("/test.Svc/Stream")(str(a.get("chunks", 160)).encode(), timeout=60):
        total += len(chunk)
    out["streamed"] = total
    out["collected"] = ch.stream_unary("/test.Svc/Collect")(iter([b"a" * 1000] * 50), timeout=30).decode()
    out["chat"] = [x.decode() for x in ch.stream_stream("/test.Svc/Chat")(iter([b"1", b"2", b"3"]), timeout=30)]
print(json.dumps(out))
'''

# HTTP/2 attacks with hand-made frames (a library would refuse to send them), each on its own
# connection to a port the client sidecar takes as HTTP/2. Prints how each connection ended.
H2_ATTACKS = r'''
import json, socket, struct, sys, time
host, port = "store", 8443

def frame(kind, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload

def hint(value, bits, first=0):
    top = (1 << bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)

def literal(name, value, incremental=False):
    return (b"\x40" if incremental else b"\x00") + hint(len(name), 7) + name + hint(len(value), 7) + value

def request(path=b"/hello.txt"):
    # :method GET and :scheme http (static 2 and 6); :path and :authority as literals
    authority = b"store:8443"
    return b"\x82\x86" + b"\x04" + hint(len(path), 7) + path + b"\x01" + hint(len(authority), 7) + authority

def connect(settings=b""):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, settings))
    return s

def outcome(s, wait=8.0):
    # Reads until EOF (or wait seconds): the GOAWAY's error code if one came, and whether it closed.
    deadline = time.time() + wait
    buf, goaway = b"", None
    try:
        while time.time() < deadline:
            s.settimeout(max(0.1, deadline - time.time()))
            chunk = s.recv(65536)
            if not chunk:
                return {"goaway": goaway, "closed": True}
            buf += chunk
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                if buf[3] == 7:
                    goaway = int.from_bytes(buf[13:17], "big")
                buf = buf[9 + n:]
    except socket.timeout:
        pass
    except OSError:
        return {"goaway": goaway, "closed": True}
    return {"goaway": goaway, "closed": False}

def rapid_reset():
    s = connect()
    for i in range(1500):
        sid = 2 * i + 1
        try:
            s.sendall(frame(1, 0x5, sid, request()) + frame(3, 0, sid, struct.pack(">I", 8)))
        except OSError:
            break
    return outcome(s)

def continuation_flood():
    s = connect()
    s.sendall(frame(1, 0x1, 1, request()))  # END_STREAM, no END_HEADERS
    try:
        for i in range(40):
            s.sendall(frame(9, 0, 1, literal(b"x-filler-%d" % i, b"v" * 16)))
    except OSError:
        pass
    return outcome(s)

def hpack_bomb():
    s = connect()
    # A 4000-byte header enters the dynamic table (index 62) and is then referenced 200 times:
    # about 5 KB on the wire, 800 KB decoded.
    block = request() + literal(b"x-bomb", b"a" * 4000, incremental=True) + b"\xbe" * 200
    s.sendall(frame(1, 0x5, 1, block))
    return outcome(s)

def settings_flood():
    s = connect(struct.pack(">HI", 1, 4096) * 100)
    return outcome(s)

args = json.loads(sys.argv[1])
if args["mode"] == "floods":
    result = {}
    for name, attack in (("rapid_reset", rapid_reset), ("continuation_flood", continuation_flood),
                         ("hpack_bomb", hpack_bomb), ("settings_flood", settings_flood)):
        result[name] = attack()
    print(json.dumps(result))
else:
    # Readers that open no flow-control window and ask for a 4 MB file, then read nothing.
    socks = []
    for _ in range(args.get("count", 10)):
        s = connect(struct.pack(">HI", 4, 0))
        s.sendall(frame(1, 0x5, 1, request(b"/big.bin")))
        socks.append(s)
    time.sleep(float(args.get("hold", 4)))
    print(json.dumps({"opened": len(socks)}))
    for s in socks:
        s.close()
'''

# gRPC through the sidecars' L7 features: retries read from grpc-status, a fault abort with
# grpcStatus, statuses counted per outcome.
# A slow gRPC client stream (HTTP/2 from the app): three messages with pauses, to a method that
# fails every other call after reading them all; the route retries on unavailable.
GRPC_SLOW_CLIENT = r'''
import json, os, sys, time
import grpc
a = json.loads(sys.argv[1])
out = {"answers": [], "streamed": []}
def slow(call):
    for i in range(3):
        if i:
            time.sleep(a["pause"])
        if i == 2:
            # The last message waits until the app has the first (bounded: a proxy that held the
            # body back would never deliver it before this one).
            marker = "%s/first-%s" % (a["markers"], call)
            deadline = time.monotonic() + 15
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            out["streamed"].append(os.path.exists(marker))
        yield b"m" * a["size"]
with grpc.insecure_channel(a["target"]) as ch:
    grpc.channel_ready_future(ch).result(timeout=10)
    for call in range(a["calls"]):
        try:
            md = (("call-id", "%s-%d" % (a["tag"], call)),)
            out["answers"].append(ch.stream_unary("/test.Svc/FlakyCollect")(slow("%s-%d" % (a["tag"], call)), metadata=md, timeout=40).decode())
        except grpc.RpcError as e:
            out["answers"].append(e.code().name)
    out["server_calls"] = json.loads(ch.unary_unary("/test.Svc/Count")(b"", timeout=10).decode())
print(json.dumps(out))
'''

GRPC_L7_CLIENT = r'''
import json, sys, time
import grpc
a = json.loads(sys.argv[1])
out = {}
def outcomes(method, n):
    got = {}
    for i in range(n):
        try:
            ch.unary_unary(method)(b"%d" % i, timeout=10)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        got[code] = got.get(code, 0) + 1
    return got
with grpc.insecure_channel(a["target"]) as ch:
    grpc.channel_ready_future(ch).result(timeout=10)
    out["flaky"] = outcomes("/test.Svc/Flaky", a["calls"])
    out["noretry"] = outcomes("/test.Svc/NoRetry", a["calls"])
    out["denied"] = outcomes("/test.Svc/Denied", 3)
    out["server_calls"] = json.loads(ch.unary_unary("/test.Svc/Count")(b"", timeout=10).decode())
print(json.dumps(out))
'''

# HTTP/1.1 clients (keep-alive, several at once) against the echo app: what the app saw.
H1_CLIENT = r'''
import http.client, json, sys, threading
a = json.loads(sys.argv[1])
results, errors = [], []
def worker(w):
    try:
        c = http.client.HTTPConnection(a["host"], a["port"], timeout=20)
        for i in range(a["requests"]):
            body = b"b" * a["body"] if i % 5 == 4 else None
            c.request("POST" if body else "GET", "/w%d/%d" % (w, i), body=body)
            r = c.getresponse()
            doc = json.loads(r.read())
            results.append({"status": r.status, "version": doc["version"], "headers": doc["headers"],
                            "body_length": doc["body_length"], "sent": len(body) if body else 0})
        c.close()
    except Exception as e:
        errors.append("%s: %s" % (type(e).__name__, e))
ts = [threading.Thread(target=worker, args=(w,)) for w in range(a["workers"])]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"results": results, "errors": errors}))
'''


# A WebSocket echo server (RFC 6455, by hand: no third-party module), on the port given.
WS_SERVER = r'''
import base64, hashlib, socket, struct, sys, threading
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def recv_exact(c, n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
def one(c):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            x = c.recv(4096)
            if not x: return
            head += x
        lines = head.split(b"\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:] if l)}
        if hdrs.get(b"upgrade", b"").lower() != b"websocket":
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"); return
        accept = base64.b64encode(hashlib.sha1(hdrs[b"sec-websocket-key"] + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\nX-Saw-Xfcc: " +
                  (b"yes" if b"x-forwarded-client-cert" in hdrs else b"no") + b"\r\n\r\n")
        while True:
            b0, b1 = recv_exact(c, 2)
            n = b1 & 0x7F
            if n == 126: n = struct.unpack(">H", recv_exact(c, 2))[0]
            elif n == 127: n = struct.unpack(">Q", recv_exact(c, 8))[0]
            mask = recv_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(x ^ mask[i % 4] for i, x in enumerate(recv_exact(c, n)))
            op = b0 & 0x0F
            if op == 8:
                c.sendall(b"\x88\x00"); return
            hdr = bytes([0x80 | op]) + (bytes([n]) if n < 126 else (b"\x7e" + struct.pack(">H", n) if n < 65536 else b"\x7f" + struct.pack(">Q", n)))
            c.sendall(hdr + data)
    except EOFError:
        pass
    finally:
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=one, args=(c,), daemon=True).start()
'''

WS_CLIENT = r'''
import base64, json, os, socket, struct, sys
a = json.loads(sys.argv[1])
out = {"echoes": []}
s = socket.create_connection((a["host"], a["port"]), timeout=10)
key = base64.b64encode(os.urandom(16))
s.sendall(b"GET /chat HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
          % (a["host"].encode(), a["port"], key))
head = b""
while b"\r\n\r\n" not in head:
    x = s.recv(4096)
    if not x: break
    head += x
head, _, rest = head.partition(b"\r\n\r\n")
out["status_line"] = head.split(b"\r\n")[0].decode()
out["headers"] = head.decode(errors="replace")
def recv_exact(n):
    global rest
    while len(rest) < n:
        x = s.recv(65536)
        if not x: raise EOFError
        rest += x
    b, rest = rest[:n], rest[n:]
    return b
def frame(op, data):
    mask = os.urandom(4)
    n = len(data)
    ln = bytes([0x80 | n]) if n < 126 else (b"\xfe" + struct.pack(">H", n) if n < 65536 else b"\xff" + struct.pack(">Q", n))
    return bytes([0x80 | op]) + ln + mask + bytes(x ^ mask[i % 4] for i, x in enumerate(data))
if out["status_line"].startswith("HTTP/1.1 101"):
    for msg in [b"hello-1", b"hello-2", b"x" * 70000]:
        s.sendall(frame(1, msg))
        b0, b1 = recv_exact(2)
        n = b1 & 0x7F
        if n == 126: n = struct.unpack(">H", recv_exact(2))[0]
        elif n == 127: n = struct.unpack(">Q", recv_exact(8))[0]
        data = recv_exact(n)
        out["echoes"].append(data.decode() if len(data) < 100 else "%d bytes" % len(data))
    s.sendall(frame(8, b""))
    out["close"] = recv_exact(2).hex()
print(json.dumps(out))
'''


# Raw HTTP/1.1 requests to the client's sidecar (outbound capture): for each, the status line of
# the answer, whether the connection was closed after it, and how long it took.
RAW_CLIENT = r'''
import json, socket, sys, time
a = json.loads(sys.argv[1])
out = {}
for name, text in a["requests"].items():
    s = socket.create_connection((a["host"], a["port"]), timeout=8)
    t0 = time.monotonic()
    got = b""
    closed = False
    try:
        s.sendall(text.encode("latin-1"))
        while True:
            x = s.recv(65536)
            if not x:
                closed = True
                break
            got += x
            if b"\r\n\r\n" in got and name.startswith("ok"):
                break
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    out[name] = {"status": got.split(b"\r\n")[0].decode("latin-1"), "closed": closed,
                 "seconds": round(time.monotonic() - t0, 2)}
    s.close()
print(json.dumps(out))
'''


def run_client(m, script, args, python="python3", timeout=60):
    r = m.c.run("client", [python, script, json.dumps(args)], user=APP_UID, check=False, timeout=timeout)
    check(r.returncode == 0, f"{os.path.basename(script)} failed", describe(r))
    return json.loads(r.stdout.strip().splitlines()[-1])


def redis(m, port, *cmd):
    r = m.c.run("client", ["redis-cli", "-h", "store", "-p", str(port), *cmd], user=APP_UID,
                check=False, timeout=20)
    check(r.returncode == 0, f"redis-cli {' '.join(cmd)} on port {port} failed", describe(r))
    return r.stdout.strip()


def metrics(m, pod):
    r = m.c.run(pod, ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15090/stats/prometheus"],
                check=False, timeout=10)
    check(r.returncode == 0, f"scraping {pod}:15090 failed", describe(r))
    return r.stdout


def samples(text, name):
    """(labels dict, value) of each sample of metric `name`."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels_text, _, value = line[len(name) + 1:].rpartition("} ")
        labels = {}
        for part in labels_text.split('",'):
            k, _, v = part.partition('="')
            labels[k] = v.rstrip('"')
        out.append((labels, float(value)))
    return out


def setup(m):
    c = m.c
    for name in ("client", "server", "outside"):
        c.add_pod(name)
    c.add_service("store", VIP)
    c.add_service("other", OTHER_VIP)
    services = SERVICES.format(vip=VIP, other_vip=OTHER_VIP, closed_vip=CLOSED_VIP, empty_vip=EMPTY_VIP, idle_vip=IDLE_VIP, capped_vip=CAPPED_VIP, server=m.ip("server"),
                               outside=m.ip("outside"))
    m.services = m.file("services.yaml", services)
    m.file("registry.yaml", services)
    m.policy = m.file("policy.yaml", POLICY)
    m.banner_client = m.file("banner_client.py", BANNER_CLIENT)
    m.grpc_client = m.file("grpc_client.py", GRPC_CLIENT)
    banner = m.file("banner.py", BANNER)
    grpc_server = m.file("grpc_server.py", GRPC_SERVER)
    ws_server = m.file("ws_server.py", WS_SERVER)
    m.ws_client = m.file("ws_client.py", WS_CLIENT)
    m.grpc_l7_client = m.file("grpc_l7_client.py", GRPC_L7_CLIENT)
    m.grpc_slow_client = m.file("grpc_slow_client.py", GRPC_SLOW_CLIENT)
    m.h1_client = m.file("h1_client.py", H1_CLIENT)
    m.raw_client = m.file("raw_client.py", RAW_CLIENT)
    m.h2_attacks = m.file("h2_attacks.py", H2_ATTACKS)
    m.tls_client = m.file("tls_client.py", TLS_CLIENT)
    tls_app = m.file("tls_app.py", TLS_APP)
    tls_cert, tls_key = os.path.join(m.tmp, "app-tls.crt"), os.path.join(m.tmp, "app-tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", tls_key, "-out", tls_cert, "-days", "1", "-subj", "/CN=store.example"],
                   check=True, capture_output=True)
    for f in (tls_cert, tls_key):
        os.chmod(f, 0o644)
    # An empty gRPC message (compression flag 0, length 0), for a client that sends grpc-timeout
    # without enforcing it itself (curl): the proxy must.
    m.grpc_empty = os.path.join(m.tmp, "grpc_empty.bin")
    with open(m.grpc_empty, "wb") as f:
        f.write(b"\0\0\0\0\0")
    os.chmod(m.grpc_empty, 0o644)
    htdocs = os.path.join(m.tmp, "htdocs")
    os.makedirs(os.path.join(htdocs, "blocked"), exist_ok=True)
    for rel, text in (("hello.txt", "hello over h2c\n"), ("blocked/x", "must not be served\n")):
        with open(os.path.join(htdocs, rel), "w") as f:
            f.write(text)
    with open(os.path.join(htdocs, "big.bin"), "wb") as f:
        f.write(os.urandom(4 * 1024 * 1024))
    for d, _, files in os.walk(htdocs):
        os.chmod(d, 0o755)
        for name in files:
            os.chmod(os.path.join(d, name), 0o644)
    m.start_control()
    apps = []
    for port in (6379, 6380):
        apps.append((port, c.spawn("server", ["redis-server", "--port", str(port), "--bind", "0.0.0.0",
                                              "--protected-mode", "no", "--save", "", "--appendonly", "no",
                                              "--dir", m.tmp], user=(APP_UID, APP_UID),
                                   log_path=os.path.join(m.tmp, f"redis-{port}.log"))))
    apps.append((2525, c.spawn("server", ["python3", banner, "2525", "2526", "2527"], user=(APP_UID, APP_UID),
                               log_path=os.path.join(m.tmp, "banner.log"))))
    m.markers = os.path.join(m.tmp, "markers")
    os.makedirs(m.markers, exist_ok=True)
    os.chmod(m.markers, 0o777)
    apps.append((50051, c.spawn("server", [GRPC_PYTHON, grpc_server, "50051", m.markers], user=(APP_UID, APP_UID),
                                log_path=os.path.join(m.tmp, "grpc.log"))))
    apps.append((8090, c.spawn("server", ["python3", ws_server, "8090"], user=(APP_UID, APP_UID),
                               log_path=os.path.join(m.tmp, "ws.log"))))
    apps.append((8080, c.spawn("server", ["python3", ECHO_APP, "--port", "8080", "--name", "store"],
                               user=(APP_UID, APP_UID), log_path=os.path.join(m.tmp, "echo.log"))))
    apps.append((8443, c.spawn("server", ["nghttpd", "--no-tls", "-a", "0.0.0.0", "-d", htdocs, "8443"],
                               user=(APP_UID, APP_UID), log_path=os.path.join(m.tmp, "nghttpd.log"))))
    apps.append((9443, c.spawn("server", ["python3", tls_app, tls_cert, tls_key, "9443:A", "9444:B"],
                               user=(APP_UID, APP_UID), log_path=os.path.join(m.tmp, "tls-app.log"))))
    for port, proc in apps:
        c.wait_port("node", m.ip("server"), port, timeout=20, proc=proc)
    # Access logs: TEXT from the client's sidecar, JSON from the server's (the proxies run as
    # their own user, so the files are made writable first).
    m.access_log = {pod: os.path.join(m.tmp, f"access-{pod}.log") for pod in ("client", "server")}
    for path in m.access_log.values():
        open(path, "w").close()
        os.chmod(path, 0o666)
    m.init("client")
    m.start_proxy("client", "client", ["--config", m.services, "--workload-name", "client",
                                       "--labels", "app=client", "--access-log", m.access_log["client"]])
    m.init("server")
    m.start_proxy("server", "store", ["--config", m.policy, "--workload-name", "store",
                                      "--labels", "app=store", "--access-log", m.access_log["server"],
                                      "--access-log-encoding", "JSON"])
    for pod in ("client", "server"):
        m.wait_ready(pod)


def test_a_redis_on_a_tcp_port_over_mtls(m):
    m.involved = ["client", "server"]
    before = m.stats("server").get("tls_handshake_ok", 0)
    check(redis(m, 6379, "SET", "k", "v-6379") == "OK", "SET did not answer OK")
    check(redis(m, 6379, "GET", "k") == "v-6379", "GET did not return what SET stored")
    big = "x" * 300000
    r = m.c.run("client", ["redis-cli", "-h", "store", "-p", "6379", "-x", "SET", "big"], user=APP_UID,
                input=big, check=False, timeout=20)
    check(r.returncode == 0 and r.stdout.strip() == "OK", "SET of 300 KB failed", describe(r))
    got = redis(m, 6379, "STRLEN", "big")
    check(got == str(len(big)), f"the 300 KB value did not arrive whole: STRLEN {got}")
    s = m.stats("client")
    check(s.get("downstream_cx_tcp", 0) >= 3, f"client sidecar carried {s.get('downstream_cx_tcp', 0)} TCP connections")
    check(s.get("downstream_cx_detected_tcp", 0) == 0, "a declared TCP port went through detection")
    check(m.stats("server").get("tls_handshake_ok", 0) >= before + 3, "the server sidecar terminated no mTLS")


def test_b_redis_on_an_undeclared_port_is_detected(m):
    m.involved = ["client", "server"]
    check(redis(m, 6380, "SET", "k", "v-6380") == "OK", "SET did not answer OK")
    check(redis(m, 6380, "GET", "k") == "v-6380", "GET on the undeclared port failed")
    s = m.stats("client")
    check(s.get("downstream_cx_detected_tcp", 0) >= 2, "the client sidecar did not detect TCP", json.dumps(s))


def test_c_server_first_on_a_tcp_port_does_not_wait(m):
    m.involved = ["client", "server"]
    out = run_client(m, m.banner_client, {"host": "store", "port": 2525, "send": 200000})
    check(out.get("banner") == "220 banner 2525", "no banner from the server-first app", json.dumps(out))
    check(out.get("answer") == "got 200000", "the half-close did not reach the app, or bytes were lost",
          json.dumps(out))
    check(out["banner_seconds"] < 0.9, f"the banner took {out['banner_seconds']:.2f}s on a declared TCP port")


def test_d_server_first_on_an_undeclared_port_falls_back_to_tcp(m):
    m.involved = ["client", "server"]
    before = m.stats("client").get("downstream_cx_detect_timeout", 0)
    out = run_client(m, m.banner_client, {"host": "store", "port": 2526, "send": 1000})
    check(out.get("banner") == "220 banner 2526", "server-first on an undeclared port stalled", json.dumps(out))
    check(out.get("answer") == "got 1000", "the exchange after detection failed", json.dumps(out))
    check(m.stats("client").get("downstream_cx_detect_timeout", 0) == before + 1,
          "the detection timeout was not counted")


def test_e_authorization_policy_on_tcp(m):
    m.involved = ["client", "server"]
    before = m.stats("server").get("downstream_cx_tcp_rbac_denied", 0)
    out = run_client(m, m.banner_client, {"host": "store", "port": 2527, "send": 10})
    check(not out.get("banner"), "a DENY policy on port 2527 let the connection through", json.dumps(out))
    check(m.stats("server").get("downstream_cx_tcp_rbac_denied", 0) == before + 1, "the denial was not counted")
    # The HTTP-only DENY rule (methods) matches every TCP connection of its source only: ours
    # is not that source, so 2525 still works.
    out = run_client(m, m.banner_client, {"host": "store", "port": 2525, "send": 10})
    check(out.get("answer") == "got 10", "port 2525 was denied too", json.dumps(out))


def test_f_tcp_route_sends_a_port_elsewhere(m):
    m.involved = ["client", "server"]
    out = run_client(m, m.banner_client, {"host": "store", "port": 2528, "send": 10})
    check(out.get("banner") == "220 banner 2525", "the tcp route to other:2525 was not followed", json.dumps(out))


def test_g_grpc_unary_and_streaming(m):
    m.involved = ["client", "server"]
    out = run_client(m, m.grpc_client, {"target": "store:50051", "calls": 20, "chunks": 160},
                     python=GRPC_PYTHON, timeout=120)
    check(out["unary"] == ["echo:hi-%d" % i for i in range(20)], "unary answers wrong", json.dumps(out)[:500])
    check(out["streamed"] == 160 * 65536, f"server stream delivered {out['streamed']} of {160 * 65536} bytes")
    check(out["collected"] == "50000", f"client stream: {out['collected']}")
    check(out["chat"] == ["re:1", "re:2", "re:3"], f"bidi stream: {out['chat']}")


def test_h_tcp_metrics_with_peer_exchange(m):
    m.involved = ["client", "server"]
    opened = samples(metrics(m, "server"), "istio_tcp_connections_opened_total")
    inbound = [(lab, v) for lab, v in opened if lab.get("reporter") == "destination"
               and lab.get("destination_service") == "store.default.svc.cluster.local"]
    check(inbound, "no istio_tcp_connections_opened_total from the destination reporter", str(opened)[:800])
    lab = inbound[0][0]
    check(lab.get("source_principal") == "spiffe://cluster.local/ns/default/sa/client",
          f"source_principal {lab.get('source_principal')}")
    check(lab.get("source_workload") == "client", f"source_workload {lab.get('source_workload')} (metadata exchange)")
    check(lab.get("connection_security_policy") == "mutual_tls", "connection_security_policy")
    check(lab.get("destination_workload") == "store", f"destination_workload {lab.get('destination_workload')}")
    text = metrics(m, "client")
    sent = samples(text, "istio_tcp_received_bytes_total")
    outbound = [(lab, v) for lab, v in sent if lab.get("reporter") == "source"
                and lab.get("destination_service") == "store.default.svc.cluster.local"]
    check(outbound and sum(v for _, v in outbound) >= 300000,
          "the client's istio_tcp_received_bytes_total does not count the 300 KB sent", str(sent)[:800])
    check(any(lab.get("destination_workload") == "store" for lab, _ in outbound),
          "destination_workload from the metadata exchange is missing")
    check(samples(text, "istio_tcp_connections_closed_total"), "no istio_tcp_connections_closed_total")


def test_i_websocket_upgrade_passes_through(m):
    m.involved = ["client", "server"]
    before = m.stats("client").get("downstream_cx_upgrades", 0)
    out = run_client(m, m.ws_client, {"host": "store", "port": 8090})
    check(out["status_line"].startswith("HTTP/1.1 101"), f"no 101: {out['status_line']}", out.get("headers"))
    check("x-saw-xfcc: yes" in out["headers"].lower(), "the app did not get XFCC on the upgrade request",
          out.get("headers"))
    check(out["echoes"] == ["hello-1", "hello-2", "70000 bytes"], f"echoes: {out['echoes']}")
    check(out.get("close") == "8800", f"close frame: {out.get('close')}")
    check(m.stats("client").get("downstream_cx_upgrades", 0) == before + 1, "the upgrade was not counted")
    check(m.stats("server").get("downstream_cx_upgrades", 0) >= 1, "the server sidecar saw no upgrade")


CLIENT_SPIFFE = "spiffe://cluster.local/ns/default/sa/client"


def h1_load(m, host, workers=4, requests=25, body=100000):
    out = run_client(m, m.h1_client, {"host": host, "port": 8080, "workers": workers, "requests": requests,
                                      "body": body}, timeout=120)
    check(not out["errors"], "HTTP/1.1 clients failed", "; ".join(out["errors"])[:800])
    res = out["results"]
    check(len(res) == workers * requests, f"{len(res)} of {workers * requests} answers")
    return res


def test_j_http11_is_carried_over_http2_between_sidecars(m):
    m.involved = ["client", "server"]
    cb, sb = m.stats("client"), m.stats("server")
    res = h1_load(m, "store")
    bad = [r for r in res if r["status"] != 200]
    check(not bad, f"{len(bad)} answers were not 200", json.dumps(bad[:2])[:600])
    check(all(r["version"] == "HTTP/1.1" for r in res), "the app did not see HTTP/1.1",
          json.dumps(sorted({r["version"] for r in res})))
    h = res[0]["headers"]
    check(CLIENT_SPIFFE in h.get("x-forwarded-client-cert", ""), "the app did not get the caller's XFCC",
          json.dumps(h)[:600])
    check(all("x-remora-orig-proto" not in r["headers"] for r in res),
          "the header between the sidecars reached the app")
    check(all(r["headers"].get("x-remora-route") == "echo" for r in res), "the VirtualService's header op is missing")
    posts = [r for r in res if r["sent"]]
    check(posts and all(r["body_length"] == r["sent"] for r in posts), "POST bodies did not arrive whole",
          json.dumps(posts[:2])[:400])
    ca, sa = m.stats("client"), m.stats("server")
    n = len(res)
    rq = ca.get("upstream_rq_http2", 0) - cb.get("upstream_rq_http2", 0)
    cx = ca.get("upstream_cx_http2", 0) - cb.get("upstream_cx_http2", 0)
    check(rq >= n, f"the client sidecar sent {rq} of {n} requests on HTTP/2 streams", json.dumps(ca)[:800])
    # One connection per worker (2): a burst before the first connection is up waits for it.
    check(1 <= cx <= 2, f"the client sidecar opened {cx} HTTP/2 connections for {n} requests from 4 clients "
          "(expected at most one per worker, multiplexed)")
    srq = sa.get("downstream_rq_http2", 0) - sb.get("downstream_rq_http2", 0)
    check(srq >= n, f"the server sidecar received {srq} of {n} requests on HTTP/2 streams")


def test_k_do_not_upgrade_keeps_http11_between_sidecars(m):
    m.involved = ["client", "server"]
    cb = m.stats("client")
    res = h1_load(m, "other", workers=2, requests=10, body=1000)
    check(all(r["status"] == 200 and r["version"] == "HTTP/1.1" for r in res), "answers through other:8080 failed",
          json.dumps(res[:1])[:400])
    check(CLIENT_SPIFFE in res[0]["headers"].get("x-forwarded-client-cert", ""), "no XFCC over HTTP/1.1 mTLS")
    ca = m.stats("client")
    check(ca.get("upstream_rq_http2", 0) == cb.get("upstream_rq_http2", 0),
          "DestinationRule h2UpgradePolicy DO_NOT_UPGRADE still sent requests on HTTP/2")


def test_l_h2c_from_the_app_with_curl_and_h2load(m):
    m.involved = ["client", "server"]
    cb = m.stats("client")
    r = m.c.run("client", ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "--max-time", "10",
                           "http://store:8443/hello.txt"], user=APP_UID, check=False, timeout=20)
    check(r.returncode == 0, "curl --http2-prior-knowledge failed", describe(r))
    out = r.stdout
    check(out.startswith("HTTP/2 200"), f"no HTTP/2 200: {out.splitlines()[0] if out else ''}", out[:600])
    check("x-remora-route: h2c" in out.lower(), "the response header op of the route is missing", out[:600])
    check(out.rstrip().endswith("hello over h2c"), "the file did not arrive", out[:600])
    r = m.c.run("client", ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                           "--max-time", "10", "http://store:8443/blocked/x"], user=APP_UID, check=False, timeout=20)
    check(r.stdout.strip() == "418", f"the fault abort answered {r.stdout.strip()}", describe(r))
    # A burst of 32 streams on a cold pool: they wait for the connection being made, none is refused.
    r = m.c.run("client", ["h2load", "-n", "400", "-c", "2", "-m", "16", "http://store:8443/hello.txt"],
                user=APP_UID, check=False, timeout=60)
    check(r.returncode == 0 and "400 succeeded" in r.stdout and "400 2xx" in r.stdout,
          "h2load through the sidecars did not get 400 answers of 2xx", describe(r))
    ca = m.stats("client")
    d = ca.get("downstream_rq_http2", 0) - cb.get("downstream_rq_http2", 0)
    check(d >= 402, f"the client sidecar counted {d} HTTP/2 requests from the app")
    cx = ca.get("upstream_cx_http2", 0) - cb.get("upstream_cx_http2", 0)
    check(1 <= cx <= 4, f"{cx} HTTP/2 connections to the server sidecar for 400 streams")


def test_m_grpc_retries_faults_and_deadlines(m):
    m.involved = ["client", "server"]
    out = run_client(m, m.grpc_l7_client, {"target": "store:50051", "calls": 40}, python=GRPC_PYTHON, timeout=120)
    check(out["flaky"] == {"OK": 40}, "retryOn unavailable did not hide the failing calls", json.dumps(out))
    check(out["server_calls"]["Flaky"] == 80, "the server did not see each call twice (fail, retry)", json.dumps(out))
    check(out["noretry"].get("UNAVAILABLE", 0) == 20 and out["noretry"].get("OK", 0) == 20,
          "retries: {attempts: 0} still retried, or the status was lost", json.dumps(out))
    check(out["denied"] == {"PERMISSION_DENIED": 3}, "fault abort grpcStatus PERMISSION_DENIED", json.dumps(out))
    # grpc-timeout from a client that does not enforce it (curl): the proxy answers
    # DEADLINE_EXCEEDED in a trailers-only response when it passes.
    r = m.c.run("client", ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                           "-w", "time=%{time_total}\n", "--max-time", "10",
                           "-H", "content-type: application/grpc", "-H", "te: trailers",
                           "-H", "grpc-timeout: 300m", "--data-binary", "@" + m.grpc_empty,
                           "http://store:50051/test.Svc/Sleep"], user=APP_UID, check=False, timeout=20)
    check(r.returncode == 0, "curl to the gRPC Sleep method failed", describe(r))
    check("grpc-status: 4" in r.stdout.lower(), "no grpc-status 4 (DEADLINE_EXCEEDED) from the proxy", r.stdout[:600])
    took = float(r.stdout.rsplit("time=", 1)[1].split()[0])
    check(took < 2.5, f"the answer took {took:.2f}s: grpc-timeout 300m was not honoured (the method sleeps 3s)")
    text = metrics(m, "client")
    reqs = [(lab, v) for lab, v in samples(text, "istio_requests_total")
            if lab.get("reporter") == "source" and lab.get("request_protocol") == "grpc"]
    codes = {lab.get("grpc_response_status") for lab, _ in reqs}
    check({"0", "14", "7"} <= codes, f"grpc_response_status values {sorted(codes)} lack 0, 14 or 7",
          str(reqs)[:800])


def proxy_rss_kb(m, pod):
    """Resident memory of the pod's remora-proxy (the process spawned, or its child)."""
    pid = m.proxies[pod].proc.pid
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for cand in [pid] + [int(x) for x in children]:
        try:
            with open(f"/proc/{cand}/comm") as f:
                if f.read().strip() != "remora-proxy":
                    continue
            with open(f"/proc/{cand}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            continue
    raise Failure(f"no remora-proxy process found for pod {pod}")


def test_n_http2_attacks_with_raw_frames(m):
    m.involved = ["client", "server"]
    before = m.stats("client")
    out = run_client(m, m.h2_attacks, {"mode": "floods"}, timeout=120)
    for name in ("rapid_reset", "continuation_flood", "hpack_bomb", "settings_flood"):
        ended = out[name]
        check(ended["goaway"] is not None or ended["closed"],
              f"{name}: the sidecar kept the connection open", json.dumps(out))
    after = m.stats("client")
    for counter in ("http2.rapid_reset", "http2.continuation_flood", "http2.header_overflow",
                    "http2.settings_flood"):
        d = after.get(counter, 0) - before.get(counter, 0)
        check(d >= 1, f"/stats {counter} did not count its attack (+{d})",
              json.dumps({k: v for k, v in after.items() if k.startswith("http2.")}))
    # Ten readers that never open their window, each asking for 4 MB: the sidecar keeps at most
    # its per-connection buffer bound for each (and the upstream waits), not the files.
    rss0 = proxy_rss_kb(m, "client")
    holder = m.c.spawn("client", ["python3", m.h2_attacks, json.dumps({"mode": "zero_window", "hold": 6})],
                       user=(APP_UID, APP_UID), log_path=os.path.join(m.tmp, "zero_window.log"))
    time.sleep(4)
    rss1 = proxy_rss_kb(m, "client")
    check(rss1 - rss0 < 30 * 1024, f"the client sidecar grew by {rss1 - rss0} KiB for ten 4 MB "
          "responses nobody reads (bound: 30 MiB)")
    # Meanwhile, and after all of it, other connections are served.
    r = m.c.run("client", ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "10",
                           "http://store:8443/hello.txt"], user=APP_UID, check=False, timeout=20)
    check(r.returncode == 0 and r.stdout.strip() == "hello over h2c",
          "a normal HTTP/2 request failed beside the attacks", describe(r))
    holder.wait(timeout=30)
    check(m.proxies["client"].proc.poll() is None, "the client sidecar exited")


def test_o_http11_strictness(m):
    """RFC 9112 where it costs nothing: Host (two, invalid, missing on HTTP/1.1) is a 400; broken
    chunked framing is a 400 and a close, never a silent close or a hang; CONNECT is a 405."""
    m.involved = ["client"]
    post = "POST /echo HTTP/1.1\r\nHost: store:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
    requests = {
        "ok_chunked": post + "5\r\nhello\r\n0\r\n\r\n",
        "two_hosts": "GET / HTTP/1.1\r\nHost: store:8080\r\nHost: other:8080\r\n\r\n",
        "invalid_host": "GET / HTTP/1.1\r\nHost: store:8080/x y\r\n\r\n",
        "missing_host": "GET / HTTP/1.1\r\nUser-Agent: raw\r\n\r\n",
        "chunk_zz": post + "zz\r\nhello\r\n0\r\n\r\n",
        "chunk_negative": post + "-5\r\nhello\r\n0\r\n\r\n",
        "chunk_overflow": post + "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "chunk_0x": post + "0x5\r\nhello\r\n0\r\n\r\n",
        "chunk_leading_space": post + " 5\r\nhello\r\n0\r\n\r\n",
        "chunk_overlong_data": post + "5\r\nhelloEXTRA\r\n0\r\n\r\n",
        "chunk_bare_lf": post + "5\nhello\n0\n\n",
        "connect": "CONNECT store:8080 HTTP/1.1\r\nHost: store:8080\r\n\r\n",
    }
    before = m.stats("client").get("downstream_rq_bad_request", 0)
    out = run_client(m, m.raw_client, {"host": "store", "port": 8080, "requests": requests}, timeout=120)
    check(out["ok_chunked"]["status"].startswith("HTTP/1.1 200"), "a valid chunked POST failed",
          json.dumps(out["ok_chunked"]))
    bad = {}
    for name, want in (("two_hosts", "400"), ("invalid_host", "400"), ("missing_host", "400"),
                       ("chunk_zz", "400"), ("chunk_negative", "400"), ("chunk_overflow", "400"),
                       ("chunk_0x", "400"), ("chunk_leading_space", "400"),
                       ("chunk_overlong_data", "400"), ("chunk_bare_lf", "400"), ("connect", "405")):
        got = out[name]
        if not got["status"].startswith("HTTP/1.1 " + want) or not got["closed"] or got["seconds"] > 5:
            bad[name] = got
    check(not bad, f"{len(bad)} requests not refused with a status and a close", json.dumps(bad)[:1500])
    check(m.stats("client").get("downstream_rq_bad_request", 0) >= before + 10,
          "the 400s were not counted as downstream_rq_bad_request")


def test_p_http2_client_to_an_http11_port_is_downgraded(m):
    """An h2c client calling a port declared HTTP: the app behind it speaks HTTP/1.1 only, so the
    server sidecar speaks HTTP/1.1 to it (Istio's inbound cluster for an HTTP port does the same)."""
    m.involved = ["client", "server"]
    r = m.c.run("client", ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "--max-time", "10",
                           "-H", "x-probe: downgrade", "http://store:8080/echo"],
                user=APP_UID, check=False, timeout=20)
    check(r.returncode == 0, "curl --http2-prior-knowledge to an HTTP port failed", describe(r))
    check(r.stdout.startswith("HTTP/2 200"), f"no HTTP/2 200: {r.stdout.splitlines()[0] if r.stdout else ''}",
          r.stdout[:800])
    body = r.stdout.replace("\r\n", "\n").split("\n\n", 1)[-1]
    try:
        seen = json.loads(body)
    except ValueError:
        raise Failure("the echo app's answer is not JSON", [body[:600]])
    check(seen.get("version") == "HTTP/1.1", f"the app saw {seen.get('version')}", json.dumps(seen)[:600])
    check(seen.get("headers", {}).get("x-probe") == "downgrade", "the request's header did not arrive",
          json.dumps(seen)[:600])


def tls_call(m, pod, host, port, sni, alpn="-"):
    r = m.c.run(pod, ["python3", m.tls_client, host, str(port), sni, alpn], user=(APP_UID, APP_UID),
                check=False, timeout=20)
    check(r.returncode == 0, f"TLS from {pod} to {host}:{port} (SNI {sni}) failed", describe(r))
    return r.stdout.strip()


def test_q_app_tls_routed_by_sni_and_passed_through(m):
    # The app's own TLS to a port declared TLS is carried untouched (the app's certificate, its
    # ALPN) over mTLS between the sidecars; a VirtualService tls[] route sends the server names
    # it lists to another port. Fails if the proxy ignores tls[] routes (b.store.example would
    # reach app A) or touches the TLS (the handshake would fail or name another certificate).
    m.involved = ["client", "server"]
    before = m.stats("client").get("tls_sni_route", 0)
    got = tls_call(m, "client", VIP, 9443, "a.store.example")
    check(got == "app=A sni=a.store.example alpn=None", f"SNI a.store.example: {got!r}")
    got = tls_call(m, "client", VIP, 9443, "b.store.example", "h2,http/1.1")
    check(got == "app=B sni=b.store.example alpn=h2", f"SNI b.store.example: {got!r}, expected app B")
    got = tls_call(m, "client", VIP, 9443, "x.b.store.example")
    check(got.startswith("app=B "), f"SNI x.b.store.example (wildcard *.b.store.example): {got!r}")
    got = tls_call(m, "client", VIP, 9443, "-")
    check(got == "app=A sni=None alpn=None", f"no SNI: {got!r}, expected the port's own app")
    check(m.stats("client").get("tls_sni_route", 0) - before == 2, "tls_sni_route did not count 2 routed connections")
    check(m.stats("server").get("downstream_cx_tls_passthrough", 0) == 0,
          "the server sidecar took its peer's mTLS for an app's TLS")


def test_r_permissive_passes_app_tls_from_outside_the_mesh(m):
    # A client outside the mesh (no sidecar) speaking TLS straight to the server pod: its
    # PERMISSIVE sidecar must hand the TLS to the app untouched, as Istio's inbound passthrough
    # chain does, and not try to terminate it as mTLS (which fails: the client has no SVID).
    m.involved = ["server"]
    before = m.stats("server").get("downstream_cx_tls_passthrough", 0)
    got = tls_call(m, "outside", m.ip("server"), 9443, "direct.store.example", "h2,http/1.1")
    check(got == "app=A sni=direct.store.example alpn=h2", f"TLS from outside: {got!r}")
    got = tls_call(m, "outside", m.ip("server"), 9444, "-")
    check(got == "app=B sni=None alpn=None", f"TLS from outside, no SNI: {got!r}")
    check(m.stats("server").get("downstream_cx_tls_passthrough", 0) - before == 2,
          "downstream_cx_tls_passthrough did not count the two connections")
    # Plaintext from outside still works under PERMISSIVE, and a meshed client still gets mTLS.
    got = tls_call(m, "client", VIP, 9444, "-")
    check(got.startswith("app=B "), f"meshed client to 9444: {got!r}")


def access_lines(m, pod, start, want, what):
    """The access-log lines of `pod` after byte offset `start` that `want(line)` accepts; waits
    (bounded) for the writer thread to write one."""
    deadline = time.monotonic() + 15
    while True:
        with open(m.access_log[pod], encoding="utf-8") as f:
            f.seek(start)
            lines = [line.rstrip("\n") for line in f if line.strip()]
        found = [line for line in lines if want(line)]
        if found or time.monotonic() > deadline:
            check(found, f"no access-log line in {pod} for {what}", "\n".join(lines[-20:]))
            return found


# Istio's TEXT format for a TCP connection, then Remora's peer identity and reporter.
TCP_LINE = re.compile(
    r'^\[(?P<start>[^\]]+)\] "- - -" 0 (?P<flags>\S+) - (?P<termination>\S+) "(?P<failure>[^"]*)" '
    r'(?P<received>\d+) (?P<sent>\d+) (?P<duration>\d+) - "-" "-" "-" "-" "(?P<upstream_host>[^"]*)" '
    r'(?P<cluster>\S+) (?P<upstream_local>\S+) (?P<downstream_local>\S+) (?P<downstream_remote>\S+) '
    r'(?P<sni>\S+) - "(?P<peer>[^"]*)" (?P<reporter>source|destination)$')


def tcp_line(line):
    got = TCP_LINE.match(line)
    check(got, f"not a TCP access-log line: {line}")
    return got.groupdict()


def test_s_tcp_connections_write_access_log_lines(m):
    m.involved = ["client", "server"]
    start = {pod: os.path.getsize(m.access_log[pod]) for pod in ("client", "server")}
    server_ip = m.ip("server")
    # A TCP exchange with exact byte counts: 1000 bytes up, the banner and the answer down.
    out = run_client(m, m.banner_client, {"host": "store", "port": 2525, "send": 1000})
    check(out.get("answer") == "got 1000", "the banner exchange failed", json.dumps(out))
    down = len("220 banner 2525\r\n") + len("got 1000\r\n")
    text = access_lines(m, "client", start["client"], lambda l: f" {VIP}:2525 " in l, "the banner connection")
    f = tcp_line(text[-1])
    check(f["flags"] == "-" and f["received"] == "1000" and f["sent"] == str(down),
          f"flags, bytes received/sent wrong (want -, 1000, {down}): {text[-1]}")
    check(f["upstream_host"] == f"{server_ip}:2525" and
          f["cluster"] == "outbound|2525||store.default.svc.cluster.local", f"upstream host or cluster: {text[-1]}")
    check(f["upstream_local"].startswith(m.ip("client") + ":") and f["downstream_local"] == f"{VIP}:2525" and
          f["downstream_remote"].startswith(m.ip("client") + ":"), f"addresses wrong: {text[-1]}")
    check(f["peer"] == "spiffe://cluster.local/ns/default/sa/store" and f["reporter"] == "source",
          f"peer or reporter wrong: {text[-1]}")
    js = [json.loads(l) for l in access_lines(
        m, "server", start["server"],
        lambda l: f'"downstream_local_address":"{server_ip}:2525"' in l, "the inbound banner connection")]
    j = js[-1]
    check(j["response_code"] == 0 and j["method"] is None and j["response_flags"] == "-", f"inbound line: {j}")
    check(j["bytes_received"] == 1000 and j["bytes_sent"] == down, f"inbound bytes: {j}")
    check(j["upstream_cluster"] == "inbound|2525||" and j["reporter"] == "destination" and
          j["downstream_peer_uri_san"] == CLIENT_SPIFFE, f"inbound cluster, reporter or peer: {j}")
    # Redis: both sidecars count the same bytes.
    check(redis(m, 6379, "SET", "logged", "yes") == "OK", "SET did not answer OK")
    text = access_lines(m, "client", start["client"], lambda l: f" {VIP}:6379 " in l, "the redis connection")
    f = tcp_line(text[-1])
    j = access_lines(m, "server", start["server"],
                     lambda l: f'"downstream_local_address":"{server_ip}:6379"' in l, "the inbound redis connection")
    j = json.loads(j[-1])
    check(int(f["received"]) > 0 and f["sent"] == "5", f"redis bytes on the client: {text[-1]}")  # "+OK\r\n"
    check([j["bytes_received"], j["bytes_sent"]] == [int(f["received"]), int(f["sent"])],
          f"the two sidecars disagree on the redis bytes: {text[-1]} / {j}")
    # No app on the port: the server's sidecar cannot connect (UF, Envoy's reason).
    run_client(m, m.banner_client, {"host": "store", "port": 2529, "send": 10})
    j = json.loads(access_lines(m, "server", start["server"],
                                lambda l: f'"downstream_local_address":"{server_ip}:2529"' in l, "port 2529")[-1])
    check(j["response_flags"] == "UF" and j["upstream_transport_failure_reason"] == "delayed connect error: 111" and
          j["upstream_cluster"] == "inbound|2529||", f"inbound connect failure: {j}")
    # Denied by an L4 AuthorizationPolicy: Envoy's RBAC termination details.
    run_client(m, m.banner_client, {"host": "store", "port": 2527, "send": 10})
    j = json.loads(access_lines(m, "server", start["server"],
                                lambda l: f'"downstream_local_address":"{server_ip}:2527"' in l, "port 2527")[-1])
    check((j["connection_termination_details"] or "").startswith("rbac_access_denied_matched_policy[") and
          "deny-2527" in j["connection_termination_details"] and j["upstream_host"] is None,
          f"RBAC denial: {j}")
    # A plaintext endpoint that refuses: the client's sidecar logs UF.
    out = run_client(m, m.banner_client, {"host": CLOSED_VIP, "port": 2529, "send": 10})
    check(not out.get("banner"), "a refused upstream gave a banner", json.dumps(out))
    text = access_lines(m, "client", start["client"], lambda l: f" {CLOSED_VIP}:2529 " in l, "the refused connection")
    f = tcp_line(text[-1])
    check(f["flags"] == "UF" and f["upstream_host"] == f'{m.ip("outside")}:2529' and
          (f["received"], f["sent"]) == ("0", "0"),
          f"refused connection's line: {text[-1]}")
    # Idle past the DestinationRule's tcp.idleTimeout: the sidecar closes it and says why.
    out = run_client(m, m.banner_client, {"host": IDLE_VIP, "port": 2525, "hold": True, "timeout": 20})
    check(out.get("closed") is True, "the idle connection was not closed by the sidecar", json.dumps(out))
    text = access_lines(m, "client", start["client"], lambda l: f" {IDLE_VIP}:2525 " in l, "the idle connection")
    f = tcp_line(text[-1])
    check(f["termination"] == "tcp_session_idle_timeout" and f["sent"] == str(len("220 banner 2525\r\n")),
          f"idle-timeout line: {text[-1]}")
    # A service without endpoints: no healthy upstream (UH), its cluster named, no host.
    run_client(m, m.banner_client, {"host": EMPTY_VIP, "port": 2530, "send": 10})
    text = access_lines(m, "client", start["client"], lambda l: f" {EMPTY_VIP}:2530 " in l, "the service without endpoints")
    f = tcp_line(text[-1])
    check(f["flags"] == "UH" and f["upstream_host"] == "-" and
          f["cluster"] == "outbound|2530||empty.default.svc.cluster.local", f"no endpoint's line: {text[-1]}")
    # Past the DestinationRule's tcp.maxConnections (1): while one connection is open, the next
    # is closed at once (UO, the breaker's cluster named); the first is not disturbed.
    held = {}
    active = m.stats("client").get("downstream_cx_active", 0)
    first = threading.Thread(target=lambda: held.update(run_client(
        m, m.banner_client, {"host": CAPPED_VIP, "port": 2525, "hold": True, "timeout": 3})))
    first.start()
    try:
        deadline = time.monotonic() + 15
        while m.stats("client").get("downstream_cx_active", 0) <= active and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # its upstream connection (the breaker's count) follows the downstream one
        out = run_client(m, m.banner_client, {"host": CAPPED_VIP, "port": 2525, "send": 10})
    finally:
        first.join()
    check(held.get("banner", "").startswith("220"), "the first connection under maxConnections 1 got no banner",
          json.dumps(held))
    check(not out.get("banner"), "a second connection past maxConnections 1 got a banner", json.dumps(out))
    text = access_lines(m, "client", start["client"], lambda l: f" {CAPPED_VIP}:2525 " in l, "the capped connections")
    flags = [tcp_line(l)["flags"] for l in text]
    over = [tcp_line(l) for l in text if tcp_line(l)["flags"] == "UO"]
    check(sorted(flags) == ["-", "UO"] and over[0]["cluster"] == "outbound|2525||capped.default.svc.cluster.local"
          and over[0]["upstream_host"] == "-", f"capped connections' lines (want one '-' and one UO): {text}")


def test_t_slow_grpc_client_stream_is_retried_whole(m):
    # HTTP/2 from the app: the request body (a client stream) streams to the first attempt while
    # the sidecar keeps a copy; the retry after UNAVAILABLE resends every message.
    m.involved = ["client", "server"]
    before = m.stats("client").get("upstream_rq_retry", 0)
    out = run_client(m, m.grpc_slow_client, {"target": "store:50051", "calls": 4, "size": 20000, "pause": 0.1,
                                             "markers": m.markers, "tag": "t"}, python=GRPC_PYTHON, timeout=150)
    check(out["answers"] == ["60000"] * 4, "the slow client streams were not retried whole", json.dumps(out))
    check(out["streamed"] == [True] * 4, "the app did not get the first message before the client sent its last "
          "(the body was held back instead of streamed)", json.dumps(out))
    calls = out["server_calls"]
    check(calls["FlakyCollect"] == 8 and calls["FlakyCollectSizes"] == [60000] * 8,
          "the app did not see each call twice with its whole stream", json.dumps(calls))
    check(m.stats("client").get("upstream_rq_retry", 0) - before >= 4, "the client sidecar retried fewer than 4")


TESTS = [
    ("a_redis_on_a_tcp_port_over_mtls", test_a_redis_on_a_tcp_port_over_mtls),
    ("b_redis_on_an_undeclared_port_is_detected", test_b_redis_on_an_undeclared_port_is_detected),
    ("c_server_first_on_a_tcp_port_does_not_wait", test_c_server_first_on_a_tcp_port_does_not_wait),
    ("d_server_first_on_an_undeclared_port_falls_back_to_tcp",
     test_d_server_first_on_an_undeclared_port_falls_back_to_tcp),
    ("e_authorization_policy_on_tcp", test_e_authorization_policy_on_tcp),
    ("f_tcp_route_sends_a_port_elsewhere", test_f_tcp_route_sends_a_port_elsewhere),
    ("g_grpc_unary_and_streaming", test_g_grpc_unary_and_streaming),
    ("h_tcp_metrics_with_peer_exchange", test_h_tcp_metrics_with_peer_exchange),
    ("i_websocket_upgrade_passes_through", test_i_websocket_upgrade_passes_through),
    ("j_http11_is_carried_over_http2_between_sidecars", test_j_http11_is_carried_over_http2_between_sidecars),
    ("k_do_not_upgrade_keeps_http11_between_sidecars", test_k_do_not_upgrade_keeps_http11_between_sidecars),
    ("l_h2c_from_the_app_with_curl_and_h2load", test_l_h2c_from_the_app_with_curl_and_h2load),
    ("m_grpc_retries_faults_and_deadlines", test_m_grpc_retries_faults_and_deadlines),
    ("n_http2_attacks_with_raw_frames", test_n_http2_attacks_with_raw_frames),
    ("o_http11_strictness", test_o_http11_strictness),
    ("p_http2_client_to_an_http11_port_is_downgraded", test_p_http2_client_to_an_http11_port_is_downgraded),
    ("q_app_tls_routed_by_sni_and_passed_through", test_q_app_tls_routed_by_sni_and_passed_through),
    ("r_permissive_passes_app_tls_from_outside_the_mesh", test_r_permissive_passes_app_tls_from_outside_the_mesh),
    ("s_tcp_connections_write_access_log_lines", test_s_tcp_connections_write_access_log_lines),
    ("t_slow_grpc_client_stream_is_retried_whole", test_t_slow_grpc_client_stream_is_retried_whole),
]


def main():
    return run_suite(__doc__.splitlines()[0], "remora-p", "remora-test-protocols-", setup, TESTS,
                     tools=("curl", "setpriv", "iptables-restore", "python3", "redis-cli", "redis-server",
                            "nghttpd", "h2load"))


if __name__ == "__main__":
    sys.exit(main())
