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
# The OpenFlow ports ovsbr asks for: ovs-vswitchd chooses numbers itself
# only below 32768 (ofproto.c, alloc_ofp_port) and keeps the upper half for
# requests; OFPP_MAX (0xff00) and above are reserved ports.
REQUEST_FIRST, REQUEST_LAST = 32768, 0xFEFF
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


class OfportRequests:
    """The OpenFlow port ovsbr asks ovs-vswitchd for, for a Port row it
    prepares (a declared port whose tap is not there yet).

    Why ask: a port's flows name its OpenFlow port. Left to ovs-vswitchd,
    the number is known only once the tap exists and ovs-vswitchd has opened
    it, and the port then waits for its flows and a barrier's round trip
    (about 10 ms of a new port's 25-45 at 100 ports, bench wiring). Asked
    for when the port is prepared, the number is known before the tap: the
    flows are in place when it appears, and the port forwards as soon as
    ovs-vswitchd has numbered it.

    Numbers come from the upper half of the range, where ovs-vswitchd never
    picks one itself, so an interface ovsbr does not know cannot take one
    while the tap is missing; one already taken or asked for in the view
    (or asked for here since) is skipped. ovs-vswitchd gives a port whose
    number is taken another one, and the binding then follows that.
    """

    def __init__(self) -> None:
        self._next = REQUEST_FIRST
        self._asked: dict[str, int] = {}  # interface -> number, not in a view yet
        self._taken: set[int] = set()  # their numbers

    def pick(self, name: str, view: BridgeView) -> int | None:
        """A free number for interface ``name`` (None: the range is full)."""
        span = REQUEST_LAST - REQUEST_FIRST + 1
        n = self._next if REQUEST_FIRST <= self._next <= REQUEST_LAST else REQUEST_FIRST
        for _ in range(span):
            after = REQUEST_FIRST + (n + 1 - REQUEST_FIRST) % span
            if n not in view.at and n not in view.requests and n not in self._taken:
                self._next = after
                old = self._asked.pop(name, None)
                if old is not None:
                    self._taken.discard(old)
                self._asked[name] = n
                self._taken.add(n)
                return n
            n = after
        return None

    def seen(self, view: BridgeView) -> None:
        """Forget the rows the view now shows: it keeps their numbers taken
        (a row not in it yet may be in a transaction not reported yet)."""
        if self._asked:
            for name in [n for n in self._asked if n in view.vm_ifaces]:
                self.forget(name)

    def forget(self, name: str) -> None:
        """Interface ``name``'s row is gone, or the view has it."""
        self._taken.discard(self._asked.pop(name, None))


def requested_port(view: BridgeView, name: str) -> int | None:
    """The OpenFlow port interface ``name`` asked for, while it is its own:
    no other interface has that number or asked for it too."""
    iface = view.vm_ifaces.get(name)
    n = iface.requested if iface is not None else None
    if n is None or view.at.get(n, {name}) != {name} or view.requests[n] != 1:
        return None
    return n


def prepared_device(pname: str, desired: Topology, view: BridgeView,
                    bound: Mapping[str, Device]) -> str | None:
    """The device of a port prepared on br-int with a requested OpenFlow
    port and not bound (no tap yet, or one not up): its flows can be in
    place before the port forwards.

    Not a port migrating here: until Nova switches it over, its VM and
    MAC are on the source host, and its flows here (frames to that MAC
    out of this port) would take its traffic (seen: 55 of 200 pings lost
    in the live-migration test, against 16-22 without).
    """
    port = desired.ports.get(pname)
    if port is None or pname in bound or not port.device or port.migrating_to:
        return None
    iface = view.vm_ifaces.get(port.device)
    requested = requested_port(view, port.device)
    if (iface is None or iface.port != pname or iface.network != port.network
            or requested is None or view.ofports.get(port.device, requested) != requested):
        return None
    return port.device


def port_bindings(desired: Topology, bound: Mapping[str, Device], view: BridgeView,
                  last: BindingCache, bridge: str
                  ) -> tuple[list[pl.PortBinding], BindingCache, dict[str, NotReady],
                             dict[str, str]]:
    """The VM ports' bindings, the cache for next time, who cannot forward,
    and port -> device of every port bound or prepared.

    A port is ready once ovs-vswitchd gave its interface an OpenFlow port.
    Its flows go out as soon as its number is known: the one it asked for
    (:class:`OfportRequests`), before the tap exists for a prepared port.
    Most bindings are the same as last time (same Port object, ofport and
    network id): those are reused, which also makes the app's comparison an
    identity check.
    """
    cache: BindingCache = {}
    not_ready: dict[str, NotReady] = {}
    devices = {}
    for pname, dev in bound.items():
        devices[pname] = dev.name
        _bind(pname, dev.name, desired, view, last, bridge, cache, not_ready)
    for iface in view.vm_ifaces.values():
        device = prepared_device(iface.port, desired, view, bound) if iface.port else None
        if device == iface.name:
            devices[iface.port] = device
            _bind(iface.port, device, desired, view, last, bridge, cache, None)
    return [b for _, b in cache.values()], cache, not_ready, devices


def _bind(pname: str, device: str, desired: Topology, view: BridgeView, last: BindingCache,
          bridge: str, cache: BindingCache, not_ready: dict[str, NotReady] | None) -> None:
    """One port: its binding into ``cache``; why it cannot forward yet into
    ``not_ready`` (None: a prepared port, whose status is the reconciler's)."""
    port = desired.ports[pname]
    lid = view.networks.get(port.network, (None,))[0]
    if lid is None:
        return
    ofport = view.ofports.get(device)
    number = ofport if ofport is not None else requested_port(view, device)
    if number is not None:
        # A port's groups can change while the port does not (rules,
        # members): a filtered port's policy is part of the key
        # (memoised, so the same value comes back while nothing changed).
        filtered = port_policy(port, desired) if port.security_groups else None
        key = (port, number, lid, filtered)
        binding = last.get(device)
        if binding is None or binding[0] != key:
            binding = (key, pl.PortBinding(number, lid, port.mac,
                                           filtered or port_policy(port)))
        cache[device] = binding
    if ofport is not None or not_ready is None:
        return
    if device in view.errors:
        not_ready[pname] = NotReady(
            f"ovs-vswitchd cannot open {device}: {view.errors[device]}", True)
    else:
        not_ready[pname] = NotReady(
            f"{device} is on {bridge}; waiting for ovs-vswitchd to give it an "
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
        self._device: dict[str, str] = {}  # port -> the device bound (or prepared) for it
        self._at: dict[int, str] = {}  # ofport -> the port bound there
        self._for: tuple = (None, None)  # (desired, view) of the last update

    def update(self, desired: Topology, bound: Mapping[str, Device], view: BridgeView,
               bridge: str, changed: Iterable[str] | None) -> bool:
        """Move on; True when the bindings (``cache``) may have changed."""
        last_desired, last_view = self._for
        self._for = (desired, view)
        if changed is None or desired is not last_desired or view is not last_view:
            old = self.cache
            _, self.cache, self.not_ready, self._device = port_bindings(
                desired, bound, view, old, bridge)
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
            device = dev.name if dev is not None else prepared_device(name, desired, view, bound)
            if device is not None:
                self._device[name] = device
                touched.add(device)
                _bind(name, device, desired, view, popped, bridge, cache,
                      self.not_ready if dev is not None else None)
                if device in cache:
                    self._at[cache[device][1].ofport] = name
        return any(cache.get(d) is not popped.get(d) for d in touched)

    def displaced(self, view: BridgeView, names: Iterable[str]) -> set[str]:
        """The ports bound by a requested number that another of the
        interfaces ``names`` (which changed) now has or asks for too: bound
        there, their flows would be that interface's. Reached again, they
        lose the binding (:func:`requested_port`) until they are numbered."""
        ports = set()
        for name in names:
            iface = view.vm_ifaces.get(name)
            for n in (view.ofports.get(name), iface.requested if iface else None):
                port = self._at.get(n) if n is not None else None
                if port is not None and self._device.get(port) != name:
                    ports.add(port)
        return ports

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
    """The app's counters, and MAC tables (where it gave them) with network
    and port names."""
    networks = {lid: name for name, (lid, _) in view.networks.items()} if view else {}
    ports = {ofport: name for name, ofport in view.ofports.items()} if view else {}
    result = {}
    for bridge, data in raw.items():
        macs = None if data.get("macs") is None else tuple(
            LearnedMac(networks.get(e["lid"], "?"), e["mac"],
                       ports.get(e["port"], e["port"]), e["age"])
            for e in data["macs"])
        result[bridge] = BridgeReport(data["connected"], data["counters"], macs,
                                      data.get("flows", {}), data.get("mac_count", 0))
    return result
