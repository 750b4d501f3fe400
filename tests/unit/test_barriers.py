"""The app's barrier bookkeeping: a port new on a bridge is unapplied until
a barrier sent after its flows is answered, and a barrier left unanswered
is asked again (the datapath is a stand-in that records what is sent)."""

import types

from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from ovsbr.openflow import l2_learning
from ovsbr.openflow import pipeline as pl


class RecordingDatapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser

    def __init__(self):
        self.id, self.xid, self.sent = 1, 0, []

    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)

    def send(self, buf: bytes) -> None:
        self.sent.append(buf)


def _barriers(dp) -> list[int]:
    """The xids of the barrier requests sent."""
    out = []
    for buf in dp.sent:
        while buf:
            length = int.from_bytes(buf[2:4], "big")
            if buf[1] == ofproto_v1_3.OFPT_BARRIER_REQUEST:
                out.append(int.from_bytes(buf[4:8], "big"))
            buf = buf[length:]
    return out


def _app(monkeypatch):
    app = l2_learning.L2LearningApp()
    dp = RecordingDatapath()
    br = app.bridge(dp.id, "br-test")
    br.datapath, br.synced, br.encoder = dp, True, l2_learning.FlowEncoder(dp)
    woken = []
    app.on_applied = lambda: woken.append(True)
    return app, br, dp, woken


def _reply(app, dp, xid):
    app._barrier_reply(types.SimpleNamespace(msg=types.SimpleNamespace(datapath=dp, xid=xid)))


def test_a_new_port_is_unapplied_until_its_barrier_is_answered(monkeypatch):
    app, br, dp, woken = _app(monkeypatch)
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1)], [])
    assert app.unapplied(dp.id) == [5]
    (xid,) = _barriers(dp)
    _reply(app, dp, xid + 1000)  # someone else's barrier: nothing moves
    assert app.unapplied(dp.id) == [5] and not woken
    _reply(app, dp, xid)
    assert app.unapplied(dp.id) == [] and woken == [True]
    # One barrier at a time: a port pushed while one is unanswered waits
    # for the next, which that reply sends.
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1), pl.PortBinding(6, 1)], [])
    (xid2,) = _barriers(dp)[1:]
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(p, 1) for p in (5, 6, 7)], [])
    assert len(_barriers(dp)) == 2 and sorted(app.unapplied(dp.id)) == [6, 7]
    _reply(app, dp, xid2)
    assert app.unapplied(dp.id) == [7]
    _reply(app, dp, _barriers(dp)[2])
    assert app.unapplied(dp.id) == []
    # A port already there is not held back when its binding changes.
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(p, 2) for p in (5, 6, 7)], [])
    assert app.unapplied(dp.id) == []


def test_an_unanswered_barrier_is_asked_again(monkeypatch):
    app, br, dp, woken = _app(monkeypatch)
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1)], [])
    assert len(_barriers(dp)) == 1
    assert app.unapplied(dp.id) == [5]
    assert len(_barriers(dp)) == 1  # patience: not yet
    br.barrier_at -= l2_learning.BARRIER_PATIENCE + 1
    app.introspect()
    first, again = _barriers(dp)
    _reply(app, dp, again)
    assert app.unapplied(dp.id) == [] and woken


def test_ports_bound_before_the_take_over_are_not_held(monkeypatch):
    app, br, dp, woken = _app(monkeypatch)
    br.synced = False  # the agent's start: the switch's flows forward them
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1)], [])
    assert app.unapplied(dp.id) == []


def test_on_a_bridge_without_flows_ports_wait_for_the_take_over(monkeypatch):
    """A bridge the agent created has no flows: its ports are held until
    the take-over's barrier is answered; after a take-over, so are ports new
    while the switch is away (it keeps the flows it had, not theirs)."""
    app, br, dp, woken = _app(monkeypatch)
    br.datapath, br.synced = None, False
    app.new_bridge(dp.id, "br-test")
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1)], [])
    assert app.unapplied(dp.id) == [5] and not _barriers(dp)
    br.datapath = dp  # the switch connects; its flow stats said nothing is there
    app._take_over(br)
    assert app.unapplied(dp.id) == [5]
    _reply(app, dp, _barriers(dp)[-1])
    assert app.unapplied(dp.id) == [] and woken
    br.datapath, br.synced = None, False  # gone again
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1), pl.PortBinding(6, 1)], [])
    assert app.unapplied(dp.id) == [6]
