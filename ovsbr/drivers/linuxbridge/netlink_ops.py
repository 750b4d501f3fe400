"""The linuxbridge driver's kernel requests, each taking plain values.

No decisions here (those are in :mod:`.layout` and the driver): these
functions only say to the kernel what they are given, so they are the
whole surface that needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

from ovsbr.drivers import rtnl
from ovsbr.drivers.linuxbridge import layout
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
        raise layout.create_error(e.code, net.type, name, str(e)) from e


def detach(ipr: IPRoute, index: int) -> None:
    """Take a device off its bridge; one already gone is detached."""
    try:
        ipr.link("set", index=index, master=0)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise


_SPEC_ATTRS = {"master": "IFLA_MASTER", "mtu": "IFLA_MTU"}
_seq = itertools.count(0x4F000000)  # this process's batch sequence numbers


def setlink_message(index: int, spec: dict, seq: int) -> bytes:
    """One ``link set`` request (``master``, ``mtu``, ``state``), encoded by
    pyroute2's own ifinfmsg: the bytes IPBatch makes, without building an
    IPRoute and its event loop per batch (most of a one-port plug here)."""
    msg = ifinfmsg()
    msg["index"] = index
    if "state" in spec:
        msg["change"] = IFF_UP
        msg["flags"] = IFF_UP if spec["state"] == "up" else 0
    msg["attrs"] = [(_SPEC_ATTRS[k], v) for k, v in spec.items() if k != "state"]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def send_batch(sock: rtnl.RtnlSocket, requests: list[tuple[int, dict]]) -> dict[int, int]:
    """``link set`` for many devices in one write; position -> errno of failures.

    One write of pre-built requests and one read of the acknowledgements
    instead of a round trip per device.
    """
    seqs = [next(_seq) & 0xFFFFFFFF for _ in requests]
    data = b"".join(setlink_message(index, spec, seq)
                    for (index, spec), seq in zip(requests, seqs, strict=True))
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


def probe_kinds(needs: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Network type -> kernel module, for each link kind this kernel cannot make.

    Creating a link of a kind loads its module on demand, so a real creation
    is the only probe that tells (a built-in driver has no /sys/module entry).
    The probe devices live for a moment and are removed.
    """
    with IPRoute() as ipr:
        tag = f"obp{os.getpid() % 10000}"
        parent = f"{tag}v"
        missing: dict[str, str] = {}
        try:
            ipr.link("add", ifname=parent, kind="veth", peer=f"{parent}p")
            index = ipr.link_lookup(ifname=parent)[0]
        except NetlinkError:
            index = None
        specs = {"vlan": {"link": index, "vlan_id": 4094},
                 "vxlan": {"vxlan_id": 16777215},
                 "geneve": {"geneve_id": 16777215, "geneve_remote": "192.0.2.254"}}
        try:
            for net_type, (kind, module) in needs.items():
                name = f"{tag}{kind[:2]}"
                try:
                    if kind == "vlan" and index is None:
                        raise NetlinkError(errno.EOPNOTSUPP)
                    ipr.link("add", ifname=name, kind=kind, **specs[kind])
                except NetlinkError as e:
                    if e.code in (errno.EOPNOTSUPP, errno.ENOENT, errno.EINVAL):
                        missing[net_type] = module
                    continue
                ipr.link("del", ifname=name)
        finally:
            if index is not None:
                ipr.link("del", index=index)
        return missing


def create_geneve(ipr: IPRoute, name: str, vni: int, remote: str, port: int) -> None:
    try:
        ipr.link("add", ifname=name, kind="geneve", geneve_id=vni, geneve_remote=remote,
                 geneve_port=port)
    except NetlinkError as e:
        raise layout.create_error(e.code, "geneve", name, str(e)) from e


def isolate(ipr: IPRoute, index: int) -> None:
    """Bridge port isolation: no frame from one isolated port to another
    (kernel >= 4.18); here, never from one tunnel to another."""
    ipr.link("set", index=index, kind="bridge_slave", isolated=1)
