"""What the agent may do to the host, checked once at start.

ovsbr-agent parses untrusted input all day (packet-ins from VMs, store
documents other hosts wrote, OVSDB updates), so it runs as its own user
with one capability, CAP_NET_ADMIN, rather than as root: a bug in a parser
then yields network administration of the host, not the host. The kernel
is the judge of what the process holds; this module reads its answer from
``/proc/self/status`` and turns a missing capability into one line that
says how to grant it, before a netlink call deep in a driver fails with
EPERM.

Parsing is pure (``parse_status``, ``missing``) and unit-tested; only
``current()`` reads the process's own status file.
"""

from __future__ import annotations

import dataclasses
import grp
import os

from ovsbr.exceptions import OvsbrError

# Capability numbers from linux/capability.h, for the ones ovsbr names in
# messages; any other bit is reported by its number.
NAMES = {
    0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH", 3: "CAP_FOWNER",
    5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 10: "CAP_NET_BIND_SERVICE",
    11: "CAP_NET_BROADCAST", 12: "CAP_NET_ADMIN", 13: "CAP_NET_RAW", 14: "CAP_IPC_LOCK",
    16: "CAP_SYS_MODULE", 19: "CAP_SYS_PTRACE", 21: "CAP_SYS_ADMIN",
}
BITS = {name: bit for bit, name in NAMES.items()}
# Both drivers change links through netlink (taps up; bridges, VLAN and
# VXLAN devices; nftables tables); nothing else needs a capability: the
# OpenFlow listener is above port 1024 and OVSDB's socket is reached through
# its group.
AGENT_NEEDS = ("CAP_NET_ADMIN",)
GRANT = ("run it from etc/systemd/ovsbr-agent.service (User=ovsbr, "
         "AmbientCapabilities=CAP_NET_ADMIN), or under `setpriv --inh-caps=+net_admin "
         "--ambient-caps=+net_admin`, or as root")


class PrivilegeError(OvsbrError):
    """The process lacks a capability it needs."""


@dataclasses.dataclass(frozen=True)
class Privileges:
    uid: int
    gid: int
    effective: frozenset[str]

    def describe(self) -> str:
        caps = ", ".join(sorted(self.effective)) if self.effective else "no capabilities"
        if len(self.effective) > 8:
            caps = f"{len(self.effective)} capabilities"
        return f"uid {self.uid}, gid {self.gid}, {caps}"


def group_of(path: str) -> str | None:
    """The name of ``path``'s group (its number if it has none); None if
    ``path`` cannot be read. For messages that tell a user which group to join."""
    try:
        gid = os.stat(path).st_gid
    except OSError:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def names(mask: int) -> frozenset[str]:
    """The capability names set in a kernel capability mask."""
    return frozenset(NAMES.get(bit, f"cap_{bit}") for bit in range(64) if mask >> bit & 1)


def parse_status(text: str) -> Privileges:
    """Uid, gid and effective capabilities from a ``/proc/PID/status`` text."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    try:
        return Privileges(uid=int(fields["Uid"][1]), gid=int(fields["Gid"][1]),
                          effective=names(int(fields["CapEff"][0], 16)))
    except (KeyError, IndexError, ValueError) as e:
        raise PrivilegeError(f"cannot read this process's capabilities: {e!r}") from None


def current() -> Privileges:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
        return parse_status(f.read())


def missing(held: Privileges, needed: tuple[str, ...] = AGENT_NEEDS) -> list[str]:
    return [cap for cap in needed if cap not in held.effective]


def require(needed: tuple[str, ...] = AGENT_NEEDS,
            held: Privileges | None = None) -> Privileges:
    """Return what the process holds, or raise one line naming what is missing."""
    held = held or current()
    lacking = missing(held, needed)
    if lacking:
        raise PrivilegeError(
            f"missing capability {' and '.join(lacking)}, needed to change the host's "
            f"links and nftables; this process runs as {held.describe()}: {GRANT}")
    return held
