"""What both drivers decide alike, written once.

os-vif keeps such helpers beside its plugins (``linux_net.py``) rather
than in a base class: the drivers compose them, nothing is inherited.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ovsbr.drivers.base import EventCallback
from ovsbr.drivers.netlink import LinkTable, link_from_msg
from ovsbr.drivers.rtnl import Link
from ovsbr.exceptions import DriverError
from ovsbr.model import Network

LOG = logging.getLogger(__name__)
PHYSICAL_TYPES = ("flat", "vlan")


def physnet_target(net: Network, mappings: Mapping[str, str], option: str) -> str | None:
    """The NIC or bridge a flat/vlan network's physical network maps to.

    None for networks without a physical network; an unmapped one is an
    error naming the option the operator must extend.
    """
    if net.type not in PHYSICAL_TYPES:
        return None
    target = mappings.get(net.physical_network or "")
    if target is None:
        raise DriverError(f"physical network {net.physical_network!r} has no entry in "
                          f"{option} on this host")
    return target


def describe_mappings(mappings: Mapping[str, str]) -> str:
    """``physnet1:eth1,physnet2:eth2`` for the start-up line, or ``none``."""
    return ",".join(f"{k}:{v}" for k, v in sorted(mappings.items())) or "none"


def fingerprint(*parts: object) -> str:
    """A network's build settings as the datapath records them (``-`` for unset).

    The format is stored on the datapath (bridge alias, OVSDB external_ids):
    changing it makes every agent rebuild every network once after upgrade.
    """
    return "/".join(str(x) if x else "-" for x in parts)


class HostLinks:
    """The host's link table and the netlink socket that acts on it.

    Both drivers follow the kernel's links the same way: a table fed by
    RTM_NEWLINK/RTM_DELLINK events that wakes the agent, and one IPRoute,
    made and used on the agent's reconcile thread, for changes.
    """

    def __init__(self):
        self.table = LinkTable()
        self._ipr: IPRoute | None = None

    def start(self, on_event: EventCallback) -> None:
        self.table.start(on_event)
        self.table.refresh()

    def stop(self) -> None:
        self.table.stop()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def get(self, index: int) -> Link:
        """Read one link from the kernel, and keep the table current with it."""
        link = link_from_msg(self.ipr.link("get", index=index)[0])
        self.table.put(link)
        return link

    def lookup(self, name: str) -> Link | None:
        idx = self.ipr.link_lookup(ifname=name)
        return self.get(idx[0]) if idx else None

    def delete(self, link: Link) -> None:
        """Delete a link; one already gone is deleted."""
        try:
            self.ipr.link("del", index=link.index)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
        self.table.forget(link.index)

    def link_up(self, name: str) -> None:
        """Bring a tap up, as libvirt and os-vif do when they plug it."""
        link = self.table.by_name(name)
        if link is None or link.up:
            return
        try:
            self.ipr.link("set", index=link.index, state="up")
        except Exception as e:  # the device may vanish under us
            raise DriverError(f"cannot bring {name} up: {e}") from e
