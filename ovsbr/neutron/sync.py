"""Changes to the desired state that Neutron makes, as pure functions.

Each returns a change for :meth:`ovsbr.store.base.Store.update`, which runs
it on a fresh copy under the store's revision check and writes only the
keys that differ: a Neutron update that changes nothing ovsbr cares about
writes nothing. Only Neutron's objects (UUID names, see
:func:`.mapping.is_neutron_name`) are ever removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from ovsbr.model import Network, Port, Topology
from ovsbr.neutron.mapping import is_neutron_name
from ovsbr.secgroups.model import SecurityGroup

Change = Callable[[Topology], None]


def put_network(net: Network) -> Change:
    def change(topo: Topology) -> None:
        topo.networks[net.name] = net
    return change


def put_port(net: Network, port: Port, groups: Mapping[str, SecurityGroup] = {}  # noqa: B006
             ) -> Change:
    """The port, its network and its security groups as bound (any may be new
    to the store); ``groups`` includes the remote groups their rules name.

    A live migration in progress (``migrating_to``, which the worker keeps
    from Neutron's inactive bindings) survives an update on the same host.
    """
    def change(topo: Topology) -> None:
        topo.networks[net.name] = net
        topo.security_groups.update(groups)
        old = topo.ports.get(port.name)
        keep = old is not None and old.host == port.host and old.migrating_to != port.host
        topo.ports[port.name] = dataclasses.replace(
            port, migrating_to=old.migrating_to if keep else port.migrating_to)
    return change


def set_migrations(targets: Mapping[str, str]) -> Change:
    """Each Neutron port's live-migration destination (port -> host), or none."""
    def change(topo: Topology) -> None:
        for name, port in list(topo.ports.items()):
            if not is_neutron_name(name):
                continue
            want = targets.get(name)
            if want == port.host:
                want = None
            if port.migrating_to != want:
                topo.ports[name] = dataclasses.replace(port, migrating_to=want)
    return change


def update_groups(groups: Mapping[str, SecurityGroup]) -> Change:
    """Groups whose rules changed in Neutron, where the store has them (a
    group no served port uses stays out of the store); their remote groups
    come along."""
    def change(topo: Topology) -> None:
        present = [name for name in groups if name in topo.security_groups]
        if present:
            topo.security_groups.update(groups)
    return change


def remove_group(name: str) -> Change:
    """A group Neutron deleted (no port uses it: Neutron refuses that), and the
    rules of other groups that named it as their remote (Neutron's database
    deletes those with it, without an event)."""
    def change(topo: Topology) -> None:
        if topo.security_groups.pop(name, None) is None:
            return
        for other in list(topo.security_groups.values()):
            keep = tuple(r for r in other.rules if r.remote_group != name)
            if len(keep) != len(other.rules):
                topo.security_groups[other.name] = dataclasses.replace(other, rules=keep)
    return change


def remove_port(name: str) -> Change:
    def change(topo: Topology) -> None:
        topo.ports.pop(name, None)
    return change


def remove_network(name: str) -> Change:
    """The network and whatever ports still name it (Neutron deletes those first)."""
    def change(topo: Topology) -> None:
        for port in [p.name for p in topo.ports.values() if p.network == name]:
            del topo.ports[port]
        topo.networks.pop(name, None)
    return change


@dataclasses.dataclass
class Counts:
    added: int = 0
    changed: int = 0
    removed: int = 0

    def __str__(self) -> str:
        return f"{self.added} added, {self.changed} changed, {self.removed} removed"


def converge(networks: Mapping[str, Network], ports: Mapping[str, Port],
             counts: Counts, groups: Mapping[str, SecurityGroup] = {}  # noqa: B006
             ) -> Change:
    """Make the store's Neutron objects equal to these; count what moved.

    ``networks``/``ports``/``groups``: everything Neutron has that ovsbr
    serves (the groups its ports use, and their remote groups). The
    operator's own objects (non-UUID names) are left alone.
    """
    def change(topo: Topology) -> None:
        counts.added = counts.changed = counts.removed = 0
        for have, want in ((topo.ports, ports), (topo.networks, networks),
                           (topo.security_groups, groups)):
            for name in [n for n in have if is_neutron_name(n) and n not in want]:
                del have[name]
                counts.removed += 1
        for have, want in ((topo.security_groups, groups), (topo.networks, networks),
                           (topo.ports, ports)):
            for name, obj in want.items():
                if name not in have:
                    counts.added += 1
                elif have[name] != obj:
                    counts.changed += 1
                have[name] = obj
    return change
