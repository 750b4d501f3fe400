"""What OVSDB says about the integration bridge, read cheaply.

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


class RowCache:
    """Converted rows by table and UUID; callers hold the IDL's lock."""

    def __init__(self):
        self._rows: dict[str, dict] = {table: {} for table in EXTRACT}

    def forget(self, table: str, uuid) -> None:
        """From the IDL's notify(): the row changed or went."""
        cache = self._rows.get(table)
        if cache is not None:
            cache.pop(uuid, None)

    def get(self, table: str, row) -> tuple:
        cache = self._rows[table]
        value = cache.get(row.uuid)
        if value is None:
            value = cache[row.uuid] = EXTRACT[table](row)
        return value

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
        port_rows, iface_rows = tables["Port"].rows, tables["Interface"].rows
        names = {self.get("Interface", row).name for row in iface_rows.values()}
        view = BridgeView(registry(br.external_ids), [], {}, {}, set(), names)
        for puuid in br.ports:
            prow = port_rows.get(puuid)
            if prow is None:
                continue
            port = self.get("Port", prow)
            ids = port.external_ids
            if TUNNEL_KEY in ids:
                view.tunnels.add(port.name)
            vm = port.name != bridge and not (OWNED in ids and PHYSNET in ids)
            for iuuid in port.interfaces:
                irow = iface_rows.get(iuuid)
                if irow is None:
                    continue
                iface = self.get("Interface", irow)
                if iface.ofport is not None and iface.ofport > 0:
                    view.ofports[iface.name] = iface.ofport
                elif iface.error:
                    view.errors[iface.name] = iface.error
                if vm and iface.type not in NOT_VM:
                    view.vm_ifaces.append(VmIface(
                        iface.name, iface.type, iface.mac, iface.iface_id,
                        ids.get(PORT_NET), ids.get(ADDED) == "true", iface.status))
        return view
