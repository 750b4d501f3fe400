"""Desired versus observed state, as a pure function.

``plan`` reads a Topology and an Observed snapshot and returns the driver
calls that close the gap, plus what each port's status will be once they
succeed. It touches nothing, so every rule here is unit-tested without a
kernel or a switch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from ovsbr.drivers.base import Device, Observed
from ovsbr.model import Network, Topology

BOUND, WAITING, ERROR = "bound", "waiting", "error"


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str  # ensure_network | delete_network | plug | prepare | unplug
    network: str | None = None
    port: str | None = None
    device: str | None = None


@dataclasses.dataclass(slots=True)
class PortStatus:
    status: str
    device: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        # Built by hand: dataclasses.asdict deep-copies, and this runs for
        # every port on every status publish.
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


def match_devices(desired: Topology, devices: Mapping[str, Device]) -> dict[str, Device]:
    """Port name -> its device: by iface-id first (Nova/os-vif), then by name."""
    by_iface = {d.iface_id: d for d in devices.values() if d.iface_id}
    claimed: set[str] = set()
    result: dict[str, Device] = {}
    for port in sorted(desired.ports.values(), key=lambda p: p.name):
        dev = by_iface.get(port.iface_id) if port.iface_id else None
        if dev is None and port.device:
            dev = devices.get(port.device)
            # A device carrying another port's iface-id belongs to that port.
            if dev is not None and dev.iface_id and dev.iface_id != port.iface_id and any(
                p.iface_id == dev.iface_id for p in desired.ports.values()
            ):
                dev = None
        if dev is not None and dev.name not in claimed:
            claimed.add(dev.name)
            result[port.name] = dev
    return result


def plan(
    desired: Topology,
    observed: Observed,
    fingerprint: Callable[[Network], str],
    network_errors: Mapping[str, str] | None = None,
    keep_existing: bool = False,
    prepare: bool = False,
) -> Plan:
    """The actions that make ``observed`` match ``desired``.

    ``network_errors`` maps a network to the reason its last build failed;
    its ports report that reason and are not plugged, and the network is not
    retried (the agent clears the entry at full resync or on change).

    ``keep_existing`` plans no unplug and no delete: for a store that was
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

    if not keep_existing:
        # 1. Devices wired by ovsbr that no port claims any more.
        for dev in sorted(observed.devices.values(), key=lambda d: d.name):
            if dev.network is not None and dev.name not in wanted_devices:
                result.actions.append(Action("unplug", network=dev.network,
                                             device=dev.name))
        for name, net in sorted(observed.prepared.items()):
            if net is not None and name not in awaited:
                result.actions.append(Action("unplug", network=net, device=name))
        # 2. Networks that should no longer exist.
        for name in sorted(set(observed.networks) - set(desired.networks)):
            result.actions.append(Action("delete_network", network=name))

    # 3. Networks to build or rebuild.
    for name, net in sorted(desired.networks.items()):
        if name in network_errors:
            continue
        state = observed.networks.get(name)
        if state is None or state.fingerprint != fingerprint(net):
            result.actions.append(Action("ensure_network", network=name))

    # 4. Ports.
    for pname, port in sorted(desired.ports.items()):
        dev = matched.get(pname)
        if port.network in network_errors:
            result.ports[pname] = PortStatus(
                ERROR, dev.name if dev else None,
                f"network {port.network}: {network_errors[port.network]}")
            continue
        if dev is None:
            result.ports[pname] = PortStatus(
                WAITING, None, f"no device {_identity(port)} on this host yet")
            if awaited.get(port.device) is port and \
                    observed.prepared.get(port.device) != port.network:
                result.actions.append(
                    Action("prepare", network=port.network, port=pname, device=port.device))
            continue
        result.ports[pname] = PortStatus(BOUND, dev.name)
        if dev.network != port.network:
            result.actions.append(
                Action("plug", network=port.network, port=pname, device=dev.name))
    return result


def _identity(port) -> str:
    parts = []
    if port.device:
        parts.append(f"named {port.device}")
    if port.iface_id:
        parts.append(f"with iface-id {port.iface_id}")
    return " or ".join(parts)
