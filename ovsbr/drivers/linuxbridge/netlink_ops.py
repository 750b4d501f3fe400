"""The linuxbridge driver's kernel requests, each taking plain values.

No decisions here (those are in :mod:`.layout` and the driver): these
functions only say to the kernel what they are given, so they are the
whole surface that needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import logging

from pyroute2 import IPBatch, IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ovsbr.drivers import rtnl
from ovsbr.drivers.linuxbridge import layout
from ovsbr.drivers.netlink import link_from_msg
from ovsbr.drivers.rtnl import Link
from ovsbr.model import Network

LOG = logging.getLogger(__name__)


def l2_only(device: str) -> None:
    """Keep the host off a VM network's bridge or uplink.

    A bridge is also a host interface: by default the host answers ARP on it
    for any of its own addresses and gives it an IPv6 link-local address,
    which lets VMs reach (and spoof toward) the host. ovsbr's bridges are
    L2 only, as Neutron's were.
    """
    for path, value in ((f"/proc/sys/net/ipv4/conf/{device}/arp_ignore", "8"),
                        (f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6", "1")):
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            LOG.warning("cannot write %s: %s", path, e)


def get_link(ipr: IPRoute, index: int) -> Link:
    return link_from_msg(ipr.link("get", index=index)[0])


def lookup(ipr: IPRoute, name: str) -> Link | None:
    idx = ipr.link_lookup(ifname=name)
    return get_link(ipr, idx[0]) if idx else None


def create_uplink(ipr: IPRoute, net: Network, name: str, nic: int | None, udp_port: int,
                  local_ip: str | None) -> None:
    """A VLAN sub-interface of ``nic``, or a vxlan device, for ``net``."""
    try:
        if net.type == "vlan":
            ipr.link("add", ifname=name, kind="vlan", link=nic, vlan_id=net.segmentation_id)
        else:
            # No learning from the wire: remote MACs and the flood list
            # come from the store (set_overlay), l2population style.
            spec = {"vxlan_id": net.segmentation_id, "vxlan_port": udp_port,
                    "vxlan_learning": 0}
            if local_ip:
                spec["vxlan_local"] = local_ip
            ipr.link("add", ifname=name, kind="vxlan", **spec)
    except NetlinkError as e:
        raise layout.uplink_error(e.code, net, name, str(e)) from e


def delete_link(ipr: IPRoute, index: int) -> None:
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise


def detach(ipr: IPRoute, index: int) -> None:
    """Take a device off its bridge; one already gone is detached."""
    try:
        ipr.link("set", index=index, master=0)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise


def send_batch(sock: rtnl.RtnlSocket, requests: list[tuple[int, dict]]) -> dict[int, int]:
    """``link set`` for many devices in one write; position -> errno of failures.

    One write of pre-built requests and one read of the acknowledgements
    instead of a round trip per device.
    """
    batch = IPBatch()
    for index, spec in requests:
        batch.link("set", index=index, **spec)
    data = bytes(batch.batch)
    seqs = [seq for _t, _f, seq, _o, _e in rtnl.messages(data)]
    failures = sock.send_batch(data, set(seqs))
    return {i: failures[seq] for i, seq in enumerate(seqs) if seq in failures}


def fdb_entries(ipr: IPRoute, index: int) -> layout.Fdb:
    """A vxlan device's entries that have a remote: ovsbr's."""
    current = set()
    for msg in ipr.fdb("dump", ifindex=index):
        dst = msg.get_attr("NDA_DST")
        if dst and msg["ifindex"] == index:
            current.add((msg.get_attr("NDA_LLADDR"), dst))
    return current


def fdb_apply(ipr: IPRoute, index: int, remove: list[tuple[str, str]],
              add: list[tuple[str, str]]) -> None:
    for mac, dst in remove:
        ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
    for mac, dst in add:
        ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst)
