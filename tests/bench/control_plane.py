#!/usr/bin/env python3
"""How fast remora-control pushes a change to many proxies, and what it costs it.

Starts the real remora-control on loopback, applies N Kubernetes Services (one VirtualService
and one DestinationRule per ten) with `remoractl apply`, and subscribes P simulated proxies from
this one process: each is a long-poll over mTLS on /v1/proxies/subscribe with a real SVID from
the control plane's CA (one per namespace, from `remoractl cert request`), registering its pod
and reporting what it applied (ACK) on its next poll, as remora-proxy's subscriber does. A
simulated proxy reads the snapshot's version and bytes but does not build a route table (that is
the proxy's cost, measured by config_ready.py). Then, several times: `remoractl apply` of a change
and the time until the last proxy whose snapshot it changes has ACKed it. Reports per size:
  last_ack p50/p99  time from the apply's start to the last proxy's ACK, over the applies (s)
  ack p50/p99       per-proxy ACK times, all applies together (s)
  cpu_s             remora-control's CPU seconds (user+system) for all the applies (all replicas)
  cores             cpu_s over the wall time of the applies, per replica (istiod's anchor is a rate)
  etcd_s            the etcd members' CPU seconds over the same time (--etcd-members)
  rss_MiB           resident memory after them (and the peak, VmHWM); the largest replica's
  snap_KiB          snapshot bytes per proxy (mean of the last pushes)
  wire_KiB          the bytes those answers took on the wire (gzip, as remora-proxy asks for it;
                    --client-identity: without)
  held_KiB          snapshot bytes per proxy over every proxy before the applies (mean)
  classes           distinct proxy classes (namespace, service account, labels) cached
  apply_s           how long `remoractl apply` itself took (median; part of last_ack)
The change (--change) is a VirtualService's timeout in ns-0: exported everywhere (`mesh`, every
proxy gets a new snapshot) or only to ns-0 (`namespace`). --sidecar namespace applies, in every
namespace, Istio's recommended default Sidecar (egress hosts `./*` and the root namespace's
`remora-system/*`), so each proxy receives its own namespace's services only; the change then
reaches ns-0's proxies only (the others do not import ns-0's VirtualService: their snapshot does
not change, and they are not sent one). --sidecar both runs each size without and with. With --baseline-bin an older
remora-control runs the same steps in the same run. It reports and never asserts: time depends on
the machine. Everything is bounded (--timeout per push, --start-timeout) and stops by itself.

  ninja -C build-h control/remora-control control/remoractl
  python3 tests/bench/control_plane.py --bin-dir build-h [--services 1000,10000] [--proxies 1000]
      [--classes 20] [--applies 5] [--change mesh|namespace] [--sidecar none|namespace|both]
      [--baseline-bin OLD/remora-control]
      [--store dir | --store etcd --etcd-endpoints URL,URL | --etcd-members 3] [--replicas N]
      [--client native|python] [--client-threads N]
The simulated proxies run in tests/bench/sim_proxies (--client native, the default when built:
ninja -C build-h tests/bench/sim_proxies), one C++ process doing what remora-proxy's
subscription does; --client python keeps them in this process (up to ~100 proxies).
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

VERSION_RE = re.compile(rb'"version":"([^"]*)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))]


def services_yaml(n, namespaces, apps, start=0):
    """N Kubernetes Services over the namespaces, each selecting app-K pods of its namespace;
    a VirtualService (timeout, retries) and a DestinationRule (two subsets) per ten."""
    docs = []
    for i in range(start, start + n):
        ns = f"ns-{i % namespaces}"
        ip = f"198.19.{(i // 250) % 256}.{i % 250 + 1}"
        docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {ns}}}\n"
                    f"spec:\n  clusterIP: {ip}\n  selector: {{app: app-{i % apps}}}\n"
                    f"  ports: [{{name: http, port: 8080}}]\n")
        if i % 10 == 0:
            docs.append(f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                        f"metadata: {{name: svc-{i}, namespace: {ns}}}\nspec:\n  hosts: [svc-{i}]\n"
                        f"  http:\n  - timeout: 5s\n    retries: {{attempts: 2}}\n    route:\n"
                        f"    - destination: {{host: svc-{i}, subset: v1}}\n      weight: 90\n"
                        f"    - destination: {{host: svc-{i}, subset: v2}}\n      weight: 10\n")
            docs.append(f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                        f"metadata: {{name: svc-{i}, namespace: {ns}}}\nspec:\n  host: svc-{i}\n"
                        f"  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n"
                        f"  - {{name: v2, labels: {{version: v2}}}}\n")
    return "---\n".join(docs)


def sidecars_yaml(namespaces):
    """Istio's recommended namespace default: its own namespace and the root namespace's."""
    return "---\n".join(
        f"apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: ns-{k}}}\n"
        f"spec:\n  egress:\n  - hosts: [\"./*\", \"remora-system/*\"]\n" for k in range(namespaces))


def change_yaml(k, scope):
    export = "  exportTo: [\".\"]\n" if scope == "namespace" else ""
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            f"metadata: {{name: bench-change, namespace: ns-0}}\nspec:\n  hosts: [svc-0]\n{export}"
            f"  http:\n  - timeout: {1000 + k}ms\n    route:\n    - destination: {{host: svc-0}}\n")


class Control:
    """One remora-control process (one replica)."""

    def __init__(self, binary, tmp, state, store_args, index):
        self.port, self.mon = free_port(), free_port()
        self.log = os.path.join(tmp, f"control-{index}.log")
        argv = [binary, "--state-dir", state, "--listen", f"127.0.0.1:{self.port}",
                "--monitoring", f"127.0.0.1:{self.mon}",
                *store_args]
        # The simulated pods' addresses lead nowhere: never scrape them (when it can say so).
        if "--mesh-scrape-interval" in subprocess.run([binary, "--help"], capture_output=True, text=True).stdout:
            argv += ["--mesh-scrape-interval", "0"]
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"remora-control exited {self.proc.returncode}: {self.tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.mon, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
                time.sleep(0.05)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("remora-control did not listen within 30 s")
                time.sleep(0.05)

    def tail(self):
        with open(self.log) as f:
            return f.read()[-2000:]

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0)

    def metric(self, name):
        c = http.client.HTTPConnection("127.0.0.1", self.mon, timeout=30)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EtcdCluster:
    """N etcd members on loopback (Debian's etcd-server), fresh data, for --etcd-members."""

    def __init__(self, n, tmp, label):
        self.procs = []
        clients = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        peers = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        cluster = ",".join(f"e{j}=http://{peers[j]}" for j in range(n))
        for i in range(n):
            log = open(os.path.join(tmp, f"etcd-{label}-{i}.log"), "w")
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", os.path.join(tmp, f"etcd-{label}-{i}"),
                 "--listen-client-urls", f"http://{clients[i]}",
                 "--advertise-client-urls", f"http://{clients[i]}",
                 "--listen-peer-urls", f"http://{peers[i]}",
                 "--initial-advertise-peer-urls", f"http://{peers[i]}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{label}", "--quota-backend-bytes", str(8 << 30),
                 # One apply is one etcd transaction, a key per resource: the bench applies
                 # the services 2,000 at a time (about 1 MB), past etcd's default 128
                 # operations per transaction (docs/replicas.md).
                 "--max-txn-ops", "8192", "--max-request-bytes", str(8 << 20)],
                stdout=log, stderr=subprocess.STDOUT))
        self.endpoints = ",".join(f"http://{c}" for c in clients)
        deadline = time.monotonic() + 60
        for c in clients:
            while True:
                try:
                    h = http.client.HTTPConnection(*c.split(":"), timeout=2)
                    h.request("GET", "/health")
                    if b'"true"' in h.getresponse().read():
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the etcd cluster was not healthy within 60 s")
                time.sleep(0.2)

    def cpu_seconds(self):
        total = 0.0
        for p in self.procs:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class SimProxy:
    def __init__(self, index, ns, labels, ctx, control):
        self.index, self.ns, self.labels, self.ctx, self.control = index, ns, labels, ctx, control
        self.name = f"p-{index}"
        # In 127.0.0.0/8: nothing listens there, and whatever connects to a registered pod (the
        # mesh page's metrics scrape, in remora-control builds without --mesh-scrape-interval)
        # stays on loopback.
        self.ip = f"127.18.{index // 250}.{index % 250 + 1}"
        self.version = ""
        self.received = []  # (monotonic time the ACK went out, version, bytes, bytes on the wire)
        self.errors = 0


async def read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked, close = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        k, v = k.strip().lower(), v.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "transfer-encoding" and "chunked" in v:
            chunked = True
        elif k == "connection" and v == "close":
            close = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return status, bytes(body), close
    return status, await reader.readexactly(length) if length else b"", close


async def run_proxy(p, stop, wait_seconds=60):
    report = None
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", p.control.port, ssl=p.ctx, server_hostname="localhost")
        except (OSError, ssl.SSLError):
            p.errors += 1
            await asyncio.sleep(0.5)
            continue
        try:
            while not stop.is_set():
                body = {"node": {"podName": p.name, "workloadName": p.name.rsplit("-", 1)[0],
                                 "podIp": p.ip, "labels": p.labels, "ports": [8080],
                                 "proxyVersion": "bench"},
                        "version": p.version, "waitSeconds": wait_seconds}
                if report:
                    body["applied"] = {"version": report, "error": ""}
                data = json.dumps(body).encode()
                writer.write(b"POST /v1/proxies/subscribe HTTP/1.1\r\nHost: localhost\r\n"
                             b"Content-Type: application/json\r\nContent-Length: " +
                             str(len(data)).encode() + b"\r\n\r\n" + data)
                await writer.drain()
                if report and p.received and p.received[-1][0] is None:
                    # The ACK of what came last is on its way: that is when it counts.
                    t, v, n, w = p.received[-1]
                    p.received[-1] = (time.monotonic(), v, n, w)
                status, payload, close = await read_response(reader)
                if status == 200:
                    m = VERSION_RE.search(payload[:200])
                    p.version = m.group(1).decode() if m else ""
                    report = p.version
                    p.received.append((None, p.version, len(payload), len(payload)))
                elif status != 304:
                    p.errors += 1
                    await asyncio.sleep(0.5)
                if close:
                    break
        except (OSError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, ValueError,
                IndexError):
            p.errors += 1
        finally:
            writer.close()


class NativeClient:
    """tests/bench/sim_proxies: every proxy's subscription in one C++ process (what remora-proxy's
    ConfigSubscriber does: one mTLS connection per poll, the ACK on the next poll, the whole
    answer read). Its event lines update the same SimProxy records run_proxy does."""

    def __init__(self, binary, proxies, root, svids, tmp, label, threads, keep_alive, gzip=True,
                 wait_seconds=60):
        spec = {"bundle": root, "waitSeconds": wait_seconds, "identities": svids,
                "proxies": [{"name": p.name, "workload": p.name.rsplit("-", 1)[0], "ip": p.ip,
                             "labels": p.labels, "ports": [8080], "identity": p.ns,
                             "control": f"127.0.0.1:{p.control.port}"} for p in proxies]}
        path = os.path.join(tmp, f"sim-{label}.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        self.proxies = proxies
        self.binary, self.path, self.threads = binary, path, threads
        self.keep_alive = keep_alive
        self.gzip = gzip
        self.errors_seen = []

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, self.path, "--threads", str(self.threads),
            *([] if self.keep_alive else ["--new-connection-per-poll"]),
            *([] if self.gzip else ["--identity"]), stdout=subprocess.PIPE,
            limit=1 << 20)
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            kind, _, rest = line.decode().rstrip("\n").partition(" ")
            if kind == "got":
                i, version, size, _t, *wire = rest.split(" ")
                p = self.proxies[int(i)]
                p.version = version
                p.received.append((None, version, int(size), int(wire[0]) if wire else int(size)))
            elif kind == "ack":
                i, version, t = rest.split(" ")
                p = self.proxies[int(i)]
                if p.received and p.received[-1][0] is None and p.received[-1][1] == version:
                    p.received[-1] = (float(t), version, *p.received[-1][2:])
            elif kind == "err":
                i, _, why = rest.partition(" ")
                self.proxies[int(i)].errors += 1
                if len(self.errors_seen) < 5:
                    self.errors_seen.append(why)

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... exited {r.returncode}: {r.stderr[-1000:]}")
    return r


def apply(ctl, control, state, path):
    run([ctl, "apply", "-f", path, "--control", f"localhost:{control.port}", "--state-dir", state])


def synced(ctl, control, state):
    """The proxies proxy-status shows SYNCED with the snapshot they should run now (a proxy may
    have been sent one that registrations since made out of date: its push is coming). Through
    one replica it lists every replica's (older builds: only its own)."""
    out = subprocess.run([ctl, "proxy-status", "-o", "json", "--control", f"localhost:{control.port}",
                          "--state-dir", state], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return set()
    return {p["name"] for p in json.loads(out.stdout) if p["status"] == "SYNCED"}


async def bench_one(name, binary, ctl, args, n_services, tmp, sidecar="none"):
    state = os.path.join(tmp, f"state-{name}-{n_services}-{sidecar}")
    os.makedirs(state)
    store_args = []
    etcd = None
    if args.etcd_members:
        etcd = EtcdCluster(args.etcd_members, tmp, f"{name}-{n_services}-{sidecar}")
        kek = os.path.join(tmp, "ca-kek")
        with open(kek, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(kek, 0o600)
        store_args = ["--store", "etcd", "--etcd-endpoints", etcd.endpoints,
                      "--ca-key-encryption-key-file", kek]
    elif args.store != "dir":
        store_args = ["--store", args.store]
        if args.etcd_endpoints:
            store_args += ["--etcd-endpoints", args.etcd_endpoints]
    store_args += args.control_arg
    controls = []
    try:
        controls.append(Control(binary, tmp, state, store_args, f"{name}-{n_services}-0"))
        for r in range(1, args.replicas):
            controls.append(Control(binary, tmp, state, store_args, f"{name}-{n_services}-{r}"))
        root = os.path.join(state, "root-cert.pem")
        if not os.path.exists(root):
            with open(root, "w") as f:
                f.write(run([ctl, "ca", "root", "--state-dir", state]).stdout)
        # The services, in files under the API's 4 MiB request limit.
        chunk = 2000
        for start in range(0, n_services, chunk):
            path = os.path.join(tmp, f"services-{name}-{start}.yaml")
            with open(path, "w") as f:
                f.write(services_yaml(min(chunk, n_services - start), args.namespaces, args.apps, start))
            apply(ctl, controls[0], state, path)
        if sidecar == "namespace":
            path = os.path.join(tmp, f"sidecars-{name}.yaml")
            with open(path, "w") as f:
                f.write(sidecars_yaml(args.namespaces))
            apply(ctl, controls[0], state, path)
        # One SVID per namespace (service account "default"): proxies of a namespace share it.
        ctxs, svids = {}, {}
        for k in range(args.namespaces):
            ns = f"ns-{k}"
            token = os.path.join(tmp, f"token-{ns}")
            with open(token, "w") as f:
                f.write(run([ctl, "token", "create", "--namespace", ns, "--service-account",
                             "default", "--state-dir", state]).stdout)
            out = os.path.join(tmp, f"svid-{name}-{n_services}-{ns}")
            run([ctl, "cert", "request", "--control", f"localhost:{controls[0].port}",
                 "--trust-bundle", root, "--token-file", token, "--out", out, "--ttl", "2h"])
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=root)
            ctx.load_cert_chain(os.path.join(out, "cert-chain.pem"), os.path.join(out, "key.pem"))
            ctxs[ns] = ctx
            svids[ns] = out
        proxies = []
        for j in range(args.proxies):
            c = j % args.classes
            ns = f"ns-{c % args.namespaces}"
            labels = {"app": f"app-{c % args.apps}", "version": "v1", "deploy": f"d-{c}"}
            proxies.append(SimProxy(j, ns, labels, ctxs[ns], controls[j % len(controls)]))
        stop = asyncio.Event()
        native = None
        if args.client == "native":
            native = NativeClient(args.sim_bin, proxies, root, svids, tmp,
                                  f"{name}-{n_services}-{sidecar}", args.client_threads,
                                  not args.client_new_connection_per_poll, not args.client_identity)
            await native.start()
            tasks = []
        else:
            tasks = [asyncio.create_task(run_proxy(p, stop)) for p in proxies]
        try:
            # Registered, each with a snapshot, quiet (registrations change endpoints), and every
            # proxy SYNCED with what it should run now.
            deadline = time.monotonic() + args.start_timeout
            quiet_since, seen = time.monotonic(), 0
            while True:
                await asyncio.sleep(0.5)
                total = sum(len(p.received) for p in proxies)
                if total != seen:
                    seen, quiet_since = total, time.monotonic()
                # (The union: a replica of an older build lists only the proxies subscribed to it.)
                if (all(p.version for p in proxies) and time.monotonic() - quiet_since > 3 and
                        len(set().union(*[await asyncio.to_thread(synced, ctl, c, state) for c in controls])) == len(proxies)):
                    break
                if time.monotonic() > deadline:
                    have = sum(1 for p in proxies if p.version)
                    raise RuntimeError(f"{have}/{len(proxies)} proxies had a snapshot after "
                                       f"{args.start_timeout} s")
            startup_s = time.monotonic() - (deadline - args.start_timeout)
            # Every proxy's snapshot as it stands (the pushes below reach only some with --sidecar).
            held = [p.received[-1][2] for p in proxies if p.received]
            cpu0 = sum(c.cpu_seconds() for c in controls)
            etcd_cpu0 = etcd.cpu_seconds() if etcd else 0.0
            wall0 = time.monotonic()
            last_acks, acks, sizes, wires, apply_times = [], [], [], [], []
            for k in range(args.applies):
                path = os.path.join(tmp, f"change-{name}-{k}.yaml")
                with open(path, "w") as f:
                    f.write(change_yaml(k, args.change))
                expect = [p for p in proxies
                          if (args.change == "mesh" and sidecar == "none") or p.ns == "ns-0"]
                marks = {p.index: len(p.received) for p in proxies}
                t0 = time.monotonic()
                await asyncio.to_thread(apply, ctl, controls[0], state, path)
                apply_times.append(time.monotonic() - t0)
                deadline = time.monotonic() + args.timeout
                while True:
                    done = [p for p in expect if len(p.received) > marks[p.index] and
                            p.received[marks[p.index]][0] is not None]
                    if len(done) == len(expect):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"apply {k}: {len(done)}/{len(expect)} proxies ACKed "
                                           f"within {args.timeout} s")
                    await asyncio.sleep(0.005)
                times = [p.received[marks[p.index]][0] - t0 for p in expect]
                sizes += [p.received[marks[p.index]][2] for p in expect]
                wires += [p.received[marks[p.index]][3] for p in expect]
                others = sum(1 for p in proxies if p not in expect and len(p.received) > marks[p.index])
                acks += times
                last_acks.append(max(times))
                print(f"    {name} apply {k}: {len(expect)} proxies ACKed, last after "
                      f"{max(times):.3f} s, p50 {percentile(times, 50):.3f} s; "
                      f"{others} others were sent a snapshot", flush=True)
                await asyncio.sleep(0.5)  # let the last ACK polls reach the control plane
            cpu = sum(c.cpu_seconds() for c in controls) - cpu0
            wall = time.monotonic() - wall0
            etcd_cpu = etcd.cpu_seconds() - etcd_cpu0 if etcd else None
            mems = [c.memory() for c in controls]
            rss, hwm = max(m[0] for m in mems), max(m[1] for m in mems)
            classes = await asyncio.to_thread(controls[0].metric, "remora_control_snapshot_classes")
            errors = sum(p.errors for p in proxies)
        finally:
            stop.set()
            if native:
                await native.stop()
                if native.errors_seen:
                    print(f"    first poll errors: {native.errors_seen}", flush=True)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"startup_s": startup_s, "last_p50": percentile(last_acks, 50),
                "last_p99": percentile(last_acks, 99), "ack_p50": percentile(acks, 50),
                "ack_p99": percentile(acks, 99), "cpu_s": cpu, "cores": cpu / wall / len(controls),
                "etcd_cpu_s": etcd_cpu, "rss": rss, "hwm": hwm,
                "snap_kib": statistics.mean(sizes) / 1024 if sizes else 0.0,
                "wire_kib": statistics.mean(wires) / 1024 if wires else 0.0,
                "held_kib": statistics.mean(held) / 1024 if held else 0.0,
                "apply_s": statistics.median(apply_times),
                "classes": classes, "errors": errors}
    finally:
        for c in controls:
            c.stop()
        if etcd:
            etcd.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default="build")
    ap.add_argument("--baseline-bin", help="an older remora-control to run side by side")
    ap.add_argument("--services", default="1000,10000")
    ap.add_argument("--proxies", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=20,
                    help="distinct pod label sets (deployments), spread over the namespaces")
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--apps", type=int, default=50, help="distinct app labels services select")
    ap.add_argument("--applies", type=int, default=5)
    ap.add_argument("--change", choices=["mesh", "namespace"], default="mesh")
    ap.add_argument("--sidecar", choices=["none", "namespace", "both"], default="none",
                    help="a default Sidecar per namespace (./* and remora-system/*); both: each way")
    ap.add_argument("--timeout", type=float, default=120, help="bound on one push (s)")
    ap.add_argument("--start-timeout", type=float, default=600,
                    help="bound on registering every proxy (s)")
    ap.add_argument("--store", default="dir", help="dir (default) or etcd (passed through)")
    ap.add_argument("--etcd-endpoints", default="", help="with --store etcd (passed through)")
    ap.add_argument("--etcd-members", type=int, default=0,
                    help="start a fresh N-member etcd cluster on loopback for each run and use it "
                         "(--store etcd); needs Debian's etcd-server")
    ap.add_argument("--replicas", type=int, default=1,
                    help="remora-control processes; proxies spread round-robin (needs a shared "
                         "store: --store etcd)")
    ap.add_argument("--control-arg", action="append", default=[],
                    help="one more flag for remora-control (repeatable), e.g. --control-arg=--debounce-after=0")
    ap.add_argument("--client", choices=["native", "python"],
                    help="simulated proxies: native (tests/bench/sim_proxies, default when built) "
                         "or python (asyncio in this process; keeps one connection per proxy, "
                         "which remora-proxy does not, and cannot go past ~100 proxies)")
    ap.add_argument("--client-threads", type=int, default=1,
                    help="io threads of the native client (default 1: the control plane has the other core)")
    ap.add_argument("--client-new-connection-per-poll", action="store_true",
                    help="native client: a new TLS connection for every poll, as remora-proxy did "
                         "before it kept its control connection (default: poll again on the same "
                         "connection, as remora-proxy does)")
    ap.add_argument("--client-keep-alive", action="store_true",
                    help="(the default now; kept so old command lines run)")
    ap.add_argument("--client-identity", action="store_true",
                    help="the native client asks for answers without gzip (remora-proxy asks for gzip)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary dir (logs)")
    args = ap.parse_args()
    if args.replicas > 1 and args.store == "dir" and not args.etcd_members:
        sys.exit("--replicas > 1 needs a shared store (--store etcd --etcd-endpoints ...)")

    ctl = os.path.join(args.bin_dir, "control", "remoractl")
    binaries = [("remora", os.path.join(args.bin_dir, "control", "remora-control"))]
    if args.baseline_bin:
        binaries.append(("baseline", args.baseline_bin))
    for _, b in binaries + [("remoractl", ctl)]:
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: build it first (ninja -C {args.bin_dir} "
                     "control/remora-control control/remoractl)")
    args.sim_bin = os.path.join(args.bin_dir, "tests", "bench", "sim_proxies")
    if args.client is None:
        args.client = "native" if os.access(args.sim_bin, os.X_OK) else "python"
    if args.client == "native" and not os.access(args.sim_bin, os.X_OK):
        sys.exit(f"{args.sim_bin} not found: ninja -C {args.bin_dir} tests/bench/sim_proxies")
    tmp = tempfile.mkdtemp(prefix="remora-control-bench-")
    print(f"{args.proxies} proxies in {args.classes} classes over {args.namespaces} namespaces, "
          f"{args.applies} applies of a {args.change}-wide change, "
          f"store {'etcd' if args.etcd_members else args.store}, "
          f"{args.replicas} replica(s){f' on {args.etcd_members} etcd members' if args.etcd_members else ''}, {args.client} client", flush=True)
    rows = []
    try:
        for n in [int(s) for s in args.services.split(",")]:
            for name, binary in binaries:
                for sidecar in (["none", "namespace"] if args.sidecar == "both" else [args.sidecar]):
                    label = name + ("+sc" if sidecar == "namespace" else "")
                    print(f"  {n} services, {label} ({binary})", flush=True)
                    try:
                        r = asyncio.run(bench_one(name, binary, ctl, args, n, tmp, sidecar))
                    except RuntimeError as e:
                        print(f"    {label}: {e}", flush=True)
                        continue
                    rows.append((n, label, r))
        print(f"\n{'services':>8} {'control':>9} {'last_ack p50/p99 s':>19} {'ack p50/p99 s':>14} "
              f"{'cpu_s':>6} {'cores':>5} {'etcd_s':>6} {'rss/peak MiB':>13} {'snap_KiB':>9} {'wire_KiB':>9} {'held_KiB':>9} {'classes':>7} {'start_s':>7} {'apply_s':>7}")
        for n, name, r in rows:
            classes = "-" if r["classes"] is None else f"{r['classes']:.0f}"
            print(f"{n:>8} {name:>9} {r['last_p50']:>9.3f}/{r['last_p99']:<9.3f} "
                  f"{r['ack_p50']:>6.3f}/{r['ack_p99']:<7.3f} {r['cpu_s']:>6.1f} {r['cores']:>5.2f} "
                  f"{'-' if r['etcd_cpu_s'] is None else format(r['etcd_cpu_s'], '.1f'):>6} "
                  f"{r['rss']:>6.0f}/{r['hwm']:<6.0f} {r['snap_kib']:>9.0f} {r['wire_kib']:>9.0f} {r['held_kib']:>9.0f} {classes:>7} "
                  f"{r['startup_s']:>7.1f} {r['apply_s']:>7.2f}" + (f"  ({r['errors']} poll errors)" if r["errors"] else ""))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
