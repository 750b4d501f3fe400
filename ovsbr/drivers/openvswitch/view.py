"""What OVSDB says about the integration bridge, read cheaply (pure).

python-ovs converts a column's datum to Python on every attribute access,
and ovsbr used to read every Port and Interface row of br-int after each
OVSDB change: at 1,000 ports that was most of a reconcile (py-spy), and a
new port causes several changes (row inserted, ofport assigned). Here each
row is converted once per change to a small tuple, kept by UUID, and
dropped when the IDL reports the row changed; a view of the bridge is then
a walk over those tuples.

The cache is keyed by UUID and every lookup starts from the IDL's own
tables, so it stays right across a reconnect (python-ovs clears its tables
without reporting deletions, then reports every row as created again).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

NET_KEY = "ovsbr-net-"
OWNED = "ovsbr-owned"
PORT_NET = "ovsbr-network"
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


def _uuids(row, column: str) -> tuple:
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
    return BridgeRow(row.name, _uuids(row, "ports"), dict(row.external_ids))


def _port(row) -> PortRow:
    return PortRow(row.name, _uuids(row, "interfaces"), dict(row.external_ids))


def _iface(row) -> IfaceRow:
    ids = row.external_ids
    return IfaceRow(row.name, row.type, ids.get("attached-mac"), ids.get("iface-id"),
                    _scalar(row.ofport), _scalar(row.error), ids.get("iface-status"))


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


@dataclasses.dataclass
class BridgeView:
    """br-int as one IDL change sequence number saw it."""

    networks: dict[str, tuple[int, str]]
    vm_ifaces: list[VmIface]
    ofports: dict[str, int]  # every br-int interface with an OpenFlow port
    errors: dict[str, str]  # interfaces ovs-vswitchd could not open, and why
    tunnels: set[str]  # names of ovsbr's tunnel ports
    names: set[str]  # every interface name in OVSDB, on any bridge


class PortEntry(NamedTuple):
    """What one br-int Port adds to a view: its tunnel name and interfaces."""

    tunnel: str | None
    ifaces: tuple  # (name, OpenFlow port or None, error or None, VmIface or None)


class RowCache:
    """Converted rows by table and UUID; callers hold the IDL's lock.

    On top of the rows, each br-int Port's part of the view is kept until
    the Port or one of its Interfaces changes: a view then costs a lookup
    per port, not a walk through its rows (a new port makes several OVSDB
    changes, each followed by a view).
    """

    def __init__(self):
        self._rows: dict[str, dict] = {table: {} for table in EXTRACT}
        self._ports: dict = {}  # Port UUID -> PortEntry
        self._owner: dict = {}  # Interface UUID -> the Port UUID whose entry read it
        self._bridge: str | None = None
        # Names of the interfaces and ports whose rows changed since the last
        # take_changed(); None: unknown (at start, or a Bridge row changed).
        self._changed: set[str] | None = None

    def take_changed(self) -> set[str] | None:
        """What changed since the last call (see ``_changed``); start afresh."""
        changed, self._changed = self._changed, set()
        return changed

    def forget(self, table: str, uuid, name: str | None = None) -> None:
        """From the IDL's notify(): the row (named ``name``) changed or went."""
        cache = self._rows.get(table)
        if cache is not None:
            cache.pop(uuid, None)
        if self._changed is not None and table in EXTRACT:
            if table == "Bridge" or name is None:
                self._changed = None
            else:
                self._changed.add(name)
                entry = self._ports.get(uuid) if table == "Port" else None
                if entry is not None:  # its interfaces' network mark may move
                    self._changed.update(i[0] for i in entry.ifaces)
        if table == "Port":
            self._ports.pop(uuid, None)
        elif table == "Interface":
            owner = self._owner.pop(uuid, None)
            if owner is not None:
                self._ports.pop(owner, None)

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
            # drop this entry.
            self._owner[iuuid] = puuid
            irow = iface_rows.get(iuuid)
            if irow is None:
                continue
            iface = self.get("Interface", irow)
            ofport = iface.ofport if iface.ofport is not None and iface.ofport > 0 else None
            vm_iface = None
            if vm and iface.type not in NOT_VM:
                vm_iface = VmIface(iface.name, iface.type, iface.mac, iface.iface_id,
                                   ids.get(PORT_NET), ids.get(ADDED) == "true", iface.status)
            ifaces.append((iface.name, ofport, iface.error, vm_iface))
        entry = PortEntry(port.name if TUNNEL_KEY in ids else None, tuple(ifaces))
        self._ports[puuid] = entry
        return entry

    def view(self, tables: dict, bridge: str) -> BridgeView | None:
        """br-int's networks and ports, or None when the bridge is missing."""
        br = None
        for row in tables["Bridge"].rows.values():
            info = self.get("Bridge", row)
            if info.name == bridge:
                br = info
                break
        if br is None:
            return None
        if bridge != self._bridge or len(self._ports) > 2 * len(br.ports) + 64:
            # Another bridge, or entries of ports gone without a notice
            # (python-ovs reconnects that way): start the entries over.
            self._ports.clear()
            self._owner.clear()
            self._bridge = bridge
        port_rows, iface_rows = tables["Port"].rows, tables["Interface"].rows
        names = {self.get("Interface", row).name for row in iface_rows.values()}
        view = BridgeView(registry(br.external_ids), [], {}, {}, set(), names)
        entries = self._ports
        for puuid in br.ports:
            entry = entries.get(puuid)
            if entry is None:
                entry = self._entry(puuid, port_rows, iface_rows, bridge)
                if entry is None:
                    continue
            if entry.tunnel is not None:
                view.tunnels.add(entry.tunnel)
            for name, ofport, error, vm_iface in entry.ifaces:
                if ofport is not None:
                    view.ofports[name] = ofport
                elif error:
                    view.errors[name] = error
                if vm_iface is not None:
                    view.vm_ifaces.append(vm_iface)
        return view
