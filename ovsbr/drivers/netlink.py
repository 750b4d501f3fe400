"""A netlink link table kept current by RTM_NEWLINK/RTM_DELLINK events.

The linuxbridge driver reads the kernel's links from here instead of dumping
them on every reconcile: a dump of a thousand links costs far more than the
50 ms a newly appeared tap may wait. A full dump still runs at start and at
each resync, which repairs anything an event missed.

pyroute2 sockets are bound to the thread that made them, so the monitor
thread owns its own IPRoute; closing it from :meth:`LinkTable.stop` ends the
blocking read.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

LOG = logging.getLogger(__name__)
IFF_UP = 0x1
AF_UNSPEC = socket.AF_UNSPEC


@dataclasses.dataclass
class Link:
    index: int
    name: str
    kind: str | None
    master: int | None
    alias: str | None
    mtu: int | None
    mac: str | None
    up: bool


def link_from_msg(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind,
        master=msg.get_attr("IFLA_MASTER") or None,
        alias=msg.get_attr("IFLA_IFALIAS") or None,
        mtu=msg.get_attr("IFLA_MTU"),
        mac=msg.get_attr("IFLA_ADDRESS"),
        up=bool(msg["flags"] & IFF_UP),
    )


class LinkTable:
    """Index -> Link, fed by a dump and then by link events."""

    def __init__(self, on_change: Callable[[str], None] | None = None):
        self._links: dict[int, Link] = {}
        self._lock = threading.Lock()
        self._on_change = on_change
        self._mon: IPRoute | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- view ----------------------------------------------------------------
    def snapshot(self) -> dict[int, Link]:
        with self._lock:
            return dict(self._links)

    def by_name(self, name: str) -> Link | None:
        with self._lock:
            for link in self._links.values():
                if link.name == name:
                    return link
        return None

    def put(self, link: Link) -> None:
        """Record a change the driver just made, ahead of its event."""
        with self._lock:
            self._links[link.index] = link

    def forget(self, index: int) -> None:
        with self._lock:
            self._links.pop(index, None)

    def refresh(self, ipr: IPRoute) -> None:
        links = {}
        for msg in ipr.link("dump"):
            link = link_from_msg(msg)
            links[link.index] = link
        with self._lock:
            self._links = links

    # -- events --------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="ovsbr-netlink", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        self._stopping.set()
        mon = self._mon
        if mon is not None:
            mon.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self, ready: threading.Event) -> None:
        self._mon = IPRoute()
        try:
            self._mon.bind(groups=RTMGRP_LINK)
        finally:
            ready.set()
        while not self._stopping.is_set():
            try:
                msgs = self._mon.get()
            except Exception:  # socket closed under us by stop(), or torn down
                if not self._stopping.is_set():
                    LOG.exception("netlink monitor failed; the periodic resync "
                                  "will repair missed changes")
                return
            if not msgs:
                return
            for msg in msgs:
                self._apply(msg)

    def _apply(self, msg) -> None:
        # AF_BRIDGE messages describe bridge-port state, and their DELLINK
        # means "left the bridge", not "deleted": only AF_UNSPEC is the link.
        if msg.get("family", AF_UNSPEC) != AF_UNSPEC:
            return
        event = msg.get("event")
        if event == "RTM_NEWLINK":
            link = link_from_msg(msg)
            with self._lock:
                old = self._links.get(link.index)
                self._links[link.index] = link
            if old != link and self._on_change is not None:
                self._on_change(link.name)
        elif event == "RTM_DELLINK":
            with self._lock:
                old = self._links.pop(msg["index"], None)
            if old is not None and self._on_change is not None:
                self._on_change(old.name)
