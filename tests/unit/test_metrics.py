"""Metrics read from state values, into a private registry; endpoints on a
real loopback socket."""

import json
import socket
import threading

import pytest

from ovsbr import metrics
from ovsbr.agent import reconciler, state
from ovsbr.drivers.base import BridgeReport
from ovsbr.exceptions import ConfigError
from ovsbr.model import Topology
from ovsbr.testing import scrape
from ovsbr.testing.scrape import get


class FakeDriver:
    name = "openvswitch"

    def __init__(self):
        self.problems: list[str] = []

    def health(self):
        return list(self.problems)


class FakeStore:
    def stats(self):
        return {"requests": 10, "request_seconds": 0.5, "request_errors": 1,
                "watch_restarts": 2, "lease_renewals": 30, "lease_failures": 0}


class FakeAgent:
    def __init__(self):
        self.driver = FakeDriver()
        self.store = FakeStore()
        self.alive_at = 100.0
        self.reconciles = 0
        topo = Topology.from_dict({"networks": [
            {"name": "n1", "type": "local"}, {"name": "n2", "type": "local"}]})
        self.state = state.AgentState(
            desired=state.DesiredSnapshot.of(topo, "h"),
            networks={"n2": state.NetworkRecord("fp", "boom")},
            ports={"p1": reconciler.PortStatus(reconciler.BOUND, "v1"),
                   "p2": reconciler.PortStatus(reconciler.BOUND, "v2"),
                   "p3": reconciler.PortStatus(reconciler.WAITING, None, "no device")},
            datapath={"br-int": BridgeReport(True, {"packet_ins": 7, "learned": 3, "moved": 1},
                                             None, {0: 5, 3: 2}, mac_count=1)})

    def readiness(self):
        return state.readiness(self.state, self.reconciles, self.driver.health())


def samples(m: metrics.Metrics) -> dict:
    return scrape.samples(m.exposition().decode())


def test_state_is_read_at_scrape_time():
    agent = FakeAgent()
    m = metrics.Metrics(agent, clock=lambda: 103.0, wall=lambda: 1e9)
    got = samples(m)
    assert got[("ovsbr_ports", (("driver", "openvswitch"), ("status", "bound")))] == 2
    assert got[("ovsbr_ports", (("driver", "openvswitch"), ("status", "waiting")))] == 1
    assert got[("ovsbr_ports", (("driver", "openvswitch"), ("status", "error")))] == 0
    assert got[("ovsbr_networks", (("status", "error"),))] == 1
    assert got[("ovsbr_networks", (("status", "ok"),))] == 1
    assert got[("ovsbr_openflow_packet_ins_total", (("bridge", "br-int"),))] == 7
    assert got[("ovsbr_mac_moves_total", (("bridge", "br-int"),))] == 1
    assert got[("ovsbr_learned_macs", (("bridge", "br-int"),))] == 1
    assert got[("ovsbr_loop_idle_seconds", ())] == 3.0
    assert got[("ovsbr_store_request_duration_seconds_count", ())] == 10
    assert got[("ovsbr_store_request_duration_seconds_sum", ())] == 0.5
    assert got[("ovsbr_store_watch_restarts_total", ())] == 2
    assert got[("ovsbr_host_lease_renewals_total", ())] == 30
    assert got[("ovsbr_ready", ())] == 0  # no reconcile yet
    assert ("ovsbr_last_reconcile_success_timestamp_seconds", ()) not in got
    assert any(name == "ovsbr_build_info" for name, _ in got)
    # No per-port or per-MAC label anywhere.
    assert not any(k in ("port", "mac", "device") for _, labels in got for k, _ in labels)
    agent.state = state.AgentState()  # the next state value is what the next scrape sees
    assert samples(m)[("ovsbr_ports", (("driver", "openvswitch"), ("status", "bound")))] == 0


def test_reconcile_hook_feeds_histogram_and_counters():
    m = metrics.Metrics(FakeAgent(), wall=lambda: 1234.0)
    m.on_reconciled(state.ReconcileReport(0.004, {"plug": 3, "ensure_network": 1}, 0, True,
                                          0.02))
    m.on_reconciled(state.ReconcileReport(0.2, {"plug": 1}, 1, False, None, 3, 0.01))
    got = samples(m)
    assert got[("ovsbr_reconciles_total", (("result", "ok"),))] == 1
    assert got[("ovsbr_reconciles_total", (("result", "failed"),))] == 1
    assert got[("ovsbr_reconcile_actions_total", (("kind", "plug"),))] == 4
    assert got[("ovsbr_full_resyncs_total", ())] == 1
    assert got[("ovsbr_reconcile_duration_seconds_count", ())] == 2
    assert got[("ovsbr_reconcile_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("ovsbr_last_reconcile_success_timestamp_seconds", ())] == 1234.0
    assert got[("ovsbr_store_change_apply_seconds_count", ())] == 1  # one new revision
    assert got[("ovsbr_port_bind_seconds_count", ())] == 3  # one per newly bound port
    assert got[("ovsbr_port_bind_seconds_bucket", (("le", "0.01"),))] == 3


def test_readiness_and_liveness_reasons():
    agent = FakeAgent()
    assert agent.readiness() == ["no reconcile yet (waiting for the store's first read)"]
    agent.reconciles = 1
    assert agent.readiness() == []
    agent.driver.problems = ["OVSDB at unix:/x not connected"]
    agent.state = state.AgentState(desired=agent.state.desired.failed("etcd: down"))
    assert agent.readiness() == ["store: etcd: down", "OVSDB at unix:/x not connected"]
    assert metrics.liveness(100.0, 130.0) == []
    assert "61 s" in metrics.liveness(100.0, 161.0)[0]


def test_endpoints_on_loopback_and_a_taken_port_is_refused():
    agent = FakeAgent()
    m = metrics.Metrics(agent)
    port = m.serve("127.0.0.1", 0)
    try:
        code, body = get(f"http://127.0.0.1:{port}/readyz")
        assert code == 503 and json.loads(body)["reasons"][0].startswith("no reconcile")
        agent.reconciles = 1
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        agent.alive_at = -1e6
        code, body = get(f"http://127.0.0.1:{port}/healthz")
        assert code == 503 and "not turned" in body
        code, body = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and "ovsbr_ports{" in body
        assert get(f"http://127.0.0.1:{port}/nope")[0] == 404
        other = metrics.Metrics(agent)
        with pytest.raises(ConfigError) as e:
            other.serve("127.0.0.1", port)
        assert e.value.option == "[metrics] bind_port" and "in use" in str(e.value)
    finally:
        m.stop()
    assert not [t for t in threading.enumerate() if t.name == "ovsbr-metrics"], "thread leak"
    with socket.socket() as s:  # stopped: nothing listens there any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
