from ovsbr.drivers.linuxbridge import portsec
from ovsbr.drivers.linuxbridge.driver import port_filter
from ovsbr.model import Port
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
    assert jump == [[{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                "right": "vnet0"}}, {"jump": {"target": "port-vnet0"}}]]
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
