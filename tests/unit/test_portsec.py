import dataclasses

import pytest

from ovsbr.drivers.base import Device
from ovsbr.drivers.linuxbridge import portsec
from ovsbr.drivers.linuxbridge.filters import PortFilters, port_filter
from ovsbr.exceptions import FeatureMissing
from ovsbr.model import Network, Port, Topology
from ovsbr.secgroups.policy import port_policy


def port_filter_of(device, mac, ips):
    return portsec.PortFilter(device, port_policy(Port("p", "n", device, mac=mac, ips=ips)))


def _rules(doc, chain):
    return [c["add"]["rule"]["expr"] for c in doc["nftables"]
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def test_ruleset_replaces_the_table_in_one_batch():
    doc = portsec.ruleset("ovsbr_x", [])
    verbs = [next(iter(c)) for c in doc["nftables"]]
    assert verbs[:3] == ["add", "delete", "add"]  # atomic replace, no missing-table error
    base = doc["nftables"][3]["add"]["chain"]
    assert base["hook"] == "prerouting" and base["policy"] == "accept"


def test_port_with_mac_and_ips_gets_its_own_chain():
    f = port_filter_of("vnet0", "52:54:00:00:00:01", ("192.0.2.5", "2001:db8::5"))
    doc = portsec.ruleset("ovsbr_x", [f])
    jump = _rules(doc, portsec.BASE_CHAIN)
    assert jump == [[{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@ports"}}]]
    elements = [c["add"]["element"]["elem"] for c in doc["nftables"]
                if "element" in c.get("add", {})]
    assert elements == [[["vnet0", {"jump": {"target": "port-vnet0"}}]]]
    rules = _rules(doc, "port-vnet0")
    assert rules[0] == [{"match": {"op": "==", "left": {"payload": {
        "protocol": "ether", "field": "type"}}, "right": {"set": ["vlan", "8021ad"]}}},
        {"drop": None}]
    rules = rules[1:]
    assert rules[0][0]["match"]["op"] == "!=" and rules[0][-1] == {"drop": None}
    arp_ok = rules[1][1]["match"]["right"]
    assert arp_ok == {"set": ["0.0.0.0", "192.0.2.5"]}
    verdicts = [r[-1] for r in rules]
    # Every accept is followed, for its type, by a drop of the rest.
    assert verdicts.count({"drop": None}) == 4
    assert any(r[1]["match"]["right"] == {"set": [{"prefix": {"addr": "fe80::", "len": 10}},
                                                  "::", "2001:db8::5"]}
               for r in rules if r[0]["match"]["right"] == "ip6" and len(r) == 3)


def test_mac_only_port_checks_only_the_mac():
    rules = _rules(portsec.ruleset("t", [port_filter_of("v", "52:54:00:00:00:01", None)]),
                   "port-v")
    assert len(rules) == 2  # tags, then the MAC


def test_which_ports_are_filtered():
    def port_filter_for(port):
        return port_filter("v", port_policy(port))
    assert port_filter_for(Port("p", "n", "v")) is None  # nothing declared
    assert port_filter_for(Port("p", "n", "v", mac="52:54:00:00:00:01",
                                port_security=False)) is None
    f = port_filter_for(Port("p", "n", "v", mac="52:54:00:00:00:01", ips=("192.0.2.5",)))
    assert f == port_filter_of("v", "52:54:00:00:00:01", ("192.0.2.5",))


class FakeNft:
    """libnftables as NftPortSecurity uses it: records batches, refuses on demand."""

    def __init__(self):
        self.batches, self.refuse = [], False

    def json_cmd(self, doc):
        self.batches.append(doc["nftables"])
        return (1, "", "refused") if self.refuse else (0, "", "")


def _verbs(batch):
    return [(verb, kind) for c in batch for verb, body in c.items() for kind in body]


def test_a_port_change_is_one_batch_for_that_port_alone():
    ps = portsec.NftPortSecurity("t")
    ps._nft = nft = FakeNft()
    a = port_filter_of("va", "52:54:00:00:00:01", None)
    b = port_filter_of("vb", "52:54:00:00:00:02", ("192.0.2.2",))
    ps.apply({"va": a})
    assert _verbs(nft.batches[-1])[:3] == [("add", "table"), ("delete", "table"),
                                           ("add", "table")]  # the first write is whole
    ps.apply({"va": a, "vb": b}, devices={"vb"})
    assert _verbs(nft.batches[-1])[0] == ("add", "chain")
    assert all(c.get("add", {}).get("rule", {}).get("chain", "port-vb") == "port-vb"
               for c in nft.batches[-1])
    assert nft.batches[-1][-1]["add"]["element"]["elem"][0][0] == "vb"
    n = len(nft.batches)
    ps.apply({"va": a, "vb": b}, devices={"va", "vb"})  # nothing changed: no batch
    assert len(nft.batches) == n
    b2 = port_filter_of("vb", "52:54:00:00:00:03", None)
    ps.apply({"va": a, "vb": b2}, devices={"vb"})
    assert _verbs(nft.batches[-1])[0] == ("flush", "chain")  # changed: its chain refilled
    ps.apply({"vb": b2}, devices={"va"})
    assert _verbs(nft.batches[-1]) == [("delete", "element"), ("flush", "chain"),
                                       ("delete", "chain")]
    nft.refuse = True  # a refused batch: the whole table is tried next, in the same call
    with pytest.raises(FeatureMissing):
        ps.apply({"vb": b2, "va": a}, devices={"va"})
    assert _verbs(nft.batches[-1])[:3] == [("add", "table"), ("delete", "table"),
                                           ("add", "table")]


def test_security_groups_keep_the_whole_table():
    f = port_filter_of("va", "52:54:00:00:00:01", None)
    stateful = portsec.PortFilter("va", dataclasses.replace(f.policy, firewall=object()))
    assert portsec.port_changes("t", {"va": None}, {"va": stateful}) is None


class _RecordingPortSecurity:
    def check(self, _wanted):
        pass

    def apply(self, filters, force=False, devices=None):
        self.filters = dict(filters)


def test_a_port_not_bound_on_an_ovsbr_bridge_stays_filtered():
    """Fail closed: a port whose network or plug failed keeps its filter while
    its tap is still on an ovsbr bridge; a tap elsewhere, or one a bound port
    holds, is not filtered for it."""
    net = Network("n", "local")
    ports = {name: Port(name, "n", dev, mac=mac, ips=(ip,)) for name, dev, mac, ip in (
        ("bound", "t1", "52:54:00:00:00:01", "192.0.2.1"),
        ("stranded", "t2", "52:54:00:00:00:02", "192.0.2.2"),
        ("loose", "t3", "52:54:00:00:00:03", "192.0.2.3"),
        ("claims-t1", "t1", "52:54:00:00:00:04", "192.0.2.4"))}
    topo = Topology(networks={"n": net}, ports=ports)
    sec = _RecordingPortSecurity()
    filters = PortFilters(sec)
    on_bridge = {"t1": "ovsbr-n", "t2": "ovsbr-n"}
    filters.follow(topo, {"bound": Device("t1", network="n")}, None, lambda n: f"ovsbr-{n}",
                   on_bridge.get)
    filters.apply()
    assert set(sec.filters) == {"t1", "t2"}
    assert sec.filters["t1"].policy.mac == "52:54:00:00:00:01"
    assert sec.filters["t2"].policy.mac == "52:54:00:00:00:02"
    assert sec.filters["t2"].bridge == "ovsbr-n"
    # Its tap leaves the bridge (a device event): its filter goes.
    del on_bridge["t2"]
    filters.follow(topo, {"bound": Device("t1", network="n")}, {"stranded"},
                   lambda n: f"ovsbr-{n}", on_bridge.get)
    filters.apply()
    assert set(sec.filters) == {"t1"}
    # A bound port without port security holds its tap unfiltered: a port
    # in error naming the same tap does not filter it.
    open_port = dataclasses.replace(ports["bound"], port_security=False)
    topo = Topology(networks={"n": net}, ports={**ports, "bound": open_port})
    filters.follow(topo, {"bound": Device("t1", network="n")}, None, lambda n: f"ovsbr-{n}",
                   {"t1": "ovsbr-n"}.get)
    filters.apply()
    assert set(sec.filters) == set()
