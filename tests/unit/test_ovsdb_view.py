"""The OVSDB row cache: right after changes, deletions and reconnects."""

from types import SimpleNamespace as NS

from ovsbr.drivers.openvswitch.view import RowCache


def _tables(*bridges, ports=(), ifaces=()):
    return {"Bridge": NS(rows={b.uuid: b for b in bridges}),
            "Port": NS(rows={p.uuid: p for p in ports}),
            "Interface": NS(rows={i.uuid: i for i in ifaces})}


def _iface(uuid, name, ofport=None, itype="", error=None, request=None, **ids):
    return NS(uuid=uuid, name=name, type=itype, ofport=[ofport] if ofport else [],
              error=[error] if error else [], external_ids=ids,
              ofport_request=[request] if request else [])


def _port(uuid, name, ifaces, **ids):
    return NS(uuid=uuid, name=name, interfaces=list(ifaces), external_ids=ids)


def _world():
    vm = _iface("i1", "vnet0", 5, **{"attached-mac": "52:54:00:00:00:01"})
    patch = _iface("i2", "int-br-ex", 1, "patch")
    tun = _iface("i3", "vx-c0000202", 2, "vxlan")
    pvm = _port("p1", "vnet0", [vm], **{"ovsbr-network": "n1", "ovsbr-added": "true"})
    ppatch = _port("p2", "int-br-ex", [patch], **{"ovsbr-owned": "true",
                                                   "ovsbr-physnet": "physnet1"})
    ptun = _port("p3", "vx-c0000202", [tun], **{"ovsbr-tunnel": "192.0.2.2"})
    br = NS(uuid="b1", name="br-int", ports=[pvm, ppatch, ptun],
            external_ids={"ovsbr-net-n1": "3 vlan/physnet1/101/-", "ovsbr-net-bad": "x y"})
    return br, [pvm, ppatch, ptun], [vm, patch, tun]


def test_view_reads_networks_ports_and_tunnels():
    br, ports, ifaces = _world()
    view = RowCache().view(_tables(br, ports=ports, ifaces=ifaces), "br-int")
    assert view.networks == {"n1": (3, "vlan/physnet1/101/-")}  # malformed entry skipped
    assert [(i.name, i.mac, i.network, i.added) for i in view.vm_ifaces.values()] == [
        ("vnet0", "52:54:00:00:00:01", "n1", True)]
    assert view.ofports == {"vnet0": 5, "int-br-ex": 1, "vx-c0000202": 2}
    assert view.tunnels == {"vx-c0000202"}
    assert set(view.names) == {"vnet0", "int-br-ex", "vx-c0000202"}


def test_missing_bridge_is_none():
    br, ports, ifaces = _world()
    assert RowCache().view(_tables(br, ports=ports, ifaces=ifaces), "br-other") is None


def test_a_row_is_read_again_only_after_it_is_forgotten():
    br, ports, ifaces = _world()
    tables = _tables(br, ports=ports, ifaces=ifaces)
    cache = RowCache()
    cache.view(tables, "br-int")
    ifaces[0].ofport = [9]
    assert cache.view(tables, "br-int").ofports["vnet0"] == 5  # not told: cached
    cache.forget("Interface", "i1")
    assert cache.view(tables, "br-int").ofports["vnet0"] == 9


def test_no_ofport_yet_and_errors():
    br, ports, ifaces = _world()
    ifaces[0].ofport = []
    ifaces[0].error = ["could not open network device vnet0 (No such device)"]
    view = RowCache().view(_tables(br, ports=ports, ifaces=ifaces), "br-int")
    assert "vnet0" not in view.ofports
    assert view.errors == {"vnet0": "could not open network device vnet0 (No such device)"}


def test_reconnect_drops_rows_deleted_meanwhile():
    # python-ovs clears its tables on reconnect without delete notices and
    # reports every row as created again: a row gone meanwhile must vanish.
    br, ports, ifaces = _world()
    cache = RowCache()
    cache.view(_tables(br, ports=ports, ifaces=ifaces), "br-int")
    br2 = NS(uuid="b1", name="br-int", ports=ports[1:], external_ids={})
    for table, uuid in (("Bridge", "b1"), ("Port", "p2"), ("Port", "p3"),
                        ("Interface", "i2"), ("Interface", "i3")):
        cache.forget(table, uuid)
    view = cache.view(_tables(br2, ports=ports[1:], ifaces=ifaces[1:]), "br-int")
    assert view.vm_ifaces == {} and view.networks == {}
    assert "vnet0" not in view.names


def test_an_interface_arriving_after_its_port_is_seen():
    # OVSDB updates can show the Port before its Interface row: the port's
    # cached part of the view must be dropped when the Interface arrives.
    br, ports, ifaces = _world()
    cache = RowCache()
    view = cache.view(_tables(br, ports=ports, ifaces=ifaces[1:]), "br-int")
    assert view.vm_ifaces == {} and "vnet0" not in view.ofports
    cache.forget("Interface", "i1")  # notify() of the insert
    view = cache.view(_tables(br, ports=ports, ifaces=ifaces), "br-int")
    assert [i.name for i in view.vm_ifaces.values()] == ["vnet0"] and view.ofports["vnet0"] == 5


def test_a_port_change_drops_only_that_ports_part():
    br, ports, ifaces = _world()
    tables = _tables(br, ports=ports, ifaces=ifaces)
    cache = RowCache()
    cache.view(tables, "br-int")
    ports[0].external_ids = {"ovsbr-network": "n2", "ovsbr-added": "true"}
    ifaces[1].ofport = [7]  # not notified: stays as read
    cache.forget("Port", "p1")
    view = cache.view(tables, "br-int")
    assert view.vm_ifaces["vnet0"].network == "n2" and view.ofports["int-br-ex"] == 1


def test_changed_names_follow_row_notices():
    br, ports, ifaces = _world()
    cache = RowCache()
    assert cache.take_changed() is None  # nothing known before a first look
    cache.view(_tables(br, ports=ports, ifaces=ifaces), "br-int")
    cache.forget("Interface", "i1", "vnet0")
    cache.forget("Open_vSwitch", "o1", None)  # not a table the view reads
    assert cache.take_changed() == {"vnet0"}
    cache.forget("Port", "p3", "vx-c0000202")  # a port names its interfaces too
    assert cache.take_changed() == {"vx-c0000202"}
    cache.forget("Bridge", "b1", "br-int")  # a bridge row: anything may have moved
    cache.forget("Interface", "i1", "vnet0")
    assert cache.take_changed() is None
    assert cache.take_changed() == set()


def test_requested_numbers_and_who_has_a_number():
    br, ports, ifaces = _world()
    prepared = _iface("i4", "vnet1", request=32768, **{"iface-status": "inactive"})
    pprep = _port("p4", "vnet1", [prepared], **{"ovsbr-network": "n1", "ovsbr-added": "true",
                                                "ovsbr-port": "web1"})
    br.ports.append(pprep)
    cache = RowCache()
    tables = _tables(br, ports=[*ports, pprep], ifaces=[*ifaces, prepared])
    view = cache.view(tables, "br-int")
    assert (view.vm_ifaces["vnet1"].port, view.vm_ifaces["vnet1"].requested) == ("web1", 32768)
    assert view.requests == {32768: 1}
    assert view.at == {5: {"vnet0"}, 1: {"int-br-ex"}, 2: {"vx-c0000202"}}
    # ovs-vswitchd numbers it as asked; then the row goes.
    prepared.ofport = [32768]
    cache.forget("Interface", "i4", "vnet1")
    assert cache.view(tables, "br-int").at[32768] == {"vnet1"}
    br.ports.remove(pprep)
    cache.forget("Bridge", "b1", "br-int", {"vnet1"})
    view = cache.view(tables, "br-int")
    assert 32768 not in view.at and not view.requests
