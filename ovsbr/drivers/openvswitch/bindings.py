"""What the OpenFlow app must bind, from a bridge view and the desired state.

Pure: a :class:`~.view.BridgeView`, the desired topology, the bound ports
and the overlays in; :mod:`ovsbr.openflow.pipeline` bindings and the ports
that cannot forward yet out. Unit-tested from recorded views.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from ovsbr.drivers import names
from ovsbr.drivers.base import BridgeReport, Device, LearnedMac, NotReady, Overlay
from ovsbr.drivers.openvswitch.view import BridgeView
from ovsbr.model import Topology
from ovsbr.openflow import pipeline as pl
from ovsbr.secgroups.policy import port_policy

TUNNEL_PREFIX = {"vxlan": "vx", "geneve": "gn"}
# Device name -> ((port, ofport, lid, groups' policy), binding): last reconcile's.
BindingCache = dict[str, tuple[tuple, pl.PortBinding]]


def datapath_id(bridge: str) -> int:
    """A stable dpid per bridge name, so the app knows which bridge called."""
    return int(hashlib.sha1(bridge.encode()).hexdigest()[:15], 16)


def patch_names(bridge: str) -> tuple[str, str]:
    """(br-int side, physical bridge side) of a physical bridge's patch pair."""
    return names.ifname("int-", bridge), names.ifname("phy-", bridge)


def tunnel_name(kind: str, remote: str) -> str:
    """vx-c6336416: the type and the remote endpoint in hex, <= 15 characters."""
    return f"{TUNNEL_PREFIX[kind]}-{ipaddress.ip_address(remote).packed.hex()}"


def wanted_tunnels(overlays: Mapping[str, Overlay]) -> dict[str, tuple[str, str]]:
    """One tunnel port per (type, remote host) any overlay network needs."""
    wanted = {}
    for ov in overlays.values():
        for remote in ov.vteps:
            wanted[tunnel_name(ov.type, remote)] = (ov.type, remote)
    return wanted


def port_bindings(desired: Topology, bound: Mapping[str, Device], view: BridgeView,
                  last: BindingCache, bridge: str
                  ) -> tuple[list[pl.PortBinding], BindingCache, dict[str, NotReady]]:
    """The VM ports' bindings, the cache for next time, and who cannot forward.

    A port is ready once ovs-vswitchd gave its interface an OpenFlow port.
    Most bindings are the same as last time (same Port object, ofport and
    network id): those are reused, which also makes the app's comparison an
    identity check.
    """
    cache: BindingCache = {}
    not_ready: dict[str, NotReady] = {}
    for pname, dev in bound.items():
        _bind(pname, dev, desired, view, last, bridge, cache, not_ready)
    return [b for _, b in cache.values()], cache, not_ready


def _bind(pname: str, dev: Device, desired: Topology, view: BridgeView, last: BindingCache,
          bridge: str, cache: BindingCache, not_ready: dict[str, NotReady]) -> None:
    """One bound port: its binding into ``cache``, or why not into ``not_ready``."""
    port = desired.ports[pname]
    lid = view.networks.get(port.network, (None,))[0]
    if lid is None:
        return
    ofport = view.ofports.get(dev.name)
    if ofport is not None:
        # A port's groups can change while the port does not (rules,
        # members): a filtered port's policy is part of the key
        # (memoised, so the same value comes back while nothing changed).
        filtered = port_policy(port, desired) if port.security_groups else None
        key = (port, ofport, lid, filtered)
        binding = last.get(dev.name)
        if binding is None or binding[0] != key:
            binding = (key, pl.PortBinding(ofport, lid, port.mac,
                                           filtered or port_policy(port)))
        cache[dev.name] = binding
    elif dev.name in view.errors:
        not_ready[pname] = NotReady(
            f"ovs-vswitchd cannot open {dev.name}: {view.errors[dev.name]}", True)
    else:
        not_ready[pname] = NotReady(
            f"{dev.name} is on {bridge}; waiting for ovs-vswitchd to give it an "
            "OpenFlow port")


class PortBindings:
    """The bindings kept between syncs, so a sync for a few ports costs those.

    :meth:`update` recomputes the ports a reconcile reached when the desired
    state and the view object are the ones of the last call (a device event
    moves the view on in place and names what it touched), every bound
    port's otherwise; the result equals :func:`port_bindings` of the same
    inputs (tests/unit/test_ovs_bindings.py).
    """

    def __init__(self) -> None:
        self.cache: BindingCache = {}  # device -> (key, binding)
        self.not_ready: dict[str, NotReady] = {}
        self._device: dict[str, str] = {}  # port -> the device bound for it
        self._at: dict[int, str] = {}  # ofport -> the port bound there
        self._for: tuple = (None, None)  # (desired, view) of the last update

    def update(self, desired: Topology, bound: Mapping[str, Device], view: BridgeView,
               bridge: str, changed: Iterable[str] | None) -> bool:
        """Move on; True when the bindings (``cache``) may have changed."""
        last_desired, last_view = self._for
        self._for = (desired, view)
        if changed is None or desired is not last_desired or view is not last_view:
            old = self.cache
            _, self.cache, self.not_ready = port_bindings(desired, bound, view, old, bridge)
            self._device = {p: d.name for p, d in bound.items()}
            self._at = {b.ofport: key[0].name for key, b in self.cache.values()}
            return True
        cache, popped = self.cache, {}
        changed = list(changed)
        for name in changed:  # every old binding out first: devices change hands
            self.not_ready.pop(name, None)
            dev = self._device.pop(name, None)
            if dev is not None and dev in cache:
                popped[dev] = cache.pop(dev)
                if self._at.get(popped[dev][1].ofport) == name:
                    del self._at[popped[dev][1].ofport]
        touched = set(popped)
        for name in changed:
            dev = bound.get(name)
            if dev is not None:
                self._device[name] = dev.name
                touched.add(dev.name)
                _bind(name, dev, desired, view, popped, bridge, cache, self.not_ready)
                if dev.name in cache:
                    self._at[cache[dev.name][1].ofport] = name
        return any(cache.get(d) is not popped.get(d) for d in touched)

    def port_at(self, ofport: int) -> str | None:
        """The port bound at an OpenFlow port number, if any."""
        return self._at.get(ofport)

    def bindings(self) -> list[pl.PortBinding]:
        return [b for _, b in self.cache.values()]


def uplink_bindings(desired: Topology, view: BridgeView,
                    mappings: Mapping[str, str]) -> list[pl.UplinkBinding]:
    """Flat and vlan networks through their physical bridge's patch port."""
    uplinks = []
    for net in desired.networks.values():
        lid = view.networks.get(net.name, (None,))[0]
        bridge = mappings.get(net.physical_network or "")
        if lid is None or bridge is None or net.type not in ("flat", "vlan"):
            continue
        ofport = view.ofports.get(patch_names(bridge)[0])
        if ofport:
            uplinks.append(pl.UplinkBinding(ofport, lid, net.segmentation_id
                                            if net.type == "vlan" else None))
    return uplinks


def tunnel_bindings(overlays: Mapping[str, Overlay],
                    view: BridgeView) -> list[pl.TunnelBinding]:
    """Overlay networks through each remote host's tunnel port, with its MACs."""
    bindings = []
    for net_name, ov in sorted(overlays.items()):
        lid = view.networks.get(net_name, (None,))[0]
        if lid is None:
            continue
        for remote in sorted(ov.vteps):
            ofport = view.ofports.get(tunnel_name(ov.type, remote))
            if ofport:
                macs = tuple(mac for mac, ip in ov.macs if ip == remote)
                bindings.append(pl.TunnelBinding(ofport, lid, ov.vni, macs))
    return bindings


def free_lid(view: BridgeView | None, network: str) -> int | None:
    """The network's recorded id, else the lowest free one (None: all taken)."""
    nets = view.networks if view is not None else {}
    lid = nets.get(network, (None, None))[0]
    if lid is not None:
        return lid
    used = {v[0] for v in nets.values()}
    return next((i for i in range(1, pl.MAX_LID + 1) if i not in used), None)


def reports(raw: Mapping[str, Mapping], view: BridgeView | None) -> dict[str, BridgeReport]:
    """The app's MAC tables and counters, with network and port names."""
    networks = {lid: name for name, (lid, _) in view.networks.items()} if view else {}
    ports = {ofport: name for name, ofport in view.ofports.items()} if view else {}
    result = {}
    for bridge, data in raw.items():
        macs = tuple(LearnedMac(networks.get(e["lid"], "?"), e["mac"],
                                ports.get(e["port"], e["port"]), e["age"])
                     for e in data["macs"])
        result[bridge] = BridgeReport(data["connected"], data["counters"], macs,
                                      data.get("flows", {}))
    return result
