#!/usr/bin/env bash
# The soak's long form: N cycles of deploy / actions / undeploy of different models, through the CLI,
# the API and the SDK in turn, with the API killed (SIGKILL) every fourth cycle; afterwards nothing of
# ours may be left. Prints a line per cycle and a table with the figures (cycles, failures, leftovers,
# seconds per cycle). Holds the machine lock while it runs. CI runs a twelve-cycle form (tests/soak/).
#
#   sudo scripts/soak.sh [--cycles N] [--json FILE]     # default 50 cycles
#
# Environment: FOGIFY_NET_VENV (default /opt/fogify-net/venv).
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
VENV=${FOGIFY_NET_VENV:-/opt/fogify-net/venv}

case ${1:-} in
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: error: run as root (sudo $0 $*)" >&2; exit 1; }
cd "$REPO"
exec "$VENV/bin/python" -m tests.soak.soak "$@"
