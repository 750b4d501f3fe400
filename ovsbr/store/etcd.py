"""The distributed store: desired state, liveness and status in etcd.

Layout under ``[etcd] prefix`` (default ``/ovsbr``)::

    topology/revision          "N": bumped by every write, compared by the next
    topology/networks/<name>   one JSON network per key
    topology/ports/<name>      one JSON port per key
    topology/security_groups/<name>  one JSON group, with its rules, per key
    hosts/<host>               {"local_ip", "driver"}; under the agent's lease
    status/<host>              the agent's last published status, but its ports
    status/<host>/ports/<port> each port's status, rewritten when it changes
                               (Neutron's worker follows the folder by a
                               watch: :mod:`.etcd_status`)
    index/claims/<claim>       the port holding a device on a host, an iface-id,
                               a MAC or an address on a network (.claims)
    index/revision             the topology revision the claim keys describe
    index/ports/<folder>/...   each port's copies, by host, network and group,
                               for the agents' narrowed watches (.copies)
    index/ports-revision       the topology revision the copies describe

Writes (:mod:`.etcd_write`) are optimistic transactions: read the state at
one revision, apply the caller's change, validate the result, then commit
the changed keys only if ``topology/revision`` has not moved (else re-read
and retry). Two CLIs writing at once therefore never lose an update, and an
invalid result writes nothing. A write that names the ports it touches
reads and writes only those ports' keys (and their claims); a change larger
than etcd's ``--max-txn-ops`` (default 128) goes in steps that each leave a
valid state (:mod:`.steps`). One key per object keeps each write and each
watch event small at thousands of ports.

An agent watches its host's share (:mod:`.etcd_narrow`: the networks, the
groups, the live hosts, and the copies of the ports it wires, of its overlay
networks' ports and of its remote groups' members), or with ``[etcd]
watch = all``, or while the copies are behind, ``topology/`` and ``hosts/``
whole. Either way from the revision it read, applying the events to a local
copy as deltas (:mod:`.mirror`: only changed keys are parsed and checked),
and starting over from a fresh read when a watch ends, is cancelled or is
compacted away. The watch stream
is read here rather than through etcd3gw's Watcher, which drops the
cancel/compaction notices and the end of the stream: a lost watch would go
unnoticed. Everything else is etcd3gw.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import etcd3gw
from etcd3gw import exceptions as etcd_exc
from oslo_config import cfg

from ovsbr.exceptions import ConfigError, StoreError
from ovsbr.model import Topology
from ovsbr.store import etcd_narrow
from ovsbr.store import keys as keys_mod
from ovsbr.store.base import Store
from ovsbr.store.etcd_status import StatusFollower
from ovsbr.store.etcd_watch import WatchStream
from ovsbr.store.etcd_write import TXN_OPS, Writer
from ovsbr.store.keys import b64, range_end, unb64
from ovsbr.store.mirror import Mirror

LOG = logging.getLogger(__name__)
ETCD_ERRORS = (etcd_exc.Etcd3Exception, OSError, ValueError)


def parse_endpoint(value: str, group: str = "etcd") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"[{group}] endpoints", f"{value!r} is not HOST:PORT")
    return host, int(port)


class EtcdStore(Store):
    def __init__(self, conf: cfg.ConfigOpts, group: str = "etcd"):
        """``group``: the option group holding ETCD_OPTS (Neutron's is ``[ovsbr]``)."""
        e = conf[group]
        self.prefix = "/" + e.prefix.strip("/") + "/"
        if self.prefix == "//":
            raise ConfigError(f"[{group}] prefix", "must not be empty or '/'")
        if not e.endpoints:
            raise ConfigError(f"[{group}] endpoints", "at least one HOST:PORT is required")
        self.endpoints = [parse_endpoint(x, group) for x in e.endpoints]
        if bool(e.cert_file) != bool(e.key_file):
            raise ConfigError(f"[{group}] cert_file", "cert_file and key_file go together")
        self.timeout = e.timeout
        # Only agents register under a lease; Neutron's group has no lease_ttl.
        self.lease_ttl = e.lease_ttl if "lease_ttl" in e else 10
        self.watch_share = e.watch if "watch" in e else "all"
        self._tls = (e.ca_cert, e.cert_file, e.key_file)
        self._current = 0
        self._client: etcd3gw.Etcd3Client | None = None
        self._lock = threading.Lock()
        self._lease = None
        self._registration: tuple[str, dict] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[Any] = []
        self._host_watch: etcd_narrow.HostWatch | None = None
        self._followers: list[StatusFollower] = []
        self._parsed: dict[str, tuple[str, Any]] = {}
        # host -> its port statuses as last written (absent: list them first)
        self._status_ports: dict[str, dict[str, Any]] = {}
        self._writer = Writer(self)
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(("requests", "request_seconds", "request_errors",
                                     "watch_restarts", "lease_renewals", "lease_failures"), 0.0)

    # -- connection ----------------------------------------------------------
    def _make_client(self, index: int) -> etcd3gw.Etcd3Client:
        host, port = self.endpoints[index]
        ca, cert, key = self._tls
        return etcd3gw.client(host=host, port=port, protocol="https" if ca else "http",
                              ca_cert=ca, cert_cert=cert, cert_key=key,
                              timeout=self.timeout, api_path="/v3/")

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for key, value in deltas.items():
                self._stats[key] += value

    def stats(self) -> dict[str, float]:
        with self._stats_lock:
            return dict(self._stats)

    def _call(self, fn: Callable[[etcd3gw.Etcd3Client], Any]) -> Any:
        """Run one request, failing over to the next endpoint on connection errors."""
        started = time.monotonic()
        try:
            return self._request(fn)
        except StoreError:
            self._count(request_errors=1)
            raise
        finally:
            self._count(requests=1, request_seconds=time.monotonic() - started)

    def _request(self, fn: Callable[[etcd3gw.Etcd3Client], Any]) -> Any:
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            with self._lock:
                if self._client is None:
                    self._client = self._make_client(self._current)
                client = self._client
            try:
                return fn(client)
            except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as e:
                last = e
                with self._lock:
                    if self._client is client:
                        self._current = (self._current + 1) % len(self.endpoints)
                        self._client = None
            except etcd_exc.Etcd3Exception as e:
                raise StoreError(f"etcd: {e.detail_text or e}") from e
        raise StoreError(f"etcd: no endpoint answered "
                         f"({', '.join(f'{h}:{p}' for h, p in self.endpoints)}): {last}")

    def _txn(self, txn: dict) -> dict:
        return self._call(lambda c: c.transaction(txn))

    def _range(self, prefix: str, **options: Any) -> dict:
        return {"request_range": {"key": b64(prefix), "range_end": b64(range_end(prefix)),
                                  **options}}

    # -- reading -------------------------------------------------------------
    def _snapshot(self) -> tuple[int, dict[str, str], dict[str, str]]:
        """(etcd revision, topology keys -> JSON, host keys -> JSON) at one revision."""
        resp = self._txn({"success": [self._range(self.prefix + "topology/"),
                                      self._range(self.prefix + "hosts/")]})
        rev = int(resp["header"]["revision"])
        parts = []
        for r in resp.get("responses", []):
            kvs = r.get("response_range", {}).get("kvs", [])
            parts.append(keys_mod.decode(kvs))
        while len(parts) < 2:
            parts.append({})
        return rev, parts[0], parts[1]

    def _topology(self, keys: dict[str, str]) -> Topology:
        """The topology from its keys (see :func:`.keys.topology`), re-using
        the objects parsed from unchanged keys last time."""
        topo, self._parsed = keys_mod.topology(self.prefix + "topology/", keys, self._parsed)
        return topo

    def _state(self, topo_keys: dict[str, str], host_keys: dict[str, str]) -> Topology:
        """The topology with the live hosts, as load() and watch() yield it."""
        topo = self._topology(topo_keys)
        topo.hosts = keys_mod.hosts(host_keys)
        return topo

    def load(self) -> Topology:
        _, topo_keys, host_keys = self._snapshot()
        return self._state(topo_keys, host_keys)

    # -- writing -------------------------------------------------------------
    def update(self, change: Callable[[Topology], None],
               scope: Iterable[str] | None = None) -> tuple[Topology, Topology]:
        return self._writer.update(change, scope)

    # -- status and liveness -------------------------------------------------
    def write_status(self, host: str, status: dict[str, Any],
                     changed: Iterable[str] | None = None) -> None:
        """The document's head at ``status/<host>``, each port's status at
        ``status/<host>/ports/<port>``, and only what changed since the last
        write: a port bound on a host of 1,000 rewrites one small key, not
        the host's whole document (and with ``changed``, only those ports
        are compared)."""
        base = f"{self.prefix}status/{host}/ports/"
        ports = status.get("ports", {})
        head = {k: v for k, v in status.items() if k != "ports"}
        last = self._status_ports.get(host)
        if last is None:  # first write since start: what an earlier run left
            resp = self._txn({"success": [self._range(base, keys_only=True)]})
            kvs = resp["responses"][0]["response_range"].get("kvs", [])
            last = {unb64(kv["key"])[len(base):]: None for kv in kvs}
            changed = None
        names = sorted(set(ports) | set(last)) if changed is None else sorted(changed)
        ops = [{"request_put": {"key": b64(f"{self.prefix}status/{host}"),
                                "value": b64(json.dumps(head, sort_keys=True))}}]
        for name in names:
            doc = ports.get(name)
            if doc is not None and (name not in last or last[name] != doc):
                ops.append({"request_put": {"key": b64(base + name),
                                            "value": b64(json.dumps(doc, sort_keys=True))}})
            elif doc is None and name in last:
                ops.append({"request_delete_range": {"key": b64(base + name)}})
        self._status_ports.pop(host, None)  # unknown until every step has landed
        for i in range(0, len(ops), TXN_OPS):  # the head first: no ports without one
            self._txn({"success": ops[i:i + TXN_OPS]})
        for name in names:
            if name in ports:
                last[name] = dict(ports[name])
            else:
                last.pop(name, None)
        self._status_ports[host] = last

    def read_status(self) -> dict[str, dict[str, Any]]:
        """Every host's document, its ports gathered from their keys (an
        agent from before per-port keys has them in the document)."""
        result: dict[str, dict[str, Any]] = {}
        for rel, doc in self._documents("status/").items():
            where = keys_mod.status_key(rel)
            if where is None:
                continue
            host, port = where
            entry = result.setdefault(host, {})
            if port:
                entry.setdefault("ports", {})[port] = doc
            elif isinstance(doc, dict):
                entry.update({**doc, "ports": {**doc.get("ports", {}),
                                               **entry.get("ports", {})}})
        return result

    def follow_status(self) -> StatusFollower:
        """What read_status returns, as a first read and then only the
        changes (see :mod:`.etcd_status`): for a reader that polls."""
        follower = StatusFollower(self)
        self._followers.append(follower)
        return follower

    def read_hosts(self) -> dict[str, dict[str, Any]]:
        """The live hosts' registrations (what ``Topology.hosts`` holds),
        without reading the topology."""
        return self._documents("hosts/")

    def _documents(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every JSON document under ``kind``, by the rest of its key."""
        base = self.prefix + kind
        items = self._call(lambda c: c.get_prefix(base))
        result = {}
        for value, meta in items:
            key = meta["key"] if isinstance(meta["key"], str) else meta["key"].decode()
            try:
                result[key[len(base):]] = json.loads(value)
            except ValueError:
                continue
        return result

    def read_host(self, host: str) -> dict[str, Any] | None:
        """One host's registration, or None when it is not alive."""
        items = self._call(lambda c: c.get(f"{self.prefix}hosts/{host}"))
        for value in items:
            try:
                data = json.loads(value)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        return None

    def register(self, host: str, info: dict[str, Any]) -> None:
        """Keep ``hosts/<host>`` alive under a lease while the agent runs.

        Not revoked on stop: an agent restart must not pull its tunnels
        from the other hosts; the lease lapses lease_ttl after the last renewal.
        """
        self._registration = (host, info)
        self._renew()
        t = threading.Thread(target=self._keepalive, name="ovsbr-etcd-lease", daemon=True)
        t.start()
        self._threads.append(t)

    def _renew(self) -> None:
        host, info = self._registration
        key = f"{self.prefix}hosts/{host}"
        if self._lease is not None:
            try:
                if self._call(lambda c: self._lease.refresh()) > 0:
                    self._count(lease_renewals=1)
                    return
            except (StoreError, *ETCD_ERRORS):
                pass
        lease = self._call(lambda c: c.lease(self.lease_ttl))
        self._call(lambda c: c.put(key, json.dumps(info, sort_keys=True), lease=lease))
        self._lease = lease
        LOG.info("registered host %s in etcd (lease %s, ttl %ds)", host, lease.id,
                 self.lease_ttl)

    def _keepalive(self) -> None:
        interval = max(0.5, self.lease_ttl / 3)
        while not self._stop.wait(interval):
            try:
                self._renew()
            except (StoreError, *ETCD_ERRORS) as e:
                LOG.warning("cannot renew this host's etcd lease: %s", e)
                self._count(lease_failures=1)
                self._lease = None

    # -- watching ------------------------------------------------------------
    def watch(self, stop: threading.Event, host: str | None = None
              ) -> Iterator[Topology | Exception]:
        """Yield the state, then again after each change of topology or
        hosts; with ``host``, that host's share (see :mod:`.etcd_narrow`)."""
        narrow = host is not None and self.watch_share == "host"
        while not stop.is_set():
            try:
                if narrow and (yield from self._follow_host(stop, host)):
                    continue
                rev, topo_keys, host_keys = self._snapshot()
            except StoreError as e:
                yield e
                stop.wait(1.0)
                continue
            yield from self._follow(stop, rev, topo_keys, host_keys, narrow)

    def _follow_host(self, stop: threading.Event, host: str
                     ) -> Iterator[Topology | Exception]:
        """Follow the host's share; returns False at once when the copies
        are behind (the caller watches the whole topology instead)."""
        view = etcd_narrow.HostWatch(self, host)
        self._host_watch = view
        try:
            if not view.start():
                LOG.warning("etcd: the port copies are behind the topology: watching "
                            "the whole topology until a writer has rebuilt them")
                return False
            yield from view.follow(stop)
            return True
        finally:
            view.close()

    def _follow(self, stop, rev, topo_keys, host_keys, recheck: bool = False
                ) -> Iterator[Topology | Exception]:
        """``recheck``: every INDEX_CHECK, return once the port copies are
        current (the caller then narrows the watch)."""
        events: queue.Queue = queue.Queue()
        streams = [WatchStream(self, self.prefix + p, rev + 1, events)
                   for p in ("topology/", "hosts/")]
        self._watches = streams
        mirror = Mirror(self.prefix, topo_keys, host_keys, self._parsed)
        last_error = None
        next_check = time.monotonic() + etcd_narrow.INDEX_CHECK
        try:
            emit = True
            while not stop.is_set():
                if recheck and time.monotonic() >= next_check:
                    next_check = time.monotonic() + etcd_narrow.INDEX_CHECK
                    with contextlib.suppress(StoreError):
                        if etcd_narrow.index_current(self):
                            LOG.info("etcd: the port copies are current: watching this "
                                     "host's share again")
                            return
                if emit:
                    try:
                        topo = mirror.build()
                        last_error = None
                        yield topo
                    except StoreError as e:
                        if str(e) != str(last_error):
                            last_error = e
                            yield e
                emit = False
                try:
                    batch = events.get(timeout=0.5)
                except queue.Empty:
                    continue
                # Coalesce what else has arrived: one build for a burst.
                while not isinstance(batch, Exception):
                    mirror.apply(batch)
                    try:
                        batch = events.get_nowait()
                    except queue.Empty:
                        break
                if isinstance(batch, Exception):
                    LOG.warning("etcd watch lost (%s): reading the state again", batch)
                    self._count(watch_restarts=1)
                    return
                emit = True
        finally:
            for s in streams:
                s.close()

    def close(self) -> None:
        self._stop.set()
        for s in self._watches:
            s.close()
        if self._host_watch is not None:
            self._host_watch.close()
        for f in self._followers:
            f.close()
        for t in self._threads:
            t.join(2)
