"""One port policy, compiled twice: both datapaths admit the same sources."""

import ipaddress

import pytest

from ovsbr.drivers.linuxbridge import portsec
from ovsbr.model import Port
from ovsbr.openflow import pipeline as pl
from ovsbr.secgroups import policy as pp

MAC = "52:54:00:00:00:05"


def test_what_is_filtered():
    assert pp.port_policy(Port("p", "n", "v")) is None  # nothing declared
    assert pp.port_policy(Port("p", "n", "v", mac=MAC, port_security=False)) is None
    assert pp.port_policy(Port("p", "n", "v", mac=MAC)) == pp.PortPolicy(MAC, None)
    only_ips = pp.port_policy(Port("p", "n", "v", ips=("192.0.2.5",)))
    assert only_ips.mac is None and pp.Admit(pp.ETH_IPV4, "192.0.2.5") in only_ips.admit


def test_anti_spoof_exceptions_are_written_once():
    admits = pp.anti_spoof(())
    assert admits == (pp.Admit(pp.ETH_ARP, "0.0.0.0"),
                      pp.Admit(pp.ETH_IPV4, "0.0.0.0", (68, 67)),
                      pp.Admit(pp.ETH_IPV6, "fe80::/10"), pp.Admit(pp.ETH_IPV6, "::"))


def _ovs_admitted(policy):
    flows = pl.port_flows(pl.PortBinding(5, 7, policy.mac, policy))
    result = set()
    for f in flows:
        if f.priority != pl.PRIO_PORT_IP:
            continue
        m = dict(f.match)
        src = m.get("arp_spa") or m.get("ipv4_src") or m.get("ipv6_src")
        if isinstance(src, tuple):  # (address, mask): back to ADDR/LEN
            mask = int(ipaddress.ip_address(src[1]))
            src = f"{src[0]}/{bin(mask).count('1')}"
        udp = (m["udp_src"], m["udp_dst"]) if "udp_src" in m else None
        result.add((m["eth_type"], src, udp))
    return result


def _nft_admitted(policy):
    doc = portsec.ruleset("t", [portsec.PortFilter("vnet0", policy)])
    names = {"arp": pp.ETH_ARP, "ip": pp.ETH_IPV4, "ip6": pp.ETH_IPV6}
    result = set()
    for cmd in doc["nftables"]:
        rule = cmd.get("add", {}).get("rule")
        if not rule or rule["chain"] != "port-vnet0" or rule["expr"][-1] != {"accept": None}:
            continue
        expr = rule["expr"]
        ethertype = names[expr[0]["match"]["right"]]
        right = expr[1]["match"]["right"]
        values = right["set"] if isinstance(right, dict) and "set" in right else [right]
        udp = (expr[2]["match"]["right"], expr[3]["match"]["right"]) if len(expr) == 5 \
            else None
        for v in values:
            src = f"{v['prefix']['addr']}/{v['prefix']['len']}" if isinstance(v, dict) else v
            result.add((ethertype, src, udp))
    return result


@pytest.mark.parametrize("ips", [(), ("192.0.2.5",), ("2001:db8::5",),
                                 ("192.0.2.5", "192.0.2.6", "2001:db8::5")])
def test_both_compilers_admit_exactly_the_policy(ips):
    policy = pp.port_policy(Port("p", "n", "v", mac=MAC, ips=ips))
    want = {(a.ethertype, a.source, a.udp) for a in policy.admit}
    assert _ovs_admitted(policy) == want
    assert _nft_admitted(policy) == want
