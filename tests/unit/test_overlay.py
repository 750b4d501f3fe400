import dataclasses

from ovsbr.agent.overlay import overlays
from ovsbr.model import Topology


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
