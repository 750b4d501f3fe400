"""A bridge's static flows and groups, kept current binding by binding.

:func:`pipeline.static_state` builds a bridge's whole state from its
bindings, some 15 flows per port and, with security groups, each
profile's rules and each remote group's members; rebuilding and diffing
them on every reconcile cost 30-60 ms of the agent's single-port wiring,
growing with the bridge. Here a change costs what it touches: the flows of
bindings that came, went or changed (a profile's rules are counted by the
ports that provide them, and go with the last), the member flows of
remote groups (shared by the bridge's ports, so compared whole), and the
flood flow and group of networks whose membership changed. The result is
the same state ``static_state`` builds (a property test checks it over
random sequences); ``update`` also says which flows changed and which
went, which is what the switch is sent.

Pure: values in, values out; the app (:mod:`.l2_learning`) does the I/O.
"""

from __future__ import annotations

import collections
import dataclasses

from ovsbr.openflow import pipeline as pl
from ovsbr.openflow import secgroup_flows as sgf

Key = tuple


@dataclasses.dataclass
class Delta:
    changed: dict[Key, pl.Flow]  # new or different: (re)install
    removed: dict[Key, pl.Flow]  # gone: delete


class BridgeFlows:
    def __init__(self) -> None:
        self.flows: dict[Key, pl.Flow] = {}
        self.groups: dict[int, pl.Group] = {}
        self.tables: collections.Counter = collections.Counter()  # table -> flows
        self._bindings: dict[object, tuple[tuple[Key, pl.Flow], ...]] = {}
        self._refs: collections.Counter = collections.Counter()  # key -> providers
        self._shared: dict[Key, pl.Flow] = {}  # base, member and flood flows
        # lid -> (its bindings, its flood flows, its groups)
        self._lids: dict[int, tuple[tuple, list[pl.Flow], dict[int, pl.Group]]] = {}
        self._before: dict[Key, pl.Flow | None] = {}
        # (remote-group members, their conjunction ids, base + member flows)
        self._members_seen: tuple[dict, dict, dict[Key, pl.Flow]] = (None, {}, {})
        # (the profiles on the bridge, their numbers); binding -> numbered copy
        self._profiles: tuple[frozenset, dict] = (frozenset(), {})
        self._copies: dict[pl.PortBinding, pl.PortBinding] = {}

    # -- one key at a time, remembering what it was -----------------------------
    def _touch(self, key: Key) -> None:
        if key not in self._before:
            self._before[key] = self.flows.get(key)

    def _put(self, key: Key, flow: pl.Flow) -> None:
        self._touch(key)
        old = self.flows.get(key)
        if old is not None:
            self.tables[old.table] -= 1
        self.flows[key] = flow
        self.tables[flow.table] += 1

    def _drop(self, key: Key) -> None:
        self._touch(key)
        old = self.flows.pop(key, None)
        if old is not None:
            self.tables[old.table] -= 1

    # -- the update --------------------------------------------------------------
    def update(self, ports: list[pl.PortBinding], uplinks: list[pl.UplinkBinding],
               tunnels: list[pl.TunnelBinding] = ()) -> Delta:
        self._before = {}
        ports = self._numbered(ports)
        ids, shared = self._members(ports)
        wanted: dict[object, object] = {}
        by_lid: dict[int, tuple[list, list, list]] = {}
        conj: dict[frozenset, tuple[int, ...]] = {}
        for kind, bindings in enumerate((ports, uplinks, tunnels)):
            for b in bindings:
                fw = getattr(b, "firewall", None)
                if not fw:
                    ckey = b
                else:
                    # A filtered port's flows depend on its profile, its rules
                    # and its conjunctions' ids, not on the remote groups'
                    # members.
                    keys = fw.remote_keys
                    if keys not in conj:
                        conj[keys] = tuple(ids[k] for k in sorted(keys))
                    ckey = (b.ofport, b.lid, b.mac, b.profile, b.policy.rules_only, conj[keys])
                wanted[ckey] = b
                by_lid.setdefault(b.lid, ([], [], []))[kind].append(b)
        for ckey in self._bindings.keys() - wanted.keys():
            for key, _ in self._bindings.pop(ckey):
                self._refs[key] -= 1
                if not self._refs[key]:
                    del self._refs[key]
                    if key not in shared:
                        self._drop(key)
        # Equal keys hold equal flows (one ETH_SRC flow per tunnel port,
        # whichever network's binding provides it): a key stays while any
        # binding provides it, and only new bindings' flows are written.
        for ckey in wanted.keys() - self._bindings.keys():
            keyed = self._bindings[ckey] = pl.keyed_flows(wanted[ckey], ids)
            for key, flow in keyed:
                self._refs[key] += 1
                if self.flows.get(key) != flow:
                    self._put(key, flow)
        self._floods(by_lid, shared)
        for key in self._shared.keys() - shared.keys():
            if key not in self._refs:
                self._drop(key)
        for key, flow in shared.items():
            if self.flows.get(key) != flow:
                self._put(key, flow)
        self._shared = shared
        self.tables += collections.Counter()  # drop tables that emptied
        changed = {k: f for k, old in self._before.items()
                   if (f := self.flows.get(k)) is not None and f != old}
        removed = {k: old for k, old in self._before.items()
                   if old is not None and k not in self.flows}
        return Delta(changed, removed)

    def _numbered(self, ports: list[pl.PortBinding]) -> list[pl.PortBinding]:
        """``pipeline.number_profiles``, remembering each binding's numbered
        copy while the bridge's profile numbers stay the same (the driver
        hands the same binding objects sync after sync)."""
        profiles = frozenset(p.firewall.profile for p in ports if p.firewall is not None)
        if profiles != self._profiles[0]:
            ids = pl.profile_ids(ports)
            if ids != self._profiles[1]:
                self._copies = {}
            self._profiles = (profiles, ids)
        ids, copies, out = self._profiles[1], {}, []
        for p in ports:
            q = self._copies.get(p)
            if q is None:
                q = pl.numbered(p, ids)
            copies[p] = q
            out.append(q)
        self._copies = copies
        return out

    def _members(self, ports: list[pl.PortBinding]) -> tuple[dict, dict[Key, pl.Flow]]:
        """Conjunction ids and the bridge's shared flows: the base pipeline and
        each remote group's members (the same for every port that names it)."""
        members = pl.remote_members(ports)
        if members != self._members_seen[0]:
            ids = sgf.stable_ids(set(members))
            flows = {f.key(): f for f in pl.base_flows()}
            flows.update((f.key(), f) for f in sgf.member_flows(members, ids))
            self._members_seen = (members, ids, flows)
        _, ids, flows = self._members_seen
        return ids, dict(flows)

    def _floods(self, by_lid: dict[int, tuple[list, list, list]],
                shared: dict[Key, pl.Flow]) -> None:
        """Each network's flood flows and groups, rebuilt where its members changed."""
        groups: dict[int, pl.Group] = {}
        lids = {}
        for lid, members in sorted(by_lid.items()):
            cached = self._lids.get(lid)
            if cached is None or cached[0] != members:
                cached = (members, *pl.network_floods(lid, *members))
            lids[lid] = cached
            shared.update((f.key(), f) for f in cached[1])
            groups.update(cached[2])
        self._lids = lids
        self.groups = groups
