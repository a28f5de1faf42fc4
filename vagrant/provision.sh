#!/usr/bin/env bash
# Provision the fogify-net VM: run the project's install script, make the API's
# bearer token, install the systemd unit of the API, start it and check that it
# answers. The Vagrantfile runs it as root; a re-run keeps the token and restarts
# the API only when its unit or token changed.
#
#   sudo /opt/fogify-net/src/vagrant/provision.sh [--start | --dry-run]
#
#   --start     only start the API (if it is not running) and check it; the
#               Vagrantfile runs this on every `vagrant up`
#   --dry-run   write the token and the unit under $FOGIFY_ROOT (default: a new
#               temporary directory) and print what would run; runs no install.sh,
#               no systemctl and no curl
#
# Environment: FOGIFY_NET_SRC (the checkout, default: the folder above this script),
# FOGIFY_ROOT (with --dry-run only: where /etc goes).
set -Eeuo pipefail

SRC=${FOGIFY_NET_SRC:-$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)}
UNIT=fogify-net-api.service
PORT=5000
URL=http://127.0.0.1:$PORT/status/
HEALTH_WAIT=60

die() { printf '\nprovision.sh: error: %s\n' "$*" >&2; exit 1; }
trap 'printf "\nprovision.sh: error: \"%s\" failed with exit code %s (line %s)\n" "$BASH_COMMAND" "$?" "$LINENO" >&2' ERR
step() { printf '==> %s\n' "$1"; }
usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }

mode=full
for arg in "$@"; do
    case $arg in
        --start) mode=start ;;
        --dry-run) mode=dry-run ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

{ [ -f "$SRC/scripts/install.sh" ] && [ -f "$SRC/vagrant/$UNIT" ]; } || die "$SRC is not a fogify-net checkout (FOGIFY_NET_SRC)"

if [ "$mode" = dry-run ]; then
    ROOT=${FOGIFY_ROOT:-$(mktemp -d /tmp/fogify-net-provision.XXXXXX)}
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    run() { printf '    would run: %s\n' "$*"; }
else
    [ -z "${FOGIFY_ROOT:-}" ] || die "FOGIFY_ROOT is only for --dry-run"
    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
    ROOT=
    run() { "$@"; }
fi
TOKEN_DIR=$ROOT/etc/fogify-net
TOKEN_FILE=$TOKEN_DIR/token
UNIT_FILE=$ROOT/etc/systemd/system/$UNIT

# A fresh token: 24 random bytes as 48 hex digits.
new_token() {
    if command -v openssl >/dev/null; then
        openssl rand -hex 24
    else
        python3 -c 'import secrets; print(secrets.token_hex(24))'
    fi
}

read_token() {
    local token
    token=$(cat "$TOKEN_FILE")
    { [ -n "$token" ] && [[ $token != *[[:space:]]* ]]; } || die "$TOKEN_FILE must hold one word (the token); remove it to get a new one"
    printf '%s' "$token"
}

# GET /status/ with the token (given to curl on its standard input, never on its
# command line) until the API answers, then check that it refuses a request without it.
check_api() {
    local token answer code waited=0
    token=$(read_token)
    step "API health check on $URL"
    until answer=$(printf 'header = "Authorization: Bearer %s"\n' "$token" | curl -fsS --max-time 5 -K - "$URL" 2>/dev/null); do
        if [ "$waited" -ge "$HEALTH_WAIT" ]; then
            systemctl --no-pager status "$UNIT" >&2 || true
            journalctl --no-pager -u "$UNIT" -n 30 >&2 || true
            die "the API did not answer on $URL within $HEALTH_WAIT s (journalctl -u $UNIT)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$URL" || true)
    [ "$code" = 401 ] || die "the API answered HTTP $code to a request without the token (expected 401)"
    printf '    answers with the token after %s s: %s\n' "$waited" \
        "$(printf '%s' "$answer" | python3 -c 'import json, sys; r = json.load(sys.stdin); print("status", r["status"] + ",", len(r.get("instances", [])), "instances")')"
    printf '    refuses a request without it: HTTP %s\n' "$code"
}

if [ "$mode" = start ]; then
    step "start $UNIT"
    systemctl start "$UNIT"
    check_api
    exit 0
fi

# --- the project: packages, Docker, delay line, venv, images -------------------
step "scripts/install.sh"
# A fogify-delayd built on the host (in the shared checkout) may not load here: rebuild it.
helper=$SRC/fogify_net/host/delayline/fogify-delayd
if [ -x "$helper" ] && command -v ldd >/dev/null && ldd "$helper" 2>&1 | grep -q 'not found'; then
    echo "    $helper was built elsewhere and does not load here: removing it so install.sh rebuilds it"
    run rm -f "$helper"
fi
run bash "$SRC/scripts/install.sh"

# --- the API's bearer token ------------------------------------------------------
step "bearer token $TOKEN_FILE"
changed=0
mkdir -p "$TOKEN_DIR"
chmod 700 "$TOKEN_DIR"
if [ -s "$TOKEN_FILE" ]; then
    echo "    kept (remove it and provision again for a new one)"
else
    (umask 077 && new_token >"$TOKEN_FILE.new" && mv -f "$TOKEN_FILE.new" "$TOKEN_FILE")
    changed=1
    echo "    generated"
fi
chmod 600 "$TOKEN_FILE"
[ "$(id -u)" -ne 0 ] || chown root:root "$TOKEN_DIR" "$TOKEN_FILE"
read_token >/dev/null

# --- the API as a systemd service ------------------------------------------------
step "systemd unit $UNIT_FILE"
mkdir -p "$(dirname "$UNIT_FILE")"
if cmp -s "$SRC/vagrant/$UNIT" "$UNIT_FILE"; then
    echo "    up to date"
else
    install -m 644 "$SRC/vagrant/$UNIT" "$UNIT_FILE"
    changed=1
    echo "    installed from vagrant/$UNIT"
fi

step "enable and start $UNIT"
run systemctl daemon-reload
if [ "$mode" = dry-run ]; then
    run systemctl enable --now "$UNIT"
    run curl -fsS -K - "$URL" "(header: Authorization: Bearer <the token>, on curl's standard input)"
    echo "dry run: wrote $TOKEN_FILE and $UNIT_FILE"
    exit 0
fi
if [ "$changed" -eq 1 ] && systemctl -q is-active "$UNIT"; then
    echo "    the unit or the token changed: restarting (this undeploys whatever runs)"
    systemctl restart "$UNIT"
fi
systemctl enable --now "$UNIT"
check_api

cat <<EOF
==> fogify-net is provisioned
    API:       http://0.0.0.0:$PORT in the VM (127.0.0.1:$PORT on the host), unit $UNIT
    token:     $TOKEN_FILE (root only)
    logs:      sudo journalctl -u $UNIT
EOF
