"""Status back to Neutron and the store changes Neutron makes, as values."""

import random
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


def read_status(heads: dict, keys: dict) -> dict:
    """What EtcdStore.read_status makes of these head and port-key documents."""
    out: dict = {}
    for host in set(heads) | set(keys):
        head = heads.get(host, {})
        ports = head.get("ports", {}) if isinstance(head, dict) else {}
        out[host] = {**(head if isinstance(head, dict) else {}),
                     "ports": {**(ports if isinstance(ports, dict) else {}),
                               **keys.get(host, {})}}
    return out


def test_tracker_agrees_with_a_full_read_after_any_events():
    rng = random.Random(5)
    hosts, names = ["c1", "c2", "c3"], [P1, P2, P3, "operator-port"]
    docs = [{"status": s} for s in ("bound", "waiting", "error", "weird")] + ["junk"]
    for _ in range(200):
        tracker, heads, keys, live, view = status.Tracker(), {}, {}, set(), {}
        for _ in range(30):
            op, host, name = rng.randrange(7), rng.choice(hosts), rng.choice(names)
            if op <= 1:
                doc = rng.choice(docs)
                keys.setdefault(host, {})[name] = doc
                tracker.port(host, name, doc)
            elif op == 2:
                keys.get(host, {}).pop(name, None)
                tracker.port(host, name, None)
            elif op == 3:  # an old agent's whole document, or a new one's head
                doc = rng.choice([{"driver": "x"}, {"ports": {n: rng.choice(docs) for n in
                                                               rng.sample(names, 2)}}, "junk"])
                heads[host] = doc
                tracker.head(host, doc)
            elif op == 4:
                heads.pop(host, None)
                tracker.head(host, None)
            elif op == 5:
                live = set(rng.sample(hosts, rng.randrange(4)))
                tracker.live(live)
            else:  # the watch lost: everything read again
                tracker.clear()
                for h, doc in heads.items():
                    tracker.head(h, doc)
                for h, ports in keys.items():
                    for n, doc in ports.items():
                        tracker.port(h, n, doc)
            if rng.random() < 0.5:
                for key, value in tracker.take().items():
                    if value is None:
                        view.pop(key, None)
                    else:
                        view[key] = value
                assert view == status.current(read_status(heads, keys), live)


def test_tracker_names_only_what_moved():
    tracker = status.Tracker()
    tracker.live(["c1"])
    tracker.port("c1", P1, {"status": "waiting"})
    tracker.port("c1", P2, {"status": "bound"})
    assert tracker.take() == {(P1, "c1"): "DOWN", (P2, "c1"): "ACTIVE"}
    tracker.port("c1", P1, {"status": "waiting", "reason": "no device yet"})  # same status
    tracker.port("c1", P2, {"status": "bound"})
    assert tracker.take() == {}
    tracker.port("c1", P1, {"status": "bound"})
    assert tracker.take() == {(P1, "c1"): "ACTIVE"}
    tracker.live([])  # the host's lease lapsed: its ports' statuses are history
    assert tracker.take() == {(P1, "c1"): None, (P2, "c1"): None}
    tracker.again((P3, "c1"))
    assert tracker.take() == {(P3, "c1"): None}
