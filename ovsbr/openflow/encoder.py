"""Static pipeline flow-mods as bytes, assembled from os-ken's own pieces.

A bridge with security groups holds some 65 flows per port: 65,000 at
1,000 ports. Building and serializing each through os-ken's OFPMatch and
OFPFlowMod (user-value normalisation, address text conversion, per-field
objects) took about 5 s of a first install on this machine, more than
ovs-vswitchd needed to take them. But a flow's parts repeat: a port's 65
flows share its register and addresses, every port's flows share protocol
and conntrack matches and action lists. So os-ken encodes each distinct
match field once (an OXM TLV) and each distinct instruction list once; a
flow-mod is its fixed header, its fields' cached TLVs in os-ken's own
order, and its cached instructions. The wire format stays the library's;
a unit test holds the bytes equal to os-ken's full encoding for every flow
the pipeline emits.

The caches live as long as the switch connection; past a bound they keep
only the pieces used since the previous trim, so port churn does not grow
them without end.
"""

from __future__ import annotations

import struct

from ovsbr.openflow import messages
from ovsbr.openflow import pipeline as pl

_HEADER = struct.Struct("!BBHI")  # ofp_header: version, type, length, xid
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # after the header, before the match
_MATCH = struct.Struct("!HH")  # ofp_match: type (OXM), length
MIN_LIMIT = 65536  # cached pieces before a trim is considered


class FlowEncoder:
    """Flow-mods for one switch connection (its ofproto version and parser)."""

    def __init__(self, dp):
        self.dp = dp
        self.ofp = dp.ofproto
        self._fields: dict[tuple, tuple[int, bytes]] = {}
        self._insts: dict[tuple, bytes] = {}
        self._used_fields: set[tuple] = set()
        self._used_insts: set[tuple] = set()
        self._limit = MIN_LIMIT

    # -- pieces, each encoded once by os-ken -----------------------------------
    def _field(self, item: tuple) -> tuple[int, bytes]:
        cached = self._fields.get(item)
        if cached is None:
            ofp = self.ofp
            n, value, mask = ofp.oxm_from_user(*ofp.oxm_normalize_user(*item))
            buf = bytearray()
            size = ofp.oxm_serialize(n, value, mask, buf, 0)
            # os-ken orders a match's fields by this key (OFPMatch.__init__).
            cached = self._fields[item] = (n[0] if isinstance(n, tuple) else n,
                                           bytes(buf[:size]))
        return cached

    def _match(self, match: tuple) -> bytes:
        fields = sorted((self._field(item) for item in match), key=lambda f: f[0])
        self._used_fields.update(match)
        body = b"".join(tlv for _, tlv in fields)
        length = _MATCH.size + len(body)
        return _MATCH.pack(self.ofp.OFPMT_OXM, length) + body + bytes(-length % 8)

    def _instructions(self, flow: pl.Flow) -> bytes:
        key = (flow.actions, flow.metadata, flow.metadata_mask, flow.goto)
        self._used_insts.add(key)
        cached = self._insts.get(key)
        if cached is None:
            buf = bytearray()
            offset = 0
            for inst in messages.instructions(self.dp, flow):
                inst.serialize(buf, offset)
                offset += inst.len
            cached = self._insts[key] = bytes(buf[:offset])
        return cached

    def _flow_mod(self, flow: pl.Flow, command: int, cookie: int, idle: int, flags: int,
                  insts: bytes) -> bytes:
        ofp = self.ofp
        body = _FLOW_MOD.pack(cookie, 0, flow.table, command, idle, 0, flow.priority,
                              ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, flags)
        match = self._match(flow.match)
        length = _HEADER.size + len(body) + len(match) + len(insts)
        # xid 0: the sender writes each message's own (bytes 4-8).
        return _HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, length, 0) + body + match + insts

    # -- messages ----------------------------------------------------------------
    def add(self, generation: int, flow: pl.Flow) -> bytes:
        """What ``messages.flow_mod(generation, dp, flow)`` serializes to."""
        flags = self.ofp.OFPFF_SEND_FLOW_REM if flow.send_flow_rem else 0
        return self._flow_mod(flow, self.ofp.OFPFC_ADD, pl.cookie(generation, flow.kind),
                              flow.idle_timeout, flags, self._instructions(flow))

    def delete_strict(self, flow: pl.Flow) -> bytes:
        """What ``messages.delete_strict(dp, flow)`` serializes to."""
        return self._flow_mod(flow, self.ofp.OFPFC_DELETE_STRICT, 0, 0, 0, b"")

    def trim(self) -> None:
        """Past the bound, keep only the pieces used since the last trim."""
        if len(self._fields) + len(self._insts) <= self._limit:
            return
        self._fields = {k: v for k, v in self._fields.items() if k in self._used_fields}
        self._insts = {k: v for k, v in self._insts.items() if k in self._used_insts}
        self._used_fields, self._used_insts = set(), set()
        self._limit = max(MIN_LIMIT, 2 * (len(self._fields) + len(self._insts)))
