#!/usr/bin/env python3
"""How long remora-proxy takes to become ready with a large --config, and how much memory it keeps.

For each size (default 1,000, 10,000 and 40,000 services), writes Istio YAML of that many
ServiceEntries (one VirtualService and one DestinationRule per ten; the same text as
snapshot_build_bench, which writes it with --emit), starts remora-proxy --config on loopback with
a static certificate made by openssl, and reports:
  ready_s   from exec to /healthz/ready answering 200
  phases    the proxy's own log line: read, translated, route table (ms)
  rss_MiB   resident memory once ready
  analyze_s `remoractl analyze` of the same file
With --baseline-bin, an older remora-proxy runs the same files in the same run, side by side.
It reports and never asserts: time depends on the machine.

  ninja -C build tests/bench/snapshot_build_bench
  python3 tests/bench/config_ready.py --bin-dir build [--sizes 1000,10000,40000] [--runs 3]
"""
import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(tmp):
    """A CA and a leaf for spiffe://cluster.local/ns/bench/sa/default, with openssl."""
    def run(*argv):
        subprocess.run(argv, check=True, capture_output=True, cwd=tmp, timeout=60)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/O=remora-bench-ca")
    run("openssl", "req", *ec, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/O=bench")
    with open(os.path.join(tmp, "ext.cnf"), "w") as f:
        f.write("subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/default\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    run("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf")
    return {k: os.path.join(tmp, f) for k, f in
            (("chain", "cert.pem"), ("key", "key.pem"), ("root", "ca.pem"))}


def ready_once(proxy, config, certs, tmp):
    """Starts the proxy, waits for readiness, returns (seconds, rss MiB, phases text)."""
    health = free_port()
    log_path = os.path.join(tmp, "proxy.log")
    argv = [proxy, "--cert-chain", certs["chain"], "--key", certs["key"],
            "--trust-bundle", certs["root"], "--config", config, "--namespace", "bench",
            "--outbound", f"127.0.0.1:{free_port()}", "--inbound", f"127.0.0.1:{free_port()}",
            "--admin", f"127.0.0.1:{free_port()}", "--health", f"127.0.0.1:{health}",
            "--metrics", "off"]
    with open(log_path, "w") as log:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = start + 300
        while True:
            if proc.poll() is not None:
                with open(log_path) as f:
                    raise RuntimeError(f"remora-proxy exited {proc.returncode}:\n{f.read()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", health, timeout=1)
                c.request("GET", "/healthz/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("not ready within 300 s")
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        rss = 0.0
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
    finally:
        proc.send_signal(signal.SIGINT)  # SIGINT: stop at once (SIGTERM drains)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(log_path) as f:
        m = re.search(r"\(read (\d+) ms, translated (\d+) ms, route table (\d+) ms\)", f.read())
    phases = f"{m.group(1)}/{m.group(2)}/{m.group(3)}" if m else "-"
    return elapsed, rss, phases


def analyze_seconds(remoractl, config):
    start = time.monotonic()
    subprocess.run([remoractl, "analyze", config], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default="build")
    ap.add_argument("--sizes", default="1000,10000,40000")
    ap.add_argument("--runs", type=int, default=3, help="runs per size; the median is reported")
    ap.add_argument("--baseline-bin", help="an older remora-proxy to run side by side")
    args = ap.parse_args()

    emit = os.path.join(args.bin_dir, "tests", "bench", "snapshot_build_bench")
    proxies = [("remora", os.path.join(args.bin_dir, "proxy", "remora-proxy"))]
    if args.baseline_bin:
        proxies.append(("baseline", args.baseline_bin))
    remoractl = os.path.join(args.bin_dir, "control", "remoractl")
    for p in [emit, remoractl] + [p for _, p in proxies]:
        if not os.access(p, os.X_OK):
            sys.exit(f"{p} not found: build it first (ninja -C {args.bin_dir} "
                     "tests/bench/snapshot_build_bench proxy/remora-proxy control/remoractl)")
    if not shutil.which("openssl"):
        sys.exit("openssl not found (apt-get install openssl)")

    tmp = tempfile.mkdtemp(prefix="remora-config-ready-")
    try:
        certs = make_certs(tmp)
        print(f"{'services':>8} {'MB':>6} {'proxy':>9} {'ready_s':>8} {'read/xlate/table ms':>20} "
              f"{'rss_MiB':>8} {'analyze_s':>9}")
        for n in [int(s) for s in args.sizes.split(",")]:
            config = os.path.join(tmp, f"services-{n}.yaml")
            subprocess.run([emit, "--emit", str(n), config], check=True, timeout=120)
            mb = os.path.getsize(config) / 1e6
            analyze = analyze_seconds(remoractl, config)
            for name, proxy in proxies:
                runs = [ready_once(proxy, config, certs, tmp) for _ in range(args.runs)]
                runs.sort(key=lambda r: r[0])
                ready, rss, phases = runs[len(runs) // 2]
                print(f"{n:>8} {mb:>6.1f} {name:>9} {ready:>8.2f} {phases:>20} {rss:>8.0f} "
                      f"{analyze if name == 'remora' else float('nan'):>9.2f}", flush=True)
                if len(runs) > 1:
                    spread = statistics.pstdev(r[0] for r in runs)
                    if spread > 0.25 * ready:
                        print(f"         (noisy: ready times {[round(r[0], 2) for r in runs]})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
