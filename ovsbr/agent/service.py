"""The agent daemon: follow the store and the datapath, reconcile, report.

One reconcile thread does all datapath work, so driver calls never race each
other. Three things wake it: a store change, a device event from the driver,
and the periodic full resync (which also re-reads the datapath from scratch
and retries networks that failed to build).

The loop is: take the desired snapshot -> observe -> plan (pure) -> apply
(:mod:`~ovsbr.agent.actions`: each action returns an
:class:`~ovsbr.agent.reconciler.Outcome`) -> fold
the outcomes into a new :class:`~ovsbr.agent.state.AgentState` -> publish
:func:`~ovsbr.agent.state.status` of it. The store watcher's only write is
one assignment of a frozen :class:`~ovsbr.agent.state.DesiredSnapshot`.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ovsbr.agent import incremental, reconciler
from ovsbr.agent import state as st
from ovsbr.agent.actions import Applier, SayOnce, reason_of
from ovsbr.agent.overlay import Overlay, OverlayCache
from ovsbr.agent.reconciler import Mode, Outcome
from ovsbr.drivers.base import Driver
from ovsbr.exceptions import OvsbrError
from ovsbr.model import Topology
from ovsbr.store.base import Store

LOG = logging.getLogger(__name__)
INTROSPECT_INTERVAL = 2.0  # seconds between refreshes of the driver's runtime view
# Seconds a status whose only news is the datapath's counters waits to be
# published: written every INTROSPECT_INTERVAL, they made each host put its
# status head every 2 s (500 etcd writes a second from 1,000 idle hosts,
# each kept in etcd's history until compacted, and an event for every
# reader following the status folder). A port, network, connection or
# flow count that moves still goes out at once.
COUNTERS_INTERVAL = 30.0
SETTLE_AFTER = 100  # a reconcile with this many actions built state worth freezing


def settle_gc() -> None:
    """Collect once, then keep the survivors out of later full collections.

    At 1,000 ports the agent holds a few hundred thousand long-lived objects
    (OVSDB rows, flows, the topology) and CPython scanned them all in a full
    collection every ~1.4 s while wiring: ~70 ms with the GIL held, finding
    nothing (measured with gc.callbacks), the whole p95/p99 tail of
    single-port wiring. Frozen objects are still freed by reference
    counting; cycles among them are found at the next settle (after each
    full resync), which unfreezes first.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    LOG.debug("gc settled: %d objects frozen in %.0f ms", gc.get_freeze_count(),
              (time.perf_counter() - started) * 1000)


@dataclasses.dataclass(frozen=True)
class _LastPlan:
    """The last plan, the desired state and network errors it was made for,
    and the port references of that desired state (built once per state)."""

    plan: reconciler.Plan | None = None
    desired: Topology | None = None
    errors: Mapping[str, str] = dataclasses.field(default_factory=dict)
    refs: incremental.PortRefs | None = None


class Agent:
    def __init__(self, store: Store, driver: Driver, host: str, resync_interval: float,
                 local_ip: str | None = None,
                 on_reconciled: Callable[[st.ReconcileReport], None] | None = None):
        """``on_reconciled``: called by the loop after each reconcile with its
        report (the metrics' one hook into the loop; a no-op by default)."""
        self.store = store
        self.driver = driver
        self.host = host
        self.local_ip = local_ip
        self._overlays = OverlayCache(host, local_ip)  # flood lists, per network
        self.resync_interval = resync_interval
        # Written by the store watcher only, read by the loop only.
        self.snapshot = st.DesiredSnapshot()
        # Written by the loop only.
        self.state = st.AgentState()
        self.reconciles = 0
        self.alive_at = time.monotonic()  # the loop's last turn (liveness)
        self.on_reconciled = on_reconciled
        self._resynced = False
        self._applied: Topology | None = None  # the desired state last reconciled
        self._event_at: float | None = None  # first device event since the last reconcile
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The last plan and what it was made from: the next one is made from
        # the change alone when it can be (see agent.incremental).
        self._last = _LastPlan()
        self._full_next = True  # at start, after a resync or a failure
        self._last_status: dict[str, Any] | None = None
        self._counters_due = 0.0  # monotonic time after which counters alone are news
        self._port_docs = st.PortDocs()
        self._not_ready: frozenset[str] = frozenset()  # at the last reconcile
        self._overlay_key: tuple | None = None
        self._overlays_again = False  # program the overlays even if unchanged
        self._say = SayOnce()
        self._actions = Applier(driver, self._say)

    @property
    def desired(self) -> Topology | None:
        """This host's share of the desired state, as last read."""
        return self.snapshot.local

    # -- life cycle ------------------------------------------------------------
    def start(self) -> None:
        self.driver.start(self._on_device_event)
        # A shared store learns this host and its tunnel endpoint; the
        # registration lives as long as the agent renews it.
        self.store.register(self.host, {"local_ip": self.local_ip, "driver": self.driver.name,
                                        **self.driver.capabilities()})
        watcher = threading.Thread(target=self._watch_store, name="ovsbr-store", daemon=True)
        watcher.start()
        self._threads.append(watcher)

    def stop(self) -> None:
        """Stop following; the datapath stays exactly as it is."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Reconcile until :meth:`stop`; returns after the driver is stopped."""
        next_resync = time.monotonic() + self.resync_interval
        next_introspect = time.monotonic() + INTROSPECT_INTERVAL
        try:
            while not self._stop.is_set():
                timeout = max(0.0, min(next_resync, next_introspect) - time.monotonic())
                woken = self._wake.wait(timeout)
                if self._stop.is_set():
                    break
                self._wake.clear()
                now = self.alive_at = time.monotonic()
                resynced = now >= next_resync
                if resynced:
                    self._full_resync()
                    next_resync = now + self.resync_interval
                    woken = True
                if now >= next_introspect:
                    next_introspect = now + INTROSPECT_INTERVAL
                    self.state = dataclasses.replace(self.state,
                                                     datapath=self.driver.introspect())
                    if not woken and self.reconciles:
                        self._publish(self.state, (), periodic=True)
                if woken and self.snapshot.local is not None:
                    plan = self.reconcile()
                    if resynced or self.reconciles == 1 or len(plan.actions) >= SETTLE_AFTER:
                        settle_gc()
        finally:
            for t in self._threads:
                t.join(2)
            self.driver.stop()
            self.store.close()

    def cleanup(self) -> reconciler.Plan:
        """Remove everything ovsbr created on this host's datapath, then exit.

        The same reconcile against an empty desired state, so it removes
        exactly what a normal run would consider ovsbr's.
        """
        self.driver.start(lambda _what: None)
        try:
            self.snapshot = st.DesiredSnapshot(Topology(), Topology())
            plan = self.reconcile(cleanup=True)
            self.driver.cleanup()
            return plan
        finally:
            self.driver.stop()

    def _on_device_event(self, _what: str) -> None:
        if self._event_at is None:
            self._event_at = time.monotonic()
        self._wake.set()

    def _watch_store(self) -> None:
        for item in self.store.watch(self._stop, host=self.host):
            last = self.snapshot
            if isinstance(item, Exception):
                msg = str(item)
                if msg != last.store_error:
                    LOG.error("%s; keeping the last good state (revision %s)", msg,
                              last.local.revision if last.local else "none")
                self.snapshot = last.failed(msg)
                self._wake.set()  # publish the error in the status
                continue
            if last.store_error is not None:
                LOG.info("store readable again (revision %d)", item.revision)
            self.snapshot = st.DesiredSnapshot.of(item, self.host, time.monotonic())
            self._wake.set()

    def _full_resync(self) -> None:
        try:
            self.driver.resync()
        except Exception:
            LOG.exception("full resync of the datapath failed")
        # Failed networks are retried; overlays are programmed whole again
        # (and logged only where they changed: not every resync_interval).
        self.state = dataclasses.replace(self.state, networks={})
        self._overlay_key, self._overlays_again = None, True
        self._say.reset()
        self._resynced = self._full_next = True

    # -- reconcile -------------------------------------------------------------
    def reconcile(self, cleanup: bool = False) -> reconciler.Plan:
        started = time.perf_counter()
        event_at, self._event_at = self._event_at, None
        before = self.state.ports
        snap = self.snapshot  # one read: topology and local share of one revision
        desired = snap.local
        fingerprint = self.driver.fingerprint
        networks = st.live_network_errors(self.state.networks, desired, fingerprint)

        plan, mode = self._plan(desired, networks, cleanup)
        first = [a for a in plan.actions if isinstance(a, reconciler.NETWORK_ACTIONS)]
        net_outcomes = [self._actions.apply(a, desired) for a in first]
        if first:
            networks = st.network_outcomes(networks, net_outcomes, desired, fingerprint)
            self._full_next = True  # networks moved: a fresh look at everything
            plan, mode = self._plan(desired, networks, cleanup)
        outcomes = self._actions.apply_ports(
            [a for a in plan.actions if isinstance(a, reconciler.PORT_ACTIONS)], desired)
        failed = st.port_failures(outcomes)
        bound = st.bound_devices(plan, failed, networks)
        overlays_now, not_ready, sync_failed = self.state.overlays, {}, 0
        try:
            # Keeping an unknown datapath (store never written) means hands
            # off: no bindings, so the flows and filters found stay as they are.
            if mode is not Mode.KEEP:
                overlays_now = self._sync_overlays(snap, networks)
                not_ready = self.driver.sync(desired, bound, plan.reached) or {}
        except Exception as e:
            LOG.error("datapath sync failed: %s", reason_of(e))
            sync_failed = 1
        # A failed action is retried by the next plan, which must then be
        # whole: the plan for a change only re-plans what the change reaches.
        self._full_next = sync_failed > 0 or any(
            o.error is not None for o in net_outcomes + outcomes)
        self.reconciles += 1
        ports = reconciler.port_statuses(plan, failed, not_ready, before)
        self.state = st.AgentState(snap, networks, ports, overlays_now, self.state.datapath)
        # The ports whose status can differ from the last publish: what the
        # plan reached, what failed, and those not ready now or last time
        # whose status moved. Not all of those: a port that stays waiting
        # (say, for its OpenFlow port) must not cost every event a rewrite.
        changed = None if plan.reached is None else plan.reached.union(
            failed, reconciler.status_moved(
                before, ports, itertools.chain(not_ready, self._not_ready)))
        self._not_ready = frozenset(not_ready)
        self._publish(self.state, changed)
        if self.on_reconciled is not None:  # no observer, no report: nothing to pay
            self._report(started, snap, net_outcomes + outcomes, sync_failed, before,
                         event_at, changed)
        self._resynced, self._applied = False, snap.local
        return plan

    def _report(self, started: float, snap: st.DesiredSnapshot, done: list[Outcome],
                sync_failed: int, before: Mapping[str, reconciler.PortStatus],
                event_at: float | None, reached: frozenset[str] | None = None) -> None:
        failures = sum(1 for o in done if o.error is not None) + sync_failed
        kinds: dict[str, int] = {}
        for o in done:
            kinds[o.action.kind] = kinds.get(o.action.kind, 0) + 1
        now = time.monotonic()
        new_revision = snap.local is not self._applied and snap.received is not None
        report = st.ReconcileReport(time.perf_counter() - started, kinds, failures,
                                    self._resynced, now - snap.received if new_revision else None,
                                    st.newly_bound(before, self.state.ports, reached),
                                    None if event_at is None else now - event_at)
        try:
            self.on_reconciled(report)
        except Exception:  # an observer must not stop the loop
            LOG.exception("on_reconciled hook failed")

    def readiness(self) -> list[str]:
        """Why the agent is not ready (empty: ready); see :func:`state.readiness`."""
        try:
            problems = self.driver.health()
        except Exception as e:
            problems = [f"datapath health unknown: {e}"]
        return st.readiness(self.state, self.reconciles, problems)

    def _plan(self, desired: Topology, networks: dict[str, st.NetworkRecord],
              cleanup: bool) -> tuple[reconciler.Plan, Mode]:
        observed, moved = self.driver.observe_change()
        self._actions.devices = observed.devices  # what the actions will name
        mode = reconciler.mode_for(desired, observed, cleanup)
        if mode is Mode.KEEP and self._say.first("never-written"):
            LOG.warning("the store has never been written but the datapath holds ovsbr "
                        "networks %s: keeping them (check state_path; run "
                        "'ovsbr-agent --cleanup' to remove them)",
                        ", ".join(sorted(observed.networks)))
        errors = {name: rec.error for name, rec in networks.items()}
        plan = None
        last = self._last
        refs = last.refs if last.desired is desired else None
        if not (self._full_next or cleanup or moved is None or last.plan is None
                or errors != last.errors):
            ports = frozenset() if desired is last.desired else \
                incremental.changed_ports(last.desired, desired)
            if ports is not None:
                refs = refs or incremental.PortRefs.of(desired)
                plan = incremental.plan_change(
                    desired, last.desired, observed, self.driver.fingerprint, errors,
                    last.plan, incremental.Change(ports, moved), refs, mode,
                    self.driver.prepares)
        if plan is None:
            plan = reconciler.plan(desired, observed, self.driver.fingerprint, errors,
                                   mode=mode, prepare=self.driver.prepares)
        self._last = _LastPlan(plan, desired, errors, refs)
        self._full_next = False
        return plan, mode

    def _sync_overlays(self, snap: st.DesiredSnapshot,
                       networks: dict[str, st.NetworkRecord]) -> Mapping[str, Overlay]:
        """Tunnels and remote MACs of overlay networks, from every host's ports."""
        desired = snap.local
        # Computed from the whole topology: only when it, or which networks
        # failed, changed (a device event changes neither).
        key = (snap.topology, desired, frozenset(networks))
        last_key = self._overlay_key
        if self.state.overlays is not None and last_key is not None and \
                key[0] is last_key[0] and key[1] is last_key[1] and key[2] == last_key[2]:
            return self.state.overlays
        self._overlay_key = None  # until the driver took them
        topo = snap.topology if snap.topology is not None else desired
        wanted = {name: ov for name, ov in self._overlays(topo).items()
                  if name not in networks and name in desired.networks}
        last = self.state.overlays
        if wanted != last or self._overlays_again:
            self.driver.set_overlay(wanted)
        self._overlay_key, self._overlays_again = key, False
        if wanted == last:
            return last
        last = last or {}
        changed = sorted(n for n in set(wanted) | set(last) if wanted.get(n) != last.get(n))
        if changed:
            LOG.info("overlay %s", "; ".join(
                f"{n}: {len(wanted[n].vteps)} remote host(s), {len(wanted[n].macs)} "
                "MAC(s)" if n in wanted else f"{n}: gone" for n in changed))
        return wanted

    # -- status ----------------------------------------------------------------
    def mac_tables(self) -> dict[str, dict[str, Any]]:
        """Each bridge's report with its learned MACs, asked for on demand
        (``ovsbr mac-table``, agent.control); the periodic status carries
        the counts only."""
        return {bridge: report.to_dict()
                for bridge, report in self.driver.introspect(macs=True).items()}

    def status(self) -> dict[str, Any]:
        """The status document of the last reconcile (see :func:`state.status`)."""
        return st.status(self.state, self.driver.name)

    def _publish(self, state: st.AgentState, changed: Iterable[str] | None = None,
                 periodic: bool = False) -> None:
        """Write the status if it moved; ``periodic`` (the introspection
        tick): not when only counters moved, until COUNTERS_INTERVAL."""
        status = st.status(state, self.driver.name, self._port_docs, changed)
        if status == self._last_status:
            return
        now = time.monotonic()
        if (periodic and self._last_status is not None and now < self._counters_due
                and st.without_counters(status) == st.without_counters(self._last_status)):
            return
        try:
            self.store.write_status(self.host, dict(status, updated=time.time()), changed)
            self._last_status = status
            self._counters_due = now + COUNTERS_INTERVAL
        except (OvsbrError, OSError) as e:
            LOG.error("cannot publish status: %s", e)


