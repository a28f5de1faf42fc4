#!/usr/bin/env bash
# The taxi walkthrough of the getting-started guide (steps 5 to 10) on this machine:
# starts the fogify-net API unless one runs, runs examples/taxi/run.py through the
# FogifySDK, stops the API it started. Pictures and a summary land in the output folder.
#
#   sudo scripts/walkthrough.sh [--out DIR] [--scale 0.25]   # arguments go to run.py
#
# Run scripts/install.sh first (it builds the images this needs).
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
VENV=${FOGIFY_NET_VENV:-/opt/fogify-net/venv}
URL=${FOGIFY_URL:-http://127.0.0.1:5000}
# An API that asks for a token (the Vagrant VM's service) gets the one it was started with.
if [ -z "${FOGIFY_TOKEN:-}" ] && [ -r /etc/fogify-net/token ]; then
    FOGIFY_TOKEN=$(tr -d '\r\n' </etc/fogify-net/token)
    export FOGIFY_TOKEN
fi
auth=()
[ -n "${FOGIFY_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $FOGIFY_TOKEN")
[ "$(id -u)" -eq 0 ] || { echo "walkthrough.sh: run as root (sudo $0)" >&2; exit 1; }
[ -x "$VENV/bin/fogify-net" ] || { echo "walkthrough.sh: run sudo scripts/install.sh first" >&2; exit 1; }

started=
if ! curl -fsS "${auth[@]}" "$URL/status/" >/dev/null 2>&1; then
    mkdir -p /var/log/fogify-net /run/fogify-net
    echo "==> starting the fogify-net API on $URL (log /var/log/fogify-net/walkthrough-api.log)"
    "$VENV/bin/fogify-net" api --port "${URL##*:}" --pid-file /run/fogify-net/walkthrough-api.pid \
        >>/var/log/fogify-net/walkthrough-api.log 2>&1 &
    started=$!
    trap 'kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        curl -fsS "${auth[@]}" "$URL/status/" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "${auth[@]}" "$URL/status/" >/dev/null || { tail -n 20 /var/log/fogify-net/walkthrough-api.log >&2; exit 1; }
fi
echo "==> examples/taxi/run.py --url $URL $*"
"$VENV/bin/python" "$REPO/examples/taxi/run.py" --url "$URL" "$@"
