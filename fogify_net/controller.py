"""The controller: the one deployment this machine runs, and everything around it.

It owns the emulation (a Backend: the local Mininet one or Swarm, made by
name from the registry in fogify_net.backends), the metric store with its
sampler, flow recorder and fidelity monitor, and the scenario runner, and it
is what the REST API and the CLI drive. Deploy and undeploy run
in a thread, as in Fogify, so a client can watch the progress.
"""

from __future__ import annotations

import logging
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from . import backends
from .actions.runner import ActionRunner
from .backends import Backend, Samples, TaskFacts
from .compile.addressing import DEFAULT_POOL
from .compile.plan import InstancePlan, Plan, compile_model
from .errors import BadRequest, Conflict, Forbidden, NotFound
from .host.capabilities import Capabilities, probe
from .host.distributions import DistributionStore
from .host.facts import read_host_facts
from .model import ModelError, parse_model_text
from .model.actions import ACTIONS, Noop, parse_action
from .model.distributions import check_name, known_distributions, make_distribution, parse_trace
from .model.errors import shown
from .model.schema import DelayDistribution
from .monitoring.fidelity import Episode, FidelityMonitor, FiredAction, SamplerHealth, Verdict, fidelity_value
from .monitoring.flows import PERIOD_S as FLOW_PERIOD_S
from .monitoring.flows import FlowRecorder
from .monitoring.sampler import Sampler
from .monitoring.store import MetricStore
from .record import DeploymentRecord
from .scenarios.runner import ScenarioRun, ScenarioRunner
from .traces.player import TracePlayer

log = logging.getLogger(__name__)

ACTIVE = ("deploying", "running", "degraded")


class Controller:
    def __init__(self, data_dir: str | Path = "/var/lib/fogify-net", run_dir: str = "/run/fogify-net",
                 shaping: str = "auto", interval: float = 1.0, host_mhz: float | None = None,
                 pool: IPv4Network = DEFAULT_POOL, capabilities: Capabilities | None = None,
                 flow_period: float = FLOW_PERIOD_S, backend: str = "local",
                 backend_options: dict[str, Any] | None = None, allow_host_access: bool = False):
        """`backend` names the kind of deployment (fogify_net.backends.REGISTRY), `backend_options`
        are that backend's own (for swarm: manager_url, agents, agent_port, token).

        Without `allow_host_access`, models whose services reach into the host
        (privileged, host bind mounts, capabilities beyond a safe set, host
        namespaces, devices) are refused with 403: the API runs as root and, on
        loopback, any local user may call it."""
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.shaping = shaping
        self.host_mhz = host_mhz
        self.pool = pool
        self.capabilities = capabilities or probe()
        self.capabilities.mechanism(shaping)  # a forced mechanism this machine lacks fails at start
        self.backend_name = backend
        self.allow_host_access = allow_host_access
        self.backend_class = backends.backend_class(backend)  # an unknown name fails at start
        self.backend_options = dict(backend_options or {})
        if backend == "local":
            self.backend_options.update(capabilities=self.capabilities, shaping=shaping, run_dir=run_dir)
            # Open vSwitch with the user-space mechanism, or without its module, fails at start
            self.capabilities.switch(self.backend_options.get("switch", "bridge"),
                                     self.capabilities.mechanism(shaping))
        self.store = MetricStore(Path(data_dir) / "fogify.db")
        self.record = DeploymentRecord(data_dir)
        self.distributions = DistributionStore(data_dir)
        self.scenarios = ScenarioRunner(self._scenario_action)
        self.emulation: Backend | None = None
        self.traces: TracePlayer | None = None
        self.fidelity = FidelityMonitor()
        self.fidelity_cpu = 0.0  # thread CPU seconds spent reading and judging fidelity (bench/monitoring.py)
        self.fidelity_rounds = 0
        self.status = "idle"
        self.message = ""
        self._model_text: str | None = None
        self._model_files: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self.found = self._remove_remains()
        self.sampler = Sampler(self._samples, self.store, interval)
        self.sampler.start()
        self.flows = FlowRecorder(self._counting_backend, self.store, flow_period)
        self.flows.start()

    # --- what a killed API left ----------------------------------------------------------------

    def _remove_remains(self) -> str:
        """Report, and remove, the deployment of an API that was killed; returns what was found, in words.

        Its model is kept, so that `POST /topology/` without a file deploys it again.
        """
        left = self.record.left_by_a_dead_process()
        if left is None:
            return ""
        backend = left.get("backend") or self.backend_name
        options = {**self.backend_options, **(left.get("options") or {})} if backend == self.backend_name \
            else dict(left.get("options") or {})
        try:
            removed = backends.backend_class(backend).remove_remains(**options)
        except Exception as error:  # report it; the next deploy clears leftovers again
            log.error("could not remove what the stopped API left: %s", error)
            removed = [f"nothing: {error}"]
        self._model_text = left.get("model") or None
        self._model_files = self.record.files(left)  # the trace files uploaded with it
        found = (f"the API before this one (pid {left.get('pid')}) stopped without undeploying: its "
                 f"{backend} deployment was {left.get('status')} with {len(left.get('instances') or [])} instances "
                 f"and {len(left.get('actions') or [])} actions applied; removed "
                 f"{len(removed)} leftovers ({', '.join(removed[:6])}{' ...' if len(removed) > 6 else ''}); "
                 "POST /topology/ without a file deploys its model again")
        log.warning("%s", found)
        self.store.annotate("CLEANUP", "Topology", found)
        self.message = found
        self.record.clear()
        return found

    # --- deploy and undeploy ------------------------------------------------------------------

    def deploy(self, text: str | None, files: dict[str, bytes] | None = None) -> Plan:
        """Validate now (errors are 400), then bring the plan up in a thread; returns the plan.

        `files` are the files uploaded with the model (its traces), by the name it gives them.
        The model is parsed and compiled before the lock is taken: a slow or hostile upload
        holds up nobody else's request (status, metrics, an undeploy).
        """
        if text is None:
            text, files = self._model_text, self._model_files
        if text is None:
            raise BadRequest("no model: send the fogified compose file in the form field 'file'")
        model = parse_model_text(text, files=files, distributions=self.distributions.all())
        self._refuse_host_access(model)
        plan = compile_model(model, read_host_facts(self.host_mhz), self.pool)
        with self._lock:
            if self.status in ACTIVE or self.status == "undeploying":
                raise Conflict("The system has a deployed instance.")
            emulation = self._new_backend(plan)
            emulation.check()
            self._model_text, self._model_files = text, dict(files or {})
            self.emulation = emulation
            self.record.start(self.backend_name, self._portable_options(), text, files)
            self.traces = None
            self._set("deploying", "")
            self.flows.reset()
            self.fidelity = FidelityMonitor(self.fidelity.thresholds)
            self.fidelity.seen(self._fired_actions())  # the last deployment's scenarios are not this one's
            self.store.annotate("START", "Topology", None)
            self._worker = threading.Thread(target=self._deploy, args=(self.emulation,), daemon=True,
                                            name="deploy")
            self._worker.start()
            return plan

    def _refuse_host_access(self, model) -> None:
        if self.allow_host_access:
            return
        access = [(field, why) for service in model.services.values() for field, why in service.host_access]
        if access:
            field, why = access[0]
            more = f" (and {len(access) - 1} more: {', '.join(f for f, _ in access[1:4])})" if len(access) > 1 else ""
            raise Forbidden(f"{field}: {why}{more}; this API refuses access to the host unless its operator "
                            "starts it with --allow-host-access")

    def _portable_options(self) -> dict[str, Any]:
        """The backend options a new API needs to find this deployment's remains (no objects, no secrets)."""
        keep = ("run_dir", "manager_url")
        return {k: v for k, v in self.backend_options.items() if k in keep and isinstance(v, str)}

    def _new_backend(self, plan: Plan) -> Backend:
        return self.backend_class(plan, on_state=self._emulation_state, **self.backend_options)

    def _deploy(self, emulation: Backend) -> None:
        started = time.monotonic()
        try:
            emulation.deploy()
        except Exception as error:  # the emulation rolled itself back; report why
            log.error("deploy failed: %s", error)
            with self._lock:
                self._set("error", f"The deployment failed: {error}")
            self.record.clear()
            return
        log.info("deployed %d instances in %.2fs (%s shaping)", len(emulation.plan.instances),
                 time.monotonic() - started, emulation.mechanism)
        traces: list[str] = []
        with self._lock:
            if self.status == "deploying":
                self.traces = TracePlayer(emulation, annotate=self.store.annotate)
                traces = self._start_model_traces(self.traces)  # before "running": a client sees them applied
                self._set("running" if emulation.state == "running" else "degraded", emulation.detail)
        self.record.update(status="running", instances=[i.name for i in emulation.plan.instances])
        for notice in emulation.notices:
            log.warning("%s", notice)
        self.store.annotate("DEPLOY", "Topology", None)
        for name in traces:
            self.store.annotate(ACTIONS["trace"].annotation, name, "Parameters: start (with the deployment)")

    @staticmethod
    def _start_model_traces(traces: TracePlayer) -> list[str]:
        try:
            return [playback.name for playback in traces.start_autostart()]
        except Exception as error:  # the deployment stands; GET /status/ shows each trace's state
            log.error("starting the model's traces failed: %s", error)
            return []

    def undeploy(self, wait: bool = False) -> None:
        """Start the teardown in a thread; with `wait`, return when it (or one under way) has finished."""
        while True:
            with self._lock:
                bring_up = self._worker if self.status == "deploying" else None
            if bring_up is None or not bring_up.is_alive():
                break
            bring_up.join()  # the bring-up holds the emulation's lock; let it finish or fail (not under ours)
        with self._lock:
            if self.status == "idle":
                raise Conflict("The system is available.")
            if self.status != "undeploying":
                emulation = self.emulation
                self._set("undeploying", "")
                self.record.update(status="undeploying")
                self.store.annotate("STOP", "Topology", None)
                self._worker = threading.Thread(target=self._undeploy, args=(emulation,), daemon=True,
                                                name="undeploy")
                self._worker.start()
            worker = self._worker
        if wait and worker is not None:
            worker.join()

    def _undeploy(self, emulation: Backend | None) -> None:
        self.scenarios.cancel()
        if self.traces is not None:
            self.traces.close()
        self.flows.read_once()  # the last period's traffic, before the counters go
        self._end_fidelity()
        try:
            if emulation is not None:
                emulation.teardown()
        except Exception as error:
            log.error("undeploy incomplete: %s", error)
            with self._lock:
                self._set("error", f"The undeployment was incomplete: {error}; run `fogify-net cleanup`")
            return
        with self._lock:
            self.emulation = None
            self.traces = None
            self._set("idle", "")
        self.record.clear()
        self.store.annotate("UNDEPLOY", "Topology", None)

    def close(self) -> None:
        """Take down whatever runs, and return only when it is gone (the API is shutting down).

        An undeploy already under way (a client's DELETE a moment before the
        signal) is waited for too: returning earlier would end the process with
        the switch ports, rules and helpers half removed.
        """
        if self.status not in ("idle", "error"):
            self.undeploy(wait=True)
        worker = self._worker
        if worker is not None:
            worker.join()
        self.sampler.stop()
        self.flows.stop()
        self.store.close()

    # --- what is deployed -----------------------------------------------------------------------

    def topology(self) -> dict[str, list[str]]:
        """Label -> names of the instances listed by GET /topology/ (see `tasks`)."""
        grouped: dict[str, list[str]] = {}
        for label, entries in self.tasks().items():
            grouped[label] = [instance.name for instance, _ in entries]
        return grouped

    def tasks(self) -> dict[str, list[tuple[InstancePlan, TaskFacts]]]:
        """Fogify's progress: label -> (instance, its container) for every instance that has one.

        While deploying, the count stops one short of the total until shaping
        and names are in place, so a client that waits for the full count
        (Fogify's SDK does) never starts before the network is ready. While
        undeploying it stays above zero until the links, rules and helpers are
        gone too, so a client that waits for zero (Fogify's SDK does) never
        deploys again onto names still taken. Crashed instances are listed as
        failed tasks, as Swarm lists a dead one.
        """
        emulation = self.emulation
        status = self.status
        if emulation is None or status == "idle":
            return {}
        facts = emulation.task_facts()
        instances = [i for i in emulation.plan.instances if i.name in facts]
        if status == "deploying":
            instances = instances[: max(0, len(emulation.plan.instances) - 1)]
        elif status == "undeploying" and not instances and emulation.plan.instances:
            first = emulation.plan.instances[0]
            facts = {first.name: TaskFacts(id="", node_id="", container_id="", pid=0, state="shutdown", created="")}
            instances = [first]
        grouped: dict[str, list[tuple[InstancePlan, TaskFacts]]] = {}
        for instance in sorted(instances, key=lambda i: (i.label, i.slot)):
            grouped.setdefault(instance.label, []).append((instance, facts[instance.name]))
        return grouped

    def report(self) -> dict:
        emulation = self.emulation
        report = {
            "status": self.status,
            "message": self.message,
            "shaping": {"mechanism": emulation.mechanism if emulation else self.capabilities.mechanism(self.shaping)},
            "instances": [],
            "networks": [],
            "switch_links": [],
            "warnings": [],
            "traces": [],
        }
        verdict = self.fidelity.verdict if emulation is not None else Verdict("unknown")
        report["fidelity"] = verdict.state
        report["fidelity_reasons"] = verdict.reasons
        if emulation is None:
            return report
        plan = emulation.plan
        report["shaping"].update(emulation.shaping_report())
        traces = self.traces
        report["traces"] = traces.status() if traces is not None else []
        report["warnings"] = list(plan.model.warnings) + plan.warnings + list(emulation.notices)
        started = set(emulation.started())
        report["networks"] = [
            {"name": n.name, "bridge": n.bridge, "subnet": str(n.subnet),
             "uplink": plan.model.networks[n.name].uplink.describe(),
             "downlink": plan.model.networks[n.name].downlink.describe(),
             "switches": dict(n.switches)}
            for n in plan.networks.values()
        ]
        report["switch_links"] = [
            {"name": link.name, "network": link.network, "from": link.source, "to": link.target,
             "ports": [link.source_port, link.target_port], "up": link.up,
             "forward": link.forward.describe(), "backward": link.backward.describe()}
            for link in plan.switch_links()
        ]
        for instance in plan.instances:
            report["instances"].append({
                "name": instance.name,
                "label": instance.label,
                "service": instance.service.name,
                "node": instance.node.name,
                "state": ("crashed" if instance.name in emulation.crashed
                          else "down" if instance.name in emulation.lost
                          else "up" if instance.name in started else "pending"),
                **({"reason": emulation.lost[instance.name]} if instance.name in emulation.lost else {}),
                "container": instance.container,
                "pid": emulation.instance_pid(instance.name),
                "cpus": round(instance.cpus, 4),
                "memory": instance.memory,
                "fidelity": _mark(verdict, instance.name in verdict.instances),
                "fidelity_reasons": verdict.instances.get(instance.name, []),
                "networks": {
                    i.network: {"ip": None if i.ip is None else str(i.ip), "prefixlen": i.prefixlen,
                                "interface": i.name, "port": i.port, "switch": i.switch, "up": i.up,
                                "uplink": i.uplink.describe(), "downlink": i.downlink.describe(),
                                "fidelity": _mark(verdict, (instance.name, i.network) in verdict.links)}
                    for i in instance.interfaces
                },
                "forwarding": instance.forwarding,
                "routes": [route.describe() for route in instance.routes],
                "ports": [{"host_ip": p.host_ip, "published": p.bound if p.bound is not None else p.spec.published,
                           "target": p.target, "protocol": p.spec.protocol} for p in instance.ports],
            })
        return report

    # --- actions and scenarios ----------------------------------------------------------------

    def act(self, kind: str, params: dict) -> dict:
        """Run one action now; returns what the API answers besides "OK"."""
        emulation = self._running()
        with known_distributions(emulation.plan.distributions):
            request = parse_action(kind, params)
        if isinstance(request, Noop):
            return {}
        outcome = ActionRunner(emulation, self.traces).execute(
            request, lambda: self.emulation is emulation and self.status in ("running", "degraded"))
        self.record.applied(kind, params, [i.name for i in emulation.plan.instances])
        self.store.annotate(outcome.annotation, outcome.instance_name, outcome.params)
        return outcome.result

    def generate_distribution(self, name: str, trace: str) -> DelayDistribution:
        """Make the custom delay distribution `name` from a trace (ping output) and keep it.

        A running deployment can use it in actions at once. One it was deployed
        with cannot be replaced while it runs: its queues and tables hold the old one.
        """
        check_name(name)
        distribution = make_distribution(name, parse_trace(trace))
        with self._lock:
            emulation = self.emulation if self.status in ACTIVE else None
        if emulation is None:
            self.distributions.save(distribution)
        else:  # not under self._lock: a bring-up holds the emulation's lock and reports its state to us
            with emulation.lock:
                if name in emulation.plan.distributions:
                    raise Conflict(f"distribution {name!r} belongs to the running deployment: undeploy first, "
                                   f"or make it under another name")
                self.distributions.save(distribution)
                emulation.plan.distributions[name] = distribution
        log.info("delay distribution %r: %d samples, mean %.3f ms, deviation %.3f ms", name,
                 distribution.samples, distribution.mean_ms, distribution.std_ms)
        return distribution

    def _scenario_action(self, kind: str, params: dict) -> None:
        self.act(kind, params)

    def start_scenario(self, name: str) -> ScenarioRun:
        emulation = self._running()
        scenario = emulation.plan.model.scenarios.get(name)
        if scenario is None:
            known = ", ".join(emulation.plan.model.scenarios) or "none"
            raise NotFound(f"unknown scenario {shown(name)} (in the deployed model: {known})")
        if scenario.error:
            raise BadRequest(scenario.error)
        return self.scenarios.start(scenario)

    def _running(self) -> Backend:
        if self.status not in ("running", "degraded") or self.emulation is None:
            raise Conflict(f"nothing is deployed and running (status: {self.status})")
        return self.emulation

    # --- monitoring -----------------------------------------------------------------------------

    def _counting_backend(self) -> Backend | None:
        """The deployment whose flows are counted now, if any (packet-level monitoring)."""
        emulation = self.emulation
        if emulation is None or not emulation.counts_flows:
            return None
        return emulation if self.status in ("running", "degraded", "undeploying") else None

    def _samples(self) -> Samples:
        emulation = self.emulation
        if emulation is None or self.status not in ("running", "degraded"):
            return {}
        samples = emulation.samples()
        self._judge(emulation, samples)
        return samples

    # --- fidelity -------------------------------------------------------------------------------

    def _judge(self, emulation: Backend, samples: Samples) -> None:
        """One round of the fidelity monitor, in the sampler's round: its verdict marks this round's
        samples (`fidelity` 1 or 0), and episodes that start or end are stored and annotated."""
        began = time.thread_time()
        try:
            readings = emulation.fidelity_readings()
        except Exception:  # a reader's failure must not cost the metrics
            log.exception("reading the fidelity counters failed; judging without them")
            readings = None
        schedule = self.sampler.schedule
        before = self.fidelity.state
        verdict = self.fidelity.observe(time.time(), readings,
                                        SamplerHealth(schedule.interval, schedule.skipped, schedule.late),
                                        self._fired_actions())
        for name, metrics in samples.items():
            value = fidelity_value(verdict, name)
            if value is not None:
                metrics["fidelity"] = value
        self._record_fidelity(verdict, before)
        self.fidelity_cpu += time.thread_time() - began
        self.fidelity_rounds += 1

    def _fired_actions(self) -> list[FiredAction]:
        return [FiredAction(run.name, a.position, a.type, a.instance_type, a.planned, a.lateness_ms)
                for run in self.scenarios.runs() for a in run.actions
                if a.fired is not None and a.lateness_ms is not None]

    def _record_fidelity(self, verdict: Verdict, before: str) -> None:
        for episode in verdict.started:
            episode.id = self.store.add_episode(episode.as_dict())
            self.store.mark_degraded(episode.instances, episode.start)
            log.warning("fidelity: %s", episode.reason)
        for episode in verdict.worse + verdict.ended:
            if episode.id is not None:
                self.store.update_episode(episode.id, episode.as_dict())
        for episode in verdict.ended:
            log.info("fidelity: ended after %.0f s: %s", (episode.end or 0) - episode.start, episode.reason)
        if verdict.state == "degraded" and before != "degraded":
            start = min(e.start for e in verdict.started) if verdict.started else time.time()
            self.store.annotate("FIDELITY_START", "Topology", "; ".join(verdict.reasons), ts=start)
        elif before == "degraded" and verdict.state != "degraded":
            self.store.annotate("FIDELITY_END", "Topology", _ended(verdict.ended))

    def _end_fidelity(self) -> None:
        """The deployment goes: its open episodes end now."""
        was = self.fidelity.state
        ended = self.fidelity.close_all(time.time())
        for episode in ended:
            if episode.id is not None:
                self.store.update_episode(episode.id, episode.as_dict())
        if was == "degraded":
            self.store.annotate("FIDELITY_END", "Topology", _ended(ended))

    def fidelity_report(self, from_ts: float | None = None, to_ts: float | None = None,
                        instance: str | None = None) -> dict:
        """GET /fidelity/: the state now, its reasons, the thresholds, and the stored episodes."""
        verdict = self.fidelity.verdict if self.emulation is not None else Verdict("unknown")
        return {"fidelity": verdict.state, "reasons": verdict.reasons,
                "thresholds": self.fidelity.thresholds.as_dict(),
                "episodes": self.store.episodes(from_ts, to_ts, instance)}

    # --- state ----------------------------------------------------------------------------------

    def _set(self, status: str, message: str) -> None:
        if status != self.status:
            log.info("status: %s%s", status, f" ({message})" if message else "")
        self.status, self.message = status, message

    def _emulation_state(self, state: str, detail: str) -> None:
        """The emulation reports a degraded delay line (or its recovery) while running.

        Both are annotated too, so a plot of the experiment shows when shaping was not as declared.
        """
        with self._lock:
            if self.status in ("running", "degraded") and state in ("running", "degraded") and (
                    state != self.status or detail != self.message):
                self._set(state, detail)
                self.store.annotate("DEGRADED" if state == "degraded" else "RECOVERED", "Topology", detail or None)


def _mark(verdict: Verdict, degraded: bool) -> str:
    return "unknown" if verdict.state == "unknown" else "degraded" if degraded else "ok"


def _ended(episodes: list[Episode]) -> str:
    return "; ".join(episode.reason for episode in episodes) or "every check holds again"


__all__ = ["Controller", "ModelError"]
