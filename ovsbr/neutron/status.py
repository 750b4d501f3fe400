"""Agents' status documents -> Neutron port status changes (pure).

An agent publishes, per host, each port it is asked to wire as ``bound``,
``waiting`` or ``error`` (see :class:`ovsbr.agent.reconciler.PortState`).
Neutron's view: ``bound`` completes the L2 provisioning block (the port
turns ACTIVE and Nova hears ``network-vif-plugged``), ``waiting`` is DOWN,
``error`` is ERROR. Only changes are sent: the worker keeps the last
:data:`Seen` and hands it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ovsbr.neutron.mapping import is_neutron_name

ACTIVE, DOWN, ERROR = "ACTIVE", "DOWN", "ERROR"
NEUTRON_STATUS = {"bound": ACTIVE, "waiting": DOWN, "error": ERROR}

# (port id, host) -> Neutron status last reported from that host.
Seen = Mapping[tuple[str, str], str]


@dataclasses.dataclass(frozen=True)
class Change:
    port_id: str
    host: str
    status: str  # ACTIVE | DOWN | ERROR


def current(statuses: Mapping[str, Any], live_hosts: Iterable[str]) -> dict[tuple[str, str], str]:
    """Every Neutron port's status as its live host reports it.

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
            state = st.get("status") if isinstance(st, Mapping) else None
            if is_neutron_name(name) and state in NEUTRON_STATUS:
                out[(name, host)] = NEUTRON_STATUS[state]
    return out


def changes(previous: Seen, now: Seen) -> list[Change]:
    """What to tell Neutron: every (port, host) whose status is new or moved."""
    return [Change(port, host, status) for (port, host), status in sorted(now.items())
            if previous.get((port, host)) != status]
