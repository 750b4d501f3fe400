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
    ports, cache, not_ready, devices = bindings.port_bindings(
        desired, bound, view(), {}, "br-int")
    assert [(b.ofport, b.lid, b.mac) for b in ports] == [(5, 3, "52:54:00:00:00:01")]
    assert devices == {"p0": "vnet0", "p3": "vnet3"}
    assert ports[0].policy.mac == "52:54:00:00:00:01"  # port security, from the policy
    assert not_ready["p3"].failed and "No such device" in not_ready["p3"].reason
    # Unchanged next time: the very same binding object comes back.
    again, *_ = bindings.port_bindings(desired, bound, view(), cache, "br-int")
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
    ports, _, not_ready, _ = bindings.port_bindings(desired, bound, v, {}, "br-int")
    assert sorted(kept.bindings(), key=lambda b: b.ofport) == sorted(
        ports, key=lambda b: b.ofport)
    assert kept.not_ready == not_ready == {}
    # Another desired state or view object: every bound port again.
    assert kept.update(topo(), bound, view(), "br-int", frozenset())
    assert [b.ofport for b in kept.bindings()] == [5]
    assert set(kept.not_ready) == {"p3"}


def prepared_view(request=32768, *, other=None):
    """view() with p8's row prepared on vnet8 asking for ``request``
    (``other``: (name, ofport) of another interface on br-int)."""
    v = view()
    v.vm_ifaces["vnet8"] = VmIface("vnet8", "", None, None, "n1", True, "inactive",
                                   "p8", request)
    v.errors["vnet8"] = "could not open network device vnet8 (No such device)"
    v.requests[request] += 1
    v.at.update({n: {name} for name, n in v.ofports.items()})
    if other:
        v.ofports[other[0]] = other[1]
        v.at[other[1]] = {other[0]}
    return v


def test_a_prepared_port_is_bound_by_the_number_it_asked_for_before_its_tap():
    desired, bound = topo(), {"p0": Device("vnet0")}
    ports, cache, not_ready, devices = bindings.port_bindings(
        desired, bound, prepared_view(), {}, "br-int")
    assert sorted(b.ofport for b in ports) == [5, 32768]
    assert devices == {"p0": "vnet0", "p8": "vnet8"}
    assert not_ready == {}  # waiting for its tap: the reconciler's status, not ours
    # The tap appears: bound, not numbered yet, then numbered as asked: the
    # same binding object all along, so the app has nothing to send.
    v = prepared_view()
    del v.errors["vnet8"]
    bound = {"p0": Device("vnet0"), "p8": Device("vnet8")}
    tap, *_ = bindings.port_bindings(desired, bound, v, cache, "br-int")
    assert next(b for b in tap if b.ofport == 32768) is next(b for b in ports if b.ofport == 32768)
    v.ofports["vnet8"], v.at[32768] = 32768, {"vnet8"}
    numbered, _, not_ready, _ = bindings.port_bindings(desired, bound, v, cache, "br-int")
    assert not_ready == {}
    assert next(b for b in numbered if b.ofport == 32768) is next(
        b for b in ports if b.ofport == 32768)


def test_a_port_given_another_number_than_it_asked_for_follows_it():
    desired, bound = topo(), {"p0": Device("vnet0"), "p8": Device("vnet8")}
    v = prepared_view()
    del v.errors["vnet8"]
    v.ofports["vnet8"], v.at[7] = 7, {"vnet8"}  # ovs-vswitchd could not give 32768
    ports, _, not_ready, _ = bindings.port_bindings(desired, bound, v, {}, "br-int")
    assert sorted(b.ofport for b in ports) == [5, 7] and not_ready == {}


def test_a_number_someone_else_has_binds_nothing_until_numbered():
    desired = topo()
    # Another interface holds the number, or asked for it too: flows for it
    # would be that interface's.
    for v in (prepared_view(other=("tap-x", 32768)), prepared_view()):
        if "tap-x" not in v.ofports:
            v.requests[32768] += 1
        ports, *_ = bindings.port_bindings(desired, {"p0": Device("vnet0")}, v, {}, "br-int")
        assert [b.ofport for b in ports] == [5]
        bound = {"p0": Device("vnet0"), "p8": Device("vnet8")}
        ports, _, not_ready, _ = bindings.port_bindings(desired, bound, v, {}, "br-int")
        assert [b.ofport for b in ports] == [5] and "p8" in not_ready


def test_a_prepared_port_is_bound_when_a_change_reaches_it():
    desired, v = topo(), view()
    kept = bindings.PortBindings()
    bound = {"p0": Device("vnet0")}
    kept.update(desired, bound, v, "br-int", None)
    # p8's row is written (the view moves on in place), then it goes.
    v.vm_ifaces["vnet8"] = VmIface("vnet8", "", None, None, "n1", True, "inactive", "p8", 32769)
    v.requests[32769] += 1
    assert kept.update(desired, bound, v, "br-int", frozenset({"p8"}))
    assert sorted(b.ofport for b in kept.bindings()) == [5, 32769]
    assert kept.port_at(32769) == "p8" and kept.not_ready == {}
    full, *_ = bindings.port_bindings(desired, bound, v, {}, "br-int")
    assert sorted(b.ofport for b in full) == [5, 32769]
    gone = Topology.from_dict({**desired.to_dict(), "ports": [
        p for p in desired.to_dict()["ports"] if p["name"] != "p8"]})
    kept._for = (gone, v)  # the same desired object as this update's
    assert kept.update(gone, bound, v, "br-int", frozenset({"p8"}))
    assert [b.ofport for b in kept.bindings()] == [5]


def test_requests_come_from_the_upper_half_and_skip_what_is_taken(monkeypatch):
    v = prepared_view(32770, other=("tap-x", 32769))
    req = bindings.OfportRequests()
    assert req.pick("a", v) == 32768
    assert req.pick("b", v) == 32771  # 32769 numbered, 32770 asked for
    assert req.pick("a", v) == 32772  # asked again: a new number, the old one freed
    assert req.pick("c", v) == 32773
    # Rows the view shows are forgotten here (the view keeps them taken);
    # a forgotten row's number is free again once the picks wrap around.
    v.vm_ifaces["a"] = VmIface("a", "", None, None, "n1", True, "inactive", "pa", 32772)
    v.requests[32772] += 1
    req.seen(v)
    req.forget("b")
    monkeypatch.setattr(bindings, "REQUEST_LAST", 32773)
    assert req.pick("d", v) == 32768  # after 32773: wraps to the first free one
    assert req.pick("e", v) == 32771
    assert req.pick("f", v) is None  # 32768-32773 all taken


def test_a_prepared_port_whose_number_another_interface_takes_is_unbound():
    desired, v = topo(), prepared_view()
    kept = bindings.PortBindings()
    bound = {"p0": Device("vnet0")}
    kept.update(desired, bound, v, "br-int", None)
    assert kept.port_at(32768) == "p8"
    assert kept.displaced(v, {"vnet8", "vnet0"}) == set()  # its own row, another number
    # Someone adds an interface asking for the same number, and gets it.
    v.ofports["tap-x"], v.at[32768] = 32768, {"tap-x"}
    assert kept.displaced(v, {"tap-x"}) == {"p8"}
    kept.update(desired, bound, v, "br-int", frozenset({"p8"}))
    assert [b.ofport for b in kept.bindings()] == [5] and kept.port_at(32768) is None


def test_a_prepared_port_keeps_its_flows_while_its_tap_is_down_but_not_if_migrating():
    desired, bound = topo(), {"p0": Device("vnet0")}
    v = prepared_view()
    del v.errors["vnet8"]
    v.ofports["vnet8"], v.at[32768] = 32768, {"vnet8"}  # the tap is there, not up
    ports, *_ = bindings.port_bindings(desired, bound, v, {}, "br-int")
    assert sorted(b.ofport for b in ports) == [5, 32768]
    v.ofports["vnet8"], v.at = 9, {9: {"vnet8"}}  # numbered otherwise: not by the request
    ports, *_ = bindings.port_bindings(desired, bound, v, {}, "br-int")
    assert [b.ofport for b in ports] == [5]
    # Migrating here: its VM still runs on the source, its MAC's frames go there.
    moving = Topology.from_dict({**desired.to_dict(), "ports": [
        dict(p, host="h1", migrating_to="h2") if p["name"] == "p8" else p
        for p in desired.to_dict()["ports"]]})
    ports, *_ = bindings.port_bindings(moving, bound, prepared_view(), {}, "br-int")
    assert [b.ofport for b in ports] == [5]
