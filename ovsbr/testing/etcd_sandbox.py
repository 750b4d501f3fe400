"""A private single-member etcd (Debian's etcd-server) for tests, the demo and benches.

Started directly with its own data dir, optionally inside a network
namespace (an emulated control-plane host); stop() kills it and the data
dir goes with :meth:`EtcdSandbox.remove`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from ovsbr.testing.netns import wait_for


def available() -> str | None:
    if shutil.which("etcd") is None:
        return "etcd not installed (Debian package etcd-server)"
    return None


def free_port_pair() -> tuple[int, int]:
    import socket

    ports = []
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports[0], ports[1]


class EtcdSandbox:
    def __init__(self, host: str = "127.0.0.1", netns: str | None = None,
                 client_port: int | None = None, peer_port: int | None = None):
        self.host = host
        self.netns = netns
        if client_port is None or peer_port is None:
            client_port, peer_port = free_port_pair()
        self.client_port, self.peer_port = client_port, peer_port
        self.datadir = tempfile.mkdtemp(prefix="ovsbr-etcd-")
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def start(self) -> EtcdSandbox:
        peer = f"http://{self.host}:{self.peer_port}"
        cmd = ["etcd", "--name", "ovsbr-test", "--data-dir", self.datadir,
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"ovsbr-test={peer}", "--log-level", "warn"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        log = open(os.path.join(self.datadir, "etcd.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self.healthy, 20, interval=0.1, what=f"etcd at {self.url}")
        return self

    def _post(self, path: str, body: dict) -> dict:
        if self.netns:  # the namespace's address is not reachable from here
            cmd = ["ip", "netns", "exec", self.netns, "curl", "-sf", "-m", "5", "-d",
                   json.dumps(body), self.url + path]
            return json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                             check=True).stdout)
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - test code
            return json.loads(resp.read())

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError("etcd exited: " + self.log_tail())
        try:
            self._post("/v3/kv/range", {"key": "AA=="})
            return True
        except Exception:
            return False

    def compact(self, revision: int) -> None:
        self._post("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def revision(self) -> int:
        return int(self._post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down: float = 0.0) -> None:
        self.stop()
        time.sleep(down)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.datadir, "etcd.log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""
