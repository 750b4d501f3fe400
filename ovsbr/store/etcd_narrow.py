"""An agent's etcd watch narrowed to its host's share (see :mod:`.copies`).

Instead of ``topology/`` whole, the agent reads and watches the networks,
the security groups, the live hosts, its host's two copy folders, and the
copy folders of its overlay networks and remote groups, which it follows as
its ports come and go. So a port write reaches the agents that use it:
at 1,000 hosts about 50 instead of 1,000 (bench/scale.py).

The ports come from copies in several folders, over streams that arrive in
no common order (:class:`.copies.Copies` merges them); a state may be
briefly invalid between them (a port heard before its new network), so an
invalid state is reported only when it lasts :data:`GRACE` seconds. The
topology's revision is the newest one a copy carries (or the one read at
the start): the newest write this host has heard of, not the store's.

Every :data:`INDEX_CHECK` seconds the agent checks that the copies are
still kept (``index/ports-revision`` equals ``topology/revision``); a
writer that does not keep them leaves them behind, and the agent then
watches the whole topology until a writer has rebuilt them.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ovsbr.exceptions import StoreError
from ovsbr.model import Topology
from ovsbr.store import copies as copies_mod
from ovsbr.store import keys as keys_mod
from ovsbr.store.etcd_watch import WatchStream
from ovsbr.store.etcd_write import TXN_OPS
from ovsbr.store.mirror import Mirror

if TYPE_CHECKING:
    from ovsbr.store.etcd import EtcdStore

LOG = logging.getLogger(__name__)
INDEX_CHECK = 30.0
GRACE = 1.0


def index_current(store: EtcdStore) -> bool:
    """Whether the copies describe the topology's revision (both absent:
    a store never written, nothing to miss)."""
    resp = store._txn({"success": [keys_mod.get(store.prefix + "topology/revision"),
                                   keys_mod.get(store.prefix + copies_mod.MARKER)]})
    return keys_mod.single(resp, 0) == keys_mod.single(resp, 1)


class HostWatch:
    """One narrowed watch, from its first read until it is lost."""

    def __init__(self, store: EtcdStore, host: str):
        self.store, self.host = store, host
        p = store.prefix
        self.topo_base = p + "topology/"
        self.copies_base = p + copies_mod.FOLDER
        self.fixed = [p + "topology/networks/", p + "topology/security_groups/", p + "hosts/",
                      self.copies_base + f"host/{host}/", self.copies_base + "any-host/"]
        # (stream tag, its batch or its end): a closed stream's leftovers
        # in the queue are told by their tag and dropped (applied, a
        # dropped folder's copies would come back, and stay).
        self.events: queue.Queue = queue.Queue()
        # watched folder -> (tag, its stream)
        self.streams: dict[str, tuple[int, WatchStream]] = {}
        self._tags = itertools.count()
        self.copies = copies_mod.Copies()
        self.revision = 0
        self.mirror: Mirror | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- the first read ----------------------------------------------------------
    def start(self) -> bool:
        """Read the share at one revision and watch it from the next; False
        (nothing opened) when the copies are behind the topology."""
        store = self.store
        resp = store._txn({"success": [
            *(store._range(prefix) for prefix in self.fixed),
            keys_mod.get(self.topo_base + "revision"),
            keys_mod.get(store.prefix + copies_mod.MARKER)]})
        responses = resp.get("responses", [])
        topo_rev, marker = keys_mod.single(resp, 5), keys_mod.single(resp, 6)
        if topo_rev != marker:
            return False
        rev = int(resp["header"]["revision"])
        kvs = [r.get("response_range", {}).get("kvs", []) for r in responses[:5]]
        self.revision = int(topo_rev or 0)
        topo_keys = {**keys_mod.decode(kvs[0]), **keys_mod.decode(kvs[1]),
                     self.topo_base + "revision": str(self.revision)}
        self.mirror = Mirror(store.prefix, topo_keys, keys_mod.decode(kvs[2]), store._parsed)
        self._copies(keys_mod.puts(kvs[3] + kvs[4]))
        for prefix in self.fixed:
            self._open(prefix, rev + 1)
        try:
            self._refold(self.mirror.build(), rev)
        except StoreError:
            pass  # the follow reports it; no folders to add from an invalid state
        return True

    # -- events ------------------------------------------------------------------
    def _copies(self, events: list[tuple]) -> None:
        """Copy events, merged, handed to the mirror."""
        self._hand(self.copies.apply(events, self.copies_base))

    def _hand(self, changed: list[tuple[str, str | None]]) -> None:
        """Ports whose merged copy changed, to the mirror as their own keys."""
        out: list[tuple] = []
        for name, text in changed:
            key = f"{self.topo_base}ports/{name}"
            if text is None:
                out.append(("DELETE", key, ""))
                continue
            found = copies_mod.unwrap(text)
            if found is None:  # not a copy: the mirror names the port as invalid
                out.append(("PUT", key, text))
                continue
            out.append(("PUT", key, found[0]))
            if found[1] > self.revision:
                self.revision = found[1]
                out.append(("PUT", self.topo_base + "revision", str(found[1])))
        self.mirror.apply(out)

    def apply(self, batch: list[tuple]) -> None:
        copies = [e for e in batch if e[1].startswith(self.copies_base)]
        self.mirror.apply([e for e in batch if not e[1].startswith(self.copies_base)])
        if copies:
            self._copies(copies)

    # -- the folders followed -----------------------------------------------------
    def _refold(self, topo: Topology, at: int | None = None) -> bool:
        """Watch the folders ``topo`` says this host uses, and no others;
        True when the ports changed (the state must be built again).
        ``at``: read new folders at that revision (the first read's)."""
        wanted = {self.copies_base + f for f in copies_mod.folders(topo, self.host)}
        wanted -= set(self.fixed)
        have = set(self.streams) - set(self.fixed)
        changed = False
        for prefix in sorted(have - wanted):
            with self._lock:
                _, stream = self.streams.pop(prefix, (None, None))
            if stream is not None:
                stream.close()
            dropped = self.copies.drop(prefix[len(self.copies_base):])
            self._hand(dropped)
            changed = changed or bool(dropped)
        new = sorted(wanted - have)
        if new:
            rev, events = self._read(new, at)
            for prefix in new:
                self._open(prefix, rev + 1)
            if events:
                self._copies(events)
                changed = True
        return changed

    def _read(self, prefixes: list[str], at: int | None) -> tuple[int, list[tuple]]:
        """Every copy under ``prefixes`` as PUT events, at one revision
        (``at``, or the first request's): (that revision, the events). In
        transactions of at most TXN_OPS ranges: a host on more overlay
        networks than etcd takes requests in one (--max-txn-ops, 128)."""
        store, events = self.store, []
        for i in range(0, len(prefixes), TXN_OPS):
            extra = {"revision": str(at)} if at is not None else {}
            resp = store._txn({"success": [store._range(p, **extra)
                                           for p in prefixes[i:i + TXN_OPS]]})
            at = at if at is not None else int(resp["header"]["revision"])
            for r in resp.get("responses", []):
                events += keys_mod.puts(r.get("response_range", {}).get("kvs", []))
        return at, events

    def _open(self, prefix: str, start: int) -> None:
        """One stream per folder (see WatchStream: one watch a stream)."""
        with self._lock:
            if self._closed:
                raise StoreError("etcd watch closed")
            tag = next(self._tags)
            self.streams[prefix] = (tag, WatchStream(self.store, prefix, start, self.events,
                                                     tag))

    def _live(self, tag: int) -> bool:
        with self._lock:
            return any(t == tag for t, _ in self.streams.values())

    def close(self) -> None:
        """Close every stream (from any thread: the store's close())."""
        with self._lock:
            self._closed = True
            streams, self.streams = list(self.streams.values()), {}
        for _, stream in streams:
            stream.close()

    # -- the follow ----------------------------------------------------------------
    def follow(self, stop: threading.Event) -> Iterator[Topology | Exception]:
        """Yield the share now and after each change, until the watch is lost
        or the copies fall behind (then return: the caller reads again)."""
        last_error: str | None = None
        failing_since: float | None = None
        next_check = time.monotonic() + INDEX_CHECK
        emit = True
        while not stop.is_set():
            if emit:
                emit = False
                try:
                    topo = self.mirror.build()
                except StoreError as e:
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since < GRACE:
                        emit = True  # another stream may bring what is missing
                    elif str(e) != last_error:
                        last_error = str(e)
                        yield e
                else:
                    failing_since, last_error = None, None
                    if self._refold(topo):
                        emit = True
                        continue
                    yield topo
            try:
                batch = self.events.get(timeout=0.1 if emit else 0.5)
            except queue.Empty:
                batch = None
            while batch is not None:  # coalesce what has arrived: one build
                tag, batch = batch
                if not self._live(tag):
                    pass  # a closed stream's leftovers
                elif isinstance(batch, Exception):
                    LOG.warning("etcd watch lost (%s): reading this host's share again", batch)
                    self.store._count(watch_restarts=1)
                    return
                else:
                    self.apply(batch)
                    emit = True
                try:
                    batch = self.events.get_nowait()
                except queue.Empty:
                    batch = None
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + INDEX_CHECK
                try:
                    current = index_current(self.store)
                except StoreError as e:
                    LOG.warning("cannot check the port copies: %s", e)
                    continue
                if not current:
                    LOG.warning("etcd: the port copies are behind the topology (a writer "
                                "that does not keep them): watching the whole topology")
                    return
