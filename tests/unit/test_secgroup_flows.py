"""The security-group compiler, without a switch: table declarations, port
masks, conjunction costs, and the policy value it compiles."""

import collections
import dataclasses
import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from ovsbr.model import Topology
from ovsbr.openflow import pipeline as pl
from ovsbr.openflow import secgroup_flows as sgf
from ovsbr.openflow import tables
from ovsbr.secgroups import policy as pp
from ovsbr.secgroups.model import rule_from_dict
from ovsbr.secgroups.policy import port_policy

MAC = "52:54:00:00:00:{:02x}"


WEB_RULES = [
    {"direction": "ingress", "protocol": "tcp", "port_range_min": 22},
    {"direction": "ingress", "protocol": "tcp", "port_range_min": 8000,
     "port_range_max": 8080, "remote_group": "web"},
    {"direction": "ingress", "protocol": "icmp", "icmp_type": 8, "remote_group": "web"},
    {"direction": "egress"},
    {"direction": "egress", "ethertype": "IPv6", "remote_ip_prefix": "2001:db8::/32"}]


def _topo(members: int = 3, rules: list[dict] | None = None) -> Topology:
    rules = rules if rules is not None else WEB_RULES
    return Topology.from_dict({
        "networks": [{"name": "n", "type": "local"}],
        "security_groups": [{"name": "web", "rules": rules}],
        "ports": [{"name": f"p{i}", "network": "n", "device": f"t{i}", "mac": MAC.format(i),
                   "ips": [f"192.0.2.{i + 10}", f"2001:db8::{i + 10:x}"],
                   "security_groups": ["web"]} for i in range(1, members + 1)]})


def _binding(topo: Topology, name: str = "p1", ofport: int = 5) -> pl.PortBinding:
    port = topo.ports[name]
    return pl.PortBinding(ofport, 1, port.mac, port_policy(port, topo))


def test_every_flow_keeps_to_its_tables_declaration():
    topo = _topo()
    bindings = [_binding(topo, f"p{i}", i) for i in (1, 2, 3)]
    flows, groups = pl.static_flows(bindings, [])
    for flow in flows:
        spec = tables.SPECS[flow.table]
        fields = {k for k, _ in flow.match}
        assert fields <= spec.match, (spec.name, fields - spec.match, flow)
        assert tables.next_tables(flow.actions, flow.goto) <= spec.next, (spec.name, flow)
        if any(a[0] == "ct" for a in flow.actions):
            # Open vSwitch refuses ct in a flow that does not match IP.
            assert dict(flow.match).get("eth_type") in (pp.ETH_IPV4, pp.ETH_IPV6), flow
    for group in groups:
        for bucket in group.buckets:  # buckets run from ETH_DST's group action
            assert tables.next_tables(bucket, None) <= tables.SPECS[pl.ETH_DST].next


def test_frames_to_and_from_a_filtered_port_go_through_its_tables():
    topo = _topo()
    [binding] = pl.number_profiles([_binding(topo)])
    assert binding.profile
    flows = pl.port_flows(binding)
    ip_in = [f for f in flows if f.table == pl.INGRESS and f.goto is not None and
             dict(f.match).get("eth_type") == pp.ETH_IPV4]
    assert ip_in and all(f.goto == tables.EGRESS_CT and
                         f.actions == sgf.enter(5, binding.profile) for f in ip_in)
    arp_in = [f for f in flows if dict(f.match).get("eth_type") == pp.ETH_ARP and f.goto]
    assert arp_in and all(f.goto == pl.ETH_SRC for f in arp_in)  # ARP is not filtered
    to_port = [f for f in flows if f.table == pl.ETH_DST]
    assert len(to_port) == 1 and to_port[0].goto == tables.INGRESS_CT
    assert to_port[0].actions == sgf.enter(5, binding.profile)
    group = pl.flood_group(1, [binding], [])
    assert group.buckets == (sgf.deliver(5, binding.profile),)


@given(st.integers(1, 65535), st.integers(0, 2000))
def test_port_masks_cover_exactly_the_range(lo, span):
    hi = min(65535, lo + span)
    covered = set()
    for m in sgf.port_masks(lo, hi):
        value, mask = (m, 0xFFFF) if isinstance(m, int) else m
        size = 0x10000 - mask
        assert value & ~mask & 0xFFFF == 0
        block = set(range(value, value + size))
        assert not block & covered
        covered |= block
    assert covered == set(range(lo, hi + 1))
    assert len(sgf.port_masks(lo, hi)) <= 2 * 16


def _rule_flows(members: int, ports: int, priority: int) -> list:
    topo = _topo(members)
    bindings = [_binding(topo, f"p{i}", i) for i in range(1, ports + 1)]
    return [f for f in pl.static_flows(bindings, [])[0] if f.priority == priority
            and f.table in (tables.EGRESS_RULES, tables.INGRESS_RULES)]


def test_remote_groups_cost_members_plus_rules_not_their_product():
    # One more member adds one flow to the bridge, however many ports use
    # the group; one more port in the same groups adds no rule at all.
    conj = sgf.PRIO_CONJ
    assert len(_rule_flows(11, 3, conj)) - len(_rule_flows(10, 3, conj)) == 1
    # (the members are the topology's, bound here or not)
    assert len(_rule_flows(10, 3, conj)) == len(_rule_flows(10, 2, conj))
    ids = {a[1] for f in _rule_flows(10, 3, conj) for a in f.actions if a[0] == "conjunction"}
    assert len(ids) == 1  # (web, ingress, IPv4), shared by every port


def test_ports_in_the_same_groups_share_one_copy_of_their_rules():
    rules = _rule_flows(3, 1, sgf.PRIO_RULE)
    assert rules and _rule_flows(3, 3, sgf.PRIO_RULE) == rules
    assert {dict(f.match)[tables.REG_PROFILE] for f in rules} == {
        pl.number_profiles([_binding(_topo(3))])[0].profile}
    assert all(tables.REG_PORT not in dict(f.match) for f in rules)
    # A filtered port's own flows: as many as the same port without groups.
    plain = _topo(3, rules=[])
    bare = pl.PortBinding(5, 1, plain.ports["p1"].mac,
                          port_policy(dataclasses.replace(plain.ports["p1"], security_groups=()),
                                      plain))
    assert len(pl.port_flows(_binding(_topo(3)))) == len(pl.port_flows(bare))


def test_each_group_set_is_its_own_profile():
    topo = Topology.from_dict({
        "networks": [{"name": "n", "type": "local"}],
        "security_groups": [
            {"name": "web", "rules": [{"direction": "ingress", "protocol": "tcp",
                                       "port_range_min": 80}]},
            {"name": "db", "rules": [{"direction": "ingress", "protocol": "tcp",
                                      "port_range_min": 5432}]}],
        "ports": [{"name": f"p{i}", "network": "n", "device": f"t{i}", "mac": MAC.format(i),
                   "ips": [f"192.0.2.{i + 10}"], "security_groups": groups}
                  for i, groups in ((1, ["web"]), (2, ["db", "web"]), (3, ["web", "db"]))]})
    ports = pl.number_profiles([_binding(topo, f"p{i}", i) for i in (1, 2, 3)])
    assert ports[0].profile != ports[1].profile == ports[2].profile  # order does not matter
    flows = pl.static_flows(ports, [])[0]
    allowed = collections.defaultdict(set)
    for f in flows:
        match = dict(f.match)
        if f.priority == sgf.PRIO_RULE and f.table == tables.INGRESS_RULES:
            allowed[match[tables.REG_PROFILE]].add(match["tcp_dst"])
    assert allowed == {ports[0].profile: {80}, ports[1].profile: {80, 5432}}


def test_conjunction_ids_stay_put_while_other_groups_come_and_go():
    key = ("web", "ingress", pp.ETH_IPV4)
    alone = sgf.stable_ids({key})[key]
    crowd = {(f"g{i}", "ingress", pp.ETH_IPV4) for i in range(2000)}
    assert sgf.stable_ids(crowd | {key})[key] == alone
    assert len(set(sgf.stable_ids(crowd | {key}).values())) == 2001


def test_shared_member_addresses_merge_into_one_flow():
    rules = [{"direction": "ingress", "protocol": "tcp", "port_range_min": 22,
              "remote_group": "web"},
             {"direction": "ingress", "protocol": "tcp", "port_range_min": 22,
              "remote_group": "db"}]
    topo = Topology.from_dict({
        "networks": [{"name": "n", "type": "local"}],
        "security_groups": [{"name": "web", "rules": rules}, {"name": "db"}],
        "ports": [{"name": "p1", "network": "n", "device": "t1", "mac": MAC.format(1),
                   "ips": ["192.0.2.11"], "security_groups": ["web", "db"]}]})
    flows = pl.static_flows([_binding(topo, "p1", 7)], [])[0]
    keys = [f.key() for f in flows]
    assert len(keys) == len(set(keys)), "a switch keeps one flow per (table, priority, match)"
    address = [f for f in flows if f.table == tables.INGRESS_RULES
               and dict(f.match).get("ipv4_src") == "192.0.2.11"]
    assert len(address) == 1 and len(address[0].actions) == 2  # both conjunctions
    rule = [f for f in flows if dict(f.match).get("tcp_dst") == 22]
    assert len(rule) == 1 and len(rule[0].actions) == 2


def test_policy_merges_ranges_across_groups_and_answers_like_neutron():
    rules = [{"direction": "ingress", "protocol": "tcp", "port_range_min": a,
              "port_range_max": b} for a, b in ((80, 89), (85, 99), (100, 100), (200, 210))]
    fw = pp.Firewall(pp.allows(port_policy_rules(rules)))
    assert [r.ports for r in fw.rules] == [(80, 100), (200, 210)]
    assert fw.allows("ingress", pp.ETH_IPV4, 6, "198.51.100.1", dport=100)
    assert not fw.allows("ingress", pp.ETH_IPV4, 6, "198.51.100.1", dport=101)
    assert not fw.allows("egress", pp.ETH_IPV4, 6, "198.51.100.1", dport=80)


def port_policy_rules(rules):
    return [rule_from_dict(r) for r in rules]


def test_prefixes_become_masked_matches():
    [rule] = pp.allows(port_policy_rules([{"direction": "egress",
                                            "remote_ip_prefix": "198.51.100.0/24"}]))
    [match] = sgf.rule_matches(rule)
    net = ipaddress.ip_network("198.51.100.0/24")
    assert match["ipv4_dst"] == (str(net.network_address), str(net.netmask))
