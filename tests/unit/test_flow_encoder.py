"""The flow-mod encoder writes exactly os-ken's bytes, for every flow the
pipeline emits: plain, spoof-checked and security-group ports, uplinks,
tunnels, conjunction members, and the learned-flow shapes."""

import pytest
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


class WireDatapath(FakeDatapath):
    """Gives xids as os-ken's Datapath does and keeps what is sent."""

    def __init__(self):
        self.xid = 0
        self.sent: list[bytes] = []

    def set_xid(self, msg):
        self.xid = (self.xid + 1) & self.ofproto.MAX_XID
        msg.set_xid(self.xid)

    def send(self, buf: bytes) -> None:
        self.sent.append(buf)


def test_bundles_on_the_wire_equal_os_kens_bundle_messages():
    """Open, one bundle-add per flow-mod (its inner xid the outer's), commit:
    byte for byte what os-ken's ONFBundle messages serialize to."""
    dp = WireDatapath()
    flows = _all_flows()[:5]
    enc = encoder.FlowEncoder(dp)
    ids = iter([40, 41])
    sent = messages.send(dp, messages.bundled([enc.add(7, f) for f in flows],
                                              lambda: next(ids), size=3), 1 << 20)
    assert sent == 5

    ref, parser, ofp = WireDatapath(), ofproto_v1_3_parser, ofproto_v1_3
    flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
    expected = []
    for bundle_id, part in ((40, flows[:3]), (41, flows[3:])):
        msgs = [parser.ONFBundleCtrlMsg(ref, bundle_id, ofp.ONF_BCT_OPEN_REQUEST, flags, [])]
        msgs += [parser.ONFBundleAddMsg(ref, bundle_id, flags, messages.flow_mod(7, ref, f), [])
                 for f in part]
        msgs.append(parser.ONFBundleCtrlMsg(ref, bundle_id, ofp.ONF_BCT_COMMIT_REQUEST,
                                            flags, []))
        expected += [_reference(ref, m) for m in msgs]
    assert b"".join(dp.sent) == b"".join(expected)


def test_a_lone_message_is_not_bundled_and_a_barrier_cannot_be():
    dp = WireDatapath()
    assert messages.bundled([b"x"], lambda: 1) == [b"x"]
    barrier = ofproto_v1_3_parser.OFPBarrierRequest(dp)
    with pytest.raises(TypeError, match="OFPBarrierRequest cannot go in a bundle"):
        messages.send(dp, [messages.Bundle(1, [barrier])], 1 << 20)
