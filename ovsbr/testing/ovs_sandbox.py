"""A private Open vSwitch: own ovsdb-server and ovs-vswitchd in a run dir.

This machine has no openvswitch kernel module, and Debian's ovs-ctl insists
on loading it, so the daemons are started directly; bridges must use
``datapath_type=netdev`` (userspace). Tests and the demo observe the switch
with ovs-vsctl/ovs-ofctl/ovs-appctl here; product code never does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator

from ovsbr.testing.netns import run, wait_for

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def available() -> str | None:
    """None when the sandbox can run, else why not (a skip reason)."""
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-vsctl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package openvswitch-switch)"
    if not os.path.exists(SCHEMA):
        return f"{SCHEMA} missing"
    if os.geteuid() != 0:
        return "the OVS sandbox needs root"
    return None


class OvsSandbox:
    def __init__(self, rundir: str | None = None, netns: str | None = None):
        self.rundir = rundir or tempfile.mkdtemp(prefix="ovsbr-ovs-")
        self.netns = netns
        self.db_sock = os.path.join(self.rundir, "db.sock")
        self.connection = f"unix:{self.db_sock}"
        self.socket_group: int | None = None

    # -- processes -------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"):
            env[var] = self.rundir
        return env

    def _cmd(self, args: list[str], check: bool = True, timeout: float = 30):
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return run(prefix + args, check=check, timeout=timeout, env=self._env())

    def _path(self, name: str) -> str:
        return os.path.join(self.rundir, name)

    def start(self) -> OvsSandbox:
        os.makedirs(self.rundir, exist_ok=True)
        db = self._path("conf.db")
        if not os.path.exists(db):
            run(["ovsdb-tool", "create", db, SCHEMA])
        self.start_ovsdb()
        self.vsctl("--no-wait", "init")
        self.start_vswitchd()
        return self

    def start_ovsdb(self) -> None:
        self._cmd(["ovsdb-server", self._path("conf.db"), f"--remote=punix:{self.db_sock}",
                   f"--pidfile={self._path('ovsdb-server.pid')}", "--detach",
                   f"--log-file={self._path('ovsdb-server.log')}",
                   f"--unixctl={self._path('ovsdb-server.ctl')}"])
        wait_for(lambda: os.path.exists(self.db_sock), 10, what="ovsdb-server socket")
        self._share_socket()

    def share_socket(self, gid: int) -> None:
        """Let group ``gid`` use OVSDB, as Debian's ``OVS_USER_ID`` setup lets
        the openvswitch group: run dir 0750 and socket 0770 in that group.
        Kept across ovsdb-server restarts, which make a new socket."""
        self.socket_group = gid
        self._share_socket()

    def _share_socket(self) -> None:
        if self.socket_group is None:
            return
        for path, mode in ((self.rundir, 0o750), (self.db_sock, 0o770)):
            os.chown(path, 0, self.socket_group)
            os.chmod(path, mode)

    def start_vswitchd(self) -> None:
        self._cmd(["ovs-vswitchd", self.connection,
                   f"--pidfile={self._path('ovs-vswitchd.pid')}", "--detach",
                   f"--log-file={self._path('ovs-vswitchd.log')}",
                   f"--unixctl={self._path('ovs-vswitchd.ctl')}"])
        wait_for(lambda: os.path.exists(self._path("ovs-vswitchd.ctl")), 10,
                 what="ovs-vswitchd control socket")

    def pid(self, daemon: str) -> int | None:
        """The running ``daemon``'s pid (ovsdb-server, ovs-vswitchd), if any."""
        try:
            with open(self._path(f"{daemon}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _stop(self, daemon: str, sig: int = signal.SIGTERM) -> None:
        pid = self.pid(daemon)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(f"{daemon}.pid"))
        if daemon == "ovs-vswitchd":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path("ovs-vswitchd.ctl"))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.db_sock)

    @contextlib.contextmanager
    def paused(self, daemon: str = "ovs-vswitchd") -> Iterator[None]:
        """``daemon`` stopped (SIGSTOP) for the block: it reads nothing, so
        what a controller or an OVSDB client sends queues on the
        connection; always resumed."""
        pid = self.pid(daemon)
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def stop_ovsdb(self) -> None:
        """ovsdb-server down, ovs-vswitchd left running (it keeps forwarding)."""
        self._stop("ovsdb-server")

    def restart_ovsdb(self) -> None:
        self._stop("ovsdb-server")
        self.start_ovsdb()

    def restart_vswitchd(self) -> None:
        self._stop("ovs-vswitchd")
        self.start_vswitchd()

    def stop(self, remove: bool = True) -> None:
        # A netdev bridge's internal port is a persistent kernel tap: delete
        # the bridges while ovs-vswitchd runs, so it removes them.
        if self.pid("ovs-vswitchd") and self.pid("ovsdb-server"):
            for bridge in self.bridges():
                self.vsctl("--if-exists", "del-br", bridge, check=False)
        self._stop("ovs-vswitchd")
        self._stop("ovsdb-server")
        if remove:
            shutil.rmtree(self.rundir, ignore_errors=True)

    # -- observation -----------------------------------------------------------
    def vsctl(self, *args: str, check: bool = True, wait: int = 10):
        """ovs-vsctl on the sandbox; ``wait``: seconds it may wait for
        ovs-vswitchd (longer after a teardown of thousands of ports)."""
        return self._cmd(["ovs-vsctl", f"--db={self.connection}", f"--timeout={wait}", *args],
                         check=check, timeout=wait + 20)

    def ofctl(self, *args: str, check: bool = True):
        return self._cmd(["ovs-ofctl", "-O", "OpenFlow13", *args], check=check)

    def appctl(self, *args: str, check: bool = True):
        return self._cmd(["ovs-appctl", "-t", self._path("ovs-vswitchd.ctl"), *args],
                         check=check)

    def flows(self, bridge: str) -> list[str]:
        out = self.ofctl("dump-flows", bridge).stdout.splitlines()
        return [line.strip() for line in out if "actions=" in line]

    def get(self, table: str, record: str, column: str) -> str:
        return self.vsctl("--if-exists", "get", table, record, column).stdout.strip()

    def ports(self, bridge: str) -> list[str]:
        res = self.vsctl("list-ports", bridge, check=False)
        return res.stdout.split() if res.returncode == 0 else []

    def bridges(self) -> list[str]:
        return self.vsctl("list-br").stdout.split()

    def report(self, bridge: str, log_lines: int = 40) -> str:
        """The switch as it stands, for a failure report: is its controller
        connected (and what ovs-vswitchd says about the connection), its
        OpenFlow ports, flows and groups, the datapath's flows, and the end of
        ovs-vswitchd's log (where a controller connection's failures are)."""
        parts = []
        for cmd, args in ((self.vsctl, ("--columns=target,is_connected,status",
                                        "list", "Controller")),
                          (self.ofctl, ("dump-ports-desc", bridge)),
                          (self.ofctl, ("dump-flows", bridge)),
                          (self.ofctl, ("dump-groups", bridge)),
                          (self.appctl, ("dpctl/dump-flows",))):
            res = cmd(*args, check=False)
            parts.append(f"$ {' '.join(args)}\n{res.stdout}{res.stderr}")
        try:
            with open(self._path("ovs-vswitchd.log")) as f:  # its periodic counters left out
                tail = [line for line in f if "|coverage|" not in line][-log_lines:]
        except OSError as e:
            tail = [f"({e})\n"]
        parts.append("ovs-vswitchd.log:\n" + "".join(tail))
        return "\n".join(parts)
