"""What a network or a port holds alone, and the error when two hold it (pure).

A claim is a tuple, prefixed by its kind so a network's never meets a
port's; its last item is the value an error names. Two objects with one
claim make a topology invalid: :meth:`ovsbr.model.Topology.validate`
checks a whole topology this way, and the stores check one written object
against the claims of the rest (:mod:`ovsbr.store.claims`,
:mod:`ovsbr.store.mirror`), so the rule lives here once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ovsbr.validation import ValidationError

if TYPE_CHECKING:
    from ovsbr.model import Network, Port

Claim = tuple


def network_claims(net: Network) -> tuple[Claim, ...]:
    """A network's segment, and a flat network its physical network."""
    claims = []
    if net.type == "flat":
        claims.append(("flat", net.physical_network))
    if net.type == "vlan":
        claims.append(("segment", "vlan", net.physical_network, net.segmentation_id))
    elif net.type not in ("local", "flat"):  # the overlays: a VNI per type
        claims.append(("segment", net.type, net.segmentation_id))
    return tuple(claims)


def network_conflict(net: Network, claim: Claim, other: str) -> ValidationError:
    """The error for ``net`` claiming what network ``other`` holds."""
    if claim[0] == "flat":
        return ValidationError(f"network {net.name}: physical_network",
                               f"{net.physical_network} already carries flat network {other}")
    return ValidationError(f"network {net.name}: segmentation_id",
                           f"{net.segmentation_id} is already used by network {other}")


def port_claims(port: Port) -> tuple[Claim, ...]:
    """A port's device on its host (names repeat across hypervisors, vnet0
    everywhere), its iface-id, its MAC and addresses on its network."""
    claims = []
    if port.device is not None:
        claims.append(("device", port.host or "", port.device))
    if port.iface_id is not None:
        claims.append(("iface_id", port.iface_id))
    if port.mac is not None:
        claims.append(("mac", port.network, port.mac))
    claims += [("ip", port.network, ip) for ip in port.ips or ()]
    return tuple(claims)


def claim_conflict(port: Port, claim: Claim, other: str) -> ValidationError:
    """The error for ``port`` claiming what port ``other`` holds."""
    field, value = claim[0], claim[-1]
    where = f" on network {port.network}" if field in ("mac", "ip") else ""
    return ValidationError(f"port {port.name}: {'ips' if field == 'ip' else field}",
                           f"{value} is already port {other}'s{where}")
