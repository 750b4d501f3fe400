"""The integration bridge's tables, registers and flow values.

Every table is declared here with the match fields its flows may use and
the tables they may continue to (goto, resubmit or conntrack recirculation),
as Faucet's table declarations do; a unit test checks every flow the
compilers emit against them, so a flow that jumps backwards or matches a
field its table does not expect fails before it reaches a switch.

Frames from a VM port with security groups take a detour before learning
(``EGRESS_*``), and frames to such a port one before output
(``INGRESS_*``): conntrack in the port's own zone, its profile's rules,
then commit.
"""

from __future__ import annotations

import dataclasses

INGRESS = 0  # which network; anti-spoofing
EGRESS_CT = 1  # from a filtered port: into its conntrack zone
EGRESS_RULES = 2  # ... its security group rules
EGRESS_ACCEPT = 3  # ... commit new connections
ETH_SRC = 4  # source learning
ETH_DST = 5  # forwarding
INGRESS_CT = 6  # to a filtered port: into its conntrack zone
INGRESS_RULES = 7
INGRESS_ACCEPT = 8  # ... commit new connections, output
TABLES = (INGRESS, EGRESS_CT, EGRESS_RULES, EGRESS_ACCEPT, ETH_SRC, ETH_DST, INGRESS_CT,
          INGRESS_RULES, INGRESS_ACCEPT)

# The filtered port's OpenFlow port number, loaded when a frame enters the
# filter tables: its conntrack zone (the low 16 bits) in both directions,
# and where INGRESS_ACCEPT outputs. One zone per port, as OVN gives each
# logical port its own: a port's connections are its own state machine.
REG_PORT = "reg6"
# The port's profile (its set of security groups), loaded with REG_PORT: the
# rules tables match it, so ports in the same groups share one copy of their
# rules, and a port costs its entry flows alone (Calico's profiles in
# OpenFlow). Numbered per bridge, never 0.
REG_PROFILE = "reg7"
METADATA_MASK = 0xFFF
KIND_STATIC, KIND_LEARNED = 1, 2

_L2 = ("in_port", "eth_src", "eth_dst", "eth_type", "vlan_vid", "metadata")
_L3 = ("eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "arp_spa",
       "udp_src", "udp_dst", "tcp_dst", "sctp_dst", "icmpv4_type", "icmpv4_code",
       "icmpv6_type", "icmpv6_code")
_CT = ("ct_state", "ct_mark", "conj_id", "eth_type", REG_PORT, REG_PROFILE)


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    match: frozenset[str]
    next: frozenset[int]


SPECS = {
    INGRESS: Table("ingress", frozenset(_L2 + _L3 + ("tunnel_id",)),
                   frozenset({EGRESS_CT, ETH_SRC})),
    EGRESS_CT: Table("egress_ct", frozenset(_L3 + (REG_PORT,)),
                     frozenset({EGRESS_RULES, ETH_SRC})),
    EGRESS_RULES: Table("egress_rules", frozenset(_L3 + _CT), frozenset({EGRESS_ACCEPT})),
    EGRESS_ACCEPT: Table("egress_accept", frozenset(_CT), frozenset({ETH_SRC})),
    ETH_SRC: Table("eth_src", frozenset(("metadata", "eth_src", "in_port")),
                   frozenset({ETH_DST})),
    ETH_DST: Table("eth_dst", frozenset(("metadata", "eth_dst")), frozenset({INGRESS_CT})),
    INGRESS_CT: Table("ingress_ct", frozenset(_L3 + (REG_PORT,)),
                      frozenset({INGRESS_RULES})),
    INGRESS_RULES: Table("ingress_rules", frozenset(_L3 + _CT),
                         frozenset({INGRESS_ACCEPT})),
    INGRESS_ACCEPT: Table("ingress_accept", frozenset(_CT), frozenset()),
}


@dataclasses.dataclass(frozen=True)
class Flow:
    table: int
    priority: int
    match: tuple[tuple[str, object], ...]
    actions: tuple[tuple, ...] = ()  # apply-actions
    goto: int | None = None
    metadata: int | None = None  # write-metadata (value, metadata_mask)
    metadata_mask: int = METADATA_MASK
    idle_timeout: int = 0
    send_flow_rem: bool = False
    kind: int = KIND_STATIC

    def key(self) -> tuple:
        """Identity of the flow on the switch (table, priority, match)."""
        return (self.table, self.priority, self.match)


@dataclasses.dataclass(frozen=True)
class Group:
    group_id: int
    buckets: tuple[tuple[tuple, ...], ...]


def m(**kw) -> tuple[tuple[str, object], ...]:
    """A match in its canonical form: fields sorted, so equal matches are equal keys."""
    return tuple(sorted(kw.items()))


def next_tables(actions: tuple[tuple, ...], goto: int | None) -> set[int]:
    """The tables a flow or bucket continues to, for the declaration check."""
    found = {goto} if goto is not None else set()
    for act in actions:
        if act[0] == "resubmit":
            found.add(act[1])
        elif act[0] == "ct" and act[2] is not None:
            found.add(act[2])
    return found
