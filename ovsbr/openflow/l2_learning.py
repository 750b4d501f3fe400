"""ovsbr's OpenFlow 1.3 L2-learning controller, an os-ken application.

The openvswitch driver tells the app which ports and uplinks each bridge
has (:meth:`L2LearningApp.set_bindings`); the app keeps the switch's static
pipeline equal to that, learns source MACs from packet-ins, and lets the
switch age them. All flow construction is in :mod:`ovsbr.openflow.pipeline`.

Graceful restart: flows carry the agent generation in their cookie. When a
switch connects, the app reads which generations are on it, installs its
own (an ADD of an existing match only rewrites its cookie), waits for a
barrier, then deletes the other generations: traffic never stops.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.ofproto import ofproto_v1_3
from os_ken.ofproto.ofproto_v1_3_parser import OFPFlowMod

from ovsbr.openflow import pipeline as pl
from ovsbr.openflow.learning import FLAP, MOVED, NEW, MacTable

LOG = logging.getLogger(__name__)


# Placeholders that cannot occur elsewhere in a flow-mod: the template is
# encoded once by os-ken with these values, and learned flows are rendered by
# writing the real values at the placeholders' offsets.
_PH_MAC = "0a:bb:cc:dd:ee:0f"
_PH_PORT = 0x7EADBEEF
_PH_LID = 0xABC
_PH_COOKIE = 0x0123456789ABCDEF
_PH_VID = 0x0ABD
_ZERO_MAC = bytes(6)


def _offsets(buf: bytes, needle: bytes) -> list[int]:
    found, start = [], 0
    while (i := buf.find(needle, start)) >= 0:
        found.append(i)
        start = i + 1
    return found


class FlowTemplate:
    """A serialized flow-mod with slots for (cookie, lid, mac, port[, vid]).

    Learning installs two flow-mods per new MAC; encoding them through
    os-ken's OFPMatch/OFPFlowMod (MAC text conversion, OXM normalisation)
    cost more than everything else in the packet-in path. The template is
    os-ken's own encoding, so the wire format stays the library's.
    """

    def __init__(self, buf: bytes):
        self.buf = bytearray(buf)
        self.cookie = _offsets(buf, _PH_COOKIE.to_bytes(8, "big"))
        self.mac = _offsets(buf, bytes.fromhex(_PH_MAC.replace(":", "")))
        self.port = _offsets(buf, _PH_PORT.to_bytes(4, "big"))
        self.lid = _offsets(buf, (_PH_LID).to_bytes(8, "big"))
        self.vid = _offsets(buf, (_PH_VID | pl.OFPVID_PRESENT).to_bytes(2, "big"))
        assert self.cookie and self.mac and self.port and self.lid, "template slots not found"

    def render(self, xid: int, cookie: int, lid: int, mac: bytes, port: int,
               vid: int | None = None) -> bytes:
        b = bytearray(self.buf)
        b[4:8] = xid.to_bytes(4, "big")
        for o in self.cookie:
            b[o:o + 8] = cookie.to_bytes(8, "big")
        for o in self.lid:
            b[o:o + 8] = lid.to_bytes(8, "big")
        for o in self.mac:
            b[o:o + 6] = mac
        for o in self.port:
            b[o:o + 4] = port.to_bytes(4, "big")
        if vid is not None:
            for o in self.vid:
                b[o:o + 2] = (vid | pl.OFPVID_PRESENT).to_bytes(2, "big")
        return bytes(b)


class BridgeState:
    """What the app wants on one bridge and what it knows is there."""

    def __init__(self, name: str, max_macs: int):
        self.name = name
        self.ports: dict[int, pl.PortBinding] = {}
        self.uplinks: dict[tuple[int, int], pl.UplinkBinding] = {}
        self.tunnels: list[pl.TunnelBinding] = []
        self.datapath = None
        self.synced = False
        # The switch's old flows are replaced only once the agent has said
        # what the bridge holds (first bindings) and the switch has said
        # what is installed (flow stats): before that, old flows forward.
        self.bound = False
        self.stats_done = False
        self.installed: dict[tuple, pl.Flow] = {}
        self.flow_cache: dict = {}  # binding -> its keyed flows (pipeline.static_state)
        self.groups: dict[int, pl.Group] = {}
        self.existing_groups: set[int] = set()
        self.old_generations: set[int] = set()
        self.macs = MacTable(max_macs)
        self.flow_mods = 0  # flow-mods sent to this bridge, for metrics
        self.tables: dict[int, int] = {}  # table -> static pipeline flows installed


class L2LearningApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = "ovsbr_l2"
        self.lock = threading.RLock()
        self.bridges: dict[int, BridgeState] = {}
        self.generation = int(time.time())
        self.mac_aging_time = 300
        self.max_macs_per_port = 1024
        self.connected = threading.Condition(self.lock)

    # -- the driver's side ---------------------------------------------------
    def configure(self, generation: int, mac_aging_time: int, max_macs_per_port: int) -> None:
        self.generation = generation
        self.mac_aging_time = mac_aging_time
        self.max_macs_per_port = max_macs_per_port

    def bridge(self, dpid: int, name: str) -> BridgeState:
        with self.lock:
            br = self.bridges.get(dpid)
            if br is None:
                br = self.bridges[dpid] = BridgeState(name, self.max_macs_per_port)
            return br

    def set_bindings(self, dpid: int, name: str, ports: list[pl.PortBinding],
                     uplinks: list[pl.UplinkBinding],
                     tunnels: list[pl.TunnelBinding] = ()) -> None:
        with self.lock:
            br = self.bridge(dpid, name)
            new_ports = {p.ofport: p for p in ports}
            new_uplinks = {(u.ofport, u.lid): u for u in uplinks}
            tunnels = list(tunnels)
            if (br.bound and new_ports == br.ports and new_uplinks == br.uplinks
                    and tunnels == br.tunnels):
                return  # most reconciles: nothing on this bridge changed
            for ofport in set(br.ports) - set(new_ports):
                self._forget_learned(br, br.macs.forget_port(ofport))
            gone_lids = ({p.lid for p in br.ports.values()} |
                         {u.lid for u in br.uplinks.values()})
            br.ports = new_ports
            br.uplinks = new_uplinks
            br.tunnels = tunnels
            br.bound = True
            gone_lids -= ({p.lid for p in ports} | {u.lid for u in uplinks})
            for lid in gone_lids:
                br.macs.forget_network(lid)
            if br.datapath is not None and br.synced:
                self._apply_static(br)
            elif br.datapath is not None and br.stats_done:
                self._take_over(br)

    def wait_connected(self, dpid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.connected:
            while True:
                br = self.bridges.get(dpid)
                if br is not None and br.synced:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.connected.wait(left)

    def switches(self) -> dict[str, bool]:
        """Bridge name -> switch connected: cheap, for readiness probes (no MAC
        snapshot, so a probe never holds the lock packet-ins need for long)."""
        with self.lock:
            return {br.name: br.datapath is not None for br in self.bridges.values()}

    def introspect(self) -> dict:
        with self.lock:
            result = {}
            for br in self.bridges.values():
                result[br.name] = {"connected": br.datapath is not None,
                                   "counters": dict(br.macs.counters.to_dict(),
                                                    flow_mods=br.flow_mods),
                                   "flows": dict(br.tables),
                                   "macs": br.macs.snapshot()}
            return result

    # -- messages ------------------------------------------------------------
    def _flow_mod(self, dp, flow: pl.Flow, command=None):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        insts = []
        if flow.actions:
            insts.append(parser.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [self._action(dp, a) for a in flow.actions]))
        if flow.metadata is not None:
            insts.append(parser.OFPInstructionWriteMetadata(flow.metadata, flow.metadata_mask))
        if flow.goto is not None:
            insts.append(parser.OFPInstructionGotoTable(flow.goto))
        flags = ofp.OFPFF_SEND_FLOW_REM if flow.send_flow_rem else 0
        return parser.OFPFlowMod(
            dp, cookie=pl.cookie(self.generation, flow.kind), table_id=flow.table,
            command=ofp.OFPFC_ADD if command is None else command,
            idle_timeout=flow.idle_timeout, priority=flow.priority, flags=flags,
            match=parser.OFPMatch(**dict(flow.match)), instructions=insts,
            out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)

    def _delete_strict(self, dp, flow: pl.Flow):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        return parser.OFPFlowMod(
            dp, table_id=flow.table, command=ofp.OFPFC_DELETE_STRICT,
            priority=flow.priority, match=parser.OFPMatch(**dict(flow.match)),
            out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)

    @staticmethod
    def _action(dp, action: tuple):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        kind = action[0]
        if kind == "output":
            return parser.OFPActionOutput(action[1], 0)
        if kind == "controller":
            return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, action[1])
        if kind == "push_vlan":
            return parser.OFPActionPushVlan(action[1])
        if kind == "pop_vlan":
            return parser.OFPActionPopVlan()
        if kind == "set_field":
            return parser.OFPActionSetField(**{action[1]: action[2]})
        if kind == "group":
            return parser.OFPActionGroup(action[1])
        raise ValueError(f"unknown action {action!r}")

    def _group_mod(self, dp, group: pl.Group, command):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        buckets = [parser.OFPBucket(actions=[self._action(dp, a) for a in acts])
                   for acts in group.buckets]
        return parser.OFPGroupMod(dp, command, ofp.OFPGT_ALL, group.group_id, buckets)

    def _templates(self, dp) -> dict:
        """Learned-flow templates for this switch, built once per connection."""
        cached = getattr(dp, "_ovsbr_templates", None)
        if cached is not None:
            return cached
        aging = self.mac_aging_time
        saved, self.generation = self.generation, 0

        def encode(flow: pl.Flow) -> bytes:
            msg = self._flow_mod(dp, flow)
            msg.cookie = _PH_COOKIE
            dp.set_xid(msg)
            msg.serialize()
            return bytes(msg.buf)

        try:
            cached = {
                "src": FlowTemplate(encode(pl.learned_src(_PH_LID, _PH_MAC, _PH_PORT, aging))),
                "dst": FlowTemplate(encode(pl.learned_dst(_PH_LID, _PH_MAC, _PH_PORT, None,
                                                          aging * 2))),
                "dst_vlan": FlowTemplate(encode(pl.learned_dst(_PH_LID, _PH_MAC, _PH_PORT,
                                                               _PH_VID, aging * 2))),
            }
        finally:
            self.generation = saved
        dp._ovsbr_templates = cached
        return cached

    def _next_xid(self, dp) -> int:
        dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID
        return dp.xid

    def _send(self, dp, msgs: list) -> None:
        """Serialize many messages into one write: one queue slot, one syscall."""
        if not msgs:
            return
        br = self.bridges.get(dp.id)
        if br is not None:
            br.flow_mods += sum(1 for m in msgs if isinstance(m, OFPFlowMod))
        bufs = []
        for msg in msgs:
            dp.set_xid(msg)
            msg.serialize()
            bufs.append(bytes(msg.buf))
        dp.send(b"".join(bufs))

    # -- static pipeline -----------------------------------------------------
    def _desired(self, br: BridgeState) -> tuple[dict[tuple, pl.Flow], dict[int, pl.Group]]:
        flows, groups, br.flow_cache = pl.static_state(
            list(br.ports.values()), list(br.uplinks.values()), br.tunnels, br.flow_cache)
        return flows, groups

    def _apply_static(self, br: BridgeState) -> None:
        dp = br.datapath
        ofp = dp.ofproto
        flows, groups = self._desired(br)
        msgs = []
        # Groups before the flows that point at them; removals after.
        for gid, group in groups.items():
            if br.groups.get(gid) != group:
                cmd = ofp.OFPGC_MODIFY if gid in br.existing_groups else ofp.OFPGC_ADD
                msgs.append(self._group_mod(dp, group, cmd))
                br.existing_groups.add(gid)
        installed = br.installed
        for key, flow in flows.items():
            old = installed.get(key)
            if old is not flow and old != flow:
                msgs.append(self._flow_mod(dp, flow))
        for key, flow in br.installed.items():
            if key not in flows:
                msgs.append(self._delete_strict(dp, flow))
        for gid in set(br.groups) - set(groups):
            msgs.append(dp.ofproto_parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, gid))
            br.existing_groups.discard(gid)
        br.installed, br.groups = flows, groups
        br.tables = dict(collections.Counter(flow.table for flow in flows.values()))
        self._send(dp, msgs)

    # -- switch life cycle ---------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev):
        dp = ev.msg.datapath
        with self.lock:
            br = self.bridge(dp.id, f"dpid-{dp.id:016x}")
            br.datapath, br.synced, br.stats_done = dp, False, False
            br.installed, br.groups = {}, {}
            br.existing_groups, br.old_generations = set(), set()
            br.macs = MacTable(self.max_macs_per_port)
        parser = dp.ofproto_parser
        LOG.info("switch %s (dpid %016x) connected from %s", br.name, dp.id, dp.address)
        self._send(dp, [parser.OFPGroupDescStatsRequest(dp, 0),
                        parser.OFPFlowStatsRequest(dp, 0, dp.ofproto.OFPTT_ALL)])

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def _group_desc(self, ev):
        with self.lock:
            br = self.bridges.get(ev.msg.datapath.id)
            if br is not None:
                br.existing_groups.update(g.group_id for g in ev.msg.body)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev):
        msg = ev.msg
        dp = msg.datapath
        with self.lock:
            br = self.bridges.get(dp.id)
            if br is None or br.synced:
                return
            br.old_generations.update(
                s.cookie >> pl.COOKIE_GEN_SHIFT for s in msg.body
                if s.cookie >> pl.COOKIE_GEN_SHIFT != self.generation)
            if msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                return
            br.stats_done = True
            if br.bound:
                self._take_over(br)

    def _take_over(self, br: BridgeState) -> None:
        """Install this generation, barrier, then delete the older ones."""
        dp = br.datapath
        with self.lock:
            self._apply_static(br)
            parser, ofp = dp.ofproto_parser, dp.ofproto
            msgs = [parser.OFPBarrierRequest(dp)]
            for gen in sorted(br.old_generations):
                msgs.append(parser.OFPFlowMod(
                    dp, cookie=gen << pl.COOKIE_GEN_SHIFT, cookie_mask=pl.COOKIE_GEN_MASK,
                    table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                    out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))
            # Groups this generation does not use (a network deleted while
            # the agent was down).
            for gid in br.existing_groups - set(br.groups):
                msgs.append(parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, gid))
            self._send(dp, msgs)
            if br.old_generations:
                LOG.info("switch %s: generation %d installed, removed generations %s",
                         br.name, self.generation, sorted(br.old_generations))
            br.synced = True
            self.connected.notify_all()

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _disconnected(self, ev):
        dp = ev.datapath
        with self.lock:
            br = self.bridges.get(dp.id) if dp.id is not None else None
            if br is not None and br.datapath is dp:
                br.datapath, br.synced = None, False
                LOG.warning("switch %s disconnected; its flows keep forwarding "
                            "(fail_mode secure)", br.name)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        LOG.warning("switch %016x reported OpenFlow error type %d code %d",
                    msg.datapath.id or 0, msg.type, msg.code)

    # -- learning ------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        with self.lock:
            br = self.bridges.get(dp.id)
            if br is None or not br.synced:
                return
            table = br.macs
            table.counters.packet_ins += 1
            data = msg.data
            try:
                in_port = msg.match["in_port"]
                lid = msg.match.get("metadata", 0) & pl.METADATA_MASK
            except (KeyError, TypeError):
                table.counters.dropped += 1
                return
            if len(data) < 14 or data[6] & 1 or lid == 0 or data[6:12] == _ZERO_MAC:
                # Truncated, a group or all-zero source (found by fuzzing: it
                # was learned, then the zero MAC forwarded), or no network.
                table.counters.dropped += 1
                return
            mac = data[6:12].hex(":")
            if in_port not in br.ports and not any(k[0] == in_port for k in br.uplinks):
                table.counters.dropped += 1
                return
            verdict, old_port = table.learn(lid, mac, in_port)
            if verdict == FLAP:
                LOG.warning("MAC %s flapping between ports on %s network %d: learning "
                            "damped for %ss", mac, br.name, lid, table.damp_time)
            if verdict not in (NEW, MOVED):
                return
            if verdict == MOVED:
                self._send(dp, [self._delete_strict(dp, pl.learned_src(lid, mac, old_port, 0))])
            vid = None
            uplink = br.uplinks.get((in_port, lid))
            if uplink is not None:
                vid = uplink.vid
            tpl = self._templates(dp)
            cookie = pl.cookie(self.generation, pl.KIND_LEARNED)
            raw = data[6:12]
            dst = tpl["dst"] if vid is None else tpl["dst_vlan"]
            dp.send(tpl["src"].render(self._next_xid(dp), cookie, lid, raw, in_port) +
                    dst.render(self._next_xid(dp), cookie, lid, raw, in_port, vid))
            br.flow_mods += 2

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev):
        msg = ev.msg
        dp = msg.datapath
        if msg.table_id != pl.ETH_SRC or msg.reason != dp.ofproto.OFPRR_IDLE_TIMEOUT:
            return
        with self.lock:
            br = self.bridges.get(dp.id)
            if br is None:
                return
            try:
                lid = msg.match["metadata"][0] if isinstance(
                    msg.match["metadata"], tuple) else msg.match["metadata"]
                mac, port = msg.match["eth_src"], msg.match["in_port"]
            except (KeyError, TypeError):
                return
            lid &= pl.METADATA_MASK
            if br.macs.expire(lid, mac, port) and br.datapath is not None:
                self._send(dp, [self._delete_strict(dp, pl.learned_dst(lid, mac, port, None, 0))])

    def _forget_learned(self, br: BridgeState, keys: list[tuple[int, str]]) -> None:
        dp = br.datapath
        if dp is None or not keys:
            return
        parser, ofp = dp.ofproto_parser, dp.ofproto
        msgs = []
        for lid, mac in keys:
            for table, field in ((pl.ETH_SRC, "eth_src"), (pl.ETH_DST, "eth_dst")):
                msgs.append(parser.OFPFlowMod(
                    dp, table_id=table, command=ofp.OFPFC_DELETE,
                    match=parser.OFPMatch(**{"metadata": (lid, pl.METADATA_MASK), field: mac}),
                    out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))
        self._send(dp, msgs)
