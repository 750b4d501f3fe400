"""The flow-mod encoder writes exactly os-ken's bytes, for every flow the
pipeline emits: plain, spoof-checked and security-group ports, uplinks,
tunnels, conjunction members, and the learned-flow shapes."""

from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from ovsbr.model import Topology
from ovsbr.openflow import encoder, messages
from ovsbr.openflow import pipeline as pl
from ovsbr.secgroups.policy import port_policy
from tests.unit.test_secgroup_flows import _topo


class FakeDatapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser
    xid = 0

    def set_xid(self, msg):
        msg.set_xid(0)


def _reference(dp, msg) -> bytes:
    dp.set_xid(msg)
    msg.serialize()
    return bytes(msg.buf)


def _all_flows() -> list[pl.Flow]:
    topo = _topo(members=4)
    ports = [pl.PortBinding(i, 1, topo.ports[f"p{i}"].mac,
                            port_policy(topo.ports[f"p{i}"], topo)) for i in (1, 2, 3, 4)]
    plain = Topology.from_dict({
        "networks": [{"name": "m", "type": "local"}],
        "ports": [{"name": "q", "network": "m", "device": "tq", "mac": "52:54:00:00:01:01",
                   "ips": ["198.51.100.7", "2001:db8:1::7"]},
                  {"name": "r", "network": "m", "device": "tr", "port_security": False}]})
    ports += [pl.PortBinding(10, 2, "52:54:00:00:01:01", port_policy(plain.ports["q"], plain)),
              pl.PortBinding(11, 2, None, None)]
    uplinks = [pl.UplinkBinding(20, 2, 100), pl.UplinkBinding(21, 1, None)]
    tunnels = [pl.TunnelBinding(30, 2, 1001, ("52:54:00:00:02:02",))]
    flows, _ = pl.static_flows(ports, uplinks, tunnels)
    return flows + [pl.learned_src(2, "52:54:00:00:03:03", 10, 300),
                    pl.learned_dst(2, "52:54:00:00:03:03", 20, 100, 600)]


def test_bytes_equal_os_kens_for_every_pipeline_flow():
    dp = FakeDatapath()
    enc = encoder.FlowEncoder(dp)
    flows = _all_flows()
    kinds = {a[0] for f in flows for a in f.actions}
    # Every action kind flows use, Nicira's included (resubmit is only in
    # group buckets, which os-ken encodes as before).
    assert kinds == {"ct", "ct_clear", "conjunction", "output_reg", "group", "push_vlan",
                     "pop_vlan", "set_field", "output", "controller"}, kinds
    for flow in flows:
        assert enc.add(7, flow) == _reference(dp, messages.flow_mod(7, dp, flow)), flow
        assert enc.delete_strict(flow) == _reference(dp, messages.delete_strict(dp, flow)), flow


def test_pieces_are_shared_and_trimmed_past_the_bound(monkeypatch):
    dp = FakeDatapath()
    enc = encoder.FlowEncoder(dp)
    flows = _all_flows()
    for flow in flows:
        enc.add(1, flow)
    fields = sum(len(f.match) for f in flows)
    assert len(enc._fields) < fields / 2  # a field is encoded once, used many times
    monkeypatch.setattr(encoder, "MIN_LIMIT", 0)
    enc._limit = 0
    enc.trim()
    flow = max(flows, key=lambda f: len(f.match))
    enc.add(1, flow)
    enc._limit = 0
    enc.trim()
    assert len(enc._fields) == len(flow.match) > 3
    assert enc.add(1, flow) == _reference(dp, messages.flow_mod(1, dp, flow))
