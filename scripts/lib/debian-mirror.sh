# shellcheck shell=bash
# Sourced by images/base/build.sh and scripts/vm.sh: which Debian archive debootstrap reads.
#
# debian_mirror prints FOGIFY_NET_DEBIAN_MIRROR when set, else the first plain http(s) Debian
# archive in this machine's apt sources (one-line .list or deb822 .sources; the security,
# ports and third-party archives are not candidates), else http://deb.debian.org/debian.

_apt_debian_archive() {
    local files=() f
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
        /^[[:space:]]*#/ { next }
        /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break } ; next }
        /^URIs:/ { for (i = 2; i <= NF; i++) print $i }
    ' "${files[@]}" | sed 's:/*$::' | grep -E '^https?://[^ ]+/debian$' | head -n 1 || true
}

debian_mirror() {
    local mirror=${FOGIFY_NET_DEBIAN_MIRROR:-$(_apt_debian_archive)}
    echo "${mirror:-http://deb.debian.org/debian}"
}
