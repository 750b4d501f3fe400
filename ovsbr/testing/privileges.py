"""An unprivileged identity for test agents, as the systemd unit makes one.

Tests run the agent under ``setpriv`` (util-linux) with a numeric uid and
gid that no account uses and CAP_NET_ADMIN as its only capability (ambient,
inheritable and bounding set), which is what ``User=ovsbr`` with
``AmbientCapabilities=CAP_NET_ADMIN`` gives in production. Numeric ids need
no account, so nothing is added to /etc/passwd and nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import shutil

from ovsbr.privileges import AGENT_NEEDS

# setpriv's spelling of what the agent needs: ("net_admin",)
AGENT_CAPS = tuple(cap.removeprefix("CAP_").lower() for cap in AGENT_NEEDS)


def _unused(start: int) -> int:
    for n in range(start, start + 1000):
        try:
            pwd.getpwuid(n)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(n)
        except KeyError:
            return n
    raise RuntimeError(f"no unused uid/gid from {start}")


@dataclasses.dataclass(frozen=True)
class Identity:
    uid: int
    gid: int

    def prefix(self, caps: tuple[str, ...] = AGENT_CAPS,
               groups: tuple[int, ...] = ()) -> list[str]:
        """The command prefix that runs a program as this identity."""
        want = ",".join(["-all"] + [f"+{c}" for c in caps])
        return ["setpriv", "--no-new-privs", f"--reuid={self.uid}", f"--regid={self.gid}",
                f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
                f"--inh-caps={want}", f"--ambient-caps={want}", f"--bounding-set={want}",
                "--"]

    def give(self, path: str, mode: int = 0o2770) -> None:
        """Make ``path`` this identity's own (a state directory)."""
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)

    def share(self, path: str, mode: int) -> None:
        """Let this identity's group reach ``path`` (root keeps owning it)."""
        os.chown(path, 0, self.gid)
        os.chmod(path, mode)


def available() -> str | None:
    """None when agents can be run unprivileged, else why not (a skip reason)."""
    if shutil.which("setpriv") is None:
        return "setpriv not installed (Debian package util-linux)"
    if os.geteuid() != 0:
        return "switching to an unprivileged identity needs root"
    return None


def unused_identity(start: int = 61000) -> Identity:
    n = _unused(start)
    return Identity(n, n)
