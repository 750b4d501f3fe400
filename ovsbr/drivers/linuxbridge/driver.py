"""The linuxbridge driver: sequences :mod:`.layout` decisions and netlink calls.

See the package docstring for the layout. Every decision that can be made
from values (names, marks, fingerprints, what is built, FDB differences,
error meanings) is in :mod:`.layout`; every kernel request is in
:mod:`.netlink_ops`. This class holds the per-agent state between them:
the link table (a cache that resync rebuilds) and the pending plug batch;
the wanted port filters are kept by :mod:`.filters`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from oslo_config import cfg
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ovsbr.conf.mappings import parse_mappings
from ovsbr.drivers import common, rtnl
from ovsbr.drivers.base import Device, Driver, EventCallback, NotReady, Observed, Overlay
from ovsbr.drivers.linuxbridge import layout, overlay
from ovsbr.drivers.linuxbridge import netlink_ops as ops
from ovsbr.drivers.linuxbridge.filters import PortFilters, port_filter
from ovsbr.drivers.linuxbridge.portsec import NftPortSecurity, table_name
from ovsbr.drivers.rtnl import Link
from ovsbr.exceptions import ConfigError, DriverError, PartialFailure
from ovsbr.model import NETWORK_TYPES, Network, Port, Topology, effective_mtu
from ovsbr.secgroups.policy import PortPolicy

LOG = logging.getLogger(__name__)


class LinuxBridgeDriver(Driver):
    name = "linuxbridge"

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(conf)
        self.prefix = conf.linux_bridge.bridge_prefix
        self.mappings: dict[str, str] = {}
        self.hostlinks = common.HostLinks()
        self.links = self.hostlinks.table
        self._rtnl: rtnl.RtnlSocket | None = None
        self._lock = threading.RLock()
        self._batch: list[tuple[Link, dict, Network]] | None = None
        self._bridge_of: dict[str, int] = {}
        self.portsec = NftPortSecurity(table_name(self.prefix or ""))
        self.filters = PortFilters(self.portsec)
        self._seen: layout.Seen | None = None  # the last observation
        # Network type -> kernel module this host lacks (probed at start).
        self.missing: dict[str, str] = {}

    # -- life cycle ----------------------------------------------------------
    def check_config(self) -> None:
        if not layout.PREFIX_RE.match(self.prefix or ""):
            raise ConfigError(
                "[linux_bridge] bridge_prefix",
                f"{self.prefix!r} is not 1-6 characters of letters, digits, '-', '_'")
        self.mappings = parse_mappings(
            layout.MAPPINGS_OPTION, self.conf.linux_bridge.physical_interface_mappings,
            "INTERFACE")
        with IPRoute() as ipr:
            for physnet, nic in sorted(self.mappings.items()):
                if not ipr.link_lookup(ifname=nic):
                    raise ConfigError(
                        layout.MAPPINGS_OPTION,
                        f"interface {nic!r} of physical network {physnet!r} does "
                        "not exist on this host")

    def start(self, on_event: EventCallback) -> None:
        missing = self.portsec.probe()
        if missing:
            LOG.warning("%s; ports with port security and a declared MAC or IPs will "
                        "not be wired (use --no-port-security to wire them unfiltered)",
                        missing)
        elif self.portsec.stateful:
            LOG.warning("%s: ports with security groups will not be wired",
                        self.portsec.stateful)
        self._rtnl = rtnl.RtnlSocket()
        self.missing = ops.probe_kinds(layout.KERNEL_NEEDS)
        for net_type, module in sorted(self.missing.items()):
            LOG.warning("kernel: no %s (module %s): %s networks will report an error on "
                        "this host", net_type, module, net_type)
        self.hostlinks.start(on_event)

    def stop(self) -> None:
        self.hostlinks.stop()
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None

    def capabilities(self) -> dict[str, Any]:
        types = [t for t in NETWORK_TYPES if t not in (self.missing or {})]
        return {"physical_networks": sorted(self.mappings), "network_types": types,
                "security_groups": self.portsec.stateful is None}

    def describe(self) -> str:
        return (f"linuxbridge (bridges {self.prefix}<network>, interface mappings "
                f"{common.describe_mappings(self.mappings)})")

    def resync(self) -> None:
        with self._lock:
            self.links.refresh()
            self.filters.rewrite = True  # even if nothing changed here

    # -- naming and observation ------------------------------------------------
    def bridge_name(self, net_name: str) -> str:
        return layout.bridge_name(self.prefix, net_name)

    def fingerprint(self, net: Network) -> str:
        return layout.fingerprint(net, self.mappings)

    def observe(self) -> Observed:
        return self.observe_change()[0]

    def observe_change(self) -> tuple[Observed, frozenset[str] | None]:
        """From the links that changed since the last look when it can (see
        layout.see_change); the whole table at start, after a resync, and
        when a bridge or an uplink moved."""
        self.links.refresh_if_stale()
        changed = self.links.take_changes()  # before reading: see take_changes
        if changed is not None and self._seen is not None:
            moved = layout.see_change(self._seen, changed, self.links.get)
            if moved is not None:
                self._seen = moved[0]
                return moved[0].observed, moved[1]
        self._seen = layout.see(self.links.snapshot(), self.prefix, self.mappings)
        return self._seen.observed, None

    # -- networks ------------------------------------------------------------
    def _owned_bridge(self, net_name: str) -> Link | None:
        """The network's bridge; remembered, since every plug asks for it."""
        index = self._bridge_of.get(net_name)
        link = self.links.get(index) if index is not None else None
        mark = layout.bridge_mark(link, self.prefix) if link is not None else None
        if mark is not None and mark[0] == net_name:
            return link
        link = layout.owned_bridge(self.links.snapshot().values(), self.prefix, net_name)
        if link is not None:
            self._bridge_of[net_name] = link.index
        return link

    def _leftover(self, link: Link, kind: str) -> bool:
        return layout.our_leftover(link, kind, self.links.snapshot().values())

    def ensure_network(self, net: Network) -> None:
        layout.check_buildable(net, self.mappings, self.missing)
        with self._lock:
            self._ensure_network(net)

    def _ensure_network(self, net: Network) -> None:
        ipr = self.hostlinks.ipr
        mtu = effective_mtu(net)
        bridge = self._owned_bridge(net.name)
        if bridge is None:
            name = self.bridge_name(net.name)
            existing = self.hostlinks.lookup(name)
            if existing is None:
                ipr.link("add", ifname=name, kind="bridge")
            elif not self._leftover(existing, "bridge"):
                raise DriverError(f"device {name} exists and was not created by ovsbr")
            # The kernel ignores an alias given at creation, so a kill between
            # these two calls leaves a bare bridge: our_leftover adopts it.
            # The fingerprint goes on last, so a build cut short is finished
            # next time.
            bridge = self.hostlinks.lookup(name)
            ipr.link("set", index=bridge.index, ifalias=f"{layout.BRIDGE_MARK}{net.name}")
        ops.l2_only(bridge.name)
        spec = {"state": "up"}
        if mtu is not None:
            spec["mtu"] = mtu
        ipr.link("set", index=bridge.index, **spec)

        uplink = self._ensure_uplink(net, bridge)
        # Uplinks this network had under another segment (type or id changed).
        for link in self.links.snapshot().values():
            if layout.uplink_owner(link.alias) == net.name and link.name != uplink:
                self.hostlinks.delete(link)
        if mtu is not None:
            for link in self.links.snapshot().values():
                if link.master == bridge.index and link.mtu != mtu:
                    ipr.link("set", index=link.index, mtu=mtu)
        ipr.link("set", index=bridge.index,
                 ifalias=layout.bridge_alias(net.name, self.fingerprint(net)))
        self.hostlinks.get(bridge.index)

    def _ensure_uplink(self, net: Network, bridge: Link) -> str | None:
        ipr = self.hostlinks.ipr
        name = layout.uplink_name(net, self.mappings)
        if name is None:
            return None
        mtu = effective_mtu(net)
        link = self.hostlinks.lookup(name)
        if link is None and net.type == "flat":
            raise DriverError(f"interface {name} of physical network "
                              f"{net.physical_network} does not exist")
        if link is None:
            nic = None
            if net.type == "vlan":
                nic_name = self.mappings[net.physical_network]
                nic_link = self.hostlinks.lookup(nic_name)
                if nic_link is None:
                    raise DriverError(f"interface {nic_name} does not exist")
                nic = nic_link.index
            ops.create_uplink(ipr, net, name, nic, self.conf.vxlan.udp_port,
                              self.conf.vxlan.local_ip)
            link = self.hostlinks.lookup(name)
            ipr.link("set", index=link.index, ifalias=f"{layout.UPLINK_MARK}{net.name}")
            # Before it comes up: an uplink with IPv6 on would send its own
            # router solicitations down the tunnel to every flooded host.
            ops.l2_only(name)
        elif net.type != "flat" and layout.uplink_owner(link.alias) != net.name:
            if not self._leftover(link, net.type):
                raise DriverError(f"device {name} exists and was not created by ovsbr "
                                  f"for network {net.name}")
            ipr.link("set", index=link.index, ifalias=f"{layout.UPLINK_MARK}{net.name}")
        spec = {"state": "up", "master": bridge.index}
        if mtu is not None and net.type != "flat":
            spec["mtu"] = mtu
        ipr.link("set", index=link.index, **spec)
        self.hostlinks.get(link.index)
        return name

    def delete_network(self, name: str) -> None:
        with self._lock:
            bridge = self._owned_bridge(name)
            for link in self.links.snapshot().values():
                if name in (layout.uplink_owner(link.alias), layout.tunnel_owner(link.alias)):
                    self.hostlinks.delete(link)
            if bridge is not None:
                # Members (VM taps, a flat NIC) are released by the kernel;
                # record that now rather than wait for the events.
                for link in self.links.snapshot().values():
                    if link.master == bridge.index:
                        link.master = None
                self.hostlinks.delete(bridge)

    # -- ports -----------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the plugs made inside as one netlink batch.

        Failures come back per device as a PartialFailure.
        """
        with self._lock:
            if self._batch is not None:
                yield
                return
            self._batch = []
            try:
                yield
            finally:
                pending, self._batch = self._batch, None
            if pending:
                self._flush(pending)

    def _flush(self, pending: list[tuple[Link, dict, Network]]) -> None:
        # Filters first: a tap joins its bridge only once its rules are in.
        self.filters.apply()
        failures = ops.send_batch(self._rtnl, [(link.index, spec)
                                               for link, spec, _net in pending])
        errors = {}
        for i, code in failures.items():
            link, _spec, net = pending[i]
            errors[link.name] = layout.plug_error(code, link.name,
                                                  self.bridge_name(net.name), net)
            link.master = None
            self.links.put(link)
        if errors:
            raise PartialFailure(errors)

    def plug(self, port: Port, net: Network, device: Device,
             policy: PortPolicy | None = None) -> None:
        with self._lock:
            bridge = self._owned_bridge(net.name)
            if bridge is None:
                raise DriverError(f"bridge of network {net.name} is missing")
            link = self.links.by_name(device.name)
            if link is None:
                raise DriverError(f"device {device.name} is gone")
            self.filters.want(port.name, device.name,
                              port_filter(device.name, policy, self.bridge_name(net.name)))
            spec = {"master": bridge.index, "state": "up"}
            mtu = effective_mtu(net)
            if mtu is not None:
                spec["mtu"] = mtu
            if self._batch is not None:
                self._batch.append((link, spec, net))
            else:
                self.filters.apply()
                try:
                    self.hostlinks.ipr.link("set", index=link.index, **spec)
                except NetlinkError as e:
                    raise DriverError(layout.plug_error(
                        e.code, device.name, self.bridge_name(net.name), net)) from e
            # Record it now: the event confirms later, and a reconcile in
            # between must not plug the device again.
            link.master, link.up = bridge.index, True
            if mtu is not None:
                link.mtu = mtu
            self.links.put(link)

    def unplug(self, device: Device) -> None:
        with self._lock:
            link = self.links.by_name(device.name)
            if link is None:
                return
            ops.detach(self.hostlinks.ipr, link.index)
            link.master = None
            self.links.put(link)

    def sync(self, desired: Topology, bound: Mapping[str, Device],
             changed: frozenset[str] | None = None) -> dict[str, NotReady]:
        """The nftables table follows the bound ports (restarts, edits, drift).

        Only the ``changed`` ports' filters are recomputed when the desired
        state is the last one (a device event); all of them otherwise. A port
        forwards as soon as it is enslaved: nothing is ever pending.
        """
        with self._lock:
            self.filters.follow(desired, bound, changed, self.bridge_name, self._bridge_holding)
            self.filters.apply()
        return {}

    def _bridge_holding(self, device: str) -> str | None:
        """The ovsbr bridge ``device`` is a port of, if any."""
        link = self.links.by_name(device)
        master = self.links.get(link.master) if link and link.master else None
        if master is None or layout.bridge_mark(master, self.prefix) is None:
            return None
        return master.name

    def cleanup(self) -> None:
        self.portsec.remove()

    def set_overlay(self, overlays: Mapping[str, Overlay]) -> None:
        """Remote hosts and MACs of overlay networks (see :mod:`.overlay`)."""
        with self._lock:
            for name, ov in sorted(overlays.items()):
                overlay.program(self.hostlinks, self.prefix, name, ov)
