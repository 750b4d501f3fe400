"""The MAC learning state machine, free of OpenFlow so it can be unit-tested.

One table per bridge: (network, MAC) -> port. The app asks :meth:`learn`
what a packet-in means and turns the verdict into flow-mods; aging is done
by the switch (idle timeouts) and reported back through :meth:`expire`.
"""

from __future__ import annotations

import collections
import dataclasses
import time

NEW, KNOWN, MOVED, LIMITED, DAMPED, FLAP = "new", "known", "moved", "limited", "damped", "flap"


@dataclasses.dataclass
class Entry:
    port: int
    learned_at: float
    moves: collections.deque = dataclasses.field(default_factory=lambda: collections.deque())
    damped_until: float = 0.0


@dataclasses.dataclass
class Counters:
    packet_ins: int = 0
    learned: int = 0
    moved: int = 0
    flaps: int = 0
    limited: int = 0
    expired: int = 0
    dropped: int = 0  # malformed or unusable packet-ins

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class MacTable:
    def __init__(self, max_macs_per_port: int = 1024, flap_moves: int = 5,
                 flap_window: float = 10.0, damp_time: float = 30.0,
                 clock=time.monotonic):
        self.max_macs_per_port = max_macs_per_port
        self.flap_moves = flap_moves
        self.flap_window = flap_window
        self.damp_time = damp_time
        self.clock = clock
        self.entries: dict[tuple[int, str], Entry] = {}
        self.per_port: collections.Counter = collections.Counter()
        self.counters = Counters()

    def learn(self, lid: int, mac: str, port: int) -> tuple[str, int | None]:
        """Verdict for a source seen on ``port``: (what, old port if moved)."""
        now = self.clock()
        key = (lid, mac)
        entry = self.entries.get(key)
        if entry is not None and entry.port == port:
            return KNOWN, None
        if entry is not None:
            if now < entry.damped_until:
                return DAMPED, None
            while entry.moves and now - entry.moves[0] > self.flap_window:
                entry.moves.popleft()
            entry.moves.append(now)
            if len(entry.moves) >= self.flap_moves:
                entry.damped_until = now + self.damp_time
                entry.moves.clear()
                self.counters.flaps += 1
                return FLAP, None
            if self.per_port[port] >= self.max_macs_per_port:
                self.counters.limited += 1
                return LIMITED, None
            old = entry.port
            self.per_port[old] -= 1
            self.per_port[port] += 1
            entry.port, entry.learned_at = port, now
            self.counters.moved += 1
            return MOVED, old
        if self.per_port[port] >= self.max_macs_per_port:
            self.counters.limited += 1
            return LIMITED, None
        self.entries[key] = Entry(port, now)
        self.per_port[port] += 1
        self.counters.learned += 1
        return NEW, None

    def expire(self, lid: int, mac: str, port: int) -> bool:
        """The switch aged (lid, mac, port) out; True if the entry was ours."""
        entry = self.entries.get((lid, mac))
        if entry is None or entry.port != port:
            return False
        del self.entries[(lid, mac)]
        self.per_port[port] -= 1
        self.counters.expired += 1
        return True

    def forget_port(self, port: int) -> list[tuple[int, str]]:
        """Drop every entry on a port that left the bridge."""
        gone = [k for k, e in self.entries.items() if e.port == port]
        for k in gone:
            del self.entries[k]
        self.per_port.pop(port, None)
        return gone

    def forget_network(self, lid: int) -> None:
        for k in [k for k in self.entries if k[0] == lid]:
            self.per_port[self.entries.pop(k).port] -= 1

    def snapshot(self) -> list[dict]:
        now = self.clock()
        return [{"lid": lid, "mac": mac, "port": e.port, "age": round(now - e.learned_at, 1)}
                for (lid, mac), e in sorted(self.entries.items())]
