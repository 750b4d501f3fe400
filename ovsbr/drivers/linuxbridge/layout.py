"""The Linux bridge layout as pure functions of the link table.

Layout per network (``bridge_prefix`` + network name, e.g. ``brq-net1``):
the VM taps, and one uplink by type: flat = the mapped NIC itself, vlan =
``<nic>.<vid>`` (needs the kernel's 8021q), vxlan = ``vxlan-<vni>``, local =
none. Geneve has no single uplink: a Linux geneve device reaches one remote
and has no forwarding database, so each remote host gets its own device in
the bridge (``g<vni><remote>``), and bridge port isolation keeps frames from
going tunnel to tunnel (split horizon, as the OVS pipeline does); the bridge
learns remote MACs as it learns local ones. Kernel links have no
external_ids, so ownership is written into the interface alias
(IFLA_IFALIAS): ``ovsbr:net=NAME fp=...`` on bridges, ``ovsbr:uplink=NAME``
on uplinks and ``ovsbr:tunnel=NAME`` on geneve devices ovsbr created.
Nothing without that mark is ever deleted.

Everything here reads values (links, networks, overlays) and returns
values, so it is unit-tested from recorded link tables without a kernel.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping

from ovsbr.drivers import common, names
from ovsbr.drivers.base import Device, NetworkState, Observed, Overlay
from ovsbr.drivers.rtnl import Link, strerror
from ovsbr.exceptions import DriverError, FeatureMissing
from ovsbr.model import Network, effective_mtu

BRIDGE_MARK = "ovsbr:net="
UPLINK_MARK = "ovsbr:uplink="
TUNNEL_MARK = "ovsbr:tunnel="
GENEVE_PORT = 6081  # IANA; what OVS geneve ports use too
PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,6}\Z")
ZERO_MAC = "00:00:00:00:00:00"
MAPPINGS_OPTION = "[linux_bridge] physical_interface_mappings"

Fdb = set[tuple[str, str]]  # (MAC, remote endpoint) entries of a vxlan device


def bridge_alias(name: str, fingerprint: str) -> str:
    return f"{BRIDGE_MARK}{name} fp={fingerprint}"


def parse_bridge_alias(alias: str | None) -> tuple[str, str] | None:
    """(network, fingerprint) from a bridge's alias, or None if not ovsbr's."""
    if not alias or not alias.startswith(BRIDGE_MARK):
        return None
    name, _, fp = alias[len(BRIDGE_MARK):].partition(" fp=")
    return name, fp


def uplink_owner(alias: str | None) -> str | None:
    """The network an uplink ovsbr created belongs to, from its alias."""
    if alias and alias.startswith(UPLINK_MARK):
        return alias[len(UPLINK_MARK):]
    return None


def tunnel_owner(alias: str | None) -> str | None:
    """The network a geneve device ovsbr created belongs to, from its alias."""
    if alias and alias.startswith(TUNNEL_MARK):
        return alias[len(TUNNEL_MARK):]
    return None


def geneve_name(vni: int, remote: str) -> str:
    """g0003e9c6336402: the VNI and the remote endpoint in hex, 15 characters."""
    return f"g{vni:06x}{ipaddress.ip_address(remote).packed.hex()}"


def geneve_wanted(ov: Overlay) -> dict[str, str]:
    """Device name -> remote endpoint, one per remote host of a geneve network."""
    return {geneve_name(ov.vni, remote): remote for remote in sorted(ov.vteps)}


def bridge_mark(link: Link, prefix: str) -> tuple[str, str] | None:
    """(network, fingerprint) of a bridge this agent owns, else None.

    Both the mark and the configured prefix must match, so agents with
    different prefixes on one host never take each other's bridges.
    """
    if link.kind != "bridge" or not link.name.startswith(prefix):
        return None
    return parse_bridge_alias(link.alias)


def bridge_name(prefix: str, net_name: str) -> str:
    return names.ifname(prefix, net_name)


def uplink_name(net: Network, mappings: Mapping[str, str]) -> str | None:
    if net.type == "flat":
        return mappings.get(net.physical_network)
    if net.type == "vlan":
        nic = mappings.get(net.physical_network)
        return names.ifname("", nic, f".{net.segmentation_id}") if nic else None
    if net.type == "vxlan":
        return f"vxlan-{net.segmentation_id}"
    return None


def fingerprint(net: Network, mappings: Mapping[str, str]) -> str:
    """The build settings; the uplink's name comes last (observe checks it)."""
    return common.fingerprint(net.type, net.physical_network, net.segmentation_id,
                              effective_mtu(net), uplink_name(net, mappings))


@dataclasses.dataclass(frozen=True)
class Seen:
    """An observation and what a later delta needs to extend it: the
    owned bridges (index -> network) and every name a network depends on
    or that is not a VM device (mapped NICs, uplinks, tunnels)."""

    observed: Observed
    bridges: Mapping[int, str]
    reserved: frozenset[str]


def observe(links: Mapping[int, Link], prefix: str, mappings: Mapping[str, str]) -> Observed:
    """ovsbr's networks and the candidate VM devices, from the link table.

    A network whose bridge is down, or whose recorded uplink is missing or
    elsewhere, reports a fingerprint that matches nothing: it is rebuilt.
    """
    return see(links, prefix, mappings).observed


def see(links: Mapping[int, Link], prefix: str, mappings: Mapping[str, str]) -> Seen:
    """:func:`observe`, keeping what :func:`see_change` needs."""
    bridges: dict[int, str] = {}
    # LB devices carry no iface-id (kernel links have no external_ids).
    observed = Observed(iface_ids={})
    uplinks = set(mappings.values())
    for link in links.values():
        mark = bridge_mark(link, prefix)
        if mark is not None:
            bridges[link.index] = mark[0]
        elif uplink_owner(link.alias) is not None or tunnel_owner(link.alias) is not None:
            uplinks.add(link.name)
    reserved = set(uplinks)
    by_name = {link.name: link for link in links.values()}
    for index, net_name in bridges.items():
        bridge = links[index]
        fp = parse_bridge_alias(bridge.alias)[1]
        expected_uplink = fp.rsplit("/", 1)[-1]
        if not bridge.up:
            fp = "down"
        elif expected_uplink != "-":
            reserved.add(expected_uplink)
            up = by_name.get(expected_uplink)
            if up is None or up.master != index:
                fp = "uplink-missing"
        observed.networks[net_name] = NetworkState(net_name, fp)
    for link in links.values():
        if link.name in uplinks or link.kind == "bridge" or link.name == "lo":
            continue
        observed.devices[link.name] = Device(link.name, link.mac, None,
                                             bridges.get(link.master))
    return Seen(observed, bridges, frozenset(reserved))


def _same_to_observe(old: Link | None, new: Link | None, device: bool) -> bool:
    """Whether a link's change leaves every field :func:`see` reads as it was
    (a device's MAC too; not a bridge's or an uplink's, which are no device)."""
    return old is not None and new is not None and (
        old.name, old.kind, old.alias, old.up, old.master) == (
        new.name, new.kind, new.alias, new.up, new.master) and (
        not device or old.mac == new.mac)


def see_change(seen: Seen, changed: Mapping[int, Link | None],
               current: Callable[[int], Link | None]) -> tuple[Seen, frozenset[str]] | None:
    """``seen`` moved on (in place) by the links that changed (index -> the
    link as it was, None if new; ``current`` gives each one now), and the
    device names that changed; None, with ``seen`` untouched, when a change
    touches a bridge, an uplink or a name a network depends on: then only a
    whole :func:`see` tells.

    The same answer as :func:`see` of the new table for every other change
    (tests/unit/test_lb_layout.py), at the cost of the changed links alone.
    """
    now = {index: current(index) for index in changed}
    names: set[str] = set()
    for index, old in list(changed.items()):
        device = old is not None and old.kind != "bridge" and index not in seen.bridges \
            and old.name not in seen.reserved
        if _same_to_observe(old, now[index], device):
            del now[index]  # e.g. a bridge's MAC or carrier moved as a tap joined
            continue
        for link in (old, now[index]):
            if link is None:
                continue
            if index in seen.bridges or link.kind == "bridge" or link.name in seen.reserved \
                    or uplink_owner(link.alias) is not None \
                    or tunnel_owner(link.alias) is not None:
                return None
            names.add(link.name)
    # In place: copying every device per event was most of this at 5,000
    # ports, and nothing keeps an older observation (the agent replaces its
    # own with each one; a plan keeps Device objects, not this mapping).
    devices = seen.observed.devices
    for index in now:  # every old name first: names move in a batch
        old = changed[index]
        if old is not None:
            devices.pop(old.name, None)
    for link in now.values():
        if link is not None and link.name != "lo":
            devices[link.name] = Device(link.name, link.mac, None,
                                        seen.bridges.get(link.master))
    return seen, frozenset(names)


def owned_bridge(links: Iterable[Link], prefix: str, net_name: str) -> Link | None:
    for link in links:
        mark = bridge_mark(link, prefix)
        if mark is not None and mark[0] == net_name:
            return link
    return None


def our_leftover(link: Link, kind: str, links: Iterable[Link]) -> bool:
    """A device with ovsbr's name, of ovsbr's kind, unmarked and unused.

    What an agent killed between creating a device and marking it leaves
    behind; adopting it is what the next run must do. Anything with an
    alias or with members stays someone else's.
    """
    if link.alias or link.kind != kind or link.master is not None:
        return False
    return not any(other.master == link.index for other in links)


# Network type -> (link kind, kernel module) it needs beyond the bridge.
KERNEL_NEEDS = {"vlan": ("vlan", "8021q"), "vxlan": ("vxlan", "vxlan"),
                "geneve": ("geneve", "geneve")}


def missing_feature(net_type: str, module: str) -> FeatureMissing:
    if net_type == "vlan":
        return FeatureMissing("vlan networks need VLAN sub-interfaces (kernel module "
                              "8021q), which this host's kernel does not provide")
    return FeatureMissing(f"{net_type} networks need the kernel's {net_type} devices "
                          f"(kernel module {module}), which this host does not provide")


def check_buildable(net: Network, mappings: Mapping[str, str],
                    missing: Mapping[str, str] | None = None) -> None:
    """Refuse, before touching anything, a network this host cannot build.

    ``missing``: network type -> kernel module the start-up probe found absent.
    """
    if missing and net.type in missing:
        raise missing_feature(net.type, missing[net.type])
    common.physnet_target(net, mappings, MAPPINGS_OPTION)


def create_error(code: int, net_type: str, name: str, detail: str) -> Exception:
    """What a failed creation of a network type's device means, by errno
    (``detail``: the kernel's words)."""
    if code in (errno.EOPNOTSUPP, errno.ENOENT) and net_type in KERNEL_NEEDS:
        return missing_feature(net_type, KERNEL_NEEDS[net_type][1])
    return DriverError(f"cannot create {name}: {detail}")


def plug_error(code: int, device: str, bridge: str, net: Network) -> str:
    """Why a tap could not join its network's bridge, by errno."""
    if code == errno.EXFULL:
        return (f"bridge {bridge} of network {net.name} is full: a Linux bridge "
                "holds at most 1023 ports (kernel limit)")
    return f"cannot attach {device} to {bridge}: {strerror(code)}"


def fdb_wanted(ov: Overlay) -> Fdb:
    """One all-zero entry per remote host (head-end replication of broadcast
    and unknown unicast) and one entry per remote MAC."""
    return {(ZERO_MAC, ip) for ip in ov.vteps} | set(ov.macs)


def fdb_diff(current: Fdb, wanted: Fdb) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(entries to delete, entries to add), each sorted."""
    return sorted(current - wanted), sorted(wanted - current)
