"""Desired state: networks and ports, as pure data with validation.

Everything an operator types (CLI flags, an ``apply`` document, the store
file) passes through :func:`network_from_dict` / :func:`port_from_dict` and
:meth:`Topology.validate`, so one set of rules guards every road in, and
every error names the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ovsbr.claims import claim_conflict, network_claims, network_conflict, port_claims
from ovsbr.port_index import PortIndex
from ovsbr.secgroups.model import SecurityGroup, group_from_dict, normalize_groups
from ovsbr.validation import IFNAMSIZ, NAME_RE, NAME_RULE, ValidationError  # noqa: F401
from ovsbr.validation import check_int as _check_int
from ovsbr.validation import check_keys as _check_keys
from ovsbr.validation import check_name as _check_name
from ovsbr.validation import compact as _compact
from ovsbr.validation import to_bool as _bool

NETWORK_TYPES = ("local", "flat", "vlan", "vxlan", "geneve")
OVERLAY_TYPES = ("vxlan", "geneve")
VLAN_MIN, VLAN_MAX = 1, 4094
VNI_MIN, VNI_MAX = 1, 16777215
MTU_MIN, MTU_MAX = 68, 65535
SEGMENT_RANGES = {"vlan": (VLAN_MIN, VLAN_MAX, "VLAN id"), "vxlan": (VNI_MIN, VNI_MAX, "VNI"),
                  "geneve": (VNI_MIN, VNI_MAX, "VNI")}

IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}\Z")
IFNAME_RULE = (
    f"a Linux interface name: 1-{IFNAMSIZ} characters of letters, digits, "
    "'.', '_', '-', starting with a letter or digit"
)
IFACE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
IFACE_ID_RULE = "1-128 characters: letters, digits, '.', '_', ':', '-'"
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")

NETWORK_KEYS = ("name", "type", "physical_network", "segmentation_id", "mtu")
PORT_KEYS = ("name", "network", "device", "iface_id", "mac", "port_security", "ips", "host",
             "migrating_to", "security_groups")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}\Z")
HOST_RULE = "a host name: 1-253 characters of letters, digits, '.', '_', '-'"
MAX_PORT_IPS = 16
# A 1500-byte underlay less the outer headers of VXLAN or Geneve without
# options (Ethernet 14 + IPv4 20 + UDP 8 + 8): what a VM may send unfragmented.
UNDERLAY_MTU, OVERLAY_OVERHEAD = 1500, 50
OVERLAY_MTU = UNDERLAY_MTU - OVERLAY_OVERHEAD


@dataclasses.dataclass(frozen=True)
class Network:
    name: str
    type: str
    physical_network: str | None = None
    segmentation_id: int | None = None
    mtu: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)


def effective_mtu(net: Network) -> int | None:
    """The MTU every datapath applies: the network's, else the overlay-safe one."""
    if net.mtu is not None:
        return net.mtu
    return OVERLAY_MTU if net.type in OVERLAY_TYPES else None


@dataclasses.dataclass(frozen=True)
class Port:
    name: str
    network: str
    device: str | None = None
    iface_id: str | None = None
    mac: str | None = None
    port_security: bool = True
    # Declared addresses: with port security on, the only IP sources (and ARP
    # sender addresses) the port may use. None = not checked.
    ips: tuple[str, ...] | None = None
    # The hypervisor whose agent wires the port; None = any agent that has
    # the device (one host, the file store's case).
    host: str | None = None
    # The destination of a live migration (Neutron's inactive binding): its
    # agent wires the port too, so the VM finds its network ready when it
    # resumes there. Remote MACs keep pointing at ``host`` until the switch.
    migrating_to: str | None = None
    # Security groups (names, sorted): stateful filtering of what the port
    # sends and receives. None = not filtered beyond port security.
    security_groups: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)

    def wired_on(self, host: str) -> bool:
        """Whether ``host``'s agent wires this port."""
        return self.host in (None, host) or self.migrating_to == host


def normalize_mac(field: str, value: Any) -> str:
    """Return the MAC in lower-case colon form; refuse group and zero MACs."""
    if not isinstance(value, str):
        raise ValidationError(field, f"{value!r} is not a MAC address")
    mac = value.strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ValidationError(
            field, f"{value!r} is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)"
        )
    if int(mac[:2], 16) & 1:
        raise ValidationError(field, f"{value!r} is a multicast/broadcast MAC, not a NIC's")
    if mac == "00:00:00:00:00:00":
        raise ValidationError(field, f"{value!r} is the all-zero MAC")
    return mac


def network_from_dict(data: Mapping[str, Any]) -> Network:
    """Build and validate one network on its own (cross-checks are Topology's)."""
    _check_keys("network", data, NETWORK_KEYS)
    name = _check_name("network.name", data.get("name"))
    where = f"network {name}"
    ntype = data.get("type")
    if ntype not in NETWORK_TYPES:
        raise ValidationError(
            f"{where}: type", f"{ntype!r} is not one of {', '.join(NETWORK_TYPES)}"
        )
    physnet = data.get("physical_network")
    segid = data.get("segmentation_id")
    mtu = data.get("mtu")
    if ntype in ("flat", "vlan"):
        if physnet is None:
            raise ValidationError(
                f"{where}: physical_network", f"required for a {ntype} network"
            )
        _check_name(f"{where}: physical_network", physnet)
    elif physnet is not None:
        raise ValidationError(
            f"{where}: physical_network", f"not allowed for a {ntype} network"
        )
    if ntype in SEGMENT_RANGES:
        lo, hi, what = SEGMENT_RANGES[ntype]
        if segid is None or segid == "":
            raise ValidationError(f"{where}: segmentation_id",
                                  f"required for a {ntype} network ({what} {lo}-{hi})")
        segid = _check_int(f"{where}: segmentation_id", segid, lo, hi)
    elif segid is not None:
        raise ValidationError(
            f"{where}: segmentation_id", f"not allowed for a {ntype} network"
        )
    if mtu is not None:
        mtu = _check_int(f"{where}: mtu", mtu, MTU_MIN, MTU_MAX)
    return Network(name, ntype, physnet, segid, mtu)


def port_from_dict(data: Mapping[str, Any]) -> Port:
    _check_keys("port", data, PORT_KEYS)
    name = _check_name("port.name", data.get("name"))
    where = f"port {name}"
    network = _check_name(f"{where}: network", data.get("network"))
    device = data.get("device")
    if device is not None and (not isinstance(device, str) or not IFNAME_RE.match(device)):
        raise ValidationError(f"{where}: device", f"{device!r} is not {IFNAME_RULE}")
    iface_id = data.get("iface_id")
    if iface_id is not None and (
        not isinstance(iface_id, str) or not IFACE_ID_RE.match(iface_id)
    ):
        raise ValidationError(f"{where}: iface_id", f"{iface_id!r} is not {IFACE_ID_RULE}")
    if device is None and iface_id is None:
        raise ValidationError(
            f"{where}: device", "a port needs a device name or an iface_id (or both)"
        )
    mac = data.get("mac")
    if mac is not None:
        mac = normalize_mac(f"{where}: mac", mac)
    port_security = _bool(f"{where}: port_security", data.get("port_security", True))
    ips = data.get("ips")
    if ips is not None:
        ips = normalize_ips(f"{where}: ips", ips)
    host = data.get("host")
    if host is not None and (not isinstance(host, str) or not HOST_RE.match(host)):
        raise ValidationError(f"{where}: host", f"{host!r} is not {HOST_RULE}")
    target = data.get("migrating_to")
    if target is not None:
        if not isinstance(target, str) or not HOST_RE.match(target):
            raise ValidationError(f"{where}: migrating_to", f"{target!r} is not {HOST_RULE}")
        if host is None or target == host:
            raise ValidationError(f"{where}: migrating_to",
                                  "needs the port's host, and a different one")
    groups = normalize_groups(f"{where}: security_groups", data.get("security_groups"))
    if groups and not port_security:
        raise ValidationError(f"{where}: security_groups",
                              "need port security on (a port without it is not filtered)")
    if groups and mac is None:
        raise ValidationError(f"{where}: security_groups",
                              "need the port's mac: the filters are keyed on it")
    return Port(name, network, device, iface_id, mac, port_security, ips, host, target,
                groups)


def normalize_ips(field: str, value: Any) -> tuple[str, ...]:
    """A port's own unicast addresses, canonical, sorted, at most MAX_PORT_IPS."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(field, f"{value!r} is not a list of IP addresses")
    if len(value) > MAX_PORT_IPS:
        raise ValidationError(field, f"{len(value)} addresses; at most {MAX_PORT_IPS} allowed")
    out = set()
    for item in value:
        try:
            ip = ipaddress.ip_address(item.strip() if isinstance(item, str) else item)
        except ValueError:
            raise ValidationError(
                field, f"{item!r} is not an IPv4 or IPv6 address (e.g. 192.0.2.10)") from None
        if ip.is_multicast or ip.is_unspecified or ip.is_loopback or (
                ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
            raise ValidationError(field, f"{item!r} is not a unicast host address")
        out.add(ip)
    return tuple(str(ip) for ip in sorted(out, key=lambda a: (a.version, a)))


@dataclasses.dataclass
class Topology:
    """The whole desired state, as one value: what a store reads and writes."""

    networks: dict[str, Network] = dataclasses.field(default_factory=dict)
    ports: dict[str, Port] = dataclasses.field(default_factory=dict)
    revision: int = 0
    security_groups: dict[str, SecurityGroup] = dataclasses.field(default_factory=dict)
    # Live hosts (name -> registration: tunnel endpoint, driver), as a shared
    # store reports them. Not desired state: never written with it.
    hosts: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict, compare=False)
    # Security group -> its members' addresses, over every host's ports:
    # what remote-group rules match. A local view keeps the whole
    # topology's, since members elsewhere count too. Derived, so not compared.
    members: dict[str, tuple[str, ...]] | None = dataclasses.field(default=None, compare=False)
    # A port's groups (sorted names) -> their compiled firewall, shared by every
    # port with the same groups (ovsbr.secgroups.policy.port_policy fills it).
    # Derived from this value, which is not changed once a store hands it out.
    firewalls: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    # Ports by host, network and group (see ovsbr.port_index); built on first
    # use, or carried over by the etcd watcher. Derived, so not compared.
    port_index: PortIndex | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], validate: bool = True) -> Topology:
        """Parse a document with ``networks`` and ``ports`` lists, validate it whole.

        ``validate=False`` checks each item alone and leaves the cross-checks
        to the caller, for a document merged into an existing state.
        """
        if not isinstance(data, Mapping):
            raise ValidationError("document", "expected a mapping with 'networks' and 'ports'")
        _check_keys("document", data, ("networks", "ports", "security_groups", "revision"))
        topo = cls(revision=_revision(data.get("revision", 0)))
        for item in _as_list("networks", data.get("networks")):
            net = network_from_dict(item)
            if net.name in topo.networks:
                raise ValidationError(f"network {net.name}", "name is used twice")
            topo.networks[net.name] = net
        for item in _as_list("security_groups", data.get("security_groups")):
            group = group_from_dict(item)
            if group.name in topo.security_groups:
                raise ValidationError(f"security group {group.name}", "name is used twice")
            topo.security_groups[group.name] = group
        for item in _as_list("ports", data.get("ports")):
            port = port_from_dict(item)
            if port.name in topo.ports:
                raise ValidationError(f"port {port.name}", "name is used twice")
            topo.ports[port.name] = port
        if validate:
            topo.validate()
        return topo

    def to_dict(self) -> dict[str, Any]:
        data = {
            "revision": self.revision,
            "networks": [n.to_dict() for n in sorted(self.networks.values(), key=_name)],
            "ports": [p.to_dict() for p in sorted(self.ports.values(), key=_name)],
        }
        if self.security_groups:
            data["security_groups"] = [g.to_dict() for g in sorted(
                self.security_groups.values(), key=_name)]
        return data

    def copy(self) -> Topology:
        return Topology(dict(self.networks), dict(self.ports), self.revision,
                        dict(self.security_groups), dict(self.hosts))

    def index(self) -> PortIndex:
        """The ports by host, network and group (built once per value)."""
        if self.port_index is None:
            self.port_index = PortIndex.of(self.ports)
        return self.port_index

    def group_members(self) -> dict[str, tuple[str, ...]]:
        """Security group -> the addresses of its member ports (every host)."""
        if self.members is None:
            found: dict[str, set[str]] = {}
            for group, names in self.index().by_group.items():
                for name in names:
                    found.setdefault(group, set()).update(self.ports[name].ips or ())
            self.members = {g: tuple(sorted(a)) for g, a in found.items()}
        return self.members

    def local_view(self, host: str) -> Topology:
        """What one host's agent wires: every network, the ports declared for it
        (or for no host in particular)."""
        ports = {n: self.ports[n] for n in sorted(self.index().wired_on(host))}
        return Topology(self.networks, ports, self.revision, self.security_groups,
                        self.hosts, self.group_members(), self.firewalls)

    def validate(self) -> None:
        """Cross-object rules: segments unique, references resolve, devices unique."""
        owners: dict[tuple, str] = {}
        for net in sorted(self.networks.values(), key=_name):
            for claim in network_claims(net):
                other = owners.setdefault(claim, net.name)
                if other != net.name:
                    raise network_conflict(net, claim, other)
        for group in sorted(self.security_groups.values(), key=_name):
            for i, rule in enumerate(group.rules):
                if rule.remote_group and rule.remote_group not in self.security_groups:
                    raise ValidationError(
                        f"security group {group.name}: rules[{i}].remote_group",
                        f"unknown security group {rule.remote_group!r}")
        for port in sorted(self.ports.values(), key=_name):
            for group in port.security_groups or ():
                if group not in self.security_groups:
                    raise ValidationError(f"port {port.name}: security_groups",
                                          f"unknown security group {group!r}")
            if port.network not in self.networks:
                raise ValidationError(
                    f"port {port.name}: network", f"unknown network {port.network!r}"
                )
            for claim in port_claims(port):
                other = owners.setdefault(claim, port.name)
                if other != port.name:
                    raise claim_conflict(port, claim, other)

    def ports_of(self, network: str) -> Iterable[Port]:
        return (self.ports[n] for n in sorted(self.index().by_network.get(network, ())))


def _as_list(field: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(field, "expected a list")
    return value


def _revision(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError("revision", f"{value!r} is not a non-negative integer")
    return value


def _name(obj: Network | Port | SecurityGroup) -> str:
    return obj.name
