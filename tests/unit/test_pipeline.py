from ovsbr.model import Port
from ovsbr.openflow import pipeline as pl
from ovsbr.secgroups.policy import port_policy


def vm_port(ofport, lid, mac=None, port_security=True, ips=None):
    """A bound VM port, its policy derived as the driver derives it."""
    port = Port("p", "n", "vnet0", mac=mac, port_security=port_security, ips=ips)
    return pl.PortBinding(ofport, lid, mac, port_policy(port))


def test_cookie_carries_generation():
    c = pl.cookie(0x6B05D2AE, pl.KIND_LEARNED)
    assert c >> pl.COOKIE_GEN_SHIFT == 0x6B05D2AE
    assert c & ~pl.COOKIE_GEN_MASK == pl.KIND_LEARNED


def test_access_port_drops_tags_and_enforces_declared_mac():
    flows = pl.port_flows(vm_port(5, 7, "52:54:00:00:00:05", True))
    ingress = [f for f in flows if f.table == pl.INGRESS]
    tagged = [f for f in ingress if dict(f.match).get("vlan_vid")]
    assert tagged and tagged[0].priority > max(f.priority for f in ingress if f not in tagged)
    assert tagged[0].goto is None and not tagged[0].actions  # drop
    admit = [f for f in ingress if f.goto == pl.ETH_SRC]
    assert len(admit) == 1 and dict(admit[0].match) == {
        "in_port": 5, "eth_src": "52:54:00:00:00:05"}
    assert admit[0].metadata == 7
    # Declared MAC known up front: source and destination entries, no aging.
    static = [f for f in flows if f.table in (pl.ETH_SRC, pl.ETH_DST)]
    assert len(static) == 2 and all(f.idle_timeout == 0 for f in static)


def test_declared_ips_admit_only_their_arp_and_ip_sources():
    flows = pl.port_flows(vm_port(5, 7, "52:54:00:00:00:05", True,
                                  ("192.0.2.5", "2001:db8::5")))
    ingress = [f for f in flows if f.table == pl.INGRESS]
    admitted = {(dict(f.match).get("eth_type"), dict(f.match).get("arp_spa") or
                 dict(f.match).get("ipv4_src") or dict(f.match).get("ipv6_src"))
                for f in ingress if f.priority == pl.PRIO_PORT_IP}
    assert (pl.ETH_ARP, "192.0.2.5") in admitted and (pl.ETH_IPV4, "192.0.2.5") in admitted
    assert (pl.ETH_IPV6, "2001:db8::5") in admitted
    assert (pl.ETH_IPV6, pl.LINK_LOCAL6) in admitted  # link-local still works
    assert all(dict(f.match)["eth_src"] == "52:54:00:00:00:05" and f.metadata == 7
               for f in ingress if f.priority == pl.PRIO_PORT_IP)
    drops = [f for f in ingress if f.priority == pl.PRIO_PORT_IP_DROP]
    assert sorted(dict(f.match)["eth_type"] for f in drops) == sorted(
        (pl.ETH_ARP, pl.ETH_IPV4, pl.ETH_IPV6))
    assert all(f.goto is None and not f.actions for f in drops)
    assert pl.PRIO_PORT_IP > pl.PRIO_PORT_IP_DROP > pl.PRIO_PORT_MAC
    # Without port security the addresses are not enforced.
    loose = pl.port_flows(vm_port(5, 7, None, False, ("192.0.2.5",)))
    assert not [f for f in loose if f.priority in (pl.PRIO_PORT_IP, pl.PRIO_PORT_IP_DROP)]


def test_port_without_security_admits_any_source():
    flows = pl.port_flows(vm_port(5, 7, None, False))
    admit = [f for f in flows if f.goto == pl.ETH_SRC]
    assert dict(admit[0].match) == {"in_port": 5}


def test_vlan_translation_only_at_the_trunk():
    up = pl.UplinkBinding(1, 3, 100)
    ingress = pl.uplink_flows(up)[0]
    assert dict(ingress.match)["vlan_vid"] == 100 | pl.OFPVID_PRESENT
    assert ingress.actions == (("pop_vlan",),) and ingress.metadata == 3
    flat = pl.uplink_flows(pl.UplinkBinding(1, 4, None))[0]
    assert dict(flat.match)["vlan_vid"] == pl.OFPVID_NONE and flat.actions == ()
    group = pl.flood_group(3, [pl.PortBinding(9, 3)], [up])
    assert group.buckets == ((("output", 9),),
                             (("push_vlan", 0x8100), ("set_field", "vlan_vid", 0x1064),
                              ("output", 1)))
    dst = pl.learned_dst(3, "52:54:00:00:00:01", 1, 100, 600)
    assert dst.actions[0] == ("push_vlan", 0x8100)


def test_learning_miss_copies_to_controller_and_continues():
    miss = [f for f in pl.base_flows() if f.table == pl.ETH_SRC][0]
    assert miss.actions == (("controller", pl.PACKET_IN_BYTES),)
    assert miss.goto == pl.ETH_DST


def test_static_flows_have_unique_keys_and_one_group_per_network():
    ports = [pl.PortBinding(1, 1), pl.PortBinding(2, 1), pl.PortBinding(3, 2, "52:54:00:00:00:03")]
    flows, groups = pl.static_flows(ports, [pl.UplinkBinding(9, 2, 20)])
    keys = [f.key() for f in flows]
    assert len(keys) == len(set(keys))
    assert sorted(g.group_id for g in groups) == [1, 2]
    g2 = next(g for g in groups if g.group_id == 2)
    assert len(g2.buckets) == 2  # port 3 and the trunk: never network 1's ports


def test_flow_template_renders_exactly_what_os_ken_encodes():
    """The learned-flow fast path must produce os-ken's bytes, field for field."""
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    from ovsbr.openflow import messages

    class FakeDatapath:
        ofproto, ofproto_parser = ofproto_v1_3, ofproto_v1_3_parser
        xid = 7

        def set_xid(self, msg):
            self.xid += 1
            msg.set_xid(self.xid)

    dp = FakeDatapath()
    tpl = messages.templates(dp, 300)
    mac = "52:54:00:aa:bb:cc"
    for kind, flow, vid in (
            ("src", pl.learned_src(42, mac, 17, 300), None),
            ("dst", pl.learned_dst(42, mac, 17, None, 600), None),
            ("dst_vlan", pl.learned_dst(42, mac, 17, 100, 600), 100)):
        want = messages.flow_mod(0x1234, dp, flow)
        want.set_xid(99)
        want.serialize()
        got = tpl[kind].render(99, pl.cookie(0x1234, flow.kind), 42,
                               bytes.fromhex(mac.replace(":", "")), 17, vid)
        assert got == bytes(want.buf), kind


def test_tunnels_map_vni_skip_learning_and_split_horizon():
    t2 = pl.TunnelBinding(20, 3, 1001, ("52:54:00:00:00:02",))
    t3 = pl.TunnelBinding(30, 3, 1001)
    flows, groups = pl.static_flows([pl.PortBinding(5, 3)], [], [t2, t3])
    ingress = [f for f in flows if f.table == pl.INGRESS and dict(f.match).get("tunnel_id")]
    assert {dict(f.match)["in_port"] for f in ingress} == {20, 30}
    assert all(f.metadata == 3 | pl.FROM_TUNNEL and f.metadata_mask == pl.TUNNEL_META_MASK
               for f in ingress)
    # No learning from tunnels: remote MACs come from the store.
    skip = [f for f in flows if f.table == pl.ETH_SRC and f.priority == pl.PRIO_TUNNEL_SRC]
    assert sorted(dict(f.match)["in_port"] for f in skip) == [20, 30]
    remote = [f for f in flows if f.table == pl.ETH_DST and dict(f.match).get("eth_dst")]
    assert remote[0].actions == (("set_field", "tunnel_id", 1001), ("output", 20))
    by_id = {g.group_id: g for g in groups}
    assert by_id[3].buckets == ((("output", 5),),
                                (("set_field", "tunnel_id", 1001), ("output", 20)),
                                (("set_field", "tunnel_id", 1001), ("output", 30)))
    # From a tunnel: local ports only, never on to another host.
    assert by_id[3 | pl.FROM_TUNNEL].buckets == ((("output", 5),),)
    local = [f for f in flows if f.priority == pl.PRIO_FLOOD_LOCAL]
    assert local[0].actions == (("group", 3 | pl.FROM_TUNNEL),)
