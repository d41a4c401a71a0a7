#!/usr/bin/env bash
# Sets everything up (packages, build) and runs the whole test suite: unit and system tests.
# Ends with one line "N passed, N failed, N skipped" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR

scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 1 "$@"
status=$?
python3 scripts/summarize-tests.py "$BUILD_DIR/meson-logs/testlog.json" || status=1
exit $status
