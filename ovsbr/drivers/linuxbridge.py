"""The linuxbridge datapath: one Linux bridge per network, over netlink.

Layout per network (``bridge_prefix`` + network name, e.g. ``brq-net1``):
the VM taps, and one uplink by type: flat = the mapped NIC itself, vlan =
``<nic>.<vid>`` (needs the kernel's 8021q), vxlan = ``vxlan-<vni>``, local =
none. Kernel links have no external_ids, so ownership is written into the
interface alias (IFLA_IFALIAS): ``ovsbr:net=NAME fp=...`` on bridges and
``ovsbr:uplink=NAME`` on uplinks ovsbr created. Nothing without that mark is
ever deleted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import threading
from collections.abc import Iterator

from oslo_config import cfg
from pyroute2 import IPBatch, IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ovsbr.conf.mappings import parse_mappings
from ovsbr.drivers import names, rtnl
from ovsbr.drivers.base import Device, Driver, EventCallback, NetworkState, NotReady, Observed
from ovsbr.drivers.netlink import Link, LinkTable, link_from_msg
from ovsbr.drivers.portsec import NftPortSecurity, PortFilter, table_name
from ovsbr.exceptions import ConfigError, DriverError, FeatureMissing, PartialFailure
from ovsbr.model import Network, Port, Topology

LOG = logging.getLogger(__name__)
BRIDGE_MARK = "ovsbr:net="
UPLINK_MARK = "ovsbr:uplink="
PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,6}$")
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
UNDERLAY_MTU = 1500
ZERO_MAC = "00:00:00:00:00:00"


def effective_mtu(net: Network) -> int | None:
    """The MTU ovsbr applies: the network's, or the overlay-safe default."""
    if net.mtu is not None:
        return net.mtu
    if net.type in ("vxlan", "geneve"):
        return UNDERLAY_MTU - VXLAN_OVERHEAD
    return None


def _bridge_alias(name: str, fingerprint: str) -> str:
    return f"{BRIDGE_MARK}{name} fp={fingerprint}"


def _parse_bridge_alias(alias: str | None) -> tuple[str, str] | None:
    if not alias or not alias.startswith(BRIDGE_MARK):
        return None
    body = alias[len(BRIDGE_MARK):]
    name, _, fp = body.partition(" fp=")
    return name, fp


def _uplink_owner(alias: str | None) -> str | None:
    if alias and alias.startswith(UPLINK_MARK):
        return alias[len(UPLINK_MARK):]
    return None


def _l2_only(bridge: str) -> None:
    """Keep the host off a VM network's bridge.

    A bridge is also a host interface: by default the host answers ARP on it
    for any of its own addresses and gives it an IPv6 link-local address,
    which lets VMs reach (and spoof toward) the host. ovsbr's bridges are
    L2 only, as Neutron's were.
    """
    for path, value in ((f"/proc/sys/net/ipv4/conf/{bridge}/arp_ignore", "8"),
                        (f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6", "1")):
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            LOG.warning("cannot write %s: %s", path, e)


def port_filter(port: Port, device: str) -> PortFilter | None:
    """What nftables must check for a port; None when there is nothing to enforce."""
    if not port.port_security or (port.mac is None and port.ips is None):
        return None
    return PortFilter(device, port.mac, port.ips)


class LinuxBridgeDriver(Driver):
    name = "linuxbridge"

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(conf)
        self.prefix = conf.linux_bridge.bridge_prefix
        self.mappings: dict[str, str] = {}
        self.links = LinkTable()
        self._ipr: IPRoute | None = None
        self._rtnl: rtnl.RtnlSocket | None = None
        self._lock = threading.RLock()
        self._batch: list[tuple[Link, dict, Network]] | None = None
        self._bridge_of: dict[str, int] = {}
        self.portsec = NftPortSecurity(table_name(self.prefix or ""))
        self._filters: dict[str, PortFilter] = {}
        self._refilter = False

    # -- life cycle ----------------------------------------------------------
    def check_config(self) -> None:
        if not PREFIX_RE.match(self.prefix or ""):
            raise ConfigError(
                "[linux_bridge] bridge_prefix",
                f"{self.prefix!r} is not 1-6 characters of letters, digits, '-', '_'")
        self.mappings = parse_mappings(
            "[linux_bridge] physical_interface_mappings",
            self.conf.linux_bridge.physical_interface_mappings, "INTERFACE")
        with IPRoute() as ipr:
            for physnet, nic in sorted(self.mappings.items()):
                if not ipr.link_lookup(ifname=nic):
                    raise ConfigError(
                        "[linux_bridge] physical_interface_mappings",
                        f"interface {nic!r} of physical network {physnet!r} does "
                        "not exist on this host")

    def start(self, on_event: EventCallback) -> None:
        missing = self.portsec.probe()
        if missing:
            LOG.warning("%s; ports with port security and a declared MAC or IPs will "
                        "not be wired (use --no-port-security to wire them unfiltered)",
                        missing)
        self._ipr = IPRoute()
        self._rtnl = rtnl.RtnlSocket()
        self.links._on_change = on_event
        self.links.start()
        self.links.refresh()

    def stop(self) -> None:
        self.links.stop()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None

    def describe(self) -> str:
        maps = ",".join(f"{k}:{v}" for k, v in sorted(self.mappings.items())) or "none"
        return f"linuxbridge (bridges {self.prefix}<network>, interface mappings {maps})"

    def resync(self) -> None:
        with self._lock:
            self.links.refresh()
            self._refilter = True  # rewrite the table even if nothing changed here

    # -- naming --------------------------------------------------------------
    def bridge_name(self, net_name: str) -> str:
        return names.ifname(self.prefix, net_name)

    def uplink_name(self, net: Network) -> str | None:
        if net.type == "flat":
            return self.mappings.get(net.physical_network)
        if net.type == "vlan":
            nic = self.mappings.get(net.physical_network)
            return names.ifname("", nic, f".{net.segmentation_id}") if nic else None
        if net.type == "vxlan":
            return f"vxlan-{net.segmentation_id}"
        return None

    def fingerprint(self, net: Network) -> str:
        return "/".join(str(x) for x in (
            net.type, net.physical_network or "-", net.segmentation_id or "-",
            effective_mtu(net) or "-", self.uplink_name(net) or "-"))

    # -- observation ---------------------------------------------------------
    def observe(self) -> Observed:
        self.links.refresh_if_stale()
        links = self.links.snapshot()
        bridges: dict[int, str] = {}
        observed = Observed()
        uplinks = set(self.mappings.values())
        for link in links.values():
            mark = self._bridge_mark(link)
            if mark is not None:
                bridges[link.index] = mark[0]
            elif _uplink_owner(link.alias) is not None:
                uplinks.add(link.name)
        by_name = {link.name: link for link in links.values()}
        for index, net_name in bridges.items():
            bridge = links[index]
            fp = _parse_bridge_alias(bridge.alias)[1]
            expected_uplink = fp.rsplit("/", 1)[-1]
            if not bridge.up:
                fp = "down"
            elif expected_uplink != "-":
                up = by_name.get(expected_uplink)
                if up is None or up.master != index:
                    fp = "uplink-missing"
            observed.networks[net_name] = NetworkState(net_name, fp)
        devices = observed.devices
        for link in links.values():
            if link.name in uplinks or link.kind == "bridge" or link.name == "lo":
                continue
            devices[link.name] = Device(link.name, link.mac, None, bridges.get(link.master))
        return observed

    # -- operations ----------------------------------------------------------
    def _ip(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def _bridge_mark(self, link: Link) -> tuple[str, str] | None:
        """(network, fingerprint) of a bridge this agent owns, else None.

        Both the mark and the configured prefix must match, so agents with
        different prefixes on one host never take each other's bridges.
        """
        if link.kind != "bridge" or not link.name.startswith(self.prefix):
            return None
        return _parse_bridge_alias(link.alias)

    def _owned_bridge(self, net_name: str) -> Link | None:
        """The network's bridge; remembered, since every plug asks for it."""
        index = self._bridge_of.get(net_name)
        link = self.links.get(index) if index is not None else None
        mark = self._bridge_mark(link) if link is not None else None
        if mark is not None and mark[0] == net_name:
            return link
        for link in self.links.snapshot().values():
            mark = self._bridge_mark(link)
            if mark is not None and mark[0] == net_name:
                self._bridge_of[net_name] = link.index
                return link
        return None

    def _get(self, index: int) -> Link:
        link = link_from_msg(self._ip().link("get", index=index)[0])
        self.links.put(link)
        return link

    def _lookup(self, name: str) -> Link | None:
        idx = self._ip().link_lookup(ifname=name)
        return self._get(idx[0]) if idx else None

    def ensure_network(self, net: Network) -> None:
        if net.type == "geneve":
            raise FeatureMissing(
                "geneve networks need the openvswitch driver: a Linux geneve device "
                "reaches a single remote and has no forwarding database for a flood list")
        with self._lock:
            self._ensure_network(net)

    def _ensure_network(self, net: Network) -> None:
        ipr = self._ip()
        mtu = effective_mtu(net)
        if net.type in ("flat", "vlan") and net.physical_network not in self.mappings:
            raise DriverError(
                f"physical network {net.physical_network!r} has no entry in "
                "[linux_bridge] physical_interface_mappings on this host")
        bridge = self._owned_bridge(net.name)
        if bridge is None:
            name = self.bridge_name(net.name)
            existing = self._lookup(name)
            if existing is None:
                ipr.link("add", ifname=name, kind="bridge")
            elif not self._our_leftover(existing, "bridge"):
                raise DriverError(f"device {name} exists and was not created by ovsbr")
            # The kernel ignores an alias given at creation, so a kill between
            # these two calls leaves a bare bridge: _our_leftover adopts it.
            # The fingerprint goes on last, so a build cut short is finished
            # next time.
            bridge = self._lookup(name)
            ipr.link("set", index=bridge.index, ifalias=f"{BRIDGE_MARK}{net.name}")
        _l2_only(bridge.name)
        spec = {"state": "up"}
        if mtu is not None:
            spec["mtu"] = mtu
        ipr.link("set", index=bridge.index, **spec)

        uplink = self._ensure_uplink(net, bridge)
        # Uplinks this network had under another segment (type or id changed).
        for link in self.links.snapshot().values():
            if _uplink_owner(link.alias) == net.name and link.name != uplink:
                self._delete_link(link)
        if mtu is not None:
            for link in self.links.snapshot().values():
                if link.master == bridge.index and link.mtu != mtu:
                    ipr.link("set", index=link.index, mtu=mtu)
        ipr.link("set", index=bridge.index,
                 ifalias=_bridge_alias(net.name, self.fingerprint(net)))
        self._get(bridge.index)

    def _ensure_uplink(self, net: Network, bridge: Link) -> str | None:
        ipr = self._ip()
        name = self.uplink_name(net)
        if name is None:
            return None
        mtu = effective_mtu(net)
        link = self._lookup(name)
        if link is None and net.type == "flat":
            raise DriverError(f"interface {name} of physical network "
                              f"{net.physical_network} does not exist")
        if link is None:
            alias = f"{UPLINK_MARK}{net.name}"
            try:
                if net.type == "vlan":
                    nic = self._lookup(self.mappings[net.physical_network])
                    if nic is None:
                        raise DriverError(f"interface {self.mappings[net.physical_network]} "
                                          "does not exist")
                    ipr.link("add", ifname=name, kind="vlan", link=nic.index,
                             vlan_id=net.segmentation_id)
                else:
                    # No learning from the wire: remote MACs and the flood
                    # list come from the store (set_overlay), l2population style.
                    spec = {"vxlan_id": net.segmentation_id,
                            "vxlan_port": self.conf.vxlan.udp_port,
                            "vxlan_learning": 0}
                    if self.conf.vxlan.local_ip:
                        spec["vxlan_local"] = self.conf.vxlan.local_ip
                    ipr.link("add", ifname=name, kind="vxlan", **spec)
            except NetlinkError as e:
                if e.code in (errno.EOPNOTSUPP, errno.ENOENT) and net.type == "vlan":
                    raise FeatureMissing(
                        "vlan networks need VLAN sub-interfaces (kernel module 8021q), "
                        "which this host's kernel does not provide") from e
                if e.code in (errno.EOPNOTSUPP, errno.ENOENT):
                    raise FeatureMissing(
                        f"{net.type} networks need the kernel's {net.type} driver, "
                        "which this host does not provide") from e
                raise DriverError(f"cannot create {name}: {e}") from e
            link = self._lookup(name)
            ipr.link("set", index=link.index, ifalias=alias)
            # Before it comes up: an uplink with IPv6 on would send its own
            # router solicitations down the tunnel to every flooded host.
            _l2_only(name)
        elif net.type != "flat" and _uplink_owner(link.alias) != net.name:
            if not self._our_leftover(link, net.type):
                raise DriverError(f"device {name} exists and was not created by ovsbr "
                                  f"for network {net.name}")
            ipr.link("set", index=link.index, ifalias=f"{UPLINK_MARK}{net.name}")
        spec = {"state": "up", "master": bridge.index}
        if mtu is not None and net.type != "flat":
            spec["mtu"] = mtu
        ipr.link("set", index=link.index, **spec)
        self._get(link.index)
        return name

    def _our_leftover(self, link: Link, kind: str) -> bool:
        """A device with ovsbr's name, of ovsbr's kind, unmarked and unused.

        What an agent killed between creating a device and marking it leaves
        behind; adopting it is what the next run must do. Anything with an
        alias or with members stays someone else's.
        """
        if link.alias or link.kind != kind or link.master is not None:
            return False
        return not any(other.master == link.index for other in self.links.snapshot().values())

    def _delete_link(self, link: Link) -> None:
        try:
            self._ip().link("del", index=link.index)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
        self.links.forget(link.index)

    def delete_network(self, name: str) -> None:
        with self._lock:
            bridge = self._owned_bridge(name)
            for link in self.links.snapshot().values():
                if _uplink_owner(link.alias) == name:
                    self._delete_link(link)
            if bridge is not None:
                # Members (VM taps, a flat NIC) are released by the kernel;
                # record that now rather than wait for the events.
                for link in self.links.snapshot().values():
                    if link.master == bridge.index:
                        link.master = None
                self._delete_link(bridge)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the plugs made inside as one netlink batch.

        One write of pre-built requests and one read of the acknowledgements
        instead of a round trip per port; failures come back per device as
        a PartialFailure.
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
        self._apply_filters()
        batch = IPBatch()
        for link, spec, _net in pending:
            batch.link("set", index=link.index, **spec)
        data = bytes(batch.batch)
        seqs = [seq for _t, _f, seq, _o, _e in rtnl.messages(data)]
        failures = self._rtnl.send_batch(data, set(seqs))
        errors = {}
        for seq, (link, _spec, net) in zip(seqs, pending, strict=True):
            if seq in failures:
                errors[link.name] = self._plug_error(failures[seq], link.name, net)
                link.master = None
                self.links.put(link)
        if errors:
            raise PartialFailure(errors)

    def _plug_error(self, code: int, device: str, net: Network) -> str:
        bridge = self.bridge_name(net.name)
        if code == errno.EXFULL:
            return (f"bridge {bridge} of network {net.name} is full: a Linux bridge "
                    "holds at most 1023 ports (kernel limit)")
        return f"cannot attach {device} to {bridge}: {rtnl.strerror(code)}"

    def plug(self, port: Port, net: Network, device: Device) -> None:
        with self._lock:
            bridge = self._owned_bridge(net.name)
            if bridge is None:
                raise DriverError(f"bridge of network {net.name} is missing")
            link = self.links.by_name(device.name)
            if link is None:
                raise DriverError(f"device {device.name} is gone")
            wanted = port_filter(port, device.name)
            if wanted is not None:
                if self.portsec.missing:
                    raise FeatureMissing(self.portsec.missing)
                self._filters[device.name] = wanted
            else:
                self._filters.pop(device.name, None)
            spec = {"master": bridge.index, "state": "up"}
            mtu = effective_mtu(net)
            if mtu is not None:
                spec["mtu"] = mtu
            if self._batch is not None:
                self._batch.append((link, spec, net))
            else:
                self._apply_filters()
                try:
                    self._ip().link("set", index=link.index, **spec)
                except NetlinkError as e:
                    raise DriverError(self._plug_error(e.code, device.name, net)) from e
            # Record it now: the event confirms later, and a reconcile in
            # between must not plug the device again.
            link.master, link.up = bridge.index, True
            if mtu is not None:
                link.mtu = mtu
            self.links.put(link)

    def _apply_filters(self) -> None:
        try:
            self.portsec.apply(list(self._filters.values()), force=self._refilter)
        except FeatureMissing as e:
            raise DriverError(f"port security: {e}") from e
        self._refilter = False

    def sync(self, desired: Topology, bound: dict[str, Device]) -> dict[str, NotReady]:
        """The nftables table follows the bound ports (restarts, edits, drift).

        A port forwards as soon as it is enslaved: nothing is ever pending.
        """
        with self._lock:
            self._filters = {
                dev.name: f for name, dev in bound.items()
                if (f := port_filter(desired.ports[name], dev.name)) is not None}
            self._apply_filters()
        return {}

    def cleanup(self) -> None:
        self.portsec.remove()

    def set_overlay(self, overlays: dict) -> None:
        """The vxlan devices' forwarding databases: one all-zero entry per
        remote host (head-end replication of broadcast and unknown unicast)
        and one entry per remote MAC. Entries with a remote are ovsbr's."""
        with self._lock:
            ipr = self._ip()
            for name, ov in sorted(overlays.items()):
                if ov.type != "vxlan":
                    continue
                link = self._lookup(f"vxlan-{ov.vni}")
                if link is None:
                    continue
                wanted = {(ZERO_MAC, ip) for ip in ov.vteps} | set(ov.macs)
                current = set()
                for msg in ipr.fdb("dump", ifindex=link.index):
                    dst = msg.get_attr("NDA_DST")
                    if dst and msg["ifindex"] == link.index:
                        current.add((msg.get_attr("NDA_LLADDR"), dst))
                try:
                    for mac, dst in sorted(current - wanted):
                        ipr.fdb("del", ifindex=link.index, lladdr=mac, dst=dst)
                    for mac, dst in sorted(wanted - current):
                        ipr.fdb("append", ifindex=link.index, lladdr=mac, dst=dst)
                except NetlinkError as e:
                    raise DriverError(f"network {name}: cannot program the vxlan "
                                      f"forwarding database: {e}") from e

    def unplug(self, device: Device) -> None:
        with self._lock:
            link = self.links.by_name(device.name)
            if link is None:
                return
            try:
                self._ip().link("set", index=link.index, master=0)
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise
            link.master = None
            self.links.put(link)
