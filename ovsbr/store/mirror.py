"""A watcher's copy of the store's topology, kept current by events (pure).

An agent following the etcd watch used to rebuild and validate the whole
topology from every key on every event: at 10,000 ports most of an update's
latency, at 100,000 most of a core. :class:`Mirror` applies each event batch
as a delta instead: only the changed keys are parsed, the new topology shares
every other object with the last one, and :class:`ClaimIndex` decides
validity from the changed objects alone. The full build stays the way in and
the way back: at the first batch, and after any batch that left the state
invalid, so the error an agent reports is the one the full validation names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ovsbr.claims import network_claims, port_claims
from ovsbr.exceptions import StoreError
from ovsbr.model import Network, Port, Topology
from ovsbr.secgroups.model import SecurityGroup
from ovsbr.store import keys as keys_mod

LOG = logging.getLogger(__name__)
Event = tuple  # (PUT|DELETE, key, value[, etcd mod revision])


class ClaimIndex:
    """What :meth:`Topology.validate` checks, kept per object (pure).

    Claims (a segment, a device on a host, a MAC on a network ...) must have
    one owner; references (a port's network and groups, a rule's remote
    group) must name an object that exists. Adding or removing one object
    touches only its own claims and references, so a delta is checked in
    time proportional to it. ``valid`` agrees with ``validate()`` not
    raising; the property test in tests/unit/test_store_mirror.py holds it.
    """

    def __init__(self) -> None:
        self._owners: dict[tuple, set[tuple[str, str]]] = {}
        self._crowded: set[tuple] = set()
        self._referrers: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._present: set[tuple[str, str]] = set()
        self._dangling: set[tuple[str, str]] = set()

    @property
    def valid(self) -> bool:
        return not self._crowded and not self._dangling

    @classmethod
    def of(cls, topo: Topology) -> ClaimIndex:
        index = cls()
        for kind, objs in (("networks", topo.networks), ("ports", topo.ports),
                           ("security_groups", topo.security_groups)):
            for obj in objs.values():
                index.add(kind, obj)
        return index

    def add(self, kind: str, obj: Network | Port | SecurityGroup) -> None:
        me = (kind, obj.name)
        for claim in _claims(kind, obj):
            owners = self._owners.setdefault(claim, set())
            owners.add(me)
            if len(owners) > 1:
                self._crowded.add(claim)
        for target in _references(kind, obj):
            self._referrers.setdefault(target, set()).add(me)
            if target not in self._present:
                self._dangling.add(target)
        if kind in TARGETS:
            target = (TARGETS[kind], obj.name)
            self._present.add(target)
            self._dangling.discard(target)

    def remove(self, kind: str, obj: Network | Port | SecurityGroup) -> None:
        me = (kind, obj.name)
        for claim in _claims(kind, obj):
            owners = self._owners[claim]
            owners.discard(me)
            if len(owners) <= 1:
                self._crowded.discard(claim)
            if not owners:
                del self._owners[claim]
        for target in _references(kind, obj):
            referrers = self._referrers[target]
            referrers.discard(me)
            if not referrers:
                del self._referrers[target]
                self._dangling.discard(target)
        if kind in TARGETS:
            target = (TARGETS[kind], obj.name)
            self._present.discard(target)
            if target in self._referrers:
                self._dangling.add(target)


# What can be referred to, by the key folder that holds it.
TARGETS = {"networks": "network", "security_groups": "group"}


def _claims(kind: str, obj: Any) -> tuple[tuple, ...]:
    if kind == "networks":
        return network_claims(obj)
    if kind == "ports":
        return port_claims(obj)
    return ()


def _references(kind: str, obj: Any) -> set[tuple[str, str]]:
    if kind == "ports":
        return {("network", obj.network)} | {("group", g) for g in obj.security_groups or ()}
    if kind == "security_groups":
        return {("group", r.remote_group) for r in obj.rules if r.remote_group}
    return set()


class Mirror:
    """The keys under ``topology/`` and ``hosts/`` as events left them, and
    the topology they make, rebuilt from the changed keys only."""

    def __init__(self, prefix: str, topo_keys: dict[str, str], host_keys: dict[str, str],
                 parsed: keys_mod.Parsed | None = None):
        """``parsed``: objects parsed before (key -> (text, object)), re-used
        by the first full build where a key's text is unchanged."""
        self.base = prefix + "topology/"
        self.hosts_base = prefix + "hosts/"
        self.keys = dict(topo_keys)
        self._parsed: keys_mod.Parsed = dict(parsed or {})
        self._hosts = keys_mod.hosts(host_keys)
        self._topo: Topology | None = None  # None: the next build is a full one
        self._index = ClaimIndex()
        self._changed: set[str] = set()  # topology keys changed since the last build
        self.full_builds = 0

    def apply(self, events: Iterable[Event]) -> None:
        """Record a batch; :meth:`build` turns the batches since into a topology."""
        for kind, key, value, *_ in events:
            if key.startswith(self.hosts_base):
                self._host_event(kind, key, value)
                continue
            self._changed.add(key)
            if kind == "PUT":
                self.keys[key] = value
            else:
                self.keys.pop(key, None)

    def _host_event(self, kind: str, key: str, value: str) -> None:
        name = key.rsplit("/", 1)[1]
        self._hosts.pop(name, None)
        if kind == "PUT":
            self._hosts.update(keys_mod.hosts({key: value}))

    def build(self) -> Topology:
        """The topology now; StoreError (naming the key) when it is invalid."""
        if self._topo is not None:
            try:
                topo = self._delta()
            except StoreError:
                self._topo = None
                raise
            if topo is not None:
                self._topo = topo
                return self._with_hosts(topo)
            self._topo = None  # invalid after the delta: the full build names why
        self._changed.clear()
        self.full_builds += 1
        topo, self._parsed = keys_mod.topology(self.base, self.keys, self._parsed)
        self._index = ClaimIndex.of(topo)
        self._topo = topo
        return self._with_hosts(topo)

    def _with_hosts(self, topo: Topology) -> Topology:
        topo.hosts = dict(self._hosts)
        return topo

    def _delta(self) -> Topology | None:
        """Apply the changed keys to a copy of the last topology; None when
        the result is invalid (the index then no longer matches it)."""
        old = self._topo
        new = Topology(dict(old.networks), dict(old.ports), old.revision,
                       dict(old.security_groups))
        changed, self._changed = self._changed, set()
        ports: list[tuple[str, Port | None]] = []
        for key in sorted(changed):
            rel = key[len(self.base):]
            if rel == "revision":
                new.revision = keys_mod.revision(key, self.keys.get(key, "0"))
                continue
            kind, _, name = rel.partition("/")
            if kind not in keys_mod.KINDS:
                continue
            objs = getattr(new, keys_mod.KINDS[kind][1])
            if kind == "ports":
                ports.append((name, None))
            gone = objs.pop(name, None)
            if gone is not None:
                self._index.remove(kind, gone)
                self._parsed.pop(key, None)
            text = self.keys.get(key)
            if text is None:
                continue
            obj = keys_mod.parse(key, kind, name, text)
            self._parsed[key] = (text, obj)
            objs[name] = obj
            self._index.add(kind, obj)
            if kind == "ports":
                ports[-1] = (name, obj)
        if not self._index.valid:
            return None
        if old.port_index is not None:  # carried over, not rebuilt (see port_index)
            new.port_index = old.port_index.update(old.ports, ports)
        return new
