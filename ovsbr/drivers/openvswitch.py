"""The openvswitch datapath: OVSDB through ovsdbapp, flows from ovsbr's app.

Layout (as Neutron's): one integration bridge (``br-int``) holds every VM
port; each physical network's bridge from ``bridge_mappings`` (``br-ex``,
which holds the NIC and stays the operator's) is joined to it by a pair of
patch ports. ``br-int`` runs ``fail_mode=secure`` with its controller set
to the agent's own OpenFlow listener, where the L2-learning app keeps the
pipeline of :mod:`ovsbr.openflow.pipeline`: VM ports are access ports,
the patch port is a trunk, and VLAN tags are pushed and popped only there.

State lives in OVSDB itself, so a restarted agent adopts it instead of
rebuilding: networks as ``external_ids:ovsbr-net-<name>`` on br-int (their
id and fingerprint), wired ports as ``external_ids:ovsbr-network`` on the
Port, and ``ovsbr-owned`` on everything ovsbr created. Only marked rows are
ever deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator

from oslo_config import cfg
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.backend.ovs_idl import transaction as ovs_transaction
from ovsdbapp.schema.open_vswitch import impl_idl
from pyroute2 import IPRoute

from ovsbr.conf.mappings import parse_mappings
from ovsbr.drivers import names
from ovsbr.drivers.base import (
    Device,
    Driver,
    EventCallback,
    NetworkState,
    NotReady,
    Observed,
)
from ovsbr.drivers.netlink import LinkTable
from ovsbr.drivers.ovsdb_view import (
    ADDED,
    NET_KEY,
    OWNED,
    PHYSNET,
    PORT_NET,
    TUNNEL_KEY,
    TUNNEL_TYPES,
    BridgeView,
    RowCache,
)
from ovsbr.exceptions import ConfigError, DriverError
from ovsbr.model import IFNAME_RE, Network, Port, Topology
from ovsbr.openflow import pipeline as pl

LOG = logging.getLogger(__name__)
PORT_NAME = "ovsbr-port"
# iface-status: wired by ovsbr / its tap not there yet, or no longer ovsbr's
ACTIVE, INACTIVE = "active", "inactive"

# Only the columns ovsbr reads: Interface statistics change every few
# seconds and would wake the agent for nothing.
COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg", "ssl"],
    "SSL": ["private_key", "certificate", "ca_cert"],
    "Bridge": ["name", "ports", "external_ids", "datapath_type", "fail_mode",
               "protocols", "controller", "other_config"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "ofport", "error", "external_ids", "options",
                  "mtu_request"],
    "Controller": ["target", "connection_mode", "controller_rate_limit",
                   "controller_burst_limit"],
}
GENEVE_PORT = 6081  # IANA
OVERLAY_MTU = 1450  # a 1500-byte underlay minus VXLAN/Geneve (no options) headers
OVSDB_RE = re.compile(r"^(unix:/.+|(tcp|ssl):[0-9a-fA-F.:\[\]]+:\d+)$")


def datapath_id(bridge: str) -> int:
    """A stable dpid per bridge name, so the app knows which bridge called."""
    return int(hashlib.sha1(bridge.encode()).hexdigest()[:15], 16)


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
            self.cache.forget(row._table.name, row.uuid)
        callback = self.on_change
        if callback is not None:
            callback(row._table.name)


def tls_context(key: str, cert: str, ca: str) -> ssl.SSLContext:
    """Mutual TLS: the controller proves itself and admits only CA-signed switches."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("[ovs] of_ssl_cert_file",
                          f"cannot load the controller's TLS files: {e}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class OpenvSwitchDriver(Driver):
    name = "openvswitch"
    prepares = True  # a Port row without its device: ovs-vswitchd opens it when it appears

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(conf)
        self.ovs = conf.ovs
        self.br_int = self.ovs.integration_bridge
        self.mappings: dict[str, str] = {}
        self.api: impl_idl.OvsdbIdl | None = None
        self.conn: connection.Connection | None = None
        self.runtime = None
        self.app = None
        self.ssl_context: ssl.SSLContext | None = None
        self._overlay: dict = {}
        self.links = LinkTable()
        self._txn = None
        self._cache = RowCache()
        self._bindings: dict[str, tuple[tuple, pl.PortBinding]] = {}
        self._view: tuple[int, BridgeView] | None = None
        self._ipr: IPRoute | None = None
        self._lock = threading.RLock()
        self.dpid = datapath_id(self.br_int)

    # -- configuration -------------------------------------------------------
    def check_config(self) -> None:
        if not IFNAME_RE.match(self.br_int or ""):
            raise ConfigError("[ovs] integration_bridge",
                              f"{self.br_int!r} is not a valid bridge name")
        self.mappings = parse_mappings("[ovs] bridge_mappings", self.ovs.bridge_mappings,
                                       "BRIDGE")
        if self.br_int in self.mappings.values():
            raise ConfigError("[ovs] bridge_mappings",
                              f"{self.br_int} is the integration bridge, not a physical one")
        if not OVSDB_RE.match(self.ovs.ovsdb_connection or ""):
            raise ConfigError("[ovs] ovsdb_connection",
                              f"{self.ovs.ovsdb_connection!r} is not unix:PATH, "
                              "tcp:IP:PORT or ssl:IP:PORT")
        try:
            addr = ipaddress.ip_address(self.ovs.of_listen_address)
        except ValueError:
            raise ConfigError("[ovs] of_listen_address",
                              f"{self.ovs.of_listen_address!r} is not an IP address") from None
        tls = self._tls_files()
        if not addr.is_loopback and not tls:
            raise ConfigError("[ovs] of_listen_address",
                              f"{addr} is not a loopback address: without TLS the "
                              "OpenFlow listener accepts any switch that connects, so "
                              "it binds only 127.0.0.1 or ::1 unless of_ssl_key_file, "
                              "of_ssl_cert_file and of_ssl_ca_cert_file are set")
        self.ssl_context = tls_context(*tls) if tls else None

    def _tls_files(self) -> tuple[str, str, str] | None:
        """The controller's TLS files: all three, or none."""
        names = ("of_ssl_key_file", "of_ssl_cert_file", "of_ssl_ca_cert_file")
        values = [getattr(self.ovs, n) for n in names]
        if not any(values):
            return None
        for name, value in zip(names, values, strict=True):
            if not value:
                raise ConfigError(f"[ovs] {name}", "required when any of "
                                  f"{', '.join(names)} is set")
            if not os.access(value, os.R_OK):
                raise ConfigError(f"[ovs] {name}", f"{value!r} is not a readable file")
        return values[0], values[1], values[2]

    def describe(self) -> str:
        maps = ",".join(f"{k}:{v}" for k, v in sorted(self.mappings.items())) or "none"
        return (f"openvswitch (integration bridge {self.br_int}, datapath "
                f"{self.ovs.datapath_type}, bridge mappings {maps}, OpenFlow on "
                f"{self.ovs.of_listen_address}:{self.ovs.of_listen_port})")

    # -- life cycle ------------------------------------------------------------
    def start(self, on_event: EventCallback) -> None:
        self._connect(on_event)
        self._start_controller()
        self._ensure_bridges()
        self.links._on_change = on_event
        self.links.start()
        self.links.refresh()

    def _connect(self, on_event: EventCallback) -> None:
        target = self.ovs.ovsdb_connection
        try:
            helper = idlutils.get_schema_helper(target, "Open_vSwitch")
        except Exception as e:
            raise DriverError(f"[ovs] ovsdb_connection: cannot reach OVSDB at {target}: "
                              f"{e}") from e
        for table, cols in COLUMNS.items():
            helper.register_columns(table, cols)
        idl = _NotifyingIdl(target, helper)
        idl.cache = self._cache
        self.conn = connection.Connection(idl=idl, timeout=self.ovs.ovsdb_timeout)
        self.api = impl_idl.OvsdbIdl(self.conn)
        idl.on_change = on_event

    def _start_controller(self) -> None:
        from ovsbr.openflow.runtime import ControllerRuntime

        listen = (self.ovs.of_listen_address, self.ovs.of_listen_port)
        self.runtime = ControllerRuntime("ovsbr.openflow.l2_learning", listen,
                                         self.ssl_context)
        try:
            apps = self.runtime.start()
        except OSError as e:
            raise DriverError(f"[ovs] of_listen_port: {e}") from e
        self.app = apps["ovsbr_l2"]
        of = self.conf.openflow
        self.app.configure(int(time.time()), of.mac_aging_time, of.max_macs_per_port)
        self.app.bridge(self.dpid, self.br_int)

    def stop(self) -> None:
        self.links.stop()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
        if self.conn is not None:
            self.conn.stop(timeout=5)
            self.conn = None

    def resync(self) -> None:
        self.links.refresh()

    # -- OVSDB helpers -----------------------------------------------------------
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
        with self._lock:
            if self._txn is not None:
                yield
                return
            with NoWaitTransaction(self.api, self.conn, check_error=True) as txn:
                self._txn = txn
                try:
                    yield
                finally:
                    self._txn = None

    def _add(self, command) -> None:
        if self._txn is not None:
            self._txn.add(command)
        else:
            command.execute(check_error=True)

    def _rows(self, table: str):
        return self.api.tables[table].rows.values()

    def _bridge_row(self, name: str):
        for row in self._rows("Bridge"):
            if row.name == name:
                return row
        return None

    def _ensure_bridges(self) -> None:
        ovs, api = self.ovs, self.api
        with self._lock, self.conn.lock:
            missing = [b for b in self.mappings.values() if self._bridge_row(b) is None]
        if missing:
            raise DriverError(f"[ovs] bridge_mappings: bridge {missing[0]} does not exist "
                              "in OVSDB; create it and add the NIC to it, as for Neutron")
        target = self.controller_target()
        if self.ssl_context is not None:
            with self.conn.lock:
                ssl_rows = self.api.tables["Open_vSwitch"].rows.values()
                has_ssl = any(r.ssl for r in ssl_rows)
            if not has_ssl:
                raise DriverError("[ovs] of_ssl_key_file: TLS is configured for the "
                                  "controller but Open vSwitch has no SSL key and "
                                  "certificate of its own (ovs-vsctl set-ssl KEY CERT CA)")
        with api.transaction(check_error=True) as txn:
            txn.add(api.add_br(self.br_int, may_exist=True,
                               datapath_type=ovs.datapath_type))
            txn.add(api.db_set(
                "Bridge", self.br_int, ("fail_mode", "secure"),
                ("protocols", ["OpenFlow13"]),
                ("other_config", {"datapath-id": f"{self.dpid:016x}"}),
                ("external_ids", {OWNED: "true"})))
        with self.conn.lock:
            br = self._bridge_row(self.br_int)
            ctrl = [c for c in br.controller if c.target == target]
        if not ctrl or len(br.controller) != 1:
            self.api.set_controller(self.br_int, [target]).execute(check_error=True)
        with self.conn.lock:
            ctrl = self._bridge_row(self.br_int).controller[0]
        rate = self.conf.openflow.packet_in_rate
        self.api.db_set("Controller", ctrl.uuid, ("connection_mode", "out-of-band"),
                        ("controller_rate_limit", rate),
                        ("controller_burst_limit", max(25, rate // 4))).execute(
                            check_error=True)
        for physnet, bridge in sorted(self.mappings.items()):
            self._ensure_patch(physnet, bridge)

    def controller_target(self) -> str:
        """The switch's view of the controller: ssl: when TLS is configured."""
        proto = "ssl" if self.ssl_context is not None else "tcp"
        addr = self.ovs.of_listen_address
        if ":" in addr:
            addr = f"[{addr}]"
        return f"{proto}:{addr}:{self.ovs.of_listen_port}"

    def patch_names(self, bridge: str) -> tuple[str, str]:
        return names.ifname("int-", bridge), names.ifname("phy-", bridge)

    def _ensure_patch(self, physnet: str, bridge: str) -> None:
        int_side, phy_side = self.patch_names(bridge)
        api = self.api
        with api.transaction(check_error=True) as txn:
            for br, name, peer in ((self.br_int, int_side, phy_side),
                                   (bridge, phy_side, int_side)):
                txn.add(api.add_port(br, name, may_exist=True))
                txn.add(api.db_set("Interface", name, ("type", "patch"),
                                   ("options", {"peer": peer})))
                txn.add(api.db_set("Port", name, ("external_ids", {
                    OWNED: "true", PHYSNET: physnet})))

    # -- observation -------------------------------------------------------------
    def fingerprint(self, net: Network) -> str:
        return "/".join(str(x) for x in (net.type, net.physical_network or "-",
                                         net.segmentation_id or "-", net.mtu or "-"))

    def _ovsdb_view(self) -> BridgeView | None:
        """br-int as the IDL has it now, built again only after an OVSDB change."""
        with self.conn.lock:
            seq = self.conn.idl.change_seqno
            if self._view is not None and self._view[0] == seq:
                return self._view[1]
            view = self._cache.view(self.api.tables, self.br_int)
            if view is None:
                return None
            self._view = (seq, view)
            return view

    def observe(self) -> Observed:
        self.links.refresh_if_stale()
        view = self._ovsdb_view()
        if view is None:
            # Deleted by hand (or never made): rebuild it; the taps it held
            # are kernel devices again and the reconciler re-plugs them.
            LOG.warning("integration bridge %s is missing; recreating it", self.br_int)
            self._ensure_bridges()
            view = self._ovsdb_view() or BridgeView({}, [], {}, {}, set(), set())
        observed = Observed()
        links = self.links.snapshot().values()
        kernel = {link.name: link.up for link in links}
        for name, (_, fp) in view.networks.items():
            observed.networks[name] = NetworkState(name, fp)
        for iface in view.vm_ifaces:
            name, itype = iface.name, iface.type
            if not itype and name not in kernel:
                # No tap (yet, or any more): a row ovs-vswitchd never opened
                # is a prepared port; one it had open is stale and sync()
                # removes it if ovsbr added it (then it is prepared afresh).
                if name not in view.ofports:
                    observed.prepared[name] = iface.network
                continue
            # A tap that is down (e.g. recreated under the same name) is not
            # wired yet: plugging brings it up and makes ovs-vswitchd reopen
            # it; nor is a prepared port whose tap just appeared.
            wired = itype or (kernel[name] and iface.status != INACTIVE)
            observed.devices[name] = Device(name, iface.mac, iface.iface_id,
                                            iface.network if wired else None)
        for link in links:
            if link.name in view.names or link.name == "lo" or link.kind in (
                    "openvswitch", "bridge") or link.name in observed.devices:
                continue
            observed.devices[link.name] = Device(link.name, link.mac)
        return observed

    # -- operations --------------------------------------------------------------
    def ensure_network(self, net: Network) -> None:
        if net.type in ("flat", "vlan") and net.physical_network not in self.mappings:
            raise DriverError(f"physical network {net.physical_network!r} has no entry "
                              "in [ovs] bridge_mappings on this host")
        with self._lock:
            view = self._ovsdb_view()
            nets = view.networks if view is not None else {}
            lid = nets.get(net.name, (None, None))[0]
            if lid is None:
                used = {v[0] for v in nets.values()}
                lid = next((i for i in range(1, pl.MAX_LID + 1) if i not in used), None)
                if lid is None:
                    raise DriverError(f"no free network id on {self.br_int} "
                                      f"(at most {pl.MAX_LID} networks)")
            self._add(self.api.db_set("Bridge", self.br_int, ("external_ids", {
                NET_KEY + net.name: f"{lid} {self.fingerprint(net)}"})))

    def delete_network(self, name: str) -> None:
        with self._lock:
            self._add(self.api.db_remove("Bridge", self.br_int, "external_ids",
                                         NET_KEY + name, if_exists=True))

    def plug(self, port: Port, net: Network, device: Device) -> None:
        with self._lock, self.batch():
            # Indexed lookups: a scan of every row per plug made bulk wiring
            # quadratic in the number of ports.
            iface = self.api.lookup("Interface", device.name, default=None)
            row = self.api.lookup("Port", device.name, default=None)
            with self.conn.lock:
                ours = row is not None and row.external_ids.get(ADDED) == "true"
                prepared = iface is not None and \
                    iface.external_ids.get("iface-status") == INACTIVE
            link = self.links.by_name(device.name)
            if iface is not None and ours and not prepared and link is not None \
                    and not link.up:
                # Our port, but its tap was deleted and created again under
                # the same name: ovs-vswitchd keeps the old device open until
                # the port is re-added.
                self.api.del_port(device.name, if_exists=True).execute(check_error=True)
                iface = None
            self._link_up(device.name)
            self._write_port(port, net, device.name, add=iface is None, status=ACTIVE,
                             iface_id=port.iface_id if not device.iface_id else None)

    def prepare(self, port: Port, net: Network) -> None:
        """A Port row for a tap that does not exist yet, as os-vif plugs before boot.

        ovs-vswitchd retries rows it could not open whenever a network
        device appears, so the tap is on br-int with an OpenFlow port one
        reconfiguration after the kernel creates it, without waiting for the
        agent to see it and add the row (a second reconfiguration).
        """
        with self._lock, self.batch():
            known = self.api.lookup("Interface", port.device, default=None) is not None
            self._write_port(port, net, port.device, add=not known, status=INACTIVE,
                             iface_id=port.iface_id)

    def _write_port(self, port: Port, net: Network, name: str, add: bool, status: str,
                    iface_id: str | None) -> None:
        if add:
            self._add(self.api.add_port(self.br_int, name, may_exist=True))
            port_ids = {PORT_NET: net.name, PORT_NAME: port.name, ADDED: "true",
                        OWNED: "true"}
        else:
            port_ids = {PORT_NET: net.name, PORT_NAME: port.name}
        self._add(self.api.db_set("Port", name, ("external_ids", port_ids)))
        iface_ids = {"iface-status": status}
        if port.mac:
            iface_ids["attached-mac"] = port.mac
        if iface_id:
            iface_ids["iface-id"] = iface_id
        cols = [("external_ids", iface_ids)]
        mtu = net.mtu or (OVERLAY_MTU if net.type in TUNNEL_TYPES else None)
        if mtu:
            cols.append(("mtu_request", mtu))
        self._add(self.api.db_set("Interface", name, *cols))

    def _link_up(self, name: str) -> None:
        """A tap ovsbr plugs is brought up, as libvirt and os-vif do."""
        link = self.links.by_name(name)
        if link is None or link.up:
            return
        if self._ipr is None:  # made and used on the agent's reconcile thread
            self._ipr = IPRoute()
        try:
            self._ipr.link("set", index=link.index, state="up")
        except Exception as e:  # the device may vanish under us
            raise DriverError(f"cannot bring {name} up: {e}") from e

    def unplug(self, device: Device) -> None:
        with self._lock, self.batch():
            port = self.api.lookup("Port", device.name, default=None)
            with self.conn.lock:
                added = port is not None and port.external_ids.get(ADDED) == "true"
            if port is None:
                return
            if added:
                self._add(self.api.del_port(device.name, if_exists=True))
            else:
                self._add(self.api.db_remove("Port", device.name, "external_ids",
                                             PORT_NET, PORT_NAME, if_exists=True))
                self._add(self.api.db_set("Interface", device.name,
                                          ("external_ids", {"iface-status": INACTIVE})))

    def sync(self, desired: Topology, bound: dict[str, Device]) -> dict[str, NotReady]:
        """Drop rows of vanished taps; hand the app the port and uplink bindings.

        A port is not reported ready until ovs-vswitchd has given its
        interface an OpenFlow port number and its flows went to the switch:
        "bound" means the VM can talk, as ovs-vsctl's wait for ovs-vswitchd.
        """
        self._forget_vanished()
        view = self._ovsdb_view()
        if view is None:
            return {}
        nets, ofports = view.networks, view.ofports
        ports, not_ready = [], {}
        # Bindings are rebuilt on every reconcile; most are the same as last
        # time (same Port object, ofport and network id): reuse those, which
        # also makes the app's comparison an identity check.
        last, self._bindings = self._bindings, {}
        for pname, dev in bound.items():
            port = desired.ports[pname]
            lid = nets.get(port.network, (None,))[0]
            if lid is None:
                continue
            ofport = ofports.get(dev.name)
            if ofport is not None:
                key = (port, ofport, lid)
                binding = last.get(dev.name)
                if binding is None or binding[0] != key:
                    binding = (key, pl.PortBinding(ofport, lid, port.mac,
                                                   port.port_security, port.ips))
                self._bindings[dev.name] = binding
                ports.append(binding[1])
            elif dev.name in view.errors:
                not_ready[pname] = NotReady(
                    f"ovs-vswitchd cannot open {dev.name}: {view.errors[dev.name]}", True)
            else:
                not_ready[pname] = NotReady(
                    f"{dev.name} is on {self.br_int}; waiting for ovs-vswitchd to give "
                    "it an OpenFlow port")
        uplinks = []
        for net in desired.networks.values():
            lid = nets.get(net.name, (None,))[0]
            bridge = self.mappings.get(net.physical_network or "")
            if lid is None or bridge is None or net.type not in ("flat", "vlan"):
                continue
            ofport = ofports.get(self.patch_names(bridge)[0])
            if ofport:
                uplinks.append(pl.UplinkBinding(ofport, lid, net.segmentation_id
                                                if net.type == "vlan" else None))
        self.app.set_bindings(self.dpid, self.br_int, ports, uplinks,
                              self._tunnel_bindings(nets, ofports))
        return not_ready

    # -- overlays --------------------------------------------------------------
    @staticmethod
    def tunnel_name(kind: str, remote: str) -> str:
        """vx-c6336416: the type and the remote endpoint in hex, <= 15 characters."""
        prefix = {"vxlan": "vx", "geneve": "gn"}[kind]
        return f"{prefix}-{ipaddress.ip_address(remote).packed.hex()}"

    def set_overlay(self, overlays: dict) -> None:
        """One tunnel port per (type, remote host) any overlay network needs."""
        wanted = {}
        for ov in overlays.values():
            for remote in ov.vteps:
                wanted[self.tunnel_name(ov.type, remote)] = (ov.type, remote)
        local_ip = self.conf.vxlan.local_ip
        if wanted and not local_ip:
            raise DriverError("[vxlan] local_ip: required for tunnels to other hosts "
                              "(this host's tunnel endpoint address)")
        with self._lock:
            view = self._ovsdb_view()
            have = set() if view is None else set(view.tunnels)
            with self.api.transaction(check_error=True) as txn:
                for name in sorted(have - set(wanted)):
                    txn.add(self.api.del_port(name, self.br_int, if_exists=True))
                for name, (kind, remote) in sorted(wanted.items()):
                    if name in have:
                        continue
                    options = {"remote_ip": remote, "local_ip": local_ip, "key": "flow",
                               "dst_port": str(self.conf.vxlan.udp_port if kind == "vxlan"
                                               else GENEVE_PORT)}
                    txn.add(self.api.add_port(self.br_int, name, may_exist=True))
                    txn.add(self.api.db_set("Port", name, ("external_ids", {
                        OWNED: "true", TUNNEL_KEY: remote})))
                    txn.add(self.api.db_set("Interface", name, ("type", kind),
                                            ("options", options)))
            self._overlay = dict(overlays)

    def _tunnel_bindings(self, nets: dict, ofports: dict) -> list[pl.TunnelBinding]:
        bindings = []
        for net_name, ov in sorted(self._overlay.items()):
            lid = nets.get(net_name, (None,))[0]
            if lid is None:
                continue
            for remote in sorted(ov.vteps):
                ofport = ofports.get(self.tunnel_name(ov.type, remote))
                if ofport:
                    macs = tuple(mac for mac, ip in ov.macs if ip == remote)
                    bindings.append(pl.TunnelBinding(ofport, lid, ov.vni, macs))
        return bindings

    def _forget_vanished(self) -> None:
        """Delete the Port rows ovsbr added for taps that no longer exist.

        A row left behind is an orphan in OVSDB, and when a tap of the same
        name comes back ovs-vswitchd may keep the old device's state (seen:
        the new tap stays PORT_DOWN): a fresh row makes it open the new one.
        Rows someone else added (libvirt) are theirs to remove.
        """
        # The view this reconcile observed: rows added since then are for
        # devices that exist, and rebuilding it here (every row again, after
        # each plug transaction) was a third of the single-port time (py-spy).
        if self._view is None:
            return
        view = self._view[1]
        kernel = {link.name for link in self.links.snapshot().values()}
        # Only rows ovs-vswitchd had opened: a prepared row (no OpenFlow
        # port yet) is waiting for its tap, and the reconciler removes it
        # when its port goes.
        gone = [i.name for i in view.vm_ifaces
                if i.added and not i.type and i.name not in kernel and i.name in view.ofports]
        if not gone:
            return
        LOG.info("removing %d port(s) whose device vanished: %s", len(gone),
                 ", ".join(sorted(gone)[:10]))
        with self._lock, self.api.transaction(check_error=True) as txn:
            for name in gone:
                txn.add(self.api.del_port(name, if_exists=True))

    def cleanup(self) -> None:
        """Remove br-int and the patch ports, if ovsbr created them."""
        with self.conn.lock:
            owned_br = self._bridge_row(self.br_int)
            owned_br = owned_br is not None and owned_br.external_ids.get(OWNED) == "true"
            patches = [p.name for p in self._rows("Port")
                       if p.external_ids.get(OWNED) == "true" and PHYSNET in p.external_ids]
        with self.api.transaction(check_error=True) as txn:
            for name in patches:
                txn.add(self.api.del_port(name, if_exists=True))
            if owned_br:
                txn.add(self.api.del_br(self.br_int, if_exists=True))

    def introspect(self) -> dict:
        """The app's MAC tables and counters, with network and port names."""
        if self.app is None:
            return {}
        data = self.app.introspect()
        view = self._ovsdb_view()
        if view is None:
            return data
        networks = {lid: name for name, (lid, _) in view.networks.items()}
        ports = {ofport: name for name, ofport in view.ofports.items()}
        for bridge in data.values():
            for entry in bridge["macs"]:
                entry["network"] = networks.get(entry.pop("lid"), "?")
                entry["port"] = ports.get(entry["port"], entry["port"])
        return data
