"""Incremental bridge state: any sequence of binding sets ends where a full
build (pipeline.static_state) does, and each delta takes the switch there."""

import collections
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.model import Topology
from ovsbr.openflow import pipeline as pl
from ovsbr.openflow.bridge_flows import BridgeFlows
from ovsbr.secgroups.policy import port_policy
from tests.unit.test_secgroup_flows import MAC, WEB_RULES, _topo

# Two versions of the topology: remote-group membership differs between them.
_SMALL, _BIG = _topo(members=2), _topo(members=4)
# Ports in two more group sets (profiles) beside the web ports above.
_MIXED = Topology.from_dict({
    "networks": [{"name": "n", "type": "local"}],
    "security_groups": [{"name": "web", "rules": WEB_RULES},
                        {"name": "db", "rules": [{"direction": "ingress", "protocol": "tcp",
                                                  "port_range_min": 5432,
                                                  "remote_group": "web"}]}],
    "ports": [{"name": f"p{i}", "network": "n", "device": f"t{i}", "mac": MAC.format(i),
               "ips": [f"192.0.2.{i + 10}"], "security_groups": groups}
              for i, groups in ((1, ["web"]), (2, ["web"]), (3, ["web"]), (4, ["web"]),
                                (5, ["db"]), (6, ["db", "web"]))]})


def _port(topo, i: int, ofport: int, lid: int) -> pl.PortBinding:
    p = topo.ports[f"p{i}"]
    return pl.PortBinding(ofport, lid, p.mac, port_policy(p, topo))


UNIVERSE = (
    [_port(_SMALL, i, i, 1) for i in (1, 2)]
    + [_port(_BIG, i, i, 1) for i in (1, 2, 3, 4)]
    + [_port(_BIG, 3, 3, 2)]  # the same ofport on another network
    + [_port(_MIXED, 5, 5, 1), _port(_MIXED, 6, 6, 2), _port(_MIXED, 6, 7, 1)]
    + [pl.PortBinding(10, 2, "52:54:00:00:01:01"), pl.PortBinding(11, 2, None),
       pl.PortBinding(12, 3, None)]
    + [pl.UplinkBinding(20, 2, 100), pl.UplinkBinding(21, 1, None),
       pl.UplinkBinding(20, 3, 101)]
    + [pl.TunnelBinding(30, 2, 1001, ("52:54:00:00:02:02",)), pl.TunnelBinding(30, 3, 1002),
       pl.TunnelBinding(31, 2, 1001)])


def _split(chosen):
    ports = {b.ofport: b for b in chosen if isinstance(b, pl.PortBinding)}
    uplinks = {(b.ofport, b.lid): b for b in chosen if isinstance(b, pl.UplinkBinding)}
    tunnels = [b for b in chosen if isinstance(b, pl.TunnelBinding)]
    return list(ports.values()), list(uplinks.values()), tunnels


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(UNIVERSE), unique=True), min_size=1, max_size=6),
       st.sampled_from([2, pl.FLOOD_CHUNK]))
def test_any_sequence_ends_where_a_full_build_does(steps, chunk):
    with mock.patch.object(pl, "FLOOD_CHUNK", chunk):  # 2: networks flood in chunks
        _sequence(steps)


def _sequence(steps):
    state = BridgeFlows()
    switch: dict = {}
    for chosen in steps:
        ports, uplinks, tunnels = _split(chosen)
        delta = state.update(ports, uplinks, tunnels)
        flows, groups = pl.static_state(ports, uplinks, tunnels)
        assert state.flows == flows
        assert state.groups == groups
        assert state.tables == collections.Counter(f.table for f in flows.values())
        # The switch, sent only the delta, holds the same flows.
        assert not delta.changed.keys() & delta.removed.keys()
        switch.update(delta.changed)
        for key in delta.removed:
            del switch[key]
        assert switch == flows


def test_one_port_more_sends_only_its_flows():
    state = BridgeFlows()
    ports = [_port(_BIG, i, i, 1) for i in (1, 2, 3)]
    state.update(ports, [])
    delta = state.update(ports + [_port(_BIG, 4, 4, 1)], [])
    assert not delta.removed
    # Its own flows and its network's flood flow, nothing of the other ports'.
    assert all(dict(f.match).get("reg6", 4) == 4 and dict(f.match).get("in_port", 4) == 4
               for f in delta.changed.values()), delta.changed
    assert 0 < len(delta.changed) < len(state.flows) / 3
    assert state.update(ports + [_port(_BIG, 4, 4, 1)], []).changed == {}


def test_a_rule_change_sends_its_profiles_rules_and_no_ports_flows():
    state = BridgeFlows()
    state.update([_port(_BIG, i, i, 1) for i in (1, 2, 3, 4)], [])
    changed = [dict(r) for r in WEB_RULES]
    changed[0]["port_range_min"] = 23  # tcp 22 -> 23
    topo = _topo(members=4, rules=changed)
    delta = state.update([_port(topo, i, i, 1) for i in (1, 2, 3, 4)], [])
    [old] = delta.removed.values()
    [new] = delta.changed.values()
    assert dict(old.match)["tcp_dst"] == 22 and dict(new.match)["tcp_dst"] == 23
    assert dict(new.match)["reg7"] == dict(old.match)["reg7"]


def _filtered_ports(count: int) -> list[pl.PortBinding]:
    """``count`` ports of one network, all in the web group (ofports 1..count)."""
    topo = _topo(members=1)
    policy = port_policy(topo.ports["p1"], topo)
    return [pl.PortBinding(i, 1, MAC.format(i % 256), policy) for i in range(1, count + 1)]


def test_a_large_network_floods_through_chunks_each_one_group_mod():
    from ovsbr.openflow import messages
    from tests.unit.test_barriers import RecordingDatapath

    dp = RecordingDatapath()
    ports = _filtered_ports(2000)  # one group of 2,000 such buckets: 128,000 bytes
    _, groups = pl.static_state(ports, [pl.UplinkBinding(3000, 1, 100)])
    for group in groups.values():  # os-ken refuses a message over 65,535 bytes
        assert len(messages._encode(dp, messages.group_mod(dp, group, 0))[0]) < 65536
        assert len(group.buckets) <= pl.FLOOD_CHUNK
    chained = [a for b in groups[1].buckets for a in b if a[0] == "group"]
    assert len(chained) == -(-2001 // pl.FLOOD_CHUNK)  # ofports 1-2000 by 128
    assert all(gid in groups and gid > pl.MAX_LID | pl.FROM_TUNNEL for _, gid in chained)
    # The chunks come before the group chaining to them (the order they are sent).
    assert list(groups).index(1) > max(list(groups).index(gid) for _, gid in chained)


def test_one_port_more_in_a_large_network_rewrites_one_chunk():
    state = BridgeFlows()
    ports = _filtered_ports(1000)
    state.update(ports[:999], [])
    before = dict(state.groups)
    state.update(ports, [])
    changed = {gid for gid, g in state.groups.items() if before.get(gid) != g}
    assert changed == {pl.chunk_group_id(1, 1000 // pl.FLOOD_CHUNK)}
