from ovsbr.drivers.netlink import LinkTable
from ovsbr.drivers.rtnl import Link


def link(index, name, master=None):
    return Link(index, name, "veth", master, None, 1500, None, True)


def test_name_index_follows_puts_renames_and_deletes():
    t = LinkTable()
    t.put(link(5, "vnet0"))
    assert t.by_name("vnet0").index == 5
    t.put(link(5, "vnet9"))  # renamed
    assert t.by_name("vnet0") is None and t.by_name("vnet9").index == 5
    t.put(link(6, "vnet0"))  # the old name reused by a new device
    assert t.by_name("vnet0").index == 6
    t.forget(5)
    assert t.by_name("vnet9") is None and t.get(6).name == "vnet0"
