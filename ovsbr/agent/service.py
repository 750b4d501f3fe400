"""The agent daemon: follow the store and the datapath, reconcile, report.

One reconcile thread does all datapath work, so driver calls never race each
other. Three things wake it: a store change, a device event from the driver,
and the periodic full resync (which also re-reads the datapath from scratch
and retries networks that failed to build).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from ovsbr.agent import reconciler
from ovsbr.agent.overlay import Overlay, overlays
from ovsbr.drivers.base import Device, Driver, NotReady, Observed
from ovsbr.exceptions import OvsbrError, PartialFailure
from ovsbr.model import Topology
from ovsbr.store.base import Store

LOG = logging.getLogger(__name__)
NETWORK_ACTIONS = ("unplug", "delete_network", "ensure_network")
PORT_ACTIONS = ("plug", "prepare")  # applied together in one driver batch
INTROSPECT_INTERVAL = 2.0  # seconds between refreshes of the driver's runtime view
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
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Agent:
    def __init__(self, store: Store, driver: Driver, host: str, resync_interval: float,
                 local_ip: str | None = None):
        self.store = store
        self.driver = driver
        self.host = host
        self.local_ip = local_ip
        self.resync_interval = resync_interval
        self.topology: Topology | None = None  # every host's desired state
        self.desired: Topology | None = None  # this host's share of it
        self._overlays: dict[str, Overlay] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._network_errors: dict[str, tuple[str, str]] = {}
        self._port_errors: dict[str, str] = {}
        self._not_ready: dict[str, NotReady] = {}
        self._store_error: str | None = None
        self._last_status: dict[str, Any] | None = None
        self._logged: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._observed = Observed()
        self._introspection: dict = {}
        self._cleanup = False
        self._keeping = False
        self._force_overlay = False
        self._last_plan: reconciler.Plan | None = None
        self.reconciles = 0

    # -- life cycle ------------------------------------------------------------
    def start(self) -> None:
        self.driver.start(self._on_device_event)
        # A shared store learns this host and its tunnel endpoint; the
        # registration lives as long as the agent renews it.
        self.store.register(self.host, {"local_ip": self.local_ip, "driver": self.driver.name})
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
                now = time.monotonic()
                resynced = now >= next_resync
                if resynced:
                    self._full_resync()
                    next_resync = now + self.resync_interval
                    woken = True
                if now >= next_introspect:
                    next_introspect = now + INTROSPECT_INTERVAL
                    self._introspection = self.driver.introspect()
                    if not woken and self._last_plan is not None:
                        self._publish(self.desired, self._last_plan)
                if woken and self.desired is not None:
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
        self._cleanup = True
        try:
            self.desired = Topology()
            plan = self.reconcile()
            self.driver.cleanup()
            return plan
        finally:
            self.driver.stop()

    def _on_device_event(self, _what: str) -> None:
        self._wake.set()

    def _watch_store(self) -> None:
        for item in self.store.watch(self._stop):
            if isinstance(item, Exception):
                msg = str(item)
                if msg != self._store_error:
                    LOG.error("%s; keeping the last good state (revision %s)",
                              msg, self.desired.revision if self.desired else "none")
                self._store_error = msg
                self._wake.set()  # publish the error in the status
                continue
            if self._store_error is not None:
                LOG.info("store readable again (revision %d)", item.revision)
            self._store_error = None
            self.topology = item
            self.desired = item.local_view(self.host)
            self._wake.set()

    def _full_resync(self) -> None:
        resync = getattr(self.driver, "resync", None)
        if resync is not None:
            try:
                resync()
            except Exception:
                LOG.exception("full resync of the datapath failed")
        self._network_errors.clear()
        self._logged.clear()
        self._force_overlay = True

    # -- reconcile -------------------------------------------------------------
    def reconcile(self) -> reconciler.Plan:
        desired = self.desired
        # Forget build failures of networks whose definition changed or left.
        for name, (fp, _) in list(self._network_errors.items()):
            net = desired.networks.get(name)
            if net is None or self.driver.fingerprint(net) != fp:
                del self._network_errors[name]
        self._port_errors.clear()

        plan = self._plan(desired)
        if any(a.kind in NETWORK_ACTIONS for a in plan.actions):
            for action in plan.actions:
                if action.kind in NETWORK_ACTIONS:
                    self._apply(action, desired)
            plan = self._plan(desired)
        plugs = [a for a in plan.actions if a.kind in PORT_ACTIONS]
        if plugs:
            try:
                with self.driver.batch():
                    for action in plugs:
                        self._apply(action, desired)
            except PartialFailure as e:
                for action in plugs:
                    if action.device in e.errors:
                        LOG.error("plug %s failed: %s", action.port, e.errors[action.device])
                        self._port_errors[action.port] = e.errors[action.device]
            except Exception as e:
                LOG.error("wiring %d port(s) failed: %s", len(plugs), e)
                for action in plugs:
                    self._port_errors[action.port] = str(e)
        bound = {name: dev for name, dev in plan.devices.items()
                 if name not in self._port_errors and name in plan.ports
                 and plan.ports[name].status == reconciler.BOUND}
        try:
            # Keeping an unknown datapath (store never written) means hands
            # off: no bindings, so the flows and filters found stay as they are.
            if not self._keeping:
                self._sync_overlays(desired)
                self._not_ready = self.driver.sync(desired, bound) or {}
        except Exception as e:
            LOG.error("datapath sync failed: %s", e)
        self.reconciles += 1
        self._last_plan = plan
        self._publish(desired, plan)
        return plan

    def _sync_overlays(self, desired: Topology) -> None:
        """Tunnels and remote MACs of overlay networks, from every host's ports."""
        topo = self.topology if self.topology is not None else desired
        wanted = {name: ov for name, ov in overlays(topo, self.host, self.local_ip).items()
                  if name not in self._network_errors and name in desired.networks}
        if wanted != self._overlays or self._force_overlay:
            self.driver.set_overlay(wanted)
            changed = sorted(n for n in set(wanted) | set(self._overlays)
                             if wanted.get(n) != self._overlays.get(n))
            if changed:
                LOG.info("overlay %s", "; ".join(
                    f"{n}: {len(wanted[n].vteps)} remote host(s), {len(wanted[n].macs)} "
                    "MAC(s)" if n in wanted else f"{n}: gone" for n in changed))
            self._overlays = wanted
            self._force_overlay = False

    def _plan(self, desired: Topology) -> reconciler.Plan:
        errors = {name: reason for name, (_, reason) in self._network_errors.items()}
        self._observed = self.driver.observe()
        # A store never written (revision 0) next to ovsbr networks on the
        # datapath is far more likely a wrong state_path than an order to
        # tear the host down: keep them, say so once. --cleanup removes them.
        keep = desired.revision == 0 and not self._cleanup and bool(self._observed.networks)
        self._keeping = keep
        if keep and "never-written" not in self._logged:
            self._logged.add("never-written")
            LOG.warning("the store has never been written but the datapath holds ovsbr "
                        "networks %s: keeping them (check state_path; run "
                        "'ovsbr-agent --cleanup' to remove them)",
                        ", ".join(sorted(self._observed.networks)))
        return reconciler.plan(desired, self._observed, self.driver.fingerprint, errors,
                               keep_existing=keep, prepare=self.driver.prepares)

    def _apply(self, action: reconciler.Action, desired: Topology) -> None:
        try:
            if action.kind == "ensure_network":
                self.driver.ensure_network(desired.networks[action.network])
                LOG.info("network %s ready", action.network)
            elif action.kind == "delete_network":
                self.driver.delete_network(action.network)
                LOG.info("network %s removed", action.network)
            elif action.kind == "unplug":
                self.driver.unplug(self._device(action.device))
                LOG.info("device %s unplugged from %s", action.device, action.network)
            elif action.kind == "plug":
                port = desired.ports[action.port]
                self.driver.plug(port, desired.networks[port.network],
                                 self._device(action.device))
                LOG.info("port %s: wiring %s into network %s", port.name, action.device,
                         port.network)
            elif action.kind == "prepare":
                port = desired.ports[action.port]
                self.driver.prepare(port, desired.networks[port.network])
                LOG.info("port %s: %s prepared in network %s for when it appears",
                         port.name, action.device, port.network)
        except Exception as e:  # one failed call must not stop the agent
            reason = str(e) or e.__class__.__name__
            key = f"{action}:{reason}"
            if key not in self._logged:
                self._logged.add(key)
                LOG.error("%s %s failed: %s", action.kind,
                          action.port or action.network, reason)
            if action.kind == "ensure_network":
                net = desired.networks[action.network]
                self._network_errors[action.network] = (self.driver.fingerprint(net), reason)
            elif action.kind in PORT_ACTIONS:
                self._port_errors[action.port] = reason

    def _device(self, name: str) -> Device:
        dev = self._observed.devices.get(name)
        return dev if dev is not None else Device(name)

    # -- status ----------------------------------------------------------------
    def status(self, desired: Topology, plan: reconciler.Plan) -> dict[str, Any]:
        ports = {}
        for name, st in plan.ports.items():
            if name in self._port_errors:
                st = reconciler.PortStatus(reconciler.ERROR, st.device, self._port_errors[name])
            elif st.status == reconciler.BOUND and name in self._not_ready:
                nr = self._not_ready[name]
                st = reconciler.PortStatus(reconciler.ERROR if nr.failed else reconciler.WAITING,
                                           st.device, nr.reason)
            ports[name] = st.to_dict()
        networks = {}
        for name in desired.networks:
            if name in self._network_errors:
                networks[name] = {"status": "error", "reason": self._network_errors[name][1]}
            else:
                networks[name] = {"status": "ok"}
                if name in self._overlays:
                    networks[name]["remote_hosts"] = sorted(self._overlays[name].vteps)
        status = {"driver": self.driver.name, "revision": desired.revision,
                  "ports": ports, "networks": networks}
        if self._store_error:
            status["store_error"] = self._store_error
        if self._introspection:
            status["datapath"] = self._introspection
        return status

    def _publish(self, desired: Topology, plan: reconciler.Plan) -> None:
        status = self.status(desired, plan)
        if status == self._last_status:
            return
        try:
            self.store.write_status(self.host, dict(status, updated=time.time()))
            self._last_status = status
        except (OvsbrError, OSError) as e:
            LOG.error("cannot publish status: %s", e)
