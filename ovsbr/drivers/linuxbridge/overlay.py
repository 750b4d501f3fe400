"""Overlay networks on Linux bridges: what the store says of the other hosts.

vxlan: the network's ``vxlan-<vni>`` device forwards by its own database:
one all-zero entry per remote host (head-end replication of broadcast and
unknown unicast) and one entry per remote MAC; entries with a remote are
ovsbr's, those learned locally stay. geneve: a Linux geneve device reaches
one remote and has no such database, so each remote host gets a device in
the network's bridge, as an isolated bridge port (split horizon).
"""

from __future__ import annotations

from pyroute2.netlink.exceptions import NetlinkError

from ovsbr.drivers.base import Overlay
from ovsbr.drivers.common import HostLinks
from ovsbr.drivers.linuxbridge import layout
from ovsbr.drivers.linuxbridge import netlink_ops as ops
from ovsbr.exceptions import DriverError


def program(links: HostLinks, prefix: str, name: str, ov: Overlay) -> None:
    """One overlay network's remote hosts and MACs, as the store has them."""
    # Every overlay network: a geneve one gets its devices, one that was
    # geneve before loses them.
    sync_geneve(links, prefix, name, ov)
    if ov.type == "vxlan":
        sync_fdb(links, name, ov)


def sync_fdb(links: HostLinks, name: str, ov: Overlay) -> None:
    link = links.lookup(f"vxlan-{ov.vni}")
    if link is None:
        return
    remove, add = layout.fdb_diff(ops.fdb_entries(links.ipr, link.index),
                                  layout.fdb_wanted(ov))
    try:
        ops.fdb_apply(links.ipr, link.index, remove, add)
    except NetlinkError as e:
        raise DriverError(f"network {name}: cannot program the vxlan forwarding "
                          f"database: {e}") from e


def sync_geneve(links: HostLinks, prefix: str, name: str, ov: Overlay) -> None:
    """The network's geneve devices: one per remote host, isolated ports."""
    wanted = layout.geneve_wanted(ov) if ov.type == "geneve" else {}
    for link in links.table.snapshot().values():
        if layout.tunnel_owner(link.alias) == name and link.name not in wanted:
            links.delete(link)
    if not wanted:
        return
    bridge = layout.owned_bridge(links.table.snapshot().values(), prefix, name)
    if bridge is None:
        return  # not built (yet, or it failed): nothing to attach to
    ipr = links.ipr
    for dev, remote in wanted.items():
        link = links.lookup(dev)
        if link is not None and layout.tunnel_owner(link.alias) != name:
            raise DriverError(f"device {dev} exists and was not created by ovsbr "
                              f"for network {name}")
        try:
            if link is None:
                ops.create_geneve(ipr, dev, ov.vni, remote, layout.GENEVE_PORT)
                link = links.lookup(dev)
                ipr.link("set", index=link.index, ifalias=f"{layout.TUNNEL_MARK}{name}")
                ops.l2_only(dev)
            # The bridge carries the network's MTU (ensure_network set it).
            if link.master != bridge.index or not link.up or link.mtu != bridge.mtu:
                ipr.link("set", index=link.index, master=bridge.index, state="up",
                         mtu=bridge.mtu)
                ops.isolate(ipr, link.index)
                links.get(link.index)
        except NetlinkError as e:
            raise DriverError(f"network {name}: cannot build the geneve device to "
                              f"{remote}: {e}") from e
