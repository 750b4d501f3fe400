"""The store watcher and the reconcile loop never mix two revisions.

Regression test: the watcher used to assign the whole topology and this
host's share of it in two steps, so a reconcile could plan ports from one
revision and program overlays from the next. Here the store publishes
revision 2 exactly while a reconcile of revision 1 is between planning and
programming overlays; what the driver is told must still be one revision.
"""

import logging
import threading
import time

from ovsbr.agent.service import Agent
from ovsbr.drivers.base import NetworkState, Observed
from ovsbr.model import Topology
from tests.unit.fakes import NullDriver


def revision(n: int) -> Topology:
    """An overlay network with a port here and one on h2, whose tunnel
    endpoint names the revision."""
    topo = Topology.from_dict({"revision": n, "networks": [
        {"name": "ov", "type": "vxlan", "segmentation_id": 100}], "ports": [
        {"name": "here", "network": "ov", "device": "vnet0", "host": "h1"},
        {"name": f"there{n}", "network": "ov", "device": "vnet0", "host": "h2"}]})
    topo.hosts = {"h2": {"local_ip": f"198.51.100.{n}"}}
    return topo


class Store:
    def __init__(self):
        self.release = threading.Event()

    def register(self, host, info):
        pass

    def watch(self, stop, host=None):
        yield revision(1)
        self.release.wait(5)
        yield revision(2)
        stop.wait(5)

    def write_status(self, host, status, changed=None):
        pass

    def close(self):
        pass


class Driver_(NullDriver):
    """Records what one reconcile hands the datapath."""

    name = "recording"

    def __init__(self, store: Store):
        self.store = store
        self.agent: Agent | None = None
        self.seen: list[tuple[str, object]] = []

    def observe(self):
        if not self.store.release.is_set():
            # The store moves on while this reconcile is under way.
            self.store.release.set()
            _until(lambda: self.agent.desired.revision == 2)
        return Observed(networks={"ov": NetworkState("ov", "fp")})

    def set_overlay(self, overlays):
        self.seen.append(("overlay", sorted(overlays["ov"].vteps)))

    def sync(self, desired, bound, changed=None):
        self.seen.append(("sync", desired.revision))
        return {}


def _started(store: Store) -> tuple[Agent, Driver_]:
    """An agent over the store and a recording driver, its loop started."""
    driver = Driver_(store)
    agent = Agent(store, driver, "h1", resync_interval=300)
    driver.agent = agent
    agent.start()
    return agent, driver


def _until(cond, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_one_reconcile_sees_one_revision():
    store = Store()
    agent, driver = _started(store)
    try:
        _until(lambda: agent.desired is not None)
        agent.reconcile()
        assert agent.desired.revision == 2, "the store did not move on mid-reconcile"
        assert driver.seen == [("overlay", ["198.51.100.1"]), ("sync", 1)]
        agent.reconcile()  # and the next one takes revision 2 whole
        assert driver.seen[2:] == [("overlay", ["198.51.100.2"]), ("sync", 2)]
    finally:
        agent.stop()
        store.release.set()


def test_a_resync_programs_overlays_again_and_logs_only_changes(caplog):
    store = Store()
    store.release.set()  # both revisions at once: no race here
    agent, driver = _started(store)
    try:
        _until(lambda: agent.desired is not None and agent.desired.revision == 2)
        with caplog.at_level(logging.INFO, logger="ovsbr.agent.service"):
            agent.reconcile()
        assert [r for r in caplog.records if r.getMessage().startswith("overlay ")]
        driver.seen.clear()
        caplog.clear()
        agent._full_resync()
        with caplog.at_level(logging.INFO, logger="ovsbr.agent.service"):
            agent.reconcile()
        assert ("overlay", ["198.51.100.2"]) in driver.seen  # programmed whole again
        assert not [r for r in caplog.records if r.getMessage().startswith("overlay ")]
    finally:
        agent.stop()
