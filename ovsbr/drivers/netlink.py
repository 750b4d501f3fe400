"""A netlink link table kept current by RTM_NEWLINK/RTM_DELLINK events.

The linuxbridge driver reads the kernel's links from here instead of dumping
them on every reconcile: a dump of a thousand links costs far more than the
50 ms a newly appeared tap may wait. A full dump still runs at start and at
each resync, which repairs anything an event missed.

Events arrive on a raw rtnetlink socket decoded by :mod:`ovsbr.drivers.rtnl`
(only the fields ovsbr reads); :meth:`LinkTable.stop` wakes the blocked read.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from ovsbr.drivers import rtnl
from ovsbr.drivers.rtnl import Link

LOG = logging.getLogger(__name__)
IFF_UP = 0x1


def link_from_msg(msg) -> Link:
    """A Link from a pyroute2 message (command replies; events use rtnl)."""
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
        self._names: dict[str, int] = {}  # wiring looks links up by name, per port
        self._lock = threading.Lock()
        self._on_change = on_change
        self._mon: rtnl.RtnlSocket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Set when events may have been lost (socket overrun under a burst of
        # thousands of links): the next observe() re-dumps the table.
        self.stale = False
        # Index -> the link as it was before its first change since the last
        # take_changes() (None: new); None: unknown, the table was re-read.
        self._changed: dict[int, Link | None] | None = None

    # -- view ----------------------------------------------------------------
    def snapshot(self) -> dict[int, Link]:
        with self._lock:
            return dict(self._links)

    def by_name(self, name: str) -> Link | None:
        with self._lock:
            index = self._names.get(name)
            return self._links.get(index) if index is not None else None

    def get(self, index: int) -> Link | None:
        with self._lock:
            return self._links.get(index)

    def take_changes(self) -> dict[int, Link | None] | None:
        """The links changed since the last call (see ``_changed``), and
        start recording afresh. Take them before reading the links: a change
        landing in between is then read now and reported again next time."""
        with self._lock:
            changed, self._changed = self._changed, {}
        return changed

    def _note(self, index: int, old: Link | None) -> None:
        if self._changed is not None and index not in self._changed:
            # A copy: the driver updates its own links in place (put()).
            self._changed[index] = None if old is None else dataclasses.replace(old)

    def _set(self, link: Link) -> None:
        old = self._links.get(link.index)
        self._note(link.index, old)
        if old is not None and old.name != link.name and self._names.get(old.name) == old.index:
            del self._names[old.name]
        self._links[link.index] = link
        self._names[link.name] = link.index

    def _pop(self, index: int) -> Link | None:
        old = self._links.pop(index, None)
        if old is not None:
            self._note(index, old)
        if old is not None and self._names.get(old.name) == index:
            del self._names[old.name]
        return old

    def put(self, link: Link) -> None:
        """Record a change the driver just made, ahead of its event."""
        with self._lock:
            self._set(link)

    def forget(self, index: int) -> None:
        with self._lock:
            self._pop(index)

    def refresh(self) -> None:
        sock = rtnl.RtnlSocket()
        try:
            links = {link.index: link for link in sock.dump_links()}
        finally:
            sock.close()
        with self._lock:
            self._links = links
            self._names = {link.name: index for index, link in links.items()}
            self._changed = None
        self.stale = False

    def refresh_if_stale(self) -> None:
        if self.stale:
            self.refresh()

    # -- events --------------------------------------------------------------
    def start(self, on_change: Callable[[str], None] | None = None) -> None:
        """Follow link events, calling ``on_change(name)`` after each batch."""
        if on_change is not None:
            self._on_change = on_change
        self._stopping.clear()
        self._mon = rtnl.RtnlSocket(groups=rtnl.RTMGRP_LINK)
        self._thread = threading.Thread(target=self._run, name="ovsbr-netlink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._mon is not None:
            self._mon.wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._mon is not None:
            self._mon.close()
            self._mon = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                buf = self._mon.recv()
            except OSError as e:
                if self._stopping.is_set():
                    return
                # ENOBUFS: the kernel dropped events; re-dump before trusting us.
                LOG.warning("netlink monitor lost events (%s); re-reading all links", e)
                self.stale = True
                if self._on_change is not None:
                    self._on_change("netlink-overrun")
                continue
            if buf is None:
                return
            try:
                self._apply(buf)
            except Exception:  # a message we cannot decode must not end the monitor
                LOG.exception("netlink monitor: undecodable link event; re-reading all links")
                self.stale = True
                if self._on_change is not None:
                    self._on_change("netlink-undecodable")

    def _apply(self, buf: bytes) -> None:
        changed = []
        with self._lock:
            for mtype, _flags, _seq, off, end in rtnl.messages(buf):
                if mtype not in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK):
                    continue
                family, link = rtnl.decode_link(buf, off, end)
                # AF_BRIDGE messages describe bridge-port state, and their
                # DELLINK means "left the bridge", not "deleted".
                if family != rtnl.AF_UNSPEC:
                    continue
                if mtype == rtnl.RTM_NEWLINK:
                    if self._links.get(link.index) != link:
                        self._set(link)
                        changed.append(link.name)
                elif self._pop(link.index) is not None:
                    changed.append(link.name)
        if changed and self._on_change is not None:
            self._on_change(changed[-1])
