"""Every host's status under ``status/``, read once and then followed (see :mod:`.etcd`).

Neutron's worker used to read the whole folder every ``status_interval``:
each host's head and each port's status key, 100,000 keys a second at
100,000 ports, to find the few that moved. A follower reads it once, then
hands over only what its watch has seen since the last poll; a lost watch
(etcd restarted, compacted, a stream cut) is read whole again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
from typing import TYPE_CHECKING, Any

from ovsbr.store import keys as keys_mod
from ovsbr.store.etcd_watch import WatchStream

if TYPE_CHECKING:
    from ovsbr.store.etcd import EtcdStore

LOG = logging.getLogger(__name__)
# (host, port or None for the host's head document, the document or None
# when the key is gone or holds no JSON: read_status skips such a key too)
StatusEvent = tuple[str, "str | None", Any]


class StatusFollower:
    def __init__(self, store: EtcdStore):
        self.store = store
        self.base = store.prefix + "status/"
        self._events: queue.Queue = queue.Queue()
        self._stream: WatchStream | None = None

    def poll(self) -> tuple[bool, list[StatusEvent]]:
        """(whole, events): what changed since the last poll; ``whole``
        when the events are a fresh read of everything instead (the first
        poll, and after the watch was lost), so the caller forgets what it
        held first. StoreError when etcd cannot be read: the next poll
        tries again."""
        if self._stream is None:
            return True, self._read()
        found: list[StatusEvent] = []
        while True:
            try:
                batch = self._events.get_nowait()
            except queue.Empty:
                return False, found
            if isinstance(batch, Exception):
                LOG.warning("etcd status watch lost (%s): reading every status again", batch)
                self.store._count(watch_restarts=1)
                self.close()
                return True, self._read()
            found += [e for e in (self._event(*ev[:3]) for ev in batch) if e is not None]

    def _read(self) -> list[StatusEvent]:
        resp = self.store._txn({"success": [self.store._range(self.base)]})
        revision = int(resp["header"]["revision"])
        kvs = resp["responses"][0]["response_range"].get("kvs", [])
        self._events = queue.Queue()
        self._stream = WatchStream(self.store, self.base, revision + 1, self._events)
        found = (self._event("PUT", k, v) for k, v in sorted(keys_mod.decode(kvs).items()))
        return [e for e in found if e is not None]

    def _event(self, kind: str, key: str, value: str) -> StatusEvent | None:
        where = keys_mod.status_key(key[len(self.base):])
        if where is None:
            return None
        doc = None
        if kind == "PUT":
            with contextlib.suppress(ValueError):
                doc = json.loads(value)
        return (*where, doc)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
