"""The security-group compiler, without a switch: table declarations, port
masks, conjunction costs, and the policy value it compiles."""

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


def _topo(members: int = 3, rules: list[dict] | None = None) -> Topology:
    rules = rules if rules is not None else [
        {"direction": "ingress", "protocol": "tcp", "port_range_min": 22},
        {"direction": "ingress", "protocol": "tcp", "port_range_min": 8000,
         "port_range_max": 8080, "remote_group": "web"},
        {"direction": "ingress", "protocol": "icmp", "icmp_type": 8, "remote_group": "web"},
        {"direction": "egress"},
        {"direction": "egress", "ethertype": "IPv6", "remote_ip_prefix": "2001:db8::/32"}]
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
    flows = pl.port_flows(_binding(topo))
    ip_in = [f for f in flows if f.table == pl.INGRESS and f.goto is not None and
             dict(f.match).get("eth_type") == pp.ETH_IPV4]
    assert ip_in and all(f.goto == tables.EGRESS_CT and f.actions == sgf.enter(5)
                         for f in ip_in)
    arp_in = [f for f in flows if dict(f.match).get("eth_type") == pp.ETH_ARP and f.goto]
    assert arp_in and all(f.goto == pl.ETH_SRC for f in arp_in)  # ARP is not filtered
    to_port = [f for f in flows if f.table == pl.ETH_DST]
    assert len(to_port) == 1 and to_port[0].goto == tables.INGRESS_CT
    group = pl.flood_group(1, [_binding(topo)], [])
    assert group.buckets == (sgf.deliver(5),)


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


def test_remote_groups_cost_members_plus_rules_not_their_product():
    def conj_flows(members, ports):
        topo = _topo(members)
        bindings = [_binding(topo, f"p{i}", i) for i in range(1, ports + 1)]
        return [f for f in pl.static_flows(bindings, [])[0] if f.priority == sgf.PRIO_CONJ]
    # One more member adds one flow to the bridge, however many ports use
    # the group; one more port adds its own rules' clause, not the members.
    assert len(conj_flows(11, 3)) - len(conj_flows(10, 3)) == 1
    per_port = len(conj_flows(10, 3)) - len(conj_flows(10, 2))
    assert per_port == len(conj_flows(10, 2)) - len(conj_flows(10, 1)) < 10
    ids = {a[1] for f in conj_flows(10, 3) for a in f.actions if a[0] == "conjunction"}
    assert len(ids) == 1  # (web, ingress, IPv4), shared by every port


def test_conjunction_ids_stay_put_while_other_groups_come_and_go():
    key = ("web", "ingress", pp.ETH_IPV4)
    alone = sgf.conj_ids({key})[key]
    crowd = {(f"g{i}", "ingress", pp.ETH_IPV4) for i in range(2000)}
    assert sgf.conj_ids(crowd | {key})[key] == alone
    assert len(set(sgf.conj_ids(crowd | {key}).values())) == 2001


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
