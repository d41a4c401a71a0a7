#!/usr/bin/env python3
"""A Zipkin v2 collector for Remora's system tests (standard library only): it validates every
POST /api/v2/spans against the Zipkin v2 JSON model and keeps the spans.

    python3 zipkin_collector.py [--port 9411] [--bind 0.0.0.0] [--delay-ms N]

GET /spans answers {"spans": [...], "errors": ["why a batch or span was invalid", ...],
"posts": N}. --delay-ms makes every POST wait before answering (a slow collector).
"""

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX_TRACE = re.compile(r"^([0-9a-f]{16}|[0-9a-f]{32})$")
KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}


def span_errors(s):
    """What makes `s` an invalid Zipkin v2 span (empty when valid)."""
    if not isinstance(s, dict):
        return ["a span is not a JSON object"]
    errs = []
    if not HEX_TRACE.match(str(s.get("traceId", ""))):
        errs.append(f"traceId {s.get('traceId')!r} is not 16 or 32 lowercase hex")
    if not HEX16.match(str(s.get("id", ""))):
        errs.append(f"id {s.get('id')!r} is not 16 lowercase hex")
    if "parentId" in s and not HEX16.match(str(s["parentId"])):
        errs.append(f"parentId {s['parentId']!r} is not 16 lowercase hex")
    if "kind" in s and s["kind"] not in KINDS:
        errs.append(f"kind {s['kind']!r} is not one of {sorted(KINDS)}")
    for k in ("timestamp", "duration"):
        if k in s and (not isinstance(s[k], int) or s[k] < 1):
            errs.append(f"{k} {s[k]!r} is not a positive integer (microseconds)")
    for k in ("localEndpoint", "remoteEndpoint"):
        if k in s:
            ep = s[k]
            if not isinstance(ep, dict):
                errs.append(f"{k} is not an object")
                continue
            if "serviceName" in ep and not isinstance(ep["serviceName"], str):
                errs.append(f"{k}.serviceName is not a string")
            if "port" in ep and not isinstance(ep["port"], int):
                errs.append(f"{k}.port is not an integer")
    tags = s.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        errs.append("tags must map strings to strings")
    return errs


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        st = self.server.state
        if self.server.delay:
            time.sleep(self.server.delay)
        with st["lock"]:
            st["posts"] += 1
            if self.path != "/api/v2/spans":
                st["errors"].append(f"POST to {self.path}, not /api/v2/spans")
                return self.reply(404, {"error": "not found"})
            if "json" not in (self.headers.get("Content-Type") or ""):
                st["errors"].append(f"Content-Type {self.headers.get('Content-Type')!r}")
            try:
                spans = json.loads(body)
            except ValueError as e:
                st["errors"].append(f"body is not JSON: {e}")
                return self.reply(400, {"error": "not JSON"})
            if not isinstance(spans, list):
                st["errors"].append("body is not a JSON array of spans")
                return self.reply(400, {"error": "not a list"})
            for s in spans:
                errs = span_errors(s)
                if errs:
                    st["errors"].append(f"span {json.dumps(s)[:300]}: {'; '.join(errs)}")
                else:
                    st["spans"].append(s)
        self.reply(202, {})

    def do_GET(self):
        st = self.server.state
        with st["lock"]:
            doc = {"spans": list(st["spans"]), "errors": list(st["errors"]), "posts": st["posts"]}
        self.reply(200, doc)


def main():
    ap = argparse.ArgumentParser(description="Zipkin v2 test collector")
    ap.add_argument("--port", type=int, default=9411)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()
    server = ThreadingHTTPServer((a.bind, a.port), Handler)
    server.daemon_threads = True
    server.delay = a.delay_ms / 1000.0
    server.state = {"lock": threading.Lock(), "spans": [], "errors": [], "posts": 0}
    print(f"zipkin collector on {a.bind}:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
