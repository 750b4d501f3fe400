"""Status back to Neutron and the store changes Neutron makes, as values."""

import uuid

from ovsbr.model import Network, Port, Topology
from ovsbr.neutron import status, sync

P1, P2, P3 = (str(uuid.UUID(int=i)) for i in (1, 2, 3))
NET = str(uuid.UUID(int=100))


def doc(**ports):
    return {"ports": {p: {"status": s} for p, s in ports.items()}}


def test_agent_states_become_neutron_statuses_for_live_hosts_only():
    statuses = {"c1": {"ports": {P1: {"status": "bound"}, P2: {"status": "waiting"},
                                 "operator-port": {"status": "bound"}}},
                "c2": {"ports": {P3: {"status": "error", "reason": "x"}}},
                "gone": {"ports": {P3: {"status": "bound"}}}}
    now = status.current(statuses, ["c1", "c2"])
    assert now == {(P1, "c1"): "ACTIVE", (P2, "c1"): "DOWN", (P3, "c2"): "ERROR"}


def test_only_changes_are_sent():
    before = {(P1, "c1"): "ACTIVE", (P2, "c1"): "DOWN"}
    now = {(P1, "c1"): "ACTIVE", (P2, "c1"): "ACTIVE", (P3, "c2"): "DOWN"}
    assert status.changes(before, now) == [status.Change(P2, "c1", "ACTIVE"),
                                           status.Change(P3, "c2", "DOWN")]
    assert status.changes(now, now) == []


def test_garbage_documents_are_skipped():
    assert status.current({"c1": "x", "c2": {"ports": []},
                           "c3": {"ports": {P1: "bound"}}}, ["c1", "c2", "c3"]) == {}


def topo() -> Topology:
    t = Topology()
    t.networks[NET] = Network(NET, "vxlan", segmentation_id=1001)
    t.networks["mine"] = Network("mine", "local")
    t.ports[P1] = Port(P1, NET, "tap1", host="c1")
    t.ports[P2] = Port(P2, NET, "tap2", host="c1")
    t.ports["own"] = Port("own", "mine", "tapown")
    return t


def test_converge_touches_only_neutrons_objects():
    t = topo()
    want_net = {NET: Network(NET, "vxlan", segmentation_id=1001, mtu=1450)}
    want_ports = {P1: Port(P1, NET, "tap1", host="c1"), P3: Port(P3, NET, "tap3", host="c2")}
    counts = sync.Counts()
    sync.converge(want_net, want_ports, counts)(t)
    assert set(t.ports) == {P1, P3, "own"} and set(t.networks) == {NET, "mine"}
    assert t.networks[NET].mtu == 1450
    assert (counts.added, counts.changed, counts.removed) == (1, 1, 1)
    t.validate()


def test_remove_network_takes_its_ports():
    t = topo()
    sync.remove_network(NET)(t)
    assert set(t.ports) == {"own"} and set(t.networks) == {"mine"}


def test_put_port_brings_its_network():
    t = Topology()
    net, port = Network(NET, "vxlan", segmentation_id=7), Port(P1, NET, "tap1", host="c1")
    sync.put_port(net, port)(t)
    assert t.networks == {NET: net} and t.ports == {P1: port}


def test_migrations_follow_neutrons_inactive_bindings():
    t = topo()
    sync.set_migrations({P1: "c2", "own": "c9"})(t)
    assert t.ports[P1].migrating_to == "c2" and t.ports["own"].migrating_to is None
    # An update of the port on the same host keeps the migration...
    sync.put_port(t.networks[NET], Port(P1, NET, "tap1", mac="52:54:00:00:00:09",
                                        host="c1"))(t)
    assert t.ports[P1].migrating_to == "c2" and t.ports[P1].mac == "52:54:00:00:00:09"
    # ...activation on the destination ends it; the source's binding, left
    # inactive until Nova deletes it, is the next one.
    sync.put_port(t.networks[NET], Port(P1, NET, "tap1", host="c2"))(t)
    assert t.ports[P1].migrating_to is None
    sync.set_migrations({P1: "c1"})(t)
    assert t.ports[P1].migrating_to == "c1"
    sync.set_migrations({})(t)
    assert t.ports[P1].migrating_to is None
    t.validate()
