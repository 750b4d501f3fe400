"""Security groups for Linux bridges: a port's Firewall as nftables rules (pure).

Bridged IPv4/IPv6 is tracked by the kernel's bridge conntrack
(nf_conntrack_bridge). Unlike the openvswitch pipeline, a frame between
two VMs meets conntrack once, so both checks share one connection: the
sender's egress chain and the receiver's ingress chain, jumped to from one
``forward`` base chain, each ``return`` what they allow and drop the rest.
In each port chain, as in the OpenFlow tables:

* DHCP client and neighbour discovery pass statelessly; a VM's DHCP server
  replies and router advertisements drop;
* invalid packets and connections marked dead drop; replies and related
  packets pass;
* the first packet of a connection, and every later one in its original
  direction, passes only while a rule allows it; an established one that
  no rule allows any more marks its connection dead and drops, so deleting
  a rule cuts its connections.

Remote groups are named sets (one per group and family) shared by every
port: members + rules elements, not their product. Each bridge with a
filtered port gets its own conntrack zone, set before conntrack sees the
frame, so tenants' overlapping addresses never share a connection.
"""

from __future__ import annotations

import ipaddress
import zlib

from ovsbr.drivers.linuxbridge.nft_expr import ether_type as _ether
from ovsbr.drivers.linuxbridge.nft_expr import match as _match
from ovsbr.drivers.linuxbridge.nft_expr import payload as _payload
from ovsbr.secgroups import policy as pp

FORWARD_CHAIN = "sg-forward"
# The bridge family's "filter" priority, before br_netfilter's own forward
# hook at 0: where br_netfilter is loaded (Docker, Kubernetes and Neutron's
# old iptables firewall load it), it takes bridged IP at 0 through the IPv4
# hooks and resumes the bridge's chains only above 0. Seen in the
# stock-kernel VM: a chain at 0 was never reached and nothing was filtered.
FORWARD_PRIORITY = -200
MARK_DEAD = 1
ZONE_MIN, ZONE_MAX = 1, 65535

PROTO = {pp.ETH_IPV4: "ip", pp.ETH_IPV6: "ip6"}
ICMP = {pp.ETH_IPV4: "icmp", pp.ETH_IPV6: "icmpv6"}
PORT_PROTO = {pp.IPPROTO_TCP: "tcp", pp.IPPROTO_UDP: "udp", pp.IPPROTO_SCTP: "sctp"}
SET_TYPE = {pp.ETH_IPV4: "ipv4_addr", pp.ETH_IPV6: "ipv6_addr"}
ND_OUT = ("mld-listener-query", "mld-listener-report", "mld-listener-done",
          "nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert", "mld2-listener-report")
ND_IN = (*ND_OUT, "nd-router-advert")


def _ct(key: str) -> dict:
    return {"ct": {"key": key}}


def _udp(proto: str, sport: int, dport: int | None = None) -> list[dict]:
    exprs = [_ether(proto), _match({"meta": {"key": "l4proto"}}, pp.IPPROTO_UDP),
             _match(_payload("udp", "sport"), sport)]
    if dport is not None:
        exprs.append(_match(_payload("udp", "dport"), dport))
    return exprs


def _icmp6(types: tuple[str, ...]) -> list[dict]:
    return [_ether("ip6"), _match({"meta": {"key": "l4proto"}}, pp.IPPROTO_ICMPV6),
            _match(_payload("icmpv6", "type"), {"set": list(types)})]


def set_name(group: str, ethertype: int) -> str:
    return f"g{4 if ethertype == pp.ETH_IPV4 else 6}-{group}"


def zones(bridges: list[str]) -> dict[str, int]:
    """A conntrack zone per bridge: its name's digest, probing on in name order
    when two collide, so a bridge keeps its zone while others come and go
    (zones that moved would reset the connections in them)."""
    taken: dict[int, str] = {}
    result = {}
    for bridge in sorted(set(bridges)):
        zone = ZONE_MIN + zlib.crc32(bridge.encode()) % (ZONE_MAX - ZONE_MIN + 1)
        while zone in taken:
            zone = ZONE_MIN if zone == ZONE_MAX else zone + 1
        taken[zone] = bridge
        result[bridge] = zone
    return result


def _rule_exprs(rule: pp.Allow) -> list[dict]:
    proto = PROTO[rule.ethertype]
    exprs = [_ether(proto)]
    if rule.protocol is not None:
        exprs.append(_match({"meta": {"key": "l4proto"}}, rule.protocol))
    if rule.ports is not None and rule.protocol in PORT_PROTO:
        lo, hi = rule.ports
        exprs.append(_match(_payload(PORT_PROTO[rule.protocol], "dport"),
                            lo if lo == hi else {"range": [lo, hi]}))
    if rule.icmp is not None:
        icmp = ICMP[rule.ethertype]
        exprs.append(_match(_payload(icmp, "type"), rule.icmp[0]))
        if rule.icmp[1] is not None:
            exprs.append(_match(_payload(icmp, "code"), rule.icmp[1]))
    field = "saddr" if rule.direction == pp.INGRESS else "daddr"
    if rule.remote is not None:
        net = ipaddress.ip_network(rule.remote)
        exprs.append(_match(_payload(proto, field), {"prefix": {
            "addr": str(net.network_address), "len": net.prefixlen}}))
    if rule.group is not None:
        exprs.append(_match(_payload(proto, field), "@" + set_name(rule.group, rule.ethertype)))
    return exprs


def _state_rules() -> list[list[dict]]:
    return [
        [_match(_ct("state"), "invalid", "in"), {"drop": None}],
        [_match(_ct("mark"), MARK_DEAD), {"drop": None}],
        [_match(_ct("direction"), "reply"), _match(_ct("state"), "established", "in"),
         {"return": None}],
        [_match(_ct("state"), "related", "in"), {"return": None}],
    ]


def port_chain(direction: str, firewall: pp.Firewall) -> list[list[dict]]:
    """The rules of one port's chain for one direction, in order."""
    # ARP and other non-IP frames are port security's business, not this.
    rules = [[_match(_payload("ether", "type"), {"set": ["ip", "ip6"]}, "!="),
              {"return": None}]]
    if direction == pp.EGRESS:
        rules += [[*_udp("ip", pp.DHCP_CLIENT, pp.DHCP_SERVER), {"return": None}],
                  [*_udp("ip6", 546, 547), {"return": None}],
                  [*_udp("ip", pp.DHCP_SERVER), {"drop": None}],
                  [*_udp("ip6", 547), {"drop": None}],
                  [*_icmp6(("nd-router-advert",)), {"drop": None}],
                  [*_icmp6(ND_OUT), {"return": None}]]
    else:
        rules += [[*_udp("ip", pp.DHCP_SERVER, pp.DHCP_CLIENT), {"return": None}],
                  [*_udp("ip6", 547, 546), {"return": None}],
                  [*_icmp6(ND_IN), {"return": None}]]
    rules += _state_rules()
    rules += [[*_rule_exprs(r), {"return": None}] for r in firewall.rules
              if r.direction == direction]
    rules.append([_match(_ct("state"), "established", "in"),
                  {"mangle": {"key": _ct("mark"), "value": MARK_DEAD}}, {"drop": None}])
    rules.append([{"drop": None}])
    return rules


def commands(table: str, filters: list[tuple[str, str, pp.Firewall]]) -> list[dict]:
    """Sets, the forward chain and the port chains for (device, bridge, firewall)
    triples (the zones are :func:`zone_rules`, for the prerouting chain)."""
    family = "bridge"
    cmds: list[dict] = []
    sets: dict[str, tuple[int, tuple[str, ...]]] = {}
    for _, _, fw in filters:
        for r in fw.rules:
            if r.group is not None:
                sets[set_name(r.group, r.ethertype)] = (r.ethertype,
                                                        fw.members(r.group, r.ethertype))
    for name, (ethertype, members) in sorted(sets.items()):
        spec = {"family": family, "table": table, "name": name, "type": SET_TYPE[ethertype]}
        if members:
            spec["elem"] = list(members)
        cmds.append({"add": {"set": spec}})
    cmds.append({"add": {"chain": {"family": family, "table": table, "name": FORWARD_CHAIN,
                                   "type": "filter", "hook": "forward",
                                   "prio": FORWARD_PRIORITY, "policy": "accept"}}})
    for key, direction in (("iifname", pp.EGRESS), ("oifname", pp.INGRESS)):
        for device, _, fw in sorted(filters, key=lambda f: f[0]):
            chain = f"{direction[:2]}-{device}"
            cmds.append({"add": {"chain": {"family": family, "table": table, "name": chain}}})
            cmds.append({"add": {"rule": {"family": family, "table": table,
                                          "chain": FORWARD_CHAIN, "expr": [
                                              _match({"meta": {"key": key}}, device),
                                              {"jump": {"target": chain}}]}}})
            for expr in port_chain(direction, fw):
                cmds.append({"add": {"rule": {"family": family, "table": table,
                                              "chain": chain, "expr": expr}}})
    return cmds


def zone_rules(bridges: list[str]) -> list[list[dict]]:
    """Prerouting rules that put each filtered bridge's frames in its zone."""
    return [[_match({"meta": {"key": "ibrname"}}, bridge),
             {"mangle": {"key": _ct("zone"), "value": zone}}]
            for bridge, zone in sorted(zones(bridges).items())]
