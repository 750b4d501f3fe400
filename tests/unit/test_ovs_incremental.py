"""openvswitch: the view and the observation moved on by row notices equal
a whole look at the same rows, over random sequences of OVSDB and link
changes (the notices as python-ovs gives them: a Bridge update that only
changed its ports names the ports that joined or left)."""

import dataclasses
from types import SimpleNamespace as NS

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.agent import incremental
from ovsbr.drivers.openvswitch import observe
from ovsbr.drivers.openvswitch.view import RowCache
from ovsbr.drivers.rtnl import Link

NAMES = [f"t{i}" for i in range(6)]
IFACE_IDS = [None, "a", "b"]


class World:
    """OVSDB rows of br-int and br-ex, kernel links, and the cache under test
    fed the notices the changes make."""

    def __init__(self):
        self.ifaces, self.ports = {}, {}
        self.bridges = {"b-int": NS(uuid="b-int", name="br-int", ports=[],
                                    external_ids={"ovsbr-net-n1": "1 fp1",
                                                  "ovsbr-net-n2": "2 fp2"}),
                        "b-ex": NS(uuid="b-ex", name="br-ex", ports=[], external_ids={})}
        self.links: dict[str, Link] = {"lo": Link(1, "lo", None, None, None, 65536, None, True)}
        self.cache = RowCache()
        self.names: set[str] | None = set()
        self.seen = None
        self.serial = 0

    def tables(self):
        return {"Bridge": NS(rows=dict(self.bridges)), "Port": NS(rows=dict(self.ports)),
                "Interface": NS(rows=dict(self.ifaces))}

    def _notice(self, table, row):
        self.cache.forget(table, row.uuid, row.name)

    def _moved(self, bridge, before):
        after = {p.uuid for p in bridge.ports}
        names = set()
        for uuid in before ^ after:
            port = self.ports.get(uuid)
            if port is not None:
                names.add(port.name)
                names.update(i.name for i in port.interfaces)
        self.cache.forget("Bridge", bridge.uuid, bridge.name, names)

    # -- changes -------------------------------------------------------------
    def add_port(self, name, bridge, itype, iface_id, network, status, same_name):
        if any(i.name == name for i in self.ifaces.values()):
            return
        self.serial += 1
        ids = {"attached-mac": f"52:54:00:00:00:{self.serial % 256:02x}"}
        if iface_id:
            ids["iface-id"] = iface_id
        if status:
            ids["iface-status"] = status
        iface = NS(uuid=f"i{self.serial}", name=name, type=itype, ofport=[], error=[],
                   external_ids=ids, ofport_request=[])
        port_ids = {"ovsbr-network": network, "ovsbr-added": "true"} if network else {}
        port = NS(uuid=f"p{self.serial}", name=name if same_name else f"port-{name}",
                  interfaces=[iface], external_ids=port_ids)
        self.ifaces[iface.uuid], self.ports[port.uuid] = iface, port
        br = self.bridges[bridge]
        before = {p.uuid for p in br.ports}
        br.ports = [*br.ports, port]
        # python-ovs: every notice after the whole update is applied
        self._notice("Interface", iface)
        self._notice("Port", port)
        self._moved(br, before)

    def delete_port(self, k):
        if not self.ports:
            return
        port = sorted(self.ports.values(), key=lambda p: p.uuid)[k % len(self.ports)]
        br = next(b for b in self.bridges.values() if port in b.ports)
        before = {p.uuid for p in br.ports}
        br.ports = [p for p in br.ports if p is not port]
        del self.ports[port.uuid]
        for iface in port.interfaces:
            del self.ifaces[iface.uuid]
        self._moved(br, before)
        self._notice("Port", port)
        for iface in port.interfaces:
            self._notice("Interface", iface)

    def move_port(self, k):
        if not self.ports:
            return
        port = sorted(self.ports.values(), key=lambda p: p.uuid)[k % len(self.ports)]
        src = next(b for b in self.bridges.values() if port in b.ports)
        dst = self.bridges["b-ex" if src.uuid == "b-int" else "b-int"]
        befores = ({p.uuid for p in src.ports}, {p.uuid for p in dst.ports})
        src.ports = [p for p in src.ports if p is not port]
        dst.ports = [*dst.ports, port]
        self._moved(src, befores[0])
        self._moved(dst, befores[1])

    def set_iface(self, k, ofport, error, status, request=None):
        if not self.ifaces:
            return
        iface = sorted(self.ifaces.values(), key=lambda i: i.uuid)[k % len(self.ifaces)]
        iface.ofport = [ofport] if ofport else []
        iface.ofport_request = [request] if request else []
        iface.error = [error] if error else []
        ids = dict(iface.external_ids)
        ids.pop("iface-status", None)
        if status:
            ids["iface-status"] = status
        iface.external_ids = ids
        self._notice("Interface", iface)

    def mark_port(self, k, network):
        if not self.ports:
            return
        port = sorted(self.ports.values(), key=lambda p: p.uuid)[k % len(self.ports)]
        port.external_ids = {"ovsbr-network": network, "ovsbr-added": "true"} if network \
            else {}
        self._notice("Port", port)

    def record_network(self, lid):
        br = self.bridges["b-int"]
        br.external_ids = dict(br.external_ids, **{f"ovsbr-net-n{lid}": f"{lid} fp{lid}"})
        self.cache.forget("Bridge", br.uuid, br.name)  # external_ids: not ports alone

    def set_link(self, name, present, up, kind):
        old = self.links.get(name)
        if present:
            index = old.index if old is not None else 100 + NAMES.index(name)
            self.links[name] = Link(index, name, kind, None, None, 1500,
                                    f"fe:00:00:00:00:{index % 256:02x}", up)
        else:
            self.links.pop(name, None)
        if self.names is not None:
            self.names.add(name)

    # -- what the driver does per event ------------------------------------------
    def look(self):
        changed = self.cache.take_changed()
        names = None if changed is None or self.names is None else changed | self.names
        self.names = set()
        view = self.cache.view(self.tables(), "br-int")
        if names is None or self.seen is None or self.seen[0] is not view:
            self.seen = (view, observe.observe(view, self.links.values()))
        else:
            observe.see_change(self.seen[1], view, self.links.get, names)
        return view, self.seen[1]


change = st.one_of(
    st.tuples(st.just("add_port"), st.sampled_from(NAMES), st.sampled_from(["b-int", "b-ex"]),
              st.sampled_from(["", "", "internal", "patch"]), st.sampled_from(IFACE_IDS),
              st.sampled_from([None, "n1", "n2"]), st.sampled_from([None, "active", "inactive"]),
              st.booleans()),
    st.tuples(st.just("delete_port"), st.integers(0, 9)),
    st.tuples(st.just("move_port"), st.integers(0, 9)),
    st.tuples(st.just("set_iface"), st.integers(0, 9), st.sampled_from([None, 1, 2, 7]),
              st.sampled_from([None, "No such device"]),
              st.sampled_from([None, "active", "inactive"]),
              st.sampled_from([None, 32768, 32769])),
    st.tuples(st.just("mark_port"), st.integers(0, 9), st.sampled_from([None, "n1", "n2"])),
    st.tuples(st.just("record_network"), st.integers(3, 4)),
    st.tuples(st.just("set_link"), st.sampled_from(NAMES), st.booleans(), st.booleans(),
              st.sampled_from(["tun", "tun", None, "bridge", "openvswitch"])),
)


@given(steps=st.lists(st.lists(change, min_size=1, max_size=3), min_size=1, max_size=12))
@settings(max_examples=600, deadline=None)
def test_moved_on_equals_a_whole_look(steps):
    world = World()
    world.look()
    for batch in steps:
        for name, *args in batch:  # several changes between two looks
            getattr(world, name)(*args)
        view, seen = world.look()
        whole = RowCache().view(world.tables(), "br-int")
        for field in ("networks", "vm_ifaces", "ofports", "errors", "tunnels", "names",
                      "at", "requests"):
            assert getattr(view, field) == getattr(whole, field), field
        full = observe.observe(whole, world.links.values())
        assert dataclasses.asdict(seen) == dataclasses.asdict(full)
        assert seen.iface_ids == incremental.iface_index(full.devices)
