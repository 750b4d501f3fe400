from ovsbr.drivers import rtnl
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


class _OneMessage:
    """A monitor socket that yields one buffer, then reports shutdown."""

    def __init__(self, buf):
        self.bufs = [buf, None]

    def recv(self):
        return self.bufs.pop(0)


def test_an_undecodable_event_marks_the_table_stale_and_keeps_running():
    # An RTM_NEWLINK whose ifinfomsg is cut short: decoding raises. Before,
    # the exception ended the monitor thread and no device event came again.
    hdr = rtnl.NLMSG_HDR.pack(rtnl.NLMSG_HDR.size + 4, rtnl.RTM_NEWLINK, 0, 1, 0)
    events = []
    t = LinkTable(on_change=events.append)
    t._mon = _OneMessage(hdr + b"\0" * 4)
    t._run()  # returns at the None after the bad buffer
    assert t.stale and events == ["netlink-undecodable"]


def test_changes_name_each_link_once_with_its_version_before_them():
    t = LinkTable()
    assert t.take_changes() is None  # never read: everything is unknown
    t.put(link(5, "vnet0"))
    assert t.take_changes() == {5: None}  # new since the last take
    t.put(link(5, "vnet9"))  # renamed, then moved: one entry, the first version
    t.put(link(5, "vnet9", master=3))
    t.put(link(6, "vnet0"))
    t.forget(7)  # never there: nothing changed
    changed = t.take_changes()
    assert changed == {5: link(5, "vnet0"), 6: None}
    t.put(link(5, "vnet9", master=4))
    t.get(5).master = 2  # the driver updates its links in place (plug, then put)
    assert t.take_changes()[5].master == 3  # a copy: the version before the change
