"""Fake VMs and fake wires for the functional tests and the demo.

Not product code: this is the harness that stands in for a KVM host's VMs.
A VM is a network namespace whose ``eth0`` is one end of a veth pair; the
other end stays in the host as the VM's tap (``vnet0`` in real life). Every
name starts with the environment's prefix, and :meth:`NetEnv.cleanup`
removes exactly what this environment made, whatever the test did.
Addresses are documentation ranges only (RFC 5737).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

TEST_NET = "192.0.2"  # RFC 5737 TEST-NET-1
# Under software emulation (the stock-kernel VM without KVM) everything runs
# many times slower: waits and command time limits stretch by this factor.
# What a test asserts about the datapath does not change, only how long it
# is given; timings from such a run mean nothing and none is reported.
TIME_SCALE = float(os.environ.get("OVSBR_TEST_TIME_SCALE", "1"))
OUTSIDE_NET = "198.51.100"  # RFC 5737 TEST-NET-2


def run(cmd: list[str], check: bool = True, timeout: float = 30,
        **kw) -> subprocess.CompletedProcess:
    """Run a command; on failure the exception says what the command printed."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * TIME_SCALE,
                         **kw)
    if check and res.returncode:
        raise RuntimeError(f"{shlex.join(cmd)[:200]} exited {res.returncode}:\n"
                           f"{res.stderr.strip()[-2000:]}")
    return res


def wait_for(cond: Callable[[], object], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition"):
    """Poll ``cond`` until it returns something truthy; raise on timeout."""
    timeout *= TIME_SCALE
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ip_batch(lines: list[str]) -> None:
    """Many ip(8) commands in one process: thousands of links in a second."""
    with tempfile.NamedTemporaryFile("w", suffix=".ip", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        run(["ip", "-force", "-batch", f.name], check=False, timeout=300)
    finally:
        os.unlink(f.name)


def make_veths(names: list[str]) -> None:
    ip_batch([f"link add {n} type veth peer name {n}p" for n in names])


def delete_links(names: list[str]) -> None:
    ip_batch([f"link del {n}" for n in names])


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return run(cmd, check=False).returncode == 0


def link_master(name: str) -> str | None:
    out = run(["ip", "-o", "link", "show", "dev", name], check=False).stdout
    parts = out.split()
    return parts[parts.index("master") + 1] if "master" in parts else None


def bridge_conntrack_missing() -> bool:
    """Whether this kernel lacks bridge-family conntrack (nf_conntrack_bridge):
    it refuses a ``ct`` match in a bridge table then. Probed with nft, not
    through the driver, so tests and benchmarks do not take its word."""
    table = "ovsbr_ctprobe"
    script = (f"add table bridge {table}\nadd chain bridge {table} c\n"
              f"add rule bridge {table} c ct state established accept\n"
              f"delete table bridge {table}\n")
    return run(["nft", "-f", "/dev/stdin"], check=False, input=script).returncode != 0


def tx_offload_off(dev: str, netns: str | None = None) -> None:
    """OVS netdev datapaths need this on veths, or TCP stalls (ping still works)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run(prefix + ["ethtool", "-K", dev, "tx", "off"], check=False)


class Capture:
    text = ""


class Namespace:
    def __init__(self, env: NetEnv, name: str):
        self.env = env
        self.name = name

    def exec(self, cmd: list[str] | str, check: bool = True, timeout: float = 30):
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        return run(["ip", "netns", "exec", self.name] + cmd, check=check, timeout=timeout)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name] + cmd, **kw)

    def ping(self, ip: str, count: int = 1, interval: float = 0.2,
             wait: float = 1.0, extra: list[str] | None = None) -> tuple[int, int]:
        """Return (sent, received)."""
        cmd = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait)]
        res = self.exec(cmd + (extra or []) + [ip], check=False,
                        timeout=count * interval + wait + 10)
        for line in res.stdout.splitlines():
            if "packets transmitted" in line:
                fields = line.split(",")
                return int(fields[0].split()[0]), int(fields[1].split()[0])
        return count, 0

    @contextlib.contextmanager
    def capture(self, bpf: str, iface: str = "eth0", settle: float = 1.0):
        """tcpdump in this namespace for the with-block; ``.text`` after it.

        ``settle`` gives tcpdump time to attach before the block sends.
        """
        cap = Capture()
        proc = self.popen(["tcpdump", "-n", "-e", "-l", "-i", iface, bpf],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            time.sleep(settle)
            yield cap
            time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGINT)
            cap.text = proc.communicate(timeout=5)[0]

    def can_ping(self, ip: str, tries: int | None = None) -> bool:
        """True once one ping goes through (ARP and wiring may need a moment).

        Twenty tries by default, scaled like every other wait of the harness
        (the stock-kernel VM runs under TCG at a fraction of native speed).
        """
        for _ in range(tries or max(1, round(20 * TIME_SCALE))):
            if self.ping(ip, count=1, wait=0.5)[1] == 1:
                return True
        return False


PROBE = "ovsbr.testing.probe"
SCAPY_PRELUDE = (
    "import logging; logging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n"
    "from scapy.all import *\n"
    "conf.verb = 0\n")


class VM(Namespace):
    def __init__(self, env: NetEnv, name: str, tap: str, ip: str, mac: str):
        super().__init__(env, name)
        self.tap = tap
        self.ip = ip
        self.mac = mac

    def scapy(self, code: str, timeout: float = 60):
        """Run a scapy snippet inside the VM (``eth0`` is its NIC)."""
        return self.exec([sys.executable, "-c", SCAPY_PRELUDE + code], timeout=timeout)

    def serve(self, *ports: int) -> subprocess.Popen:
        """Echo servers on TCP and UDP ``ports`` (:mod:`ovsbr.testing.probe`)."""
        proc = self.env.track(self.popen([sys.executable, "-m", PROBE, "serve",
                                          *map(str, ports)],
                                         stdout=subprocess.PIPE, text=True))
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def connects(self, proto: str, addr: str, port: int) -> bool:
        """Whether one TCP connection (UDP datagram) to ``addr`` gets its echo."""
        return self.exec([sys.executable, "-m", PROBE, "try", proto, addr, str(port)],
                         check=False).returncode == 0

    def stream(self, addr: str, port: int, seconds: float) -> subprocess.Popen:
        """A TCP connection echoing every 50 ms; its stdout: one time per echo."""
        return self.env.track(self.popen([sys.executable, "-m", PROBE, "stream", addr,
                                          str(port), str(seconds)],
                                         stdout=subprocess.PIPE, text=True))


class NetEnv:
    """Namespaces and veths under one unique prefix, removed by cleanup()."""

    def __init__(self, prefix: str | None = None):
        # <= 5 characters so prefix + a short role still fits IFNAMSIZ (15).
        self.prefix = prefix or ("t" + secrets.token_hex(2))
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> NetEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def netns(self, role: str) -> Namespace:
        name = f"{self.prefix}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return Namespace(self, name)

    def veth(self, host_end: str, peer: str, peer_netns: str | None = None,
             offload_off: bool = False) -> None:
        run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", peer])
        self.links.append(host_end)
        if offload_off:
            tx_offload_off(host_end)
            tx_offload_off(peer)
        if peer_netns:
            run(["ip", "link", "set", peer, "netns", peer_netns])

    def vm(self, role: str, host_id: int, mtu: int | None = None,
           subnet: str = TEST_NET, offload_off: bool = False) -> VM:
        """A VM: namespace ``<prefix>-<role>``, tap ``<prefix><role>`` in the host."""
        ns = self.netns(role)
        tap = f"{self.prefix}{role}"
        assert len(tap) <= 15, tap
        digest = hashlib.sha1(self.prefix.encode()).digest()
        mac = "52:54:" + ":".join(f"{b:02x}" for b in (*digest[:3], host_id))
        self.veth(tap, f"{tap}p", ns.name, offload_off=offload_off)
        # Offset: the host itself may sit in a documentation range (this
        # machine's eth0 does); keep VMs clear of .1-.10.
        ip = f"{subnet}.{10 + host_id}"
        ns.exec(["ip", "link", "set", f"{tap}p", "name", "eth0"])
        ns.exec(["ip", "link", "set", "eth0", "address", mac])
        if mtu:
            ns.exec(["ip", "link", "set", "eth0", "mtu", str(mtu)])
        ns.exec(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
        ns.exec(["ip", "link", "set", "eth0", "up"])
        return VM(self, ns.name, tap, ip, mac)

    def outside(self, nic_role: str = "nic", host_id: int = 240,
                subnet: str = TEST_NET, offload_off: bool = False) -> tuple[str, VM]:
        """A host beyond the physical NIC: returns (nic name in host, outside VM).

        The host end of the veth plays the compute node's physical NIC.
        """
        vm = self.vm("out", host_id, subnet=subnet, offload_off=offload_off)
        # Rename: the host end is the "physical NIC" to map, not a VM tap.
        nic = f"{self.prefix}{nic_role}"
        run(["ip", "link", "set", vm.tap, "name", nic])
        self.links.remove(vm.tap)
        self.links.append(nic)
        run(["ip", "link", "set", nic, "up"])
        vm.tap = nic
        return nic, vm

    def veths(self, count: int, role: str = "v") -> list[str]:
        """``count`` host-only veths named <prefix><role><i>, removed at cleanup."""
        names = [f"{self.prefix}{role}{i}" for i in range(count)]
        make_veths(names)
        self.links.extend(names)
        return names

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self._procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(5)
        for ns in reversed(self.namespaces):
            for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            run(["ip", "netns", "del", ns], check=False)
        out = run(["ip", "-o", "link", "show"], check=False).stdout
        existing = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                    if line.count(":") >= 2}
        present = [link for link in self.links if link in existing]
        if len(present) > 20:
            delete_links(present)
        else:
            for link in present:
                run(["ip", "link", "del", link], check=False)
        self.namespaces.clear()
        self.links.clear()
