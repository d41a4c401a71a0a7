#!/usr/bin/env bash
# Remora quickstart: installs and builds everything, then runs a four-pod mesh in Linux network
# namespaces (examples/quickstart.py): remora-control as the CA, remora-init and remora-proxy beside
# each meshed app, a plain `curl http://hello:8080/` carried over mTLS, a plaintext caller refused,
# and the proxies' /stats and /certs. Everything it starts is removed at the end, also on Ctrl-C.
# Needs root for the namespaces (uses sudo when run as another user).
# REMORA_SKIP_BUILD=1 skips scripts/setup.sh when the build is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR
if [ "${REMORA_SKIP_BUILD:-0}" != 1 ]; then
    scripts/setup.sh
fi

run=(python3 examples/quickstart.py --bin-dir "$BUILD_DIR")
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "quickstart: network namespaces need root" >&2; exit 1; }
    run=(sudo "${run[@]}")
fi
# exec: Ctrl-C reaches quickstart.py directly, whose cluster teardown removes everything.
exec "${run[@]}"
