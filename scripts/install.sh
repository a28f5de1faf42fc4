#!/usr/bin/env bash
# Set up this machine for fogify-net: Debian packages, a running Docker daemon,
# the delay-line helper, the Python venv with the project installed editable
# from this checkout, and the Docker images. Idempotent: a re-run redoes only
# what is missing or out of date. Run as root on Debian 12 or Ubuntu 22.04+;
# CI (.ci/run) and the Vagrant VM use it too.
#
#   sudo scripts/install.sh [--no-images] [--no-published-sdk]
#
#   --no-images          skip building fogify-net/base:latest and the taxi example's image
#   --no-published-sdk   skip Fogify's published SDK (only tests/integration/test_published_sdk.py
#                        uses it; the stock-kernel VM of scripts/vm.sh runs without it)
#
# Environment: FOGIFY_NET_VENV (default /opt/fogify-net/venv); FOGIFY_PUBLISHED_SDK_VENV
# (default /opt/fogify-net/fogifysdk-0.0.3: Fogify's own SDK from PyPI, for the tests).
set -Eeuo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
VENV=${FOGIFY_NET_VENV:-/opt/fogify-net/venv}
FOGIFYSDK_VERSION=0.0.3
FOGIFYSDK_VENV=${FOGIFY_PUBLISHED_SDK_VENV:-/opt/fogify-net/fogifysdk-$FOGIFYSDK_VERSION}
# The published wheel declares no dependencies (fogify.md §3.1): these, unpinned as its users have them.
FOGIFYSDK_DEPENDENCIES=(pandas requests pyyaml tqdm matplotlib)
PREFIX=/usr/local
DELAYLINE=$REPO/fogify_net/host/delayline
DOCKERD_LOG=/var/log/dockerd.log
DOCKERD_WAIT=300
DOCKERD_ATTEMPTS=5
PACKAGES=(
    docker.io mininet iproute2 iptables nftables iputils-ping iperf3
    debootstrap debian-archive-keyring libnetfilter-queue-dev gcc libc6-dev make python3-venv
    stress-ng procps kmod curl
)
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
export PIP_DISABLE_PIP_VERSION_CHECK=1

step_name=
step_start=$SECONDS
t0=$SECONDS

die() { printf '\ninstall.sh: error: %s\n' "$*" >&2; exit 1; }
# shellcheck disable=SC2154  # rc is set inside the trap
trap 'rc=$?; printf "\ninstall.sh: error: %s: \"%s\" failed with exit code %s (line %s)\n" "${step_name:-setup}" "$BASH_COMMAND" "$rc" "$LINENO" >&2' ERR

step() {
    [ -n "$step_name" ] && printf '    (%s s)\n' "$((SECONDS - step_start))"
    step_name=$1
    step_start=$SECONDS
    printf '==> %s\n' "$1"
}

usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; }

images=1
published_sdk=1
for arg in "$@"; do
    case $arg in
        --no-images) images=0 ;;
        --no-published-sdk) published_sdk=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
[ -f "$REPO/setup.py" ] && [ -d "$DELAYLINE" ] || die "$REPO does not look like a fogify-net checkout"
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    os=$(. /etc/os-release && echo "${ID:-?} ${VERSION_ID:-?}")
    case $os in
        debian*|ubuntu*) ;;
        *) echo "warning: tested on Debian 12 and Ubuntu 22.04+, this is $os" >&2 ;;
    esac
fi

# --- Debian packages -----------------------------------------------------------
step "Debian packages"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "    all ${#PACKAGES[@]} packages are installed"
else
    echo "    installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
    apt_opts=(-q -o DPkg::Lock::Timeout=300)
    apt-get "${apt_opts[@]}" update
    unknown=()
    for p in "${missing[@]}"; do
        apt-cache show "$p" >/dev/null 2>&1 || unknown+=("$p")
    done
    [ ${#unknown[@]} -eq 0 ] || die "no such package in the apt sources: ${unknown[*]} (on Ubuntu, enable 'universe': add-apt-repository universe)"
    apt-get "${apt_opts[@]}" install -y "${missing[@]}"
fi

# --- Docker daemon -------------------------------------------------------------
step "Docker daemon"
if docker info >/dev/null 2>&1; then
    echo "    dockerd answers"
else
    if [ -d /run/systemd/system ]; then
        systemctl enable --now docker
    elif pgrep -x dockerd >/dev/null; then
        echo "    dockerd (pid $(pgrep -x dockerd | tr '\n' ' ')) runs but does not answer yet; waiting"
    else
        command -v dockerd >/dev/null || die "dockerd is missing (package docker.io)"
        echo "    no systemd: starting dockerd in the background, log $DOCKERD_LOG"
        nohup setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
        dockerd_pid=$!
    fi
    # After a crash or a machine snapshot taken mid-run, containerd first reaps
    # every dead shim; with hundreds of them dockerd gives up waiting for it and
    # exits. Each attempt reaps more, so start it again instead of failing.
    waited=0
    attempts=1
    until docker info >/dev/null 2>&1; do
        if [ "$waited" -ge "$DOCKERD_WAIT" ]; then
            [ -f "$DOCKERD_LOG" ] && tail -n 20 "$DOCKERD_LOG" >&2
            die "dockerd did not answer within $DOCKERD_WAIT s (see $DOCKERD_LOG)"
        fi
        if [ -n "${dockerd_pid:-}" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
            [ "$attempts" -ge "$DOCKERD_ATTEMPTS" ] && die "dockerd exited $attempts times (see $DOCKERD_LOG)"
            attempts=$((attempts + 1))
            echo "    dockerd exited before answering (log: $(tail -n 1 "$DOCKERD_LOG")); start $attempts of $DOCKERD_ATTEMPTS"
            nohup setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
            dockerd_pid=$!
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "    dockerd answers after ${waited} s"
fi

# --- br_netfilter --------------------------------------------------------------
step "br_netfilter"
modprobe br_netfilter 2>/dev/null || true   # fails harmlessly when it is built in
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] \
    || die "net.bridge.bridge-nf-call-iptables does not exist: this kernel has no br_netfilter (needed for bridged traffic through iptables)"
echo "    net.bridge.bridge-nf-call-iptables = $(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"

# --- delay-line helper ---------------------------------------------------------
step "delay-line helper fogify-delayd"
make -s -C "$DELAYLINE"
make -s -C "$DELAYLINE" install PREFIX="$PREFIX"
echo "    installed $PREFIX/bin/fogify-delayd"

# --- Python venv ---------------------------------------------------------------
step "Python venv $VENV"
if [ -x "$VENV/bin/python" ] && (cd / && "$VENV/bin/python" -c 'import mininet.net') >/dev/null 2>&1; then
    echo "    exists and imports mininet"
else
    (cd / && /usr/bin/python3 -c 'import mininet.net') \
        || die "/usr/bin/python3 cannot import mininet (Debian package mininet / python3-mininet)"
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv --system-site-packages --clear "$VENV"
    echo "    created from /usr/bin/python3 with --system-site-packages"
fi

# The project and the SDK are installed editable from this checkout; a stamp of the
# checkout's path and packaging files skips pip when nothing changed.
stamp_file=$VENV/.fogify-net-install
stamp=$(printf '%s\n' "$REPO"; cd "$REPO" && sha256sum setup.py sdk/pyproject.toml)
installed_here() {
    [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && [ -x "$VENV/bin/fogify-net" ] \
        && (cd / && "$VENV/bin/python" - "$REPO" <<'EOF'
import sys
import fogify_net, FogifySDK, pytest  # noqa: F401
repo = sys.argv[1] + "/"
sys.exit(0 if fogify_net.__file__.startswith(repo) and FogifySDK.__file__.startswith(repo) else 1)
EOF
        ) >/dev/null 2>&1
}
if installed_here; then
    echo "    fogify-net and FogifySDK are installed editable from $REPO"
else
    rm -f "$stamp_file"
    # --use-pep517: setuptools' editable finder also maps package_dir (api/ -> fogify_net_api).
    "$VENV/bin/pip" install -q --use-pep517 -e "${REPO}[test]"
    "$VENV/bin/pip" install -q -e "$REPO/sdk" pytest
    printf '%s\n' "$stamp" >"$stamp_file"
    installed_here || die "fogify-net / FogifySDK do not import from $REPO after pip install"
    echo "    installed fogify-net[test] and FogifySDK editable from $REPO"
fi
ln -sfn "$VENV/bin/fogify-net" "$PREFIX/bin/fogify-net"
echo "    $PREFIX/bin/fogify-net -> $VENV/bin/fogify-net"

# --- Fogify's published SDK, for the tests that run real Fogify users' scripts --------
# Its import name (FogifySDK) is the same as ours, so it lives in a venv of its own.
step "Fogify's published SDK fogifysdk==$FOGIFYSDK_VERSION"
published_sdk_ok() {
    [ -x "$FOGIFYSDK_VENV/bin/python" ] && (cd / && "$FOGIFYSDK_VENV/bin/python" -c '
import sys
from importlib.metadata import version
import FogifySDK.FogifySDK, pandas, requests, tqdm, yaml
sys.exit(0 if version("fogifysdk") == sys.argv[1] else 1)' "$FOGIFYSDK_VERSION") >/dev/null 2>&1
}
if [ "$published_sdk" -eq 0 ]; then
    echo "    skipped (--no-published-sdk)"
elif published_sdk_ok; then
    echo "    installed in $FOGIFYSDK_VENV"
else
    rm -rf "$FOGIFYSDK_VENV"
    /usr/bin/python3 -m venv "$FOGIFYSDK_VENV"
    "$FOGIFYSDK_VENV/bin/pip" install -q "fogifysdk==$FOGIFYSDK_VERSION" "${FOGIFYSDK_DEPENDENCIES[@]}"
    published_sdk_ok || die "Fogify's SDK does not import from $FOGIFYSDK_VENV after pip install"
    echo "    installed in $FOGIFYSDK_VENV with ${FOGIFYSDK_DEPENDENCIES[*]}"
fi

# --- the walkthrough's API address ------------------------------------------------
# The getting-started guide talks to http://controller:5000; on this machine that is the local API.
step "name 'controller'"
if getent hosts controller >/dev/null; then
    echo "    controller resolves to $(getent hosts controller | awk '{print $1}')"
else
    echo "127.0.0.1 controller  # added by fogify-net's install.sh: the walkthrough's API address" >>/etc/hosts
    echo "    added '127.0.0.1 controller' to /etc/hosts"
fi

# --- Docker images -------------------------------------------------------------
if [ "$images" -eq 1 ]; then
    step "image fogify-net/base:latest"
    bash "$REPO/images/base/build.sh"
    step "image of the taxi example"
    [ -f "$REPO/examples/taxi/build-image.sh" ] || die "$REPO/examples/taxi/build-image.sh is missing"
    sh "$REPO/examples/taxi/build-image.sh" >/tmp/fogify-net-taxi-build.log 2>&1 \
        || { tail -n 30 /tmp/fogify-net-taxi-build.log >&2; die "examples/taxi/build-image.sh failed (log /tmp/fogify-net-taxi-build.log)"; }
    tail -n 1 /tmp/fogify-net-taxi-build.log | sed 's/^/    /'
else
    step "images (skipped: --no-images)"
fi

# --- Summary -------------------------------------------------------------------
step "summary"
trap - ERR
image_line() {
    local size
    size=$(docker image inspect -f '{{.Size}}' "$1" 2>/dev/null) && echo "$1 ($((size / 1000000)) MB)" || echo "$1 (missing)"
}
cat <<EOF
    fogify-net is installed (in $((SECONDS - t0)) s)
    checkout:    $REPO
    venv:        $VENV ($("$VENV/bin/python" --version 2>&1), mininet $(dpkg-query -W -f='${Version}' mininet 2>/dev/null))
    command:     $PREFIX/bin/fogify-net -> $VENV/bin/fogify-net
    delay line:  $PREFIX/bin/fogify-delayd
    docker:      server $(docker version -f '{{.Server.Version}}' 2>/dev/null), $(docker info -f 'cgroup v{{.CgroupVersion}}, {{.CgroupDriver}} driver' 2>/dev/null)
    kernel:      $(uname -r), net.bridge.bridge-nf-call-iptables = $(cat /proc/sys/net/bridge/bridge-nf-call-iptables)
    images:      $(image_line fogify-net/base:latest), $(image_line "${TAXI_IMAGE:-taxi-exp:0.0.1}")
    tests:       sudo $REPO/scripts/test.sh
EOF
