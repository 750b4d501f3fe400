"""The openvswitch driver: sequences the OVSDB client, the app and the pure parts.

See the package docstring for the layout and where its state lives.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from typing import Any

from oslo_config import cfg

from ovsbr.conf.mappings import parse_mappings
from ovsbr.drivers import common
from ovsbr.drivers.base import (
    BridgeReport,
    Device,
    Driver,
    EventCallback,
    NotReady,
    Observed,
    Overlay,
)
from ovsbr.drivers.openvswitch import bindings, controller, kernel, observe
from ovsbr.drivers.openvswitch.observe import ACTIVE, INACTIVE
from ovsbr.drivers.openvswitch.ovsdb import Ovsdb
from ovsbr.drivers.openvswitch.view import ADDED, OWNED, PORT_NAME, PORT_NET, BridgeView
from ovsbr.exceptions import ConfigError, DriverError
from ovsbr.model import IFNAME_RE, NETWORK_TYPES, Network, Port, Topology, effective_mtu
from ovsbr.openflow import pipeline as pl
from ovsbr.secgroups.policy import PortPolicy

LOG = logging.getLogger(__name__)
GENEVE_PORT = 6081  # IANA
OVSDB_RE = re.compile(r"^(unix:/.+|(tcp|ssl):[0-9a-fA-F.:\[\]]+:\d+)\Z")
MAPPINGS_OPTION = "[ovs] bridge_mappings"


class OpenvSwitchDriver(Driver):
    name = "openvswitch"
    prepares = True  # a Port row without its device: ovs-vswitchd opens it when it appears

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(conf)
        self.ovs = conf.ovs
        self.br_int = self.ovs.integration_bridge
        self.mappings: dict[str, str] = {}
        self.db = Ovsdb(self.ovs.ovsdb_connection, self.ovs.ovsdb_timeout, self.br_int)
        self.runtime = None
        self.app = None
        self.ssl_context: ssl.SSLContext | None = None
        self._overlay: Mapping[str, Overlay] = {}
        self.hostlinks = common.HostLinks()
        self.links = self.hostlinks.table
        # A tap went (or that is not known) since rows were last checked for
        # vanished taps: only then is the check worth its walk of every row.
        self._taps_gone = True
        self._ports = bindings.PortBindings()
        self._requests = bindings.OfportRequests()
        self._names: set[str] | None = None  # interfaces changed, for the next sync
        self._sent: tuple | None = None  # the uplink and tunnel bindings last sent
        # The last observation and the view object it was made from: moved
        # on in place while the view is (see observe.see_change).
        self._seen: tuple[BridgeView, Observed] | None = None
        self.dpid = bindings.datapath_id(self.br_int)

    # -- configuration -------------------------------------------------------
    def check_config(self) -> None:
        if not IFNAME_RE.match(self.br_int or ""):
            raise ConfigError("[ovs] integration_bridge",
                              f"{self.br_int!r} is not a valid bridge name")
        self.mappings = parse_mappings(MAPPINGS_OPTION, self.ovs.bridge_mappings, "BRIDGE")
        if self.br_int in self.mappings.values():
            raise ConfigError(MAPPINGS_OPTION,
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
        tls = controller.tls_files(self.ovs)
        if not addr.is_loopback and not tls:
            raise ConfigError("[ovs] of_listen_address",
                              f"{addr} is not a loopback address: without TLS the "
                              "OpenFlow listener accepts any switch that connects, so "
                              "it binds only 127.0.0.1 or ::1 unless of_ssl_key_file, "
                              "of_ssl_cert_file and of_ssl_ca_cert_file are set")
        self.ssl_context = controller.tls_context(*tls) if tls else None
        if self.ovs.datapath_type == "system" and not kernel.has_kernel_datapath():
            raise ConfigError("[ovs] datapath_type",
                              "system needs the Open vSwitch kernel datapath (kernel module "
                              "openvswitch), which this host does not provide; netdev runs "
                              "the userspace datapath instead")

    def capabilities(self) -> dict[str, Any]:
        return {"physical_networks": sorted(self.mappings), "network_types": list(NETWORK_TYPES),
                "bridge": self.br_int, "datapath_type": self.ovs.datapath_type,
                "security_groups": True}  # conntrack: both datapath types have it

    def describe(self) -> str:
        return (f"openvswitch (integration bridge {self.br_int}, datapath "
                f"{self.ovs.datapath_type}, bridge mappings "
                f"{common.describe_mappings(self.mappings)}, OpenFlow on "
                f"{self.ovs.of_listen_address}:{self.ovs.of_listen_port})")

    def controller_target(self) -> str:
        return controller.target(self.ovs.of_listen_address, self.ovs.of_listen_port,
                                 self.ssl_context is not None)

    # -- life cycle ------------------------------------------------------------
    def start(self, on_event: EventCallback) -> None:
        self.db.connect(on_event)
        self.runtime, self.app = controller.start(self.conf, self.ssl_context, self.dpid,
                                                  self.br_int)
        self.app.on_applied = lambda: on_event("flows applied")
        self._ensure_bridges()
        self.hostlinks.start(on_event)

    def stop(self) -> None:
        self.hostlinks.stop()
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
        self.db.stop()

    def resync(self) -> None:
        self.links.refresh()
        self._taps_gone = True
        self._seen = None
        self._ports = bindings.PortBindings()
        self._sent = None

    def _ensure_bridges(self) -> None:
        missing = self.db.missing_bridges(list(self.mappings.values()))
        if missing:
            raise DriverError(f"[ovs] bridge_mappings: bridge {missing[0]} does not exist "
                              "in OVSDB; create it and add the NIC to it, as for Neutron")
        if self.ssl_context is not None and not self.db.has_ssl():
            raise DriverError("[ovs] of_ssl_key_file: TLS is configured for the "
                              "controller but Open vSwitch has no SSL key and "
                              "certificate of its own (ovs-vsctl set-ssl KEY CERT CA)")
        with self.db.lock:
            if self.db.ensure_integration_bridge(self.ovs.datapath_type, self.dpid,
                                                 self.controller_target(),
                                                 self.conf.openflow.packet_in_rate,
                                                 self.conf.openflow.packet_in_queue):
                self.app.new_bridge(self.dpid, self.br_int)
            for physnet, bridge in sorted(self.mappings.items()):
                self.db.ensure_patch(physnet, bridge, *bindings.patch_names(bridge))

    # -- observation -------------------------------------------------------------
    def fingerprint(self, net: Network) -> str:
        return common.fingerprint(net.type, net.physical_network, net.segmentation_id,
                                  net.mtu)

    def observe_change(self) -> tuple[Observed, frozenset[str] | None]:
        """The last observation moved on by the names that changed since the
        last call, when OVSDB's row notices and the link table tell (the plan
        is then made for those alone); a whole look otherwise."""
        self.links.refresh_if_stale()
        names = self.db.take_changed() if self.db.conn is not None else None
        links = self.links.take_changes()  # both taken before reading
        if links is None:
            self._taps_gone = True
        elif names is not None:
            for index, old in links.items():
                now = self.links.get(index)
                names.update(link.name for link in (old, now) if link is not None)
                if now is None or (old is not None and old.name != now.name):
                    self._taps_gone = True
        view = self._view()
        self._names = names
        seen = self._seen
        if names is None or links is None or seen is None or seen[0] is not view:
            observed = observe.observe(view, self.links.snapshot().values())
            self._seen = (view, observed)
            return observed, None if names is None or links is None else frozenset(names)
        observe.see_change(seen[1], view, self.links.by_name, names)
        return seen[1], frozenset(names)

    def observe(self) -> Observed:
        self.links.refresh_if_stale()
        view = self._view()
        observed = observe.observe(view, self.links.snapshot().values())
        self._seen = (view, observed)
        return observed

    def _view(self) -> BridgeView:
        view = self.db.view()
        if view is None:
            # Deleted by hand (or never made): rebuild it; the taps it held
            # are kernel devices again and the reconciler re-plugs them.
            LOG.warning("integration bridge %s is missing; recreating it", self.br_int)
            self._ensure_bridges()
            view = self.db.view() or observe.EMPTY_VIEW
        return view

    # -- operations --------------------------------------------------------------
    def batch(self) -> contextlib.AbstractContextManager:
        return self.db.batch()

    def ensure_network(self, net: Network) -> None:
        common.physnet_target(net, self.mappings, MAPPINGS_OPTION)
        with self.db.lock:
            lid = bindings.free_lid(self.db.view(), net.name)
            if lid is None:
                raise DriverError(f"no free network id on {self.br_int} "
                                  f"(at most {pl.MAX_LID} networks)")
            self.db.record_network(net.name, lid, self.fingerprint(net))

    def delete_network(self, name: str) -> None:
        with self.db.lock:
            self.db.forget_network(name)

    def plug(self, port: Port, net: Network, device: Device,
             policy: PortPolicy | None = None) -> None:
        # The policy reaches the switch with the flows (sync); until then
        # the port has none, and its frames meet the table-miss drop.
        with self._batch():
            exists, ours, prepared = self.db.port_state(device.name)
            link = self.links.by_name(device.name)
            if exists and ours and not prepared and link is not None and not link.up:
                # Our port, but its tap was deleted and created again under
                # the same name: ovs-vswitchd keeps the old device open until
                # the port is re-added.
                self.db.delete_port_now(device.name)
                exists = False
            self.hostlinks.link_up(device.name)
            self._write_port(port, net, device.name, add=not exists, status=ACTIVE,
                             iface_id=port.iface_id if not device.iface_id else None)

    def prepare(self, port: Port, net: Network) -> None:
        """A Port row for a tap that does not exist yet, as os-vif plugs before boot.

        ovs-vswitchd retries rows it could not open whenever a network
        device appears, so the tap is on br-int with an OpenFlow port one
        reconfiguration after the kernel creates it, without waiting for the
        agent to see it and add the row (a second reconfiguration).

        A row added here asks for its OpenFlow port (bindings.OfportRequests):
        the port's flows go out before its tap exists. A row plug() adds for
        a tap that exists is numbered in the reconfiguration it causes;
        asking for those too made bulk wiring slower (1,000 ports: 3.6 s
        instead of 3.0, agent CPU 2.7 ms a port instead of 2.1).
        """
        with self._batch():
            exists = self.db.port_state(port.device)[0]
            request = None if exists else self._requests.pick(
                port.device, self.db.last_view() or observe.EMPTY_VIEW)
            self._write_port(port, net, port.device, add=not exists, status=INACTIVE,
                             iface_id=port.iface_id, ofport_request=request)

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        with self.db.lock, self.db.batch():
            yield

    def _write_port(self, port: Port, net: Network, name: str, add: bool, status: str,
                    iface_id: str | None, ofport_request: int | None = None) -> None:
        port_ids = {PORT_NET: net.name, PORT_NAME: port.name}
        if add:
            port_ids.update({ADDED: "true", OWNED: "true"})
        iface_ids = {"iface-status": status}
        if port.mac:
            iface_ids["attached-mac"] = port.mac
        if iface_id:
            iface_ids["iface-id"] = iface_id
        self.db.write_port(name, add, port_ids, iface_ids, effective_mtu(net),
                           ofport_request)

    def unplug(self, device: Device) -> None:
        with self._batch():
            self.db.release_port(device.name)
        self._requests.forget(device.name)

    def sync(self, desired: Topology, bound: Mapping[str, Device],
             changed: frozenset[str] | None = None) -> dict[str, NotReady]:
        """Drop rows of vanished taps; hand the app the port and uplink bindings.

        A port is not reported ready until ovs-vswitchd has given its
        interface an OpenFlow port number and has applied its flows (the
        app's barrier came back): "bound" means the VM can talk, as
        ovs-vsctl's wait for ovs-vswitchd. The barrier's reply wakes the
        agent (``on_event``), whose next sync finds the port applied.
        Only the ``changed`` ports' bindings are read again after a device
        event (bindings.PortBindings), and the app hears of them only when
        a binding moved. Prepared ports are bound too, by the OpenFlow port
        their row asked for: their flows are applied before their tap
        appears, and the port is ready once ovs-vswitchd gives it that number.
        """
        self._forget_vanished()
        view = self.db.view()
        if view is None:
            return {}
        self._requests.seen(view)
        if changed is not None and self._names:
            changed = changed | self._ports.displaced(view, self._names)
        self._names = None
        moved = self._ports.update(desired, bound, view, self.br_int, changed)
        rest = (bindings.uplink_bindings(desired, view, self.mappings),
                bindings.tunnel_bindings(self._overlay, view))
        if moved or rest != self._sent:  # the app ignores the same bindings anyway
            self.app.set_bindings(self.dpid, self.br_int, self._ports.bindings(), *rest)
            self._sent = rest
        not_ready = dict(self._ports.not_ready)
        unapplied = self.app.unapplied(self.dpid)
        if unapplied:
            why = NotReady(
                f"its flows are sent to {self.br_int}; waiting for ovs-vswitchd "
                "to confirm them applied (barrier)")
            if not self.app.switches().get(self.br_int):
                why = NotReady(
                    f"{self.br_int} has no flows for it yet: waiting for ovs-vswitchd "
                    f"to connect to ovsbr's OpenFlow controller ({self.controller_target()})")
            for ofport in unapplied:
                name = self._ports.port_at(ofport)
                if name is not None:
                    not_ready[name] = why
        return not_ready

    def _forget_vanished(self) -> None:
        """Delete the Port rows ovsbr added for taps that no longer exist.

        A row left behind is an orphan in OVSDB, and when a tap of the same
        name comes back ovs-vswitchd may keep the old device's state (seen:
        the new tap stays PORT_DOWN): a fresh row makes it open the new one.
        """
        # The view this reconcile observed: rows added since then are for
        # devices that exist, and rebuilding it here (every row again, after
        # each plug transaction) was a third of the single-port time (py-spy).
        view = self.db.last_view()
        if view is None or not self._taps_gone:
            return
        self._taps_gone = False
        gone = observe.vanished(view, {link.name for link in self.links.snapshot().values()})
        if gone:
            LOG.info("removing %d port(s) whose device vanished: %s", len(gone),
                     ", ".join(sorted(gone)[:10]))
            self.db.delete_ports(gone)

    # -- overlays --------------------------------------------------------------
    def set_overlay(self, overlays: Mapping[str, Overlay]) -> None:
        """One tunnel port per (type, remote host) any overlay network needs."""
        wanted = bindings.wanted_tunnels(overlays)
        local_ip = self.conf.vxlan.local_ip
        if wanted and not local_ip:
            raise DriverError("[vxlan] local_ip: required for tunnels to other hosts "
                              "(this host's tunnel endpoint address)")
        with self.db.lock:
            view = self.db.view()
            have = set() if view is None else set(view.tunnels)
            add = {name: {"remote_ip": remote, "local_ip": local_ip, "key": "flow",
                          "dst_port": str(self.conf.vxlan.udp_port if kind == "vxlan"
                                          else GENEVE_PORT)}
                   for name, (kind, remote) in wanted.items() if name not in have}
            self.db.set_tunnels(sorted(have - set(wanted)), add,
                                {n: k for n, (k, _) in wanted.items()},
                                {n: r for n, (_, r) in wanted.items()})
            self._overlay = dict(overlays)

    # -- the rest ----------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove br-int and the patch ports, if ovsbr created them."""
        self.db.remove_scaffolding()

    def health(self) -> list[str]:
        problems = []
        if not self.db.connected():
            problems.append(f"OVSDB at {self.ovs.ovsdb_connection} not connected")
        bridges = self.app.switches() if self.app is not None else {}
        if not bridges.get(self.br_int):
            problems.append(f"{self.br_int}: no OpenFlow connection from ovs-vswitchd")
        return problems

    def introspect(self, macs: bool = False) -> dict[str, BridgeReport]:
        """The app's counters, and with ``macs`` its MAC tables with network
        and port names. The names come from the last view the agent loop
        built: this may run on another thread (``ovsbr mac-table``), which
        must not rebuild the loop's view under it."""
        if self.app is None:
            return {}
        return bindings.reports(self.app.introspect(macs),
                                self.db.last_view() if macs else None)
