"""Neutron resources -> ovsbr's model, and the host registry -> HostInfo (pure).

No ``neutron`` or ``neutron_lib`` import here: the unit tests run without
the extra. Every refusal names the Neutron field (``allowed_address_pairs``,
``provider:network_type``...) and what ovsbr accepts, so an API user sees
the reason in the 400 answer.

Naming: an ovsbr network is named by the Neutron network's id and a port by
the Neutron port's id (UUIDs fit :data:`ovsbr.model.NAME_RE`). Objects
whose name is a UUID are Neutron's: the resync removes those it no longer
finds in Neutron and never touches the operator's own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ovsbr import model
from ovsbr.secgroups import model as sgm

VIF_TYPE_TAP = "tap"
VIF_TYPE_OVS = "ovs"
VNIC_NORMAL = "normal"
# Nova names a VM's tap "tap" + the port id's first 11 characters
# (nova.network.model.NIC_NAME_LEN = 14).
TAP_PREFIX, TAP_ID_LEN = "tap", 11
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
DRIVER_VIF = {"linuxbridge": VIF_TYPE_TAP, "openvswitch": VIF_TYPE_OVS}
VIF_TYPES = frozenset(DRIVER_VIF.values())
MECHANISM_DRIVER = "ovsbr"  # the entry point's name, recorded in Neutron's binding levels


class MappingError(ValueError):
    """A Neutron resource ovsbr cannot represent; ``field`` is Neutron's name."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def is_neutron_name(name: str) -> bool:
    return bool(UUID_RE.match(name))


def tap_name(port_id: str) -> str:
    return TAP_PREFIX + port_id[:TAP_ID_LEN]


@dataclasses.dataclass(frozen=True)
class HostInfo:
    """What an agent published about its host (``hosts/<host>`` in the store)."""

    driver: str
    physical_networks: frozenset[str] = frozenset()
    network_types: frozenset[str] = frozenset()
    local_ip: str | None = None
    bridge: str | None = None  # openvswitch: the integration bridge
    datapath_type: str | None = None  # openvswitch: system | netdev
    security_groups: bool = False  # the agent can enforce them (bridge conntrack)

    @property
    def vif_type(self) -> str | None:
        return DRIVER_VIF.get(self.driver)


def host_info(entry: Mapping[str, Any]) -> HostInfo | None:
    """Parse one registry entry; None for an entry no binding can rely on."""
    if not isinstance(entry, Mapping) or entry.get("driver") not in DRIVER_VIF:
        return None

    def names(key: str) -> frozenset[str]:
        value = entry.get(key) or []
        return frozenset(v for v in value if isinstance(v, str)) if isinstance(
            value, list) else frozenset()

    def text(key: str) -> str | None:
        value = entry.get(key)
        return value if isinstance(value, str) and value else None

    return HostInfo(entry["driver"], names("physical_networks"), names("network_types"),
                    text("local_ip"), text("bridge"), text("datapath_type"),
                    entry.get("security_groups") is True)


def network(net: Mapping[str, Any], segment: Mapping[str, Any]) -> model.Network:
    """The ovsbr network for a Neutron network bound through ``segment``."""
    data = {"name": net.get("id"), "type": segment.get("network_type"),
            "physical_network": segment.get("physical_network"),
            "segmentation_id": segment.get("segmentation_id"), "mtu": net.get("mtu") or None}
    try:
        return model.network_from_dict({k: v for k, v in data.items() if v is not None})
    except model.ValidationError as e:
        raise MappingError(_NETWORK_FIELDS.get(e.field.rpartition(": ")[2], "network"),
                           e.message) from None


_NETWORK_FIELDS = {"type": "provider:network_type",
                   "physical_network": "provider:physical_network",
                   "segmentation_id": "provider:segmentation_id", "mtu": "mtu",
                   "network.name": "id"}


def port_addresses(port: Mapping[str, Any]) -> tuple[str, ...]:
    """Fixed IPs and allowed address pairs: the sources port security admits.

    ovsbr enforces host addresses on the port's own MAC; a pair that names a
    prefix or another MAC is refused (it would be silently dropped on the
    wire otherwise).
    """
    addresses = [ip["ip_address"] for ip in port.get("fixed_ips") or ()
                 if isinstance(ip, Mapping) and ip.get("ip_address")]
    mac = (port.get("mac_address") or "").lower()
    for i, pair in enumerate(port.get("allowed_address_pairs") or ()):
        field = f"allowed_address_pairs[{i}]"
        if not isinstance(pair, Mapping):
            raise MappingError(field, "expected {ip_address, mac_address}")
        pair_mac = (pair.get("mac_address") or mac).lower()
        if pair_mac != mac:
            raise MappingError(f"{field}.mac_address",
                               f"{pair_mac} differs from the port's MAC {mac}; ovsbr "
                               "admits other addresses on the port's own MAC only")
        text = str(pair.get("ip_address", ""))
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise MappingError(f"{field}.ip_address",
                               f"{text!r} is not an IP address") from None
        if net.num_addresses != 1:
            raise MappingError(f"{field}.ip_address",
                               f"{text} is a prefix; ovsbr admits single addresses "
                               "(/32, /128) only")
        addresses.append(str(net.network_address))
    return tuple(addresses)


def needs_filtering(port: Mapping[str, Any]) -> bool:
    """Whether the port has security groups to enforce."""
    return bool(port.get("port_security_enabled", True) and port.get("security_groups"))


def port(port: Mapping[str, Any], host: str, vif_type: str,
         migrating_to: str | None = None) -> model.Port:
    """The ovsbr port for a Neutron port bound on ``host`` with ``vif_type``.

    ``tap``: the agent finds the VM's tap by Nova's name. ``ovs``: os-vif
    plugs the tap into the bridge with ``external_ids:iface-id`` = the port
    id, which the agent matches first; the name is the fallback.
    """
    port_id = port.get("id")
    if not isinstance(port_id, str) or not UUID_RE.match(port_id):
        raise MappingError("id", f"{port_id!r} is not a port UUID")
    data: dict[str, Any] = {
        "name": port_id, "network": port.get("network_id"), "device": tap_name(port_id),
        "mac": port.get("mac_address"), "host": host,
        "port_security": bool(port.get("port_security_enabled", True)),
    }
    if migrating_to and migrating_to != host:
        data["migrating_to"] = migrating_to
    if vif_type == VIF_TYPE_OVS:
        data["iface_id"] = port_id
    if data["port_security"]:
        data["ips"] = list(port_addresses(port))
        data["security_groups"] = list(port.get("security_groups") or ())
    try:
        return model.port_from_dict(data)
    except model.ValidationError as e:
        raise MappingError(_PORT_FIELDS.get(e.field.rpartition(": ")[2], "port"),
                           e.message) from None


_PORT_FIELDS = {"network": "network_id", "mac": "mac_address", "host": "binding:host_id",
                "migrating_to": "bindings", "security_groups": "security_groups",
                "ips": "fixed_ips", "device": "id", "port.name": "id"}


# Protocol names Neutron's API accepts besides the ones ovsbr's model knows
# (neutron_lib.constants.IP_PROTOCOL_MAP), as numbers.
PROTOCOLS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "igmp": 2,
             "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
             "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113,
             "rsvp": 46, "udplite": 136, "vrrp": 112}


def rule(rule: Mapping[str, Any]) -> sgm.Rule:
    """One Neutron security group rule as ovsbr's.

    Neutron keeps an ICMP rule's type and code in the port-range fields,
    names protocols by name or number (``ipv6-icmp`` and ``icmp`` on IPv6
    are icmpv6), and refers to remote groups by id.
    """
    if rule.get("remote_address_group_id"):
        raise MappingError("remote_address_group_id",
                           "address groups are not supported by ovsbr; use "
                           "remote_ip_prefix or remote_group_id")
    proto = rule.get("protocol")
    if isinstance(proto, str) and proto.lower() in PROTOCOLS:
        proto = PROTOCOLS[proto.lower()]
    data: dict[str, Any] = {"id": rule.get("id"), "direction": rule.get("direction"),
                            "ethertype": rule.get("ethertype"), "protocol": proto,
                            "remote_ip_prefix": rule.get("remote_ip_prefix"),
                            "remote_group": rule.get("remote_group_id")}
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    try:
        number = sgm.protocol_number("protocol", proto)
    except model.ValidationError as e:
        raise MappingError("protocol", e.message) from None
    if number in sgm.ICMP_PROTOCOLS:
        data.update(icmp_type=lo, icmp_code=hi)
    elif lo is not None or hi is not None:
        if number not in sgm.PORT_PROTOCOLS:
            raise MappingError("port_range_min", "ovsbr filters port ranges for tcp, udp "
                               "and sctp only")
        data.update(port_range_min=lo, port_range_max=hi)
    try:
        return sgm.rule_from_dict({k: v for k, v in data.items() if v is not None})
    except model.ValidationError as e:
        raise MappingError(e.field.rpartition(": ")[2].replace("remote_group",
                                                                "remote_group_id"),
                           e.message) from None


def security_group(group: Mapping[str, Any]) -> tuple[sgm.SecurityGroup, list[str]]:
    """A Neutron security group with its rules, named by its id; and the rules
    ovsbr cannot represent, left out with the reason. Rules only allow, so
    one left out allows less, never more; the caller logs the reasons."""
    rules, problems = [], []
    for r in group.get("security_group_rules") or ():
        try:
            rules.append(rule(r))
        except MappingError as e:
            problems.append(f"rule {r.get('id')}: {e}")
    desc = (group.get("name") or "")[:255] or None
    try:
        return sgm.group_from_dict({"name": group.get("id"), "description": desc,
                                    "rules": [r.to_dict() for r in rules]}), problems
    except model.ValidationError as e:
        raise MappingError("security_group_rules", e.message) from None
