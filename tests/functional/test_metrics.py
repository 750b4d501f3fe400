"""The agent's /metrics, /healthz and /readyz on a real agent: the values
move with what happened on the datapath."""

from __future__ import annotations

import json

from ovsbr.testing import scrape
from ovsbr.testing.netns import wait_for
from ovsbr.testing.scrape import get
from tests.functional.conftest import free_port


class Scraper:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def metrics(self) -> dict:
        """{(name, label values in label-name order): value}."""
        code, text = get(self.base + "/metrics")
        assert code == 200
        return {(name, tuple(v for _, v in labels)): value
                for (name, labels), value in scrape.samples(text).items()}

    def ready(self) -> tuple[int, dict]:
        code, body = get(self.base + "/readyz")
        return code, json.loads(body)


def test_metrics_follow_the_datapath(datapath):
    port = free_port()
    agent, vm1, vm2 = datapath.two_vms(metrics={"enabled": True, "bind_port": port})
    s = Scraper(port)
    driver = datapath.name
    try:
        wait_for(lambda: s.ready()[0] == 200, 15, what="ready")
    except TimeoutError:
        raise AssertionError(f"not ready: {s.ready()[1]}") from None
    m = s.metrics()
    assert m[("ovsbr_ports", (driver, "bound"))] == 2
    assert m[("ovsbr_ready", ())] == 1
    assert m[("ovsbr_reconciles_total", ("ok",))] >= 1
    assert m[("ovsbr_reconcile_actions_total", ("plug",))] >= 2
    assert m[("ovsbr_last_reconcile_success_timestamp_seconds", ())] > 0
    changes = m[("ovsbr_store_change_apply_seconds_count", ())]
    assert changes >= 1
    assert get(s.base + "/healthz")[0] == 200

    # A port whose VM has not started yet is counted as waiting.
    agent.cli("port", "create", "p3", "--network", "n1", "--device",
              f"{datapath.env.prefix}late")
    wait_for(lambda: s.metrics()[("ovsbr_ports", (driver, "waiting"))] == 1, 15,
             what="p3 counted waiting")
    assert s.metrics()[("ovsbr_store_change_apply_seconds_count", ())] > changes
    # Its VM starts: the device event that woke the agent to the port bound.
    datapath.vm("late", 3)
    wait_for(lambda: s.metrics()[("ovsbr_ports", (driver, "bound"))] == 3, 15,
             what="p3 bound once its tap appeared")
    assert s.metrics()[("ovsbr_port_bind_seconds_count", ())] >= 1
    if driver != "openvswitch":
        return

    # A burst of new source MACs: each one a packet-in, counted per bridge.
    bridge = datapath.br_int
    key = ("ovsbr_openflow_packet_ins_total", (bridge,))
    before = wait_for(lambda: (m := s.metrics()).get(key) is not None and m, 10,
                      what="the bridge's counters in the scrape")
    vm1.scapy("sendp([Ether(src=RandMAC('52:54:02'), dst='ff:ff:ff:ff:ff:ff')/"
              "ARP(psrc='192.0.2.98') for _ in range(100)], iface='eth0')")

    def grew():
        return s.metrics()[key] - before[key] >= 100
    wait_for(grew, 15, what="100 packet-ins counted (the app's counters reach the "
                            "scrape every introspection interval)")
    after = s.metrics()
    learned = ("ovsbr_macs_learned_total", (bridge,))
    assert after[learned] - before[learned] >= 100
    mods = ("ovsbr_openflow_flow_mods_total", (bridge,))
    assert after[mods] - before[mods] >= 200, "two flows per learned MAC"
    assert sum(v for (name, labels), v in after.items()
               if name == "ovsbr_openflow_flows" and labels[0] == bridge) > 0
    assert after[("ovsbr_learned_macs", (bridge,))] >= 100

    # Readiness follows the OVSDB connection: 503 with the reason while
    # ovsdb-server is down, 200 again when it is back.
    datapath.ovs.stop_ovsdb()
    try:
        wait_for(lambda: s.ready()[0] == 503, 20, what="not ready without OVSDB")
        code, doc = s.ready()
        assert any("OVSDB" in r for r in doc["reasons"]), doc
        assert s.metrics()[("ovsbr_ready", ())] == 0
        assert get(s.base + "/healthz")[0] == 200, "the loop itself still turns"
    finally:
        datapath.ovs.start_ovsdb()
    wait_for(lambda: s.ready()[0] == 200, 30, what="ready again with OVSDB back")
    assert vm1.can_ping(vm2.ip)
