"""One etcd watch over the gateway's streaming ``/v3/watch`` (see :mod:`.etcd`).

Read here rather than through etcd3gw's Watcher, which drops the
cancel/compaction notices and the end of the stream: a lost watch would go
unnoticed.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from typing import TYPE_CHECKING

import requests

from ovsbr.exceptions import StoreError
from ovsbr.store.keys import b64, range_end, unb64

if TYPE_CHECKING:
    from ovsbr.store.etcd import EtcdStore


class WatchStream:
    """One etcd watch over the gateway's streaming /v3/watch, on its own thread.

    One watch a stream: the gateway accepts several create requests in one
    body, but Go's HTTP/1.1 server may drop the rest of a request body once
    the response has started, and the later watches were then, now and
    then, never created (an agent missed its own ports; test_multihost).

    Puts lists of (PUT|DELETE, key, value, mod revision) on ``out``, one
    list per etcd response, and an exception when the watch ends for any
    reason.
    """

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int,
                 out: queue.Queue, tag: object = None):
        """``tag``: when given, put (tag, item) instead of the item, so a
        reader of several streams' queue can tell a closed stream's leftovers."""
        self.out = out
        self._tag = tag
        self._resp = None
        self._session: requests.Session | None = None
        self._closed = threading.Event()
        body = json.dumps({"create_request": {
            "key": b64(prefix), "range_end": b64(range_end(prefix)),
            "start_revision": str(start_revision)}})
        self._thread = threading.Thread(target=self._run, args=(store, body),
                                        name="ovsbr-etcd-watch", daemon=True)
        self._thread.start()

    def _run(self, store: EtcdStore, body: str) -> None:
        try:
            def open_stream(client):
                # A session of its own: a stream holds its connection for
                # its life, and an agent holds several; returned to the
                # client's pool at close they overflowed it (urllib3 warns).
                session = requests.Session()
                session.verify, session.cert = client.session.verify, client.session.cert
                self._session = session
                return session.post(client.get_url("/watch"), data=body, stream=True,
                                    timeout=(store.timeout, None))
            self._resp = store._call(open_stream)
            if self._closed.is_set():
                return
            for line in self._resp.iter_lines():
                if not line.strip():
                    continue
                result = json.loads(line).get("result", {})
                if result.get("canceled") or "compact_revision" in result:
                    raise StoreError(f"watch cancelled (compact revision "
                                     f"{result.get('compact_revision', '?')}: "
                                     f"{result.get('cancel_reason', '')})")
                events = []
                for ev in result.get("events", []):
                    kv = ev["kv"]
                    events.append((ev.get("type", "PUT"), unb64(kv["key"]),
                                   unb64(kv.get("value", "")), int(kv.get("mod_revision", 0))))
                if events:
                    self._put(events)
            raise StoreError("watch stream ended")
        except Exception as e:  # every end of the stream means: start over
            if not self._closed.is_set():
                self._put(e)

    def _put(self, item: object) -> None:
        self.out.put(item if self._tag is None else (self._tag, item))

    def close(self) -> None:
        self._closed.set()
        resp = self._resp
        if resp is None:
            return
        try:
            # Unblock the reader thread: shut the socket under the stream.
            sock = socket.fromfd(resp.raw._fp.fileno(), socket.AF_INET, socket.SOCK_STREAM)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        except Exception:  # noqa: S110 - best effort; the stream may be gone already
            pass
        resp.close()
        if self._session is not None:
            self._session.close()
