#!/usr/bin/env bash
# Build fogify-net/base:latest, the project's base image, without any registry:
# debootstrap a Debian bookworm minbase tree from a Debian mirror, trim it, and
# `docker import` it. Skips the build when the image exists, unless --force.
#
#   images/base/build.sh [--force]
#
# Environment: FOGIFY_NET_BASE_IMAGE (default fogify-net/base:latest),
# FOGIFY_NET_DEBIAN_MIRROR (default: the Debian mirror of this machine's apt
# sources, else http://deb.debian.org/debian). Needs root, debootstrap, docker.
set -euo pipefail

IMAGE=${FOGIFY_NET_BASE_IMAGE:-fogify-net/base:latest}
SUITE=bookworm
PACKAGES=python3,python3-flask,python3-requests,iproute2,iputils-ping,iperf3,procps,ca-certificates,netbase

die() { echo "build.sh: error: $*" >&2; exit 1; }

# shellcheck source=scripts/lib/debian-mirror.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../scripts/lib/debian-mirror.sh"

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }

force=0
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap needs it): sudo $0 $*"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap (scripts/install.sh does it)"
command -v docker >/dev/null || die "docker is missing: apt-get install docker.io (scripts/install.sh does it)"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info failed); scripts/install.sh starts it"

if [ "$force" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE exists; nothing to do (use --force to rebuild)"
    exit 0
fi

mirror=$(debian_mirror)

work=$(mktemp -d /var/tmp/fogify-net-base.XXXXXX)
root=$work/rootfs
log=$work/debootstrap.log

cleanup() {
    # debootstrap may leave proc/sys/dev mounts in the tree when it fails: unmount
    # them before deleting, and never cross into another file system.
    local m
    if [ -d "$root" ]; then
        awk -v r="$root" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
echo "debootstrap $SUITE (minbase) from $mirror into $root"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >"$log" 2>&1; then
    echo "----- last lines of $log -----" >&2
    tail -n 25 "$log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && { echo "----- $root/debootstrap/debootstrap.log -----" >&2; tail -n 25 "$root/debootstrap/debootstrap.log" >&2; }
    die "debootstrap failed (mirror $mirror; set FOGIFY_NET_DEBIAN_MIRROR to use another)"
fi

# Trim what a container never reads: documentation, translations, apt's caches.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/usr/share/lintian/* \
       "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap

echo "importing the tree as $IMAGE"
tar --numeric-owner -C "$root" -c . | docker import \
    -c 'CMD ["sleep","infinity"]' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'LABEL fogify-net=base' \
    -m "fogify-net base: debootstrap $SUITE minbase + $PACKAGES" \
    - "$IMAGE" >/dev/null

# A smoke test: the tools apps and the emulation rely on are there.
docker run --rm --network none "$IMAGE" sh -c \
    'python3 -c "import flask, requests" && ip -V >/dev/null && ping -V >/dev/null && iperf3 -v >/dev/null && ps --version >/dev/null' \
    || die "$IMAGE was imported but its smoke test failed"

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "built $IMAGE ($((size / 1000000)) MB) in $(( $(date +%s) - start )) s"
