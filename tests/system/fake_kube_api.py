#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server's list and watch, for tests of remora-control --kube.

No API server can run here, so this serves the part of its documented HTTP/JSON protocol that a
watching client sees (kubernetes.io/docs/reference/using-api/api-concepts/, "Efficient detection
of changes", "Watch bookmarks", "Retrieving large results sets in chunks"):

- collections at their real paths (/api/v1/services, /apis/discovery.k8s.io/v1/endpointslices,
  /apis/networking.istio.io/v1/virtualservices, ...), cluster-wide; a kind not registered here
  answers 404 like a CRD that is not installed;
- one resourceVersion counter for everything (as etcd's revision); list answers
  {"kind": "<Kind>List", "metadata": {"resourceVersion", "continue"}, "items": [...]} with items
  WITHOUT kind and apiVersion, as the real server does, paged by `limit` and `continue`;
- `?watch=1&resourceVersion=RV` streams, chunked, one JSON event per line:
  {"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}} for every change after RV, then new
  ones as they happen; with allowWatchBookmarks=true a
  {"type": "BOOKMARK", "object": {"kind", "apiVersion", "metadata": {"resourceVersion"}}} every
  --bookmark-every seconds; the stream ends (cleanly) after timeoutSeconds;
- a watch from a version older than the kept history gets 410 Gone, either as the HTTP status
  with a metav1.Status body or, with --gone-as-event (what the watch cache does), as
  {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", ...}};
- `Authorization: Bearer <token>` is required when --token is given (401 otherwise).

Test controls (not part of Kubernetes) under /_fake/:
  POST   /_fake/objects         body: an object with kind/apiVersion/metadata -> create or update
  DELETE /_fake/objects?kind=K&namespace=NS&name=N
  POST   /_fake/compact         forget the history: older watches get 410 (?drop=1: and drop
                                every open watch at once, so each comes back with a version too old)
  POST   /_fake/gone            send ERROR 410 on every open watch (and forget the history)
  POST   /_fake/drop            close every open watch connection mid-stream, without the last chunk
  GET    /_fake/requests        the requests served so far: [{"path", "query", "status"}]

    python3 fake_kube_api.py --listen 127.0.0.1:0 --port-file F [--cert C --key K] [--token T]
"""

import argparse
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (group/version, plural) -> Kind, for the kinds remora-control watches.
KINDS = {
    ("v1", "namespaces"): "Namespace",
    ("v1", "pods"): "Pod",
    ("v1", "services"): "Service",
    ("discovery.k8s.io/v1", "endpointslices"): "EndpointSlice",
}
for _v in ("v1", "v1beta1"):
    for _plural, _kind in [("virtualservices", "VirtualService"), ("destinationrules", "DestinationRule"),
                           ("serviceentries", "ServiceEntry"), ("workloadentries", "WorkloadEntry")]:
        KINDS[(f"networking.istio.io/{_v}", _plural)] = _kind
    for _plural, _kind in [("peerauthentications", "PeerAuthentication"),
                           ("authorizationpolicies", "AuthorizationPolicy")]:
        KINDS[(f"security.istio.io/{_v}", _plural)] = _kind


class State:
    def __init__(self, served_versions):
        self.cond = threading.Condition()
        self.rv = 100
        self.objects = {}   # kind -> {(ns, name): obj}
        self.history = []   # (rv, kind, type, obj)
        self.oldest = 100   # the oldest version a watch may start from
        self.drops = 0      # generation: open watches compare and drop
        self.gones = 0
        self.requests = []
        self.served_versions = served_versions  # e.g. {"networking.istio.io": ["v1beta1"]}

    def change(self, obj, deleted=False):
        with self.cond:
            kind = obj["kind"]
            meta = obj.setdefault("metadata", {})
            key = (meta.get("namespace", ""), meta["name"])
            objs = self.objects.setdefault(kind, {})
            if deleted:
                if key not in objs:
                    return None
                obj = objs.pop(key)
                self.rv += 1
                obj = json.loads(json.dumps(obj))
                obj["metadata"]["resourceVersion"] = str(self.rv)
                etype = "DELETED"
            else:
                etype = "MODIFIED" if key in objs else "ADDED"
                self.rv += 1
                meta["resourceVersion"] = str(self.rv)
                meta.setdefault("uid", f"uid-{kind}-{key[0]}-{key[1]}")
                objs[key] = obj
            self.history.append((self.rv, kind, etype, json.loads(json.dumps(obj))))
            self.cond.notify_all()
            return self.rv


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def make_handler(state, token, bookmark_every, gone_as_event):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("fake-kube-api: " + (fmt % args) + "\n")

        def send_json(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def record(self, path, query, code):
            with state.cond:
                state.requests.append({"path": path, "query": query, "status": code})

        def read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        # ---- test controls ----
        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            body = self.read_body()
            if url.path == "/_fake/objects":
                obj = json.loads(body)
                rv = state.change(obj)
                return self.send_json(200, {"resourceVersion": str(rv)})
            if url.path == "/_fake/compact":
                with state.cond:
                    # Past every version a client has seen (bookmarks included): the next watch
                    # from any of them is too old.
                    state.rv += 1
                    state.oldest = state.rv
                    state.history.clear()
                    if "drop" in url.query:
                        # And every open watch dropped in the same moment: none can get a bookmark
                        # of the new version first, so every one comes back too old.
                        state.drops += 1
                        state.cond.notify_all()
                return self.send_json(200, {"oldest": state.oldest})
            if url.path == "/_fake/gone":
                with state.cond:
                    state.rv += 1
                    state.oldest = state.rv
                    state.history.clear()
                    state.gones += 1
                    state.cond.notify_all()
                return self.send_json(200, {})
            if url.path == "/_fake/drop":
                with state.cond:
                    state.drops += 1
                    state.cond.notify_all()
                return self.send_json(200, {})
            self.send_json(404, status(404, "NotFound", "not found"))

        def do_DELETE(self):
            url = urllib.parse.urlsplit(self.path)
            self.read_body()
            q = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/_fake/objects":
                rv = state.change({"kind": q["kind"], "metadata": {"namespace": q.get("namespace", ""),
                                                                     "name": q["name"]}}, deleted=True)
                return self.send_json(200 if rv else 404, {"resourceVersion": str(rv)})
            self.send_json(404, status(404, "NotFound", "not found"))

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/_fake/requests":
                with state.cond:
                    return self.send_json(200, list(state.requests))
            if token and self.headers.get("Authorization") != f"Bearer {token}":
                self.record(url.path, url.query, 401)
                return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            parts = url.path.strip("/").split("/")
            gv = plural = None
            if len(parts) == 3 and parts[0] == "api":
                gv, plural = parts[1], parts[2]
            elif len(parts) == 4 and parts[0] == "apis":
                gv, plural = f"{parts[1]}/{parts[2]}", parts[3]
            kind = KINDS.get((gv, plural))
            group = gv.split("/")[0] if gv and "/" in gv else ""
            if kind and group in state.served_versions and gv.split("/")[1] not in state.served_versions[group]:
                kind = None
            if not kind:
                self.record(url.path, url.query, 404)
                return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            if q.get("watch") in ("1", "true"):
                return self.watch(url, q, kind, gv)
            return self.list(url, q, kind)

        def list(self, url, q, kind):
            with state.cond:
                items = sorted(state.objects.get(kind, {}).items())
                rv = state.rv
            limit = int(q.get("limit") or 0)
            start, list_rv = 0, rv
            if q.get("continue"):
                c = json.loads(urllib.parse.unquote(q["continue"]))
                start, list_rv = c["start"], c["rv"]
            out = []
            for _, obj in items[start:]:
                o = json.loads(json.dumps(obj))
                o.pop("kind", None)  # list items come without kind and apiVersion
                o.pop("apiVersion", None)
                out.append(o)
            cont = ""
            if limit and len(out) > limit:
                out = out[:limit]
                cont = json.dumps({"start": start + limit, "rv": list_rv})
            self.record(url.path, url.query, 200)
            self.send_json(200, {"kind": kind + "List", "apiVersion": "v1",
                                 "metadata": {"resourceVersion": str(list_rv), "continue": cont},
                                 "items": out})

        def chunk(self, obj):
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def watch(self, url, q, kind, gv):
            since = int(q.get("resourceVersion") or 0)
            timeout = float(q.get("timeoutSeconds") or 1800)
            bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
            with state.cond:
                too_old = since < state.oldest
                drops, gones = state.drops, state.gones
            if too_old and not gone_as_event:
                self.record(url.path, url.query, 410)
                return self.send_json(410, status(410, "Expired", f"too old resource version: {since} ({state.oldest})"))
            self.record(url.path, url.query, 200)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if too_old:
                self.chunk({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since} ({state.oldest})")})
                self.wfile.write(b"0\r\n\r\n")
                return
            end = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            sent = since
            try:
                while True:
                    with state.cond:
                        pending = [(rv, t, o) for rv, k, t, o in state.history if k == kind and rv > sent]
                        if not pending and state.drops == drops and state.gones == gones:
                            state.cond.wait(timeout=0.2)
                            pending = [(rv, t, o) for rv, k, t, o in state.history if k == kind and rv > sent]
                        dropped = state.drops != drops
                        gone = state.gones != gones
                        current = state.rv
                    if dropped:
                        # Mid-stream: no terminating chunk, the connection just goes.
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if gone:
                        self.chunk({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
                        break
                    for rv, t, o in pending:
                        o = dict(o)
                        o["apiVersion"] = gv
                        self.chunk({"type": t, "object": o})
                        sent = rv
                    now = time.monotonic()
                    if bookmarks and now - last_bookmark >= bookmark_every:
                        self.chunk({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": gv,
                                                                   "metadata": {"resourceVersion": str(current)}}})
                        sent = max(sent, current)
                        last_bookmark = now
                    if now >= end:
                        break
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--token")
    ap.add_argument("--bookmark-every", type=float, default=1.0)
    ap.add_argument("--gone-as-event", action="store_true")
    ap.add_argument("--serve-versions", default="",
                    help="group=v1,v1beta1;... (e.g. networking.istio.io=v1beta1 for an old Istio)")
    a = ap.parse_args()
    served = {}
    for item in filter(None, a.serve_versions.split(";")):
        g, vs = item.split("=")
        served[g] = vs.split(",")
    host, port = a.listen.rsplit(":", 1)
    state = State(served)
    server = ThreadingHTTPServer((host, int(port)), make_handler(state, a.token, a.bookmark_every, a.gone_as_event))
    server.daemon_threads = True
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(a.port_file + ".tmp", a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
