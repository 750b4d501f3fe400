"""Learned flows leave the app at most once per LEARN_HOLD per bridge: a lone
new MAC at once, those behind it in one bundle when the hold is over, and
before anything else sent to that switch (the datapath is a stand-in that
records what is sent)."""

import types

from os_ken.ofproto import ofproto_v1_3

from ovsbr.openflow import l2_learning
from ovsbr.openflow import pipeline as pl
from tests.unit.test_barriers import _app

ADD_MESSAGE = ofproto_v1_3.ONF_ET_BUNDLE_ADD_MESSAGE
CONTROL = ofproto_v1_3.ONF_ET_BUNDLE_CONTROL


def _wire(dp) -> list[str]:
    """What was sent, one word per message: "flow-mod" (with "+" for an
    add, "-" for a delete), "open", "add+" / "add-" (a bundled flow-mod),
    "commit", "barrier"."""
    out = []
    for buf in dp.sent:
        while buf:
            kind, length = buf[1], int.from_bytes(buf[2:4], "big")
            if kind == ofproto_v1_3.OFPT_FLOW_MOD:
                out.append("flow-mod" + _sign(buf))
            elif kind == ofproto_v1_3.OFPT_BARRIER_REQUEST:
                out.append("barrier")
            elif kind == ofproto_v1_3.OFPT_EXPERIMENTER:
                exp_type = int.from_bytes(buf[12:16], "big")
                if exp_type == ADD_MESSAGE:
                    out.append("add" + _sign(buf[24:]))
                elif exp_type == CONTROL:
                    ctrl = int.from_bytes(buf[20:22], "big")
                    out.append({ofproto_v1_3.ONF_BCT_OPEN_REQUEST: "open",
                                ofproto_v1_3.ONF_BCT_COMMIT_REQUEST: "commit"}[ctrl])
            buf = buf[length:]
    return out


def _sign(flow_mod: bytes) -> str:
    command = flow_mod[25]  # after header (8), cookie/mask (16), table id
    return "+" if command == ofproto_v1_3.OFPFC_ADD else "-"


def _packet_in(app, dp, mac: int, port: int, lid: int = 1) -> None:
    src = bytes([0x52, 0x54, 0, 0, mac >> 8 & 255, mac & 255])
    frame = b"\xff" * 6 + src + b"\x88\xb5" + bytes(46)
    msg = types.SimpleNamespace(datapath=dp, data=frame,
                                match={"in_port": port, "metadata": lid})
    app._packet_in(types.SimpleNamespace(msg=msg))


def _bridge(monkeypatch):
    app, br, dp, _ = _app(monkeypatch)
    br.ports = {5: pl.PortBinding(5, 1), 6: pl.PortBinding(6, 1)}
    return app, br, dp


def test_a_lone_new_mac_is_sent_at_once(monkeypatch):
    app, br, dp = _bridge(monkeypatch)
    _packet_in(app, dp, 1, 5)
    assert _wire(dp) == ["flow-mod+", "flow-mod+"]  # source and destination
    assert br.learned == [] and app._flush_held() == 0


def test_macs_behind_it_are_held_then_sent_as_one_bundle(monkeypatch):
    app, br, dp = _bridge(monkeypatch)
    _packet_in(app, dp, 1, 5)
    for mac in range(2, 12):
        _packet_in(app, dp, mac, 5)
    _packet_in(app, dp, 1, 5)  # known: nothing more to send
    assert len(_wire(dp)) == 2, "held while the hold lasts"
    assert 0 < app._flush_held() <= l2_learning.LEARN_HOLD
    assert len(_wire(dp)) == 2
    br.learned_sent -= l2_learning.LEARN_HOLD  # the hold is over
    assert app._flush_held() == 0
    assert _wire(dp)[2:] == ["open"] + ["add+"] * 20 + ["commit"]
    assert br.flow_mods == 22


def test_a_held_move_deletes_the_old_source_first(monkeypatch):
    app, br, dp = _bridge(monkeypatch)
    _packet_in(app, dp, 1, 5)
    _packet_in(app, dp, 1, 6)  # moved within the hold
    br.learned_sent -= l2_learning.LEARN_HOLD
    app._flush_held()
    assert _wire(dp)[2:] == ["flow-mod-", "flow-mod+", "flow-mod+"]  # one MAC: as it is


def test_held_flows_go_before_anything_else_sent_to_the_switch(monkeypatch):
    app, br, dp = _bridge(monkeypatch)
    _packet_in(app, dp, 1, 5)
    _packet_in(app, dp, 2, 5)
    _packet_in(app, dp, 3, 6)
    app.set_bindings(dp.id, "br-test", [pl.PortBinding(5, 1), pl.PortBinding(7, 1)], [])
    sent = _wire(dp)
    assert sent[2:8] == ["open", "add+", "add+", "add+", "add+", "commit"]
    assert sent[8:] and "barrier" in sent[8:]  # then port 7's flows, port 6's learned out
    assert br.learned == []


def test_a_full_bundle_goes_without_waiting_for_the_hold(monkeypatch):
    app, br, dp = _bridge(monkeypatch)
    monkeypatch.setattr(l2_learning.messages, "BUNDLE_SIZE", 6)
    _packet_in(app, dp, 1, 5)
    for mac in range(2, 5):
        _packet_in(app, dp, mac, 5)
    assert _wire(dp)[2:] == ["open"] + ["add+"] * 6 + ["commit"]


def test_a_disconnect_drops_what_was_held(monkeypatch):
    app, br, dp = _bridge(monkeypatch)
    _packet_in(app, dp, 1, 5)
    _packet_in(app, dp, 2, 5)
    app._disconnected(types.SimpleNamespace(datapath=dp))
    assert br.learned == [] and app._flush_held() == 0
    assert len(_wire(dp)) == 2
