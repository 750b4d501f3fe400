"""The hot path of rtnetlink links: decode few fields fast, send many requests at once.

pyroute2 decodes every attribute of every link message (statistics, AF_SPEC,
...), about half a millisecond each in Python; a thousand taps being wired
produce several thousand such events, and the agent spent most of its CPU
decoding fields it never reads. Here a link message is decoded for the
seven fields ovsbr uses and everything else is skipped by length. Requests
are still built by pyroute2 (``IPBatch``); this module only sends a batch
of them in one write and reads the kernel's acknowledgements back.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import os
import select
import socket
import struct

NLMSG_HDR = struct.Struct("=LHHLL")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
RTATTR = struct.Struct("=HH")  # len, type
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_INFO_KIND = 18, 20, 1
RTMGRP_LINK = 0x1
IFF_UP = 0x1
AF_UNSPEC = 0
NLA_TYPE_MASK = 0x3FFF
RCVBUF = 8 * 1024 * 1024


@dataclasses.dataclass
class Link:
    index: int
    name: str
    kind: str | None
    master: int | None
    alias: str | None
    mtu: int | None
    mac: str | None
    up: bool


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(buf: bytes, off: int, end: int):
    while off + 4 <= end:
        length, kind = RTATTR.unpack_from(buf, off)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, off + 4, off + length
        off += _align(length)


def _cstr(buf: bytes, start: int, stop: int) -> str:
    return bytes(buf[start:stop]).split(b"\0", 1)[0].decode("utf-8", "replace")


def decode_link(buf: bytes, off: int, end: int) -> tuple[int, Link]:
    """(family, Link) of the ifinfomsg at ``off`` (after the netlink header)."""
    family, _type, index, flags, _change = IFINFOMSG.unpack_from(buf, off)
    name = kind = alias = mac = None
    master = mtu = None
    for kind_, start, stop in _attrs(buf, off + IFINFOMSG.size, end):
        if kind_ == IFLA_IFNAME:
            name = _cstr(buf, start, stop)
        elif kind_ == IFLA_MASTER:
            master = struct.unpack_from("=I", buf, start)[0] or None
        elif kind_ == IFLA_MTU:
            mtu = struct.unpack_from("=I", buf, start)[0]
        elif kind_ == IFLA_IFALIAS:
            alias = _cstr(buf, start, stop) or None
        elif kind_ == IFLA_ADDRESS and stop - start == 6:
            mac = bytes(buf[start:stop]).hex(":")
        elif kind_ == IFLA_LINKINFO:
            for sub, s2, e2 in _attrs(buf, start, stop):
                if sub == IFLA_INFO_KIND:
                    kind = _cstr(buf, s2, e2)
    return family, Link(index, name or "", kind, master, alias, mtu, mac, bool(flags & IFF_UP))


def messages(buf: bytes):
    """Yield (type, flags, seq, payload offset, end) for each message in ``buf``."""
    off = 0
    while off + NLMSG_HDR.size <= len(buf):
        length, mtype, flags, seq, _pid = NLMSG_HDR.unpack_from(buf, off)
        if length < NLMSG_HDR.size:
            return
        yield mtype, flags, seq, off + NLMSG_HDR.size, off + length
        off += _align(length)


class RtnlSocket:
    """A raw NETLINK_ROUTE socket: link dumps, link events, request batches."""

    def __init__(self, groups: int = 0):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind((0, groups))
        self._seq = 1
        self._wake_r, self._wake_w = os.pipe()

    def close(self) -> None:
        self.sock.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def wake(self) -> None:
        """Make a blocked :meth:`recv` return None (for a clean stop)."""
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def recv(self) -> bytes | None:
        ready, _, _ = select.select([self.sock, self._wake_r], [], [])
        if self._wake_r in ready:
            return None
        return self.sock.recv(1 << 20)

    def dump_links(self) -> list[Link]:
        self._seq += 1
        seq = self._seq
        req = NLMSG_HDR.pack(NLMSG_HDR.size + 16, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                             seq, 0) + IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0)
        self.sock.sendall(req)
        links = []
        while True:
            buf = self.sock.recv(1 << 20)
            for mtype, _flags, mseq, off, end in messages(buf):
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return links
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", buf, off)[0]
                    raise OSError(err, os.strerror(err))
                if mtype == RTM_NEWLINK:
                    links.append(decode_link(buf, off, end)[1])

    def send_batch(self, data: bytes, seqs: set[int]) -> dict[int, int]:
        """Send pre-built requests (each asking for an ACK); {seq: errno} of failures."""
        self.sock.sendall(data)
        pending, failures = set(seqs), {}
        while pending:
            buf = self.sock.recv(1 << 20)
            for mtype, _flags, seq, off, _end in messages(buf):
                if mtype == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    err = -struct.unpack_from("=i", buf, off)[0]
                    if err:
                        failures[seq] = err
        return failures


def strerror(code: int) -> str:
    return f"{errno_mod.errorcode.get(code, code)}: {os.strerror(code)}"
