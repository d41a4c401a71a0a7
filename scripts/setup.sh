#!/usr/bin/env bash
# Installs what Remora needs from Debian's packages (when missing) and builds it into ./build.
# Usage: scripts/setup.sh [extra meson options]; BUILD_DIR overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(meson ninja-build pkg-config g++ cmake python3 curl openssl
          libboost1.81-dev libssl-dev libnghttp2-dev zlib1g-dev libyaml-cpp-dev libre2-dev libyaml-dev doctest-dev
          iproute2 util-linux iptables prometheus redis-server python3-grpcio
          nghttp2-client nghttp2-server clang-14 libclang-rt-14-dev nodejs python3-yaml python3-h2
          podman buildah runc catatonit libmimalloc-dev chromium etcd-server etcd-client)

# npm: Debian's package only where no npm is on PATH already (it pulls in many node-* packages).
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Kubernetes OpenAPI schemas for the manifest validation test (tests/k8s-schema), pinned by
# its package-lock.json.
if [ ! -d tests/k8s-schema/node_modules ]; then
    (cd tests/k8s-schema && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# The mesh page's graph library (cytoscape), pinned by control/ui/package-lock.json and embedded in
# remora-control at build time, so the page needs no network.
if [ ! -d control/ui/node_modules ]; then
    (cd control/ui && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" "$@" >/dev/null
fi
ninja -C "$BUILD_DIR"
