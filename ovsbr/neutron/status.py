"""Agents' status documents -> Neutron port status changes (pure).

An agent publishes, per host, each port it is asked to wire as ``bound``,
``waiting`` or ``error`` (see :class:`ovsbr.agent.reconciler.PortState`).
Neutron's view: ``bound`` completes the L2 provisioning block (the port
turns ACTIVE and Nova hears ``network-vif-plugged``), ``waiting`` is DOWN,
``error`` is ERROR. Only changes are sent: the worker keeps what it sent,
and :class:`Tracker` names the statuses that may have moved since.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ovsbr.neutron.mapping import is_neutron_name

ACTIVE, DOWN, ERROR = "ACTIVE", "DOWN", "ERROR"
NEUTRON_STATUS = {"bound": ACTIVE, "waiting": DOWN, "error": ERROR}

@dataclasses.dataclass(frozen=True)
class Change:
    port_id: str
    host: str
    status: str  # ACTIVE | DOWN | ERROR


def current(statuses: Mapping[str, Any], live_hosts: Iterable[str]) -> dict[tuple[str, str], str]:
    """Every Neutron port's status as its live host reports it, from a
    whole read (the reference :class:`Tracker` is held to).

    A host whose registration lapsed is left out: its last document is
    history, not the port's state (Neutron's agents leave such ports alone
    too; the agent shows as dead instead).
    """
    live = set(live_hosts)
    out: dict[tuple[str, str], str] = {}
    for host, doc in statuses.items():
        if host not in live or not isinstance(doc, Mapping):
            continue
        ports = doc.get("ports")
        if not isinstance(ports, Mapping):
            continue
        for name, st in ports.items():
            value = neutron_status(st)
            if is_neutron_name(name) and value is not None:
                out[(name, host)] = value
    return out


def neutron_status(doc: Any) -> str | None:
    """The Neutron status one port's status document maps to, if any."""
    state = doc.get("status") if isinstance(doc, Mapping) else None
    return NEUTRON_STATUS.get(state) if isinstance(state, str) else None


class Tracker:
    """What :func:`current` computes, kept by deltas (pure).

    The worker used to read every host's status document and every port's
    status key each ``status_interval`` and compare all of them: at
    100,000 ports, 100,000 keys a second for a handful of changes. Fed the
    store's status events (:meth:`port`, :meth:`head`) and the live hosts
    (:meth:`live`), it names the (port, host) keys whose status may have
    moved since the last :meth:`take`; ``status(port, host)`` is what
    :func:`current` would hold for them (None: absent). The property test
    in tests/unit/neutron/test_status_sync.py holds the two together.
    """

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, str]] = {}  # host -> port -> status, per-port keys
        # host -> port -> status from the head document itself (an agent
        # from before per-port keys); a port key wins over it.
        self._heads: dict[str, dict[str, str]] = {}
        self._live: frozenset[str] = frozenset()
        self._dirty: set[tuple[str, str]] = set()

    def clear(self) -> None:
        """Forget every document (a fresh read follows): whatever was known
        is marked, so what the read does not bring back goes as absent."""
        for table in (self._keys, self._heads):
            for host, ports in table.items():
                self._dirty.update((p, host) for p in ports)
            table.clear()

    def port(self, host: str, name: str, doc: Any) -> None:
        """One port's status key put (``doc``) or deleted (None)."""
        if not is_neutron_name(name):
            return
        # "": a key with no status Neutron knows, which still hides the head's.
        self._set(self._keys, host, {name: None if doc is None else neutron_status(doc) or ""})

    def head(self, host: str, doc: Any) -> None:
        """A host's head document put or deleted; only an old agent's
        carries ports, and then all of them."""
        ports = doc.get("ports") if isinstance(doc, Mapping) else None
        ports = ports if isinstance(ports, Mapping) else {}
        new = {n: neutron_status(d) for n, d in ports.items() if is_neutron_name(n)}
        old = self._heads.get(host, {})
        self._set(self._heads, host, {**dict.fromkeys(old), **new})

    def _set(self, table: dict[str, dict[str, str]], host: str,
             values: Mapping[str, str | None]) -> None:
        mine = table.setdefault(host, {})
        for name, value in values.items():
            if mine.get(name) == value:
                continue
            if value is None:
                mine.pop(name, None)
            else:
                mine[name] = value
            self._dirty.add((name, host))
        if not mine:
            del table[host]

    def live(self, hosts: Iterable[str]) -> None:
        """The hosts whose registration is alive now."""
        live = frozenset(hosts)
        for host in live ^ self._live:
            for table in (self._keys, self._heads):
                self._dirty.update((p, host) for p in table.get(host, ()))
        self._live = live

    def again(self, key: tuple[str, str]) -> None:
        """Look at ``key`` at the next :meth:`take` even if nothing moves."""
        self._dirty.add(key)

    def status(self, port: str, host: str) -> str | None:
        if host not in self._live:
            return None
        value = self._keys.get(host, {}).get(port)
        if value is None:
            return self._heads.get(host, {}).get(port)
        return value or None

    def take(self) -> dict[tuple[str, str], str | None]:
        """The keys that may have moved since the last take, with their status now."""
        dirty, self._dirty = self._dirty, set()
        return {key: self.status(*key) for key in sorted(dirty)}
