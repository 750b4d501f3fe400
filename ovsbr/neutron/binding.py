"""Which segment a host can serve, and the VIF Nova must plug (pure).

``bind_port`` must have no side effects; everything it decides is here, from
values: the segments Neutron offers and the host's registry entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ovsbr.model import NETWORK_TYPES, OVERLAY_TYPES
from ovsbr.neutron.mapping import VIF_TYPE_OVS, VIF_TYPE_TAP, VNIC_NORMAL, HostInfo

PHYSICAL_TYPES = frozenset({"flat", "vlan"})


@dataclasses.dataclass(frozen=True)
class Binding:
    segment: Mapping[str, Any]
    vif_type: str
    vif_details: Mapping[str, Any]


def serves(segment: Mapping[str, Any], host: HostInfo) -> bool:
    """Can ``host`` wire a port on ``segment``?

    Physical segments need their physical network mapped on the host;
    overlays need a tunnel endpoint to reach other hosts.
    """
    ntype = segment.get("network_type")
    if ntype not in NETWORK_TYPES:  # both datapaths build every ovsbr type...
        return False
    if host.network_types and ntype not in host.network_types:  # ...if the host can
        return False
    if ntype in PHYSICAL_TYPES:
        return segment.get("physical_network") in host.physical_networks
    if ntype in OVERLAY_TYPES:
        return host.local_ip is not None
    return True


def vif_details(host: HostInfo, mac: str | None) -> dict[str, Any]:
    """What Nova and os-vif read to plug the VM's NIC.

    ``port_filter``: the host's agent enforces security groups (Nova and
    os-vif then add no filtering of their own).
    """
    details: dict[str, Any] = {"port_filter": host.security_groups, "connectivity": "l2"}
    if host.vif_type == VIF_TYPE_TAP:
        if mac:
            details["mac_address"] = mac
    elif host.vif_type == VIF_TYPE_OVS:
        details.update({"bridge_name": host.bridge or "br-int",
                        "datapath_type": host.datapath_type or "system",
                        "ovs_hybrid_plug": False})
    return details


def choose(segments: Sequence[Mapping[str, Any]], host: HostInfo | None,
           vnic_type: str, mac: str | None, filtered: bool = False) -> Binding | None:
    """The first segment the host serves, with its VIF; None to leave the port
    to another driver (unknown or dead host, unsupported vnic, no segment, or
    a port with security groups on a host that cannot enforce them: never
    bound to be filtered less than Neutron says)."""
    if host is None or host.vif_type is None or vnic_type != VNIC_NORMAL:
        return None
    if filtered and not host.security_groups:
        return None
    for segment in segments:
        if serves(segment, host):
            return Binding(segment, host.vif_type, vif_details(host, mac))
    return None
