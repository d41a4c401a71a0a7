#!/usr/bin/env python3
"""Runs one test command so that every sanitizer report fails it, from any process it starts.

Usage: tests/sanitized.py COMMAND [ARG...]   (meson's test setup `sanitize` does this for every
test in a -Db_sanitize build; see README.md, "Sanitizers").

A system test starts remora-proxy, remora-control and remoractl in network namespaces, as root
and as UID 1337, with their stderr in log files that nobody reads when the test passes, and a
proxy stopped at the end of a test writes its LeakSanitizer report after the test has already
printed PASS. So the reports must not depend on stderr: this wrapper adds `log_path` to
ASAN_OPTIONS and UBSAN_OPTIONS (LeakSanitizer writes through ASan's), pointing into a fresh
world-writable directory that every descendant inherits through the environment; when the command
ends it prints each report (`asan.<pid>`, `ubsan.<pid>`) to stderr and exits 1 if there was any,
otherwise with the command's own status. Reports are kept in that directory when there are some.
"""

import glob
import os
import signal
import subprocess
import sys
import tempfile

MAX_LINES = 400  # of each report printed; the whole report stays in the kept directory


def with_log_path(options, path):
    """`options` (a sanitizer's colon-separated flags) with log_path set to `path` (last wins)."""
    parts = [p for p in (options or "").split(":") if p and not p.startswith("log_path=")]
    return ":".join(parts + [f"log_path={path}"])


def reports(directory):
    """(path, text) of each non-empty report file in `directory`, oldest first."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, "*")), key=os.path.getmtime):
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if text.strip():
            found.append((path, text))
    return found


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    directory = tempfile.mkdtemp(prefix="remora-sanitizer-")
    os.chmod(directory, 0o1777)  # proxies run as UID 1337
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = with_log_path(env.get("ASAN_OPTIONS"), os.path.join(directory, "asan"))
    env["UBSAN_OPTIONS"] = with_log_path(env.get("UBSAN_OPTIONS"),
                                         os.path.join(directory, "ubsan"))
    try:
        proc = subprocess.Popen(argv, env=env)
    except OSError as e:
        os.rmdir(directory)
        print(f"sanitized.py: cannot run {argv[0]}: {e}", file=sys.stderr)
        return 127

    def forward(signum, _frame):
        proc.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    status = proc.wait()

    found = reports(directory)
    for path, text in found:
        lines = text.splitlines()
        print(f"==== sanitizer report {os.path.basename(path)} ({len(lines)} lines) ====",
              file=sys.stderr)
        for line in lines[:MAX_LINES]:
            print(line, file=sys.stderr)
        if len(lines) > MAX_LINES:
            print(f"... (the rest in {path})", file=sys.stderr)
    sys.stderr.flush()
    if found:
        print(f"sanitizers: {len(found)} report(s) from processes this test started "
              f"(kept in {directory})", flush=True)
        return 1
    try:
        os.rmdir(directory)
    except OSError:
        pass
    if status < 0:  # killed by a signal: exit as a shell would report it
        return 128 - status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
