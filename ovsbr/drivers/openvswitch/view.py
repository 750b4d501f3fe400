"""What OVSDB says about the integration bridge, read cheaply (pure).

python-ovs converts a column's datum to Python on every attribute access,
and ovsbr used to read every Port and Interface row of br-int after each
OVSDB change: at 1,000 ports that was most of a reconcile (py-spy), and a
new port causes several changes (row inserted, ofport assigned). Here each
row is converted once per change to a small tuple, kept by UUID, and
dropped when the IDL reports the row changed; a view of the bridge is then
a walk over those tuples.

The view itself is kept too, and moved on by the rows that changed: a
change costs the ports it touches, not a walk of br-int (at 5,000 ports
that walk, per OVSDB change, was most of the agent's work per new port).
It is rebuilt whole at the first look, for another bridge, and whenever a
Bridge row is created, deleted or changes more than its ports: python-ovs
clears its tables on a reconnect without reporting deletions, then reports
every row (the Bridge rows too) as created again.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

NET_KEY = "ovsbr-net-"
OWNED = "ovsbr-owned"
PORT_NET = "ovsbr-network"
PORT_NAME = "ovsbr-port"
ADDED = "ovsbr-added"
PHYSNET = "ovsbr-physnet"
TUNNEL_KEY = "ovsbr-tunnel"  # external_ids of a tunnel port: its remote endpoint
TUNNEL_TYPES = ("vxlan", "geneve")
NOT_VM = ("patch", "internal", *TUNNEL_TYPES)


def _scalar(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


class BridgeRow(NamedTuple):
    name: str
    ports: tuple  # Port UUIDs
    external_ids: dict


class PortRow(NamedTuple):
    name: str
    interfaces: tuple  # Interface UUIDs
    external_ids: dict


class IfaceRow(NamedTuple):
    name: str
    type: str
    mac: str | None  # external_ids:attached-mac
    iface_id: str | None  # external_ids:iface-id
    ofport: int | None
    error: str | None
    status: str | None  # external_ids:iface-status
    ofport_request: int | None


def uuids(row, column: str) -> tuple:
    """The UUIDs a set-of-references column holds.

    Straight from the committed datum: ``row.ports`` builds a Row object per
    reference, and br-int's ports column (1,000 references) changes with
    every port added: that conversion was a sixth of the single-port time.
    """
    datum = (getattr(row, "_data", None) or {}).get(column)
    if datum is None:
        return tuple(r.uuid for r in getattr(row, column))
    return tuple(datum.as_list())


def _bridge(row) -> BridgeRow:
    return BridgeRow(row.name, uuids(row, "ports"), dict(row.external_ids))


def _port(row) -> PortRow:
    return PortRow(row.name, uuids(row, "interfaces"), dict(row.external_ids))


def _iface(row) -> IfaceRow:
    ids = row.external_ids
    return IfaceRow(row.name, row.type, ids.get("attached-mac"), ids.get("iface-id"),
                    _scalar(row.ofport), _scalar(row.error), ids.get("iface-status"),
                    _scalar(row.ofport_request))


EXTRACT: dict[str, Callable[[Any], tuple]] = {
    "Bridge": _bridge, "Port": _port, "Interface": _iface}


def registry(external_ids: dict) -> dict[str, tuple[int, str]]:
    """Networks recorded on br-int: name -> (local id, fingerprint)."""
    nets = {}
    for key, value in external_ids.items():
        if key.startswith(NET_KEY):
            lid, _, fp = value.partition(" ")
            with contextlib.suppress(ValueError):
                nets[key[len(NET_KEY):]] = (int(lid), fp)
    return nets


@dataclasses.dataclass
class VmIface:
    """An interface on br-int that may be a VM's port."""

    name: str
    type: str
    mac: str | None
    iface_id: str | None
    network: str | None  # the ovsbr network its Port is marked with
    added: bool  # ovsbr created the Port row (and removes it)
    status: str | None = None  # iface-status: "inactive" while only prepared
    port: str | None = None  # the ovsbr port its Port row is marked with
    requested: int | None = None  # ofport_request: the OpenFlow port asked for


@dataclasses.dataclass
class BridgeView:
    """br-int as the last :meth:`RowCache.view` saw it.

    The cache moves this object on in place at its next look: a caller
    reads it now and keeps what it needs, not the view.
    """

    networks: dict[str, tuple[int, str]]
    vm_ifaces: dict[str, VmIface]  # by interface name
    ofports: dict[str, int]  # every br-int interface with an OpenFlow port
    errors: dict[str, str]  # interfaces ovs-vswitchd could not open, and why
    tunnels: set[str]  # names of ovsbr's tunnel ports
    names: collections.Counter  # every interface name in OVSDB, on any bridge
    # OpenFlow port -> the br-int interfaces that have it (one, in any
    # snapshot OVS gives); and the numbers VM interfaces asked for
    # (ofport_request), counted: no number in either is free for another
    # port (bindings.OfportRequests).
    at: dict[int, set[str]] = dataclasses.field(default_factory=dict)
    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class PortEntry(NamedTuple):
    """What one br-int Port adds to a view: its tunnel name and interfaces."""

    tunnel: str | None
    ifaces: tuple  # (name, OpenFlow port or None, error or None, VmIface or None)


class RowCache:
    """Converted rows by table and UUID, and br-int's view; callers hold the
    IDL's lock.

    ``forget`` (from the IDL's notify) marks what changed; the next ``view``
    reads those rows again and moves the kept view on by them: each br-int
    Port's part (:class:`PortEntry`) is taken out and put back, and the
    interface names are counted per row.
    """

    def __init__(self):
        self._rows: dict[str, dict] = {table: {} for table in EXTRACT}
        self._ports: dict = {}  # Port UUID -> its PortEntry, as in the view
        self._owner: dict = {}  # Interface UUID -> the Port UUID whose entry read it
        self._bridge: str | None = None
        self._view: BridgeView | None = None  # None: build whole at the next look
        self._members: frozenset = frozenset()  # the Port UUIDs the view holds
        self._dirty: set = set()  # Port UUIDs to read again
        self._dirty_ifaces: set = set()  # Interface UUIDs whose name to count again
        self._iface_names: dict = {}  # Interface UUID -> the name counted for it
        self._holder: dict[str, Any] = {}  # interface name -> the Port UUID in the view
        self._bridge_moved = False  # br-int's ports column changed, nothing else
        # Names of the interfaces and ports whose rows changed since the last
        # take_changed(); None: unknown (at start, or a Bridge row changed).
        self._changed: set[str] | None = None

    def take_changed(self) -> set[str] | None:
        """What changed since the last call (see ``_changed``); start afresh."""
        changed, self._changed = self._changed, set()
        return changed

    def forget(self, table: str, uuid, name: str | None = None,
               moved: Iterable[str] | None = None) -> None:
        """From the IDL's notify(): the row (named ``name``) changed or went.

        ``moved``, for a Bridge row: its ports column alone changed, and
        these are the names of the ports (and their interfaces) that joined
        or left it; without it a Bridge change means anything may have.
        """
        cache = self._rows.get(table)
        if cache is not None:
            cache.pop(uuid, None)
        if table == "Bridge":
            if moved is None:
                self._view = None
                self._changed = None
            else:
                self._bridge_moved = True
                if self._changed is not None:
                    self._changed.update(moved)
            return
        if self._changed is not None and table in EXTRACT:
            if name is None:
                self._changed = None
            else:
                self._changed.add(name)
                entry = self._ports.get(uuid) if table == "Port" else None
                if entry is not None:  # its interfaces' network mark may move
                    self._changed.update(i[0] for i in entry.ifaces)
        if table == "Port":
            self._dirty.add(uuid)
        elif table == "Interface":
            self._dirty_ifaces.add(uuid)
            owner = self._owner.get(uuid)
            if owner is not None:
                self._dirty.add(owner)

    def get(self, table: str, row) -> tuple:
        cache = self._rows[table]
        value = cache.get(row.uuid)
        if value is None:
            value = cache[row.uuid] = EXTRACT[table](row)
        return value

    def _entry(self, puuid, port_rows, iface_rows, bridge: str) -> PortEntry | None:
        prow = port_rows.get(puuid)
        if prow is None:
            return None
        port = self.get("Port", prow)
        ids = port.external_ids
        vm = port.name != bridge and not (OWNED in ids and PHYSNET in ids)
        ifaces = []
        for iuuid in port.interfaces:
            # Recorded even when the row is not here yet: its arrival must
            # read this entry again.
            self._owner[iuuid] = puuid
            irow = iface_rows.get(iuuid)
            if irow is None:
                continue
            iface = self.get("Interface", irow)
            ofport = iface.ofport if iface.ofport is not None and iface.ofport > 0 else None
            vm_iface = None
            if vm and iface.type not in NOT_VM:
                vm_iface = VmIface(iface.name, iface.type, iface.mac, iface.iface_id,
                                   ids.get(PORT_NET), ids.get(ADDED) == "true", iface.status,
                                   ids.get(PORT_NAME), iface.ofport_request)
            ifaces.append((iface.name, ofport, iface.error, vm_iface))
        return PortEntry(port.name if TUNNEL_KEY in ids else None, tuple(ifaces))

    def _put(self, puuid, entry: PortEntry) -> None:
        view = self._view
        self._ports[puuid] = entry
        if entry.tunnel is not None:
            view.tunnels.add(entry.tunnel)
        for name, ofport, error, vm_iface in entry.ifaces:
            self._holder[name] = puuid
            if ofport is not None:
                view.ofports[name] = ofport
                view.at.setdefault(ofport, set()).add(name)
            elif error:
                view.errors[name] = error
            if vm_iface is not None:
                view.vm_ifaces[name] = vm_iface
                if vm_iface.requested is not None:
                    view.requests[vm_iface.requested] += 1

    def _take(self, puuid) -> None:
        """Take a port's part out of the view (what another port holds stays)."""
        entry = self._ports.pop(puuid, None)
        if entry is None:
            return
        view = self._view
        if entry.tunnel is not None:
            view.tunnels.discard(entry.tunnel)
        for name, *_ in entry.ifaces:
            if self._holder.get(name) == puuid:
                del self._holder[name]
                ofport = view.ofports.pop(name, None)
                holders = view.at.get(ofport)
                if holders is not None:
                    holders.discard(name)
                    if not holders:
                        del view.at[ofport]
                view.errors.pop(name, None)
                vm_iface = view.vm_ifaces.pop(name, None)
                if vm_iface is not None and vm_iface.requested is not None:
                    view.requests[vm_iface.requested] -= 1
                    if not view.requests[vm_iface.requested]:
                        del view.requests[vm_iface.requested]

    def _count(self, iuuid, iface_rows) -> None:
        names = self._view.names
        old = self._iface_names.pop(iuuid, None)
        if old is not None:
            names[old] -= 1
            if not names[old]:
                del names[old]
        row = iface_rows.get(iuuid)
        if row is not None:
            name = self._iface_names[iuuid] = self.get("Interface", row).name
            names[name] += 1

    def view(self, tables: dict, bridge: str) -> BridgeView | None:
        """br-int's networks and ports, or None when the bridge is missing."""
        br = None
        for row in tables["Bridge"].rows.values():
            info = self.get("Bridge", row)
            if info.name == bridge:
                br = info
                break
        if br is None:
            self._view = None
            return None
        port_rows, iface_rows = tables["Port"].rows, tables["Interface"].rows
        if self._view is None or bridge != self._bridge:
            return self._build(br, port_rows, iface_rows, bridge)
        view = self._view
        if self._bridge_moved:
            self._bridge_moved = False
            members = frozenset(br.ports)
            for puuid in self._members - members:
                self._take(puuid)
            self._dirty.update(members - self._members)
            self._members = members
        for iuuid in self._dirty_ifaces:
            self._count(iuuid, iface_rows)
        self._dirty_ifaces.clear()
        for puuid in self._dirty:
            self._take(puuid)
            if puuid in self._members:
                entry = self._entry(puuid, port_rows, iface_rows, bridge)
                if entry is not None:
                    self._put(puuid, entry)
        self._dirty.clear()
        return view

    def _build(self, br: BridgeRow, port_rows, iface_rows, bridge: str) -> BridgeView:
        """The whole view, from every row (see the module docstring for when)."""
        self._ports.clear()
        self._owner.clear()
        self._holder.clear()
        self._iface_names.clear()
        self._dirty.clear()
        self._dirty_ifaces.clear()
        self._bridge, self._bridge_moved = bridge, False
        self._members = frozenset(br.ports)
        view = self._view = BridgeView(registry(br.external_ids), {}, {}, {}, set(),
                                       collections.Counter())
        for iuuid in iface_rows:
            self._count(iuuid, iface_rows)
        for puuid in br.ports:
            entry = self._entry(puuid, port_rows, iface_rows, bridge)
            if entry is not None:
                self._put(puuid, entry)
        return view
