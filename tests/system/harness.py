"""The test harness shared by the system tests (test_ca.py, test_init.py, test_cluster.py,
test_mesh.py): failures, check(), clip(), and running a list of named tests.

Each test prints `PASS name (N.Ns)` or `FAIL name: reason` followed by indented details; the
summary line is `N passed, N failed`, optionally followed by the total time. The scripts exit 0
when all passed, 1 when some failed, 77 when the test cannot run here (skip).
"""

import sys
import shutil
import time
import traceback


class Failure(Exception):
    """A test assertion that failed; `details` are printed indented under the FAIL line."""

    def __init__(self, reason, details=()):
        super().__init__(reason)
        self.reason = reason
        self.details = [d for d in details if d]


def check(cond, reason, *details):
    if not cond:
        raise Failure(reason, details)


def clip(text, limit=1500):
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def print_failure(name, reason, details):
    """`FAIL name: reason`, then each detail's lines indented by four spaces."""
    print(f"FAIL {name}: {reason}", flush=True)
    for d in details:
        for line in str(d).splitlines():
            print("    " + line)
    sys.stdout.flush()


def crash_reason(e):
    """The FAIL reason for a test that raised something other than Failure."""
    return f"{type(e).__name__}: {e}"


class Runner:
    """Runs named tests, counting passes and failures (kept even if a run is cut short)."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, tests, ctx, only=None, always=(), before_each=None, failure_details=None,
            crash_details=None, crash_reason=crash_reason, reraise=()):
        """Runs each (name, fn) of `tests` as fn(ctx).

        only: run only tests whose name contains this (and those named in `always`).
        before_each(ctx): called before each test that runs.
        failure_details(ctx) / crash_details(ctx): extra details (a list) printed under a FAIL
        from a Failure / from any other exception (after the traceback).
        reraise: exception types that are not a failure of the test but end the run.
        """
        for name, fn in tests:
            if only and only not in name and name not in always:
                continue
            if before_each is not None:
                before_each(ctx)
            t0 = time.monotonic()
            try:
                fn(ctx)
                print(f"PASS {name} ({time.monotonic() - t0:.1f}s)", flush=True)
                self.passed += 1
            except Failure as f:
                self.failed += 1
                extra = failure_details(ctx) if failure_details is not None else []
                print_failure(name, f.reason, list(f.details) + list(extra))
            except reraise:
                raise
            except Exception as e:  # noqa: BLE001 - a crash in a test is a failure of that test
                self.failed += 1
                extra = crash_details(ctx) if crash_details is not None else []
                print_failure(name, crash_reason(e), [traceback.format_exc()] + list(extra))
        return self

    def summary(self, started=None):
        """Prints `N passed, N failed`, with the time since `started` if given."""
        line = f"{self.passed} passed, {self.failed} failed"
        if started is not None:
            line += f" ({time.monotonic() - started:.1f}s)"
        print(line)

    def keep_or_remove(self, tmp, keep=False):
        """Keeps `tmp` for a look when asked or when anything failed; removes it otherwise."""
        if keep or self.failed:
            print(f"(temporary files kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def exit_code(self):
        return 0 if self.failed == 0 else 1
