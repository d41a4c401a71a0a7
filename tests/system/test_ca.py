#!/usr/bin/env python3
"""System test of remora-control's certificate authority, driven the way a new user would drive it.

Runs the real binaries (remora-control, remoractl) on loopback ports with temporary state dirs
and checks what comes back with curl, openssl and Python's ssl module only.

    python3 tests/system/test_ca.py --bin-dir BUILD_DIR [-k SUBSTRING] [--keep]

Prints `PASS name` or `FAIL name: reason` (followed by indented details) per test, then
`N passed, N failed`. Exit status: 0 all passed, 1 some failed, 77 curl or openssl missing.
"""

import argparse
import base64
import calendar
import concurrent.futures
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Failure, Runner, check, clip  # noqa: E402,F401

TRUST_DOMAIN = "cluster.local"
DEFAULT_TTL = 86400
MAX_TTL = 7776000  # 90d
BODY_LIMIT = 64 * 1024
CMD_TIMEOUT = 20


# ---------------------------------------------------------------------------------------------
# Command helpers (Failure, check and clip are in harness.py)


class Run:
    """The outcome of one command, with a description fit for a failure message."""

    def __init__(self, argv, proc):
        self.argv = argv
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def describe(self):
        return (f"command: {' '.join(shlex_quote(a) for a in self.argv)}\n"
                f"exit: {self.rc}\nstdout: {clip(self.out)}\nstderr: {clip(self.err)}")


def shlex_quote(s):
    s = str(s)
    if len(s) > 200:
        s = s[:60] + "...<" + str(len(s)) + " chars>"
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def run(argv, input=None, timeout=CMD_TIMEOUT):
    argv = [str(a) for a in argv]
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"command timed out after {timeout}s", [f"command: {' '.join(argv)}",
                                                              f"stdout: {clip(e.stdout)}",
                                                              f"stderr: {clip(e.stderr)}"])
    return Run(argv, proc)


def must_run(argv, input=None, what=None):
    r = run(argv, input=input)
    check(r.rc == 0, f"{what or argv[0]} failed with exit {r.rc}", r.describe())
    return r


def openssl(*args, input=None):
    return must_run(["openssl", *args], input=input, what="openssl " + args[0]).out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path


def read(path):
    with open(path) as f:
        return f.read()


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------------------------
# PEM, X.509 and JWT helpers (openssl does the cryptography)

PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)


def pem_certs(text):
    return [m.group(0).strip() + "\n" for m in PEM_RE.finditer(text)]


def same_pem(a, b):
    return "".join(a.split()) == "".join(b.split())


def cert_file(tmp, name, pem):
    return write(os.path.join(tmp, name), pem)


def x509_ext(path, ext):
    """The named extension as (critical, [values]); (None, []) when absent."""
    out = openssl("x509", "-in", path, "-noout", "-ext", ext)
    lines = [l.strip() for l in out.splitlines() if l.strip()]
    if not lines:
        return None, []
    critical = lines[0].endswith("critical")
    values = []
    for l in lines[1:]:
        values.extend(v.strip() for v in l.split(",") if v.strip())
    return critical, values


def x509_dates(path):
    out = openssl("x509", "-in", path, "-noout", "-startdate", "-enddate")
    d = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    fmt = "%b %d %H:%M:%S %Y %Z"
    return (calendar.timegm(time.strptime(d["notBefore"].replace("  ", " "), fmt)),
            calendar.timegm(time.strptime(d["notAfter"].replace("  ", " "), fmt)))


def x509_field(path, flag):
    out = openssl("x509", "-in", path, "-noout", flag).strip()
    return out.split("=", 1)[1].strip() if "=" in out else out


def cert_pubkey(path):
    return openssl("x509", "-in", path, "-noout", "-pubkey")


def key_pubkey(path):
    return openssl("pkey", "-in", path, "-pubout")


def parse_rfc3339(s):
    return calendar.timegm(time.strptime(s.strip(), "%Y-%m-%dT%H:%M:%SZ"))


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token):
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def der_ecdsa_to_raw(der):
    """DER ECDSA-Sig-Value (SEQUENCE { INTEGER r, INTEGER s }) to JOSE's raw 64-byte r||s."""
    def read_len(buf, i):
        n = buf[i]
        if n < 0x80:
            return n, i + 1
        k = n & 0x7F
        return int.from_bytes(buf[i + 1:i + 1 + k], "big"), i + 1 + k

    assert der[0] == 0x30, "not a DER SEQUENCE"
    _, i = read_len(der, 1)
    ints = []
    for _ in range(2):
        assert der[i] == 0x02, "not a DER INTEGER"
        n, i = read_len(der, i + 1)
        ints.append(int.from_bytes(der[i:i + n], "big"))
        i += n
    return b"".join(v.to_bytes(32, "big") for v in ints)


def sign_jwt(header, payload, key_path, tmp):
    signing_input = b64url(json.dumps(header, separators=(",", ":"))) + "." + \
        b64url(json.dumps(payload, separators=(",", ":")))
    data = os.path.join(tmp, "jwt-signing-input")
    with open(data, "w") as f:
        f.write(signing_input)
    sig_path = os.path.join(tmp, "jwt-sig.der")
    must_run(["openssl", "dgst", "-sha256", "-sign", key_path, "-out", sig_path, data],
             what="openssl dgst -sign")
    with open(sig_path, "rb") as f:
        der = f.read()
    return signing_input + "." + b64url(der_ecdsa_to_raw(der))


def sa_claims(ns="default", sa="sleep", exp_in=3600, aud=("remora-ca",)):
    now = int(time.time())
    return {"iss": "remora-control", "sub": f"system:serviceaccount:{ns}:{sa}", "aud": list(aud),
            "iat": now, "exp": now + exp_in}


def spiffe(ns, sa, td=TRUST_DOMAIN):
    return f"spiffe://{td}/ns/{ns}/sa/{sa}"


def make_csr(tmp, name, extra=()):
    """An EC P-256 key and CSR made with openssl; returns (key path, CSR PEM)."""
    key = os.path.join(tmp, name + ".key")
    csr = os.path.join(tmp, name + ".csr")
    must_run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-subj", "/", "-keyout", key, "-out", csr, *extra], what="openssl req")
    return key, read(csr)


# ---------------------------------------------------------------------------------------------
# remora-control under test


class Server:
    """One remora-control process with its own ports, state dir and log file."""

    def __init__(self, bins, state_dir, log_dir, name, extra=(), ports=None):
        self.bins = bins
        self.state_dir = state_dir
        self.name = name
        self.extra = list(extra)
        self.api_port, self.mon_port = ports or (free_port(), free_port())
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.proc = None
        self.starts = 0

    def argv(self):
        return [self.bins.control, "--state-dir", self.state_dir,
                "--listen", f"127.0.0.1:{self.api_port}",
                "--monitoring", f"127.0.0.1:{self.mon_port}", *self.extra]

    def start(self):
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"==== start #{self.starts}: {' '.join(self.argv())}\n")
        log.flush()
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"{self.name}: remora-control exited with {self.proc.returncode} "
                              "before /healthz answered", [self.describe()])
            try:
                status, _, _ = http_get(self.mon_port, "/healthz", timeout=1)
                if status == 200:
                    return self
                last = f"HTTP {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise Failure(f"{self.name}: /healthz not 200 within 10 s ({last})", [self.describe()])

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s; returns the exit status (None if it never ran)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log(self):
        try:
            return read(self.log_path)
        except OSError:
            return ""

    def log_tail(self, n=12):
        lines = self.log().splitlines()
        return "\n".join(lines[-n:])

    def describe(self):
        return (f"server {self.name}: {' '.join(self.argv())}\n"
                f"last lines of {self.log_path}:\n{self.log_tail()}")

    def root_path(self):
        return os.path.join(self.state_dir, "root-cert.pem")

    # -- the API, with curl

    def curl(self, path="/v1/certificates", body=None, token=None, method=None, cert=None,
             key=None, cacert=None, tmp=None, headers=()):
        """Calls the TLS API with curl; returns (status, body text, Run)."""
        tmp = tmp or tempfile.mkdtemp(dir=self.bins.tmp)
        out = os.path.join(tmp, f"curl-body-{time.monotonic_ns()}")
        argv = ["curl", "-sS", "--max-time", "10", "--cacert", cacert or self.root_path(),
                "--resolve", f"localhost:{self.api_port}:127.0.0.1",
                "-o", out, "-w", "%{http_code}"]
        if method:
            argv += ["-X", method]
        if token is not None:
            argv += ["-H", f"Authorization: Bearer {token}"]
        for h in headers:
            argv += ["-H", h]
        if cert:
            argv += ["--cert", cert, "--key", key]
        if body is not None:
            body_file = out + ".req"
            with open(body_file, "w") as f:
                f.write(body)
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@" + body_file]
        argv.append(f"https://localhost:{self.api_port}{path}")
        r = run(argv)
        text = read(out) if os.path.exists(out) else ""
        check(r.rc == 0, f"curl failed with exit {r.rc}", r.describe(), f"body: {clip(text)}")
        return int(r.out.strip() or 0), text, r

    def metrics(self):
        status, body, _ = http_get(self.mon_port, "/metrics")
        check(status == 200, f"GET /metrics answered {status}", clip(body))
        return body

    def token(self, ns="default", sa="sleep", *extra):
        r = must_run([self.bins.ctl, "token", "create", "--namespace", ns, "--service-account", sa,
                      "--state-dir", self.state_dir, *extra], what="remoractl token create")
        tok = r.out.strip()
        check(tok.count(".") == 2, "remoractl token create did not print a JWT", r.describe())
        return tok


def http_get(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read().decode("utf-8", "replace"), res
    finally:
        conn.close()


def metric_value(text, name, labels=None):
    """The value of a sample, or 0 when the series is absent (a counter not yet incremented)."""
    want = name + ("{" + labels + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2 and parts[0] == want:
            return float(parts[1])
    return 0.0


def refused(text, reason):
    return metric_value(text, "remora_ca_requests_refused_total", f'reason="{reason}"')


def refused_total(text):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("remora_ca_requests_refused_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def issued(text):
    return metric_value(text, "remora_ca_certificates_issued_total")


def cert_body(csr, ttl=None):
    body = {"csr": csr}
    if ttl is not None:
        body["ttlSeconds"] = ttl
    return json.dumps(body)


def error_json(status, body, what):
    try:
        doc = json.loads(body)
    except ValueError:
        raise Failure(f"{what}: HTTP {status} body is not JSON", [f"body: {clip(body)}"])
    check(isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"],
          f"{what}: HTTP {status} body has no \"error\" string", f"body: {clip(body)}")
    return doc["error"]


def chain_of(status, body, run_info, what):
    check(status == 200, f"{what}: expected HTTP 200, got {status}", run_info.describe(),
          f"body: {clip(body)}")
    try:
        chain = json.loads(body)["certChain"]
    except (ValueError, KeyError, TypeError):
        raise Failure(f"{what}: 200 answer without a certChain array", [f"body: {clip(body)}"])
    check(isinstance(chain, list) and len(chain) >= 2 and all(isinstance(c, str) for c in chain),
          f"{what}: certChain should be [leaf, ..., root] PEM strings", f"body: {clip(body)}")
    for c in chain:
        check(len(pem_certs(c)) == 1, f"{what}: certChain entry is not one PEM certificate",
              clip(c))
    return chain


def san_entries(path):
    crit, values = x509_ext(path, "subjectAltName")
    return values


def leaf_identity(path):
    """The single URI SAN of a leaf; fails unless the SAN is exactly one URI."""
    sans = san_entries(path)
    check(len(sans) == 1 and sans[0].startswith("URI:"),
          f"expected exactly one URI SAN, found {sans}", openssl("x509", "-in", path, "-noout",
                                                                   "-text"))
    return sans[0][len("URI:"):]


# ---------------------------------------------------------------------------------------------
# The tests. Each takes the shared context; tests run in this order and share the main server.


class Context:
    def __init__(self, bins, tmp):
        self.bins = bins
        self.tmp = tmp
        self.main = None          # the CA on a fresh self-signed state dir
        self.servers = []         # every Server started, killed at the end
        self.test_servers = []    # servers started by the running test (their logs go in FAILs)

    def server(self, name, state_dir=None, extra=(), start=True):
        s = Server(self.bins, state_dir or self.mkdir(name + "-state"), self.tmp, name, extra)
        self.servers.append(s)
        self.test_servers.append(s)
        return s.start() if start else s

    def mkdir(self, name):
        return tempfile.mkdtemp(prefix=name + "-", dir=self.tmp)

    def request_with_remoractl(self, server, out, ns="default", sa="sleep", ttl="1h",
                               token=None, cert_dir=None, bundle=None):
        argv = [self.bins.ctl, "cert", "request", "--control", f"localhost:{server.api_port}",
                "--trust-bundle", bundle or server.root_path(), "--out", out]
        if cert_dir:
            argv += ["--cert-dir", cert_dir]
        else:
            tok_file = write(os.path.join(self.mkdir("token"), "token"),
                             token or server.token(ns, sa))
            argv += ["--token-file", tok_file]
        if ttl:
            argv += ["--ttl", ttl]
        return run(argv)


def test_fresh_state_dir(ctx):
    state = os.path.join(ctx.tmp, "main-state")  # does not exist yet: remora-control creates it
    ctx.main = ctx.server("main", state_dir=state)
    for f in ("root-cert.pem", "root-key.pem", "jwt-signing-key.pem", "jwks.json"):
        check(os.path.isfile(os.path.join(state, f)), f"{f} was not created in the state dir",
              f"state dir holds: {sorted(os.listdir(state))}")
    for f in ("root-key.pem", "jwt-signing-key.pem"):
        mode = file_mode(os.path.join(state, f))
        check(mode == 0o600, f"{f} has mode {mode:o}, expected 600")
    mode = file_mode(os.path.join(state, "root-cert.pem"))
    check(mode == 0o644, f"root-cert.pem has mode {mode:o}, expected 644")
    # The JWT key is an EC P-256 PKCS#8 PEM.
    jwt_key = read(os.path.join(state, "jwt-signing-key.pem"))
    check(jwt_key.startswith("-----BEGIN PRIVATE KEY-----"),
          "jwt-signing-key.pem is not PKCS#8 PEM", jwt_key.splitlines()[0] if jwt_key else "")
    text = openssl("pkey", "-in", os.path.join(state, "jwt-signing-key.pem"), "-noout", "-text")
    check("prime256v1" in text or "P-256" in text, "jwt-signing-key.pem is not EC P-256",
          clip(text, 400))
    jwks = json.loads(read(os.path.join(state, "jwks.json")))
    check(isinstance(jwks.get("keys"), list) and len(jwks["keys"]) == 1 and
          jwks["keys"][0].get("kid"), "jwks.json should hold one key with a kid", json.dumps(jwks))

    root = ctx.main.root_path()
    subject = x509_field(root, "-subject")
    issuer = x509_field(root, "-issuer")
    check(re.search(r"\bO ?= ?cluster\.local\b", subject), f"root subject is {subject!r}, "
          "expected O=cluster.local")
    check(subject == issuer, f"root is not self-issued: subject {subject!r}, issuer {issuer!r}")
    r = run(["openssl", "verify", "-CAfile", root, root])
    check(r.rc == 0, "the root does not verify against itself (not self-signed)", r.describe())
    crit, bc = x509_ext(root, "basicConstraints")
    check("CA:TRUE" in bc, f"root basicConstraints is {bc}, expected CA:TRUE")
    crit, ku = x509_ext(root, "keyUsage")
    check("Certificate Sign" in ku, f"root keyUsage is {ku}, expected Certificate Sign")
    nb, na = x509_dates(root)
    days = (na - nb) / 86400
    check(3640 <= days <= 3660, f"root lives {days:.1f} days, expected about 10 years (3650)")
    check(abs(nb - time.time()) < 3600, "root notBefore is not about now")
    # The key on disk is the root's key.
    check(cert_pubkey(root) == key_pubkey(os.path.join(state, "root-key.pem")),
          "root-key.pem does not match root-cert.pem")
    check("created CA" in ctx.main.log(), "the log does not say the CA was created",
          ctx.main.log_tail())


def require_main(ctx):
    check(ctx.main is not None and ctx.main.proc is not None and ctx.main.proc.poll() is None,
          "the main remora-control is not running (see fresh_state_dir)")
    return ctx.main


def check_svid(path, identity, what):
    got = leaf_identity(path)
    check(got == identity, f"{what}: leaf identity is {got}, expected {identity}")
    crit, bc = x509_ext(path, "basicConstraints")
    check(bc == ["CA:FALSE"], f"{what}: basicConstraints is {bc}, expected CA:FALSE")
    crit, ku = x509_ext(path, "keyUsage")
    check(crit and "Digital Signature" in ku and "Certificate Sign" not in ku and
          "CRL Sign" not in ku,
          f"{what}: keyUsage is {'critical ' if crit else ''}{ku}, expected critical Digital "
          "Signature without cert/CRL signing")
    crit, eku = x509_ext(path, "extendedKeyUsage")
    check("TLS Web Server Authentication" in eku and "TLS Web Client Authentication" in eku,
          f"{what}: extendedKeyUsage is {eku}, expected server and client auth")
    text = openssl("x509", "-in", path, "-noout", "-text")
    check("prime256v1" in text or "NIST CURVE: P-256" in text, f"{what}: leaf key is not P-256")


def test_remoractl_first_certificate(ctx):
    main = require_main(ctx)
    out = os.path.join(ctx.mkdir("remoractl"), "svid")
    before = time.time()
    r = ctx.request_with_remoractl(main, out, ns="default", sa="sleep", ttl="1h")
    check(r.rc == 0, f"remoractl cert request exited {r.rc}", r.describe(), main.describe())
    want = spiffe("default", "sleep")
    m = re.search(r"^identity:\s+(\S+)\s*$", r.out, re.M)
    check(m and m.group(1) == want, f"remoractl did not print identity {want}", r.describe())
    for f in ("key.pem", "cert-chain.pem", "root-cert.pem"):
        check(os.path.isfile(os.path.join(out, f)), f"remoractl did not write {f}",
              f"wrote: {os.listdir(out) if os.path.isdir(out) else 'nothing'}")
    mode = file_mode(os.path.join(out, "key.pem"))
    check(mode == 0o600, f"key.pem has mode {mode:o}, expected 600")
    chain_path = os.path.join(out, "cert-chain.pem")
    chain = pem_certs(read(chain_path))
    check(len(chain) == 1, f"cert-chain.pem holds {len(chain)} certificates, expected the leaf "
          "only (the root is self-signed and goes in root-cert.pem)")
    check(same_pem(read(os.path.join(out, "root-cert.pem")), read(main.root_path())),
          "root-cert.pem written by remoractl differs from the CA's root")
    v = run(["openssl", "verify", "-CAfile", os.path.join(out, "root-cert.pem"), chain_path])
    check(v.rc == 0 and v.out.strip().endswith("OK"), "openssl verify refused cert-chain.pem",
          v.describe())
    check_svid(chain_path, want, "remoractl leaf")
    check(cert_pubkey(chain_path) == key_pubkey(os.path.join(out, "key.pem")),
          "cert-chain.pem's leaf is not for key.pem")
    nb, na = x509_dates(chain_path)
    check(abs((na - before) - 3600) <= 120, f"not-after is {na - before:.0f}s away, expected "
          "about 3600s for --ttl 1h")
    m = re.search(r"^not after:\s+(\S+)\s*$", r.out, re.M)
    check(m and abs(parse_rfc3339(m.group(1)) - na) <= 1,
          "remoractl's 'not after:' line does not match the certificate", r.describe())
    serial = x509_field(chain_path, "-serial")
    m = re.search(r"^serial:\s+([0-9A-Fa-f:]+)\s*$", r.out, re.M)
    check(m and int(m.group(1).replace(":", ""), 16) == int(serial, 16),
          f"remoractl's 'serial:' line does not match the certificate serial {serial}",
          r.describe())
    # The CA logs each certificate it issues.
    logged = [l for l in main.log().splitlines() if "issued certificate" in l and
              f"identity={want}" in l]
    check(any(re.search(r"serial=0*" + serial.lstrip("0"), l, re.I) and "not_after=" in l
              for l in logged),
          f"no 'issued certificate serial={serial} identity={want} not_after=...' log line",
          main.log_tail())
    ctx.first_svid_dir = out


def test_curl_and_openssl_only(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("curl")
    key, csr = make_csr(tmp, "workload")
    token = main.token("bookinfo", "reviews")
    before = time.time()
    status, body, r = main.curl(body=cert_body(csr), token=token, tmp=tmp)
    chain = chain_of(status, body, r, "POST /v1/certificates with curl")
    check(same_pem(chain[-1], read(main.root_path())),
          "the last certChain entry is not the CA's root")
    chain_path = write(os.path.join(tmp, "cert-chain.pem"), "".join(chain[:-1]))
    v = run(["openssl", "verify", "-CAfile", main.root_path(), chain_path])
    check(v.rc == 0 and v.out.strip().endswith("OK"), "openssl verify refused the chain",
          v.describe())
    check_svid(chain_path, spiffe("bookinfo", "reviews"), "curl leaf")
    check(cert_pubkey(chain_path) == key_pubkey(key), "the leaf is not for the CSR's key")
    nb, na = x509_dates(chain_path)
    check(abs((na - before) - DEFAULT_TTL) <= 120,
          f"without ttlSeconds the leaf lives {na - before:.0f}s, expected the 24 h default")


def test_csr_cannot_choose_identity(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("csr-san")
    asked = spiffe("kube-system", "admin")
    key, csr = make_csr(tmp, "sneaky", ["-addext", f"subjectAltName=URI:{asked},DNS:admin.local",
                                        "-subj", "/CN=admin"])
    # -subj given twice: openssl takes the last one, so the CSR really carries CN=admin.
    csr_text = openssl("req", "-noout", "-text", input=csr)
    check(asked in csr_text, "test setup: the CSR does not carry the URI SAN", clip(csr_text))
    status, body, r = main.curl(body=cert_body(csr, 3600), token=main.token("default", "sleep"),
                                tmp=tmp)
    chain = chain_of(status, body, r, "CSR asking for kube-system/admin")
    leaf = cert_file(tmp, "leaf.pem", chain[0])
    sans = san_entries(leaf)
    check(sans == ["URI:" + spiffe("default", "sleep")],
          f"the leaf's SANs are {sans}, expected only the token's identity "
          f"{spiffe('default', 'sleep')} (the CSR asked for {asked} and DNS:admin.local)")
    text = openssl("x509", "-in", leaf, "-noout", "-text")
    check("admin" not in text, "something the CSR asked for (admin) made it into the leaf",
          clip(text))


def refusal_case(ctx, main, tmp, token, reason, what, exact_reason=True, statuses=(401,),
                 cert=None, key=None):
    _, csr = make_csr(tmp, "refused-" + re.sub(r"\W", "_", what))
    before = main.metrics()
    status, body, r = main.curl(body=cert_body(csr, 3600), token=token, cert=cert, key=key,
                                tmp=tmp)
    check(status in statuses, f"{what}: expected HTTP {' or '.join(map(str, statuses))}, got "
          f"{status}", r.describe(), f"body: {clip(body)}", main.describe())
    error_json(status, body, what)
    after = main.metrics()
    if exact_reason:
        d = refused(after, reason) - refused(before, reason)
        check(d == 1, f"{what}: remora_ca_requests_refused_total{{reason=\"{reason}\"}} went up "
              f"by {d:g}, expected 1", "\n".join(l for l in after.splitlines()
                                                if "refused" in l and not l.startswith("#")))
    else:
        d = refused_total(after) - refused_total(before)
        check(d == 1, f"{what}: total refusals went up by {d:g}, expected 1")
    check(issued(after) == issued(before), f"{what}: a certificate was issued anyway")


def jwt_kid(main):
    jwks = json.loads(read(os.path.join(main.state_dir, "jwks.json")))
    return jwks["keys"][0]["kid"]


def test_tokens_refused(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("tokens")
    kid = jwt_kid(main)
    good = main.token("default", "sleep")
    header, payload = jwt_parts(good)
    check(header.get("alg") == "ES256" and header.get("kid") == kid,
          f"remoractl's token header is {header}, expected alg ES256 and the kid {kid} of "
          "jwks.json")
    check(payload.get("sub") == "system:serviceaccount:default:sleep",
          f"remoractl's token sub is {payload.get('sub')!r}")

    # alg none: no signature at all.
    none_token = b64url(json.dumps({"alg": "none", "typ": "JWT"})) + "." + \
        b64url(json.dumps(sa_claims())) + "."
    refusal_case(ctx, main, tmp, none_token, "jwt_alg_none", "alg none token")

    # Expired an hour ago, otherwise perfect and signed with the CA's own key.
    key = os.path.join(main.state_dir, "jwt-signing-key.pem")
    expired = sign_jwt({"alg": "ES256", "kid": kid, "typ": "JWT"},
                       dict(sa_claims(exp_in=-3600), iat=int(time.time()) - 7200), key, tmp)
    # The same token with a valid exp is accepted, so the expired one fails for its exp alone.
    fresh = sign_jwt({"alg": "ES256", "kid": kid, "typ": "JWT"}, sa_claims(), key, tmp)
    _, csr = make_csr(tmp, "self-signed-token")
    status, body, r = main.curl(body=cert_body(csr, 3600), token=fresh, tmp=tmp)
    chain_of(status, body, r, "a token signed here with jwt-signing-key.pem and a valid exp")
    refusal_case(ctx, main, tmp, expired, "jwt_expired", "expired token")

    # Wrong audience.
    other = main.token("default", "sleep", "--audience", "other")
    check(jwt_parts(other)[1].get("aud") in (["other"], "other"),
          "remoractl --audience other did not set aud", json.dumps(jwt_parts(other)[1]))
    refusal_case(ctx, main, tmp, other, "jwt_wrong_audience", "wrong audience token")

    # A key the CA does not know.
    stranger = os.path.join(tmp, "stranger.key")
    must_run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", stranger], what="openssl genpkey")
    unknown = sign_jwt({"alg": "ES256", "kid": "not-a-key-the-ca-knows", "typ": "JWT"},
                       sa_claims(), stranger, tmp)
    refusal_case(ctx, main, tmp, unknown, "jwt_unknown_kid", "unknown key token")

    # The CA's kid, but signed by another key: a forgery.
    forged = sign_jwt({"alg": "ES256", "kid": kid, "typ": "JWT"}, sa_claims(), stranger, tmp)
    refusal_case(ctx, main, tmp, forged, None, "forged token (known kid, other key)",
                 exact_reason=False)

    # Tampered: one character of the payload changed.
    h, p, s = good.split(".")
    i = len(p) // 2
    p2 = p[:i] + ("B" if p[i] != "B" else "C") + p[i + 1:]
    refusal_case(ctx, main, tmp, f"{h}.{p2}.{s}", None, "tampered token (one payload char)",
                 exact_reason=False)
    # Tampered: the subject rewritten to another service account, signature kept.
    claims = jwt_parts(good)[1]
    claims["sub"] = "system:serviceaccount:kube-system:admin"
    claims.pop("kubernetes.io", None)
    refusal_case(ctx, main, tmp, f"{h}.{b64url(json.dumps(claims))}.{s}", None,
                 "tampered token (sub rewritten)", exact_reason=False)

    # No credentials at all.
    refusal_case(ctx, main, tmp, None, "no_credentials", "no credentials")

    # The untouched token still works: the refusals above are about the tokens, not the CA.
    _, csr = make_csr(tmp, "good")
    status, body, r = main.curl(body=cert_body(csr, 3600), token=good, tmp=tmp)
    chain_of(status, body, r, "the untampered token")


def test_token_claims(ctx):
    """Claims a bootstrap token must get right, beyond the cases in tokens_refused."""
    main = require_main(ctx)
    tmp = ctx.mkdir("claims")
    kid = jwt_kid(main)
    key = os.path.join(main.state_dir, "jwt-signing-key.pem")
    es256 = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    now = int(time.time())

    def token(header=es256, **changes):
        claims = sa_claims()
        for k, v in changes.items():
            k = k.replace("__", ".")
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return sign_jwt(header, claims, key, tmp)

    # Accepted: aud as a single string (RFC 7519 allows both forms).
    _, csr = make_csr(tmp, "aud-string")
    status, body, r = main.curl(body=cert_body(csr, 3600), token=token(aud="remora-ca"), tmp=tmp)
    chain = chain_of(status, body, r, "a token with aud as a plain string")
    check(leaf_identity(cert_file(tmp, "aud.pem", chain[0])) == spiffe("default", "sleep"),
          "the aud-string token gave the wrong identity")

    # HS256 with the published JWKS as the HMAC secret: the classic algorithm confusion.
    hs = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    signing_input = b64url(json.dumps(hs)) + "." + b64url(json.dumps(sa_claims()))
    mac = hmac.new(read(os.path.join(main.state_dir, "jwks.json")).encode(),
                   signing_input.encode(), hashlib.sha256).digest()
    cases = [
        ("HS256 token keyed with the JWKS", signing_input + "." + b64url(mac), (401,)),
        ("token without exp", token(exp=None), (401,)),
        ("token with nbf an hour ahead", token(nbf=now + 3600), (401,)),
        ("token without kid", token(header={"alg": "ES256", "typ": "JWT"}), (401,)),
        ("token whose sub is not a service account", token(sub="system:node:worker-1"), (401,)),
        ("token whose sub has an extra segment",
         token(sub="system:serviceaccount:default:sleep:extra"), (401,)),
        ("token whose kubernetes.io claims name another account",
         token(kubernetes__io={"namespace": "kube-system", "serviceaccount": {"name": "admin"}}),
         (401,)),
        ("token whose namespace is '..'", token(sub="system:serviceaccount:..:sleep"), (401, 403)),
        ("token whose namespace holds a slash", token(sub="system:serviceaccount:a/sa/b:sleep"),
         (401, 403)),
    ]
    for what, tok, statuses in cases:
        refusal_case(ctx, main, tmp, tok, None, what, exact_reason=False, statuses=statuses)


def test_remoractl_reports_refusal(ctx):
    main = require_main(ctx)
    out = os.path.join(ctx.mkdir("refusal"), "svid")
    token = main.token("default", "sleep", "--audience", "other")
    r = ctx.request_with_remoractl(main, out, token=token)
    check(r.rc == 1, f"remoractl with a refused token exited {r.rc}, expected 1", r.describe())
    check(re.search(r"remoractl: the CA refused \(HTTP 401\): \S", r.err),
          "remoractl did not print 'remoractl: the CA refused (HTTP 401): ...'", r.describe())
    check(not os.path.exists(os.path.join(out, "key.pem")),
          "remoractl wrote key.pem although the CA refused")


def test_bad_requests(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("bad-requests")
    _, csr = make_csr(tmp, "ok")
    token = main.token("default", "sleep")

    def expect(status_want, what, reason=None, **kw):
        before = main.metrics() if reason else None
        status, body, r = main.curl(tmp=tmp, **kw)
        check(status == status_want, f"{what}: expected HTTP {status_want}, got {status}",
              r.describe(), f"body: {clip(body)}", main.describe())
        error_json(status, body, what)
        if reason:
            after = main.metrics()
            d = refused(after, reason) - refused(before, reason)
            check(d == 1, f"{what}: refused_total{{reason=\"{reason}\"}} went up by {d:g}, "
                  "expected 1")
        return body

    expect(400, "ttlSeconds over the maximum", "ttl_too_large",
           body=cert_body(csr, MAX_TTL + 1), token=token)
    expect(400, "ttlSeconds 0", body=cert_body(csr, 0), token=token)
    expect(400, "ttlSeconds negative", body=cert_body(csr, -60), token=token)
    expect(400, "ttlSeconds as a string", body=json.dumps({"csr": csr, "ttlSeconds": "3600"}),
           token=token)
    garbage = "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n" \
              "-----END CERTIFICATE REQUEST-----\n"
    expect(400, "garbage CSR", "csr_malformed_csr", body=cert_body(garbage), token=token)
    expect(400, "CSR that is not PEM", body=cert_body("hello"), token=token)
    expect(400, "non-JSON body", "malformed_request", body="csr=please", token=token)
    expect(400, "JSON without csr", "malformed_request", body=json.dumps({"ttlSeconds": 60}),
           token=token)
    expect(400, "csr not a string", body=json.dumps({"csr": 42}), token=token)
    expect(405, "GET /v1/certificates", method="GET", token=token)
    expect(404, "unknown path", path="/v1/nothing-here", body=cert_body(csr), token=token)
    # With Expect: 100-continue the 413 comes before any of the body is sent, so this checks the
    # limit itself; oversized_upload_gets_413 checks a client that sends the body right away.
    big = json.dumps({"csr": csr, "padding": "x" * (BODY_LIMIT + 4096)})
    expect(413, "body over 64 KiB", body=big, token=token, headers=["Expect: 100-continue"])

    # The maximum itself is allowed and honoured.
    before = time.time()
    status, body, r = main.curl(body=cert_body(csr, MAX_TTL), token=token, tmp=tmp)
    chain = chain_of(status, body, r, "ttlSeconds equal to the maximum")
    _, na = x509_dates(cert_file(tmp, "max-ttl.pem", chain[0]))
    check(abs((na - before) - MAX_TTL) <= 120,
          f"ttlSeconds {MAX_TTL} gave a leaf living {na - before:.0f}s")
    # The server is still healthy after all that.
    status, _, _ = http_get(main.mon_port, "/healthz")
    check(status == 200, f"/healthz answered {status} after the bad requests")


def test_oversized_upload_gets_413(ctx):
    """A client that sends a large body at once (curl --data without Expect) must read the 413.

    The server stops reading at 64 KiB; if it then closes the socket at once, the unread upload
    makes the kernel send a reset that can destroy the 413 before curl reads it (RFC 9112 9.6
    asks servers to half-close and drain first). One upload shows it only now and then, so this
    sends forty 4 MB uploads and wants forty 413s.
    """
    main = require_main(ctx)
    tmp = ctx.mkdir("oversized")
    token = main.token()
    body_file = write(os.path.join(tmp, "big.json"),
                      json.dumps({"csr": "x", "padding": "x" * (4 * 1024 * 1024)}))
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", main.root_path(),
            "--resolve", f"localhost:{main.api_port}:127.0.0.1", "-o", os.devnull,
            "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}", "-H", "Expect:",
            "-H", "Content-Type: application/json", "--data-binary", "@" + body_file,
            f"https://localhost:{main.api_port}/v1/certificates"]
    outcomes = {}
    first_bad = None
    for _ in range(40):
        r = run(argv)
        key = f"HTTP {r.out.strip()}" + (f" (curl exit {r.rc}: {r.err.strip()})" if r.rc else "")
        outcomes[key] = outcomes.get(key, 0) + 1
        if r.out.strip() != "413" and first_bad is None:
            first_bad = r
    check(first_bad is None, f"of 40 uploads of 4 MB, not all got 413: {outcomes}",
          first_bad.describe() if first_bad else "")
    status, _, _ = http_get(main.mon_port, "/healthz")
    check(status == 200, f"/healthz answered {status} after the uploads")


class LoopbackHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI and certificate check for `localhost`."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname="localhost")


def test_concurrent_requests(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("concurrent")
    n = 50
    accounts = [("load", f"worker-{i}") for i in range(5)]
    tokens = {a: main.token(*a) for a in accounts}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        csrs = list(pool.map(lambda i: make_csr(tmp, f"c{i}")[1], range(n)))
    before = issued(main.metrics())
    ctx_ssl = ssl.create_default_context(cafile=main.root_path())
    barrier = threading.Barrier(n)

    def one(i):
        account = accounts[i % len(accounts)]
        conn = LoopbackHTTPSConnection("localhost", main.api_port, context=ctx_ssl, timeout=20)
        try:
            try:
                barrier.wait(timeout=20)
            except threading.BrokenBarrierError:
                pass
            conn.request("POST", "/v1/certificates", body=cert_body(csrs[i], 3600),
                         headers={"Authorization": "Bearer " + tokens[account],
                                  "Content-Type": "application/json"})
            res = conn.getresponse()
            return i, account, res.status, res.read().decode("utf-8", "replace"), None
        except Exception as e:  # noqa: BLE001 - reported as a failure below
            return i, account, None, "", f"{type(e).__name__}: {e}"
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    bad = [r for r in results if r[2] != 200]
    check(not bad, f"{len(bad)} of {n} concurrent requests did not get 200",
          *[f"request {i}: status {st} {err or clip(body, 300)}" for i, _, st, body, err in bad[:5]],
          main.describe())
    leaves = []
    for i, account, _, body, _ in results:
        chain = json.loads(body)["certChain"]
        check(len(chain) == 2 and same_pem(chain[-1], read(main.root_path())),
              f"request {i}: certChain is not [leaf, root]")
        leaves.append((cert_file(tmp, f"leaf-{i}.pem", chain[0]), account))
    r = run(["openssl", "verify", "-CAfile", main.root_path(), *[p for p, _ in leaves]])
    ok = [l for l in r.out.splitlines() if l.endswith(": OK")]
    check(r.rc == 0 and len(ok) == n, f"openssl verify accepted {len(ok)} of {n} leaves",
          r.describe())

    def identity_and_serial(item):
        path, account = item
        return leaf_identity(path), account, x509_field(path, "-serial")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        found = list(pool.map(identity_and_serial, leaves))
    for got, account, _ in found:
        check(got == spiffe(*account), f"a concurrent request for {spiffe(*account)} got {got}")
    serials = {s for _, _, s in found}
    check(len(serials) == n, f"{n} certificates share serials: {n - len(serials)} duplicates")
    after = issued(main.metrics())
    check(after - before == n, f"remora_ca_certificates_issued_total went from {before:g} to "
          f"{after:g}, expected +{n}")


def foreign_client_cert(tmp, identity):
    """A self-signed CA made with openssl and a leaf for `identity` that looks like an SVID."""
    ca_key, ca_pem = os.path.join(tmp, "foreign-ca.key"), os.path.join(tmp, "foreign-ca.pem")
    must_run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key, "-out", ca_pem,
              "-subj", "/O=cluster.local", "-days", "30",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl req -x509")
    key, csr = make_csr(tmp, "foreign-leaf")
    csr_path = write(os.path.join(tmp, "foreign-leaf.csr"), csr)
    ext = write(os.path.join(tmp, "foreign-leaf.ext"),
                f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:{identity}\n")
    leaf = os.path.join(tmp, "foreign-leaf.pem")
    must_run(["openssl", "x509", "-req", "-in", csr_path, "-CA", ca_pem, "-CAkey", ca_key,
              "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", leaf],
             what="openssl x509 -req")
    return leaf, key


def test_renewal_over_mtls(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("renewal")
    first = os.path.join(tmp, "first")
    r = ctx.request_with_remoractl(main, first, ns="default", sa="sleep", ttl="1h")
    check(r.rc == 0, "setup: first certificate with remoractl failed", r.describe())
    want = spiffe("default", "sleep")
    first_serial = x509_field(os.path.join(first, "cert-chain.pem"), "-serial")

    second = os.path.join(tmp, "second")
    r = ctx.request_with_remoractl(main, second, cert_dir=first, ttl="1h")
    check(r.rc == 0, f"remoractl cert request --cert-dir exited {r.rc}", r.describe(),
          main.describe())
    check(re.search(r"^identity:\s+" + re.escape(want) + r"\s*$", r.out, re.M),
          f"renewal did not print identity {want}", r.describe())
    chain2 = os.path.join(second, "cert-chain.pem")
    check_svid(chain2, want, "renewed leaf")
    v = run(["openssl", "verify", "-CAfile", main.root_path(), chain2])
    check(v.rc == 0, "openssl verify refused the renewed chain", v.describe())
    check(x509_field(chain2, "-serial") != first_serial, "renewal returned the same serial")
    check(key_pubkey(os.path.join(second, "key.pem")) !=
          key_pubkey(os.path.join(first, "key.pem")), "renewal reused the old key")

    # curl with the current SVID as client certificate and no token.
    key, csr = make_csr(tmp, "curl-renew")
    before = main.metrics()
    status, body, r = main.curl(body=cert_body(csr, 3600), cert=chain2,
                                key=os.path.join(second, "key.pem"), tmp=tmp)
    chain = chain_of(status, body, r, "mTLS renewal with curl --cert, no token")
    leaf = cert_file(tmp, "curl-renewed.pem", chain[0])
    check(leaf_identity(leaf) == want, f"mTLS renewal gave {leaf_identity(leaf)}, expected {want}")
    check(cert_pubkey(leaf) == key_pubkey(key), "the mTLS-renewed leaf is not for the CSR's key")
    check(issued(main.metrics()) - issued(before) == 1, "issued_total did not count the renewal")

    # A client certificate from another CA, claiming the same identity, is refused.
    fleaf, fkey = foreign_client_cert(tmp, want)
    _, csr = make_csr(tmp, "foreign-renew")
    before = main.metrics()
    status, body, r = main.curl(body=cert_body(csr, 3600), cert=fleaf, key=fkey, tmp=tmp)
    check(status == 401, f"a client certificate from a foreign CA got HTTP {status}, expected "
          "401", r.describe(), f"body: {clip(body)}", main.describe())
    error_json(status, body, "foreign client certificate")
    after = main.metrics()
    d = refused(after, "svid_untrusted_chain") - refused(before, "svid_untrusted_chain")
    check(d == 1, f"refused_total{{reason=\"svid_untrusted_chain\"}} went up by {d:g}, expected 1",
          "\n".join(l for l in after.splitlines() if "refused" in l))
    check(issued(after) == issued(before), "a certificate was issued to the foreign client")

    # remoractl renewing from a foreign cert dir fails with the CA's refusal.
    fdir = os.path.join(tmp, "foreign-dir")
    os.makedirs(fdir)
    shutil.copy(fleaf, os.path.join(fdir, "cert-chain.pem"))
    shutil.copy(fkey, os.path.join(fdir, "key.pem"))
    r = ctx.request_with_remoractl(main, os.path.join(tmp, "never"), cert_dir=fdir)
    check(r.rc == 1 and "the CA refused (HTTP 401)" in r.err,
          "remoractl --cert-dir with a foreign certificate should exit 1 with the CA's 401",
          r.describe())


def test_renewal_refuses_bad_client_certs(ctx):
    """Client certificates signed by the mesh's own root that break the X.509-SVID rules."""
    main = require_main(ctx)
    tmp = ctx.mkdir("bad-svids")
    root, root_key = main.root_path(), os.path.join(main.state_dir, "root-key.pem")
    key, csr = make_csr(tmp, "client", ["-subj", "/CN=client"])
    csr_path = write(os.path.join(tmp, "client.csr"), csr)
    svid = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n")
    me = spiffe("default", "sleep")

    def sign(name, ext, expired=False):
        ext_path = write(os.path.join(tmp, name + ".ext"), ext)
        out = os.path.join(tmp, name + ".pem")
        if expired:
            # openssl 3.0's x509 cannot backdate; openssl ca can.
            os.makedirs(os.path.join(tmp, "ca-certs"), exist_ok=True)
            write(os.path.join(tmp, "index.txt"), "")
            write(os.path.join(tmp, "serial"), "1000\n")
            cnf = write(os.path.join(tmp, "ca.cnf"),
                        f"[ca]\ndefault_ca = d\n[d]\ndatabase = {tmp}/index.txt\n"
                        f"new_certs_dir = {tmp}/ca-certs\nserial = {tmp}/serial\n"
                        "default_md = sha256\npolicy = p\nunique_subject = no\n"
                        "[p]\ncommonName = optional\n")
            must_run(["openssl", "ca", "-batch", "-config", cnf, "-cert", root, "-keyfile",
                      root_key, "-in", csr_path, "-out", out, "-notext", "-extfile", ext_path,
                      "-startdate", "20200101000000Z", "-enddate", "20200102000000Z"],
                     what="openssl ca")
        else:
            must_run(["openssl", "x509", "-req", "-in", csr_path, "-CA", root, "-CAkey", root_key,
                      "-CAcreateserial", "-days", "1", "-extfile", ext_path, "-out", out],
                     what="openssl x509 -req")
        return out

    # A well-formed SVID made with openssl and the mesh's root is accepted: the setup is sound,
    # so each refusal below is for the one rule its certificate breaks.
    good = sign("good", svid + f"subjectAltName=critical,URI:{me}\n")
    _, csr2 = make_csr(tmp, "renew")
    status, body, r = main.curl(body=cert_body(csr2, 3600), cert=good, key=key, tmp=tmp)
    chain = chain_of(status, body, r, "renewal with an openssl-made SVID under the mesh root")
    check(leaf_identity(cert_file(tmp, "renewed.pem", chain[0])) == me,
          "renewal with the openssl-made SVID gave the wrong identity")

    cases = [
        ("expired SVID", sign("expired", svid + f"subjectAltName=critical,URI:{me}\n", True),
         key, (401,)),
        ("leaf with CA:TRUE", sign("is-ca", "basicConstraints=critical,CA:TRUE\n"
                                   "keyUsage=critical,digitalSignature,keyCertSign\n"
                                   f"subjectAltName=critical,URI:{me}\n"), key, (401,)),
        ("leaf with two URI SANs",
         sign("two-uris", svid + f"subjectAltName=critical,URI:{me},"
              f"URI:{spiffe('kube-system', 'admin')}\n"), key, (401,)),
        ("leaf in another trust domain",
         sign("other-td", svid + "subjectAltName=critical,URI:spiffe://evil.example/ns/default"
              "/sa/sleep\n"), key, (401,)),
        ("leaf without SAN", sign("no-san", svid), key, (401,)),
        ("leaf with only a DNS SAN", sign("dns-san", svid + "subjectAltName=DNS:sleep.default\n"),
         key, (401,)),
        ("leaf without digitalSignature",
         sign("no-digsig", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,"
              "keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
              f"subjectAltName=critical,URI:{me}\n"), key, (401,)),
        ("leaf whose SPIFFE ID is not ns/<ns>/sa/<sa>",
         sign("not-workload", svid + f"subjectAltName=critical,URI:spiffe://{TRUST_DOMAIN}/"
              "some/thing\n"), key, (401, 403)),
        ("the root certificate itself as client certificate", root, root_key, (401,)),
    ]
    for what, cert, k, statuses in cases:
        refusal_case(ctx, main, tmp, None, None, what, exact_reason=False, statuses=statuses,
                     cert=cert, key=k)


def test_restart_keeps_state(ctx):
    main = require_main(ctx)
    tmp = ctx.mkdir("restart")
    files = {f: read(os.path.join(main.state_dir, f))
             for f in ("root-cert.pem", "root-key.pem", "jwt-signing-key.pem", "jwks.json")}
    ca_root = must_run([ctx.bins.ctl, "ca", "root", "--state-dir", main.state_dir],
                       what="remoractl ca root").out
    check(same_pem(ca_root, files["root-cert.pem"]) and len(pem_certs(ca_root)) == 1,
          "remoractl ca root does not print root-cert.pem", clip(ca_root))
    token = main.token("default", "sleep")
    svid = os.path.join(tmp, "before")
    r = ctx.request_with_remoractl(main, svid, token=token)
    check(r.rc == 0, "setup: certificate before the restart failed", r.describe())

    rc = main.stop()
    check(rc == 0, f"remora-control exited {rc} on SIGTERM, expected 0", main.log_tail())
    main.start()

    for f, text in files.items():
        check(read(os.path.join(main.state_dir, f)) == text,
              f"{f} changed across the restart")
    ca_root2 = must_run([ctx.bins.ctl, "ca", "root", "--state-dir", main.state_dir],
                        what="remoractl ca root").out
    check(ca_root2 == ca_root, "remoractl ca root prints a different root after the restart")
    check("loaded CA" in main.log().split("==== start #")[-1],
          "the restarted server does not log that it loaded the CA", main.log_tail())

    _, csr = make_csr(tmp, "after")
    status, body, r = main.curl(body=cert_body(csr, 3600), token=token, tmp=tmp)
    chain = chain_of(status, body, r, "a token minted before the restart")
    check(same_pem(chain[-1], files["root-cert.pem"]), "the chain ends in a different root")
    # A certificate issued before the restart still renews over mTLS.
    status, body, r = main.curl(body=cert_body(csr, 3600),
                                cert=os.path.join(svid, "cert-chain.pem"),
                                key=os.path.join(svid, "key.pem"), tmp=tmp)
    chain_of(status, body, r, "mTLS renewal with a certificate from before the restart")


def operator_pki(tmp):
    """Operator root and intermediate CAs (EC P-256) made with openssl."""
    p = {k: os.path.join(tmp, k) for k in ("root.key", "root.pem", "int.key", "int.csr", "int.pem",
                                           "bundle.pem", "leafca.key", "leafca.pem")}
    must_run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", p["root.key"], "-out", p["root.pem"],
              "-subj", "/O=Example Corp/CN=Example Operator Root CA", "-days", "365",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl req (root)")
    must_run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", p["int.key"], "-out", p["int.csr"],
              "-subj", "/O=Example Corp/CN=Remora Intermediate CA"], what="openssl req (int)")
    ext = write(os.path.join(tmp, "int.ext"),
                "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")
    must_run(["openssl", "x509", "-req", "-in", p["int.csr"], "-CA", p["root.pem"], "-CAkey",
              p["root.key"], "-CAcreateserial", "-days", "30", "-extfile", ext,
              "-out", p["int.pem"]], what="openssl x509 -req (int)")
    write(p["bundle.pem"], read(p["int.pem"]) + read(p["root.pem"]))
    return p


def test_operator_ca(ctx):
    tmp = ctx.mkdir("operator")
    p = operator_pki(tmp)
    state = os.path.join(tmp, "state")
    srv = ctx.server("operator", state_dir=state,
                     extra=["--ca-cert", p["bundle.pem"], "--ca-key", p["int.key"]])
    try:
        check(same_pem(read(srv.root_path()), read(p["root.pem"])),
              "state dir root-cert.pem is not the operator's root")
        check(not os.path.exists(os.path.join(state, "root-key.pem")),
              "remora-control wrote a root-key.pem although the operator's CA signs")
        key, csr = make_csr(tmp, "w")
        status, body, r = srv.curl(body=cert_body(csr, 3600), token=srv.token("shop", "cart"),
                                   cacert=p["root.pem"], tmp=tmp)
        chain = chain_of(status, body, r, "issuing under the operator's intermediate")
        check(len(chain) == 3, f"certChain has {len(chain)} certificates, expected leaf, "
              "intermediate, root")
        check(same_pem(chain[1], read(p["int.pem"])), "certChain[1] is not the intermediate")
        check(same_pem(chain[2], read(p["root.pem"])), "certChain[2] is not the operator's root")
        leaf = cert_file(tmp, "leaf.pem", chain[0])
        v = run(["openssl", "verify", "-CAfile", p["root.pem"], "-untrusted", p["int.pem"], leaf])
        check(v.rc == 0 and v.out.strip().endswith("OK"),
              "openssl verify -untrusted intermediate refused the leaf", v.describe())
        check_svid(leaf, spiffe("shop", "cart"), "operator-CA leaf")
        check(x509_field(leaf, "-issuer") == x509_field(p["int.pem"], "-subject"),
              "the leaf is not issued by the intermediate")

        # The intermediate lives 30 days: a 90-day leaf would outlive its issuer, so the CA
        # must stop it at the intermediate's notAfter.
        _, csr = make_csr(tmp, "long")
        status, body, r = srv.curl(body=cert_body(csr, MAX_TTL), token=srv.token("shop", "cart"),
                                   cacert=p["root.pem"], tmp=tmp)
        chain = chain_of(status, body, r, "a 90-day request under a 30-day intermediate")
        _, leaf_na = x509_dates(cert_file(tmp, "long.pem", chain[0]))
        _, int_na = x509_dates(p["int.pem"])
        check(leaf_na <= int_na, "the leaf outlives the intermediate that signed it: notAfter "
              f"{time.strftime('%FT%TZ', time.gmtime(leaf_na))} > "
              f"{time.strftime('%FT%TZ', time.gmtime(int_na))}")

        # remoractl end to end, then renewal with the intermediate in the client chain.
        out = os.path.join(tmp, "svid")
        r = ctx.request_with_remoractl(srv, out, ns="shop", sa="cart", bundle=p["root.pem"])
        check(r.rc == 0, "remoractl cert request against the operator CA failed", r.describe(),
              srv.describe())
        n = len(pem_certs(read(os.path.join(out, "cert-chain.pem"))))
        check(n == 2, f"cert-chain.pem holds {n} certificates, expected leaf + intermediate")
        r = ctx.request_with_remoractl(srv, os.path.join(tmp, "renewed"), cert_dir=out,
                                       bundle=p["root.pem"])
        check(r.rc == 0, "mTLS renewal under the operator CA failed", r.describe(),
              srv.describe())
    finally:
        srv.stop()

    # --root-cert when --ca-cert holds only the intermediate.
    srv2 = ctx.server("operator-root-flag", extra=["--ca-cert", p["int.pem"], "--ca-key",
                                                   p["int.key"], "--root-cert", p["root.pem"]])
    try:
        check(same_pem(read(srv2.root_path()), read(p["root.pem"])),
              "with --root-cert, root-cert.pem is not the operator's root")
        _, csr = make_csr(tmp, "w2")
        status, body, r = srv2.curl(body=cert_body(csr), token=srv2.token("shop", "cart"),
                                    cacert=p["root.pem"], tmp=tmp)
        chain = chain_of(status, body, r, "issuing with --root-cert")
        check(len(chain) == 3 and same_pem(chain[-1], read(p["root.pem"])),
              f"with --root-cert the chain has {len(chain)} certs / wrong root")
    finally:
        srv2.stop()


def expect_startup_error(ctx, name, extra, want_rc, patterns, what):
    s = Server(ctx.bins, ctx.mkdir(name + "-state"), ctx.tmp, name, extra)
    argv = s.argv()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{what}: remora-control kept running instead of refusing to start",
                      [f"command: {' '.join(argv)}", f"stderr: {clip(e.stderr)}"])
    desc = f"command: {' '.join(argv)}\nexit: {proc.returncode}\nstderr: {clip(proc.stderr)}"
    if want_rc is None:
        check(proc.returncode > 0, f"{what}: exit {proc.returncode}, expected a non-zero exit "
              "(a negative one is a crash)", desc)
    else:
        check(proc.returncode == want_rc, f"{what}: exit {proc.returncode}, expected {want_rc}",
              desc)
    for pat in patterns:
        check(re.search(pat, proc.stderr, re.I),
              f"{what}: the error message does not mention {pat!r}", desc)
    return proc


def test_operator_ca_errors(ctx):
    tmp = ctx.mkdir("operator-bad")
    p = operator_pki(tmp)
    # The intermediate's chain with the root's key: not the key of --ca-cert.
    expect_startup_error(ctx, "ca-key-mismatch", ["--ca-cert", p["bundle.pem"], "--ca-key",
                                                  p["root.key"]], None,
                         [r"key", r"match"], "--ca-key that does not match --ca-cert")
    # A leaf certificate cannot sign.
    fleaf, fkey = foreign_client_cert(tmp, spiffe("default", "sleep"))
    leaf_bundle = write(os.path.join(tmp, "leaf-bundle.pem"),
                        read(fleaf) + read(os.path.join(tmp, "foreign-ca.pem")))
    expect_startup_error(ctx, "ca-not-ca", ["--ca-cert", leaf_bundle, "--ca-key", fkey], None,
                         [r"not a CA"], "--ca-cert that is not a CA (a leaf and its root)")
    expect_startup_error(ctx, "ca-missing", ["--ca-cert", os.path.join(tmp, "nope.pem"),
                                             "--ca-key", p["int.key"]], None,
                         [re.escape("nope.pem")], "--ca-cert that does not exist")


PROM_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
    r'(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*")*,?\})?'
    r' (-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|NaN|[+-]Inf)( -?[0-9]+)?$')


def test_monitoring(ctx):
    main = require_main(ctx)
    # Counters live in the process (they restart at 0), so make sure both have a sample.
    status, body, r = main.curl(body=cert_body("not a csr"))
    check(status == 401, f"setup: a request without credentials got {status}", r.describe())
    _, csr = make_csr(ctx.mkdir("monitoring"), "m")
    status, body, r = main.curl(body=cert_body(csr, 600), token=main.token())
    chain_of(status, body, r, "setup: one certificate")
    status, body, res = http_get(main.mon_port, "/healthz")
    check(status == 200, f"GET /healthz answered {status}", clip(body))
    status, text, res = http_get(main.mon_port, "/metrics")
    check(status == 200, f"GET /metrics answered {status}", clip(text))
    ctype = res.getheader("Content-Type", "")
    check(ctype.startswith("text/plain"), f"/metrics Content-Type is {ctype!r}, expected text/plain")
    check(text.endswith("\n"), "/metrics does not end with a newline")
    typed = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            check(len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram", "summary",
                                                   "untyped"), f"line {n}: bad TYPE: {line!r}")
            typed[parts[2]] = parts[3]
            continue
        if line.startswith("#"):
            check(line.startswith("# HELP ") or not line.startswith("# TYPE"),
                  f"line {n}: bad comment {line!r}")
            continue
        check(PROM_SAMPLE.match(line), f"line {n} is not 'name{{labels}} value': {line!r}",
              clip(text))
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        check(name in typed, f"line {n}: sample {name} has no # TYPE line before it")
    for name in ("remora_ca_certificates_issued_total", "remora_ca_requests_refused_total"):
        check(typed.get(name) == "counter", f"{name} is not declared a counter", clip(text))
    check(issued(text) >= 1, "remora_ca_certificates_issued_total is 0 after issuing",
          clip(text))
    check(refused(text, "no_credentials") >= 1,
          "no refused_total{reason=\"no_credentials\"} sample after a refusal", clip(text))
    promtool = shutil.which("promtool")
    if promtool:
        r = run([promtool, "check", "metrics"], input=text)
        # Istio's own names for istiod's push counters (what its dashboards query) lack the
        # "_total" suffix promtool's linter wants; those two remarks, and nothing else, are fine.
        istio_names = {f'{name} counter metrics should have "_total" suffix'
                       for name in ("pilot_xds_pushes", "pilot_total_xds_rejects")}
        remarks = {line.strip() for line in (r.out + r.err).splitlines() if line.strip()}
        check(r.rc == 0 or (r.rc == 3 and remarks <= istio_names), "promtool check metrics failed",
              r.describe())
    status, body, _ = http_get(main.mon_port, "/no-such-page")
    check(status == 404, f"GET /no-such-page on the monitoring port answered {status}")


def test_bad_flags(ctx):
    proc = expect_startup_error(ctx, "bogus", ["--bogus"], 2, [r"--bogus"], "--bogus")
    expect_startup_error(ctx, "bad-td", ["--trust-domain", "Bad_TD!"], None,
                         [r"trust.domain", re.escape("Bad_TD!")], "--trust-domain Bad_TD!")
    expect_startup_error(ctx, "bad-max-ttl", ["--max-ttl", "soon"], 2, [r"max-ttl"],
                         "--max-ttl soon")
    expect_startup_error(ctx, "bad-listen", ["--listen", "nowhere"], 2, [r"listen"],
                         "--listen nowhere")
    expect_startup_error(ctx, "lonely-root-cert", ["--root-cert", "/dev/null"], 2,
                         [r"--root-cert"], "--root-cert without --ca-cert")


def test_threads_flag(ctx):
    expect_startup_error(ctx, "threads-zero", ["--threads", "0"], 2, [r"--threads"],
                         "--threads 0")
    expect_startup_error(ctx, "threads-word", ["--threads", "many"], 2, [r"--threads"],
                         "--threads many")
    expect_startup_error(ctx, "threads-huge", ["--threads", "99999999999"], 2, [r"--threads"],
                         "--threads 99999999999")


def test_listen_port_in_use(ctx):
    main = require_main(ctx)
    # Another remora-control on the main one's API port: it must say which address is taken.
    s = Server(ctx.bins, ctx.mkdir("busy-state"), ctx.tmp, "busy",
               ports=(main.api_port, free_port()))
    argv = s.argv()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired as e:
        raise Failure("remora-control started although its --listen port is taken",
                      [f"command: {' '.join(argv)}", f"stderr: {clip(e.stderr)}"])
    desc = f"command: {' '.join(argv)}\nexit: {proc.returncode}\nstderr: {clip(proc.stderr)}"
    check(proc.returncode != 0, "remora-control exited 0 with its port taken", desc)
    check(re.search(r"in use", proc.stderr, re.I), "the error does not say the address is in use",
          desc)
    check(f"127.0.0.1:{main.api_port}" in proc.stderr,
          f"the error does not name the address that is taken (127.0.0.1:{main.api_port})", desc)


TESTS = [
    ("fresh_state_dir", test_fresh_state_dir),
    ("remoractl_first_certificate", test_remoractl_first_certificate),
    ("curl_and_openssl_only", test_curl_and_openssl_only),
    ("csr_cannot_choose_identity", test_csr_cannot_choose_identity),
    ("tokens_refused", test_tokens_refused),
    ("token_claims", test_token_claims),
    ("remoractl_reports_refusal", test_remoractl_reports_refusal),
    ("bad_requests", test_bad_requests),
    ("oversized_upload_gets_413", test_oversized_upload_gets_413),
    ("concurrent_requests", test_concurrent_requests),
    ("renewal_over_mtls", test_renewal_over_mtls),
    ("renewal_refuses_bad_client_certs", test_renewal_refuses_bad_client_certs),
    ("restart_keeps_state", test_restart_keeps_state),
    ("operator_ca", test_operator_ca),
    ("operator_ca_errors", test_operator_ca_errors),
    ("monitoring", test_monitoring),
    ("bad_flags", test_bad_flags),
    ("threads_flag", test_threads_flag),
    ("listen_port_in_use", test_listen_port_in_use),
]


# ---------------------------------------------------------------------------------------------


class Bins:
    def __init__(self, bin_dir, tmp):
        self.control = os.path.join(bin_dir, "control", "remora-control")
        self.ctl = os.path.join(bin_dir, "control", "remoractl")
        self.tmp = tmp


def wait_for_binaries(bins, limit=60):
    """The lead may be rebuilding: wait a little for the binaries to reappear."""
    deadline = time.monotonic() + limit
    while True:
        missing = [p for p in (bins.control, bins.ctl) if not os.access(p, os.X_OK)]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(1)


def reset_test_servers(ctx):
    ctx.test_servers = []


def server_details(ctx):
    """The logs of the servers the failed test started, then the main server's."""
    servers = [s for s in ctx.test_servers if s is not ctx.main]
    if ctx.main is not None:
        servers.append(ctx.main)
    return [s.describe() for s in servers]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="build dir holding control/remora-control")
    ap.add_argument("-k", dest="only", help="run only tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = ap.parse_args()

    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77

    tmp = tempfile.mkdtemp(prefix="remora-test-ca-")
    bins = Bins(os.path.abspath(opts.bin_dir), tmp)
    missing = wait_for_binaries(bins)
    if missing:
        print(f"FAIL setup: missing binaries: {', '.join(missing)}")
        print("0 passed, 1 failed")
        return 1

    ctx = Context(bins, tmp)
    runner = Runner()
    started = time.monotonic()
    try:
        runner.run(TESTS, ctx, only=opts.only, always=("fresh_state_dir",),
                   before_each=reset_test_servers, failure_details=server_details)
    finally:
        for s in ctx.servers:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - keep killing the others
                pass
        runner.keep_or_remove(tmp, opts.keep)
    runner.summary(started)
    return runner.exit_code()


if __name__ == "__main__":
    sys.exit(main())
