"""Runtime actions: the one table of action types, and the calls that post them.

:class:`Action_type` is the only list of actions in the SDK: each member names
its route, every action method posts through it, and scenarios resolve their
``type`` strings against it. Adding an action (``move``, ``trace``, ...) is one
line in that table plus one method in :class:`ActionsMixin`.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING, Any

from ._errors import ExceptionFogifySDK
from ._http import HttpMixin, is_ok

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11; only read by type checkers

logger = logging.getLogger("FogifySDK")

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class Action_type(Enum):  # Fogify's public name, kept for compatibility
    """The actions ``POST /actions/<route>/`` accepts.

    A member's value is its name, as in Fogify; ``route`` is its path segment.
    The first six are Fogify's; the rest are what fogify-net adds.
    """

    route: str  # the path segment after /actions/, set by __new__

    #                    value (Fogify's)       route
    HORIZONTAL_SCALING = "HORIZONTAL_SCALING", "horizontal_scaling"
    VERTICAL_SCALING = "VERTICAL_SCALING", "vertical_scaling"
    NETWORK = "NETWORK", "network"
    STRESS = "STRESS", "stress"
    COMMAND = "COMMAND", "command"
    UPDATE_LINKS = "UPDATE_LINKS", "links"
    LINK_DOWN = "LINK_DOWN", "link_down"
    LINK_UP = "LINK_UP", "link_up"
    PARTITION = "PARTITION", "partition"
    HEAL = "HEAL", "heal"
    CRASH = "CRASH", "crash"
    RESTART = "RESTART", "restart"
    MOVE = "MOVE", "move"
    TRACE = "TRACE", "trace"
    SWITCH_LINK = "SWITCH_LINK", "switch_link"

    def __new__(cls, value: str, route: str) -> Self:
        member = object.__new__(cls)
        member._value_ = value
        member.route = route
        return member

    @property
    def path(self) -> str:
        """The action's route on the API, e.g. ``/actions/links/``."""
        return f"/actions/{self.route}/"


def parse_action_type(value: Action_type | str) -> Action_type:
    """The action type named by ``value``.

    Case and ``-``/``_`` do not matter (``"network"``, ``"link-down"``), and
    a route's own name means its type (``links`` is UPDATE_LINKS).
    """
    if isinstance(value, Action_type):
        return value
    key = str(value).strip().upper().replace("-", "_")
    for kind in Action_type:
        if key in (kind.value, kind.route.upper()):
            return kind
    known = ", ".join(kind.value for kind in Action_type)
    raise ExceptionFogifySDK(f"The action type {value} is not defined (known: {known}).")


class ActionsMixin(HttpMixin):
    """One method per action type; each builds the action's ``params`` and posts them."""

    def action(self, action_type: Action_type | str, **kwargs: Any) -> dict:
        """Post an action: ``POST /actions/<type>/`` with ``{"params": kwargs}``; returns the answer."""
        return self._post_action(parse_action_type(action_type), kwargs)

    def _post_action(self, kind: Action_type, params: dict, timeout: float | None = -1.0) -> dict:
        answer = self._call("POST", kind.path, json={"params": params},
                            headers=_JSON_HEADERS, timeout=timeout)
        if not is_ok(answer):
            raise ExceptionFogifySDK(f"The API did not return proper response for that action ({answer})",
                                     payload=answer)
        return answer

    def horizontal_scaling_up(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Add ``num_of_instances`` replicas to a label."""
        return self._post_action(Action_type.HORIZONTAL_SCALING,
                                 {"instance_type": instance_type, "instances": num_of_instances, "type": "up"})

    def horizontal_scaling_down(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Remove ``num_of_instances`` replicas from a label."""
        return self._post_action(Action_type.HORIZONTAL_SCALING,
                                 {"instance_type": instance_type, "instances": num_of_instances, "type": "down"})

    def vertical_scaling(self, instance_type: str, num_of_instances: int = 1, cpu: str | None = None,
                         memory: str | None = None) -> dict:
        """Change CPU (``"+20"``/``"-20"``: percent of the current limit) or memory (``"3G"``)."""
        if cpu and memory:
            raise ExceptionFogifySDK("You can not scale-up both cpu and memory at once.")
        if cpu is None and memory is None:
            raise ExceptionFogifySDK("You did not select neither cpu nor memory for vertical scaling.")
        if cpu is not None:
            _check_cpu_change(cpu)
            change = {"action": "cpu", "value": cpu}
        else:
            change = {"action": "memory", "value": memory}
        return self._post_action(Action_type.VERTICAL_SCALING,
                                 {"instance_type": instance_type, "instances": num_of_instances, **change})

    def stress(self, instance_type: str, duration: int | str = 60, num_of_instances: int = 1,
               cpu: float | None = None, io: float | None = None, vm: float | None = None,
               vm_bytes: str | None = None) -> dict:
        """Load an instance for ``duration`` seconds; cpu/io/vm are percent of its CPU allocation."""
        load = {key: value for key, value in (("cpu", cpu), ("io", io), ("vm", vm), ("vm_bytes", vm_bytes))
                if value}
        if not load:
            raise ExceptionFogifySDK("You can not set all stress parameters as None")
        return self._post_action(Action_type.STRESS, {"instance_type": instance_type, "instances": num_of_instances,
                                                      "action": {"duration": duration, **load}})

    def command(self, instance_type: str, command: str, num_of_instances: int = 1, wait: bool = False,
                timeout: float | None = None) -> Any:
        """Run ``command`` in the instances.

        Without ``wait`` it starts in the background and the API's answer is
        returned (Fogify's behaviour). With ``wait=True`` the call returns the
        results ``{instance: {"exit_code", "output"}}`` once every command ended,
        or the API's ``timeout`` (seconds) expired.
        """
        params: dict = {"instance_type": instance_type, "instances": num_of_instances,
                        "action": {"command": command}}
        http_timeout: float | None = -1.0
        if wait:
            params["wait"] = True
            http_timeout = None
            if timeout is not None:
                params["timeout"] = timeout
                http_timeout = max(self.http_timeout, float(timeout) + 30.0)
        answer = self._post_action(Action_type.COMMAND, params, timeout=http_timeout)
        return answer.get("results", {}) if wait else answer

    def update_network(self, instance_type: str, network: str, network_characteristics: dict | None = None,
                       num_of_instances: int = 1) -> dict:
        """Change a network's shaping for the instances (``uplink``/``downlink``/``bidirectional``).

        Giving only ``uplink`` or only ``downlink`` keeps the other direction.
        """
        characteristics = dict(network_characteristics or {})
        characteristics["network"] = network
        return self._post_action(Action_type.NETWORK, {"instance_type": instance_type,
                                                       "instances": num_of_instances, "network": characteristics})

    def update_link(self, network_name: str, from_node: str, to_node: str, parameters: dict,
                    bidirectional: bool = True) -> dict:
        """Change one per-peer link; see :meth:`update_links`."""
        return self.update_links(network_name, [{"from_node": from_node, "to_node": to_node,
                                                 "bidirectional": bidirectional, "parameters": parameters}])

    def update_links(self, network_name: str, links: list) -> dict:
        """Change per-peer links, one request per source label.

        Returns ``{label: answer}``; a label whose request failed maps to its
        ExceptionFogifySDK (Fogify's shape), which is also logged.
        """
        responses: dict = {}
        for label, label_links in _links_by_label(links).items():
            try:
                responses[label] = self._post_action(Action_type.UPDATE_LINKS, {
                    "network": network_name, "links": label_links, "instance_type": label, "instances": 1000})
            except ExceptionFogifySDK as error:
                logger.error("Updating the links of %s failed: %s", label, error)
                responses[label] = error
        return responses

    def link_down(self, instance_type: str, network: str, num_of_instances: int = 1) -> dict:
        """Cut the instances off ``network`` (the interface stays, nothing passes)."""
        return self._post_action(Action_type.LINK_DOWN, {"instance_type": instance_type,
                                                         "instances": num_of_instances, "network": network})

    def link_up(self, instance_type: str, network: str, num_of_instances: int = 1) -> dict:
        """Undo :meth:`link_down`."""
        return self._post_action(Action_type.LINK_UP, {"instance_type": instance_type,
                                                       "instances": num_of_instances, "network": network})

    def switch_link(self, switch_a: str, switch_b: str, up: bool | None = None, symmetric: dict | None = None,
                    forward: dict | None = None, backward: dict | None = None) -> dict:
        """Plug the cable between two switches out (``up=False``) or in, and/or change its shaping.

        ``forward`` (from ``switch_a`` to ``switch_b``), ``backward`` and ``symmetric`` (each
        direction) take ``{"bandwidth", "latency": {"delay", ...}, "drop"}``; changes persist.
        """
        params: dict = {"switches": [switch_a, switch_b]}
        for key, value in (("up", up), ("symmetric", symmetric), ("forward", forward), ("backward", backward)):
            if value is not None:
                params[key] = value
        return self._post_action(Action_type.SWITCH_LINK, params)

    def partition(self, from_label: str, to_label: str, network: str | None = None) -> dict:
        """Drop all traffic between two labels (on one network, or on all they share)."""
        return self._post_action(Action_type.PARTITION, _pair(from_label, to_label, network))

    def heal(self, from_label: str, to_label: str, network: str | None = None) -> dict:
        """Undo :meth:`partition`."""
        return self._post_action(Action_type.HEAL, _pair(from_label, to_label, network))

    def crash(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Stop instances abruptly, as a failing node would."""
        return self._post_action(Action_type.CRASH, {"instance_type": instance_type,
                                                     "instances": num_of_instances})

    def restart(self, instance_type: str, num_of_instances: int = 1) -> dict:
        """Start crashed instances again (with their shaping, names and monitoring)."""
        return self._post_action(Action_type.RESTART, {"instance_type": instance_type,
                                                       "instances": num_of_instances})

    def move(self, instance_type: str, to: str, from_network: str | None = None,
             overlap: float | str | None = None, num_of_instances: int | None = 1) -> dict:
        """Hand instances over from one network to another (a car driving into the next region).

        They keep running; they get an address, the shaping and the names of
        ``to``. ``from_network`` is the network they leave (needed when they are
        on more than one). ``overlap`` (seconds, or ``"500ms"``) keeps the old
        attachment that long after the new one works (make-before-break);
        without it the old one goes first. ``num_of_instances=None`` moves every
        replica of a label. The answer's ``instances`` maps each moved instance
        to ``{from, to, ip}``.
        """
        params: dict = {"instance_type": instance_type, "to": to}
        if num_of_instances is not None:
            params["instances"] = num_of_instances
        if from_network is not None:
            params["from"] = from_network
        if overlap is not None:
            params["overlap"] = overlap
        return self._post_action(Action_type.MOVE, params)

    def trace(self, command: str = "start", name: str | None = None, network: str | None = None,
              points: list | None = None, **options: Any) -> dict:
        """Start, stop, pause or resume a trace of the model by name (all of them without a name), or
        start one given here: ``network`` (with ``instance_type`` for one label's instances,
        ``from_node``/``to_node`` for a links rule, or ``switches=[s1, s2]`` for a switch link) and
        ``points``, a list of
        ``{time_s, bandwidth, delay, jitter, loss}``; options ``direction``, ``mode``, ``resolution``,
        ``loop``, ``duration``, ``name``. Returns the API's answer; ``traces`` holds each trace's state.
        """
        params: dict = {"command": command, **options}
        if name is not None:
            params["name"] = name
        if network is not None:
            params["network"] = network
        if points is not None:
            params["points"] = points
        return self._post_action(Action_type.TRACE, params)


def _check_cpu_change(cpu: Any) -> None:
    if not isinstance(cpu, str):
        raise ExceptionFogifySDK("cpu parameter should be string")
    if not cpu or cpu[0] not in "+-":
        raise ExceptionFogifySDK("Select +/- to increase or decrease the cpu processing power")
    try:
        int(cpu[1:])
    except ValueError:
        raise ExceptionFogifySDK("The percent should be numeric") from None


def _pair(from_label: str, to_label: str, network: str | None) -> dict:
    params = {"from": from_label, "to": to_label}
    if network is not None:
        params["network"] = network
    return params


def _links_by_label(links: list) -> dict:
    """Group links by the label whose rules change: the source, and the target too when bidirectional."""
    groups: dict = {}
    for link in links:
        for key in ("from_node", "to_node"):
            if key not in link:
                raise ExceptionFogifySDK(f"A link should have the '{key}' parameter")
        groups.setdefault(link["from_node"], []).append(dict(link))
        if link.get("bidirectional"):
            groups.setdefault(link["to_node"], []).append(dict(link))
    return groups
