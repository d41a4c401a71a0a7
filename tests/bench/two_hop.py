#!/usr/bin/env python3
"""Two-hop mesh benchmark: h2load -> proxy A -> mTLS -> proxy B -> app, for several proxies.

Compares, in one run and on loopback, the path a request takes through two sidecars:

    h2load --(HTTP/1.1)--> A --(mTLS, TLS 1.3, ECDSA P-256 SVIDs)--> B --(HTTP/1.1)--> app (nginx)

for `direct` (h2load -> app, the floor), `haproxy`, `nginx` and `remora` as A and B. Each proxy
runs one worker, keeps upstream connections alive, and does mutual TLS with SVIDs issued by
remora-control. See docs/benchmark.md for what is measured and how to read it.

Python 3 standard library only; needs h2load (nghttp2-client), nginx, haproxy.
"""

import argparse
import http.client
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ALL_PATHS = ("direct", "haproxy", "haproxy-h2", "nginx", "remora", "remora-h1", "remora-nometrics",
             "remora-trace100")
APT_PACKAGES = {"h2load": "nghttp2-client", "nginx": "nginx", "haproxy": "haproxy",
                "valgrind": "valgrind", "callgrind_control": "valgrind"}
# --instructions: the proxies run under valgrind's callgrind, one process each (nginx as a proxy
# forks workers, so its path is left out there).
INSTRUCTION_PATHS = ("haproxy", "haproxy-h2", "remora", "remora-h1", "remora-nometrics",
                     "remora-trace100", "remora-baseline")
PROXY_NAMES = ("haproxy-a", "haproxy-b", "remora-a", "remora-b")

CLIENT_ID = ("bench", "client")  # proxy A's identity
SERVER_ID = ("bench", "server")  # proxy B's identity
SERVER_SPIFFE = "spiffe://cluster.local/ns/bench/sa/server"

APP_BODY = b"hello\n"
CLOSED_LOOP_CLIENTS = 32
RATE_CLIENTS = 8
RATE_PER_CLIENT = 500  # h2load's --rps is per client: 8 x 500 = 4,000 requests/s
# Idle and per-connection request limits high enough that no pool connection is closed (and no
# TLS handshake redone) in the middle of a measurement.
KEEPALIVE_REQUESTS = 100000000
KEEPALIVE_TIMEOUT_S = 300


class SetupError(Exception):
    """Something the benchmark needs could not be prepared; the run stops."""


class PathError(Exception):
    """One path's servers could not be started or did not answer; other paths still run."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP turned into an exception so that `finally` cleans up."""


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# processes, ports, /proc

class Procs:
    """Every server this script starts, so that all of them are stopped whatever happens."""

    def __init__(self, tmp, verbose):
        self.tmp = tmp
        self.verbose = verbose
        self.live = []
        self.wrap = None  # name -> argv prefix (valgrind for --instructions), or None

    def start(self, name, argv, env=None):
        if self.wrap:
            argv = self.wrap(name) + list(argv)
        if self.verbose:
            log("  $ " + " ".join(argv))
        out = open(os.path.join(self.tmp, name + ".log"), "wb")
        # Own session: a terminal Ctrl-C reaches only this script, which then stops the servers
        # in order; the process group also lets us stop nginx's worker with its master.
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        out.close()
        proc.bench_name = name
        self.live.append(proc)
        return proc

    def stop(self, proc):
        if proc not in self.live:
            return
        self.live.remove(proc)
        # SIGINT: remora-proxy stops accepting and exits once in-flight work is done (SIGTERM
        # would keep it serving for its whole 5 s drain, as in a pod being deleted).
        for sig, wait_s in ((signal.SIGINT, 8), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        # Anything left in the group (an nginx worker whose master died first).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def stop_all(self):
        for proc in reversed(list(self.live)):
            self.stop(proc)

    def log_tail(self, proc, lines=15):
        path = os.path.join(self.tmp, proc.bench_name + ".log")
        try:
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join("    | " + l for l in text.splitlines()[-lines:])


_handed_out = set()


def free_port():
    """A free loopback TCP port (bound to 0 and released); never the same one twice in a run."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise SetupError("no free loopback port")


def process_tree(pid):
    """pid and all its descendants (nginx master + worker)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def server_pids(procs):
    pids = []
    for p in procs:
        pids.extend(process_tree(p.pid))
    return pids


# ---------------------------------------------------------------------------------------------
# tools and packages

def ensure_tools(paths, instructions=False):
    needed = ["h2load", "nginx"]  # nginx is always the app
    if instructions:
        needed += ["valgrind", "callgrind_control"]
    if any(p.startswith("haproxy") for p in paths):  # haproxy and haproxy-h2
        needed.append("haproxy")
    missing = [t for t in needed if shutil.which(t) is None]
    if not missing:
        return
    pkgs = sorted({APT_PACKAGES[t] for t in missing})
    if os.geteuid() != 0:
        raise SetupError(
            f"missing {', '.join(missing)}; install them with "
            f"`sudo apt-get install -y {' '.join(pkgs)}` or run this script as root "
            f"(it then installs them itself). Only private instances on free loopback ports are "
            f"run; the packages' system services are not used.")
    log(f"installing {' '.join(pkgs)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q"] + pkgs
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise SetupError("apt-get install failed for " + " ".join(pkgs))
    still = [t for t in needed if shutil.which(t) is None]
    if still:
        raise SetupError("still missing after apt-get: " + ", ".join(still))


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else "?"


# ---------------------------------------------------------------------------------------------
# HTTP checks

def http_get(port, path="/", timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_until(what, check, procs, timeout=15.0):
    """Poll check() until it returns True; fail early if one of procs has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise PathError(f"{p.bench_name} exited with status {p.returncode} "
                                f"while waiting for {what}")
        try:
            if check():
                return
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.1)
    raise PathError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def wait_path(port, procs, what):
    """The whole chain answers: 200 and the app's body."""
    last_answer = []

    def check():
        status, body = http_get(port)
        if status == 200 and body == APP_BODY:
            return True
        last_answer[:] = [f"{status} {body[:80]!r}"]
        return False
    try:
        wait_until(what, check, procs)
    except PathError as e:
        if last_answer:
            raise PathError(f"{e}; last answer: {last_answer[0]}") from None
        raise


# ---------------------------------------------------------------------------------------------
# certificates

def issue_certs(bench, bin_dir):
    ctl = os.path.join(bin_dir, "control", "remora-control")
    remoractl = os.path.join(bin_dir, "control", "remoractl")
    for b in (ctl, remoractl):
        if not os.access(b, os.X_OK):
            raise SetupError(f"{b} not found (build Remora first, or pass --bin-dir)")
    tmp = bench.tmp
    state = os.path.join(tmp, "ca-state")
    api, mon = free_port(), free_port()
    proc = bench.procs.start("remora-control", [
        ctl, "--state-dir", state, "--listen", f"127.0.0.1:{api}",
        "--monitoring", f"127.0.0.1:{mon}", "--threads", "1"])
    try:
        try:
            wait_until("remora-control /healthz",
                       lambda: http_get(mon, "/healthz")[0] == 200, [proc])
        except PathError as e:
            raise SetupError(f"{e}\n{bench.procs.log_tail(proc)}") from None
        root = os.path.join(tmp, "root-cert.pem")
        run_checked([remoractl, "ca", "root", "--state-dir", state], stdout_file=root)
        out = {}
        for who, (ns, sa) in (("a", CLIENT_ID), ("b", SERVER_ID)):
            token = os.path.join(tmp, f"token-{who}")
            run_checked([remoractl, "token", "create", "--namespace", ns,
                         "--service-account", sa, "--state-dir", state], stdout_file=token)
            d = os.path.join(tmp, f"svid-{who}")
            run_checked([remoractl, "cert", "request", "--control", f"127.0.0.1:{api}",
                         "--trust-bundle", root, "--out", d, "--token-file", token, "--ttl", "6h"])
            chain, key = os.path.join(d, "cert-chain.pem"), os.path.join(d, "key.pem")
            combined = os.path.join(d, "combined.pem")  # HAProxy wants cert + key in one file
            with open(combined, "w") as f:
                for part in (chain, key):
                    with open(part) as p:
                        f.write(p.read())
            os.chmod(combined, 0o600)
            out[who] = {"chain": chain, "key": key, "combined": combined,
                        "root": os.path.join(d, "root-cert.pem")}
        return out
    finally:
        bench.procs.stop(proc)  # certificates exist; the CA is not needed for the measurements


def run_checked(argv, stdout_file=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SetupError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    if stdout_file:
        with open(stdout_file, "w") as f:
            f.write(r.stdout)
    return r.stdout


# ---------------------------------------------------------------------------------------------
# server configurations

def nginx_main(tmp, name):
    """The part every private nginx shares: one worker, own prefix, no access log."""
    prefix = os.path.join(tmp, name)
    os.makedirs(prefix, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the 0600 keys
    return prefix, f"""\
{user}worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout {KEEPALIVE_TIMEOUT_S}s;
"""


def upstream_block(name, port):
    return f"""\
    upstream {name} {{
        server 127.0.0.1:{port};
        keepalive 64;
        keepalive_requests {KEEPALIVE_REQUESTS};
        keepalive_timeout {KEEPALIVE_TIMEOUT_S}s;
    }}
"""


def start_nginx(bench, name, conf_text):
    prefix = os.path.join(bench.tmp, name)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    bench.configs.append(conf)
    # -e: nginx otherwise opens its compiled-in error log before it reads the config.
    return bench.procs.start(name, ["nginx", "-p", prefix, "-c", conf,
                                    "-e", os.path.join(prefix, "error.log")])


def app_config(tmp, port):
    prefix, head = nginx_main(tmp, "app")
    return head + f"""\
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        default_type text/plain;
        location / {{ return 200 "hello\\n"; }}
    }}
}}
"""


def nginx_a_config(tmp, listen, b_port, certs):
    prefix, head = nginx_main(tmp, "nginx-a")
    a = certs["a"]
    # nginx's `proxy_ssl_verify on` always checks the name (proxy_ssl_name) against the
    # certificate's DNS SANs / subject CN after the chain; an SVID has only a URI SAN and an empty
    # subject, so every name fails ("upstream SSL certificate does not match"). Instead the chain
    # is verified by OpenSSL itself during the handshake: VerifyMode Peer without nginx's
    # accept-everything verify callback (which only `proxy_ssl_verify on` installs) makes a
    # certificate that does not chain to the mesh root abort the handshake.
    return head + upstream_block("proxy_b", b_port) + f"""\
    server {{
        listen 127.0.0.1:{listen} backlog=4096;
        location / {{
            proxy_pass https://proxy_b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_certificate {a['chain']};
            proxy_ssl_certificate_key {a['key']};
            proxy_ssl_session_reuse on;
            proxy_ssl_verify off;
            proxy_ssl_conf_command VerifyMode Peer;
            proxy_ssl_conf_command VerifyCAFile {a['root']};
        }}
    }}
}}
"""


def nginx_b_config(tmp, listen, app_port, certs):
    prefix, head = nginx_main(tmp, "nginx-b")
    b = certs["b"]
    return head + upstream_block("app", app_port) + f"""\
    server {{
        listen 127.0.0.1:{listen} ssl backlog=4096;
        ssl_protocols TLSv1.3;
        ssl_certificate {b['chain']};
        ssl_certificate_key {b['key']};
        ssl_verify_client on;
        ssl_client_certificate {b['root']};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


TLS13 = "ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3"
HAPROXY_HEAD = """\
global
    nbthread 1
    maxconn 4096
    ssl-server-verify required
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
"""


def haproxy_a_config(listen, b_port, certs, h2=False):
    a = certs["a"]
    # h2: requests from the client (HTTP/1.1) are multiplexed over HTTP/2 between A and B.
    alpn = " alpn h2" if h2 else ""
    # Over HTTP/2 the status line's reason phrase is lost, and HAProxy then writes `HTTP/1.1 200 `
    # to the client, which h2load counts as a failure (no status): give it back its reason.
    reason = "    http-response set-status 200 if { status 200 }\n" if h2 else ""
    # No `sni` and no `verifyhost`: HAProxy then checks the chain against ca-file and skips the
    # name check, which an SVID (URI SAN only) could not pass.
    return HAPROXY_HEAD + f"""\
frontend a_in
    bind 127.0.0.1:{listen} backlog 4096
{reason}    default_backend to_b
backend to_b
    http-reuse always
    server b 127.0.0.1:{b_port} ssl verify required ca-file {a['root']} crt {a['combined']} \
{TLS13}{alpn}
"""


def haproxy_b_config(listen, app_port, certs, h2=False):
    b = certs["b"]
    alpn = " alpn h2,http/1.1" if h2 else ""
    return HAPROXY_HEAD + f"""\
frontend b_in
    bind 127.0.0.1:{listen} backlog 4096 ssl crt {b['combined']} ca-file {b['root']} \
verify required {TLS13}{alpn}
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:{app_port}
"""


def start_haproxy(bench, name, conf_text):
    conf = os.path.join(bench.tmp, name + ".cfg")
    with open(conf, "w") as f:
        f.write(conf_text)
    bench.configs.append(conf)
    # -db: foreground, no master-worker: exactly one process with one thread.
    return bench.procs.start(name, ["haproxy", "-db", "-f", conf])


# ---------------------------------------------------------------------------------------------
# paths

def start_direct(bench):
    return bench.app_port, []


def start_haproxy_path(bench, h2=False):
    p1, p2 = free_port(), free_port()
    b = start_haproxy(bench, "haproxy-b", haproxy_b_config(p2, bench.app_port, bench.certs, h2))
    a = start_haproxy(bench, "haproxy-a", haproxy_a_config(p1, p2, bench.certs, h2))
    return p1, [a, b]


def start_nginx_path(bench):
    p1, p2 = free_port(), free_port()
    b = start_nginx(bench, "nginx-b", nginx_b_config(bench.tmp, p2, bench.app_port, bench.certs))
    a = start_nginx(bench, "nginx-a", nginx_a_config(bench.tmp, p1, p2, bench.certs))
    return p1, [a, b]


def start_remora_path(bench, extra=()):
    """Remora as A and B; `remora` records Istio metrics (the default), `remora-nometrics` runs
    with --metrics off, `remora-trace100` samples every request and exports both sidecars' spans
    (to the app nginx, which answers the POSTs)."""
    binary = bench.baseline_bin if "--baseline" in extra else bench.remora_bin
    a, b = bench.certs["a"], bench.certs["b"]
    p1, p2 = free_port(), free_port()
    adm_a, health_a, adm_b, health_b = free_port(), free_port(), free_port(), free_port()
    pb = bench.procs.start("remora-b", [
        binary, "--cert-chain", b["chain"], "--key", b["key"], "--trust-bundle", b["root"],
        "--listen-inbound", f"127.0.0.1:{p2}", "--app", f"127.0.0.1:{bench.app_port}",
        "--admin", f"127.0.0.1:{adm_b}", "--health", f"127.0.0.1:{health_b}",
        "--metrics", "off" if "--metrics-off" in extra else f"127.0.0.1:{free_port()}",
        "--concurrency", "1", *telemetry_flags(bench, extra)])
    # remora-h1: HTTP/1.1 between the sidecars, one mTLS connection per in-flight request.
    upgrade = ["--h2-upgrade-policy", "DO_NOT_UPGRADE"] if "--h1" in extra else []
    pa = bench.procs.start("remora-a", [
        binary, "--cert-chain", a["chain"], "--key", a["key"], "--trust-bundle", a["root"],
        "--listen-outbound", f"127.0.0.1:{p1}", "--upstream", f"127.0.0.1:{p2}",
        "--upstream-identity", SERVER_SPIFFE,
        "--admin", f"127.0.0.1:{adm_a}", "--health", f"127.0.0.1:{health_a}",
        "--metrics", "off" if "--metrics-off" in extra else f"127.0.0.1:{free_port()}",
        "--concurrency", "1", *upgrade, *telemetry_flags(bench, extra)])
    for name, port in (("remora-b", health_b), ("remora-a", health_a)):
        wait_until(f"{name} GET /healthz/ready = 200",
                   lambda port=port: http_get(port, "/healthz/ready")[0] == 200, [pa, pb])
    return p1, [pa, pb]


def telemetry_flags(bench, extra):
    if "--trace-all" in extra:
        return ["--trace-sampling", "100", "--zipkin-address", f"127.0.0.1:{bench.app_port}"]
    return []


STARTERS = {"direct": start_direct, "haproxy": start_haproxy_path,
            "haproxy-h2": lambda bench: start_haproxy_path(bench, h2=True), "nginx": start_nginx_path,
            "remora": start_remora_path,
            "remora-h1": lambda bench: start_remora_path(bench, ["--h1"]),
            "remora-baseline": lambda bench: start_remora_path(bench, ["--baseline"]),
            "remora-nometrics": lambda bench: start_remora_path(bench, ["--metrics-off"]),
            "remora-trace100": lambda bench: start_remora_path(bench, ["--trace-all"])}


# ---------------------------------------------------------------------------------------------
# measurements

def run_h2load(argv, timeout, sample=None):
    """Run h2load; while it runs call sample(seconds since start) every 0.25 s. Returns stdout."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    start = time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() - start > timeout:
                raise PathError(f"h2load did not finish within {timeout:.0f} s")
            if sample:
                sample(time.monotonic() - start)
            time.sleep(0.25)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(5)
    text = "".join(out)
    if proc.returncode != 0:
        raise PathError(f"h2load exited with {proc.returncode}: {text.strip()[-400:]}")
    return text


class LoadSampler:
    """Peak RSS of the proxies during a run, and their CPU time after h2load's warm-up."""

    def __init__(self, procs, warmup):
        self.procs, self.warmup = procs, warmup
        self.peak_rss = 0
        self.cpu0 = self.t0 = None

    def __call__(self, elapsed):
        if not self.procs:
            return
        pids = server_pids(self.procs)
        self.peak_rss = max(self.peak_rss, rss_kb(pids))
        if self.cpu0 is None and elapsed >= self.warmup:
            self.cpu0, self.t0 = cpu_seconds(pids), time.monotonic()

    def cpu(self, rps):
        """(CPU % of one core, CPU microseconds per request at rps), A+B summed."""
        if not self.procs or self.cpu0 is None:
            return 0.0, 0.0
        busy = (cpu_seconds(server_pids(self.procs)) - self.cpu0) / (time.monotonic() - self.t0)
        return 100.0 * busy, (1e6 * busy / rps if rps else 0.0)


def parse_h2load(text):
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (m and r and s):
        raise PathError("could not parse h2load output:\n" + text[-600:])
    done, ok2xx = int(r.group(3)), int(s.group(1))
    return {"secs": float(m.group(1)), "rps": float(m.group(2)), "done": done,
            "failed": int(r.group(5)) + int(r.group(6)) + int(r.group(7)),
            "non2xx": done - ok2xx}


def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return 0
    k = max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1)
    return sorted_vals[k]


def read_latency_log(path):
    """h2load --log-file rows: start (us since epoch), status (-1 failed), us to response end."""
    lat, bad = [], 0
    with open(path) as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) < 3:
                continue
            status, us = int(cols[1]), int(cols[2])
            if 200 <= status < 300:
                lat.append(us)
            else:
                bad += 1
    lat.sort()
    return lat, bad


def measure(bench, name, port, procs, args):
    url = f"http://127.0.0.1:{port}/"
    res = {"path": name}
    time.sleep(0.5)  # let the servers settle after the check request
    res["rss_idle"] = rss_kb(server_pids(procs)) if procs else 0

    # (1) closed loop: as many requests/s as 32 connections get, each one request at a time.
    sampler = LoadSampler(procs, args.warmup)
    argv = ["h2load", "--h1", "-c", str(CLOSED_LOOP_CLIENTS), "-t", "1",
            "-D", str(args.duration), "--warm-up-time", str(args.warmup), url]
    bench.commands.setdefault("closed", argv)
    closed = parse_h2load(run_h2load(argv, args.duration + args.warmup + 60, sampler))
    res["cpu_pct"], res["cpu_us_req"] = sampler.cpu(closed["rps"])
    res["rss_load"] = rss_kb(server_pids(procs)) if procs else 0
    res["rss_peak"] = max(sampler.peak_rss, res["rss_load"])
    res["rps"] = closed["rps"]
    res["closed_err"] = closed["failed"] + closed["non2xx"]

    # (2) latency at a fixed offered rate (well under every path's capacity).
    logf = os.path.join(bench.tmp, f"latency-{name}.tsv")
    sampler = LoadSampler(procs, 1)
    argv = ["h2load", "--h1", "-c", str(RATE_CLIENTS), "-t", "1", "--rps", str(RATE_PER_CLIENT),
            "-D", str(args.duration), "--warm-up-time", "1", "--log-file", logf, url]
    bench.commands.setdefault("rate", argv)
    rate = parse_h2load(run_h2load(argv, args.duration + 60, sampler))
    res["rate_cpu_pct"], _ = sampler.cpu(rate["rps"])
    lat, bad = read_latency_log(logf)
    res["rate_rps"] = rate["rps"]
    res["rate_err"] = max(rate["failed"] + rate["non2xx"], bad)  # the same requests, twice
    res["n_lat"] = len(lat)
    for key, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        res[key] = percentile(lat, p)
    res["max"] = lat[-1] if lat else 0
    return res


# ---------------------------------------------------------------------------------------------
# output

def table(title, cols, results):
    log(title)
    line = "  ".join(h.rjust(w) for h, _, w in cols)
    log(line)
    log("-" * len(line))
    for r in results:
        cells = []
        for _, fmt, w in cols:
            proxy_only = fmt.startswith("!")
            text = "-" if proxy_only and r["path"] == "direct" else fmt.lstrip("!").format(**r)
            cells.append(text.rjust(w))
        log("  ".join(cells))
    log("")


def callgrind_totals(path):
    """Instructions (Ir) a callgrind output file counted, from its `totals:`/`summary:` line."""
    found = {}
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                found[line.split(":")[0]] = int(line.split()[1])
    if not found:
        raise PathError(f"{path}: no totals line")
    return found.get("totals", found.get("summary"))  # summary: comes first and may say 0


def measure_instructions(bench, name, port, procs, args):
    """User-space instructions per request of each proxy (callgrind), for `args.instructions`
    requests after a warm-up: a count that, unlike time, does not depend on the machine's load."""
    url = f"http://127.0.0.1:{port}/"
    warm = ["h2load", "--h1", "-c", str(CLOSED_LOOP_CLIENTS), "-t", "1", "-n", "2000", url]
    run_h2load(warm, 600)
    for p in procs:
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL)
    argv = ["h2load", "--h1", "-c", str(CLOSED_LOOP_CLIENTS), "-t", "1", "-n",
            str(args.instructions), url]
    bench.commands.setdefault("instructions", argv)
    res = parse_h2load(run_h2load(argv, 1200))
    for p in procs:
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL)
    if res["failed"] or res["non2xx"] or res["done"] != args.instructions:
        raise PathError(f"{res['done']} requests done, {res['failed']} failed, "
                        f"{res['non2xx']} not 2xx")
    counts = {}
    for p in procs:
        bench.procs.stop(p)  # callgrind writes its file as the process exits
        counts[p.bench_name[-1]] = callgrind_totals(bench.callgrind_out(name, p.bench_name))
    n = args.instructions
    return {"path": name, "ir_a": counts["a"] / n, "ir_b": counts["b"] / n,
            "ir": (counts["a"] + counts["b"]) / n}


def print_header(header_notes):
    log("")
    log("Two-hop path: h2load -> A (HTTP/1.1) -> mTLS 1.3 (ECDSA P-256 SVIDs) -> B -> nginx app")
    for n in header_notes:
        log("  " + n)
    log("")


def print_outcomes(skipped, failed):
    for name, why in skipped:
        log(f"{name}: skipped: {why}")
    for name, why in failed:
        log(f"{name}: FAILED: {why}")
    log("")


def print_instructions(results, skipped, failed, header_notes, args):
    print_header(header_notes)
    table(f"User-space instructions per request (valgrind --tool=callgrind, {args.instructions} "
          f"requests after 2000, h2load --h1, {CLOSED_LOOP_CLIENTS} connections)",
          [("path", "{path}", 17), ("A", "{ir_a:.0f}", 9), ("B", "{ir_b:.0f}", 9),
           ("A+B", "{ir:.0f}", 9)], results)
    print_outcomes(skipped, failed)
    for r in results:
        log(f"path={r['path']} ir_a={r['ir_a']:.0f} ir_b={r['ir_b']:.0f} ir={r['ir']:.0f}")


def print_table(results, skipped, failed, header_notes, args):
    print_header(header_notes)
    table(f"Closed loop: h2load --h1, {CLOSED_LOOP_CLIENTS} connections, {args.duration} s "
          "(CPU: proxy A+B, % of one core)",
          [("path", "{path}", 17), ("req/s", "{rps:.0f}", 9), ("errors", "{closed_err}", 7),
           ("cpu %", "!{cpu_pct:.0f}", 6), ("cpu us/req", "!{cpu_us_req:.1f}", 10)], results)
    table(f"Latency at a fixed {RATE_CLIENTS * RATE_PER_CLIENT} req/s offered "
          f"({RATE_CLIENTS} connections x {RATE_PER_CLIENT}/s), {args.duration} s, microseconds",
          [("path", "{path}", 17), ("p50", "{p50}", 7), ("p90", "{p90}", 7), ("p99", "{p99}", 7),
           ("p99.9", "{p999}", 7), ("max", "{max}", 7), ("req/s", "{rate_rps:.0f}", 7),
           ("errors", "{rate_err}", 7), ("cpu %", "!{rate_cpu_pct:.0f}", 6)], results)
    offered = RATE_CLIENTS * RATE_PER_CLIENT
    for r in results:
        if r["rate_rps"] < 0.95 * offered:
            log(f"note: {r['path']} reached only {r['rate_rps']:.0f} of {offered} req/s offered; "
                "h2load then sends more slowly rather than queueing, so its latencies understate "
                "what a client at that rate would see")
        if r["closed_err"] or r["rate_err"]:
            log(f"note: {r['path']} had failed or non-2xx requests; its numbers are suspect")
    table("Resident memory, proxy A+B, all processes, KiB",
          [("path", "{path}", 17), ("idle", "!{rss_idle}", 9), ("after load", "!{rss_load}", 10),
           ("peak", "!{rss_peak}", 9)], results)
    print_outcomes(skipped, failed)
    for r in results:
        log(f"path={r['path']} rps={r['rps']:.0f} p50_us={r['p50']} p90_us={r['p90']} "
            f"p99_us={r['p99']} rss_idle_kb={r['rss_idle']} rss_load_kb={r['rss_load']}")
    for name, why in skipped:
        log(f"skipped path={name} reason=\"{why}\"")
    for name, why in failed:
        log(f"failed path={name} reason=\"{why.splitlines()[0]}\"")


# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, tmp, verbose):
        self.tmp = tmp
        self.procs = Procs(tmp, verbose)
        self.configs = []
        self.commands = {}
        self.certs = None
        self.app_port = None
        self.remora_bin = None
        self.baseline_bin = None

    def callgrind_out(self, path, proc):
        return os.path.join(self.tmp, f"callgrind-{path}-{proc}.out")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default="./build",
                    help="Remora build directory (default ./build)")
    ap.add_argument("--paths", default=",".join(ALL_PATHS),
                    help="comma-separated subset of " + ",".join(ALL_PATHS))
    ap.add_argument("--duration", type=int, default=10,
                    help="seconds per measurement (default 10)")
    ap.add_argument("--quick", action="store_true", help="2 s measurements, for smoke tests")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temporary directory (configs, certificates, logs)")
    ap.add_argument("--baseline-bin", default=None,
                    help="another remora-proxy binary (e.g. built from an earlier commit), measured as "
                         "the path `remora-baseline` beside the others")
    ap.add_argument("--instructions", type=int, default=0, metavar="N",
                    help="instead of timing: run each proxy under valgrind's callgrind and count "
                         "its user-space instructions over N requests (repeatable where timings "
                         "on a shared machine are not); HAProxy and Remora paths only")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every server command")
    args = ap.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in ALL_PATHS]
    if bad or not paths:
        ap.error(f"--paths: unknown {', '.join(bad) or '(empty)'}; choose from "
                 + ",".join(ALL_PATHS))
    args.paths = list(dict.fromkeys(paths))
    if args.baseline_bin:
        if not os.access(args.baseline_bin, os.X_OK):
            ap.error(f"--baseline-bin {args.baseline_bin}: not an executable")
        args.paths.append("remora-baseline")
    if args.instructions:
        if args.instructions < 100:
            ap.error("--instructions needs at least 100 requests")
        dropped = [p for p in args.paths if p not in INSTRUCTION_PATHS]
        args.paths = [p for p in args.paths if p in INSTRUCTION_PATHS]
        if not args.paths:
            ap.error("--instructions measures " + ", ".join(INSTRUCTION_PATHS) + " only")
        if dropped:
            log("--instructions: leaving out " + ", ".join(dropped))
    if args.quick:
        args.duration = 2
    if args.duration < 1:
        ap.error("--duration must be at least 1")
    args.warmup = 1 if args.duration < 5 else 2
    return args


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main():
    args = parse_args()
    # Also when started with SIGINT ignored (`cmd &` in a script): Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    bin_dir = os.path.abspath(args.bin_dir)
    tmp = None
    bench = None
    try:
        ensure_tools(args.paths, bool(args.instructions))
        tmp = tempfile.mkdtemp(prefix="remora-bench-")
        bench = Bench(tmp, args.verbose)
        notes = [f"h2load: {tool_version(['h2load', '--version'])}",
                 f"nginx: {tool_version(['nginx', '-v'])}"]
        if "haproxy" in args.paths:
            notes.append(f"haproxy: {tool_version(['haproxy', '-v'])}")
        load_before = os.getloadavg()[0]

        skipped, failed, results = [], [], []
        paths = list(args.paths)
        bench.remora_bin = os.path.join(bin_dir, "proxy", "remora-proxy")
        bench.baseline_bin = args.baseline_bin
        if not os.access(bench.remora_bin, os.X_OK):
            for p in [p for p in paths if p.startswith("remora")]:
                skipped.append((p, f"{bench.remora_bin} not found"))
                log(f"{p}: skipped ({bench.remora_bin} not found)")
                paths.remove(p)

        if any(p != "direct" for p in paths):
            log("issuing SVIDs from a private remora-control")
            bench.certs = issue_certs(bench, bin_dir)

        bench.app_port = free_port()
        app = start_nginx(bench, "app", app_config(tmp, bench.app_port))
        try:
            wait_path(bench.app_port, [app], "the app (nginx) to answer")
        except PathError as e:
            raise SetupError(f"{e}\n{bench.procs.log_tail(app)}") from None

        for name in paths:
            log(f"{name}: starting")
            procs = []
            if args.instructions:
                bench.procs.wrap = lambda proc, name=name: (
                    ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                     "--callgrind-out-file=" + bench.callgrind_out(name, proc)]
                    if proc in PROXY_NAMES else [])
            try:
                port, procs = STARTERS[name](bench)
                wait_path(port, procs + [app], f"{name}: a request through the whole path")
                if args.instructions:
                    log(f"{name}: counting instructions over {args.instructions} requests")
                    results.append(measure_instructions(bench, name, port, procs, args))
                    continue
                log(f"{name}: measuring ({args.duration} s closed loop, "
                    f"{args.duration} s at {RATE_CLIENTS * RATE_PER_CLIENT} req/s)")
                results.append(measure(bench, name, port, procs, args))
            except PathError as e:
                why = str(e)
                for p in procs:
                    tail = bench.procs.log_tail(p)
                    if tail:
                        why += f"\n  {p.bench_name} log:\n{tail}"
                log(f"{name}: FAILED: {why}")
                failed.append((name, str(e)))
            finally:
                bench.procs.wrap = None
                for p in procs:
                    bench.procs.stop(p)
                if app.poll() is not None:
                    raise SetupError("the app (nginx) exited")

        notes.append(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
                     f"on {os.cpu_count()} CPUs (other load on the machine skews req/s most)")
        if args.verbose:
            log("\nconfigs: " + " ".join(bench.configs))
            for k, v in bench.commands.items():
                log(f"h2load ({k}): " + " ".join(v))
        (print_instructions if args.instructions else print_table)(results, skipped, failed, notes, args)
        return 1 if failed else 0
    except SetupError as e:
        log(f"setup failed: {e}")
        return 2
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"\ninterrupted ({str(e) or 'SIGINT'}); stopping servers")
        return 130
    finally:
        if bench is not None:
            bench.procs.stop_all()
        if tmp:
            if args.keep_tmp:
                log(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
