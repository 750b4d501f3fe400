"""Desired versus observed state, as a pure function.

``plan`` reads a Topology and an Observed snapshot and returns the driver
calls that close the gap, plus what each port's status will be once they
succeed. It touches nothing, so every rule here is unit-tested without a
kernel or a switch.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Container, Iterable, Mapping
from typing import ClassVar

from ovsbr.drivers.base import Device, NotReady, Observed
from ovsbr.model import Network, Port, Topology


class PortState(str, enum.Enum):
    """What ``ovsbr status`` says of a port (the strings are the API)."""

    BOUND = "bound"  # wired, and the datapath forwards for it
    WAITING = "waiting"  # for its device, or for the datapath to take it
    ERROR = "error"  # and the reason says why


BOUND, WAITING, ERROR = PortState.BOUND, PortState.WAITING, PortState.ERROR


class Mode(enum.Enum):
    """How far the plan may go in removing what the datapath holds."""

    NORMAL = "normal"  # make the datapath equal the desired state
    KEEP = "keep"  # the store was never written: remove nothing found
    CLEANUP = "cleanup"  # remove everything ovsbr made (desired is empty)


# -- actions: one type per kind, each with exactly the fields it needs ---------
@dataclasses.dataclass(frozen=True)
class EnsureNetwork:
    kind: ClassVar[str] = "ensure_network"
    network: str


@dataclasses.dataclass(frozen=True)
class DeleteNetwork:
    kind: ClassVar[str] = "delete_network"
    network: str


@dataclasses.dataclass(frozen=True)
class Unplug:
    kind: ClassVar[str] = "unplug"
    network: str
    device: str


@dataclasses.dataclass(frozen=True)
class Plug:
    kind: ClassVar[str] = "plug"
    network: str
    port: str
    device: str


@dataclasses.dataclass(frozen=True)
class Prepare:
    """Hold ``port``'s place for its device before it appears (Driver.prepare)."""

    kind: ClassVar[str] = "prepare"
    network: str
    port: str
    device: str


Action = EnsureNetwork | DeleteNetwork | Unplug | Plug | Prepare
# Applied first, one by one, then the plan is made again from a fresh look.
NETWORK_ACTIONS = (Unplug, DeleteNetwork, EnsureNetwork)
# Applied together in one driver batch.
PORT_ACTIONS = (Plug, Prepare)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What applying one action did: ``error`` is None when it succeeded."""

    action: Action
    error: str | None = None


@dataclasses.dataclass(slots=True)
class PortStatus:
    status: PortState
    device: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        # Built by hand: dataclasses.asdict deep-copies, and this runs for
        # every port on every status publish. The member itself, not .value
        # (a Python-level descriptor, 0.2 ms per reconcile at 1,000 ports):
        # a str enum is the string to json and to ==.
        d = {"status": self.status}
        if self.device is not None:
            d["device"] = self.device
        if self.reason is not None:
            d["reason"] = self.reason
        return d


@dataclasses.dataclass
class Plan:
    actions: list[Action] = dataclasses.field(default_factory=list)
    ports: dict[str, PortStatus] = dataclasses.field(default_factory=dict)
    devices: dict[str, Device] = dataclasses.field(default_factory=dict)
    # Device name -> the port holding it (``devices`` reversed), when the
    # planner kept it: the incremental planner carries it from plan to plan.
    owners: dict[str, str] | None = None
    # The ports a plan for a change re-planned (every other port is as in the
    # plan before); None: a full plan, every port was planned.
    reached: frozenset[str] | None = None


def carrier(a: Device | None, b: Device) -> Device:
    """Of two devices with one iface-id, the one its port gets: the greater
    name, whatever order a driver lists its devices in (a full look and a
    look moved on by changes list them differently, and must agree)."""
    return b if a is None or b.name > a.name else a


def match_devices(desired: Topology, devices: Mapping[str, Device],
                  names: Iterable[str] | None = None,
                  by_iface: Mapping[str, Device] | None = None,
                  carried: Container[str] | None = None) -> dict[str, Device]:
    """Port name -> its device: by iface-id first (Nova/os-vif), then by name.

    ``names``: only those ports (a set closed under device competition, see
    agent.incremental); ``by_iface`` (iface-id -> the device that carries it
    for ports: :func:`carrier`) and ``carried`` (the iface-ids declared
    ports carry) when the caller has them; built from ``devices`` and
    ``desired`` otherwise.
    """
    if by_iface is None:
        by_iface = {}
        for d in devices.values():
            if d.iface_id and carrier(by_iface.get(d.iface_id), d) is d:
                by_iface[d.iface_id] = d
    if carried is None:
        carried = {p.iface_id for p in desired.ports.values() if p.iface_id}
    claimed: set[str] = set()
    result: dict[str, Device] = {}
    for name in sorted(desired.ports if names is None else names):
        port = desired.ports[name]
        dev = by_iface.get(port.iface_id) if port.iface_id else None
        if dev is None and port.device:
            dev = devices.get(port.device)
            # A device carrying another port's iface-id belongs to that port.
            if dev is not None and dev.iface_id and dev.iface_id != port.iface_id \
                    and dev.iface_id in carried:
                dev = None
        if dev is not None and dev.name not in claimed:
            claimed.add(dev.name)
            result[name] = dev
    return result


def mode_for(desired: Topology, observed: Observed, cleanup: bool = False) -> Mode:
    """CLEANUP when asked; KEEP for a never-written store facing ovsbr networks.

    A store never written (revision 0) next to ovsbr networks on the
    datapath is far more likely a wrong state_path than an order to tear
    the host down.
    """
    if cleanup:
        return Mode.CLEANUP
    if desired.revision == 0 and observed.networks:
        return Mode.KEEP
    return Mode.NORMAL


def plan(
    desired: Topology,
    observed: Observed,
    fingerprint: Callable[[Network], str],
    network_errors: Mapping[str, str] | None = None,
    mode: Mode = Mode.NORMAL,
    prepare: bool = False,
) -> Plan:
    """The actions that make ``observed`` match ``desired``.

    ``network_errors`` maps a network to the reason its last build failed;
    its ports report that reason and are not plugged, and the network is not
    retried (the agent clears the entry at full resync or on change).

    ``Mode.KEEP`` plans no unplug and no delete: for a store that was
    never written, where "nothing declared" more likely means a wrong
    state_path than "tear the host's networks down".

    ``prepare`` (the driver can hold a port for a device not there yet):
    a declared port whose device name is absent is prepared, and a prepared
    name no declared port waits for any more is unplugged.
    """
    network_errors = network_errors or {}
    result = Plan()
    matched = match_devices(desired, observed.devices)
    result.devices = matched
    wanted_devices = {d.name for d in matched.values()}
    awaited = {} if not prepare else {
        port.device: port for name, port in desired.ports.items()
        if name not in matched and port.device and port.device not in observed.devices
        and port.network not in network_errors}

    if mode is not Mode.KEEP:
        # 1. Devices wired by ovsbr that no port claims any more.
        for dev in sorted(observed.devices.values(), key=lambda d: d.name):
            if dev.network is not None and dev.name not in wanted_devices:
                result.actions.append(Unplug(dev.network, dev.name))
        for name, net in sorted(observed.prepared.items()):
            if net is not None and name not in awaited:
                result.actions.append(Unplug(net, name))
    result.actions += network_actions(desired, observed, fingerprint, network_errors, mode)

    plan_ports(sorted(desired.ports), desired, observed, matched, network_errors, awaited,
               result)
    return result


def plan_ports(names: list[str], desired: Topology, observed: Observed,
               matched: Mapping[str, Device], network_errors: Mapping[str, str],
               awaited: Mapping[str, Port], result: Plan) -> None:
    """4. Each named port's status, and its plug or prepare, into ``result``."""
    for pname in names:
        port = desired.ports[pname]
        dev = matched.get(pname)
        if port.network in network_errors:
            result.ports[pname] = PortStatus(
                ERROR, dev.name if dev else None,
                f"network {port.network}: {network_errors[port.network]}")
            continue
        if dev is None:
            result.ports[pname] = PortStatus(
                WAITING, None, f"no device {identity(port)} on this host yet")
            if awaited.get(port.device) is port and \
                    observed.prepared.get(port.device) != port.network:
                result.actions.append(Prepare(port.network, pname, port.device))
            continue
        result.ports[pname] = PortStatus(BOUND, dev.name)
        if dev.network != port.network:
            result.actions.append(Plug(port.network, pname, dev.name))


def network_actions(desired: Topology, observed: Observed,
                    fingerprint: Callable[[Network], str], network_errors: Mapping[str, str],
                    mode: Mode) -> list[Action]:
    """Networks to delete (2), then to build or rebuild (3), by name."""
    actions: list[Action] = []
    if mode is not Mode.KEEP:
        actions += [DeleteNetwork(name)
                    for name in sorted(set(observed.networks) - set(desired.networks))]
    for name, net in sorted(desired.networks.items()):
        if name in network_errors:
            continue
        state = observed.networks.get(name)
        if state is None or state.fingerprint != fingerprint(net):
            actions.append(EnsureNetwork(name))
    return actions


def port_statuses(plan: Plan, failed: Mapping[str, str],
                  not_ready: Mapping[str, NotReady],
                  last: Mapping[str, PortStatus] | None = None) -> dict[str, PortStatus]:
    """Each port's status once the plan was applied.

    ``failed``: ports whose plug or prepare failed, and why. ``not_ready``:
    bound ports the datapath cannot forward for yet (``failed`` in it means
    waiting will not help). Anything else keeps the plan's status. A
    not-ready port still waiting for the same reason as in ``last`` keeps
    that status object, so the publisher sees it unchanged by identity.
    """
    # Only the ports named in failed or not_ready change: O(those), not O(ports).
    result = dict(plan.ports)
    last = last or {}
    for name, nr in not_ready.items():
        st = result.get(name)
        if st is not None and st.status is BOUND and name not in failed:
            now = PortStatus(ERROR if nr.failed else WAITING, st.device, nr.reason)
            result[name] = now if last.get(name) != now else last[name]
    for name, reason in failed.items():
        st = result.get(name)
        if st is not None:
            result[name] = PortStatus(ERROR, st.device, reason)
    return result


def status_moved(before: Mapping[str, PortStatus], after: Mapping[str, PortStatus],
                 names: Iterable[str]) -> set[str]:
    """Of ``names``, the ports whose status differs between the two maps
    (gone from one counts): what a publish must rewrite, O(names)."""
    return {n for n in names if before.get(n) != after.get(n)}


def identity(port) -> str:
    parts = []
    if port.device:
        parts.append(f"named {port.device}")
    if port.iface_id:
        parts.append(f"with iface-id {port.iface_id}")
    return " or ".join(parts)
