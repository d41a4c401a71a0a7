#!/usr/bin/env python3
"""A small HTTP/1.1 echo app for Remora's system tests and quickstart (standard library only).

    python3 echo_app.py [--port 8080] [--bind 0.0.0.0] [--name POD] [--record FILE]

Every answer is JSON describing the request as the app saw it:
    {"pod": NAME, "method": ..., "path": ..., "query": ..., "headers": {lowercase name: value},
     "body_length": N, "body_sha256": HEX, "peer": "ip:port"}
Special paths:
    /slow?ms=N      sleep N milliseconds, then answer as above
    /die            send a header with Content-Length: 1000, then 10 bytes, then close the socket
    /big?bytes=N    stream N bytes of text/plain (in 64 KiB writes) with a Content-Length
    /status?code=N  answer as above, with status N
    /flaky?fail_pod=POD|all[&code=N]  status N (503) when this app's --name is POD (or always)
    /flaky?slow_pod=POD&ms=N          sleep N ms first when this app's --name is POD
With --record, each request also appends a JSON line {"method", "path", "query", "host",
"body_length", "body_sha256"} to FILE (for tests that count what a proxy sent, e.g. mirrors).
Request bodies may come with Content-Length or chunked transfer encoding; both are read whole and
counted. Keep-alive and pipelining work (one thread per connection, answers in order).
"""

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BIG_CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-app"
    sys_version = ""

    def setup(self):
        super().setup()
        # /big and /die write their bodies after the head: without NODELAY each later write waits
        # for the peer's delayed ACK (40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # one line per request, to the log file
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    # -- bodies --------------------------------------------------------------------------------

    def read_body(self):
        """(length, sha256 hex) of the request body; raises ValueError on a malformed body."""
        h = hashlib.sha256()
        n = 0
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ValueError("connection closed inside a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, BIG_CHUNK))
                    if not data:
                        raise ValueError("connection closed inside a chunk")
                    h.update(data)
                    n += len(data)
                    left -= len(data)
                self.rfile.readline(16)  # CRLF after the chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, BIG_CHUNK))
                if not data:
                    raise ValueError("connection closed inside the body")
                h.update(data)
                n += len(data)
                left -= len(data)
        return n, h.hexdigest()

    # -- answers -------------------------------------------------------------------------------

    def answer(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            length, digest = self.read_body()
        except ValueError as e:
            self.send_error(400, str(e))
            self.close_connection = True
            return
        if url.path == "/die":
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if url.path == "/big":
            total = int(query.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            block = (b"0123456789abcdef" * (BIG_CHUNK // 16))
            left = total
            while left > 0:
                self.wfile.write(block[:min(left, BIG_CHUNK)])
                left -= min(left, BIG_CHUNK)
            return
        if url.path == "/slow":
            time.sleep(min(int(query.get("ms", "1000")), 60000) / 1000.0)
        if self.server.record:
            line = json.dumps({"method": self.command, "path": url.path, "query": url.query,
                               "host": self.headers.get("Host", ""), "body_length": length,
                               "body_sha256": digest})
            with self.server.record_lock, open(self.server.record, "a") as f:
                f.write(line + "\n")
        doc = {
            "pod": self.server.pod_name,
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "version": self.request_version,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_length": length,
            "body_sha256": digest,
            "peer": "%s:%d" % self.client_address[:2],
        }
        body = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        status = 200
        if url.path == "/status":
            status = max(200, min(int(query.get("code", "200")), 599))
        # /flaky?fail_pod=NAME|all[&code=503]&slow_pod=NAME&ms=N: one replica misbehaves.
        if url.path == "/flaky":
            if query.get("fail_pod") in (self.server.pod_name, "all"):
                status = max(200, min(int(query.get("code", "503")), 599))
            if query.get("slow_pod") == self.server.pod_name:
                time.sleep(min(int(query.get("ms", "1000")), 60000) / 1000.0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_with_body(body)

    def end_with_body(self, body):
        """Ends the head and sends it with the body in one write, as most servers do for a small
        answer. A kill -9 of the app then lands before or after the whole response, never between
        its head and its body: a response cut after its head has gone downstream cannot be retried
        by any proxy (Envoy resets the client's stream), so the kill tests would fail at random."""
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = answer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--name", default=socket.gethostname())
    ap.add_argument("--record", help="append one JSON line per request to this file")
    opts = ap.parse_args()
    srv = Server((opts.bind, opts.port), Handler)
    srv.pod_name = opts.name
    srv.record = opts.record
    srv.record_lock = threading.Lock()
    sys.stderr.write(f"echo-app {opts.name} listening on {opts.bind}:{opts.port}\n")
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
