"""Several emulated hypervisors sharing one desired state in etcd.

:class:`MultiHost` starts one ovsbr-agent inside each host's namespace
(:class:`ovsbr.testing.hypervisors.Fabric`), with its own OVS for the
openvswitch driver; the ``fabric`` fixture (conftest) runs etcd in a
namespace of its own on the underlay.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from ovsbr.testing import ovs_sandbox
from ovsbr.testing.agent import Agent
from tests.functional.conftest import DATAPATH_TYPE

LEASE_TTL = 3


class MultiHost:
    def __init__(self, fabric, tmp_path):
        self.fabric = fabric
        self.tmp_path = tmp_path
        self.agents: dict[str, Agent] = {}
        self.hosts = {}
        self.sandboxes = []

    def add(self, name: str, index: int, driver: str = "linuxbridge",
            extra: dict[str, dict] | None = None):
        """A host with an agent (not started); ``extra``: more config sections."""
        host = self.fabric.host(name, index)
        sections = {"DEFAULT": {"driver": driver, "store": "etcd", "host": name,
                                "resync_interval": 5},
                    "etcd": {"endpoints": self.fabric.etcd.endpoint, "lease_ttl": LEASE_TTL},
                    "vxlan": {"local_ip": host.ip}}
        host.offload_off = driver == "openvswitch" and DATAPATH_TYPE == "netdev"
        if driver == "openvswitch":
            sections["ovs"] = self._ovs_host(host)
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        agent = Agent(str(self.tmp_path / name), sections, netns=host.name)
        self.agents[name], self.hosts[name] = agent, host
        return host, agent

    def _ovs_host(self, host) -> dict:
        """ovs-vswitchd inside the host. Userspace tunnelling (netdev) wants
        the underlay address on an OVS bridge (br-phy); kernel tunnel ports
        (system) use the host's own routing, as on a real compute node."""
        reason = ovs_sandbox.available()
        if reason:
            pytest.skip(reason)
        ovs = ovs_sandbox.OvsSandbox(netns=host.name).start()
        self.sandboxes.append(ovs)
        if DATAPATH_TYPE == "netdev":
            ovs.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy",
                      "datapath_type=netdev", "--", "add-port", "br-phy", "u0")
            host.exec(["ip", "addr", "del", f"{host.ip}/24", "dev", "u0"])
            host.exec(["ip", "addr", "add", f"{host.ip}/24", "dev", "br-phy"])
            host.exec(["ip", "link", "set", "br-phy", "up"])
        host.ovs = ovs
        return {"ovsdb_connection": ovs.connection, "integration_bridge": "br-int",
                "datapath_type": DATAPATH_TYPE}

    def vm(self, host: str, role: str, host_id: int):
        h = self.hosts[host]
        return h.vm(role, host_id, offload_off=h.offload_off)

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        for ovs in self.sandboxes:
            ovs.stop()

    def diagnose(self) -> str:
        """Each host's switch (openvswitch) and agent log, for a failure report
        (conftest's pytest_runtest_makereport)."""
        parts = []
        for name, agent in self.agents.items():
            host = self.hosts[name]
            ovs = getattr(host, "ovs", None)
            if ovs is not None:
                parts.append(f"== {name}: switch br-int\n{ovs.report('br-int')}")
            else:  # linuxbridge: its bridges, forwarding tables and filters
                for args in (["bridge", "-d", "link", "show"], ["bridge", "fdb", "show"],
                             ["nft", "list", "ruleset"]):
                    res = host.exec(args, check=False)
                    parts.append(f"== {name}: $ {' '.join(args)}\n{res.stdout}{res.stderr}")
            parts.append(f"== {name}: agent log\n{agent.excerpt()}")
        return "\n".join(parts)

    def cli(self, *args):
        return next(iter(self.agents.values())).cli(*args)

    def port(self, name, network, vm, host):
        self.cli("port", "create", name, "--network", network, "--device", vm.tap,
                 "--mac", vm.mac, "--host", host)

    def fdb(self, host: str, vni: int) -> str:
        return self.hosts[host].exec(["bridge", "fdb", "show", "dev", f"vxlan-{vni}"]).stdout


def ping_stream(vm, ip: str, count: int, interval: float = 0.1):
    """A steady ping from ``vm`` in the background; read it with communicate()."""
    return vm.popen(["ping", "-n", "-i", str(interval), "-c", str(count), "-W", "1", ip],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pings_lost(out: str, count: int) -> int:
    """How many of ``count`` pings got no reply, from ping's output."""
    return count - len(set(re.findall(r"icmp_seq=(\d+)", out)))
