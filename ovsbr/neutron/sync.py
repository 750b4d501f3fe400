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

Change = Callable[[Topology], None]


def put_network(net: Network) -> Change:
    def change(topo: Topology) -> None:
        topo.networks[net.name] = net
    return change


def put_port(net: Network, port: Port) -> Change:
    """The port and its network as bound (the network may be new to the store).

    A live migration in progress (``migrating_to``, which the worker keeps
    from Neutron's inactive bindings) survives an update on the same host.
    """
    def change(topo: Topology) -> None:
        topo.networks[net.name] = net
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
             counts: Counts) -> Change:
    """Make the store's Neutron objects equal to these; count what moved.

    ``networks``/``ports``: everything Neutron has that ovsbr serves. The
    operator's own objects (non-UUID names) are left alone.
    """
    def change(topo: Topology) -> None:
        counts.added = counts.changed = counts.removed = 0
        for have, want in ((topo.ports, ports), (topo.networks, networks)):
            for name in [n for n in have if is_neutron_name(n) and n not in want]:
                del have[name]
                counts.removed += 1
        for have, want in ((topo.networks, networks), (topo.ports, ports)):
            for name, obj in want.items():
                if name not in have:
                    counts.added += 1
                elif have[name] != obj:
                    counts.changed += 1
                have[name] = obj
    return change
