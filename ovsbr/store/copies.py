"""Each port's copies in the folders an agent watches (pure; see :mod:`.etcd`).

An agent needs few of the store's ports: the ones it wires (its host's,
the host-less ones, a live migration's to it), every port of the overlay
networks it has ports on (its flood lists and remote MACs), and the members
of the security groups its ports' rules name as remote groups. Watching
``topology/`` whole, every agent heard every write: at 1,000 hosts etcd
encoded each event 1,000 times, and a CLI write took 35 ms where it takes
12 with the streams elsewhere (bench/scale.py). So every writer keeps a copy
of each port under each folder that answers one of those questions::

    index/ports/host/<host>/<port>        its host's, and a migration's destination's
    index/ports/any-host/<port>           a port declared for no host
    index/ports/network/<network>/<port>
    index/ports/group/<group>/<port>

written in the port's own transaction, as its claim keys are; the value is
the port's document with the topology revision that wrote it. An agent
watches its host's two folders, the network folders of its overlay
networks and the group folders of its remote groups, and follows its ports
into new ones (:func:`folders`). ``index/ports-revision`` says which topology
revision the copies describe: a writer that does not keep them (an older
ovsbr, a hand edit) leaves it behind, and agents then watch the whole
topology until the next writer has rebuilt them.

Several folders hold a copy of one port, and their watch streams arrive in
no common order. :class:`Copies` merges them: a port is what its newest
copy says, or gone when its newest event is a deletion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from ovsbr.model import OVERLAY_TYPES, Port, Topology

FOLDER = "index/ports/"
TOMBSTONES = 4096
MARKER = "index/ports-revision"
Event = tuple  # (PUT|DELETE, key, value, etcd mod revision)


def keys(port: Port | None) -> frozenset[str]:
    """The copies' keys below ``index/ports/`` (none for no port)."""
    if port is None:
        return frozenset()
    name = port.name
    found = {f"network/{port.network}/{name}"}
    found.add(f"any-host/{name}" if port.host is None else f"host/{port.host}/{name}")
    if port.migrating_to is not None:
        found.add(f"host/{port.migrating_to}/{name}")
    found.update(f"group/{g}/{name}" for g in port.security_groups or ())
    return frozenset(found)


def value(port: Port, revision: int) -> str:
    """A copy's text: the port's document and the topology revision."""
    return json.dumps({"port": port.to_dict(), "revision": revision}, sort_keys=True)


def unwrap(text: str) -> tuple[str, int] | None:
    """(the port's document as text, its revision) from a copy; None when
    the copy is not one (a hand edit): the mirror then reports the port."""
    try:
        data = json.loads(text)
        return json.dumps(data["port"], sort_keys=True), int(data["revision"])
    except (ValueError, TypeError, KeyError):
        return None


def ops(changed: Iterable[tuple[str, Port | None]], old: Mapping[str, Port],
        revision: int) -> tuple[set[str], dict[str, str]]:
    """(copies to delete, copy -> text to put) for ports changing from
    ``old`` to the given versions, netted as :func:`.claims.ops` nets claims.
    Every copy of a changed port is put again: a watcher of any of its
    folders hears the new version."""
    gone: set[str] = set()
    put: dict[str, str] = {}
    for name, new in changed:
        gone |= keys(old.get(name)) - keys(new)
        if new is not None:
            text = value(new, revision)
            put.update(dict.fromkeys(keys(new), text))
    return gone - set(put), put


def folders(topo: Topology, host: str) -> frozenset[str]:
    """The folders below ``index/ports/`` that ``host``'s agent watches,
    from what it knows (its own folders always)."""
    wanted = {f"host/{host}/", "any-host/"}
    for name in topo.index().wired_on(host):
        port = topo.ports[name]
        net = topo.networks.get(port.network)
        if net is not None and net.type in OVERLAY_TYPES:
            wanted.add(f"network/{port.network}/")
        for group in port.security_groups or ():
            for rule in getattr(topo.security_groups.get(group), "rules", ()):
                if rule.remote_group:
                    wanted.add(f"group/{rule.remote_group}/")
    return frozenset(wanted)


def folder_of(rel: str) -> str:
    """The folder (with its trailing '/') of a copy's key below ``index/ports/``."""
    return rel[:rel.rindex("/") + 1]


class Copies:
    """The ports as the copies in the watched folders say (pure).

    Each copy is held with the etcd revision of its event. A port is the
    text of its newest copy, or gone when a deletion is newer than every
    copy held (a stream that has not yet heard the change still holds the
    old copy: the other folders' event of the same transaction outranks it).
    A deletion is remembered after the port's last copy has gone, as a
    lagging stream may still bring an older copy (it brings the deletion
    after it, so forgetting costs a moment's ghost, never a wrong end): the
    newest :data:`TOMBSTONES` of them.
    """

    def __init__(self) -> None:
        self._held: dict[str, dict[str, tuple[int, str]]] = {}  # port -> key -> copy
        self._deleted: dict[str, int] = {}  # port -> newest deletion's revision
        self._shown: dict[str, str] = {}  # port -> text last handed out

    def apply(self, events: Iterable[Event], base: str) -> list[tuple[str, str | None]]:
        """Record events on keys below ``base`` (``<prefix>index/ports/``);
        returns the ports whose copy changed, with the new copy's text
        (None: gone)."""
        touched: set[str] = set()
        for kind, key, text, rev in events:
            rel = key[len(base):]
            name = rel.rsplit("/", 1)[-1]
            held = self._held.setdefault(name, {})
            if int(rev) < held.get(rel, (0,))[0]:
                pass  # older than the copy held (two sources of one folder)
            elif kind == "PUT":
                held[rel] = (int(rev), text)
            else:
                held.pop(rel, None)
                last = self._deleted.pop(name, 0)  # re-inserted: the newest last
                self._deleted[name] = max(int(rev), last)
                if len(self._deleted) > TOMBSTONES:
                    del self._deleted[next(iter(self._deleted))]
            touched.add(name)
        return self._settle(touched)

    def drop(self, folder: str) -> list[tuple[str, str | None]]:
        """Forget a folder no longer watched (``folder`` below ``index/ports/``)."""
        touched = set()
        for name, held in self._held.items():
            for rel in [r for r in held if r.startswith(folder)]:
                del held[rel]
                touched.add(name)
        return self._settle(touched)

    def _settle(self, touched: set[str]) -> list[tuple[str, str | None]]:
        changed = []
        for name in sorted(touched):
            held = self._held.get(name) or {}
            newest = max(held.values(), default=None)
            text = None
            if newest is not None and newest[0] >= self._deleted.get(name, 0):
                text = newest[1]
            if not held:
                self._held.pop(name, None)
            if text != self._shown.get(name):
                if text is None:
                    del self._shown[name]
                else:
                    self._shown[name] = text
                changed.append((name, text))
        return changed
