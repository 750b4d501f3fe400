import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.agent.overlay import OverlayCache, overlays
from ovsbr.exceptions import StoreError
from ovsbr.model import Topology
from ovsbr.store.mirror import Mirror
from tests.unit import test_store_mirror as mirror_test


def _topo(hosts):
    topo = Topology.from_dict({
        "networks": [{"name": "blue", "type": "vxlan", "segmentation_id": 10},
                     {"name": "red", "type": "vxlan", "segmentation_id": 20},
                     {"name": "loc", "type": "local"}],
        "ports": [{"name": "a", "network": "blue", "device": "v", "host": "hv1",
                   "mac": "52:54:00:00:00:01"},
                  {"name": "b", "network": "blue", "device": "v", "host": "hv2",
                   "mac": "52:54:00:00:00:02"},
                  {"name": "c", "network": "red", "device": "w", "host": "hv3"},
                  {"name": "d", "network": "loc", "device": "x", "host": "hv2"}]})
    topo.hosts = hosts
    return topo


HOSTS = {"hv1": {"local_ip": "198.51.100.1"}, "hv2": {"local_ip": "198.51.100.2"},
         "hv3": {"local_ip": "198.51.100.3"}}


def test_flood_list_holds_only_hosts_with_ports_on_the_network():
    ov = overlays(_topo(HOSTS), "hv1", "198.51.100.1")
    assert ov["blue"].vteps == {"198.51.100.2"} and ov["blue"].vni == 10
    assert ov["blue"].macs == (("52:54:00:00:00:02", "198.51.100.2"),)
    assert ov["red"].vteps == frozenset()  # hv1 has no red port: no tunnels for red
    assert "loc" not in ov


def test_a_host_whose_lease_expired_drops_out():
    hosts = dict(HOSTS)
    del hosts["hv2"]
    ov = overlays(_topo(hosts), "hv1", "198.51.100.1")
    assert ov["blue"].vteps == frozenset() and ov["blue"].macs == ()


def test_no_local_port_no_tunnels():
    ov = overlays(_topo(HOSTS), "hv3", "198.51.100.3")
    assert ov["blue"].vteps == frozenset()  # hv3 has no blue port
    assert ov["red"].vteps == frozenset()  # the only red port is hv3's own


def test_own_ports_and_endpoint_are_never_remote():
    ov = overlays(_topo(HOSTS), "hv2", "198.51.100.2")
    assert ov["blue"].vteps == {"198.51.100.1"}


def test_live_migration_destination_joins_the_flood_list_not_the_macs():
    topo = _topo(HOSTS)
    topo.ports["a"] = dataclasses.replace(topo.ports["a"], migrating_to="hv3")
    # hv3 wires port a ahead of the switch: it gets blue's tunnels...
    ov3 = overlays(topo, "hv3", "198.51.100.3")
    assert ov3["blue"].vteps == {"198.51.100.1", "198.51.100.2"}
    # ...and the others flood to it, while a's MAC stays with hv1.
    ov2 = overlays(topo, "hv2", "198.51.100.2")
    assert ov2["blue"].vteps == {"198.51.100.1", "198.51.100.3"}
    assert ("52:54:00:00:00:01", "198.51.100.1") in ov2["blue"].macs
    assert all(ip != "198.51.100.3" for _, ip in ov2["blue"].macs)


# The agent's cache against the function, over any sequence of store
# events as the etcd watcher's mirror applies them (its own property test
# holds the mirror to the full build).
_HOST_IPS = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
_host_events = st.one_of(
    st.builds(lambda h, ip: ("PUT", f"{mirror_test.PREFIX}hosts/hv{h}",
                             json.dumps({"local_ip": ip})),
              st.integers(0, 2), st.sampled_from(_HOST_IPS)),
    st.integers(0, 2).map(lambda h: ("DELETE", f"{mirror_test.PREFIX}hosts/hv{h}", "")))
_moving_ports = st.builds(
    lambda name, net, host, to, mac: mirror_test._put("ports", {
        "name": name, "network": net, "device": f"tap{name}", "host": host,
        "migrating_to": to if to != host else None, "mac": mac}),
    st.sampled_from(["p0", "p1", "p4"]), st.sampled_from(["n0", "n1"]),
    st.sampled_from(["hv0", "hv1", "hv2"]), st.sampled_from([None, "hv0", "hv1", "hv2"]),
    st.sampled_from([None, "52:54:00:00:00:07"]))


_VXLAN = [{"name": f"n{i}", "type": "vxlan", "segmentation_id": 10 + i} for i in range(2)]
_overlay_events = st.one_of(
    _moving_ports, _moving_ports, _host_events,
    st.sampled_from(["p0", "p1", "p4"]).map(
        lambda n: ("DELETE", f"{mirror_test.BASE}ports/{n}", "")),
    st.builds(lambda i, kind, seg: mirror_test._put("networks", {
        "name": f"n{i}", "type": kind, "segmentation_id": seg if kind != "local" else None}),
        st.integers(0, 1), st.sampled_from(["vxlan", "geneve", "local"]), st.integers(10, 13)))


@given(st.lists(st.lists(_overlay_events, min_size=1, max_size=4), max_size=12))
@settings(deadline=None, max_examples=300)
def test_the_cache_equals_overlays_on_every_topology_the_watcher_builds(batches):
    keys = {mirror_test.BASE + "revision": "1"}
    keys.update(mirror_test._put("networks", n)[1:] for n in _VXLAN)
    mirror = Mirror(mirror_test.PREFIX, keys, {})
    cache = OverlayCache("hv0", "198.51.100.1")
    for batch in batches:
        mirror.apply(batch)
        try:
            topo = mirror.build()
        except StoreError:
            continue
        assert cache(topo) == overlays(topo, "hv0", "198.51.100.1")


def test_a_port_change_computes_only_its_network_again():
    nets = [{"name": f"n{i}", "type": "vxlan", "segmentation_id": i + 1} for i in range(5)]
    keys = {f"{mirror_test.BASE}networks/{n['name']}": json.dumps(n) for n in nets}
    for i in range(20):
        keys[f"{mirror_test.BASE}ports/p{i}"] = json.dumps({
            "name": f"p{i}", "network": f"n{i % 5}", "device": f"t{i}",
            "host": f"hv{i % 3}", "mac": f"52:54:00:00:01:{i:02x}"})
    hosts = {f"{mirror_test.PREFIX}hosts/hv{h}": json.dumps({"local_ip": ip})
             for h, ip in enumerate(_HOST_IPS)}
    mirror = Mirror(mirror_test.PREFIX, keys, hosts)
    cache = OverlayCache("hv0", _HOST_IPS[0])
    cache(mirror.build())
    assert cache.computed == 5
    mirror.apply([("PUT", f"{mirror_test.BASE}ports/p1", json.dumps({
        "name": "p1", "network": "n1", "device": "t1", "host": "hv2",
        "mac": "52:54:00:00:02:01"}))])
    topo = mirror.build()
    assert cache(topo) == overlays(topo, "hv0", _HOST_IPS[0])
    assert cache.computed == 6, "only n1 again"
    # A host leaving changes every flood list: all again.
    mirror.apply([("DELETE", f"{mirror_test.PREFIX}hosts/hv2", "")])
    topo = mirror.build()
    assert cache(topo) == overlays(topo, "hv0", _HOST_IPS[0])
    assert cache.computed == 11
