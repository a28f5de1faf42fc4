"""The `fogify-net` command.

deploy and undeploy talk to the API daemon, which holds the emulation (its
Mininet shells, delay line and sampler live there); deploy starts that daemon
when none runs and undeploy stops it again if deploy started it. Everything
the user sees is printed here, not in the library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from fogify_net.backends import REGISTRY

DEFAULT_URL = os.environ.get("FOGIFY_URL", "http://127.0.0.1:5000")
RUN_DIR = Path(os.environ.get("FOGIFY_RUN_DIR", "/run/fogify-net"))
CONF_DIR = Path(os.environ.get("FOGIFY_CONF_DIR", "/etc/fogify-net"))
LOG_DIR = Path(os.environ.get("FOGIFY_LOG_DIR", "/var/log/fogify-net"))
PID_FILE = RUN_DIR / "api.pid"
AUTO_FLAG = RUN_DIR / "api.auto"


class CliError(Exception):
    """A problem to tell the user in one line, exiting with status 1."""


# --- talking to the API ----------------------------------------------------------------------


def _token() -> str | None:
    """FOGIFY_TOKEN without the line ending a copy from a file or `vagrant ssh -c` leaves."""
    return os.environ.get("FOGIFY_TOKEN", "").strip() or None


def _headers() -> dict:
    token = _token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _call(method: str, url: str, **kwargs) -> requests.Response:
    try:
        return requests.request(method, url, headers=_headers(), timeout=kwargs.pop("timeout", 30), **kwargs)
    except requests.ConnectionError:
        raise CliError(f"no fogify-net API answers at {url.rsplit('/', 2)[0]}") from None


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    if response.status_code >= 400:
        raise CliError(body.get("message", f"HTTP {response.status_code}"))
    return body


def _api_alive(url: str) -> bool:
    try:
        requests.get(f"{url}/status/", headers=_headers(), timeout=2)
        return True
    except requests.ConnectionError:
        return False


def _start_daemon(url: str, allow_host_access: bool = False) -> None:
    """Start `fogify-net api` in the background, marked as started by the CLI, and wait for it."""
    port = url.rsplit(":", 1)[-1].split("/")[0]
    extra = ["--allow-host-access"] if allow_host_access else []
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "api.log", "a") as log_file:  # the child keeps its own copy of the descriptor
        subprocess.Popen(
            [sys.executable, "-m", "fogify_net.cli", "api", "--port", port, "--pid-file", str(PID_FILE), *extra],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    AUTO_FLAG.write_text("started by fogify-net deploy\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _api_alive(url):
            return
        time.sleep(0.2)
    raise CliError(f"the API did not start; see {LOG_DIR / 'api.log'}")


def _stop_daemon() -> None:
    try:
        pid = int(PID_FILE.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            os.kill(pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
    AUTO_FLAG.unlink(missing_ok=True)


# --- commands ----------------------------------------------------------------------------------


def cmd_api(args) -> int:
    from fogify_net.controller import Controller
    from fogify_net_api.server import serve

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = _api_token(args)
    if args.pid_file:
        Path(args.pid_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.pid_file).write_text(str(os.getpid()))
    options = {}
    if args.backend == "local" and (args.switch != "bridge" or args.ovs_controller):
        options = {"switch": args.switch, "ovs_controller": args.ovs_controller}
    if args.backend == "swarm":
        options = {"manager_url": args.manager, "agents": dict(_pair(item, "--agent") for item in args.agent),
                   "agent_port": args.agent_port, "token": os.environ.get("FOGIFY_AGENT_TOKEN", "").strip() or None,
                   "tokens": _agent_tokens(args.agent_tokens)}
    try:
        try:
            controller = Controller(data_dir=args.data_dir, run_dir=str(RUN_DIR), shaping=args.shaping,
                                    interval=args.interval, host_mhz=args.host_mhz, backend=args.backend,
                                    backend_options=options, allow_host_access=args.allow_host_access)
        except ValueError as error:  # a shaping mechanism or switch this machine cannot have
            raise CliError(str(error)) from None
        serve(controller, args.host, args.port, token, names=tuple(args.name))
    finally:
        if args.pid_file:
            Path(args.pid_file).unlink(missing_ok=True)
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _refuse_token_argument(args) -> None:
    if args.token is not None:
        raise CliError("--token would show the token to every user (ps); put it in a file only you can read "
                       "and give --token-file PATH, or set the environment variable")


def _api_token(args) -> str | None:
    """FOGIFY_TOKEN, else the --token-file; off loopback a token is required: one is made in the
    token file (default /etc/fogify-net/token, mode 0600) and only its path is printed."""
    from fogify_net.host.tokens import TokenFileError, ensure_token_file, read_token_file

    _refuse_token_argument(args)
    try:
        if _token():
            return _token()
        if args.token_file and Path(args.token_file).exists():
            return read_token_file(args.token_file)
        if args.host in LOOPBACK and not args.token_file:
            return None
        path = args.token_file or CONF_DIR / "token"
        token = ensure_token_file(path)
    except TokenFileError as error:
        raise CliError(str(error)) from None
    print(f"The API listens on {args.host}; every request needs Authorization: Bearer <the token in {path}>",
          flush=True)
    return token


def _agent_token(args) -> str:
    """The agent's own token, always required (also on loopback): FOGIFY_AGENT_TOKEN, else the
    --token-file, made (mode 0600) if missing; the controller needs it (--agent-tokens)."""
    from fogify_net.host.tokens import TokenFileError, ensure_token_file

    _refuse_token_argument(args)
    token = os.environ.get("FOGIFY_AGENT_TOKEN", "").strip()
    if token:
        return token
    try:
        return ensure_token_file(args.token_file)
    except TokenFileError as error:
        raise CliError(str(error)) from None


def _agent_tokens(path: str | None) -> dict[str, str]:
    """The controller's per-node agent tokens: lines `HOSTNAME TOKEN` in a file only root may read."""
    from fogify_net.host.tokens import TokenFileError, read_secret_file

    if not path:
        return {}
    try:
        text = read_secret_file(path)
    except TokenFileError as error:
        raise CliError(str(error)) from None
    tokens = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise CliError(f"{path}, line {number}: expected HOSTNAME TOKEN")
        tokens[fields[0]] = fields[1]
    return tokens


def _pair(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        raise CliError(f"{option} wants NAME=VALUE, got {item!r}")
    return name, value


def cmd_agent(args) -> int:
    from fogify_net.backends.swarm.agent import serve

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = _agent_token(args)
    serve(args.docker, args.host, args.port, token, args.run_dir, args.exec_root)
    return 0


def topology_file(name: str) -> Path:
    """The file `deploy` means: as given, else with .py, .yaml or .yml (`topologies/tree`); a
    `topologies/...` name not found here is looked up in the checkout fogify-net runs from."""
    candidates = [Path(name)]
    if name.startswith("topologies/") and not Path(name).parent.exists():
        candidates.append(Path(__file__).resolve().parents[1] / name)
    for path in candidates:
        for suffix in ("", ".py", ".yaml", ".yml"):
            if path.with_name(path.name + suffix).is_file():
                return path.with_name(path.name + suffix)
    raise CliError(f"no such file: {name}")


def read_topology(path: Path, params: list[str]) -> tuple[str, list[str]]:
    """A compose file's text, or a Python topology's document as YAML text; and warnings to show."""
    if path.suffix != ".py":
        if params:
            raise CliError("--param is for Python topologies (a .py file)")
        return path.read_text(), []
    import yaml

    from fogify_net.containernet.load import load_topology, parse_params

    document, warnings = load_topology(path, parse_params(params))
    return yaml.safe_dump(document, sort_keys=False), warnings


def cmd_deploy(args) -> int:
    path = topology_file(args.file)
    text, warnings = read_topology(path, args.param)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        from fogify_net.dryrun import dry_run
        from fogify_net.model import parse_model_text

        model = parse_model_text(text, base_dir=path.resolve().parent) if path.suffix == ".py" else None
        print(dry_run(str(path), args.shaping, model=model))
        return 0
    traces = _trace_uploads(path, text)
    if not _api_alive(args.url):
        if args.url != DEFAULT_URL and not args.url.startswith("http://127.0.0.1"):
            raise CliError(f"no fogify-net API answers at {args.url}")
        _start_daemon(args.url, args.allow_host_access)
    name = path.name if path.suffix != ".py" else f"{path.stem}.yaml"
    _json(_call("POST", f"{args.url}/topology/", files=[("file", (name, text)), *traces]))
    report = _wait(args.url, "deploy", args.timeout, lambda r: r["status"] != "deploying")
    if report["status"] == "error":
        raise CliError(report["message"])
    print(render_status(report))
    return 0


def _trace_uploads(model: Path, text: str) -> list[tuple[str, tuple[str, bytes]]]:
    """The trace files the model names, read from its folder, as multipart `traces` fields."""
    import yaml

    from fogify_net.model.traces import model_trace_files

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # the API says what is wrong with it
    uploads = []
    for name in model_trace_files(document):
        try:
            uploads.append(("traces", (name, (model.parent / Path(name).expanduser()).read_bytes())))
        except OSError as error:
            raise CliError(f"cannot read trace file {name} named by {model}: {error.strerror}") from None
    return uploads


def _wait(url: str, what: str, timeout: float, done) -> dict:
    """Poll /status/ with a progress bar of instances up (deploy) or gone (undeploy) until `done`.

    On a terminal the bar redraws itself; piped into a file or a CI log it
    prints one plain line each time the count changes instead of `\\r` frames.
    """
    deadline = time.monotonic() + timeout
    first = _json(_call("GET", f"{url}/status/"))
    total = len(first.get("instances", []))
    with _progress(total, f"{what} process") as show:
        while True:
            report = _json(_call("GET", f"{url}/status/"))
            up = sum(1 for i in report.get("instances", []) if i["state"] == "up")
            show(up if what == "deploy" else total - up)
            if done(report):
                return report
            if time.monotonic() > deadline:
                raise CliError(f"{what} did not finish within {timeout:g}s (status: {report['status']})")
            time.sleep(0.3)


@contextlib.contextmanager
def _progress(total: int, label: str):
    """A callable that shows `done` of `total`: a tqdm bar on a terminal, plain lines elsewhere."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=label, unit="instance", leave=False) as bar:
            def show(done: int) -> None:
                bar.n = done
                bar.refresh()

            yield show
        return
    shown = [-1]

    def line(done: int) -> None:
        if done != shown[0]:
            shown[0] = done
            print(f"{label}: {done}/{total} instances", file=sys.stderr, flush=True)

    yield line


def cmd_undeploy(args) -> int:
    response = _call("DELETE", f"{args.url}/topology/")
    if response.status_code == 409:
        print("nothing is deployed")
    else:
        _json(response)
        report = _wait(args.url, "undeploy", args.timeout, lambda r: r["status"] in ("idle", "error"))
        if report["status"] == "error":
            raise CliError(report["message"])
        print("undeployed: no container, link or rule of the emulation is left")
    if AUTO_FLAG.exists():
        _stop_daemon()
    return 0


def cmd_status(args) -> int:
    if not _api_alive(args.url):
        print("no fogify-net API runs, so nothing is deployed (`fogify-net cleanup` removes any leftovers)")
        return 0
    report = _json(_call("GET", f"{args.url}/status/"))
    print(json.dumps(report, indent=2) if args.json else render_status(report))
    return 0


def cmd_cleanup(args) -> int:
    from fogify_net.host.cleanup import cleanup
    from fogify_net.machine import machine_lock

    if _api_alive(args.url):
        _stop_daemon()
    with machine_lock():  # a running test or benchmark finishes first
        removed = cleanup(str(RUN_DIR))
    if args.swarm:
        from fogify_net.backends.swarm.services import remove_deployment

        removed += remove_deployment(args.swarm)
    print("\n".join(f"removed {line}" for line in removed) if removed else "nothing of fogify-net was left")
    return 0


def cmd_doctor(args) -> int:
    from fogify_net.doctor import diagnose

    print(diagnose(args.shaping))
    return 0


def cmd_exec(args) -> int:
    """Run a host tool inside an instance's network namespace (its own file system: use the REST command)."""
    report = _json(_call("GET", f"{args.url}/status/"))
    match = [i for i in report["instances"] if i["name"] == args.instance]
    if not match:
        raise CliError(f"no instance {args.instance!r}")
    return subprocess.call(["nsenter", f"--net=/proc/{match[0]['pid']}/ns/net", "--", *args.command])


def cmd_move(args) -> int:
    """Hand instances over to another network (POST /actions/move/); prints where each went."""
    params: dict = {"instance_type": args.instance, "to": args.to}
    if args.source:
        params["from"] = args.source
    if args.overlap:
        params["overlap"] = args.overlap
    if args.instances:
        params["instances"] = args.instances
    answer = _json(_call("POST", f"{args.url}/actions/move/", json={"params": params}, timeout=120))
    for name, where in sorted(answer.get("instances", {}).items()):
        print(f"{name}: {where['from']} -> {where['to']} ({where['ip']})")
    for name in answer.get("unchanged", []):
        print(f"{name}: on {args.to} already")
    return 0


def cmd_trace(args) -> int:
    """Start, stop, pause or resume the model's traces (POST /actions/trace/); prints their states."""
    params = {"command": args.command, **({"name": args.name} if args.name else {})}
    answer = _json(_call("POST", f"{args.url}/actions/trace/", json={"params": params}))
    traces = answer.get("traces", [])
    for trace in traces:
        print(f"{trace['name']}: {trace['state']}")
    if not traces:
        print(f"no trace to {args.command}")
    return 0


def cmd_cli(args) -> int:
    """Mininet's CLI on the running deployment (its shells run here: as root, on the API's machine)."""
    from fogify_net.containernet.remote import open_cli

    if os.geteuid() != 0:
        raise CliError("the CLI opens shells in the containers' namespaces: run it as root")
    if not _api_alive(args.url):
        raise CliError(f"no fogify-net API answers at {args.url}")
    try:
        open_cli(args.url, _headers(), script=args.script)
    except RuntimeError as error:
        raise CliError(str(error)) from None
    return 0


def action_params(pairs: list[str], raw: str | None) -> dict:
    """An action's params from KEY=VALUE pairs (dotted keys nest, values read as YAML) and/or --json."""
    import yaml

    params: dict = json.loads(raw) if raw else {}
    if not isinstance(params, dict):
        raise CliError("--json wants a JSON object of parameters")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"expected KEY=VALUE, got {pair!r}")
        where = params
        *parents, last = key.split(".")
        for part in parents:
            where = where.setdefault(part, {})
            if not isinstance(where, dict):
                raise CliError(f"{key}: {part} is not a mapping")
        where[last] = yaml.safe_load(value) if value else ""
    return params


def cmd_action(args) -> int:
    """POST /actions/<type>/ as the SDK does; prints the answer."""
    params = action_params(args.params, args.json)
    answer = _json(_call("POST", f"{args.url}/actions/{args.type}/", json={"params": params}, timeout=args.timeout))
    print(json.dumps(answer, indent=2))
    return 0


def cmd_scenario(args) -> int:
    """Start a scenario and follow it until it ends (run), or list, show, cancel."""
    if args.what == "list":
        body = _json(_call("GET", f"{args.url}/scenarios/"))
        for item in body["available"]:
            note = f"  cannot run: {item['error']}" if item.get("error") else ""
            print(f"{item['name']}: {item['actions']} actions, {item['duration']:g} s{note}")
        return 0
    if not args.name:
        raise CliError(f"scenario {args.what} needs the scenario's name")
    url = f"{args.url}/scenarios/{args.name}/"
    if args.what == "cancel":
        _json(_call("DELETE", url))
        print(f"cancelled {args.name}")
        return 0
    if args.what == "run":
        started = _json(_call("POST", url))
        print(f"{args.name}: started, planned end in {started['end'] - started['start']:.1f} s")
        if args.no_wait:
            return 0
    shown = 0
    while True:
        run = _json(_call("GET", url))
        for action in run["actions"][shown:]:
            if action.get("fired") is None:
                break
            late = f"{action['lateness_ms']:+.0f} ms" if action.get("lateness_ms") is not None else ""
            print(f"  {action['position']}: {action['type']} {action.get('instance_type') or ''} {late} "
                  f"{action.get('result') or ''}".rstrip())
            shown += 1
        if run["state"] != "running" or args.what == "status":
            print(f"{args.name}: {run['state']}")
            return 0 if run["state"] in ("finished", "running") else 1
        time.sleep(0.2)


def cmd_run(args: argparse.Namespace) -> int:
    from fogify_net.containernet.unchanged import run_script

    try:
        run_script(args.script, args.args)
    except SystemExit as done:  # the script's own sys.exit
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    return 0


# --- output ------------------------------------------------------------------------------------


def render_status(report: dict) -> str:
    from fogify_net.render import status_table

    return status_table(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fogify-net", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the REST API (holds the emulation)")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    api.add_argument("--port", type=int, default=5000)
    api.add_argument("--token", help=argparse.SUPPRESS)  # refused: it would show in ps
    api.add_argument("--token-file", help="a file only you can read holding the bearer token every request "
                                          "must carry (env FOGIFY_TOKEN); off loopback one is made in "
                                          "/etc/fogify-net/token if none is given")
    api.add_argument("--shaping", default=os.environ.get("FOGIFY_SHAPING", "auto"),
                     choices=["auto", "netem", "userspace"])
    api.add_argument("--switch", default=os.environ.get("FOGIFY_SWITCH", "bridge"), choices=["bridge", "ovs"],
                     help="local backend: a Linux bridge per network (default), or Open vSwitch (needs the "
                          "openvswitch module and netem shaping; standalone unless --ovs-controller)")
    api.add_argument("--ovs-controller", metavar="IP[:PORT]",
                     help="with --switch ovs: the remote OpenFlow controller the switches connect to "
                          "(fail mode secure: it decides what is forwarded)")
    api.add_argument("--interval", type=float, default=1.0, help="seconds between metric samples")
    api.add_argument("--data-dir", default=os.environ.get("FOGIFY_DATA_DIR", "/var/lib/fogify-net"))
    api.add_argument("--host-mhz", type=float, help="host clock for the CPU formula (default: measured)")
    api.add_argument("--pid-file")
    api.add_argument("--allow-host-access", action="store_true",
                     help="deploy models whose services reach into the host (privileged, host bind mounts, "
                          "cap_add beyond NET_ADMIN/NET_RAW/NET_BIND_SERVICE/SYS_NICE/IPC_LOCK, pid/network/ipc: "
                          "host, devices); refused with 403 otherwise")
    api.add_argument("--name", action="append", default=[], metavar="HOSTNAME",
                     help="another name clients reach this API by (the Host header check; loopback names, "
                          "'controller' and the listening address are always accepted); repeatable")
    api.add_argument("--backend", choices=sorted(REGISTRY), default=os.environ.get("FOGIFY_BACKEND", "local"),
                     help="local: Mininet on this machine; swarm: services on a Docker Swarm")
    api.add_argument("--manager", default=os.environ.get("FOGIFY_SWARM_MANAGER", "unix:///var/run/docker.sock"),
                     help="with --backend swarm: the Docker endpoint of a Swarm manager")
    api.add_argument("--agent", action="append", default=[], metavar="HOSTNAME=URL",
                     help="with --backend swarm: where a node's agent answers "
                          "(default http://<node address>:<agent port>); repeatable")
    api.add_argument("--agent-port", type=int, default=5500)
    api.add_argument("--agent-tokens", default=os.environ.get("FOGIFY_AGENT_TOKENS"), metavar="FILE",
                     help="with --backend swarm: each node's agent token, lines 'HOSTNAME TOKEN', in a file only "
                          "root reads; FOGIFY_AGENT_TOKEN is the token of nodes not listed")
    api.add_argument("-v", "--verbose", action="store_true")
    api.set_defaults(func=cmd_api)

    agent = sub.add_parser("agent", help="the per-node agent of the Swarm backend (shaping, exec, resources)")
    agent.add_argument("--docker", help="this node's Docker endpoint (default: DOCKER_HOST or the local socket)")
    agent.add_argument("--host", default="127.0.0.1", help="address on the management network (default: loopback)")
    agent.add_argument("--port", type=int, default=5500)
    agent.add_argument("--token", help=argparse.SUPPRESS)  # refused: it would show in ps
    agent.add_argument("--token-file", default=str(CONF_DIR / "agent-token"),
                       help="this node's bearer token, in a file only root reads (made if missing; "
                            "default %(default)s; env FOGIFY_AGENT_TOKEN instead)")
    agent.add_argument("--run-dir", default=str(RUN_DIR), help="where the delay helpers' pid files go")
    agent.add_argument("--exec-root", default="/var/run/docker",
                       help="this node's dockerd --exec-root (where Docker keeps the overlay namespaces)")
    agent.add_argument("-v", "--verbose", action="store_true")
    agent.set_defaults(func=cmd_agent)

    deploy = sub.add_parser("deploy", help="deploy a fogified compose file or a Python topology and wait until it runs")
    deploy.add_argument("file", help="a compose file, or a .py file defining a Topo or build(params) "
                        "(topologies/<name> finds topologies/<name>.py or .yaml)")
    deploy.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a Python topology's parameter (repeatable), e.g. --param fanout=3")
    deploy.add_argument("--dry-run", action="store_true", help="print the plan and the exact commands; touch nothing")
    deploy.add_argument("--shaping", default="auto", choices=["auto", "netem", "userspace"],
                        help="with --dry-run: the mechanism to show")
    deploy.add_argument("--timeout", type=float, default=900)
    deploy.add_argument("--allow-host-access", action="store_true",
                        help="when deploy starts the API: let models use privileged, host binds, ... (see README)")
    deploy.set_defaults(func=cmd_deploy)

    undeploy = sub.add_parser("undeploy", help="tear the emulation down")
    undeploy.add_argument("--timeout", type=float, default=600)
    undeploy.set_defaults(func=cmd_undeploy)

    status = sub.add_parser("status", help="what is deployed, with addresses, limits and shaping")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    clean = sub.add_parser("cleanup", help="remove everything fogify-net left on this machine")
    clean.add_argument("--swarm", metavar="MANAGER_URL",
                       help="also remove fogify-net's services and networks from this Swarm manager")
    clean.set_defaults(func=cmd_cleanup)

    doctor = sub.add_parser("doctor", help="what this machine can emulate, and how")
    doctor.add_argument("--shaping", default="auto", choices=["auto", "netem", "userspace"])
    doctor.set_defaults(func=cmd_doctor)

    execute = sub.add_parser("exec", help="run a host tool in an instance's network namespace")
    execute.add_argument("instance")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.set_defaults(func=cmd_exec)

    move = sub.add_parser("move", help="hand instances over to another network (a device driving on)")
    move.add_argument("instance", help="a label (every replica, or --instances of them) or label.N")
    move.add_argument("to", help="the network they join")
    move.add_argument("--from", dest="source", help="the network they leave (needed when on more than one)")
    move.add_argument("--overlap", help="make-before-break: keep the old network this long too (e.g. 500ms)")
    move.add_argument("--instances", type=int, help="how many replicas of the label")
    move.set_defaults(func=cmd_move)

    trace = sub.add_parser("trace", help="start, stop, pause or resume the model's traces")
    trace.add_argument("command", choices=["start", "stop", "pause", "resume"])
    trace.add_argument("name", nargs="?", help="one trace (default: every trace)")
    trace.set_defaults(func=cmd_trace)


    run = sub.add_parser("run", help="run a Containernet or Mininet script unchanged, on fogify-net",
                         description="`from mininet.net import Containernet` (or Mininet), `from mininet.node "
                         "import Docker` and `from mininet.topolib import TreeContainerNet` give fogify-net's "
                         "classes inside the script's process, as if its import line were changed.")
    run.add_argument("script")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    run.set_defaults(func=cmd_run)

    cli = sub.add_parser("cli", help="Mininet's CLI on the running deployment (nodes, net, pingall, iperf a b, "
                         "<node> <command>, link a b down|up)")
    cli.add_argument("--script", help="run the CLI commands in this file instead of reading the terminal")
    cli.set_defaults(func=cmd_cli)

    action = sub.add_parser("action", help="run an action now, as the SDK does (POST /actions/<type>/)",
                            description="Examples: `fogify-net action stress instance_type=edge cpu=60 duration=30`, "
                            "`fogify-net action network instance_type=car network=lan uplink.bandwidth=2Mbps`, "
                            "`fogify-net action link_down switches='[s1, s2]'`.")
    action.add_argument("type", help="horizontal_scaling, vertical_scaling, network, links, stress, command, "
                        "link_down, link_up, switch_link, partition, heal, crash, restart, move, trace")
    action.add_argument("params", nargs="*", metavar="KEY=VALUE",
                        help="parameters; dotted keys nest (uplink.latency.delay=20ms), values are YAML")
    action.add_argument("--json", help="the parameters as a JSON object (KEY=VALUE pairs go on top)")
    action.add_argument("--timeout", type=float, default=120)
    action.set_defaults(func=cmd_action)

    scenario = sub.add_parser("scenario", help="run a scenario of the deployed model and follow it")
    scenario.add_argument("what", choices=["run", "list", "status", "cancel"])
    scenario.add_argument("name", nargs="?")
    scenario.add_argument("--no-wait", action="store_true", help="with run: return once it started")
    scenario.set_defaults(func=cmd_scenario)

    for p in (deploy, undeploy, status, clean, execute, move, trace, cli, action, scenario):
        p.add_argument("--url", default=DEFAULT_URL, help=f"the API (default {DEFAULT_URL}, env FOGIFY_URL)")

    args = parser.parse_args(argv)
    from fogify_net.model import ModelError

    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except (CliError, ModelError, OSError) as error:
        print(f"fogify-net: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
