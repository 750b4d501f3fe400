"""A store write as transactions small enough for etcd (pure).

etcd refuses a transaction of more than ``--max-txn-ops`` operations (128
by default), so one ``ovsbr apply`` of a few hundred ports, or Neutron's
resync after an outage, could not be written as one transaction. A change
is cut into steps here, in an order where each intermediate state is valid
on its own (ports leave before their networks and groups, networks and
groups arrive before their ports), checked with the same claims as
``Topology.validate``. A change that cannot be ordered so (two ports
swapping a device, groups naming each other, both new) stays one step, and
the server's refusal then names the setting to raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ovsbr.model import Topology
from ovsbr.store.mirror import ClaimIndex

KINDS = ("networks", "ports", "security_groups")
Change = tuple[str, str, Any]  # (key folder, name, the new object or None to delete)


def changes(before: Topology, after: Topology) -> list[Change]:
    """Every object that differs, as (folder, name, new object or None)."""
    out = []
    for kind in KINDS:
        old, new = getattr(before, kind), getattr(after, kind)
        for name in sorted(set(old) | set(new)):
            if name not in new:
                out.append((kind, name, None))
            elif old.get(name) != new[name]:
                out.append((kind, name, new[name]))
    return out


# Deleted ports first, then what ports refer to, then ports, then what they
# referred to: each intermediate state keeps every reference resolvable.
PHASES = (("ports", False), ("security_groups", True), ("networks", True), ("ports", True),
          ("security_groups", False), ("networks", False))


def steps(before: Topology, todo: list[Change], budget: int,
          cost: Callable[[Change], int] = lambda c: 1) -> list[list[Change]]:
    """``todo`` cut into steps of at most ``budget`` operations (``cost`` of
    each change), each leaving a valid state; one step when no such order
    exists (or none is needed)."""
    if sum(cost(c) for c in todo) <= budget:
        return [todo] if todo else []
    ordered = [c for kind, put in PHASES for c in todo
               if c[0] == kind and (c[2] is not None) == put]
    index = ClaimIndex.of(before)
    objs = {kind: dict(getattr(before, kind)) for kind in KINDS}
    out: list[list[Change]] = []
    chunk: list[Change] = []
    used = 0
    for c in [*ordered, None]:
        if c is not None and (not chunk or used + cost(c) <= budget):
            chunk.append(c)
            used += cost(c)
            continue
        for kind, name, obj in chunk:
            old = objs[kind].pop(name, None)
            if old is not None:
                index.remove(kind, old)
            if obj is not None:
                objs[kind][name] = obj
                index.add(kind, obj)
        if not index.valid:
            return [todo]
        out.append(chunk)
        chunk, used = ([c], cost(c)) if c is not None else ([], 0)
    return out
