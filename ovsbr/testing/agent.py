"""Run ovsbr-agent and the ovsbr CLI as real processes, the way operators do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

from ovsbr.exceptions import StoreError
from ovsbr.store.file import FileStore
from ovsbr.testing.netns import TIME_SCALE, run, wait_for
from ovsbr.testing.privileges import AGENT_CAPS, Identity

BIN = os.path.dirname(sys.executable)


def write_config(path: str, sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(value)
            lines.append(f"{key} = {value}")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


class Agent:
    """One ovsbr-agent process plus a CLI bound to the same config file."""

    def __init__(self, workdir: str, sections: dict[str, dict[str, Any]],
                 netns: str | None = None, source: str | None = None,
                 identity: Identity | None = None):
        """``source``: another checkout whose ``ovsbr`` package the agent runs
        (benchmarks compare two versions side by side); None: this one.

        ``identity``: run the agent as that unprivileged user with
        CAP_NET_ADMIN only. Its configuration and state then live in a
        directory of their own that the identity's group can reach (pytest's
        directories are root's alone); ``close()`` removes it. The CLI keeps
        running as root, an operator's ``ovsbr`` commands."""
        self.workdir = workdir
        self.source = source
        self.identity = identity
        os.makedirs(workdir, exist_ok=True)
        home = workdir
        self.private: str | None = None
        if identity is not None:
            home = self.private = tempfile.mkdtemp(prefix="ovsbr-agent-")
            identity.share(home, 0o750)
        self.state_path = os.path.join(home, "state")
        if identity is not None:
            os.makedirs(self.state_path)
            identity.give(self.state_path)
        sections = {k: dict(v) for k, v in sections.items()}
        sections.setdefault("DEFAULT", {}).setdefault("state_path", self.state_path)
        sections["DEFAULT"].setdefault("host", "testhost")
        self.host = sections["DEFAULT"]["host"]
        # Status lives in the store itself when it is shared (etcd).
        self.shared_store = sections["DEFAULT"].get("store", "file") != "file"
        self.config = write_config(os.path.join(home, "ovsbr.conf"), sections)
        if identity is not None:
            identity.share(self.config, 0o640)
        self.log = os.path.join(workdir, "agent.log")
        self.netns = netns
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def bin(name: str) -> str:
        return os.path.join(BIN, name)

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def command(self, extra: list[str] | None = None,
                caps: tuple[str, ...] = AGENT_CAPS) -> tuple[list[str], dict[str, str]]:
        """The agent's command line and environment, as ``start`` runs it."""
        env = dict(os.environ)
        if self.source is not None:
            env["PYTHONPATH"] = self.source
        prefix = self._prefix()
        if self.identity is not None:
            prefix += self.identity.prefix(caps)
            env["HOME"] = self.private or self.workdir
        return (prefix + [os.path.join(BIN, "ovsbr-agent"), "--config-file", self.config]
                + (extra or []), env)

    def start(self, extra: list[str] | None = None) -> Agent:
        log = open(self.log, "a")
        argv, env = self.command(extra)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return self

    def run_once(self, extra: list[str], caps: tuple[str, ...] = AGENT_CAPS,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the agent to completion (``--cleanup``, a refused start)."""
        argv, env = self.command(extra, caps)
        return subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=timeout * TIME_SCALE)

    def close(self) -> None:
        """Stop the agent and remove its private directory, if it has one."""
        self.stop()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * TIME_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc, self.proc = self.proc.returncode, None
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args: str, check: bool = True, stdin: str | None = None):
        res = subprocess.run(
            self._prefix() + [os.path.join(BIN, "ovsbr"), "--config-file", self.config,
                              *args], capture_output=True, text=True, input=stdin,
            timeout=60 * TIME_SCALE)
        if check and res.returncode != 0:
            raise AssertionError(f"ovsbr {' '.join(args)} failed: {res.stderr}")
        return res

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-f", "json").stdout)

    def status(self) -> dict[str, Any]:
        if self.shared_store:
            res = self.cli("status", "-f", "json", check=False)
            try:
                return json.loads(res.stdout)["hosts"].get(self.host, {})
            except (ValueError, KeyError):
                return {}
        try:
            hosts = FileStore(path=self.state_path).read_status()
        except StoreError:
            return {}
        return next(iter(hosts.values()), {})

    def port_status(self, port: str) -> str | None:
        return self.status().get("ports", {}).get(port, {}).get("status")

    def wait_ports(self, ports: list[str], status: str = "bound", timeout: float = 15):
        def ok():
            return all(self.port_status(p) == status for p in ports)
        try:
            return wait_for(ok, timeout, what=f"ports {ports} {status}")
        except TimeoutError as e:
            # The log as it is now, when the wait gave up, not as it was before.
            raise TimeoutError(f"{e}; statuses {[self.port_status(p) for p in ports]}; "
                               f"log:\n{self.tail()}") from None

    def excerpt(self, head: int = 40, tail: int = 20) -> str:
        """The log's start (startup, connections, first reconciles) and end,
        for a failure report: a tail alone can be all periodic lines."""
        lines = self._lines()
        if len(lines) > head + tail:
            lines = [*lines[:head], f"... ({len(lines) - head - tail} lines)\n",
                     *lines[-tail:]]
        return textwrap.indent("".join(lines), "  ")

    def tail(self, lines: int = 30) -> str:
        return textwrap.indent("".join(self._lines()[-lines:]), "  ")

    def _lines(self) -> list[str]:
        try:
            with open(self.log) as f:
                return f.readlines()
        except OSError:
            return []


def log_text(agent: Agent) -> str:
    with open(agent.log) as f:
        return f.read()


__all__ = ["Agent", "log_text", "run", "write_config"]
