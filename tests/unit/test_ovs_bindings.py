"""The openvswitch driver's pure parts, from a recorded OVSDB view and link table."""

import collections

from ovsbr.drivers.base import Device, Overlay
from ovsbr.drivers.openvswitch import bindings, observe
from ovsbr.drivers.openvswitch.view import BridgeView, VmIface
from ovsbr.drivers.rtnl import Link
from ovsbr.model import Topology


def view():
    """br-int with two networks, a wired tap, a prepared row, a stale row,
    a row ovs-vswitchd cannot open, the patch port and a tunnel."""
    return BridgeView(
        networks={"n1": (3, "vlan/physnet1/101/-"), "ov": (4, "vxlan/-/7/-")},
        vm_ifaces={i.name: i for i in (
            VmIface("vnet0", "", "52:54:00:00:00:01", None, "n1", True, "active"),
            VmIface("vnet1", "", None, None, "n1", True, "inactive"),
            VmIface("vnet2", "", None, None, "n1", True, "active"),
            VmIface("vnet3", "", None, "abc", "n1", False, "active"))},
        ofports={"vnet0": 5, "vnet2": 6, "int-br-ex": 1, "vx-c6336402": 2},
        errors={"vnet3": "could not open network device vnet3 (No such device)"},
        tunnels={"vx-c6336402"},
        names=collections.Counter(
            ("vnet0", "vnet1", "vnet2", "vnet3", "int-br-ex", "vx-c6336402")))


def kernel():
    return [Link(1, "lo", None, None, None, 65536, None, True),
            Link(2, "vnet0", "tun", 9, None, 1500, "fe:00:00:00:00:01", True),
            Link(3, "vnet3", "tun", None, None, 1500, "fe:00:00:00:00:03", True),
            Link(4, "vnet8", "tun", None, None, 1500, "fe:00:00:00:00:08", False),
            Link(9, "ovs-netdev", "openvswitch", None, None, 1500, None, True)]


def topo():
    return Topology.from_dict({"networks": [
        {"name": "n1", "type": "vlan", "physical_network": "physnet1", "segmentation_id": 101},
        {"name": "ov", "type": "vxlan", "segmentation_id": 7}], "ports": [
        {"name": "p0", "network": "n1", "device": "vnet0", "mac": "52:54:00:00:00:01",
         "ips": ["192.0.2.5"]},
        {"name": "p3", "network": "n1", "iface_id": "abc"},
        {"name": "p8", "network": "n1", "device": "vnet8"}]})


def test_observe_tells_wired_prepared_and_new_devices_apart():
    obs = observe.observe(view(), kernel())
    assert obs.networks["n1"].fingerprint == "vlan/physnet1/101/-"
    assert obs.devices["vnet0"] == Device("vnet0", "52:54:00:00:00:01", None, "n1")
    assert obs.devices["vnet3"].iface_id == "abc"
    assert obs.devices["vnet8"] == Device("vnet8", "fe:00:00:00:00:08")  # not in OVSDB
    assert obs.prepared == {"vnet1": "n1"}  # never opened, tap not there yet
    assert "vnet2" not in obs.devices and "vnet2" not in obs.prepared  # stale
    assert "lo" not in obs.devices and "ovs-netdev" not in obs.devices


def test_stale_rows_ovsbr_added_are_the_vanished_ones():
    assert observe.vanished(view(), {link.name for link in kernel()}) == ["vnet2"]


def test_port_bindings_and_who_cannot_forward_yet():
    desired = topo()
    bound = {"p0": Device("vnet0"), "p3": Device("vnet3")}
    ports, cache, not_ready = bindings.port_bindings(desired, bound, view(), {}, "br-int")
    assert [(b.ofport, b.lid, b.mac) for b in ports] == [(5, 3, "52:54:00:00:00:01")]
    assert ports[0].policy.mac == "52:54:00:00:00:01"  # port security, from the policy
    assert not_ready["p3"].failed and "No such device" in not_ready["p3"].reason
    # Unchanged next time: the very same binding object comes back.
    again, _, _ = bindings.port_bindings(desired, bound, view(), cache, "br-int")
    assert again[0] is ports[0]


def test_uplinks_and_tunnels():
    up = bindings.uplink_bindings(topo(), view(), {"physnet1": "br-ex"})
    assert [(u.ofport, u.lid, u.vid) for u in up] == [(1, 3, 101)]
    ov = {"ov": Overlay("vxlan", 7, frozenset({"198.51.100.2"}),
                        (("52:54:00:00:00:09", "198.51.100.2"),))}
    assert bindings.wanted_tunnels(ov) == {"vx-c6336402": ("vxlan", "198.51.100.2")}
    tun = bindings.tunnel_bindings(ov, view())
    assert [(t.ofport, t.lid, t.vni, t.macs) for t in tun] == [
        (2, 4, 7, ("52:54:00:00:00:09",))]


def test_network_ids_are_kept_and_the_lowest_free_one_is_given():
    assert bindings.free_lid(view(), "n1") == 3
    assert bindings.free_lid(view(), "new") == 1
    assert bindings.free_lid(None, "new") == 1


def test_reports_name_networks_and_ports():
    raw = {"br-int": {"connected": True, "counters": {"learned": 1},
                      "macs": [{"lid": 3, "mac": "52:54:00:00:00:01", "port": 5, "age": 1.0},
                               {"lid": 9, "mac": "52:54:00:00:00:02", "port": 77,
                                "age": 2.0}]}}
    report = bindings.reports(raw, view())["br-int"].to_dict()
    assert report["macs"] == [
        {"network": "n1", "mac": "52:54:00:00:00:01", "port": "vnet0", "age": 1.0},
        {"network": "?", "mac": "52:54:00:00:00:02", "port": 77, "age": 2.0}]


def test_bindings_moved_on_for_the_ports_a_change_reached():
    desired, v = topo(), view()
    kept = bindings.PortBindings()
    bound = {"p0": Device("vnet0"), "p3": Device("vnet3")}
    assert kept.update(desired, bound, v, "br-int", None)
    first = kept.bindings()
    # Nothing reached: nothing moves, the very same bindings stay.
    assert not kept.update(desired, bound, v, "br-int", frozenset())
    assert kept.bindings() == first and kept.bindings()[0] is first[0]
    # ovs-vswitchd opens vnet3 (the view moved on in place) and p0 loses
    # vnet0 to p8: only the reached ports are read again.
    v.ofports["vnet3"] = 8
    del v.errors["vnet3"]
    bound = {"p3": Device("vnet3"), "p8": Device("vnet0")}
    assert kept.update(desired, bound, v, "br-int", frozenset({"p0", "p3", "p8"}))
    ports, _, not_ready = bindings.port_bindings(desired, bound, v, {}, "br-int")
    assert sorted(kept.bindings(), key=lambda b: b.ofport) == sorted(
        ports, key=lambda b: b.ofport)
    assert kept.not_ready == not_ready == {}
    # Another desired state or view object: every bound port again.
    assert kept.update(topo(), bound, view(), "br-int", frozenset())
    assert [b.ofport for b in kept.bindings()] == [5]
    assert set(kept.not_ready) == {"p3"}
