"""A port's policy: one normalised value that both datapaths compile.

The openvswitch driver turns a :class:`PortPolicy` into OpenFlow matches
(:func:`ovsbr.openflow.pipeline.port_flows`), the linuxbridge driver into an
nftables chain (:mod:`ovsbr.drivers.linuxbridge.portsec`). The decision
whether a port is filtered at all, and the exceptions anti-spoofing must
leave open (DHCP discovery, ARP probes, IPv6 link-local and duplicate
address detection, as Neutron's agents allow them), are made here and only
here, so the two datapaths cannot drift apart.

A port with security groups also carries a :class:`Firewall`: its groups'
rules, deduplicated with their port ranges merged, and each remote group
resolved to its members' addresses. The value knows nothing of conntrack
zones, chains or conjunction ids: those belong to the compilers.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Iterable

from ovsbr.model import Port, Topology
from ovsbr.secgroups.model import Rule

ETH_ARP, ETH_IPV4, ETH_IPV6 = 0x0806, 0x0800, 0x86DD
# The frame types whose source address anti-spoofing checks, in the order
# the compilers emit them.
SOURCE_CHECKED = (ETH_ARP, ETH_IPV4, ETH_IPV6)
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP = 6, 17, 1, 58, 132
INGRESS, EGRESS = "ingress", "egress"
DHCP_CLIENT, DHCP_SERVER = 68, 67
UNSPECIFIED4, UNSPECIFIED6 = "0.0.0.0", "::"
LINK_LOCAL6 = "fe80::/10"


def hash_once(value) -> int:
    """A frozen dataclass's hash, computed on first use and kept.

    The OpenFlow compiler keys its caches by ports' bindings and policies at
    every reconcile; their fields' hashes, computed again each time (tuples
    do not keep theirs), were most of a 1,000-port bridge's update
    (cProfile: 7 of 10 ms per new port).
    """
    h = value.__dict__.get("_hash")
    if h is None:
        h = hash(tuple(getattr(value, f.name) for f in dataclasses.fields(value)))
        object.__setattr__(value, "_hash", h)
    return h


@dataclasses.dataclass(frozen=True, order=True)
class Admit:
    """One ARP/IPv4/IPv6 source a port may use.

    ``source`` is an address, or a prefix written ``ADDR/LEN``; ``udp``
    narrows it to one (source port, destination port) pair.
    """

    ethertype: int
    source: str
    udp: tuple[int, int] | None = None

    @property
    def prefix(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        """The source as a network when it is a prefix, else None."""
        return ipaddress.ip_network(self.source) if "/" in self.source else None


@dataclasses.dataclass(frozen=True)
class Allow:
    """One stateful allow rule of a port, in the port's own terms.

    ``direction`` is the direction of the connection's first packet
    (ingress: towards the VM). ``ports``: destination port range (tcp, udp,
    sctp). ``icmp``: (type, code or None). ``remote``: the other end as a
    prefix ``ADDR/LEN`` (None: anywhere), or ``group``: a remote group
    whose members' addresses :attr:`Firewall.groups` holds.
    """

    direction: str
    ethertype: int
    protocol: int | None = None
    ports: tuple[int, int] | None = None
    icmp: tuple[int, int | None] | None = None
    remote: str | None = None
    group: str | None = None

    def matches(self, direction: str, ethertype: int, protocol: int, dport: int | None,
                icmp: tuple[int, int] | None, remote: str, groups: dict[str, frozenset]
                ) -> bool:
        """The reference semantics the compilers must agree with (tests)."""
        if (direction, ethertype) != (self.direction, self.ethertype):
            return False
        if self.protocol is not None and protocol != self.protocol:
            return False
        if self.ports is not None and not (dport is not None and
                                           self.ports[0] <= dport <= self.ports[1]):
            return False
        if self.icmp is not None and (icmp is None or icmp[0] != self.icmp[0] or (
                self.icmp[1] is not None and icmp[1] != self.icmp[1])):
            return False
        if self.remote is not None and ipaddress.ip_address(remote) not in \
                ipaddress.ip_network(self.remote):
            return False
        return self.group is None or remote in groups.get(self.group, frozenset())


@dataclasses.dataclass(frozen=True)
class Firewall:
    """A port's stateful filter: what no rule allows is dropped both ways.

    ``groups``: (remote group, its members' addresses of both families),
    for the groups the rules name, sorted. ``profile``: the names of the
    security groups the rules come from, sorted: what ports with the same
    rules share, and stays the same when a rule changes (the OpenFlow
    compiler numbers a bridge's profiles, and keeps each one's rules once).
    """

    rules: tuple[Allow, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    profile: tuple[str, ...] = ()

    # A firewall holds its remote groups' addresses (a thousand, for a group
    # of a thousand ports): hashing them again was most of a warm
    # 1,000-port reconcile (cProfile, 0.2 s).
    def __hash__(self) -> int:
        return hash_once(self)

    @functools.cached_property
    def remote_keys(self) -> frozenset[tuple[str, str, int]]:
        """(remote group, direction, ethertype) of the remote-group rules."""
        return frozenset((r.group, r.direction, r.ethertype) for r in self.rules if r.group)

    @functools.cached_property
    def rules_only(self) -> Firewall:
        """The same rules without members: what a port's own flows depend on.
        A remote group's membership changes every port's firewall value but
        none of their rule flows (members are the bridge's shared clause), so
        the OpenFlow compiler caches a profile's flows under this."""
        return _bare(self.rules) if self.groups or self.profile else self

    def members(self, group: str, ethertype: int) -> tuple[str, ...]:
        """A remote group's members' addresses of one family."""
        return self._by_family.get((group, ethertype), ())

    @functools.cached_property
    def _by_family(self) -> dict[tuple[str, int], tuple[str, ...]]:
        # Once per value: the compilers ask for every port at every
        # reconcile, and parsing 1,000 addresses per port and key made a
        # 1,000-port reconcile take minutes (py-spy, bench secgroups).
        split: dict[tuple[str, int], list[str]] = {}
        for name, addresses in self.groups:
            for a in addresses:
                family = ETH_IPV6 if ":" in a else ETH_IPV4
                split.setdefault((name, family), []).append(a)
        return {k: tuple(v) for k, v in split.items()}

    def allows(self, direction: str, ethertype: int, protocol: int, remote: str,
               dport: int | None = None, icmp: tuple[int, int] | None = None) -> bool:
        """Whether a new connection is allowed (reference semantics, for tests)."""
        groups = {name: frozenset(addrs) for name, addrs in self.groups}
        return any(r.matches(direction, ethertype, protocol, dport, icmp, remote, groups)
                   for r in self.rules)


@dataclasses.dataclass(frozen=True)
class PortPolicy:
    """What a port with port security may send, and receive.

    A secured port never sends 802.1Q/802.1ad tagged frames. ``mac``: the
    only source MAC (None: any). ``admit``: the ARP sender and IPv4/IPv6
    source addresses allowed, every other frame of those types dropped
    (None: not checked). ``firewall``: the port's security groups (None:
    no stateful filtering).
    """

    mac: str | None
    admit: tuple[Admit, ...] | None
    firewall: Firewall | None = None

    def __hash__(self) -> int:
        return hash_once(self)

    @functools.cached_property
    def rules_only(self) -> PortPolicy:
        """The same policy with its firewall's rules only (no members): what
        a port's flows depend on (see :attr:`Firewall.rules_only`)."""
        if self.firewall is None:
            return self
        return _policy_of(self.mac, self.admit, self.firewall.rules_only)

    def sources(self, ethertype: int) -> tuple[Admit, ...]:
        """The admitted sources of one frame type, in order."""
        return tuple(a for a in self.admit or () if a.ethertype == ethertype)


def anti_spoof(ips: tuple[str, ...]) -> tuple[Admit, ...]:
    """The sources a port with these addresses may use.

    Besides its own addresses: DHCP discovery from 0.0.0.0 (client port to
    server port only), ARP probes with sender 0.0.0.0 (RFC 5227), IPv6
    link-local and the unspecified source of duplicate address detection.
    """
    admits = [Admit(ETH_ARP, UNSPECIFIED4),
              Admit(ETH_IPV4, UNSPECIFIED4, (DHCP_CLIENT, DHCP_SERVER)),
              Admit(ETH_IPV6, LINK_LOCAL6), Admit(ETH_IPV6, UNSPECIFIED6)]
    for ip in ips:
        if ipaddress.ip_address(ip).version == 4:
            admits.append(Admit(ETH_ARP, ip))
    for ip in ips:
        if ipaddress.ip_address(ip).version == 4:
            admits.append(Admit(ETH_IPV4, ip))
        else:
            admits.append(Admit(ETH_IPV6, ip))
    return tuple(admits)


def port_policy(port: Port, topo: Topology | None = None) -> PortPolicy | None:
    """The port's policy; None when port security has nothing to enforce.

    Port security off, or on with neither a MAC nor addresses declared,
    filters nothing: a port whose identity is unknown cannot be checked.
    ``topo`` holds the port's security groups and their members; a port
    with groups needs it (the model guarantees groups come with a MAC).
    """
    if not port.port_security or (port.mac is None and port.ips is None):
        return None
    if not port.security_groups:
        return _policy(port.mac, port.ips, None)
    if topo is None:
        raise ValueError(f"port {port.name}: security groups need the topology")
    # One firewall per set of groups per topology: a thousand ports in the
    # same groups share it, and building its key (every rule, every member
    # address) once per port was 50 ms of each 1,000-port reconcile.
    firewall = topo.firewalls.get(port.security_groups)
    if firewall is None:
        rules = tuple(rule for name in port.security_groups
                      for rule in topo.security_groups[name].rules)
        members = topo.group_members()
        remote = sorted({r.remote_group for r in rules if r.remote_group})
        firewall = topo.firewalls[port.security_groups] = _firewall(
            rules, tuple((g, members.get(g, ())) for g in remote),
            tuple(sorted(set(port.security_groups))))
    return _policy(port.mac, port.ips, firewall)


@functools.lru_cache(maxsize=1024)
def _firewall(rules: tuple[Rule, ...], groups: tuple, profile: tuple[str, ...]) -> Firewall:
    """Memoised across topologies, so a revision that changed nothing of a
    group set's hands the compilers the same value (an identity check)."""
    return Firewall(allows(rules), groups, profile)


@functools.lru_cache(maxsize=1024)
def _bare(rules: tuple[Allow, ...]) -> Firewall:
    return Firewall(rules)


@functools.lru_cache(maxsize=32768)
def _policy(mac: str | None, ips: tuple[str, ...] | None,
            firewall: Firewall | None) -> PortPolicy:
    """Memoised: the drivers ask for every bound port's policy at every sync,
    and parsing the addresses cost 7.7 ms per 1,000 ports with one IP each
    (0.2 ms from the cache); values are frozen, so sharing is safe."""
    return PortPolicy(mac, None if ips is None else anti_spoof(ips), firewall)


@functools.lru_cache(maxsize=32768)
def _policy_of(mac: str | None, admit: tuple[Admit, ...] | None,
               firewall: Firewall | None) -> PortPolicy:
    return PortPolicy(mac, admit, firewall)


def allows(rules: Iterable[Rule]) -> tuple[Allow, ...]:
    """The rules as :class:`Allow` values: each once, port ranges merged.

    Rules that differ only in their port range become one rule per run of
    overlapping or adjacent ranges, so three groups that each open 80-89,
    85-99 and 100 cost one range, 80-100.
    """
    ranges: dict[Allow, list[tuple[int, int]]] = {}
    whole: set[Allow] = set()
    for r in rules:
        icmp = None if r.icmp_type is None else (r.icmp_type, r.icmp_code)
        base = Allow(r.direction, ETH_IPV4 if r.ethertype == "IPv4" else ETH_IPV6,
                     r.protocol, None, icmp, r.remote_ip_prefix, r.remote_group)
        if r.port_range_min is None:
            whole.add(base)
        else:
            ranges.setdefault(base, []).append((r.port_range_min, r.port_range_max))
    out = set(whole)
    for base, spans in ranges.items():
        if base in whole:
            continue  # the same rule without a range already allows every port
        for lo, hi in _merge(spans):
            out.add(dataclasses.replace(base, ports=(lo, hi)))
    return tuple(sorted(out, key=_allow_key))


def _allow_key(a: Allow) -> tuple:
    none_last = (lambda v: (v is None, v))  # noqa: E731
    return (a.direction, a.ethertype, none_last(a.protocol), none_last(a.ports),
            none_last(a.icmp), none_last(a.remote), none_last(a.group))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]
