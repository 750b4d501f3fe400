"""What a port's status says when the datapath cannot forward for it yet."""

import time

from ovsbr.agent import reconciler, state
from ovsbr.agent.reconciler import BOUND, WAITING, PortStatus
from ovsbr.agent.service import Agent
from ovsbr.drivers.base import (
    BridgeReport,
    Device,
    NetworkState,
    NotReady,
    Observed,
    Overlay,
)
from ovsbr.model import Topology
from tests.unit.fakes import NullDriver


def test_bound_only_once_the_datapath_forwards():
    not_ready = {
        "p1": NotReady("vnet1 is on br-int; waiting for ovs-vswitchd to give it an "
                       "OpenFlow port"),
        "p2": NotReady("ovs-vswitchd cannot open vnet2: No such device", failed=True),
        "p4": NotReady("stale: the port is not bound, this must not show")}
    failed = {"p3": "plug failed"}
    plan = reconciler.Plan(ports={
        "p0": reconciler.PortStatus(reconciler.BOUND, "vnet0"),
        "p1": reconciler.PortStatus(reconciler.BOUND, "vnet1"),
        "p2": reconciler.PortStatus(reconciler.BOUND, "vnet2"),
        "p3": reconciler.PortStatus(reconciler.BOUND, "vnet3"),
        "p4": reconciler.PortStatus(reconciler.WAITING, None, "no device named vnet4")})
    agent_state = state.AgentState(ports=reconciler.port_statuses(plan, failed, not_ready))
    ports = state.status(agent_state, "openvswitch")["ports"]
    assert ports["p0"] == {"status": "bound", "device": "vnet0"}
    assert ports["p1"]["status"] == "waiting" and "OpenFlow port" in ports["p1"]["reason"]
    assert ports["p2"] == {"status": "error", "device": "vnet2",
                           "reason": "ovs-vswitchd cannot open vnet2: No such device"}
    assert ports["p3"] == {"status": "error", "device": "vnet3", "reason": "plug failed"}
    assert ports["p4"] == {"status": "waiting", "reason": "no device named vnet4"}


def test_status_document_from_a_state_value():
    topo = Topology.from_dict({"revision": 7, "networks": [
        {"name": "ok", "type": "vxlan", "segmentation_id": 5},
        {"name": "bad", "type": "vlan", "physical_network": "p", "segmentation_id": 5}]})
    snap = state.DesiredSnapshot.of(topo, "h1").failed("store: garbage")
    agent_state = state.AgentState(
        desired=snap, networks={"bad": state.NetworkRecord("fp", "needs 8021q")},
        overlays={"ok": Overlay("vxlan", 5, frozenset({"198.51.100.2"}), ())},
        datapath={"br-int": BridgeReport(True, {"learned": 1}, mac_count=1)})
    doc = state.status(agent_state, "linuxbridge")
    assert doc["revision"] == 7 and doc["driver"] == "linuxbridge"
    assert doc["networks"] == {"ok": {"status": "ok", "remote_hosts": ["198.51.100.2"]},
                               "bad": {"status": "error", "reason": "needs 8021q"}}
    assert doc["store_error"] == "store: garbage"
    # The periodic status names no MAC: its size only (``ovsbr mac-table``
    # asks the agent for the table itself).
    assert doc["datapath"] == {"br-int": {"connected": True, "counters": {"learned": 1},
                                          "flows": {}, "mac_count": 1}}


def test_network_failures_last_until_the_definition_changes():
    topo = Topology.from_dict({"networks": [{"name": "n", "type": "local"}]})
    fp = {"n": "a"}
    records = state.network_outcomes(
        {}, [reconciler.Outcome(reconciler.EnsureNetwork("n"), "no")], topo,
        lambda net: fp[net.name])
    assert records == {"n": state.NetworkRecord("a", "no")}
    assert state.live_network_errors(records, topo, lambda net: fp[net.name]) == records
    fp["n"] = "b"  # the network was edited: try again
    assert state.live_network_errors(records, topo, lambda net: fp[net.name]) == {}
    assert state.live_network_errors(records, Topology(), lambda net: "a") == {}


def test_newly_bound_counts_only_the_ports_that_turned_bound():
    waiting, bound = PortStatus(WAITING), PortStatus(BOUND, "vnet0")
    before = {"a": waiting, "b": bound, "c": waiting}
    after = {"a": bound, "b": bound, "c": waiting, "d": bound}
    assert state.newly_bound(before, after) == 2  # a turned bound, d is new
    assert state.newly_bound(before, after, {"a", "gone"}) == 1  # a plan for a change


def test_status_reuses_the_document_of_an_unchanged_port():
    docs = state.PortDocs()
    bound = PortStatus(BOUND, "vnet0")
    first = state.status(state.AgentState(ports={"a": bound}), "x", docs)
    again = state.status(state.AgentState(ports={"a": bound, "b": PortStatus(WAITING)}), "x",
                         docs)
    assert again["ports"]["a"] is first["ports"]["a"]
    assert again["ports"]["b"] == {"status": "waiting"}
    # Told which ports changed, only those are looked at: "a" is not, so a
    # status object replaced behind that promise would not show.
    later = state.AgentState(ports={"a": PortStatus(WAITING), "c": bound})
    doc = state.status(later, "x", docs, changed={"b", "c"})
    assert doc["ports"] == {"a": {"status": "bound", "device": "vnet0"},
                            "c": {"status": "bound", "device": "vnet0"}}
    assert state.status(later, "x", docs)["ports"]["a"] == {"status": "waiting"}
    assert set(docs._parts) == {"a", "c"}  # a port gone is forgotten


def test_bridge_report_macs_are_what_asdict_gives():
    import dataclasses

    from ovsbr.drivers.base import LearnedMac

    macs = (LearnedMac("n1", "52:54:00:00:00:01", "vnet0", 1.5),
            LearnedMac("n2", "52:54:00:00:00:02", 7, 0.0))
    report = BridgeReport(True, {"packet_ins": 3}, macs)
    assert report.to_dict()["macs"] == [dataclasses.asdict(m) for m in macs]


class _Store:
    """Records which ports each publish was told may have changed."""

    def __init__(self):
        self.changed: list[frozenset[str] | None] = []

    def write_status(self, host, status, changed=None):
        self.changed.append(None if changed is None else frozenset(changed))


class _Driver(NullDriver):
    """Two devices on one network; ``not_ready`` and ``moved`` set per step."""

    name = "recording"

    def __init__(self):
        self.not_ready: dict[str, NotReady] = {}
        self.moved: frozenset[str] | None = None

    def set_overlay(self, overlays): pass

    def observe(self):
        return Observed(networks={"ov": NetworkState("ov", "fp")}, devices={
            d: Device(d, network="ov") for d in ("vnet0", "vnet1")})

    def observe_change(self):
        return self.observe(), self.moved

    def sync(self, desired, bound, changed=None):
        return dict(self.not_ready)


def test_a_port_waiting_for_the_same_reason_is_not_republished_per_event():
    """A tap that never gets an OpenFlow port must not cost every later
    event its status rewrite; a move of its status must still be published."""
    topo = Topology.from_dict({"revision": 1, "networks": [
        {"name": "ov", "type": "vxlan", "segmentation_id": 100}], "ports": [
        {"name": "p0", "network": "ov", "device": "vnet0", "host": "h1"},
        {"name": "p1", "network": "ov", "device": "vnet1", "host": "h1"}]})
    store, driver = _Store(), _Driver()
    agent = Agent(store, driver, "h1", resync_interval=300)
    agent.snapshot = state.DesiredSnapshot.of(topo, "h1", time.monotonic())
    driver.not_ready = {p: NotReady("no OpenFlow port yet") for p in ("p0", "p1")}
    agent.reconcile()  # the first one publishes everything
    assert store.changed[-1] is None
    waiting = agent.state.ports["p1"]
    assert waiting.status is WAITING

    # An event about the other port, which now forwards: its publish
    # names it alone.
    driver.moved, driver.not_ready = frozenset({"vnet0"}), {"p1": driver.not_ready["p1"]}
    agent.reconcile()
    assert store.changed[-1] == {"p0"}
    assert agent.state.ports["p1"] is waiting  # kept by identity for PortDocs

    driver.moved = frozenset()  # no event: only the driver's word moves p1
    driver.not_ready = {"p1": NotReady("cannot open vnet1", failed=True)}
    agent.reconcile()
    assert store.changed[-1] == {"p1"}
    assert agent.state.ports["p1"].status is reconciler.ERROR

    driver.not_ready = {}  # it forwards now
    agent.reconcile()
    assert store.changed[-1] == {"p1"}
    assert agent.state.ports["p1"] == PortStatus(BOUND, "vnet1")
    assert len(store.changed) == 4


def test_counters_alone_are_published_at_most_every_counters_interval(monkeypatch):
    """An idle host put its status head every 2 s because its datapath
    counters moved: 500 etcd writes a second from 1,000 hosts. Counters
    alone now wait COUNTERS_INTERVAL; anything else goes out at once."""
    from ovsbr.agent import service

    clock = [1000.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: clock[0])
    store = _Store()
    agent = Agent(store, _Driver(), "h1", resync_interval=300)

    def tick(connected=True, packet_ins=0, macs=0, flows=None):
        report = BridgeReport(connected, {"packet_ins": packet_ins}, flows=flows or {0: 3},
                              mac_count=macs)
        agent._publish(state.AgentState(datapath={"br-int": report}), (), periodic=True)
        return len(store.changed)

    assert tick() == 1  # the first status always goes
    assert tick(packet_ins=5, macs=2) == 1  # counters alone: not yet
    clock[0] += service.COUNTERS_INTERVAL - 1
    assert tick(packet_ins=9, macs=3) == 1
    assert tick(connected=False, packet_ins=9, macs=3) == 2  # news: at once
    assert tick(connected=False, packet_ins=12, macs=3, flows={0: 4}) == 3  # flows: news
    clock[0] += service.COUNTERS_INTERVAL
    assert tick(connected=False, packet_ins=15, macs=3, flows={0: 4}) == 4  # due now
    # A reconcile's publish is never held back.
    agent._publish(state.AgentState(datapath={"br-int": BridgeReport(
        False, {"packet_ins": 16}, flows={0: 4}, mac_count=3)}), ())
    assert len(store.changed) == 5
