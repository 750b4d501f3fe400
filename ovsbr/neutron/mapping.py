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

VIF_TYPE_TAP = "tap"
VIF_TYPE_OVS = "ovs"
VNIC_NORMAL = "normal"
# Nova names a VM's tap "tap" + the port id's first 11 characters
# (nova.network.model.NIC_NAME_LEN = 14).
TAP_PREFIX, TAP_ID_LEN = "tap", 11
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
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
                    text("local_ip"), text("bridge"), text("datapath_type"))


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
    try:
        return model.port_from_dict(data)
    except model.ValidationError as e:
        raise MappingError(_PORT_FIELDS.get(e.field.rpartition(": ")[2], "port"),
                           e.message) from None


_PORT_FIELDS = {"network": "network_id", "mac": "mac_address", "host": "binding:host_id",
                "migrating_to": "bindings",
                "ips": "fixed_ips", "device": "id", "port.name": "id"}
