"""Ports' claims as store keys, so one port is checked without the others (pure).

What makes a port valid beside the others is that no other port holds its
device on its host, its iface-id, or its MAC or addresses on its network
(:func:`ovsbr.claims.port_claims`). The etcd store keeps each claim as a
key, ``index/claims/<kind>/<parts...>``, whose value is the owning port,
written in the same transaction as the port: a CLI or Neutron write of one
port then reads that port, the networks and groups, and its claims' keys,
never the other ports. ``index/revision`` says which topology revision the
keys describe; writers that do not keep them (an older ovsbr, a hand edit)
leave it behind, and the whole-topology path rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ovsbr.claims import port_claims
from ovsbr.model import Port

Claim = tuple


def key(claim: Claim) -> str:
    """The key below ``index/claims/``; no part holds a '/' (names, hosts,
    devices, iface-ids, MACs and addresses are validated without one)."""
    return "/".join(str(part) for part in claim)


def of(port: Port | None) -> frozenset[Claim]:
    return frozenset(port_claims(port)) if port is not None else frozenset()


def ops(changed: Iterable[tuple[str, Port | None]], old: Mapping[str, Port]
        ) -> tuple[set[Claim], dict[Claim, str]]:
    """(claims to delete, claim -> new owner to put) for ports changing from
    ``old`` to the given versions (None: deleted), netted so that no claim is
    both deleted and put (etcd refuses a key twice in one transaction)."""
    released: set[Claim] = set()
    taken: dict[Claim, str] = {}
    for name, new in changed:
        before, after = of(old.get(name)), of(new)
        released |= before - after
        taken.update(dict.fromkeys(after - before, name))
    return released - set(taken), taken
