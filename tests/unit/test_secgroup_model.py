"""Security groups as desired state: canonical rules, errors that name the field."""

import pytest

from ovsbr.model import Topology, ValidationError
from ovsbr.secgroups import model as sgm


def _rule(**kw):
    return sgm.rule_from_dict({"direction": "ingress", **kw})


def test_protocol_names_numbers_and_any_are_one_form():
    assert _rule(protocol="tcp").protocol == _rule(protocol=6).protocol == 6
    assert _rule(protocol="any").protocol is None and _rule().protocol is None
    assert _rule(ethertype="IPv6", protocol="icmp").protocol == 58  # Neutron's alias
    assert _rule(protocol="tcp").id == _rule(protocol="6").id  # id from content


def test_whole_port_range_and_anywhere_prefix_are_no_restriction():
    full = _rule(protocol="tcp", port_range_min=1, port_range_max=65535)
    assert full.port_range_min is None and full.content() == _rule(protocol="tcp").content()
    assert _rule(remote_ip_prefix="0.0.0.0/0").remote_ip_prefix is None
    assert _rule(remote_ip_prefix="192.0.2.7/24").remote_ip_prefix == "192.0.2.0/24"


@pytest.mark.parametrize("fields, field", [
    ({"direction": "up"}, "direction"),
    ({"ethertype": "IPX"}, "ethertype"),
    ({"protocol": "tcpx"}, "protocol"),
    ({"protocol": 256}, "protocol"),
    ({"protocol": "udp", "port_range_min": 90, "port_range_max": 80}, "port_range_max"),
    ({"protocol": "icmp", "port_range_min": 80}, "port_range_min"),
    ({"protocol": "tcp", "icmp_type": 8}, "icmp_type"),
    ({"protocol": "icmp", "icmp_code": 0}, "icmp_code"),
    ({"ethertype": "IPv4", "protocol": "icmpv6"}, "protocol"),
    ({"remote_ip_prefix": "2001:db8::/32"}, "remote_ip_prefix"),
    ({"remote_ip_prefix": "192.0.2.0/24", "remote_group": "g"}, "remote_group"),
    ({"colour": "red"}, "rule.colour"),
])
def test_bad_rules_name_the_field(fields, field):
    with pytest.raises(ValidationError) as e:
        sgm.rule_from_dict({"direction": "ingress", **fields})
    assert e.value.field.endswith(field)


def test_a_group_refuses_the_same_rule_twice():
    with pytest.raises(ValidationError, match="already exists"):
        sgm.group_from_dict({"name": "g", "rules": [
            {"direction": "egress", "protocol": "tcp", "id": "a"},
            {"direction": "egress", "protocol": 6, "id": "b"}]})


def _doc(**port):
    return {"networks": [{"name": "n", "type": "local"}],
            "security_groups": [{"name": "web", "rules": [
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 80,
                 "remote_group": "web"}]}],
            "ports": [{"name": "p", "network": "n", "device": "t", "mac": "52:54:00:00:00:01",
                       "ips": ["192.0.2.1"], "security_groups": ["web"], **port}]}


def test_round_trip_and_members_over_every_host():
    topo = Topology.from_dict(_doc(host="h2"))
    assert Topology.from_dict(topo.to_dict()) == topo
    assert topo.local_view("h1").group_members() == {"web": ("192.0.2.1",)}
    assert topo.local_view("h1").ports == {}


@pytest.mark.parametrize("port, field, message", [
    ({"security_groups": ["nope"]}, "security_groups", "unknown security group"),
    ({"mac": None}, "security_groups", "mac"),
    ({"port_security": False}, "security_groups", "port security"),
])
def test_ports_refer_to_groups_that_exist_and_can_be_filtered(port, field, message):
    doc = _doc(**port)
    doc["ports"][0] = {k: v for k, v in doc["ports"][0].items() if v is not None}
    with pytest.raises(ValidationError, match=message) as e:
        Topology.from_dict(doc)
    assert e.value.field.endswith(field)


def test_remote_group_must_exist():
    doc = _doc()
    doc["security_groups"][0]["rules"][0]["remote_group"] = "other"
    with pytest.raises(ValidationError, match="unknown security group 'other'"):
        Topology.from_dict(doc)
