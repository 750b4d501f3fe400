import pytest

from ovsbr import model
from ovsbr.model import Topology, ValidationError


def net(**kw):
    return model.network_from_dict(kw)


@pytest.mark.parametrize("data, field", [
    ({"name": "bad name", "type": "local"}, "network.name"),
    ({"name": "-x", "type": "local"}, "network.name"),
    ({"name": "a" * 64, "type": "local"}, "network.name"),
    ({"name": "n", "type": "gre"}, "network n: type"),
    ({"name": "n", "type": "flat"}, "network n: physical_network"),
    ({"name": "n", "type": "vlan", "physical_network": "p"}, "network n: segmentation_id"),
    ({"name": "n", "type": "vlan", "physical_network": "p", "segmentation_id": 0},
     "network n: segmentation_id"),
    ({"name": "n", "type": "vlan", "physical_network": "p", "segmentation_id": 4095},
     "network n: segmentation_id"),
    ({"name": "n", "type": "vxlan", "segmentation_id": 16777216}, "network n: segmentation_id"),
    ({"name": "n", "type": "vxlan", "segmentation_id": True}, "network n: segmentation_id"),
    ({"name": "n", "type": "local", "segmentation_id": 5}, "network n: segmentation_id"),
    ({"name": "n", "type": "local", "physical_network": "p"}, "network n: physical_network"),
    ({"name": "n", "type": "local", "mtu": 67}, "network n: mtu"),
    ({"name": "n", "type": "local", "colour": "red"}, "network.colour"),
])
def test_bad_networks_name_the_field(data, field):
    with pytest.raises(ValidationError) as e:
        model.network_from_dict(data)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_good_networks():
    assert net(name="v", type="vlan", physical_network="physnet1",
               segmentation_id="4094").segmentation_id == 4094
    assert net(name="x", type="vxlan", segmentation_id=16777215).segmentation_id == 16777215
    assert net(name="l.1_a-b", type="local", mtu=9000).mtu == 9000


@pytest.mark.parametrize("mac, ok", [
    ("52:54:00:12:34:56", "52:54:00:12:34:56"),
    ("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"),
    ("01:00:5e:00:00:01", None), ("ff:ff:ff:ff:ff:ff", None),
    ("00:00:00:00:00:00", None), ("52:54:00:12:34", None), ("zz:54:00:12:34:56", None),
])
def test_mac(mac, ok):
    if ok:
        assert model.normalize_mac("mac", mac) == ok
    else:
        with pytest.raises(ValidationError):
            model.normalize_mac("mac", mac)


@pytest.mark.parametrize("data, field", [
    ({"name": "p", "network": "n"}, "port p: device"),
    ({"name": "p", "network": "n", "device": "a" * 16}, "port p: device"),
    ({"name": "p", "network": "n", "device": "a/b"}, "port p: device"),
    ({"name": "p", "network": "n", "device": "tap0", "iface_id": "x y"}, "port p: iface_id"),
    ({"name": "p", "network": "n", "device": "tap0", "port_security": "maybe"},
     "port p: port_security"),
    ({"name": "p", "network": "n", "device": "t", "ips": ["192.0.2.300"]}, "port p: ips"),
    ({"name": "p", "network": "n", "device": "t", "ips": ["224.0.0.1"]}, "port p: ips"),
    ({"name": "p", "network": "n", "device": "t", "ips": ["0.0.0.0"]}, "port p: ips"),
    ({"name": "p", "network": "n", "device": "t", "ips": 5}, "port p: ips"),
    ({"name": "p", "network": "n", "device": "t", "ips": ["192.0.2.1"] * 17}, "port p: ips"),
])
def test_bad_ports(data, field):
    with pytest.raises(ValidationError) as e:
        model.port_from_dict(data)
    assert e.value.field == field


def _doc(networks, ports=()):
    return {"networks": list(networks), "ports": list(ports)}


@pytest.mark.parametrize("doc, field", [
    (_doc([{"name": "a", "type": "flat", "physical_network": "p"},
           {"name": "b", "type": "flat", "physical_network": "p"}]),
     "network b: physical_network"),
    (_doc([{"name": "a", "type": "vlan", "physical_network": "p", "segmentation_id": 5},
           {"name": "b", "type": "vlan", "physical_network": "p", "segmentation_id": 5}]),
     "network b: segmentation_id"),
    (_doc([{"name": "a", "type": "vxlan", "segmentation_id": 5},
           {"name": "b", "type": "vxlan", "segmentation_id": 5}]),
     "network b: segmentation_id"),
    (_doc([{"name": "a", "type": "local"}], [{"name": "p", "network": "zz", "device": "t"}]),
     "port p: network"),
    (_doc([{"name": "a", "type": "local"}], [{"name": "p", "network": "a", "device": "t"},
                                             {"name": "q", "network": "a", "device": "t"}]),
     "port q: device"),
    (_doc([{"name": "a", "type": "local"}, {"name": "a", "type": "local"}]), "network a"),
    (_doc([{"name": "a", "type": "local"}],
          [{"name": "p", "network": "a", "device": "t", "ips": ["192.0.2.5"]},
           {"name": "q", "network": "a", "device": "u", "ips": ["192.0.2.5"]}]),
     "port q: ips"),
])
def test_topology_cross_checks(doc, field):
    with pytest.raises(ValidationError) as e:
        Topology.from_dict(doc)
    assert e.value.field == field


def test_same_vlan_on_two_physnets_is_fine_and_round_trips():
    doc = _doc([{"name": "a", "type": "vlan", "physical_network": "p1", "segmentation_id": 5},
                {"name": "b", "type": "vlan", "physical_network": "p2", "segmentation_id": 5}],
               [{"name": "p", "network": "a", "device": "tap0", "mac": "52:54:00:00:00:01"}])
    topo = Topology.from_dict(doc)
    again = Topology.from_dict(topo.to_dict())
    assert again == topo
    assert again.ports["p"].port_security is True


def test_port_ips_are_canonical_and_round_trip():
    port = model.port_from_dict({"name": "p", "network": "n", "device": "t",
                                 "ips": "2001:DB8::1, 192.0.2.5,192.0.2.5"})
    assert port.ips == ("192.0.2.5", "2001:db8::1")
    assert model.port_from_dict(port.to_dict()) == port
    assert port.to_dict()["ips"] == ["192.0.2.5", "2001:db8::1"]


def test_migrating_to_is_wired_on_both_hosts_and_validated():
    from ovsbr.model import Topology, ValidationError, port_from_dict
    port = port_from_dict({"name": "p", "network": "n", "device": "tap1", "host": "hv1",
                           "migrating_to": "hv2"})
    assert port.wired_on("hv1") and port.wired_on("hv2") and not port.wired_on("hv3")
    topo = Topology.from_dict({"networks": [{"name": "n", "type": "local"}],
                               "ports": [port.to_dict()]})
    assert "p" in topo.local_view("hv2").ports and "p" not in topo.local_view("hv3").ports
    for bad, words in (({"migrating_to": "hv1"}, "different"),
                       ({"host": None}, "needs the port's host"),
                       ({"migrating_to": "bad host"}, "host name")):
        data = {**port.to_dict(), **bad}
        data = {k: v for k, v in data.items() if v is not None}
        try:
            port_from_dict(data)
        except ValidationError as e:
            assert e.field == "port p: migrating_to" and words in e.message
        else:
            raise AssertionError(f"{bad} accepted")


def test_a_trailing_newline_is_not_part_of_a_valid_name():
    """``$`` in a pattern also matches before a final newline: every name,
    device, iface-id and host pattern must end at the string's end."""
    from ovsbr import validation

    for pattern, good in ((validation.NAME_RE, "net1"), (model.IFNAME_RE, "tap0"),
                          (model.IFACE_ID_RE, "3f7b1c2e"), (model.HOST_RE, "compute-1")):
        assert pattern.match(good) and not pattern.match(good + "\n"), pattern.pattern
    with pytest.raises(model.ValidationError, match="device"):
        model.port_from_dict({"name": "p", "network": "n", "device": "tap0\n"})
