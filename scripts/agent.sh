#!/usr/bin/env bash
# Run the fogify-net agent of the Swarm backend on this node, as a service that
# survives the shell: a systemd unit where systemd runs, else a background
# process with a pid file. Run scripts/install.sh on the node first.
#
#   sudo scripts/agent.sh start --host ADDRESS [--port 5500]
#   sudo scripts/agent.sh status
#   sudo scripts/agent.sh stop
#
# ADDRESS is this node's address on the management network (the controller
# reaches agents there, never over the emulated networks). Each node has its own
# bearer token in /etc/fogify-net/agent-token (mode 0600), made on first start;
# the controller keeps every node's as a line 'HOSTNAME TOKEN' in its
# --agent-tokens file. The token is never on a command line. The agent speaks
# plain HTTP: between machines, listen on a WireGuard address or an SSH tunnel.
set -Eeuo pipefail

VENV=${FOGIFY_NET_VENV:-/opt/fogify-net/venv}
CONF=${FOGIFY_NET_CONF:-/etc/fogify-net}
TOKEN_FILE=$CONF/agent-token
ENV_FILE=$CONF/agent.env
UNIT=fogify-net-agent.service
UNIT_FILE=/etc/systemd/system/$UNIT
PID_FILE=${FOGIFY_NET_RUN:-/run/fogify-net}/agent.pid
LOG=/var/log/fogify-net/agent.log

die() { echo "agent.sh: error: $*" >&2; exit 1; }
systemd() { [ -d /run/systemd/system ]; }
running_pid() { [ -s "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && cat "$PID_FILE"; }

start() {
    local host="" port=5500
    while [ $# -gt 0 ]; do
        case $1 in
            --host) host=${2:?--host wants an address}; shift 2 ;;
            --port) port=${2:?--port wants a number}; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [ -n "$host" ] || die "--host ADDRESS (this node's management address) is required"
    [ -x "$VENV/bin/fogify-net" ] || die "$VENV/bin/fogify-net is missing; run scripts/install.sh first"
    mkdir -p "$CONF" "$(dirname "$PID_FILE")" /var/log/fogify-net
    if [ ! -s "$TOKEN_FILE" ]; then
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$TOKEN_FILE")
    fi
    chown root: "$TOKEN_FILE" && chmod 600 "$TOKEN_FILE"  # the agent refuses a token file others can read
    printf 'FOGIFY_AGENT_HOST=%s\nFOGIFY_AGENT_PORT=%s\n' "$host" "$port" >"$ENV_FILE"
    # The agent reads its token from the file: never on a command line (readable by every user).
    local command="exec $VENV/bin/fogify-net agent --host $host --port $port --token-file $TOKEN_FILE"
    if systemd; then
        cat >"$UNIT_FILE" <<EOF
# Written by scripts/agent.sh: the fogify-net agent of this Swarm node.
[Unit]
Description=fogify-net agent (Swarm backend: shaping, exec, metrics of this node's tasks)
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
Type=simple
Environment=PYTHONUNBUFFERED=1
ExecStart=/bin/sh -c '${command//\$/\$\$}'
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
        systemctl daemon-reload
        systemctl enable --now "$UNIT"
        systemctl restart "$UNIT"
    else
        stop_background
        nohup setsid sh -c "$command" >>"$LOG" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
    fi
    local url="http://$host:$port/health/"
    for _ in $(seq 1 50); do
        # curl reads the header from its standard input (printf is a shell builtin: no command line)
        if printf 'header = "Authorization: Bearer %s"\n' "$(cat "$TOKEN_FILE")" \
                | curl -fsS -K - "$url" >/dev/null 2>&1; then
            echo "agent answers at $url; give the controller the line '$(hostname) <the token in $TOKEN_FILE>'" \
                "in its --agent-tokens file"
            return 0
        fi
        sleep 0.2
    done
    systemd || tail -n 20 "$LOG" >&2
    die "the agent does not answer at $url"
}

stop_background() {
    local pid
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PID_FILE"
}

stop() {
    if systemd && [ -f "$UNIT_FILE" ]; then
        systemctl disable --now "$UNIT"
    else
        stop_background
    fi
    echo "agent stopped"
}

status() {
    if systemd && [ -f "$UNIT_FILE" ]; then
        systemctl --no-pager status "$UNIT"
    elif pid=$(running_pid); then
        echo "agent runs (pid $pid), $(cat "$ENV_FILE" 2>/dev/null | tr '\n' ' ')"
    else
        echo "agent does not run"
        return 3
    fi
}

[ "$(id -u)" -eq 0 ] || die "run as root (the agent enters namespaces and changes cgroups)"
case ${1:-} in
    start) shift; start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 2 ;;
esac
