"""ovsbr's OpenFlow 1.3 L2-learning controller, an os-ken application.

The openvswitch driver tells the app which ports and uplinks each bridge
has (:meth:`L2LearningApp.set_bindings`); the app keeps the switch's static
pipeline equal to that, learns source MACs from packet-ins, and lets the
switch age them. Flows and groups come from :mod:`ovsbr.openflow.pipeline`,
encoded by :mod:`ovsbr.openflow.messages` and, for the static pipeline's
many flow-mods, :mod:`ovsbr.openflow.encoder`.

Graceful restart: flows carry the agent generation in their cookie. When a
switch connects, the app reads which generations are on it, installs its
own (an ADD of an existing match only rewrites its cookie), waits for a
barrier, then deletes the other generations: traffic never stops.

Applied, not sent: a port new on a bridge counts as forwarding only once
the switch answered a barrier sent after its flows (:meth:`L2LearningApp.
unapplied`). ovs-vswitchd applies flow-mods at its own pace (a few thousand
a second on a busy userspace datapath), and a port reported bound while
its flows still queue behind thousands of others cannot talk yet. Ports
the agent binds before it has taken the switch over at a restart are not
held back: the flows found on the switch forward them meanwhile. On a
bridge the agent created there are none, and its ports wait for the
take-over (:meth:`L2LearningApp.new_bridge`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.ofproto import ofproto_v1_3

from ovsbr.openflow import messages
from ovsbr.openflow import pipeline as pl
from ovsbr.openflow.bridge_flows import BridgeFlows
from ovsbr.openflow.encoder import FlowEncoder
from ovsbr.openflow.learning import FLAP, MOVED, NEW, MacTable

LOG = logging.getLogger(__name__)
_ZERO_MAC = bytes(6)
SEND_CHUNK = 256 * 1024  # bytes per write to the switch (about 1,700 flow-mods)
BARRIER_PATIENCE = 10.0  # seconds without a barrier reply before asking again
LEARN_HOLD = 0.05  # seconds: learned flows go out at most this often (_learned_out)
LONE_LEARN = 3  # learned flow-mods sent as they are (one MAC); more: a bundle


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
        # Ports new while the switch is not taken over wait for the take-over
        # (the switch has no flows for them): on a bridge the agent created,
        # and after a first take-over (a reconnecting switch keeps only the
        # flows it had). Not at an agent's restart on a bridge it had: the
        # previous generation's flows forward the ports it already had.
        self.hold_new = False
        self.static = BridgeFlows()  # what the static pipeline should hold
        self.pushed = False  # sent to the switch on this connection
        self.groups: dict[int, pl.Group] = {}
        self.existing_groups: set[int] = set()
        self.old_generations: set[int] = set()
        self.macs = MacTable(max_macs)
        self.flow_mods = 0  # flow-mods sent to this bridge, for metrics
        self.learned: list = []  # learned flow-mods held (L2LearningApp._learned_out)
        self.learned_sent = 0.0  # when they last went (monotonic)
        self.encoder: FlowEncoder | None = None  # per switch connection
        self.tables: dict[int, int] = {}  # table -> static pipeline flows installed
        # Ports new on the bridge whose flows the switch has not confirmed:
        # ofport -> the change (seq) that brought them; a barrier sent after
        # change N confirms every port of changes up to N (barriers: xid -> N).
        self.seq = 0
        self.unapplied: dict[int, int] = {}
        self.barriers: dict[int, int] = {}
        self.barrier_at = 0.0  # when the last barrier was sent (monotonic)
        self._bundles = 0

    def next_bundle(self) -> int:
        self._bundles = (self._bundles + 1) & 0xFFFFFFFF
        return self._bundles


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
        self.on_applied: Callable[[], None] | None = None  # ports became applied
        self._held = threading.Event()  # learned flows wait for _hold_loop

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
                br.unapplied.pop(ofport, None)
            added = new_ports.keys() - br.ports.keys()
            if added and (br.synced or br.hold_new):
                # Before this agent took the switch over at a restart, the
                # flows found there forward the ports it already had:
                # waiting for the take-over's whole push (64,000 flow-mods
                # at 1,000 filtered ports: seconds) would flap them to
                # waiting. New ports otherwise wait for their flows (on a
                # switch not connected yet: for the take-over's barrier).
                br.seq += 1
                br.unapplied.update(dict.fromkeys(added, br.seq))
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

    def new_bridge(self, dpid: int, name: str) -> None:
        """The agent created this bridge: no flows forward its ports until
        the app has taken the switch over (BridgeState.hold_new)."""
        with self.lock:
            self.bridge(dpid, name).hold_new = True

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

    def unapplied(self, dpid: int) -> list[int]:
        """The ofports of ports new on the bridge whose flows the switch has
        not yet confirmed applying (a barrier reply): not forwarding yet."""
        with self.lock:
            br = self.bridges.get(dpid)
            if br is None:
                return []
            self._ask_again(br)
            return list(br.unapplied)

    def _ask_again(self, br: BridgeState) -> None:
        """A safety net: ports still unapplied BARRIER_PATIENCE seconds after
        the last barrier was sent get a fresh one, so no port can wait for
        ever on a reply that will not come (checked on every sync and every
        introspection, which the agent runs every 2 s)."""
        if (br.unapplied and br.datapath is not None and br.synced
                and time.monotonic() - br.barrier_at > BARRIER_PATIENCE):
            LOG.warning("switch %s: %d port(s) waiting for a barrier reply for over %ss; "
                        "sending another", br.name, len(br.unapplied), BARRIER_PATIENCE)
            self._send_then_barrier(br, [], [], force=True)

    def switches(self) -> dict[str, bool]:
        """Bridge name -> switch connected: cheap, for readiness probes (no MAC
        snapshot, so a probe never holds the lock packet-ins need for long)."""
        with self.lock:
            return {br.name: br.datapath is not None for br in self.bridges.values()}

    def introspect(self, macs: bool = False) -> dict:
        """Each bridge's counters and table size; with ``macs``, every
        learned MAC too. That snapshot is O(MACs) under the lock the
        packet-in handler takes, so it is made on demand only."""
        with self.lock:
            result = {}
            for br in self.bridges.values():
                self._ask_again(br)
                result[br.name] = {"connected": br.datapath is not None,
                                   "counters": dict(br.macs.counters.to_dict(),
                                                    flow_mods=br.flow_mods),
                                   "flows": dict(br.tables),
                                   "mac_count": len(br.macs.entries),
                                   "macs": br.macs.snapshot() if macs else None}
            return result

    def _send(self, dp, msgs: list) -> None:
        br = self.bridges.get(dp.id)
        if br is not None and br.learned:
            self._flush_learned(br)  # first: the switch sees changes in order
        flow_mods = messages.send(dp, msgs, SEND_CHUNK)
        if br is not None:
            br.flow_mods += flow_mods

    # -- learned flows out ---------------------------------------------------
    def start(self):
        thread = threading.Thread(target=self._hold_loop, name="ovsbr-learned", daemon=True)
        thread.start()
        self.threads.append(thread)
        return super().start()

    def _learned_out(self, br: BridgeState) -> None:
        """Send a bridge's learned flows now, or hold them for one bundle.

        Each change to its flow tables makes ovs-vswitchd revalidate every
        datapath flow, and on a userspace datapath the same main loop also
        reads the ports. Learned flows sent one MAC at a time during a burst
        of new sources (bench learning: 10,000 new MACs/s) kept its main
        thread and revalidator busy enough (0.8-0.9 s and 0.3-0.4 s of CPU
        for 5,000 MACs) that ports' receive buffers overflowed and frames
        were lost; sent at most once per 50 ms, the same MACs cost 0.2 s and
        0.15 s and nothing was lost (at 10 ms all of three runs lost frames,
        at 20 ms one of three). So learned flows go out at most once
        per LEARN_HOLD per bridge, all that came since in one bundle, and
        the first after a quiet spell at once: a lone new VM is learned
        without delay. A held MAC's frames still flow meanwhile (flooded to
        it, reaching the controller from it) as they did before it was
        learned; nothing waits for the hold.
        """
        if len(br.learned) >= messages.BUNDLE_SIZE or (
                time.monotonic() - br.learned_sent >= LEARN_HOLD):
            self._flush_learned(br)
        else:
            self._held.set()

    def _flush_learned(self, br: BridgeState) -> None:
        msgs, br.learned = br.learned, []
        br.learned_sent = time.monotonic()
        if br.datapath is None or not msgs:
            return
        if len(msgs) > LONE_LEARN:
            msgs = messages.bundled(msgs, br.next_bundle)
        br.flow_mods += messages.send(br.datapath, msgs, SEND_CHUNK)

    def _flush_held(self) -> float:
        """Send every bridge's held flows whose hold is over; the seconds
        until the next one's is (0: none held)."""
        wait = 0.0
        with self.lock:
            now = time.monotonic()
            for br in self.bridges.values():
                if not br.learned:
                    continue
                due = br.learned_sent + LEARN_HOLD - now
                if due <= 0:
                    self._flush_learned(br)
                else:
                    wait = min(wait, due) if wait else due
        return wait

    def _hold_loop(self) -> None:
        """Send what :meth:`_learned_out` held, once its hold is over."""
        while self.is_active:
            if not self._held.wait(0.5):
                continue
            self._held.clear()
            while wait := self._flush_held():
                time.sleep(wait)

    # -- static pipeline -----------------------------------------------------
    def _apply_static(self, br: BridgeState) -> None:
        """Send the switch what changed in the bridge's static pipeline (all of
        it on a new connection: take-over then deletes older generations)."""
        dp = br.datapath
        ofp = dp.ofproto
        delta = br.static.update(list(br.ports.values()), list(br.uplinks.values()),
                                 br.tunnels)
        groups = br.static.groups
        msgs = []
        # Groups before the flows that point at them; removals after.
        for gid, group in groups.items():
            old = br.groups.get(gid)
            if old is not group and old != group:
                cmd = ofp.OFPGC_MODIFY if gid in br.existing_groups else ofp.OFPGC_ADD
                msgs.append(messages.group_mod(dp, group, cmd))
                br.existing_groups.add(gid)
        changed, removed = (delta.changed, delta.removed) if br.pushed else (
            br.static.flows, {})
        # The flow-mods in bundles (messages.Bundle: applied many times
        # faster); groups stay outside them, so a group the switch refuses
        # cannot take a bundle's flows down with it.
        msgs += messages.bundled(
            [br.encoder.add(self.generation, flow) for flow in changed.values()] +
            [br.encoder.delete_strict(flow) for flow in removed.values()], br.next_bundle)
        # Networks' own groups before the chunks they chain to (lower ids).
        for gid in sorted(set(br.groups) - set(groups)):
            msgs.append(dp.ofproto_parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, gid))
            br.existing_groups.discard(gid)
        br.groups, br.pushed = groups, True
        br.tables = dict(br.static.tables)
        br.encoder.trim()
        if br.unapplied:
            self._send_then_barrier(br, msgs, [])
        else:
            self._send(dp, msgs)

    def _send_then_barrier(self, br: BridgeState, msgs: list, after: list,
                           force: bool = False) -> None:
        """Send ``msgs``, a barrier whose reply confirms every change so far
        (:meth:`_barrier_reply`), then ``after``. The caller holds the lock,
        so the reply cannot be handled before the barrier is known.

        One barrier at a time (unless ``force``): while one is unanswered,
        the next goes when it is (its reply handler asks again). A barrier
        per push let replies pile up when the app was slow to read them,
        and ovs-vswitchd stops reading a connection with 100 replies
        queued: the agent's send then blocked holding the lock the reply
        handler needed (seen once per few hundred single ports in bench).
        Sends no longer wait (``runtime._Datapath``); one barrier at a time
        still keeps the replies, and the app's work for them, few.
        """
        dp = br.datapath
        if br.barriers and not force:
            self._send(dp, msgs + after)
            return
        barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
        self._send(dp, msgs + [barrier] + after)  # the send gives it its xid
        br.barriers[barrier.xid] = br.seq
        br.barrier_at = time.monotonic()

    # -- switch life cycle ---------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, MAIN_DISPATCHER)
    def _switch_ready(self, ev):
        """A switch finished os-ken's handshake: read what is on it (for the
        take-over, :meth:`_flow_stats`).

        Not on the features reply: os-ken's handshake runs on the
        connection's thread (the features reply sets the switch's id, and
        the port description reply moves it to MAIN_DISPATCHER), which hands
        each reply to the handlers of the state it is in when the reply
        arrives; this app's handlers run on its own thread. Asked for from
        the features reply, the stats could come back before MAIN and be
        dropped, and the switch then stayed connected with no flows (seen
        under TCG; tests/functional/test_controller_runtime.py makes the
        handshake slow on purpose). From MAIN on, every reply reaches us.
        """
        dp = ev.datapath
        with self.lock:
            br = self.bridge(dp.id, f"dpid-{dp.id:016x}")
            br.datapath, br.synced, br.stats_done = dp, False, False
            br.encoder = FlowEncoder(dp)
            br.pushed, br.groups = False, {}
            br.existing_groups, br.old_generations = set(), set()
            br.macs = MacTable(self.max_macs_per_port)
            br.barriers = {}  # lost with the old connection; the take-over sends one
            br.learned = []
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
            msgs = []
            for gen in sorted(br.old_generations):
                msgs.append(parser.OFPFlowMod(
                    dp, cookie=gen << pl.COOKIE_GEN_SHIFT, cookie_mask=pl.COOKIE_GEN_MASK,
                    table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                    out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))
            # Groups this generation does not use (a network deleted while
            # the agent was down).
            for gid in sorted(br.existing_groups - set(br.groups)):
                msgs.append(parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, gid))
            self._send_then_barrier(br, [], msgs, force=True)  # confirms held ports
            br.hold_new = True
            if br.old_generations:
                LOG.info("switch %s: generation %d installed, removed generations %s",
                         br.name, self.generation, sorted(br.old_generations))
            br.synced = True
            self.connected.notify_all()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev):
        msg = ev.msg
        with self.lock:
            br = self.bridges.get(msg.datapath.id)
            if br is None or br.datapath is not msg.datapath:
                return
            seq = br.barriers.pop(msg.xid, None)
            if seq is None:
                return
            done = [p for p, s in br.unapplied.items() if s <= seq]
            for ofport in done:
                del br.unapplied[ofport]
            if br.unapplied and not br.barriers and br.synced:
                self._send_then_barrier(br, [], [])  # for the flows sent since
            if done:
                self._notify_applied()

    def _notify_applied(self) -> None:
        if self.on_applied is not None:
            try:
                self.on_applied()
            except Exception:  # the agent's wake-up must not break the switch's loop
                LOG.exception("on_applied callback failed")

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _disconnected(self, ev):
        dp = ev.datapath
        with self.lock:
            br = self.bridges.get(dp.id) if dp.id is not None else None
            if br is not None and br.datapath is dp:
                br.datapath, br.synced, br.learned = None, False, []
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
                br.learned.append(messages.delete_strict(dp, pl.learned_src(lid, mac, old_port, 0)))
            vid = None
            uplink = br.uplinks.get((in_port, lid))
            if uplink is not None:
                vid = uplink.vid
            tpl = messages.templates(dp, self.mac_aging_time)
            cookie = pl.cookie(self.generation, pl.KIND_LEARNED)
            raw = data[6:12]
            dst = tpl["dst"] if vid is None else tpl["dst_vlan"]
            br.learned += (tpl["src"].render(0, cookie, lid, raw, in_port),
                           dst.render(0, cookie, lid, raw, in_port, vid))
            self._learned_out(br)

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
                self._send(dp, [messages.delete_strict(
                    dp, pl.learned_dst(lid, mac, port, None, 0))])

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
