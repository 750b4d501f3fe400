"""The port filters the bound ports want, and which taps nftables must take again.

The linuxbridge driver's bookkeeping between a plug (one port's filter,
before its tap joins the bridge) and a sync (the filters of the ports a
reconcile reached, or of all of them), so that nftables is sent one
batch for the taps whose filter changed. The caller holds its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ovsbr.drivers.base import Device
from ovsbr.drivers.linuxbridge.portsec import NftPortSecurity, PortFilter
from ovsbr.exceptions import DriverError, FeatureMissing
from ovsbr.model import Port, Topology
from ovsbr.secgroups.policy import PortPolicy, port_policy


def port_filter(device: str, policy: PortPolicy | None,
                bridge: str | None = None) -> PortFilter | None:
    """What nftables must check for a port; None when there is nothing to enforce."""
    return None if policy is None else PortFilter(device, policy, bridge)


class PortFilters:
    def __init__(self, portsec: NftPortSecurity):
        self.portsec = portsec
        self._filters: dict[str, PortFilter] = {}  # device -> its filter
        self._filtered: dict[str, str] = {}  # port -> the device filtered for it
        self._dirty: set[str] | None = None  # taps whose filter changed (None: all)
        self._for: Topology | None = None  # the desired state they follow
        self.rewrite = False  # the next apply rewrites the whole table

    def _touch(self, device: str) -> None:
        if self._dirty is not None:
            self._dirty.add(device)

    def want(self, port: str, device: str, wanted: PortFilter | None) -> None:
        """A plug: ``port`` on ``device`` gets ``wanted`` (None: no filter)."""
        if wanted is not None:
            self.portsec.check(wanted)
            before = self._filtered.get(port)
            if before is not None and before != device:
                self._filters.pop(before, None)  # the port's device changed
                self._touch(before)
            self._filters[device] = wanted
            self._filtered[port] = device
        else:
            self._filters.pop(device, None)
        self._touch(device)

    def follow(self, desired: Topology, bound: Mapping[str, Device],
               changed: Iterable[str] | None, bridge_name: Callable[[str], str],
               bridge_of: Callable[[str], str | None]) -> None:
        """A sync: the ``changed`` ports' filters when ``desired`` is the one
        they follow (a device event), every port's otherwise.

        A port not ``bound`` (its network failed to build, its plug failed)
        whose tap ``bridge_of`` says still sits on an ovsbr bridge keeps being
        filtered by its declared policy: the tap forwards where it was, and
        an error must fail closed, not open."""
        if changed is None or desired is not self._for:
            self._filters, self._filtered, self._dirty = {}, {}, None
            changed = desired.ports.keys()
        for name in changed:
            device = self._filtered.pop(name, None)
            if device is not None:
                self._filters.pop(device, None)
                self._touch(device)
        stranded = []
        for name in changed:
            port = desired.ports.get(name)
            if port is None:
                continue
            dev = bound.get(name)
            if dev is None:
                if port.device:
                    stranded.append((name, port))
                continue
            self._set(name, dev.name, port, desired, bridge_name(port.network))
        # A device a bound port holds is that port's, filtered or not.
        held = {dev.name for dev in bound.values()} if stranded else set()
        for name, port in stranded:
            if port.device not in held and port.device not in self._filters and \
                    (bridge := bridge_of(port.device)) is not None:
                self._set(name, port.device, port, desired, bridge)
        self._for = desired

    def _set(self, name: str, device: str, port: Port, desired: Topology,
             bridge: str) -> None:
        f = port_filter(device, port_policy(port, desired), bridge)
        if f is not None:
            self._filters[device] = f
            self._filtered[name] = device
            self._touch(device)

    def apply(self) -> None:
        """Send nftables what changed since the last apply."""
        try:
            self.portsec.apply(self._filters, force=self.rewrite, devices=self._dirty)
        except FeatureMissing as e:
            raise DriverError(f"port security: {e}") from e
        self.rewrite = False
        self._dirty = set()
