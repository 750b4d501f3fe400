"""The integration bridge's OpenFlow 1.3 pipeline, as pure data.

Every table id, priority and cookie lives here, and every flow ovsbr
installs is built here as a :class:`Flow` value, so the pipeline can be read
(and unit-tested) without a switch. The os-ken app only translates these
values into messages.

Tables (Faucet-style):

``INGRESS`` (0)
    Which network a frame belongs to. VM ports are access ports: an
    untagged frame gets its network's id in the metadata; a tagged frame
    from a VM is dropped (no VLAN hopping); with port security on and a
    declared MAC, only that source MAC is admitted, and with declared IPs
    only those IPv4/IPv6 sources and ARP sender addresses (plus what DHCP,
    duplicate-address detection and IPv6 link-local need): anti-spoofing.
    Uplinks (patch ports to
    a physical bridge) are trunks: VLAN ``V`` of physical network ``P`` maps
    to the vlan network with segment (P, V), untagged to P's flat network.
    This and the flood/output buckets below are the *only* places where
    802.1Q tags are pushed or popped: VLAN translation lives in one place.
    Tunnel ports (vxlan, geneve) map a tunnel id (VNI) to its network and
    mark the frame as come-from-tunnel (metadata bit 12).
    Anything else is dropped by the table-miss flow.
``ETH_SRC`` (1)
    Source learning. A known (network, source MAC, in_port) goes on; a miss
    is copied (truncated) to the controller *and* goes on, so a frame never
    waits for the controller, and a source is learned even when its
    destination is already known. Frames from tunnels are not learned:
    remote MACs come from the store, installed ahead of traffic.
``ETH_DST`` (2)
    Forwarding. A known (network, destination MAC) is output to its port
    (tagged for a vlan uplink); a miss floods through the network's group,
    which never leaves the network. Remote MACs of overlay networks go to
    their host's tunnel with the VNI set. A frame that came from a tunnel
    floods to local ports only (split horizon: hosts replicate to each
    other once, never onwards).

Metadata carries the network id (``lid``, 1-4095) between tables, and bit 12
for frames that came from a tunnel.
"""

from __future__ import annotations

import dataclasses
import functools

from ovsbr.openflow import secgroup_flows as sgf
from ovsbr.openflow.tables import (  # noqa: F401 - the pipeline's names, in one place
    EGRESS_CT,
    ETH_DST,
    ETH_SRC,
    INGRESS,
    INGRESS_CT,
    KIND_LEARNED,
    KIND_STATIC,
    METADATA_MASK,
    REG_PORT,
    TABLES,
    Flow,
    Group,
)
from ovsbr.openflow.tables import m as _m
from ovsbr.secgroups import policy as pp

# Priorities, highest first within each table.
PRIO_DROP_TAGGED = 300  # INGRESS: tagged frame on an access port
PRIO_PORT_IP = 250  # INGRESS: port security, a declared IP (ARP/IPv4/IPv6 source)
PRIO_PORT_IP_DROP = 240  # INGRESS: port security, any other ARP/IPv4/IPv6 source
PRIO_PORT_MAC = 200  # INGRESS: port security, in_port + declared eth_src
PRIO_PORT = 100  # INGRESS: in_port (or uplink VLAN) -> network
PRIO_LEARNED = 100  # ETH_SRC/ETH_DST: one MAC
PRIO_TUNNEL_SRC = 150  # ETH_SRC: from a tunnel, no learning
PRIO_FLOOD_LOCAL = 11  # ETH_DST: flood of a frame that came from a tunnel
PRIO_FLOOD = 10  # ETH_DST: network flood
PRIO_MISS = 0

OFPVID_PRESENT = 0x1000
OFPVID_NONE = 0x0000
FROM_TUNNEL = 0x1000  # metadata bit; also marks the local-only flood group id
TUNNEL_META_MASK = METADATA_MASK | FROM_TUNNEL
PACKET_IN_BYTES = 128  # enough for Ethernet + 802.1Q + ARP/IP headers
FLOOD_CHUNK = 128  # ports per flood group before a network's ports go in chunks
CHUNK_SHIFT = 16  # chunk group ids: (chunk + 1) << 16 | network id

# Cookies: the top 32 bits name the agent generation, so a restarted agent
# can install its flows and then delete exactly the previous generation's.
COOKIE_GEN_SHIFT = 32
COOKIE_GEN_MASK = 0xFFFFFFFF << COOKIE_GEN_SHIFT
MAX_LID = 4095


def cookie(generation: int, kind: int = KIND_STATIC) -> int:
    return ((generation & 0xFFFFFFFF) << COOKIE_GEN_SHIFT) | kind


@dataclasses.dataclass(frozen=True)
class PortBinding:
    """A VM port on the bridge, as the driver bound it.

    ``mac`` is the declared MAC (known to the tables from plug time);
    ``policy`` what port security enforces (None: nothing); ``profile``
    the number of its security groups' rules on the bridge
    (:func:`number_profiles`; 0: not numbered yet).
    """

    ofport: int
    lid: int
    mac: str | None = None
    policy: pp.PortPolicy | None = None
    profile: int = 0

    def __hash__(self) -> int:
        return pp.hash_once(self)

    @property
    def firewall(self) -> pp.Firewall | None:
        return None if self.policy is None else self.policy.firewall


ETH_ARP, ETH_IPV4, ETH_IPV6 = pp.ETH_ARP, pp.ETH_IPV4, pp.ETH_IPV6
# OpenFlow field of the source address, per checked frame type.
SOURCE_FIELD = {ETH_ARP: "arp_spa", ETH_IPV4: "ipv4_src", ETH_IPV6: "ipv6_src"}


def _source(admit: pp.Admit) -> object:
    """An address, or a prefix as the (address, mask) pair OpenFlow matches."""
    net = admit.prefix
    if net is None:
        return admit.source
    return (str(net.network_address), str(net.netmask))


LINK_LOCAL6 = _source(pp.Admit(ETH_IPV6, pp.LINK_LOCAL6))


@dataclasses.dataclass(frozen=True)
class UplinkBinding:
    """A network reachable through a trunk port (vid None = untagged)."""

    ofport: int
    lid: int
    vid: int | None


@dataclasses.dataclass(frozen=True)
class TunnelBinding:
    """An overlay network reachable through a tunnel port (one remote host)."""

    ofport: int
    lid: int
    vni: int
    macs: tuple[str, ...] = ()  # that host's declared MACs on the network


def _out(ofport: int, vid: int | None) -> tuple[tuple, ...]:
    """Output to a port; an uplink's VLAN is pushed here and nowhere else."""
    if vid is None:
        return (("output", ofport),)
    return (("push_vlan", 0x8100), ("set_field", "vlan_vid", vid | OFPVID_PRESENT),
            ("output", ofport))


def base_flows() -> list[Flow]:
    """Table-miss behaviour: drop at ingress, learn at ETH_SRC; the security
    group tables' shared flows (conntrack states, DHCP and ND exceptions)."""
    return [
        Flow(INGRESS, PRIO_MISS, ()),  # drop: unknown port or unknown VLAN
        Flow(ETH_SRC, PRIO_MISS, (), actions=(("controller", PACKET_IN_BYTES),),
             goto=ETH_DST),
        Flow(ETH_DST, PRIO_MISS, ()),
        *sgf.shared_flows(),
    ]


def profile_ids(ports: list[PortBinding]) -> dict[tuple[str, ...], int]:
    """A number for each set of security groups on one bridge, derived from
    its names (:func:`.secgroup_flows.stable_ids`): its ports' entry flows
    load it and its rules match it."""
    return sgf.stable_ids({p.firewall.profile for p in ports if p.firewall is not None})


def numbered(p: PortBinding, ids: dict[tuple[str, ...], int]) -> PortBinding:
    """The port with its profile's number from ``ids`` (:func:`profile_ids`)."""
    if p.firewall is None or p.profile == ids[p.firewall.profile]:
        return p
    return dataclasses.replace(p, profile=ids[p.firewall.profile])


def number_profiles(ports: list[PortBinding]) -> list[PortBinding]:
    """The ports with their profiles numbered for one bridge."""
    ids = profile_ids(ports)
    return [numbered(p, ids) for p in ports]


def _profile(p: PortBinding) -> int:
    """The port's profile number; a port not numbered with its bridge is
    numbered alone (unit tests, the compiled flow count)."""
    if p.profile or p.firewall is None:
        return p.profile
    return number_profiles([p])[0].profile


def port_flows(p: PortBinding) -> list[Flow]:
    """A VM port's own flows: entry, anti-spoofing, its MAC. Its rules are its
    profile's, shared with the bridge's other ports in the same groups
    (:func:`keyed_flows` adds them)."""
    # Every VM port is an access port, secured or not: a tagged frame from
    # a VM would otherwise meet the trunk's VLAN translation.
    flows = [Flow(INGRESS, PRIO_DROP_TAGGED,
                  _m(in_port=p.ofport, vlan_vid=(OFPVID_PRESENT, OFPVID_PRESENT)))]
    policy, profile = p.policy, _profile(p)
    if policy is not None and policy.admit is not None:
        flows += _anti_spoof_flows(p.ofport, p.lid, policy, profile)
    elif p.firewall is not None:
        # Nothing to check the sources against, but IP still goes through
        # the port's security groups.
        flows += [Flow(INGRESS, PRIO_PORT_IP, _m(in_port=p.ofport, eth_src=policy.mac,
                                                 eth_type=t),
                       actions=sgf.enter(p.ofport, profile), metadata=p.lid,
                       goto=EGRESS_CT)
                  for t in (ETH_IPV4, ETH_IPV6)]
    if policy is not None and policy.mac:
        flows.append(Flow(INGRESS, PRIO_PORT_MAC, _m(in_port=p.ofport, eth_src=policy.mac),
                          metadata=p.lid, goto=ETH_SRC))
        # Any other source from this port falls to the table-miss drop.
    else:
        flows.append(Flow(INGRESS, PRIO_PORT, _m(in_port=p.ofport), metadata=p.lid,
                          goto=ETH_SRC))
    if p.mac:
        # Declared MACs are known from plug time: no controller round trip.
        flows.append(learned_src(p.lid, p.mac, p.ofport, 0, KIND_STATIC))
        if p.firewall is None:
            flows.append(learned_dst(p.lid, p.mac, p.ofport, None, 0, KIND_STATIC))
        else:
            flows.append(Flow(ETH_DST, PRIO_LEARNED,
                              _m(metadata=(p.lid, METADATA_MASK), eth_dst=p.mac),
                              actions=sgf.enter(p.ofport, profile), goto=INGRESS_CT))
    return flows


def profile_flows(p: PortBinding, conj_ids: dict | None = None) -> tuple[Flow, ...]:
    """The rules of a filtered port's profile; ``conj_ids`` numbers the
    remote-group conjunctions (the bridge's, from :func:`static_state`;
    alone, the port's own)."""
    fw = p.firewall
    if fw is None:
        return ()
    if conj_ids is None:
        conj_ids = sgf.stable_ids(sgf.conj_keys(fw))
    return _profile_flows(_profile(p), fw.rules_only,
                          tuple((k, conj_ids[k]) for k in sorted(sgf.conj_keys(fw))))


@functools.lru_cache(maxsize=4096)
def _profile_flows(profile: int, rules: pp.Firewall, ids: tuple) -> tuple[Flow, ...]:
    """Once per profile, not per port: a thousand ports in the same groups
    hand the bridge the same values."""
    return tuple(sgf.profile_flows(profile, rules, dict(ids)))


def _anti_spoof_flows(ofport: int, lid: int, policy: pp.PortPolicy,
                      profile: int) -> list[Flow]:
    """The policy's admitted sources go on; other ARP/IPv4/IPv6 frames drop.

    Everything not ARP/IP falls through to the MAC rule of :func:`port_flows`.
    """
    mac = {"eth_src": policy.mac} if policy.mac else {}
    flows = []
    for a in policy.admit or ():
        match = {SOURCE_FIELD[a.ethertype]: _source(a)}
        if a.udp is not None:
            match.update(ip_proto=pp.IPPROTO_UDP, udp_src=a.udp[0], udp_dst=a.udp[1])
        # IP from a port with security groups goes through them first.
        filtered = policy.firewall is not None and a.ethertype != ETH_ARP
        flows.append(Flow(INGRESS, PRIO_PORT_IP,
                          _m(in_port=ofport, eth_type=a.ethertype, **mac, **match),
                          actions=sgf.enter(ofport, profile) if filtered else (),
                          metadata=lid, goto=EGRESS_CT if filtered else ETH_SRC))
    flows += [Flow(INGRESS, PRIO_PORT_IP_DROP, _m(in_port=ofport, eth_type=t))
              for t in pp.SOURCE_CHECKED]
    return flows


def uplink_flows(u: UplinkBinding) -> list[Flow]:
    if u.vid is None:
        match = _m(in_port=u.ofport, vlan_vid=OFPVID_NONE)
        return [Flow(INGRESS, PRIO_PORT, match, metadata=u.lid, goto=ETH_SRC)]
    match = _m(in_port=u.ofport, vlan_vid=u.vid | OFPVID_PRESENT)
    return [Flow(INGRESS, PRIO_PORT, match, actions=(("pop_vlan",),), metadata=u.lid,
                 goto=ETH_SRC)]


def _tun_out(t: TunnelBinding) -> tuple[tuple, ...]:
    return (("set_field", "tunnel_id", t.vni), ("output", t.ofport))


def tunnel_flows(t: TunnelBinding) -> list[Flow]:
    """VNI in -> network (marked from-tunnel); remote MACs out with the VNI."""
    flows = [Flow(INGRESS, PRIO_PORT, _m(in_port=t.ofport, tunnel_id=t.vni),
                  metadata=t.lid | FROM_TUNNEL, metadata_mask=TUNNEL_META_MASK,
                  goto=ETH_SRC),
             Flow(ETH_SRC, PRIO_TUNNEL_SRC, _m(in_port=t.ofport), goto=ETH_DST)]
    flows += [Flow(ETH_DST, PRIO_LEARNED, _m(metadata=(t.lid, METADATA_MASK), eth_dst=mac),
                   actions=_tun_out(t)) for mac in t.macs]
    return flows


def flood_flow(lid: int) -> Flow:
    return Flow(ETH_DST, PRIO_FLOOD, _m(metadata=(lid, METADATA_MASK)),
                actions=(("group", lid),))


def _port_bucket(p: PortBinding) -> tuple[tuple, ...]:
    return _out(p.ofport, None) if p.firewall is None else sgf.deliver(p.ofport, _profile(p))


def chunk_group_id(lid: int, chunk: int) -> int:
    """The id of a network's flood chunk: above every network's own ids."""
    return ((chunk + 1) << CHUNK_SHIFT) | lid


def port_buckets(lid: int, ports: list[PortBinding]) -> tuple[dict[int, Group], tuple]:
    """A network's ports as flood buckets: one each, or, past FLOOD_CHUNK
    ports, one per chunk group (the ports whose OpenFlow numbers share
    ``ofport // FLOOD_CHUNK``), which the network's groups chain to.

    Why chunks: a group-mod is one OpenFlow message, at most 65,535 bytes,
    and a bucket into a filtered port's tables is 64 bytes (output alone
    32): one group could not hold more than about 1,000 ports; and one
    port more would rewrite every bucket of its network, in the agent and
    in ovs-vswitchd. A chunk changes alone; its number range keeps a port
    in one chunk for its life. Chunk groups are memoised, so unchanged
    ones are the same values (the app compares by identity first).
    """
    ports = sorted(ports, key=lambda p: p.ofport)
    if len(ports) <= FLOOD_CHUNK:
        return {}, tuple(_port_bucket(p) for p in ports)
    chunks: dict[int, list[PortBinding]] = {}
    for p in ports:
        chunks.setdefault(p.ofport // FLOOD_CHUNK, []).append(p)
    children = {}
    for chunk, members in sorted(chunks.items()):
        group = _chunk_group(chunk_group_id(lid, chunk), tuple(members))
        children[group.group_id] = group
    return children, tuple((("group", gid),) for gid in children)


@functools.lru_cache(maxsize=8192)
def _chunk_group(group_id: int, members: tuple[PortBinding, ...]) -> Group:
    return Group(group_id, tuple(_port_bucket(p) for p in members))


def _flood(group_id: int, buckets: tuple, uplinks: list[UplinkBinding],
           tunnels: list[TunnelBinding] = ()) -> Group:
    """Ports' buckets (:func:`port_buckets`), then uplinks and tunnels; OVS
    never sends a bucket back out in_port."""
    uplinks = sorted(uplinks, key=lambda u: u.ofport)
    return Group(group_id, (*buckets, *(_out(u.ofport, u.vid) for u in uplinks),
                            *(_tun_out(t) for t in sorted(tunnels, key=lambda t: t.ofport))))


def flood_group(lid: int, ports: list[PortBinding], uplinks: list[UplinkBinding],
                tunnels: list[TunnelBinding] = ()) -> Group:
    """All of the network's ports (past FLOOD_CHUNK, as the chunk groups
    :func:`network_floods` also returns), uplinks and tunnels."""
    return _flood(lid, port_buckets(lid, ports)[1], uplinks, tunnels)


def local_flood(lid: int, uplinks: list[UplinkBinding], buckets: tuple) -> tuple[Flow, Group]:
    """Split horizon: what came from a tunnel floods to local ports only."""
    group = _flood(lid | FROM_TUNNEL, buckets, uplinks)
    flow = Flow(ETH_DST, PRIO_FLOOD_LOCAL, _m(metadata=(lid | FROM_TUNNEL, TUNNEL_META_MASK)),
                actions=(("group", lid | FROM_TUNNEL),))
    return flow, group


def learned_src(lid: int, mac: str, ofport: int, idle: int, kind: int = KIND_LEARNED) -> Flow:
    return Flow(ETH_SRC, PRIO_LEARNED,
                _m(metadata=(lid, METADATA_MASK), eth_src=mac, in_port=ofport),
                goto=ETH_DST, idle_timeout=idle, send_flow_rem=idle > 0, kind=kind)


def learned_dst(lid: int, mac: str, ofport: int, vid: int | None, idle: int,
                kind: int = KIND_LEARNED) -> Flow:
    return Flow(ETH_DST, PRIO_LEARNED, _m(metadata=(lid, METADATA_MASK), eth_dst=mac),
                actions=_out(ofport, vid), idle_timeout=idle, kind=kind)


def _binding_flows(binding, conj_ids: dict | None) -> list[Flow]:
    if isinstance(binding, PortBinding):
        return [*port_flows(binding), *profile_flows(binding, conj_ids)]
    if isinstance(binding, UplinkBinding):
        return uplink_flows(binding)
    return tunnel_flows(binding)


def keyed_flows(binding: PortBinding | UplinkBinding | TunnelBinding,
                conj_ids: dict | None = None) -> tuple[tuple[tuple, Flow], ...]:
    """A binding's flows with their keys; a filtered port's include its
    profile's rules, which every port of the profile provides (equal keys,
    equal flows)."""
    return tuple((f.key(), f) for f in _binding_flows(binding, conj_ids))


def remote_members(ports: list[PortBinding]) -> dict:
    """(remote group, direction, ethertype) -> the group's member addresses.

    Every port's firewall holds the same members for a group (they come
    from the whole topology): each key's are taken from the first port
    that has it."""
    members: dict = {}
    for p in ports:
        if p.firewall is not None:
            for key in sgf.conj_keys(p.firewall) - members.keys():
                members[key] = p.firewall.members(key[0], key[2])
    return members


def network_floods(lid: int, ports: list[PortBinding], uplinks: list[UplinkBinding],
                   tunnels: list[TunnelBinding]) -> tuple[list[Flow], dict[int, Group]]:
    """A network's flood flows and groups: to all its ports, and, where it has
    tunnels, to its local ports only (for frames that came from a tunnel)."""
    # Chunks first: a group may only chain to groups the switch has.
    groups, buckets = port_buckets(lid, ports)
    groups[lid] = _flood(lid, buckets, uplinks, tunnels)
    flows = [flood_flow(lid)]
    if tunnels:
        flow, group = local_flood(lid, uplinks, buckets)
        flows.append(flow)
        groups[group.group_id] = group
    return flows, groups


def static_state(ports: list[PortBinding], uplinks: list[UplinkBinding],
                 tunnels: list[TunnelBinding] = ()
                 ) -> tuple[dict[tuple, Flow], dict[int, Group]]:
    """The whole non-learned state of a bridge, flows by key and groups by id.

    The definition: :class:`.bridge_flows.BridgeFlows` keeps the same state
    current change by change (the app uses that), and a property test holds
    the two equal.
    """
    flows = {f.key(): f for f in base_flows()}
    ports = number_profiles(ports)
    members = remote_members(ports)
    ids = sgf.stable_ids(set(members))
    flows.update((f.key(), f) for f in sgf.member_flows(members, ids))
    by_lid: dict[int, tuple[list, list, list]] = {}
    for kind, bindings in enumerate((ports, uplinks, tunnels)):
        for b in bindings:
            # One ETH_SRC flow per tunnel port, however many networks it
            # carries: equal keys hold equal flows.
            flows.update(keyed_flows(b, ids))
            by_lid.setdefault(b.lid, ([], [], []))[kind].append(b)
    groups = {}
    for lid, (ps, us, ts) in sorted(by_lid.items()):
        floods, own = network_floods(lid, ps, us, ts)
        flows.update((f.key(), f) for f in floods)
        groups.update(own)
    return flows, groups


def static_flows(ports: list[PortBinding], uplinks: list[UplinkBinding],
                 tunnels: list[TunnelBinding] = ()) -> tuple[list[Flow], list[Group]]:
    """The whole non-learned state of a bridge from its bindings."""
    flows, groups = static_state(ports, uplinks, tunnels)
    return list(flows.values()), list(groups.values())
