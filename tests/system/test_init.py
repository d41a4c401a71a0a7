#!/usr/bin/env python3
"""System test of remora-init: real iptables rules in a network namespace the test makes itself.

Creates the namespace remora-init-test-<pid> (deleted at the end, whatever happens), runs the real
remora-init in it, and checks the nat table with iptables-save and with real connections that
only ever stay inside that namespace.

    python3 tests/system/test_init.py --bin-dir BUILD_DIR [-k SUBSTRING] [--samples DIR]

Prints `PASS name` or `FAIL name: reason` (followed by indented details) per test, then
`N passed, N failed`. Exit status: 0 all passed, 1 some failed, 77 not root, or ip, iptables or
setpriv missing, or no network namespace could be made.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Failure, Runner, check  # noqa: E402

CMD_TIMEOUT = 20
NS = f"remora-init-test-{os.getpid()}"
SIDECAR_FLAGS = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                 "-x", "", "-b", "*", "-d", "15090,15021,15020"]
APP_UID = 1000  # an application's uid: captured
PROXY_UID = 1337  # the proxy's uid: never captured
SO_ORIGINAL_DST = 80
# An address outside the namespace's own: routable through the interface d0 (dummy, or a veth
# whose peer is also in the namespace), where packets that are not captured go nowhere.
REMOTE = ("198.18.5.5", 9080)


# ---------------------------------------------------------------------------------------------
# Command helpers (Failure and check are in harness.py)


def clip(text, limit=3000):
    return harness.clip(text, limit)


class Run:
    """The outcome of one command, with a description fit for a failure message."""

    def __init__(self, argv, proc):
        self.argv = argv
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def describe(self):
        return (f"command: {' '.join(quote(a) for a in self.argv)}\n"
                f"exit: {self.rc}\nstdout: {clip(self.out)}\nstderr: {clip(self.err)}")


def quote(s):
    s = str(s)
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def run(argv, input=None, timeout=CMD_TIMEOUT):
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired as e:
        raise Failure(f"command timed out after {timeout}s", [f"command: {' '.join(argv)}",
                                                              f"stdout: {clip(e.stdout)}",
                                                              f"stderr: {clip(e.stderr)}"])
    return Run(argv, proc)


def must_run(argv, input=None, what=None):
    r = run(argv, input=input)
    check(r.rc == 0, f"{what or argv[0]} failed with exit {r.rc}", r.describe())
    return r


def in_ns(*argv):
    return ["ip", "netns", "exec", NS, *argv]


def as_user(uid, *argv):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


# ---------------------------------------------------------------------------------------------
# The nat table of the test namespace


def nat_save(counters=False):
    """`iptables-save -t nat` in the namespace, without its comment lines (they carry times)."""
    argv = ["iptables-save", "-t", "nat"] + (["-c"] if counters else [])
    out = must_run(in_ns(*argv), what="iptables-save").out
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    if not counters:  # chain policy counters move with any traffic; they are not rules
        lines = [re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in lines]
    return "\n".join(lines) + "\n"


def restore(text, what="iptables-restore"):
    must_run(in_ns("iptables-restore", "--noflush"), input=text, what=what)


def reset_nat():
    """An empty nat table: iptables-restore without --noflush replaces the table whole."""
    must_run(in_ns("iptables-restore"), input="*nat\nCOMMIT\n", what="resetting the nat table")


def add_user_rule(spec):
    restore(f"*nat\n-A {spec}\nCOMMIT\n", what="adding a user rule")


def remora_lines(save_text):
    return [line for line in save_text.splitlines() if "REMORA_" in line]


def counter_of(save_with_counters, rule_suffix):
    """Packets that matched the nat rule whose `-A ...` text ends with `rule_suffix`."""
    for line in save_with_counters.splitlines():
        m = re.match(r"\[(\d+):\d+\] (-A .*)$", line)
        if m and m.group(2).endswith(rule_suffix):
            return int(m.group(1))
    raise Failure(f"no rule ending with {rule_suffix!r} in the nat table", [save_with_counters])


def sample_rules(ctx):
    """The Istio sample, ISTIO_ renamed REMORA_, without its comments: iptables-restore input."""
    path = ctx.samples / "istio-iptables-default-sidecar.rules"
    check(path.is_file(), f"the Istio sample {path} is missing (shared/ should sit beside the "
                          "repository)")
    lines = [line.replace("ISTIO_", "REMORA_") for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# A capture listener: what a proxy on 15001 sees


SERVER = r"""
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    try:
        raw = c.getsockopt(socket.SOL_IP, %d, 16)
        dst = "%%s:%%d" %% (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])
    except OSError as e:
        dst = "no-original-dst:%%s" %% e
    print("conn %%s:%%d %%s" %% (peer[0], peer[1], dst), flush=True)
    c.sendall((dst + "\n").encode())
    c.close()
""" % SO_ORIGINAL_DST

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(5)
    print("reply " + c.recv(200).decode().strip())
except OSError as e:
    print("error %s %s" % (type(e).__name__, e))
"""


class CaptureServer:
    """A listener on 127.0.0.1:PORT in the namespace that answers with SO_ORIGINAL_DST."""

    def __init__(self, port):
        self.lines = []
        self.proc = subprocess.Popen(in_ns("python3", "-c", SERVER, str(port)),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(10):
            self.stop()
            raise Failure("the capture listener did not start", ["\n".join(self.lines)])

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line == "ready":
                self.ready.set()

    def connections(self):
        return [line for line in self.lines if line.startswith("conn ")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def connect(uid, timeout):
    argv = in_ns("python3", "-c", CLIENT, REMOTE[0], str(REMOTE[1]), str(timeout))
    if uid != 0:
        argv = in_ns(*as_user(uid, "python3", "-c", CLIENT, REMOTE[0], str(REMOTE[1]),
                              str(timeout)))
    return must_run(argv, what=f"the client as uid {uid}").out.strip()


# ---------------------------------------------------------------------------------------------
# Tests


class Context:
    def __init__(self, bin_path, samples, tmp):
        self.bin = bin_path
        self.samples = samples
        self.tmp = tmp
        # A copy every uid can run, for the tests that run remora-init as a non-root user.
        self.shared_bin = os.path.join(tmp, "remora-init")
        shutil.copy(bin_path, self.shared_bin)
        os.chmod(tmp, 0o755)
        os.chmod(self.shared_bin, 0o755)

    def init(self, *args):
        return run(in_ns(self.bin, *args))

    def must_init(self, *args):
        r = self.init(*args)
        check(r.rc == 0, f"remora-init {' '.join(quote(a) for a in args)} failed", r.describe())
        return r


def test_dry_run_is_the_istio_sample(ctx):
    want = sample_rules(ctx)
    for args in (SIDECAR_FLAGS, []):
        r = run([ctx.bin, "--dry-run", *args])
        check(r.rc == 0, "--dry-run failed", r.describe())
        check(r.out == want, f"--dry-run {' '.join(quote(a) for a in args)} differs from the "
                             "Istio sample", "got:\n" + r.out, "want:\n" + want)


def test_apply_gives_the_sample_rules(ctx):
    reset_nat()
    restore(sample_rules(ctx), what="applying the Istio sample itself")
    want = nat_save()
    reset_nat()
    ctx.must_init(*SIDECAR_FLAGS)
    got = nat_save()
    check(got == want, "the nat table differs from the one the Istio sample makes",
          "got:\n" + got, "want:\n" + want)
    chains = {line.split()[0][1:] for line in got.splitlines() if line.startswith(":REMORA_")}
    check(chains == {"REMORA_INBOUND", "REMORA_REDIRECT", "REMORA_IN_REDIRECT", "REMORA_OUTPUT"},
          f"unexpected chains {sorted(chains)}")


def test_apply_twice_changes_nothing(ctx):
    reset_nat()
    ctx.must_init(*SIDECAR_FLAGS)
    first = nat_save()
    ctx.must_init(*SIDECAR_FLAGS)
    second = nat_save()
    check(second == first, "a second run changed the nat table", "first:\n" + first,
          "second:\n" + second)
    rules = [line for line in second.splitlines() if line.startswith("-A ")]
    check(len(rules) == len(set(rules)), "duplicate rules", second)


def test_reapply_with_other_flags_replaces_the_rules(ctx):
    reset_nat()
    ctx.must_init(*SIDECAR_FLAGS)
    ctx.must_init("-i", "10.0.0.0/8", "-b", "9080", "-o", "22")
    got = nat_save()
    check("-A REMORA_OUTPUT -d 10.0.0.0/8 -j REMORA_REDIRECT" in got,
          "the -i range is not redirected", got)
    check("-A REMORA_OUTPUT -j REMORA_REDIRECT" not in got, "the old catch-all redirect stayed",
          got)
    check("--dport 9080 -j REMORA_IN_REDIRECT" in got, "the -b port is not captured", got)
    check("--dport 15090 -j RETURN" not in got, "the old inbound exclusions stayed", got)
    check(got.count("-j REMORA_INBOUND") == 1 and got.count("-j REMORA_OUTPUT") == 1,
          "the jumps into REMORA_ chains are not exactly one each", got)


def test_user_rules_survive_reapply_and_clean(ctx):
    reset_nat()
    add_user_rule("OUTPUT -p udp -m udp --dport 5353 -j RETURN")
    ctx.must_init(*SIDECAR_FLAGS)
    add_user_rule("OUTPUT -p tcp -m tcp --dport 9 -j RETURN")
    add_user_rule("PREROUTING -p tcp -m tcp --dport 7 -j RETURN")
    installed = nat_save()
    ctx.must_init(*SIDECAR_FLAGS)
    again = nat_save()
    check(again == installed, "re-applying moved or changed rules around the user's",
          "before:\n" + installed, "after:\n" + again)
    r = ctx.must_init("--clean")
    cleaned = nat_save()
    check(not remora_lines(cleaned), "REMORA_ rules left after --clean", cleaned)
    reset_nat()
    add_user_rule("OUTPUT -p udp -m udp --dport 5353 -j RETURN")
    add_user_rule("OUTPUT -p tcp -m tcp --dport 9 -j RETURN")
    add_user_rule("PREROUTING -p tcp -m tcp --dport 7 -j RETURN")
    want = nat_save()
    check(cleaned == want, "--clean did not leave exactly the user's rules",
          "got:\n" + cleaned, "want:\n" + want, r.describe())


def test_clean_removes_everything_and_is_quiet_when_clean(ctx):
    reset_nat()
    bare = nat_save()
    ctx.must_init(*SIDECAR_FLAGS)
    check(remora_lines(nat_save()), "nothing was installed")
    ctx.must_init("--clean")
    after = nat_save()
    check(after == bare, "--clean did not restore the empty nat table", "got:\n" + after,
          "want:\n" + bare)
    r = ctx.must_init("--clean")
    check(r.out == "" and r.err == "", "--clean with nothing installed was not quiet",
          r.describe())
    check(nat_save() == bare, "--clean with nothing installed changed the table")


def test_dry_run_changes_nothing(ctx):
    reset_nat()
    before = nat_save()
    r = ctx.must_init("--dry-run", *SIDECAR_FLAGS)
    check(r.out == sample_rules(ctx), "--dry-run in the namespace did not print the rules",
          r.describe())
    check(nat_save() == before, "--dry-run changed the empty nat table")
    ctx.must_init(*SIDECAR_FLAGS)
    installed = nat_save()
    ctx.must_init("--dry-run", "-i", "10.0.0.0/8")
    r = ctx.must_init("--clean", "--dry-run")
    check("-X REMORA_OUTPUT" in r.out, "--clean --dry-run did not print the removal", r.describe())
    check(nat_save() == installed, "--dry-run changed the installed rules")


def test_bad_flags_exit_2_and_change_nothing(ctx):
    reset_nat()
    ctx.must_init(*SIDECAR_FLAGS)
    before = nat_save()
    cases = [
        (["-m", "TPROXY"], "not supported"),
        (["-p", "0"], "-p"),
        (["-z", "65536"], "-z"),
        (["-u", "proxy"], "-u"),
        (["-g", "1.5"], "-g"),
        (["-i", "10.0.0.0/33"], "-i"),
        (["-i", "10.0.0.300/8"], "-i"),
        (["-x", "*"], "-x"),
        (["-b", "80,http"], "-b"),
        (["-d", "15090,,15021"], "-d"),
        (["-o", "70000"], "-o"),
        (["-q", "x"], "-q"),
        (["--envoy-port=abc"], "--envoy-port"),
        (["--no-such-flag"], "--no-such-flag"),
        (["-k", "eth0"], "-k"),
        (["-p"], "needs a value"),
        (["stray"], "stray"),
    ]
    for args, word in cases:
        r = ctx.init(*args)
        check(r.rc == 2, f"remora-init {' '.join(args)} exited {r.rc}, not 2", r.describe())
        check(word in r.err, f"the error for {' '.join(args)} does not name {word!r}",
              r.describe())
    check(nat_save() == before, "a rejected run changed the nat table")


def test_missing_iptables_restore_is_a_clear_error(ctx):
    reset_nat()
    before = nat_save()
    empty = os.path.join(ctx.tmp, "empty-path")
    r = run(in_ns("env", f"PATH={empty}", ctx.bin, *SIDECAR_FLAGS))
    check(r.rc == 1, f"exit {r.rc} without iptables-restore, not 1", r.describe())
    check("iptables-restore" in r.err and "not found" in r.err,
          "the error does not say iptables-restore is missing", r.describe())
    check(nat_save() == before, "the nat table changed")


def test_non_root_is_refused_and_nothing_changes(ctx):
    reset_nat()
    before = nat_save()
    for args in (SIDECAR_FLAGS, ["--clean"]):
        r = run(in_ns(*as_user(APP_UID, ctx.shared_bin, *args)))
        check(r.rc == 1, f"exit {r.rc} as uid {APP_UID}, not 1", r.describe())
        check("permission denied" in r.err and "root" in r.err,
              "the error does not say root is needed", r.describe())
    check(nat_save() == before, "the nat table changed")


def test_outbound_traffic_is_captured_but_not_the_proxys(ctx):
    reset_nat()
    ctx.must_init(*SIDECAR_FLAGS)
    server = CaptureServer(15001)
    try:
        want = f"reply {REMOTE[0]}:{REMOTE[1]}"
        got = connect(APP_UID, 5)
        check(got == want, f"uid {APP_UID}'s connection to {REMOTE[0]}:{REMOTE[1]} was not "
                           "captured with its original destination",
              f"client: {got}", "listener:\n" + "\n".join(server.lines))
        got = connect(0, 5)
        check(got == want, "root's connection was not captured", f"client: {got}")
        seen = len(server.connections())
        check(seen == 2, f"the listener saw {seen} connections, not 2",
              "\n".join(server.lines))

        returned_before = counter_of(nat_save(counters=True),
                                     f"-m owner --uid-owner {PROXY_UID} -j RETURN")
        got = connect(PROXY_UID, 1.5)
        check(got.startswith("error"), f"uid {PROXY_UID} (the proxy) got an answer: captured",
              f"client: {got}", "listener:\n" + "\n".join(server.lines))
        check(len(server.connections()) == 2, "the proxy's connection reached the listener",
              "\n".join(server.lines))
        returned_after = counter_of(nat_save(counters=True),
                                    f"-m owner --uid-owner {PROXY_UID} -j RETURN")
        check(returned_after == returned_before + 1,
              "the proxy's connection did not take its RETURN rule "
              f"(counter {returned_before} -> {returned_after})", nat_save(counters=True))
    finally:
        server.stop()


TESTS = [
    ("dry_run_is_the_istio_sample", test_dry_run_is_the_istio_sample),
    ("apply_gives_the_sample_rules", test_apply_gives_the_sample_rules),
    ("apply_twice_changes_nothing", test_apply_twice_changes_nothing),
    ("reapply_with_other_flags_replaces_the_rules",
     test_reapply_with_other_flags_replaces_the_rules),
    ("user_rules_survive_reapply_and_clean", test_user_rules_survive_reapply_and_clean),
    ("clean_removes_everything_and_is_quiet_when_clean",
     test_clean_removes_everything_and_is_quiet_when_clean),
    ("dry_run_changes_nothing", test_dry_run_changes_nothing),
    ("bad_flags_exit_2_and_change_nothing", test_bad_flags_exit_2_and_change_nothing),
    ("missing_iptables_restore_is_a_clear_error", test_missing_iptables_restore_is_a_clear_error),
    ("non_root_is_refused_and_nothing_changes", test_non_root_is_refused_and_nothing_changes),
    ("outbound_traffic_is_captured_but_not_the_proxys",
     test_outbound_traffic_is_captured_but_not_the_proxys),
]


# ---------------------------------------------------------------------------------------------
# Main


def make_namespace():
    """The namespace with lo up and an interface d0 (198.18.0.2/16) to route REMOTE through;
    None on success, else why it could not be made."""
    r = run(["ip", "netns", "add", NS])
    if r.rc != 0:
        return "cannot create a network namespace:\n" + r.describe()
    # A dummy interface where the kernel has them, else a veth pair with both ends here.
    if run(in_ns("ip", "link", "add", "d0", "type", "dummy")).rc != 0:
        r = run(in_ns("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"))
        if r.rc != 0:
            return "cannot create a dummy or veth interface:\n" + r.describe()
        r = run(in_ns("ip", "link", "set", "d1", "up"))
        if r.rc != 0:
            return "cannot set up the namespace:\n" + r.describe()
    for argv in (["ip", "link", "set", "lo", "up"],
                 ["ip", "addr", "add", "198.18.0.2/16", "dev", "d0"],
                 ["ip", "link", "set", "d0", "up"],
                 ["iptables-save", "-t", "nat"]):
        r = run(in_ns(*argv))
        if r.rc != 0:
            return "cannot set up the namespace:\n" + r.describe()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True, help="build dir holding proxy/init/remora-init")
    ap.add_argument("--samples", help="Istio samples dir (default: ../shared/istio-samples "
                                      "beside the repository)")
    ap.add_argument("-k", dest="only", help="run only tests whose name contains this")
    opts = ap.parse_args()

    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces and iptables)")
        return 77
    for tool in ("ip", "iptables-restore", "iptables-save", "setpriv"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed (scripts/setup.sh installs it)")
            return 77

    bin_path = os.path.join(os.path.abspath(opts.bin_dir), "proxy", "init", "remora-init")
    if not os.access(bin_path, os.X_OK):
        print(f"FAIL setup: missing binary {bin_path}")
        print("0 passed, 1 failed")
        return 1
    repo = Path(__file__).resolve().parents[2]
    samples = Path(opts.samples) if opts.samples else repo.parent / "shared" / "istio-samples"

    tmp = tempfile.mkdtemp(prefix="remora-test-init-")
    runner = Runner()
    try:
        why = make_namespace()
        if why:
            print("SKIP: " + why.replace("\n", "\n    "))
            return 77
        ctx = Context(bin_path, samples, tmp)
        runner.run(TESTS, ctx, only=opts.only)
    finally:
        run(["ip", "netns", "del", NS])
        shutil.rmtree(tmp, ignore_errors=True)
    runner.summary()
    return runner.exit_code()


if __name__ == "__main__":
    sys.exit(main())
