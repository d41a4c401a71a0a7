#!/usr/bin/env python3
"""An HTTP/1.1 app that answers some requests with more bytes than the message holds, to test that
a proxy never hands those bytes to a later request (response queue poisoning). Standard library
only; keep-alive on every connection; one thread per connection.

    python3 poison_app.py [--port 8081] [--bind 0.0.0.0]

Paths (any method):
    /poison       200 "ok" (Content-Length: 2), then at once a second response 200 "POISONED"
    /poison-late  the same, the extra response 200 ms later (a separate segment)
    /no-content   204 with a body "BODY" after the head (204 has none)
    /head         for HEAD: Content-Length: 5 and then "EXTRA" (a HEAD answer has no body)
    anything else 200 "clean"
"""

import argparse
import socket
import threading
import time

POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED"


def read_head(f):
    line = f.readline(65536)
    if not line:
        return None
    method, path = line.decode("latin-1").split(" ")[:2]
    length = 0
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        f.read(length)
    return method, path


def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = conn.makefile("rb")
    try:
        while True:
            req = read_head(f)
            if req is None:
                return
            method, path = req
            if path == "/poison":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + POISON)
            elif path == "/poison-late":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                time.sleep(0.2)
                conn.sendall(POISON)
            elif path == "/no-content":
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\nBODY")
            elif path == "/head" and method == "HEAD":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEXTRA")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean")
    except OSError:
        pass
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--bind", default="0.0.0.0")
    a = ap.parse_args()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
