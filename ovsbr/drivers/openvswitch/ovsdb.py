"""ovsbr's OVSDB client: one IDL, its row cache, and the writes ovsbr makes.

Callers pass plain values (names, ids, options); what to write is decided
in the driver and in the pure modules beside this one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator, Mapping

from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.backend.ovs_idl import transaction as ovs_transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from ovsbr.drivers.base import EventCallback
from ovsbr.drivers.openvswitch.observe import INACTIVE
from ovsbr.drivers.openvswitch.view import (
    ADDED,
    NET_KEY,
    OWNED,
    PHYSNET,
    PORT_NAME,
    PORT_NET,
    TUNNEL_KEY,
    BridgeView,
    RowCache,
    uuids,
)
from ovsbr.exceptions import DriverError
from ovsbr.privileges import group_of

# Only the columns ovsbr reads: Interface statistics change every few
# seconds and would wake the agent for nothing.
COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg", "ssl"],
    "SSL": ["private_key", "certificate", "ca_cert"],
    "Bridge": ["name", "ports", "external_ids", "datapath_type", "fail_mode",
               "protocols", "controller", "other_config"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "ofport", "ofport_request", "error", "external_ids",
                  "options", "mtu_request"],
    "Controller": ["target", "connection_mode", "controller_rate_limit",
                   "controller_burst_limit", "controller_queue_size"],
}


# A batch gets [ovs] ovsdb_timeout for every this many commands (a port
# added is three: its Port, its Port's columns, its Interface's columns):
# one transaction of 5,002 new ports took 10.3 s to be confirmed on this
# 2-core machine while ovs-vswitchd was busy, timed out against the 10 s
# default, and every port of it was reported failed (bench/wiring.py).
COMMANDS_PER_TIMEOUT = 3000


def transaction_timeout(timeout: int, commands: int) -> int:
    """Seconds a transaction of ``commands`` commands may take: ``timeout``
    (the configured one) for each started COMMANDS_PER_TIMEOUT of them."""
    return timeout * max(1, -(-commands // COMMANDS_PER_TIMEOUT))


class NoWaitTransaction(ovs_transaction.Transaction):
    """ovs-vsctl --no-wait: commit without bumping next_cfg or waiting for cur_cfg."""

    def pre_commit(self, txn):
        txn.expected_ifaces = set()  # ovsdbapp's add_port records its rows here


class _NotifyingIdl(connection.OvsdbIdl):
    """An IDL that reports each row change: wiring follows OVSDB at once."""

    on_change = None
    cache: RowCache | None = None

    def notify(self, event, row, updates=None):
        if self.cache is not None:
            table = row._table.name
            try:
                name = row.name
            except AttributeError:
                name = None
            moved = _ports_moved(self.tables, row, updates) \
                if table == "Bridge" and event == "update" else None
            self.cache.forget(table, row.uuid, name if isinstance(name, str) else None, moved)
        callback = self.on_change
        if callback is not None:
            callback(row._table.name)


# The Bridge columns a view reads besides ports: a change to one of them
# (a network recorded, a rename) is no longer one port's business.
_BRIDGE_VIEWED = frozenset(("name", "external_ids"))


def _ports_moved(tables, row, updates) -> set[str] | None:
    """For a Bridge row update that changed only its ports column (and
    columns no view reads): the names of the ports that joined or left it
    and of their interfaces; None for any other change.

    A port that left and whose row went is named by its own delete notice;
    one moved to another bridge is still in the Port table.
    """
    old = getattr(updates, "_data", None)
    if not old or "ports" not in old or _BRIDGE_VIEWED & old.keys():
        return None
    before = set(old["ports"].as_list())
    after = set(uuids(row, "ports"))
    port_rows, iface_rows = tables["Port"].rows, tables["Interface"].rows
    names = set()
    for uuid in before ^ after:
        port = port_rows.get(uuid)
        if port is None:
            continue
        names.add(port.name)
        for iuuid in uuids(port, "interfaces"):
            iface = iface_rows.get(iuuid)
            if iface is not None:
                names.add(iface.name)
    return names


def socket_hint(target: str) -> str:
    """Why a unix socket is refused to this (unprivileged) agent, if it is."""
    path = target.removeprefix("unix:")
    if path == target or not os.path.exists(path) or os.access(path, os.R_OK | os.W_OK):
        return ""
    mode = stat.filemode(os.stat(path).st_mode)
    return (f" (permission denied: {path} is {mode} for group {group_of(path)!r}; "
            "give group ovsbr read and write on it, as "
            "etc/systemd/ovsdb-server.service.d/ovsbr.conf does)")


class Ovsdb:
    """The Open_vSwitch database as ovsbr reads and writes it, for one br-int."""

    def __init__(self, target: str, timeout: int, bridge: str):
        self.target = target
        self.timeout = timeout
        self.bridge = bridge
        self.api: impl_idl.OvsdbIdl | None = None
        self.conn: connection.Connection | None = None
        self.lock = threading.RLock()  # one writer; held around the IDL's own lock
        self._cache = RowCache()
        self._view: tuple[int, BridgeView] | None = None
        self._txn = None

    # -- connection ------------------------------------------------------------
    def connect(self, on_event: EventCallback) -> None:
        try:
            helper = idlutils.get_schema_helper(self.target, "Open_vSwitch")
        except Exception as e:
            raise DriverError(f"[ovs] ovsdb_connection: cannot reach OVSDB at "
                              f"{self.target}: {e}{socket_hint(self.target)}") from e
        for table, cols in COLUMNS.items():
            helper.register_columns(table, cols)
        idl = _NotifyingIdl(self.target, helper)
        idl.cache = self._cache
        self.conn = connection.Connection(idl=idl, timeout=self.timeout)
        self.api = impl_idl.OvsdbIdl(self.conn)
        idl.on_change = on_event

    def connected(self) -> bool:
        """Whether the OVSDB session is up now (python-ovs reconnects by itself).

        python-ovs's Idl exposes no public state for this; its jsonrpc
        Session's ``is_connected()`` is the one source (a read, no I/O).
        """
        conn = self.conn
        return conn is not None and conn.idl._session.is_connected()

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.stop(timeout=5)
            self.conn = None

    # -- reading ---------------------------------------------------------------
    def view(self) -> BridgeView | None:
        """br-int as the IDL has it now, built again only after an OVSDB change."""
        with self.conn.lock:
            seq = self.conn.idl.change_seqno
            if self._view is not None and self._view[0] == seq:
                return self._view[1]
            view = self._cache.view(self.api.tables, self.bridge)
            if view is None:
                return None
            self._view = (seq, view)
            return view

    def take_changed(self) -> set[str] | None:
        """Interface and port names whose rows changed since the last call;
        None when that is not known (see RowCache.take_changed)."""
        with self.conn.lock:
            return self._cache.take_changed()

    def last_view(self) -> BridgeView | None:
        """The view the last :meth:`view` call returned, without rebuilding."""
        return None if self._view is None else self._view[1]

    def _rows(self, table: str):
        return self.api.tables[table].rows.values()

    def _bridge_row(self, name: str):
        for row in self._rows("Bridge"):
            if row.name == name:
                return row
        return None

    def missing_bridges(self, names: list[str]) -> list[str]:
        with self.lock, self.conn.lock:
            return [b for b in names if self._bridge_row(b) is None]

    def has_ssl(self) -> bool:
        with self.conn.lock:
            return any(r.ssl for r in self._rows("Open_vSwitch"))

    def port_state(self, name: str) -> tuple[bool, bool, bool]:
        """(Interface row exists, ovsbr added the Port, only prepared so far).

        Indexed lookups: a scan of every row per plug made bulk wiring
        quadratic in the number of ports.
        """
        iface = self.api.lookup("Interface", name, default=None)
        row = self.api.lookup("Port", name, default=None)
        with self.conn.lock:
            ours = row is not None and row.external_ids.get(ADDED) == "true"
            prepared = iface is not None and iface.external_ids.get("iface-status") == INACTIVE
        return iface is not None, ours, prepared

    # -- writing ---------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the commands of many calls into one OVSDB transaction.

        It does not wait for ovs-vswitchd (ovs-vsctl --no-wait): ovsdbapp's
        Open_vSwitch transactions bump next_cfg and block until cur_cfg
        follows, and each bump makes ovs-vswitchd reconfigure every port
        (75 ms at 1,000 ports here) even when only external_ids changed,
        which it otherwise ignores. The OpenFlow port numbers and errors
        ovs-vswitchd writes arrive as OVSDB updates, which wake the agent.
        """
        with self.lock:
            if self._txn is not None:
                yield
                return
            txn = NoWaitTransaction(self.api, self.conn, check_error=True)
            self._txn = txn
            try:
                yield  # an exception here leaves the transaction uncommitted
            finally:
                self._txn = None
            txn.timeout = transaction_timeout(self.timeout, len(txn.commands))
            try:
                txn.commit()
            except ovsdbapp_exceptions.TimeoutException:
                # ovsdbapp's message lists every command: megabytes for a
                # bulk, which went into each port's status and the log.
                raise DriverError(
                    f"OVSDB at {self.target} did not confirm a transaction of "
                    f"{len(txn.commands)} command(s) within {txn.timeout} s ([ovs] "
                    f"ovsdb_timeout is {self.timeout} s for every "
                    f"{COMMANDS_PER_TIMEOUT // 3:,} ports written); it may still "
                    "be applied, and the next reconcile looks again") from None

    def _add(self, command) -> None:
        if self._txn is not None:
            self._txn.add(command)
        else:
            command.execute(check_error=True)

    def ensure_integration_bridge(self, datapath_type: str, dpid: int, controller: str,
                                  rate: int, queue: int) -> bool:
        """br-int, secure, OpenFlow 1.3, with ovsbr's app as its only
        controller (``rate`` packet-ins a second, ``queue`` held while it is
        busy); True when it had to be created (it has no flows)."""
        api, br = self.api, self.bridge
        with self.conn.lock:
            created = self._bridge_row(br) is None
        with api.transaction(check_error=True) as txn:
            txn.add(api.add_br(br, may_exist=True, datapath_type=datapath_type))
            txn.add(api.db_set(
                "Bridge", br, ("fail_mode", "secure"), ("protocols", ["OpenFlow13"]),
                ("other_config", {"datapath-id": f"{dpid:016x}"}),
                ("external_ids", {OWNED: "true"})))
        with self.conn.lock:
            row = self._bridge_row(br)
            ctrl = [c for c in row.controller if c.target == controller]
        if not ctrl or len(row.controller) != 1:
            api.set_controller(br, [controller]).execute(check_error=True)
        with self.conn.lock:
            ctrl = self._bridge_row(br).controller[0]
        api.db_set("Controller", ctrl.uuid, ("connection_mode", "out-of-band"),
                   ("controller_rate_limit", rate),
                   ("controller_burst_limit", max(25, rate // 4)),
                   ("controller_queue_size", queue)).execute(check_error=True)
        return created

    def ensure_patch(self, physnet: str, bridge: str, int_side: str, phy_side: str) -> None:
        api = self.api
        with api.transaction(check_error=True) as txn:
            for br, name, peer in ((self.bridge, int_side, phy_side),
                                   (bridge, phy_side, int_side)):
                txn.add(api.add_port(br, name, may_exist=True))
                txn.add(api.db_set("Interface", name, ("type", "patch"),
                                   ("options", {"peer": peer})))
                txn.add(api.db_set("Port", name, ("external_ids", {
                    OWNED: "true", PHYSNET: physnet})))

    def record_network(self, name: str, lid: int, fingerprint: str) -> None:
        self._add(self.api.db_set("Bridge", self.bridge, ("external_ids", {
            NET_KEY + name: f"{lid} {fingerprint}"})))

    def forget_network(self, name: str) -> None:
        self._add(self.api.db_remove("Bridge", self.bridge, "external_ids",
                                     NET_KEY + name, if_exists=True))

    def delete_port_now(self, name: str) -> None:
        """Outside any batch: ovs-vswitchd must drop the old device first."""
        self.api.del_port(name, if_exists=True).execute(check_error=True)

    def write_port(self, name: str, add: bool, port_ids: Mapping[str, str],
                   iface_ids: Mapping[str, str], mtu: int | None,
                   ofport_request: int | None = None) -> None:
        """Add the Port (if ``add``) and set its and its Interface's columns;
        ``ofport_request``: the OpenFlow port to ask ovs-vswitchd for."""
        if add:
            self._add(self.api.add_port(self.bridge, name, may_exist=True))
        self._add(self.api.db_set("Port", name, ("external_ids", dict(port_ids))))
        cols = [("external_ids", dict(iface_ids))]
        if mtu:
            cols.append(("mtu_request", mtu))
        if ofport_request is not None:
            cols.append(("ofport_request", ofport_request))
        self._add(self.api.db_set("Interface", name, *cols))

    def release_port(self, name: str) -> None:
        """Unwire: delete a Port ovsbr added, unmark one someone else added."""
        port = self.api.lookup("Port", name, default=None)
        if port is None:
            return
        with self.conn.lock:
            added = port.external_ids.get(ADDED) == "true"
        if added:
            self._add(self.api.del_port(name, if_exists=True))
        else:
            self._add(self.api.db_remove("Port", name, "external_ids", PORT_NET, PORT_NAME,
                                         if_exists=True))
            self._add(self.api.db_set("Interface", name,
                                      ("external_ids", {"iface-status": INACTIVE})))

    def delete_ports(self, names: list[str]) -> None:
        with self.lock, self.api.transaction(check_error=True) as txn:
            for name in names:
                txn.add(self.api.del_port(name, if_exists=True))

    def set_tunnels(self, remove: list[str], add: Mapping[str, Mapping[str, str]],
                    kinds: Mapping[str, str], remotes: Mapping[str, str]) -> None:
        """Delete tunnel ports, add others with their type and options."""
        if not remove and not add:
            return  # no round trip for nothing (every overlay change calls this)
        api = self.api
        with api.transaction(check_error=True) as txn:
            for name in remove:
                txn.add(api.del_port(name, self.bridge, if_exists=True))
            for name, options in sorted(add.items()):
                txn.add(api.add_port(self.bridge, name, may_exist=True))
                txn.add(api.db_set("Port", name, ("external_ids", {
                    OWNED: "true", TUNNEL_KEY: remotes[name]})))
                txn.add(api.db_set("Interface", name, ("type", kinds[name]),
                                   ("options", dict(options))))

    def remove_scaffolding(self) -> None:
        """br-int and the patch ports, if ovsbr created them."""
        with self.conn.lock:
            owned_br = self._bridge_row(self.bridge)
            owned_br = owned_br is not None and owned_br.external_ids.get(OWNED) == "true"
            patches = [p.name for p in self._rows("Port")
                       if p.external_ids.get(OWNED) == "true" and PHYSNET in p.external_ids]
        with self.api.transaction(check_error=True) as txn:
            for name in patches:
                txn.add(self.api.del_port(name, if_exists=True))
            if owned_br:
                txn.add(self.api.del_br(self.bridge, if_exists=True))
