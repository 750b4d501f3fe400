"""Which segment a host serves and the VIF it gets: bind_port's decisions."""

import pytest

from ovsbr.neutron import binding
from ovsbr.neutron.mapping import HostInfo

MAC = "fa:16:3e:00:00:01"
LB = HostInfo("linuxbridge", frozenset({"physnet1"}),
              frozenset({"local", "flat", "vxlan", "geneve"}), "198.51.100.11")
OVS = HostInfo("openvswitch", frozenset({"physnet1"}),
               frozenset({"local", "flat", "vlan", "vxlan", "geneve"}), "198.51.100.12",
               "br-int", "netdev")


def seg(ntype, physnet=None, segid=None, sid="s1"):
    return {"id": sid, "network_type": ntype, "physical_network": physnet,
            "segmentation_id": segid}


def test_linuxbridge_gets_a_tap_with_the_mac():
    got = binding.choose([seg("vxlan", segid=1001)], LB, "normal", MAC)
    assert got.vif_type == "tap"
    assert got.vif_details == {"port_filter": False, "connectivity": "l2", "mac_address": MAC}


def test_openvswitch_gets_its_bridge_and_datapath():
    got = binding.choose([seg("vlan", "physnet1", 100)], OVS, "normal", MAC)
    assert got.vif_type == "ovs"
    assert got.vif_details["bridge_name"] == "br-int"
    assert got.vif_details["datapath_type"] == "netdev"
    assert got.vif_details["ovs_hybrid_plug"] is False


@pytest.mark.parametrize("host, segment", [
    (LB, seg("vlan", "physnet1", 100)),  # this kernel has no 8021q
    (OVS, seg("vlan", "physnet2", 100)),  # physnet not mapped here
    (OVS, seg("flat", "physnet2")),
    (OVS, seg("gre", segid=5)),  # no datapath carries it
    (HostInfo("linuxbridge", network_types=frozenset({"vxlan"})), seg("vxlan", segid=9)),
])
def test_segments_the_host_cannot_serve_are_not_bound(host, segment):
    assert binding.choose([segment], host, "normal", MAC) is None


def test_first_servable_segment_wins():
    segments = [seg("vlan", "physnet1", 100, "a"), seg("vxlan", segid=1001, sid="b")]
    assert binding.choose(segments, LB, "normal", MAC).segment["id"] == "b"
    assert binding.choose(segments, OVS, "normal", MAC).segment["id"] == "a"


def test_unknown_host_and_other_vnic_types_are_left_to_others():
    assert binding.choose([seg("vxlan", segid=1)], None, "normal", MAC) is None
    assert binding.choose([seg("vxlan", segid=1)], OVS, "direct", MAC) is None
