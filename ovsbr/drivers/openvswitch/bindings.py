"""What the OpenFlow app must bind, from a bridge view and the desired state.

Pure: a :class:`~.view.BridgeView`, the desired topology, the bound ports
and the overlays in; :mod:`ovsbr.openflow.pipeline` bindings and the ports
that cannot forward yet out. Unit-tested from recorded views.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping

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
    nets, ofports = view.networks, view.ofports
    ports, cache, not_ready = [], {}, {}
    for pname, dev in bound.items():
        port = desired.ports[pname]
        lid = nets.get(port.network, (None,))[0]
        if lid is None:
            continue
        ofport = ofports.get(dev.name)
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
            ports.append(binding[1])
        elif dev.name in view.errors:
            not_ready[pname] = NotReady(
                f"ovs-vswitchd cannot open {dev.name}: {view.errors[dev.name]}", True)
        else:
            not_ready[pname] = NotReady(
                f"{dev.name} is on {bridge}; waiting for ovs-vswitchd to give it an "
                "OpenFlow port")
    return ports, cache, not_ready


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
