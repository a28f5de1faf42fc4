#!/usr/bin/env bash
# The stock-kernel path in a virtual machine: Debian bookworm with its stock
# kernel (sch_netem, openvswitch), fogify-net installed in it by
# scripts/install.sh, this checkout shared into it (9p) at /opt/fogify-net/src.
#
#   sudo scripts/vm.sh build [--force]    build the disk image (cached; --force rebuilds)
#   sudo scripts/vm.sh run [--hold-machine] [--] CMD...
#                                         run CMD as root in the VM, in the checkout; its exit code
#                                         (--hold-machine: hold the host's machine lock meanwhile)
#   sudo scripts/vm.sh test [--hold-machine] [PYTEST...]
#                                         the stock-kernel tests in the VM (builds the image first)
#   sudo scripts/vm.sh shell              an interactive root shell in the VM (`exit` powers it off), its
#                                         console as large as the terminal when it starts (not resized later);
#                                         with stdin not a terminal, a script read from it whole, run by
#                                         bash as `ssh host <script` would, its output and exit code
#   sudo scripts/vm.sh status             the image this checkout needs, and whether it is built
#   sudo scripts/vm.sh clean              remove the cached images and downloads, and the temporary
#                                         folders of runs that were killed (SIGKILL: no trap runs)
#
# Every run boots the cached image afresh (about a minute without KVM) and throws
# its changes away (qemu -snapshot); with run and shell, files written under
# /opt/fogify-net/src land in this checkout (build and test get a copy of it, so
# that edits meanwhile cannot reach them half-written). The VM has no network (no
# NIC), not even while building: the Debian and Python packages come in from the
# host side (debootstrap, pip download).
# In the VM the venv's bin is first on PATH (python, pytest, fogify-net), CMD gets
# no stdin (a piped shell's script comes in as a file), FOGIFY_NET_NO_SKIP=1 turns
# any skipped test into a failure, and FOGIFY_NET_EMULATED_CPU=1 says the CPU is
# emulated (no KVM: the tests widen their timing bounds there, each saying why).
# With no PYTEST arguments `test` runs the selection in guest_test_script below,
# then checks `shell` at a terminal (one more boot); with them, scripts/test.sh PYTEST...
#
# Exit codes: CMD's own; 124 when it ran out of time; 125 when the VM could not
# be built, boot or report back (the console log is printed).
#
# Environment: FOGIFY_NET_VM_CACHE (/var/cache/fogify-net/vm), FOGIFY_NET_VM_CPUS (2),
# FOGIFY_NET_VM_MEMORY (MiB, 4096), FOGIFY_NET_VM_ACCEL (auto, kvm or tcg),
# FOGIFY_NET_VM_BOOT_TIMEOUT (s, 600), FOGIFY_NET_VM_TIMEOUT (s for CMD; none for
# run and shell, 2400 for test), FOGIFY_NET_VM_KERNEL_ARGS (added to the kernel's
# command line), FOGIFY_NET_DEBIAN_MIRROR (as images/base/build.sh).
set -Eeuo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck source=scripts/lib/debian-mirror.sh
source "$REPO/scripts/lib/debian-mirror.sh"
CACHE=${FOGIFY_NET_VM_CACHE:-/var/cache/fogify-net/vm}
CPUS=${FOGIFY_NET_VM_CPUS:-2}
MEMORY=${FOGIFY_NET_VM_MEMORY:-4096}
ACCEL=${FOGIFY_NET_VM_ACCEL:-auto}
BOOT_TIMEOUT=${FOGIFY_NET_VM_BOOT_TIMEOUT:-600}
SUITE=bookworm
DISK_SIZE=16G            # sparse; the packages, images and venv take about 3 GB
GUEST_SRC=/opt/fogify-net/src
GUEST_JOB=/run/fogify-net-vm  # where the agent mounts the job folder
SHELL_CHECK_TIMEOUT=900
BASE_IMAGE=fogify-net/base:latest
KVM_PROBE_TIMEOUT=30
# The guest: a kernel, an init and what a Debian machine installing install.sh's
# packages with apt would also get (their Recommends that matter: apparmor, which
# Docker needs on a kernel with AppArmor on, and openvswitch-switch for mininet).
GUEST_PACKAGES=(
    linux-image-amd64 systemd-sysv udev dbus kmod e2fsprogs util-linux iproute2 netbase
    ca-certificates apparmor openvswitch-switch xz-utils
)
HOST_PACKAGES=(qemu-system-x86 debootstrap e2fsprogs)
# Files whose change makes a new image: what goes into it, and what installs it. The code
# of this script that makes the image counts too (image_key), the rest of it does not.
KEY_INPUTS=(
    scripts/install.sh setup.py sdk/pyproject.toml images
    examples/taxi/Dockerfile examples/taxi/build-image.sh examples/taxi/generate_trips.py examples/taxi/app
    fogify_net/host/delayline/delayd.c fogify_net/host/delayline/Makefile
)

export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
export LC_ALL=C

die() { printf 'vm.sh: error: %s\n' "$*" >&2; exit 125; }
note() { printf '==> %s\n' "$*" >&2; }
usage() { sed -n '2,40s/^# \{0,1\}//p' "$0"; }

# --- cleanup: whatever happens, no qemu, no temporary files, no mounts are left --------------
qemu_pid=
cat_pid=
temps=()
tty_state=  # the terminal's settings before `shell` (QEMU makes it raw; a killed QEMU leaves it so)
cleanup() {
    local rc=$? t m
    trap - EXIT INT TERM HUP
    [ -n "$cat_pid" ] && kill "$cat_pid" 2>/dev/null
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    [ -z "$tty_state" ] || stty "$tty_state" 2>/dev/null || true
    for t in "${temps[@]}"; do
        [ -d "$t" ] || continue
        # debootstrap mounts proc, sys and dev/pts in its tree and may leave them when it fails
        awk -v r="$t" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
        rm -rf --one-file-system "$t"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP  # the terminal of `shell` went away

# new_temp VAR [PARENT]: a fresh directory in VAR, removed on exit (not in $(...): the
# list of what to remove must be this shell's).
new_temp() {
    local t
    t=$(mktemp -d "${2:-/var/tmp}/fogify-net-vm.XXXXXX")
    temps+=("$t")
    printf -v "$1" '%s' "$t"
}

# --- host prerequisites --------------------------------------------------------------------
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, the image's root-owned files, 9p): sudo $0"; }

host_packages() {
    local missing=() p
    for p in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    note "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# install.sh's own package list, so the image has them from debootstrap (fast, on the
# host) and install.sh finds them installed, as on a machine where they were installed before.
install_sh_packages() {
    sed -n '/^PACKAGES=(/,/^)/p' "$REPO/scripts/install.sh" | sed '1d;$d' | tr -s ' \n' '\n' | grep -v '^$'
}

# --- the image, keyed on its inputs ----------------------------------------------------------
image_key() {
    local input
    for input in "${KEY_INPUTS[@]}"; do
        [ -e "$REPO/$input" ] || die "$input is missing from $REPO"
    done
    (
        cd "$REPO"
        find "${KEY_INPUTS[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z \
            | xargs -0 sha256sum
        printf '%s\n' "$SUITE" "${GUEST_PACKAGES[@]}" "$DISK_SIZE" "$BASE_IMAGE" "$GUEST_SRC"
        declare -f build configure_tree guest_agent guest_install_script install_sh_packages
    ) | sha256sum | cut -c1-16
}

image_dir() { printf '%s/%s' "$CACHE" "$(image_key)"; }

build() {
    local force=${1:-0} dir work tree mirror started log kernel initrd packages
    need_root
    host_packages
    dir=$(image_dir)
    mkdir -p "$CACHE"
    # One build at a time; a second caller waits and then finds the image made.
    exec {lock}>"$CACHE/.build.lock"
    flock -n "$lock" || { note "another vm.sh build runs; waiting for it"; flock "$lock"; }
    if [ "$force" -eq 0 ] && [ -f "$dir/ready" ]; then
        note "image $dir is up to date"
        return 0
    fi
    started=$SECONDS
    rm -rf --one-file-system "$dir"
    new_temp work "$CACHE"
    tree=$work/tree
    log=$work/build.log
    mirror=$(debian_mirror)

    # The project's base image comes from the host (built there by install.sh from Debian
    # packages): debootstrapping it again under emulation would take far longer.
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || {
        note "host image $BASE_IMAGE is missing: building it (images/base/build.sh)"
        bash "$REPO/images/base/build.sh"
    }

    packages=$( (printf '%s\n' "${GUEST_PACKAGES[@]}"; install_sh_packages) | sort -u | paste -sd, -)
    note "debootstrap $SUITE with the stock kernel and install.sh's packages from $mirror"
    mkdir -p "$CACHE/debs"
    if ! debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$packages" \
            "$SUITE" "$tree" "$mirror" >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        die "debootstrap failed (log above; mirror $mirror, FOGIFY_NET_DEBIAN_MIRROR picks another)"
    fi
    note "debootstrap took $((SECONDS - started)) s"
    configure_tree "$tree"
    note "saving the host's $BASE_IMAGE into the image"
    mkdir -p "$tree/var/cache/fogify-net-vm"
    docker save -o "$tree/var/cache/fogify-net-vm/base.tar" "$BASE_IMAGE"
    # install.sh's pip finds these with PIP_NO_INDEX and PIP_FIND_LINKS: the VM has no network.
    # They are kept in $CACHE/wheels, as the Debian packages in $CACHE/debs: pip skips what it has.
    # Not Fogify's published SDK: no test in the VM uses it (install.sh --no-published-sdk).
    note "downloading the Python packages install.sh installs (pip on the host)"
    /usr/bin/python3 -m venv "$work/pip"
    mkdir -p "$CACHE/wheels"
    "$work/pip/bin/pip" download -q -d "$CACHE/wheels" "${REPO}[test]" "$REPO/sdk" pytest setuptools wheel \
        >>"$log" 2>&1 || { tail -n 25 "$log" >&2; die "pip download failed (log above)"; }
    # the project's own sdists are built afresh each time; the checkout is installed editable anyway
    mkdir -p "$tree/var/cache/fogify-net-vm/wheels"
    find "$CACHE/wheels" -maxdepth 1 -type f ! -name 'fogify_net-*' ! -name 'fogify-net-*' ! -name 'fogifysdk_fogify_net*' \
        -exec cp -t "$tree/var/cache/fogify-net-vm/wheels" {} +

    kernel=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
    initrd=$(find "$tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
    { [ -n "$kernel" ] && [ -n "$initrd" ]; } || die "no kernel or initramfs in the debootstrap tree (see $log)"
    mkdir -p "$work/image"
    cp "$kernel" "$work/image/vmlinuz"
    cp "$initrd" "$work/image/initrd.img"
    note "making the ext4 disk image ($DISK_SIZE sparse)"
    truncate -s "$DISK_SIZE" "$work/image/disk.img"
    mkfs.ext4 -q -F -L fogify-net-vm -E root_owner=0:0 -d "$tree" "$work/image/disk.img"
    rm -rf --one-file-system "$tree"

    note "booting it to run scripts/install.sh inside"
    local rc=0
    IMAGE=$work/image CHECKOUT_COPY=1 boot_vm build 0 "${FOGIFY_NET_VM_TIMEOUT:-3600}" \
        bash -c "$(guest_install_script)" || rc=$?
    [ "$rc" -eq 0 ] || die "installing fogify-net in the VM failed (exit $rc)"
    (cd "$REPO" && printf 'built %s in %s s from:\n' "$(date -u +%FT%TZ)" "$((SECONDS - started))"
        printf '  %s\n' "${KEY_INPUTS[@]}") >"$work/image/inputs"
    touch "$work/image/ready"
    mv "$work/image" "$dir"
    # Only the newest image is kept: each one is a few GB.
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name debs ! -name wheels ! -path "$dir" ! -name 'fogify-net-vm.*' \
        -exec rm -rf --one-file-system {} +
    note "image $dir built in $((SECONDS - started)) s"
}

# Files of the guest that make it a test VM: fstab, names, the agent that runs jobs.
configure_tree() {
    local tree=$1
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$tree/etc/fstab"
    printf 'fogify-net-vm\n' >"$tree/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 fogify-net-vm\n' >"$tree/etc/hosts"
    : >"$tree/etc/resolv.conf"
    mkdir -p "$tree$GUEST_SRC"
    guest_agent >"$tree/usr/local/sbin/fogify-net-vm-agent"
    chmod 755 "$tree/usr/local/sbin/fogify-net-vm-agent"
    cat >"$tree/etc/systemd/system/fogify-net-vm.service" <<'EOF'
[Unit]
Description=fogify-net VM job (scripts/vm.sh on the host)
After=multi-user.target docker.service
Wants=docker.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/fogify-net-vm-agent
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
    chroot "$tree" systemctl enable fogify-net-vm.service >/dev/null 2>&1
    # Nothing else competes for the emulated CPUs: no logins on the consoles, no apt timers.
    chroot "$tree" systemctl mask getty@.service serial-getty@.service apt-daily.timer \
        apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
}

# The agent, run once at boot: mounts the job folder and the checkout that the host
# shares, runs the job, writes its exit code where the host reads it, powers off.
guest_agent() {
    cat <<'AGENT'
#!/bin/bash
# fogify-net-vm-agent: written by scripts/vm.sh; run by fogify-net-vm.service at boot.
set -u
job=/run/fogify-net-vm
src=/opt/fogify-net/src
say() { echo "fogify-net-vm-agent: $*" >/dev/ttyS0; }
off() { sync; if [ "${1:-}" = clean ]; then systemctl poweroff; else systemctl poweroff --force --force; fi; exit 0; }

mkdir -p "$job" "$src"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 fgnjob "$job" || { say "no job folder"; off; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose fgnsrc "$src" \
    || { say "no checkout"; echo 125 >"$job/rc"; off; }
mode=$(cat "$job/mode")
export HOME=/root LANG=C.UTF-8 FOGIFY_NET_VM=1 FOGIFY_NET_NO_SKIP=1
export PATH=/opt/fogify-net/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
set -a
. "$job/env"  # from the host: TERM, FOGIFY_NET_EMULATED_CPU
set +a
date +%s.%N >"$job/booted"
cd "$src" || { echo 125 >"$job/rc"; off; }
rc=0
case $mode in
    shell)
        # hvc0 becomes the controlling terminal of a new session; `bash -i`, not a login shell,
        # since /etc/profile would reset PATH. The host terminal's size (rows, columns) comes in
        # the job's file tty-size: the console has no way to carry it, and without it everything
        # wraps at 80x24. Set by the session's first process on its own terminal, since a size set
        # on a terminal that nobody holds open is lost.
        size=$(cat "$job/tty-size" 2>/dev/null || true)
        # shellcheck disable=SC2016  # expanded by the inner bash
        setsid --ctty --wait bash -c '[ -z "$1" ] || stty $1; exec bash -i' bash "$size" \
            </dev/hvc0 >/dev/hvc0 2>&1 || rc=$? ;;
    *)
        out=$(grep -l '^fogify-net.out$' /sys/class/virtio-ports/*/name | head -n 1 | xargs dirname | xargs basename)
        bash "$job/cmd" </dev/null >"/dev/$out" 2>&1 || rc=$? ;;
esac
echo "$rc" >"$job/rc"
sync
[ "$mode" = build ] && off clean
off
AGENT
}

# Run in the VM by `build`, in the checkout: Docker gets the host's base image, then the
# project installs itself as on any Debian machine, its Python packages from a wheelhouse.
guest_install_script() {
    cat <<'EOF'
set -euo pipefail
waited=0
until docker info >/dev/null 2>&1; do
    [ "$waited" -lt 300 ] || { echo "dockerd did not answer within 300 s" >&2; exit 1; }
    sleep 1; waited=$((waited + 1))
done
docker load -i /var/cache/fogify-net-vm/base.tar
# pip byte-compiles every module it installs, which under emulation is most of its time:
# not here; the modules the tests import are compiled below, once, into the image.
PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/cache/fogify-net-vm/wheels PIP_NO_COMPILE=1 \
    bash scripts/install.sh --no-published-sdk
python -c 'import docker, flask, waitress, requests, yaml, tqdm, pytest, pandas, matplotlib.pyplot, mininet.net'
rm -rf /var/cache/fogify-net-vm
fogify-net doctor
docker image prune -f >/dev/null
systemctl stop docker.service docker.socket containerd.service
fstrim -v /
EOF
}

# --- KVM or TCG --------------------------------------------------------------------------------
# A nested KVM guest may stall right after the boot loader: boot the kernel alone with KVM
# and see whether it reaches the point of mounting a root file system. The answer is kept
# in /run (until the host reboots). Sets `accel` (not in $(...), so that die and the cleanup work).
choose_accel() {
    local kernel=$1 answer=/run/fogify-net/vm-kvm probe log pid
    case $ACCEL in
        kvm|tcg) accel=$ACCEL; return 0 ;;
        auto) ;;
        *) die "FOGIFY_NET_VM_ACCEL must be auto, kvm or tcg, not '$ACCEL'" ;;
    esac
    if [ ! -w /dev/kvm ]; then
        accel=tcg; return 0
    fi
    if [ ! -f "$answer" ]; then
        note "probing KVM (up to $KVM_PROBE_TIMEOUT s)"
        new_temp probe
        log=$probe/console.log
        qemu-system-x86_64 -accel kvm -cpu host -m 256 -smp 1 -nodefaults -no-user-config -display none \
            -no-reboot -kernel "$kernel" -append "console=ttyS0 panic=-1" -serial "file:$log" \
            >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq "$KVM_PROBE_TIMEOUT"); do
            kill -0 "$pid" 2>/dev/null || break
            grep -q 'VFS: Unable to mount root fs\|Kernel panic' "$log" 2>/dev/null && break
            sleep 1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        mkdir -p /run/fogify-net
        if grep -q 'VFS: Unable to mount root fs\|Kernel panic' "$log" 2>/dev/null; then
            echo kvm >"$answer"
        else
            echo tcg >"$answer"
            note "a KVM guest did not boot within $KVM_PROBE_TIMEOUT s: using TCG (software emulation)"
        fi
    fi
    accel=$(cat "$answer")
}

# --- booting the VM for one job -----------------------------------------------------------------
# boot_vm MODE SNAPSHOT TIMEOUT CMD...: MODE is build, run or shell; with SNAPSHOT=1 the disk
# is not changed; TIMEOUT (s, 0 = none) bounds CMD. Returns CMD's exit code. The VM sees the
# checkout itself, or with CHECKOUT_COPY=1 a copy taken now (build and test: files edited on
# the host meanwhile must not reach the guest half-written through 9p's cache). With
# JOB_STDIN=1 our stdin, read to its end first, is the job's file `stdin`.
boot_vm() {
    local mode=$1 snapshot=$2 timeout=$3 accel tmp job console began booted_at rc cmd_began share size
    shift 3
    local image=${IMAGE:-$(image_dir)}
    [ -f "$image/disk.img" ] || die "no VM image at $image: run sudo $0 build"
    choose_accel "$image/vmlinuz"
    new_temp tmp
    job=$tmp/job
    console=$tmp/console.log
    mkdir -p "$job"
    share=$REPO
    if [ "${CHECKOUT_COPY:-0}" -eq 1 ]; then
        share=$tmp/src
        mkdir -p "$share"
        tar -C "$REPO" --exclude=./.git -cf - . | tar -C "$share" -xf -
    fi
    printf '%s\n' "$mode" >"$job/mode"
    printf '%q ' "$@" >"$job/cmd"
    [ "${JOB_STDIN:-0}" -eq 1 ] && cat >"$job/stdin"
    # What the guest exports: the terminal type (shell), and whether its CPU is emulated,
    # for the tests' timing allowances.
    # The terminal's size for the shell's console, as stty(1) arguments (none when stdin has no
    # size: a pseudo-terminal nobody sized says 0 0).
    if [ "$mode" = shell ] && size=$(stty size 2>/dev/null) && [ "$size" != "0 0" ]; then
        printf 'rows %s cols %s\n' "${size% *}" "${size#* }" >"$job/tty-size"
    fi
    {
        [ "$mode" = shell ] && printf 'TERM=%q\n' "${TERM:-vt100}"
        [ "$accel" = tcg ] && printf 'FOGIFY_NET_EMULATED_CPU=1\n'
        true
    } >"$job/env"

    # No NIC: no route anywhere, not even while building (everything comes from the host).
    # shellcheck disable=SC2054  # commas separate QEMU's sub-options, not array elements
    local args=(
        -name fogify-net-vm -nodefaults -no-user-config -display none -no-reboot
        -smp "$CPUS" -m "$MEMORY"
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img"
        -append "root=/dev/vda rw console=ttyS0 panic=-1 mitigations=off ${FOGIFY_NET_VM_KERNEL_ARGS:-}"
        -drive "file=$image/disk.img,format=raw,if=virtio,discard=unmap,cache=unsafe"
        -serial "file:$console"
        -device virtio-rng-pci
        -virtfs "local,path=$share,mount_tag=fgnsrc,security_model=none,multidevs=remap"
        -virtfs "local,path=$job,mount_tag=fgnjob,security_model=none"
        -device virtio-serial-pci
        -nic none
    )
    # shellcheck disable=SC2054
    if [ "$accel" = kvm ]; then
        args+=(-accel kvm -cpu host)
    else
        args+=(-accel tcg,thread=multi -cpu max)
    fi
    [ "$snapshot" -eq 1 ] && args+=(-snapshot)
    # shellcheck disable=SC2054
    if [ "$mode" = shell ]; then
        args+=(-chardev stdio,id=fgnio,signal=off -device virtconsole,chardev=fgnio)
    else
        # The command's output comes out of a FIFO, copied to our stdout by cat. Not a stdio
        # chardev: with stdin at EOF it counts as disconnected and the guest's writes block;
        # nor a file chardev on /dev/stdout: on a log file that is a second offset, and our
        # own lines would overwrite the command's.
        mkfifo "$tmp/out.in" "$tmp/out.out"
        args+=(-chardev "pipe,id=fgnio,path=$tmp/out" -device virtserialport,chardev=fgnio,name=fogify-net.out)
    fi

    note "booting the VM ($accel, $CPUS CPUs, $MEMORY MiB$([ "$snapshot" -eq 1 ] && echo ', changes discarded'))"
    began=$SECONDS
    # TMPDIR: where -snapshot keeps the disk's changes; removed with $tmp.
    if [ "$mode" = shell ]; then
        # 0<&0: a background command of a script gets /dev/null as stdin unless told otherwise
        TMPDIR=$tmp qemu-system-x86_64 "${args[@]}" 0<&0 &
    else
        TMPDIR=$tmp qemu-system-x86_64 "${args[@]}" </dev/null &
    fi
    qemu_pid=$!
    if [ "$mode" != shell ]; then
        cat "$tmp/out.out" &  # ends when qemu, the FIFO's only writer, exits
        cat_pid=$!
    fi

    until [ -f "$job/booted" ]; do
        if ! kill -0 "$qemu_pid" 2>/dev/null; then
            wait "$qemu_pid" || true
            qemu_pid=
            console_tail "$console"
            die "the VM stopped before it booted"
        fi
        if [ $((SECONDS - began)) -ge "$BOOT_TIMEOUT" ]; then
            console_tail "$console"
            die "the VM did not boot within $BOOT_TIMEOUT s (FOGIFY_NET_VM_BOOT_TIMEOUT)"
        fi
        sleep 0.5
    done
    booted_at=$SECONDS
    note "booted in $((booted_at - began)) s"
    cmd_began=$SECONDS
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if [ "$timeout" -gt 0 ] && [ $((SECONDS - cmd_began)) -ge "$timeout" ]; then
            printf '\nvm.sh: error: the command did not finish within %s s: stopping the VM\n' "$timeout" >&2
            return 124
        fi
        sleep 0.5
    done
    wait "$qemu_pid" || true
    qemu_pid=
    if [ -n "$cat_pid" ]; then
        wait "$cat_pid" || true  # the rest of the command's output
        cat_pid=
    fi
    if [ ! -f "$job/rc" ]; then
        console_tail "$console"
        die "the VM stopped without reporting the command's exit code"
    fi
    rc=$(cat "$job/rc")
    note "the command exited $rc after $((SECONDS - cmd_began)) s (VM up $((SECONDS - began)) s)"
    return "$rc"
}

console_tail() {
    [ -s "$1" ] || { echo "vm.sh: the VM's console printed nothing" >&2; return 0; }
    echo "----- last lines of the VM's console -----" >&2
    tail -n 40 "$1" | tr -d '\r' >&2
    echo "------------------------------------------" >&2
}

# --- the machine lock ---------------------------------------------------------------------------
# The host's test runs and benchmarks hold this lock while they run (fogify_net/machine.py). The
# VM needs no part of it for names (it has its own kernel), only, at most, for the CPUs, which an
# emulation on the host takes from the emulated one: `--hold-machine` takes it for a quiet run (a
# benchmark). Not by default: a test run holding it for a quarter of an hour would stop every
# other test run on a shared machine, and the emulated CPU's timing bounds are wide already.
# A caller that holds it says so in FOGIFY_NET_MACHINE_LOCK.
MACHINE_LOCK=/run/fogify-net-machine.lock
hold_machine() {
    [ "${FOGIFY_NET_MACHINE_LOCK:-}" = "$MACHINE_LOCK" ] && return 0
    exec {machine}>>"$MACHINE_LOCK"
    if ! flock -n "$machine"; then
        note "waiting for the machine lock $MACHINE_LOCK: a test run or benchmark holds it ..."
        flock "$machine"
    fi
    export FOGIFY_NET_MACHINE_LOCK=$MACHINE_LOCK
}

# --- the stock-kernel tests --------------------------------------------------------------------
vm_test() {
    build 0
    [ "${1:-}" = --hold-machine ] && { hold_machine; shift; }
    local rc=0 selection=$#
    # the test script comes in as a piped shell's does (run_stdin), so each run checks that path
    CHECKOUT_COPY=1 run_stdin "${FOGIFY_NET_VM_TIMEOUT:-2400}" "$@" < <(guest_test_script) || rc=$?
    if [ "$selection" -eq 0 ]; then
        shell_check || { [ "$rc" -ne 0 ] || rc=1; }
    fi
    return "$rc"
}

# run_stdin TIMEOUT [ARG...]: the script on our stdin (read whole first: the VM takes no input
# while a command runs) run in the VM by a non-interactive bash with ARGs as $1...; its exit code.
run_stdin() {
    local timeout=$1
    shift
    # shellcheck disable=SC2016  # $@ is the guest's
    JOB_STDIN=1 boot_vm run 1 "$timeout" bash -c "exec bash -s -- \"\$@\" <$GUEST_JOB/stdin" bash "$@"
}

# `shell` as a person at a terminal uses it, once per default `test` (one more boot, about a
# minute): a pseudo-terminal of 50x132 from script(1) types three commands and `exit 3`; their
# output (the guest's terminal 50x132 too) and that exit code must come back, and the inner
# vm.sh must end (its cleanup stops its VM).
shell_check() {
    local dir out rc=0 spid w
    new_temp dir
    mkfifo "$dir/in"
    note "checking 'vm.sh shell' at a terminal of 50x132: script(1) types uname, tc, stty size and exit 3"
    timeout --kill-after=30 "$SHELL_CHECK_TIMEOUT" script -qec "stty rows 50 cols 132; $(printf '%q ' "$REPO/scripts/vm.sh" shell)" \
        /dev/null <"$dir/in" >"$dir/out" 2>&1 &
    spid=$!
    # Held open until the shell has ended: at the end of its input script(1) would hand the
    # terminal an end of file, which QEMU's console takes for a hang-up.
    exec {w}>"$dir/in"
    # shellcheck disable=SC2016  # expanded in the guest
    printf '%s\n' 'echo "shell check: kernel $(uname -r)"; tc qdisc show dev lo' \
        'echo "shell check: size $(stty size)"' 'exit 3' >&"$w"
    wait "$spid" || rc=$?
    exec {w}>&-
    out=$(tr -d '\r' <"$dir/out")
    # the typed line comes back too (the guest's terminal echoes it), unexpanded: these lines
    # can only be the commands' output
    if [ "$rc" -eq 3 ] && grep -q 'shell check: kernel 6\.' <<<"$out" && grep -q 'qdisc noqueue 0: root' <<<"$out" \
            && grep -q 'shell check: size 50 132' <<<"$out"; then
        note "vm.sh shell at a terminal: the commands' output, the terminal's size and exit code 3 came back"
        return 0
    fi
    tail -n 30 <<<"$out" >&2
    printf "vm.sh: error: 'vm.sh shell' at a terminal failed (exit %s; expected 3, the kernel's release, lo's qdisc and the size 50 132)\n" \
        "$rc" >&2
    return 1
}

guest_test_script() {
    cat <<'EOF'
set -euo pipefail
doctor=$(fogify-net doctor)
echo "$doctor"
grep -q '^shaping: .*netem' <<<"$doctor" || { echo "the VM's kernel does not shape with netem" >&2; exit 1; }
if [ $# -gt 0 ]; then
    exec scripts/test.sh "$@"
fi
# What runs here, about 12.5 minutes under TCG (each test deploys its own emulation), chosen
# so that the VM lane (a cold image build of about 10-13 minutes in CI, this, and the shell
# check's boot) stays near 25 minutes:
# - the netem variants of every shaping test (the host runs the user-space ones): rate with
#   delay, delay, jitter, correlation, loss per direction, bidirectional halving, per-pair
#   rules, a delay change under a TCP flow;
# - rates per direction with netem's layout (HTB with a netem leaf);
# - multi-hop on Linux bridges (test_multihop's chain h1 - s1 = s2 = s3 - h2, netem on every
#   host link and cable): the RTT is the sum of the cables' delays, the narrowest cable's rate
#   holds each way, a cable unplugged and plugged again, reshaped at runtime, and following a
#   delay trace (about 1.5 minutes);
# - the SDK's network actions on one deployment: update_network, update_link(s),
#   link_down/up, partition/heal, and its undeploy leaving nothing behind;
# - the taxi example deployed through the SDK, its metrics and one network action;
# - a custom delay distribution (a ping trace's table) on netem: the RTTs' median, deviation
#   and shape against the trace's (about 1.5 minutes);
# - Open vSwitch switches: rates, delays, isolation, partitions, a remote controller, cleanup
#   after a crashed process, a chain of bridges joined by shaped cables, packet-level
#   monitoring on the ports across an instance's restart.
# Left to the host, where they run on every mechanism: test_multihop's router (its hops are
# the chain's per-interface shaping, routed by the kernel: about 30 s more here), a links
# rule's rate (the per-pair classes are the same HTB code; test_shaping's links rule covers
# netem's part), undeploy
# and crash cleanup on bridges (the SDK's undeploy, the taxi test and the OVS crash test
# check them here), and the taxi walkthrough, which judges app latencies that the emulated
# CPU saturates.
SDK=tests/integration/test_sdk.py
MULTIHOP=tests/integration/test_multihop.py
exec scripts/test.sh --durations=15 -k "not userspace and not dead_delay_line" \
    tests/integration/test_shaping.py \
    tests/integration/test_foundation.py::test_uplink_and_downlink_rates_hold_in_their_directions \
    "$SDK::test_deploy_waits_for_every_instance_and_the_shaping" \
    "$SDK::test_update_network_reshapes_one_network_of_the_instances" \
    "$SDK::test_update_link_and_update_links_change_one_pair" \
    "$SDK::test_link_down_cuts_one_replica_and_link_up_restores_it" \
    "$SDK::test_partition_and_heal_between_two_labels" \
    "$SDK::test_undeploy_removes_everything" \
    "$MULTIHOP::test_delay_adds_up_and_the_narrowest_rate_holds_along_a_chain_of_switches" \
    "$MULTIHOP::test_switch_link_actions_unplug_replug_and_reshape_a_cable" \
    "$MULTIHOP::test_ping_rtt_follows_a_delay_trace_on_a_switch_link" \
    tests/integration/test_taxi_sdk.py \
    tests/integration/test_distributions.py \
    tests/integration/test_ovs.py
EOF
}

# --- main --------------------------------------------------------------------------------------
command=${1:-}
[ $# -gt 0 ] && shift
case $command in
    build)
        force=0
        for arg in "$@"; do
            case $arg in
                --force) force=1 ;;
                *) usage >&2; die "unknown argument to build: $arg" ;;
            esac
        done
        build "$force"
        ;;
    run)
        hold=0
        [ "${1:-}" = --hold-machine ] && { hold=1; shift; }
        [ "${1:-}" = -- ] && shift
        [ $# -gt 0 ] || { usage >&2; die "run needs a command"; }
        need_root
        [ "$hold" -eq 1 ] && hold_machine
        rc=0
        boot_vm run 1 "${FOGIFY_NET_VM_TIMEOUT:-0}" "$@" || rc=$?
        exit "$rc"
        ;;
    test)
        need_root
        rc=0
        vm_test "$@" || rc=$?
        exit "$rc"
        ;;
    shell)
        need_root
        rc=0
        if [ -t 0 ]; then
            tty_state=$(stty -g)
            boot_vm shell 1 0 true || rc=$?
        else
            run_stdin "${FOGIFY_NET_VM_TIMEOUT:-0}" || rc=$?
        fi
        exit "$rc"
        ;;
    status)
        dir=$(image_dir)
        if [ -f "$dir/ready" ]; then
            echo "image: $dir (ready, $(du -sh --apparent-size "$dir/disk.img" | cut -f1) apparent, $(du -sh "$dir/disk.img" | cut -f1) on disk)"
            sed 's/^/  /' "$dir/inputs"
        else
            echo "image: $dir (not built for this checkout: sudo $0 build)"
        fi
        echo "accelerator: $(cat /run/fogify-net/vm-kvm 2>/dev/null || echo 'not probed yet') (FOGIFY_NET_VM_ACCEL=${ACCEL})"
        ;;
    clean)
        need_root
        running=$(pgrep -f -- '-name fogify-net-vm ' | tr '\n' ' ' || true)
        [ -z "$running" ] || die "a fogify-net VM runs (qemu pid $running): clean when it has stopped"
        rm -rf --one-file-system "$CACHE" /run/fogify-net/vm-kvm /var/tmp/fogify-net-vm.*
        note "removed $CACHE and the temporary folders of earlier runs"
        ;;
    -h|--help|help) usage ;;
    *) usage >&2; [ -z "$command" ] && exit 2; die "unknown command: $command" ;;
esac
