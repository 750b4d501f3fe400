"""Which remote hosts and MACs each overlay network needs, from the shared store.

The l2population idea (Neutron): the store already knows every port's host
and MAC, and every live host's tunnel endpoint, so each agent can program
its head-end replication list and its remote MACs ahead of traffic instead
of flooding to every host and learning from the wire. Pure data, unit-tested.
"""

from __future__ import annotations

from ovsbr.drivers.base import Overlay
from ovsbr.model import OVERLAY_TYPES, Topology

__all__ = ["Overlay", "overlays"]


def overlays(topo: Topology, host: str, local_ip: str | None) -> dict[str, Overlay]:
    """Per overlay network: the live remote hosts that have ports on it.

    A host counts only while it is registered (its lease alive) and has a
    tunnel endpoint that is not ours; its ports' MACs come with it. A network
    with no port on this host needs no tunnels here: nothing local to send
    from, nothing to receive for. A live migration's destination joins the
    flood lists ahead of the switch; the port's MAC stays with its host.
    """
    endpoint = {name: info.get("local_ip") for name, info in topo.hosts.items()
                if name != host and info.get("local_ip") and info.get("local_ip") != local_ip}
    vteps: dict[str, set[str]] = {}
    macs: dict[str, set[tuple[str, str]]] = {}
    index = topo.index()  # only the ports of this host's overlay networks are read
    local = {topo.ports[n].network for n in index.wired_on(host)}
    members = (topo.ports[name] for network in sorted(local)
               if network in topo.networks and topo.networks[network].type in OVERLAY_TYPES
               for name in index.by_network.get(network, ()))
    for port in members:
        net = topo.networks[port.network]
        target = endpoint.get(port.migrating_to or "")
        if target is not None:
            vteps.setdefault(net.name, set()).add(target)
        ip = endpoint.get(port.host or "")
        if ip is None:
            continue
        vteps.setdefault(net.name, set()).add(ip)
        if port.mac:
            macs.setdefault(net.name, set()).add((port.mac, ip))
    return {name: Overlay(net.type, net.segmentation_id, frozenset(vteps.get(name, ())),
                          tuple(sorted(macs.get(name, ()))))
            for name, net in topo.networks.items() if net.type in OVERLAY_TYPES}
