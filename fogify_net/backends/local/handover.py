"""Handover on the local backend: an instance leaves one network's bridge and joins another's.

The container keeps running (same namespace, same processes); only its cable
changes. The new attachment is a fresh veth pair on the target bridge with the
target network's address, MAC (made from the address, so peers' neighbour
caches stay right), shaping and names; the old pair is deleted, which removes
its address, routes and shaping with it. Break-before-make deletes first;
make-before-break creates first and deletes after the overlap, without holding
the deployment's lock meanwhile (traces and other actions go on). A move that
fails leaves its instances where they were (the runner moves back the groups
it had moved already).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ...compile.links import container_commands, switch_bridges
from ...compile.plan import InstancePlan, InterfacePlan, attach, detach
from ...host.kernel import ip_batch

log = logging.getLogger(__name__)

CARRIER_TIMEOUT = 2.0
BRIDGE_FORWARDING = "3"  # /sys/class/net/<port>/brport/state


def wait_for_carrier(pid: int, interface: InterfacePlan, timeout: float = CARRIER_TIMEOUT) -> None:
    """Until both ends of a new veth pair are operationally up and its bridge port forwards."""
    checks = [(Path(f"/sys/class/net/{interface.port}/operstate"), "up"),
              (Path(f"/sys/class/net/{interface.port}/brport/state"), BRIDGE_FORWARDING),
              (Path(f"/proc/{pid}/root/sys/class/net/{interface.name}/operstate"), "up")]
    deadline = time.monotonic() + timeout
    while True:
        waiting = [path for path, wanted in checks if _read(path) not in (wanted, None)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            log.warning("%s: no carrier after %.1f s (%s); addressing it anyway", interface.port, timeout,
                        ", ".join(str(path) for path in waiting))
            return
        time.sleep(0.001)


def _read(path: Path) -> str | None:
    """A sysfs value, or None where it cannot be read (a container without /sys: that check is skipped)."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


class HandoverMixin:
    """LocalBackend.move and its two halves; it uses the backend's plan, lock, hosts, switches, Mininet
    network, shaper, reshape and write_hosts."""

    def move(self, instances: list[InstancePlan], source: str, target: str, overlap: float) -> None:
        if overlap > 0:
            with self.lock:
                self._join(instances, source, target)
                old = {instance.name: instance.interface(source) for instance in instances}
                self._overlap(overlap)
                self._leave_after_overlap(instances, source, old)
            return
        with self.lock:
            positions = {i.name: i.interfaces.index(i.interface(source)) for i in instances}
            old = self._leave(instances, source)
            try:
                self._join(instances, source, target, positions)
            except BaseException:
                log.error("moving %s to %s failed; back on %s", ", ".join(i.name for i in instances), target, source)
                for instance in instances:  # the same address, free since we released it under the lock
                    if instance.interface(source) is None:
                        self._plug(instance, attach(self.plan, instance, source, positions[instance.name],
                                                    ip=old[instance.name].ip))
                self.reshape()
                self.write_hosts()
                raise

    def _overlap(self, seconds: float) -> None:
        """Wait with both attachments up, the deployment's lock let go (at every depth: the action
        runner holds it too), so traces step and other actions run meanwhile."""
        wait = threading.Condition(self.lock)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            wait.wait(left)  # nobody notifies: this only lets the lock go until the deadline

    def _leave_after_overlap(self, instances: list[InstancePlan], source: str,
                             old: dict[str, InterfacePlan]) -> None:
        """Drop the old attachments, of those instances that still have them after the overlap
        (meanwhile the deployment may have gone, an instance been scaled in or moved on)."""
        if self.state not in ("running", "degraded"):
            log.info("the deployment went during a move's overlap; nothing left to detach")
            return
        staying = [i for i in instances if any(p is i for p in self.plan.instances) and old[i.name] is not None
                   and any(interface is old[i.name] for interface in i.interfaces)]
        if not staying:
            return
        self._leave(staying, source, force=True)  # a container crashed meanwhile took its veth pair along
        self.reshape()
        self.write_hosts()

    def _join(self, instances: list[InstancePlan], source: str, target: str,
              positions: dict[str, int] | None = None) -> None:
        """Attach each instance to `target`, where its `source` interface is (or was) in its list; the
        interface still on `source`, if any, goes last, so names resolve to the new address."""
        added: list[tuple[InstancePlan, InterfacePlan]] = []
        position_of = {i.name: i.interfaces.index(i.interface(source)) for i in instances
                       if i.interface(source) is not None}
        try:
            for instance in instances:
                old = instance.interface(source)
                position = positions[instance.name] if positions else position_of[instance.name]
                interface = attach(self.plan, instance, target, position)
                added.append((instance, interface))
                if old is not None:
                    instance.interfaces.remove(old)
                    instance.interfaces.append(old)
            bridges = switch_bridges(self.plan)
            ip_batch([line for instance, interface in added
                      for line in self._veths(instance, self.hosts[instance.name].cpid, bridges, [interface])])
            self._attach_ports([interface for _, interface in added])
            for instance, interface in added:
                self._plug(instance, interface, created=True)
            self.reshape()
            self.write_hosts()
        except BaseException:
            ip_batch([f"link del {interface.port}" for _, interface in added], force=True)
            self.shaper.forget([interface.port for _, interface in added])
            for instance, interface in added:
                self._unregister(instance, interface)
                if instance.interface(target) is interface:
                    detach(self.plan, instance, target)
                old = instance.interface(source)
                if old is not None and positions is None:  # back where it was in the list
                    instance.interfaces.remove(old)
                    instance.interfaces.insert(min(position_of[instance.name], len(instance.interfaces)), old)
            if positions is None:  # make-before-break: the old attachment stays; its shaping and names again
                self._best_effort_restore()
            raise

    def _best_effort_restore(self) -> None:
        try:
            self.reshape()
            self.write_hosts()
        except Exception as error:  # the original error is the one to report
            log.error("re-applying shaping and names after a failed move failed too: %s", error)

    def _plug(self, instance: InstancePlan, interface: InterfacePlan, created: bool = False) -> None:
        """Configure a new interface in the container and tell Mininet; `created`: its veth pair exists.

        The address (and with it the route) comes only once the link carries
        frames: until the kernel has processed the carrier (both ends up, the
        bridge port forwarding), the first packets, an ARP request among them,
        are dropped, and the instance waits a second for ARP to try again
        (measured: 0.5-1.6 s in about one move of ten).
        """
        host = self.hosts[instance.name]
        if not created:
            bridges = switch_bridges(self.plan)
            ip_batch(self._veths(instance, host.cpid, bridges, [interface]))
            self._attach_ports([interface])
        lines = container_commands(instance, [interface])
        address = [line for line in lines if line.startswith("addr add")]
        ip_batch([line for line in lines if line not in address], host.cpid)
        wait_for_carrier(host.cpid, interface)
        ip_batch(address, host.cpid)
        self.shaper.forget([interface.port])  # a new device: nothing of its shaping is installed
        self.net.addLink(host, self.switches[interface.switch], intfName1=interface.name,
                         intfName2=interface.port, params1={"ip": interface.cidr}, addr1=None, addr2=None)

    def _leave(self, instances: list[InstancePlan], network: str, force: bool = False) -> dict[str, InterfacePlan]:
        """Take the instances off `network`: out of the plan, their veth pairs deleted."""
        gone = {instance.name: detach(self.plan, instance, network) for instance in instances}
        ip_batch([f"link del {interface.port}" for interface in gone.values()], force=force)
        self.shaper.forget([interface.port for interface in gone.values()])
        for instance in instances:
            self._unregister(instance, gone[instance.name])
        return gone

    def _unregister(self, instance: InstancePlan, interface: InterfacePlan) -> None:
        """Forget the Mininet link of an interface that is gone."""
        host = self.hosts.get(instance.name)
        for link in [link for link in self.net.links if link.intf1.node is host and link.intf1.name == interface.name]:
            link.intf1.node.delIntf(link.intf1)
            link.intf2.node.delIntf(link.intf2)
            self.net.links.remove(link)
