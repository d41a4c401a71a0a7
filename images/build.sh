#!/usr/bin/env bash
# Builds Remora's two container images offline, from the binaries in BUILD_DIR and the Debian
# packages installed on this machine (no registry pull): each image is FROM scratch with the
# binaries (stripped), every shared library they load (ldd's closure) and, for the proxy, the
# iptables package's nft backend and its extensions.
#   localhost/remora-proxy:<version>    remora-proxy, remora-init, remora-agent, iptables
#   localhost/remora-control:<version>  remora-control, remoractl
# Usage: images/build.sh [BUILD_DIR [IMAGE...]]   (default: build, both images; needs podman;
# prints the image sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(remora-proxy remora-control)
version=$(sed -n "s/^ *version: '\([^']*\)'.*/\1/p" meson.build | head -1)
wanted() { [[ " ${images[*]} " == *" $1 "* ]]; }
bins=()
wanted remora-proxy && bins+=(proxy/remora-proxy proxy/init/remora-init proxy/agent/remora-agent)
wanted remora-control && bins+=(control/remora-control control/remoractl)
for b in "${bins[@]}"; do
    [ -x "$build/$b" ] || { echo "images: $build/$b is not built (ninja -C $build)" >&2; exit 1; }
done
for t in podman buildah; do
    command -v $t >/dev/null || { echo "images: $t is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# copy_libs ROOTFS FILE...: every library ldd resolves for the files, at its own path.
copy_libs() {
    local root=$1; shift
    local f lib
    for f in "$@"; do
        for lib in $(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
}

# copy_with_libs ROOTFS FILE...: each file at its own path, and its libraries.
copy_with_libs() {
    local root=$1; shift
    local f
    for f in "$@"; do
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f"
    done
    copy_libs "$root" "$@"
}

# base ROOTFS: what every image has besides its programs.
base() {
    local root=$1
    mkdir -p "$root"/{tmp,etc,var/lib/remora,usr/local/bin}
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nremora:x:1337:1337:remora:/var/lib/remora:/sbin/nologin\n' > "$root/etc/passwd"
    printf 'root:x:0:\nremora:x:1337:\n' > "$root/etc/group"
    cp /etc/protocols /etc/services "$root/etc/"
    printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
    # glibc resolves names through these at run time (dlopen, which ldd does not show).
    local arch_lib=/lib/x86_64-linux-gnu
    copy_with_libs "$root" "$arch_lib/libnss_dns.so.2" "$arch_lib/libnss_files.so.2" \
        "$arch_lib/libresolv.so.2"
}

install_bins() {  # ROOTFS BIN...: stripped, in /usr/local/bin
    local root=$1; shift
    for b in "$@"; do
        strip --strip-unneeded -o "$root/usr/local/bin/$(basename "$b")" "$b"
        copy_libs "$root" "$b"
    done
}

image() {  # NAME ROOTFS CMD: the rootfs as one layer, ownership kept (buildah, no shell needed)
    local name=$1 root=$2 cmd=$3 ctr mnt
    chown 1337:1337 "$root/var/lib/remora"
    ctr=$(buildah from --quiet scratch)
    mnt=$(buildah mount "$ctr")
    cp -a "$root/." "$mnt/"
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --user 1337:1337 \
        --cmd "[\"$cmd\", \"--help\"]" --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.title=$name" "$ctr"
    buildah commit --quiet --squash --format docker --rm "$ctr" "localhost/$name:$version" >/dev/null
}

# remora-proxy: the proxy, the init step with iptables (nft backend, as this Debian uses), the
# agent for the postStart hook.
if wanted remora-proxy; then
proxy_root="$work/proxy"
base "$proxy_root"
install_bins "$proxy_root" "$build/proxy/remora-proxy" "$build/proxy/init/remora-init" \
    "$build/proxy/agent/remora-agent"
multi=$(readlink -f /usr/sbin/iptables-restore)
copy_with_libs "$proxy_root" "$multi"
for tool in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do
    ln -sf "$(basename "$multi")" "$proxy_root/usr/sbin/$tool"
done
xt=/usr/lib/x86_64-linux-gnu/xtables
mkdir -p "$proxy_root$xt"
for ext in "$xt"/*.so; do copy_with_libs "$proxy_root" "$ext"; done
cp /etc/ethertypes "$proxy_root/etc/" 2>/dev/null || true
image remora-proxy "$proxy_root" remora-proxy
fi

if wanted remora-control; then
    control_root="$work/control"
    base "$control_root"
    install_bins "$control_root" "$build/control/remora-control" "$build/control/remoractl"
    image remora-control "$control_root" remora-control
fi

for name in "${images[@]}"; do
    size=$(podman image inspect --format '{{.Size}}' "localhost/$name:$version")
    gz=$(podman save --format docker-archive "localhost/$name:$version" 2>/dev/null | gzip -9 | wc -c)
    printf '%-32s %6.1f MB, %6.1f MB compressed (gzip -9 of podman save)\n' \
        "localhost/$name:$version" "$(echo "$size / 1000000" | bc -l)" "$(echo "$gz / 1000000" | bc -l)"
done
