"""The plan for a change, made from the ports it concerns alone (pure).

:func:`ovsbr.agent.reconciler.plan` reads every port and every device: at
5,000 ports that is milliseconds per event, for one tap that appeared or one
port the store changed. :func:`plan_change` answers the same question for a
:class:`Change` (the ports the store changed, the devices the datapath
reported) from the previous plan: it re-plans the ports the change can reach
and keeps every other port's status and device as they were. Networks are
few and always planned whole.

Which ports a change can reach: a port competes for a device when it names
it or carries its iface-id (``match_devices``), so the affected set is closed
over "competes for a device that an affected port wants, wanted or held".
Every port outside it sees the same inputs as before, so its plan is the
same. Where that reasoning does not hold (another mode, networks changed,
an unknown change) the agent makes the full plan, which also stays the first
reconcile and the periodic resync and repairs whatever drifted. The property
test (tests/unit/test_incremental.py) checks, over random sequences of store
and device changes, that this plan equals the full one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from ovsbr.agent import reconciler
from ovsbr.agent.reconciler import Mode, Plan, Unplug
from ovsbr.drivers.base import Device, Observed
from ovsbr.model import Network, Port, Topology


@dataclasses.dataclass(frozen=True)
class Change:
    """What moved since the last reconcile: ports by name (declared, changed
    or removed in the store), devices by name (appeared, changed or gone on
    the datapath)."""

    ports: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()


def changed_ports(before: Topology, after: Topology) -> frozenset[str] | None:
    """The ports that differ between two local views; None when more than
    ports changed (networks, groups, members: only the full plan tells)."""
    if not _same(before.networks, after.networks) \
            or not _same(before.security_groups, after.security_groups) \
            or not _same(before.members, after.members):
        return None
    old, new = before.ports, after.ports
    names = [n for n, p in new.items() if (o := old.get(n)) is not p and o != p]
    names += [n for n in old if n not in new]
    return frozenset(names)


def _same(a: object, b: object) -> bool:
    return a is b or a == b


@dataclasses.dataclass(frozen=True)
class PortRefs:
    """Which declared ports name each device and carry each iface-id, in
    declaration order (built once per desired state)."""

    by_device: Mapping[str, tuple[str, ...]]
    by_iface: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, desired: Topology) -> PortRefs:
        by_device: dict[str, tuple[str, ...]] = {}
        by_iface: dict[str, tuple[str, ...]] = {}
        for name, port in desired.ports.items():
            if port.device:
                by_device[port.device] = by_device.get(port.device, ()) + (name,)
            if port.iface_id:
                by_iface[port.iface_id] = by_iface.get(port.iface_id, ()) + (name,)
        return cls(by_device, by_iface)


def iface_index(devices: Mapping[str, Device]) -> dict[str, tuple[str, ...]]:
    """iface-id -> the devices carrying it, by name: the last is the one its
    port gets (reconciler.carrier; see Observed.iface_ids)."""
    index: dict[str, tuple[str, ...]] = {}
    for d in devices.values():
        if d.iface_id:
            index[d.iface_id] = index.get(d.iface_id, ()) + (d.name,)
    return {iface: names if len(names) == 1 else tuple(sorted(names))
            for iface, names in index.items()}


def affected(change: Change, desired: Topology, before: Topology, observed: Observed,
             refs: PortRefs, carrying: Mapping[str, tuple[str, ...]], previous: Plan,
             owners: Mapping[str, str]) -> tuple[set[str], set[str]]:
    """(ports, devices) the change reaches, closed under device competition.

    A port reaches the devices it names, holds or whose iface-id it carries
    (all of them: one it does not win still loses its name match); a device
    reaches the port holding it, the ports naming it or carrying its
    iface-id, and the other devices with that iface-id (which one wins the
    iface-id can change)."""
    ports: set[str] = set()
    devices: set[str] = set()
    todo, dev_todo = list(change.ports), list(change.devices)
    while todo or dev_todo:
        while todo:
            name = todo.pop()
            if name in ports:
                continue
            ports.add(name)
            held = previous.devices.get(name)
            ifaces = [held.iface_id] if held is not None and held.iface_id else []
            if held is not None:
                dev_todo.append(held.name)
            for port in (desired.ports.get(name), before.ports.get(name)):
                if port is not None:
                    if port.device:
                        dev_todo.append(port.device)
                    if port.iface_id:
                        ifaces.append(port.iface_id)
            for iface in ifaces:  # every device and port sharing one competes
                dev_todo.extend(carrying.get(iface, ()))
                todo.extend(refs.by_iface.get(iface, ()))
        while dev_todo:
            dev = dev_todo.pop()
            if dev in devices:
                continue
            devices.add(dev)
            if dev in owners:
                todo.append(owners[dev])
            todo.extend(refs.by_device.get(dev, ()))
            seen = observed.devices.get(dev)
            if seen is not None and seen.iface_id:
                todo.extend(refs.by_iface.get(seen.iface_id, ()))
                dev_todo.extend(carrying.get(seen.iface_id, ()))
    return ports, devices


def plan_change(desired: Topology, before: Topology, observed: Observed,
                fingerprint: Callable[[Network], str], network_errors: Mapping[str, str],
                previous: Plan, change: Change, refs: PortRefs, mode: Mode = Mode.NORMAL,
                prepare: bool = False) -> Plan | None:
    """The plan ``reconciler.plan(desired, observed, ...)`` would make, built
    from ``previous`` (the plan made for ``before``, whose mappings it takes
    over: use the result instead) and what ``change`` reaches; None, with
    ``previous`` untouched, when only the full plan can tell. ``refs``:
    PortRefs of ``desired``."""
    if mode is not Mode.NORMAL or not _same(desired.networks, before.networks):
        return None
    carrying = observed.iface_ids if observed.iface_ids is not None \
        else iface_index(observed.devices)
    owners = previous.owners if previous.owners is not None \
        else {dev.name: name for name, dev in previous.devices.items()}
    ports, devices = affected(change, desired, before, observed, refs, carrying, previous,
                              owners)
    live = [n for n in ports if n in desired.ports]
    by_iface = {port.iface_id: observed.devices[carrying[port.iface_id][-1]]
                for n in live if (port := desired.ports[n]).iface_id in carrying}
    matched = reconciler.match_devices(desired, observed.devices, live, by_iface,
                                       refs.by_iface)
    wanted = {d.name for d in matched.values()}

    # ``previous``'s mappings move on in place (copying three mappings of
    # every port per event was most of this at 5,000 ports): the caller
    # replaces its plan with this one and publishes copies.
    result = Plan(ports=previous.ports, devices=previous.devices, owners=owners,
                  reached=frozenset(ports))
    previous.ports, previous.devices, previous.owners = {}, {}, None
    for name in ports:
        result.ports.pop(name, None)
        held = result.devices.pop(name, None)
        if held is not None and owners.get(held.name) == name:
            del owners[held.name]
    result.devices.update(matched)
    owners.update((dev.name, name) for name, dev in matched.items())
    # Who awaits an absent device: the last declared port naming it, as the
    # full plan's comprehension over every port leaves it.
    awaited: dict[str, Port] = {}
    if prepare:
        for name in devices:
            for pname in refs.by_device.get(name, ()):
                port = desired.ports[pname]
                if pname not in matched and name not in observed.devices \
                        and port.network not in network_errors:
                    awaited[name] = port

    # 1. Devices the change reached that no port claims any more.
    for name in sorted(devices):
        dev = observed.devices.get(name)
        if dev is not None and dev.network is not None and name not in wanted:
            result.actions.append(Unplug(dev.network, name))
    for name in sorted(devices):
        net = observed.prepared.get(name)
        if net is not None and name not in awaited:
            result.actions.append(Unplug(net, name))
    # 2-3. Networks, whole (they are few), by the full plan's rules.
    result.actions += reconciler.network_actions(desired, observed, fingerprint,
                                                 network_errors, mode)
    # 4. The affected ports, in the full plan's order.
    reconciler.plan_ports(sorted(live), desired, observed, matched, network_errors, awaited,
                          result)
    return result
