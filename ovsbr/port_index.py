"""Which ports each host wires, each network holds, each group has (pure).

An agent asks three questions of the whole topology on every change: its
host's ports (``Topology.local_view``), the ports of its overlay networks
(flood lists, ``agent.overlay``) and the members of security groups. Each
was a scan of every port: at 100,000 ports tens of milliseconds per event
and per agent. :class:`PortIndex` answers them from buckets; a topology
builds one on first use, and the etcd watcher (``store.mirror``) carries it
from one topology to the next, touching only the buckets of changed ports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ovsbr.model import Port

Buckets = Mapping[object, frozenset[str]]
EMPTY: frozenset[str] = frozenset()


def _keys(port: Port) -> tuple[tuple, tuple, tuple]:
    """The (host, network, group) buckets of one port. Host None: a port
    declared for no host in particular, which every host wires; a live
    migration's destination wires it too."""
    hosts = (port.host,) if port.migrating_to is None else (port.host, port.migrating_to)
    return hosts, (port.network,), tuple(port.security_groups or ())


@dataclasses.dataclass(frozen=True)
class PortIndex:
    by_host: Buckets
    by_network: Buckets
    by_group: Buckets

    @classmethod
    def of(cls, ports: Mapping[str, Port]) -> PortIndex:
        return cls({}, {}, {}).update({}, ((name, p) for name, p in ports.items()))

    def wired_on(self, host: str) -> frozenset[str]:
        """The ports ``host``'s agent wires (see Port.wired_on)."""
        return self.by_host.get(None, EMPTY) | self.by_host.get(host, EMPTY)

    def update(self, old: Mapping[str, Port], changed: Iterable[tuple[str, Port | None]]
               ) -> PortIndex:
        """A new index for ports changing from their versions in ``old`` to
        the given ones (None: deleted); this one is left as it was."""
        tables = [dict(self.by_host), dict(self.by_network), dict(self.by_group)]
        dirty: list[dict[object, set[str]]] = [{}, {}, {}]

        def bucket(i: int, key: object) -> set[str]:
            if key not in dirty[i]:
                dirty[i][key] = set(tables[i].get(key, EMPTY))
            return dirty[i][key]
        for name, new in changed:
            before = old.get(name)
            if before is not None:
                for i, keys in enumerate(_keys(before)):
                    for key in keys:
                        bucket(i, key).discard(name)
            if new is not None:
                for i, keys in enumerate(_keys(new)):
                    for key in keys:
                        bucket(i, key).add(name)
        for table, touched in zip(tables, dirty, strict=True):
            for key, names in touched.items():
                if names:
                    table[key] = frozenset(names)
                else:
                    table.pop(key, None)
        return PortIndex(*tables)
