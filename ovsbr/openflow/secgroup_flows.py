"""Security groups as OpenFlow: a port's :class:`~ovsbr.secgroups.policy.Firewall`
compiled into conntrack flows (pure; see :mod:`.tables` for the layout).

A frame from a filtered port enters ``EGRESS_CT`` with the port's number in
``REG_PORT``; a frame to one enters ``INGRESS_CT`` the same way, from its
forwarding flow or its flood bucket. In both directions:

* ``*_CT``: DHCP and neighbour discovery pass statelessly, as Neutron's
  agents let them (a VM's DHCP server replies and router advertisements
  drop); other IP goes through conntrack in the port's zone.
* ``*_RULES``: invalid packets and connections marked dead drop; replies
  and related packets (ICMP errors) of tracked connections pass; the
  first packet of a connection, and every later packet in its original
  direction, passes only if a rule still allows it. A packet of an
  established connection that no rule allows any more marks the connection
  (``ct_mark``) and drops, so deleting a rule cuts the connections it
  allowed, both ways, at their next packet (the way Neutron's openvswitch
  firewall does it).
* ``*_ACCEPT``: new connections are committed; then on to learning
  (egress) or out of the port (ingress).

Rules belong to a port's *profile*, its set of security groups, not to the
port: they match ``REG_PROFILE``, which the port's entry flows load with
``REG_PORT``. Ports in the same groups share one copy of the rules
(:func:`profile_flows`), so a port with three groups of ten rules costs its
few entry flows, as a port without groups does, and a rule change rewrites
its profiles' rules and no port's flows (the shape of Calico's profiles;
Neutron's openvswitch firewall writes every rule for every port). A
profile's number is derived from its groups' names (:func:`stable_ids`),
not from its rules, for the same reason the conjunctions' ids are.

Remote-group rules are conjunctions, one per (remote group, direction,
ethertype) on the bridge: the members' addresses are one clause, shared by
every profile (:func:`member_flows`), and each profile's rules naming that
group the other (matched on the profile), so N members, P profiles and M
rules cost N + P x M flows instead of P x N x M. A conjunction's id is
derived from its key (:func:`stable_ids`), never read back from the switch,
and stays put while other groups come and go: an id that moved would, for
a moment, leave a conjunction without its other half, and established
connections checked in that moment would be cut.
"""

from __future__ import annotations

import ipaddress
import zlib

from ovsbr.openflow.tables import (
    EGRESS_ACCEPT,
    EGRESS_CT,
    EGRESS_RULES,
    ETH_SRC,
    INGRESS_ACCEPT,
    INGRESS_CT,
    INGRESS_RULES,
    REG_PORT,
    REG_PROFILE,
    Flow,
    m,
)
from ovsbr.secgroups import policy as pp

# ct_state bits (Nicira extension).
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
MARK_DEAD = 1  # ct_mark of a connection whose rule is gone

PRIO_DENY = 410  # *_CT: a VM acting as DHCP server or router
PRIO_EXCEPT = 400  # *_CT: DHCP client, neighbour discovery
PRIO_TRACK = 100  # *_CT: everything else that is IP goes to conntrack
PRIO_CT_DROP = 300  # *_RULES: invalid, or marked dead
PRIO_CT_PASS = 290  # *_RULES: replies and related packets
PRIO_RULE = 200  # *_RULES: a rule with a prefix (or no remote)
PRIO_CONJ = 190  # *_RULES: a remote-group rule, as a conjunction
PRIO_KILL = 100  # *_RULES: established, no rule allows it any more
PRIO_COMMIT = 100  # *_ACCEPT: a new connection

ConjKey = tuple[str, str, int]  # (remote group, direction, ethertype)

ICMPV6_ND_IN = (130, 131, 132, 133, 134, 135, 136, 143)  # MLD, RS, RA, NS, NA, MLDv2
ICMPV6_ND_OUT = (130, 131, 132, 133, 135, 136, 143)  # the same without RA
ICMPV6_RA = 134
DHCP6_CLIENT, DHCP6_SERVER = 546, 547

PORT_FIELD = {pp.IPPROTO_TCP: "tcp_dst", pp.IPPROTO_UDP: "udp_dst",
              pp.IPPROTO_SCTP: "sctp_dst"}
ICMP_FIELDS = {pp.ETH_IPV4: ("icmpv4_type", "icmpv4_code"),
               pp.ETH_IPV6: ("icmpv6_type", "icmpv6_code")}
# The other end's address: the source of what comes in, the destination of
# what goes out.
REMOTE_FIELD = {(pp.INGRESS, pp.ETH_IPV4): "ipv4_src", (pp.INGRESS, pp.ETH_IPV6): "ipv6_src",
                (pp.EGRESS, pp.ETH_IPV4): "ipv4_dst", (pp.EGRESS, pp.ETH_IPV6): "ipv6_dst"}
RULES = {pp.INGRESS: INGRESS_RULES, pp.EGRESS: EGRESS_RULES}
ACCEPT = {pp.INGRESS: INGRESS_ACCEPT, pp.EGRESS: EGRESS_ACCEPT}

_OUT = (("output_reg", REG_PORT),)


def enter(ofport: int, profile: int) -> tuple[tuple, ...]:
    """Actions that take a frame into a filtered port's tables: its zone and
    output port, and its profile's rules."""
    return (("set_field", REG_PORT, ofport), ("set_field", REG_PROFILE, profile))


def deliver(ofport: int, profile: int) -> tuple[tuple, ...]:
    """A flood bucket to a filtered port: through its ingress tables."""
    return (*enter(ofport, profile), ("resubmit", INGRESS_CT))


def _ct(table: int | None = None, commit: bool = False, mark: int | None = None) -> tuple:
    """Conntrack in the zone REG_PORT names; ``table``: recirculate there."""
    return ("ct", commit, table, mark)


def _udp(eth_type: int, src: int, dst: int | None = None) -> dict:
    match = {"eth_type": eth_type, "ip_proto": pp.IPPROTO_UDP, "udp_src": src}
    if dst is not None:
        match["udp_dst"] = dst
    return match


def _icmp6(icmp_type: int) -> dict:
    return {"eth_type": pp.ETH_IPV6, "ip_proto": pp.IPPROTO_ICMPV6, "icmpv6_type": icmp_type}


def shared_flows() -> list[Flow]:
    """The flows every filtered port shares (they match REG_PORT's port's zone)."""
    v4, v6 = pp.ETH_IPV4, pp.ETH_IPV6
    flows = [Flow(EGRESS_CT, PRIO_DENY, m(**match)) for match in (
        _udp(v4, pp.DHCP_SERVER), _udp(v6, DHCP6_SERVER), _icmp6(ICMPV6_RA))]
    flows += [Flow(EGRESS_CT, PRIO_EXCEPT, m(**match), goto=ETH_SRC) for match in (
        _udp(v4, pp.DHCP_CLIENT, pp.DHCP_SERVER), _udp(v6, DHCP6_CLIENT, DHCP6_SERVER),
        *(_icmp6(t) for t in ICMPV6_ND_OUT))]
    flows += [Flow(INGRESS_CT, PRIO_EXCEPT, m(**match), actions=_OUT) for match in (
        _udp(v4, pp.DHCP_SERVER, pp.DHCP_CLIENT), _udp(v6, DHCP6_SERVER, DHCP6_CLIENT),
        *(_icmp6(t) for t in ICMPV6_ND_IN))]
    for eth_type in (v4, v6):
        flows.append(Flow(EGRESS_CT, PRIO_TRACK, m(eth_type=eth_type),
                          actions=(_ct(EGRESS_RULES),)))
        # The frame may come tracked from its sender's egress zone.
        flows.append(Flow(INGRESS_CT, PRIO_TRACK, m(eth_type=eth_type),
                          actions=(("ct_clear",), _ct(INGRESS_RULES))))
    flows.append(Flow(INGRESS_CT, 0, (), actions=_OUT))  # ARP and other non-IP
    for rules, accept in ((EGRESS_RULES, EGRESS_ACCEPT), (INGRESS_RULES, INGRESS_ACCEPT)):
        flows += [
            Flow(rules, PRIO_CT_DROP, m(ct_state=(CT_TRK | CT_INV, CT_TRK | CT_INV))),
            Flow(rules, PRIO_CT_DROP, m(ct_state=(CT_TRK, CT_TRK), ct_mark=MARK_DEAD)),
            Flow(rules, PRIO_CT_PASS, m(ct_state=(CT_TRK | CT_EST | CT_RPL,
                                                  CT_TRK | CT_EST | CT_RPL | CT_INV)),
                 goto=accept),
            Flow(rules, PRIO_CT_PASS, m(ct_state=(CT_TRK | CT_REL, CT_TRK | CT_REL | CT_INV)),
                 goto=accept),
        ]
        # ct needs its flow to match IP (Open vSwitch refuses it otherwise).
        flows += [Flow(rules, PRIO_KILL, m(eth_type=eth_type, ct_state=(
                       CT_TRK | CT_EST, CT_TRK | CT_EST | CT_RPL)),
                       actions=(_ct(commit=True, mark=MARK_DEAD),)) for eth_type in (v4, v6)]
    for eth_type in (v4, v6):
        commit = m(eth_type=eth_type, ct_state=(CT_TRK | CT_NEW, CT_TRK | CT_NEW))
        flows += [Flow(EGRESS_ACCEPT, PRIO_COMMIT, commit, actions=(_ct(commit=True),),
                       goto=ETH_SRC),
                  Flow(INGRESS_ACCEPT, PRIO_COMMIT, commit,
                       actions=(_ct(commit=True), *_OUT))]
    flows += [Flow(EGRESS_ACCEPT, 0, (), goto=ETH_SRC), Flow(INGRESS_ACCEPT, 0, (), actions=_OUT)]
    return flows


def port_masks(lo: int, hi: int) -> list[int | tuple[int, int]]:
    """A port range as the fewest (value, mask) matches (exact ports as ints)."""
    out: list[int | tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while lo + size - 1 > hi:
            size >>= 1
        out.append(lo if size == 1 else (lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out


def rule_matches(rule: pp.Allow) -> list[dict]:
    """The rule's matches without the port and the remote group's addresses."""
    base: dict = {"eth_type": rule.ethertype}
    if rule.protocol is not None:
        base["ip_proto"] = rule.protocol
    if rule.icmp is not None and rule.protocol in (pp.IPPROTO_ICMP, pp.IPPROTO_ICMPV6):
        type_field, code_field = ICMP_FIELDS[rule.ethertype]
        base[type_field] = rule.icmp[0]
        if rule.icmp[1] is not None:
            base[code_field] = rule.icmp[1]
    if rule.remote is not None:
        base[REMOTE_FIELD[rule.direction, rule.ethertype]] = _prefix(rule.remote)
    if rule.ports is None or rule.protocol not in PORT_FIELD:
        return [base]
    field = PORT_FIELD[rule.protocol]
    return [dict(base, **{field: value}) for value in port_masks(*rule.ports)]


def _prefix(prefix: str) -> object:
    net = ipaddress.ip_network(prefix)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def conj_keys(firewall: pp.Firewall) -> frozenset[ConjKey]:
    """The (remote group, direction, ethertype) of a port's remote-group rules."""
    return firewall.remote_keys


def stable_ids(keys: set[tuple]) -> dict[tuple, int]:
    """A number per key (a conjunction's, a profile's): its digest, probing on
    in key order when two collide (about one bridge in four million with a
    thousand keys), so a number moves only in that case, never because
    another key came or went. Never 0 (an unloaded register)."""
    taken: set[int] = set()
    ids = {}
    for key in sorted(keys):
        conj = zlib.crc32(repr(key).encode()) & 0x7FFFFFFF or 1
        while conj in taken:
            conj = conj % 0x7FFFFFFF + 1
        taken.add(conj)
        ids[key] = conj
    return ids


def member_flows(groups: dict[ConjKey, tuple[str, ...]], ids: dict[ConjKey, int]
                 ) -> list[Flow]:
    """The shared clause: a remote group's members' addresses, once per bridge,
    plus each conjunction's verdict. An address in several groups is one
    flow with a conjunction action for each (a switch keeps one flow per
    table, priority and match)."""
    clauses: dict[tuple[int, tuple], list[tuple]] = {}
    flows = []
    for key, members in sorted(groups.items()):
        _, direction, ethertype = key
        table = RULES[direction]
        field = REMOTE_FIELD[direction, ethertype]
        for address in members:
            clauses.setdefault((table, m(eth_type=ethertype, **{field: address})), []).append(
                ("conjunction", ids[key], 1, 2))
        flows.append(Flow(table, PRIO_CONJ, m(conj_id=ids[key]), goto=ACCEPT[direction]))
    flows += [Flow(table, PRIO_CONJ, match, actions=tuple(sorted(acts)))
              for (table, match), acts in clauses.items()]
    return flows


def profile_flows(profile: int, firewall: pp.Firewall, ids: dict[ConjKey, int]) -> list[Flow]:
    """A profile's rules, in both directions, once per bridge for all its
    ports; its remote-group rules as the profile's clause of the
    conjunctions ``ids`` numbers."""
    port = {REG_PROFILE: profile}
    flows = [Flow(RULES[r.direction], PRIO_RULE, m(**port, **match), goto=ACCEPT[r.direction])
             for r in firewall.rules if r.group is None for match in rule_matches(r)]
    clauses: dict[tuple[int, tuple], list[tuple]] = {}
    for rule in firewall.rules:
        if rule.group is None:
            continue
        conj = ("conjunction", ids[rule.group, rule.direction, rule.ethertype], 2, 2)
        for match in rule_matches(rule):
            clauses.setdefault((RULES[rule.direction], m(**port, **match)), []).append(conj)
    flows += [Flow(table, PRIO_CONJ, match, actions=tuple(sorted(set(acts))))
              for (table, match), acts in clauses.items()]
    return flows
