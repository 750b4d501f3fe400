"""The agent's state between reconciles, as values a unit test can build.

The store watcher hands the loop one :class:`DesiredSnapshot` by a single
assignment, so a reconcile never mixes the topology of one revision with
this host's share of another. Everything the loop learns from applying a
plan lives in one frozen :class:`AgentState`, replaced whole after each
reconcile; :func:`status` is a pure function of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ovsbr.agent import reconciler
from ovsbr.drivers.base import BridgeReport, Overlay
from ovsbr.model import Network, Topology


@dataclasses.dataclass(frozen=True)
class DesiredSnapshot:
    """One read of the store: every host's topology and this host's share.

    ``store_error`` is set when the store stopped being readable: the last
    good topology is kept and the error is published with it.
    """

    topology: Topology | None = None
    local: Topology | None = None
    store_error: str | None = None
    received: float | None = None  # monotonic time the watcher read it

    @classmethod
    def of(cls, topology: Topology, host: str, received: float | None = None
           ) -> DesiredSnapshot:
        return cls(topology, topology.local_view(host), None, received)

    def failed(self, error: str) -> DesiredSnapshot:
        """The same desired state, with the store's error to report."""
        return dataclasses.replace(self, store_error=error)


@dataclasses.dataclass(frozen=True)
class NetworkRecord:
    """A network whose build failed: not retried until its definition
    (so its fingerprint) changes, or the next full resync."""

    fingerprint: str
    error: str


@dataclasses.dataclass(frozen=True)
class AgentState:
    """What the last reconcile found and did.

    ``overlays`` is None when the driver's overlay state is unknown (at
    start and after a full resync): the next reconcile programs it whole.
    """

    desired: DesiredSnapshot = DesiredSnapshot()
    networks: Mapping[str, NetworkRecord] = dataclasses.field(default_factory=dict)
    ports: Mapping[str, reconciler.PortStatus] = dataclasses.field(default_factory=dict)
    overlays: Mapping[str, Overlay] | None = None
    datapath: Mapping[str, BridgeReport] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ReconcileReport:
    """One reconcile as the loop saw it, handed to ``Agent(on_reconciled=...)``
    (metrics) and never read back by the agent."""

    duration: float  # seconds
    actions: Mapping[str, int]  # action kind -> how many were applied
    failures: int  # actions that failed, plus a failed datapath sync
    full: bool  # the first after a periodic full resync
    # Seconds from the store change reaching the agent to this reconcile's
    # end, when it applied a new revision (None: same revision as before).
    change_age: float | None = None
    # Ports that turned bound in this reconcile, and the seconds since the
    # first device event (kernel or OVSDB) that woke it, if one did.
    newly_bound: int = 0
    event_age: float | None = None


def newly_bound(before: Mapping[str, reconciler.PortStatus],
                after: Mapping[str, reconciler.PortStatus],
                names: Iterable[str] | None = None) -> int:
    """How many ports are bound now that were not before; ``names``: the
    only ports that can have changed (a plan for a change), None: any."""
    count = 0
    for name in after if names is None else names:
        ps = after.get(name)
        if ps is not None and ps.status is reconciler.BOUND:
            old = before.get(name)
            count += old is None or old.status is not reconciler.BOUND
    return count


def readiness(state: AgentState, reconciles: int, driver_problems: list[str]) -> list[str]:
    """Why this agent is not ready to serve (empty: ready).

    Ready means: the desired state was read and applied once, the store is
    readable, and the datapath connections the driver needs are up.
    """
    problems = list(driver_problems)
    if state.desired.store_error:
        problems.insert(0, f"store: {state.desired.store_error}")
    if reconciles == 0:
        problems.insert(0, "no reconcile yet (waiting for the store's first read)")
    return problems


def live_network_errors(records: Mapping[str, NetworkRecord], desired: Topology,
                        fingerprint: Callable[[Network], str]) -> dict[str, NetworkRecord]:
    """The build failures that still hold: the network is there, unchanged."""
    return {name: rec for name, rec in records.items()
            if (net := desired.networks.get(name)) is not None
            and fingerprint(net) == rec.fingerprint}


def network_outcomes(records: Mapping[str, NetworkRecord],
                     outcomes: list[reconciler.Outcome], desired: Topology,
                     fingerprint: Callable[[Network], str]) -> dict[str, NetworkRecord]:
    """``records`` plus the networks whose build failed in ``outcomes``."""
    result = dict(records)
    for o in outcomes:
        if o.error is not None and isinstance(o.action, reconciler.EnsureNetwork):
            net = desired.networks[o.action.network]
            result[net.name] = NetworkRecord(fingerprint(net), o.error)
    return result


def port_failures(outcomes: list[reconciler.Outcome]) -> dict[str, str]:
    """Port name -> why its plug or prepare failed."""
    return {o.action.port: o.error for o in outcomes
            if o.error is not None and isinstance(o.action, reconciler.PORT_ACTIONS)}


def bound_devices(plan: reconciler.Plan, failed: Mapping[str, str],
                  networks: Mapping[str, NetworkRecord]) -> Mapping[str, Any]:
    """Port -> device of the ports the plan binds and whose plug did not fail.

    A matched port is bound unless its network failed, so with no failure
    anywhere this is the plan's own mapping (no walk over every port on
    every event)."""
    if not failed and not networks:
        return plan.devices
    return {name: dev for name, dev in plan.devices.items()
            if name not in failed and name in plan.ports
            and plan.ports[name].status is reconciler.BOUND}


class PortDocs:
    """Each port's status document, kept from one publish to the next.

    A port whose status object is the one of last time keeps its document
    (the file store then reuses its text, and equal documents compare by
    identity); told which ports may have changed (a plan for a change), the
    ports mapping is the last one with those entries replaced, not a walk
    over every port.
    """

    def __init__(self):
        self._parts: dict[str, tuple[reconciler.PortStatus, dict]] = {}
        self._doc: dict[str, dict] | None = None

    def _part(self, name: str, st: reconciler.PortStatus) -> dict:
        part = self._parts.get(name)
        if part is None or part[0] is not st:
            part = self._parts[name] = (st, st.to_dict())
        return part[1]

    def ports(self, ports: Mapping[str, reconciler.PortStatus],
              changed: Iterable[str] | None = None) -> dict[str, dict]:
        if changed is None or self._doc is None:
            doc = {n: self._part(n, st) for n, st in ports.items()}
            if len(self._parts) > len(doc):
                for n in [n for n in self._parts if n not in doc]:
                    del self._parts[n]
        else:
            doc = dict(self._doc)
            for n in changed:
                st = ports.get(n)
                if st is not None:
                    doc[n] = self._part(n, st)
                else:
                    doc.pop(n, None)
                    self._parts.pop(n, None)
        self._doc = doc
        return doc


def status(state: AgentState, driver: str, docs: PortDocs | None = None,
           changed: Iterable[str] | None = None) -> dict[str, Any]:
    """The host's status document, as ``ovsbr status`` shows it.

    ``docs`` (kept by the caller between calls) and ``changed`` (the only
    ports whose status may differ from the last call): see :class:`PortDocs`.
    """
    local = state.desired.local or Topology()
    overlays = state.overlays or {}
    networks: dict[str, dict[str, Any]] = {}
    for name in local.networks:
        if name in state.networks:
            networks[name] = {"status": "error", "reason": state.networks[name].error}
        else:
            networks[name] = {"status": "ok"}
            if name in overlays:
                networks[name]["remote_hosts"] = sorted(overlays[name].vteps)
    ports = {n: st.to_dict() for n, st in state.ports.items()} if docs is None \
        else docs.ports(state.ports, changed)
    doc: dict[str, Any] = {"driver": driver, "revision": local.revision,
                           "ports": ports, "networks": networks}
    if state.desired.store_error:
        doc["store_error"] = state.desired.store_error
    if state.datapath:
        doc["datapath"] = {name: r.to_dict() for name, r in state.datapath.items()}
    return doc


def without_counters(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A status document less what moves with traffic alone (each bridge's
    counters and learned-MAC count): what makes a periodic status news."""
    datapath = doc.get("datapath")
    if not datapath:
        return dict(doc)
    return {**doc, "datapath": {name: {k: v for k, v in report.items()
                                       if k not in ("counters", "mac_count")}
                                for name, report in datapath.items()}}
