"""The Linux bridge layout from a recorded link table, without a kernel."""

import dataclasses
import errno

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.drivers.base import Overlay
from ovsbr.drivers.linuxbridge import layout
from ovsbr.drivers.rtnl import Link
from ovsbr.exceptions import DriverError, FeatureMissing
from ovsbr.model import Network

MAPS = {"physnet1": "eth1"}
VLAN = Network("n1", "vlan", "physnet1", 101)
VX = Network("v1", "vxlan", segmentation_id=7)


def links():
    """A host as `ip -d link` showed it: one vlan network built, one vxlan
    network whose bridge is down, a stray bridge and some taps."""
    fp = layout.fingerprint(VLAN, MAPS)
    return {link.index: link for link in [
        Link(1, "lo", None, None, None, 65536, None, True),
        Link(2, "eth1", "veth", None, None, 1500, "52:54:00:00:00:e1", True),
        Link(3, "brq-n1", "bridge", None, layout.bridge_alias("n1", fp), 1500, None, True),
        Link(4, "eth1.101", "vlan", 3, "ovsbr:uplink=n1", 1500, None, True),
        Link(5, "vnet0", "tun", 3, None, 1500, "fe:54:00:00:00:01", True),
        Link(6, "vnet1", "tun", None, None, 1500, "fe:54:00:00:00:02", True),
        Link(7, "brq-v1", "bridge", None, layout.bridge_alias(
            "v1", layout.fingerprint(VX, MAPS)), 1450, None, False),
        Link(8, "brx-n9", "bridge", None, layout.bridge_alias("n9", "x"), 1500, None, True),
    ]}


def test_fingerprint_format_is_what_the_datapath_records():
    # Stored in bridge aliases: a change here rebuilds every network once.
    assert layout.fingerprint(VLAN, MAPS) == "vlan/physnet1/101/-/eth1.101"
    assert layout.fingerprint(VX, MAPS) == "vxlan/-/7/1450/vxlan-7"
    assert layout.fingerprint(Network("l", "local"), MAPS) == "local/-/-/-/-"


def test_observe_reads_networks_and_devices():
    obs = layout.observe(links(), "brq-", MAPS)
    assert {n: s.fingerprint for n, s in obs.networks.items()} == {
        "n1": "vlan/physnet1/101/-/eth1.101", "v1": "down"}  # brx- is another agent's
    assert {d.name: d.network for d in obs.devices.values()} == {
        "vnet0": "n1", "vnet1": None}  # uplinks, bridges and lo are not VM devices


def test_an_uplink_that_left_its_bridge_means_rebuild():
    table = links()
    table[4] = Link(4, "eth1.101", "vlan", None, "ovsbr:uplink=n1", 1500, None, True)
    assert layout.observe(table, "brq-", MAPS).networks["n1"].fingerprint == "uplink-missing"


def test_leftover_is_adopted_only_when_unmarked_and_unused():
    table = links()
    bare = Link(9, "brq-n2", "bridge", None, None, 1500, None, False)
    assert layout.our_leftover(bare, "bridge", table.values())
    assert not layout.our_leftover(table[3], "bridge", table.values())  # marked
    used = Link(10, "brq-n3", "bridge", None, None, 1500, None, False)
    member = Link(11, "vnet9", "tun", 10, None, 1500, None, True)
    assert not layout.our_leftover(used, "bridge", [*table.values(), member])


def test_what_cannot_be_built_is_refused_before_anything_is_touched():
    layout.check_buildable(VLAN, MAPS)
    for net, err in ((Network("g", "geneve", segmentation_id=5), FeatureMissing),
                     (Network("x", "flat", "physnet9"), DriverError)):
        try:
            layout.check_buildable(net, MAPS, {"geneve": "geneve"})
        except err as e:
            assert "module geneve" in str(e) or "physical_interface_mappings" in str(e)
        else:
            raise AssertionError(f"{net.name} accepted")


def test_errno_meanings():
    assert "8021q" in str(layout.create_error(errno.EOPNOTSUPP, "vlan", "eth1.101", "x"))
    assert isinstance(layout.create_error(errno.EEXIST, "vlan", "eth1.101", "exists"),
                      DriverError)
    assert "1023 ports" in layout.plug_error(errno.EXFULL, "vnet0", "brq-n1", VLAN)


def test_fdb_follows_the_overlay():
    ov = Overlay("vxlan", 7, frozenset({"198.51.100.2", "198.51.100.3"}),
                 (("52:54:00:00:00:02", "198.51.100.2"),))
    current = {(layout.ZERO_MAC, "198.51.100.2"), (layout.ZERO_MAC, "198.51.100.9")}
    remove, add = layout.fdb_diff(current, layout.fdb_wanted(ov))
    assert remove == [(layout.ZERO_MAC, "198.51.100.9")]
    assert add == [(layout.ZERO_MAC, "198.51.100.3"), ("52:54:00:00:00:02", "198.51.100.2")]


def test_geneve_devices_one_per_remote_and_not_vm_devices():
    ov = Overlay("geneve", 1001, frozenset({"198.51.100.2", "198.51.100.3"}), ())
    wanted = layout.geneve_wanted(ov)
    assert wanted == {"g0003e9c6336402": "198.51.100.2", "g0003e9c6336403": "198.51.100.3"}
    assert all(len(name) <= 15 for name in wanted)
    table = links()
    table[12] = Link(12, "g0003e9c6336402", "geneve", 3, layout.TUNNEL_MARK + "n1", 1450,
                     None, True)
    assert "g0003e9c6336402" not in layout.observe(table, "brq-", MAPS).devices


# -- observing from the links that changed -------------------------------------
link_change = st.tuples(
    st.integers(min_value=1, max_value=12),  # index: 1-8 the recorded host, more new
    st.one_of(st.none(),  # deleted
              st.tuples(st.sampled_from(["vnet0", "vnet1", "vnet2", "tapx", "eth1", "eth1.101",
                                         "brq-n1", "lo"]),
                        st.sampled_from(["tun", "veth", "bridge", None]),
                        st.sampled_from([None, 3, 7, 8, 99]),
                        st.sampled_from([None, "ovsbr:uplink=n1", "ovsbr:tunnel=v1", "x"]),
                        st.booleans())))


@given(st.lists(st.lists(link_change, min_size=1, max_size=4), min_size=1, max_size=5))
@settings(max_examples=400, deadline=None)
def test_seeing_the_changed_links_equals_seeing_them_all(batches):
    table = links()
    seen = layout.see(table, "brq-", MAPS)
    for batch in batches:
        changed = {}
        for index, spec in batch:
            old = table.get(index)
            if index not in changed:
                changed[index] = None if old is None else dataclasses.replace(old)
            if spec is None:
                table.pop(index, None)
                continue
            name, kind, master, alias, up = spec
            for other in [i for i, link in table.items() if link.name == name and i != index]:
                changed.setdefault(other, dataclasses.replace(table[other]))
                del table[other]  # kernel names are unique: the other one went
            table[index] = Link(index, name, kind, master, alias, 1500, None, up)
        moved = layout.see_change(seen, changed, table.get)
        whole = layout.see(table, "brq-", MAPS)
        if moved is not None:
            assert moved[0].observed == whole.observed
            assert moved[0].bridges == whole.bridges
            named = {link.name for i, old in changed.items()
                     for link in (old, table.get(i)) if link is not None}
            assert moved[1] <= named
        seen = whole


def test_a_tap_appearing_is_seen_from_its_own_link():
    table = links()
    seen = layout.see(table, "brq-", MAPS)
    table[20] = Link(20, "vnet7", "tun", None, None, 1500, None, True)
    moved, names = layout.see_change(seen, {20: None}, table.get)
    assert names == {"vnet7"} and moved.observed.devices["vnet7"].network is None
    assert moved.observed.networks is seen.observed.networks  # not re-read
    # A bridge whose MAC moved as a tap joined: nothing observe reads changed.
    assert layout.see_change(seen, {3: table[3]}, table.get)[1] == frozenset()
    # A bridge going down is not a tap's business: the whole table is read.
    down = dataclasses.replace(table[3], up=False)
    assert layout.see_change(seen, {3: table[3]}, {3: down}.get) is None


def test_a_plug_request_is_the_bytes_pyroute2_would_send():
    from pyroute2 import IPBatch

    from ovsbr.drivers.linuxbridge import netlink_ops

    batch = IPBatch()
    try:
        for spec in ({"master": 3, "state": "up", "mtu": 1450}, {"master": 3, "state": "up"},
                     {"master": 0}):
            batch.reset()
            batch.link("set", index=9, **spec)
            theirs = bytearray(batch.batch)
            ours = bytearray(netlink_ops.setlink_message(9, spec, 0))
            theirs[8:16] = ours[8:16] = bytes(8)  # sequence number and port id
            assert ours == theirs
    finally:
        batch.close()
