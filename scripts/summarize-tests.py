#!/usr/bin/env python3
"""Prints "N passed, N failed, N skipped" for a meson test run, counting the cases inside each test
executable (doctest's "test cases:" line, the system tests' "N passed, N failed" line); a test that
printed neither counts as one case. Exits 1 when anything failed."""
import json
import re
import sys

DOCTEST = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped")
PLAIN = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$", re.M)


def main(path):
    passed = failed = skipped = 0
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"summarize-tests: {e}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    for line in lines:
        t = json.loads(line)
        out = t.get("stdout") or ""
        result = t.get("result")
        m = DOCTEST.findall(out)
        p = PLAIN.findall(out)
        if m:
            _, ok, bad, skip = map(int, m[-1])
        elif p:
            ok, bad = int(p[-1][0]), int(p[-1][1])
            skip = int(p[-1][2] or 0)
        else:
            ok, bad, skip = (1, 0, 0) if result == "OK" else (0, 0, 1) if result == "SKIP" else (0, 1, 0)
        # A test executable that failed (crash, timeout) without reporting a failed case still fails.
        if result not in ("OK", "SKIP", "EXPECTEDFAIL") and bad == 0:
            bad = 1
        passed, failed, skipped = passed + ok, failed + bad, skipped + skip
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
