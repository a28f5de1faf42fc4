#!/usr/bin/env bash
# Run fogify-net's whole test suite as CI does: unit tests, the SDK's, the taxi
# example's, and the integration tests (marked slow; they need root, Docker and
# the images from scripts/install.sh). Extra arguments go to pytest:
#
#   sudo scripts/test.sh                       # everything
#   scripts/test.sh -m "not slow" -q           # the fast part, no root needed
#   sudo scripts/test.sh tests/integration -x  # given paths replace the default ones
#
# Environment: FOGIFY_NET_VENV (default /opt/fogify-net/venv).
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
VENV=${FOGIFY_NET_VENV:-/opt/fogify-net/venv}
PYTEST=$VENV/bin/pytest

case ${1:-} in
    -h|--help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
[ -x "$PYTEST" ] || { echo "test.sh: error: $PYTEST is missing; run sudo scripts/install.sh first" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || echo "test.sh: warning: not root, so the slow (integration) tests will be skipped" >&2

# Leftovers of an earlier, interrupted run would get in the tests' way.
if command -v fogify-net >/dev/null; then
    cli=$(command -v fogify-net)
elif [ -x "$VENV/bin/fogify-net" ]; then
    cli=$VENV/bin/fogify-net
else
    cli=
fi
if [ -n "$cli" ]; then
    echo "==> $cli cleanup"
    "$cli" cleanup || echo "test.sh: warning: '$cli cleanup' failed (exit $?); running the tests anyway" >&2
fi
if [ "$(id -u)" -eq 0 ]; then  # the Swarm tests' cluster of extra dockerds (fgts*), if a run died
    (cd "$REPO" && "$VENV/bin/python" -m tests.support.swarm_cluster) \
        || echo "test.sh: warning: the test cluster's cleanup failed; running the tests anyway" >&2
fi

# The default test paths, unless the arguments name paths (or node ids) of their own.
paths=("$REPO/tests" "$REPO/sdk/tests" "$REPO/examples/taxi/tests")
for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then
        paths=()
        break
    fi
done

echo "==> pytest ${paths[*]} $*"
exec "$PYTEST" -c "$REPO/pytest.ini" --rootdir "$REPO" "${paths[@]}" "$@"
