#!/usr/bin/python3
# Writes the client_hello_fuzz seeds: the ClientHello bytes `openssl s_client` sends, read on a
# loopback socket (the handshake goes no further), one file per variant, in the current
# directory. Run it from tests/fuzz/corpus/client_hello.
import socket, subprocess, sys, os
def capture(name, args):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
    port = s.getsockname()[1]
    p = subprocess.Popen(['openssl', 's_client', '-connect', f'127.0.0.1:{port}'] + args,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c, _ = s.accept(); c.settimeout(5)
    data = b''
    while True:
        try: chunk = c.recv(65536)
        except socket.timeout: break
        if not chunk: break
        data += chunk
        # one full record header-size check
        if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], 'big'): break
    c.close(); s.close(); p.kill(); p.wait()
    open(name, 'wb').write(data); print(name, len(data))
    return data
capture('tls13-sni-alpn-h2', ['-servername', 'reviews.default.svc.cluster.local', '-alpn', 'h2,http/1.1'])
capture('tls12-sni', ['-tls1_2', '-servername', 'www.example.com'])
capture('no-sni', ['-noservername'])
capture('mesh-alpn', ['-servername', 'outbound_.9080_._.reviews.default.svc.cluster.local', '-alpn', 'istio-peer-exchange,istio,istio-h2'])
d = capture('tls13-long-alpn', ['-servername', 'a.b', '-alpn', ','.join(['p%02d' % i for i in range(40)])])
# The same hello split over two TLS records (as a client may send it).
body = d[5:]; cut = 40
rec = lambda b: d[0:3] + len(b).to_bytes(2, 'big') + b
open('split-records', 'wb').write(rec(body[:cut]) + rec(body[cut:])); print('split-records')
