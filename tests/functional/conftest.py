"""Functional fixtures: real kernel objects, a private OVS, namespaces as VMs.

``datapath`` is parametrized over both drivers, so every scenario written
against it is the shared conformance suite: the same behaviour asked of
linuxbridge and openvswitch, skipping only where the host lacks a feature.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from ovsbr.testing import etcd_sandbox, ovs_sandbox, privileges
from ovsbr.testing.agent import Agent
from ovsbr.testing.hypervisors import Fabric
from ovsbr.testing.netns import NetEnv, link_exists, link_master, run, wait_for

pytestmark = pytest.mark.functional
# OVS datapath for the tests: netdev (userspace) on this host, which has no
# openvswitch module; system (the kernel's) in the stock-kernel VM stage.
DATAPATH_TYPE = os.environ.get("OVSBR_OVS_DATAPATH", "netdev")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.functional)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed scenario reports its datapath as it stood, beside the traceback.

    Packets lost once in a long CI run (the stock-kernel VM under TCG) are
    otherwise gone by the time anyone looks: the flows, groups and
    forwarding tables at the moment of the failure say which side dropped.
    """
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        # A Harness, or multihost.MultiHost (which imports this module).
        if callable(getattr(value, "diagnose", None)):
            try:
                text = value.diagnose()
            except Exception as e:  # the report must not hide the failure
                text = f"(could not read the datapath: {e})"
            name = getattr(value, "name", type(value).__name__)
            report.sections.append((f"datapath {name}", text))


@pytest.fixture(autouse=True)
def _need_root():
    if os.geteuid() != 0:
        pytest.skip("functional tests need root (network namespaces, netlink)")


@pytest.fixture
def env():
    with NetEnv() as e:
        yield e


@pytest.fixture(scope="session")
def identity():
    """The unprivileged user (CAP_NET_ADMIN only) conformance agents run as."""
    reason = privileges.available()
    if reason:
        pytest.skip(reason)
    return privileges.unused_identity()


@pytest.fixture(scope="session")
def ovs(identity):
    reason = ovs_sandbox.available()
    if reason:
        pytest.skip(reason)
    sandbox = ovs_sandbox.OvsSandbox().start()
    sandbox.share_socket(identity.gid)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def fabric(env):
    """An underlay switch with etcd on a host of its own (``fabric.etcd``)."""
    reason = etcd_sandbox.available()
    if reason:
        pytest.skip(reason)
    fab = Fabric(env)
    ctl = fab.host("etcd", 2)
    fab.etcd = etcd_sandbox.EtcdSandbox(host=ctl.ip, netns=ctl.name, client_port=2379,
                                        peer_port=2380).start()
    fab.controller = ctl
    yield fab
    fab.etcd.remove()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Harness:
    """What a conformance scenario needs from a datapath, driver-neutral.

    Its agents run as an unprivileged user holding CAP_NET_ADMIN alone (as
    etc/systemd/ovsbr-agent.service runs them); the CLI runs as root.
    """

    name = "base"
    offload_off = False
    enforces_port_security = False

    def __init__(self, env: NetEnv, tmp_path, identity: privileges.Identity | None):
        self.env = env
        self.tmp_path = tmp_path
        self.identity = identity
        self.mappings: dict[str, str] = {}
        self.agents: list[Agent] = []

    def sections(self) -> dict:
        raise NotImplementedError

    def agent(self, **extra) -> Agent:
        sections = self.sections()
        for section, values in extra.items():
            sections.setdefault(section, {}).update(values)
        workdir = self.tmp_path / "agent"
        workdir.mkdir(exist_ok=True)
        agent = Agent(str(workdir), sections, identity=self.identity)
        self.agents.append(agent)
        return agent

    def two_vms(self, **agent_opts):
        """An agent with one local network n1 and VMs a (p1) and b (p2) wired on it."""
        agent = self.agent(**agent_opts)
        agent.cli("network", "create", "n1", "--type", "local")
        vm1, vm2 = self.vm("a", 1), self.vm("b", 2)
        agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
        agent.cli("port", "create", "p2", "--network", "n1", "--device", vm2.tap)
        agent.start()
        agent.wait_ports(["p1", "p2"])
        return agent, vm1, vm2

    def vm(self, role: str, host_id: int, **kw):
        return self.env.vm(role, host_id, offload_off=self.offload_off, **kw)

    def outside(self, physnet: str = "physnet1", **kw):
        nic, vm = self.env.outside(offload_off=self.offload_off, **kw)
        self.add_physnet(physnet, nic)
        return vm

    def device_exists(self, name: str) -> bool:
        return link_exists(name)

    def kernel_has_vlan(self) -> bool:
        """Probe the kernel ourselves (8021q): tests must not trust the driver's word."""
        probe = f"{self.env.prefix}vp"
        if not link_exists(probe):
            self.env.veth(probe, probe + "p")
        res = run(["ip", "link", "add", "link", probe, "name", probe + ".5", "type", "vlan",
                   "id", "5"], check=False)
        run(["ip", "link", "del", probe + ".5"], check=False)
        return res.returncode == 0

    def desired(self, agent: Agent) -> tuple[set[str], dict[str, str]]:
        """(networks, {present device: network}) from the store, via the CLI."""
        doc = agent.cli_json("export")
        ports = {p["device"]: p["network"] for p in doc["ports"]
                 if p.get("device") and link_exists(p["device"])}
        return {n["name"] for n in doc["networks"]}, ports

    def audit(self, agent: Agent) -> list[str]:
        """Differences between desired and actual state, orphans included."""
        raise NotImplementedError

    def assert_converged(self, agent: Agent, timeout: float = 20) -> None:
        problems: list[str] = []

        def clean():
            problems[:] = self.audit(agent)
            return not problems
        try:
            wait_for(clean, timeout, interval=0.5, what="desired == actual")
        except TimeoutError:
            raise AssertionError("not converged:\n  " + "\n  ".join(problems)) from None

    def stop_agents(self) -> None:
        for agent in self.agents:
            agent.close()

    def diagnose(self) -> str:
        """The datapath's forwarding state and the agents' logs, as text for
        a failure report."""
        logs = (f"agent log {agent.log}:\n{agent.excerpt()}" for agent in self.agents)
        return "\n".join([*self._diagnostics(), *logs])

    def _diagnostics(self):
        return ()

    @staticmethod
    def _shown(args: tuple[str, ...], res) -> str:
        return f"$ {' '.join(args)}\n{res.stdout}{res.stderr}"


class LinuxBridgeHarness(Harness):
    name = "linuxbridge"
    enforces_port_security = True

    def add_physnet(self, physnet: str, nic: str) -> None:
        self.mappings[physnet] = nic

    def sections(self) -> dict:
        return {
            "DEFAULT": {"driver": "linuxbridge", "resync_interval": 5},
            "linux_bridge": {
                "bridge_prefix": self.bridge_prefix,
                "physical_interface_mappings": [f"{k}:{v}" for k, v in self.mappings.items()],
            },
        }

    def _diagnostics(self):
        for args in (("bridge", "-d", "link", "show"), ("bridge", "fdb", "show"),
                     ("nft", "list", "ruleset")):
            yield self._shown(args, run(list(args), check=False))

    def wired_into(self, tap: str) -> str | None:
        """The ovsbr network a device is wired into, per the datapath."""
        master = link_master(tap)
        if master is None:
            return None
        out = run(["ip", "-d", "link", "show", "dev", master]).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("alias ovsbr:net="):
                return line.split("=", 1)[1].split()[0]
        return None

    def detach_by_hand(self, tap: str) -> None:
        run(["ip", "link", "set", "dev", tap, "nomaster"])

    def _owned_bridges(self) -> dict[str, str]:
        """bridge name -> ovsbr network, from the ownership alias."""
        out = run(["ip", "-o", "-d", "link", "show", "type", "bridge"]).stdout
        result = {}
        for line in out.splitlines():
            name = line.split(":")[1].strip()
            if " alias ovsbr:net=" in line and name.startswith(self.bridge_prefix):
                result[name] = line.split(" alias ovsbr:net=")[1].split()[0]
        return result

    @property
    def bridge_prefix(self) -> str:
        return self.env.prefix[:5] + "-"

    def count_networks(self) -> int:
        return len(self._owned_bridges())

    def wired_devices(self) -> list[str]:
        bridges = self._owned_bridges()
        out = run(["ip", "-o", "link", "show"]).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                if any(f" master {b} " in line for b in bridges)
                and "ovsbr" not in line]

    def audit(self, agent: Agent) -> list[str]:
        networks, ports = self.desired(agent)
        owned = self._owned_bridges()
        problems = []
        if sorted(owned.values()) != sorted(networks):
            problems.append(f"bridges {sorted(owned.values())} != networks {sorted(networks)}")
        nics = set(self.mappings.values())
        members = {}
        for line in run(["ip", "-o", "-d", "link", "show"]).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            master = line.split(" master ")[1].split()[0] if " master " in line else None
            if master in owned and name not in nics and "alias ovsbr:" not in line:
                members[name] = owned[master]
        if members != ports:
            extra = sorted(set(members) - set(ports))
            missing = sorted(set(ports) - set(members))
            wrong = sorted(d for d in set(members) & set(ports) if members[d] != ports[d])
            problems.append(f"ports: orphans {extra}, missing {missing}, wrong net {wrong}")
        filtered = self.filtered_devices()
        wanted = {p["device"] for p in agent.cli_json("export")["ports"]
                  if p.get("device") in ports and p.get("port_security", True)
                  and (p.get("mac") or p.get("ips") is not None)}
        if filtered != wanted:
            problems.append(f"nftables port chains {sorted(filtered)} != {sorted(wanted)}")
        mapped = self.mapped_devices()
        if mapped != filtered:
            problems.append(f"nftables map elements {sorted(mapped)} != chains "
                            f"{sorted(filtered)}")
        return problems

    @property
    def nft_table(self) -> str:
        return "ovsbr_" + self.bridge_prefix.replace("-", "_")

    def filtered_devices(self) -> set[str]:
        """Taps with a port-security chain in the agent's nftables table."""
        res = run(["nft", "-j", "list", "table", "bridge", self.nft_table], check=False)
        if res.returncode:
            return set()
        return {item["chain"]["name"][len("port-"):] for item in json.loads(res.stdout)["nftables"]
                if "chain" in item and item["chain"]["name"].startswith("port-")}

    def mapped_devices(self) -> set[str]:
        """Taps the base chain sends to a port chain (the map's elements)."""
        res = run(["nft", "-j", "list", "table", "bridge", self.nft_table], check=False)
        if res.returncode:
            return set()
        for item in json.loads(res.stdout)["nftables"]:
            if "map" in item and item["map"]["name"] == "ports":
                return {elem[0] for elem in item["map"].get("elem", [])}
        return set()

    def delete_bridge_by_hand(self, network: str) -> None:
        for name, net in self._owned_bridges().items():
            if net == network:
                run(["ip", "link", "del", name])

    def supports_vlan(self) -> bool:
        return self.kernel_has_vlan()

    def network_exists(self, network: str) -> bool:
        return network in self._owned_bridges().values()

    def cleanup(self) -> None:
        self.stop_agents()
        run(["nft", "delete", "table", "bridge", self.nft_table], check=False)
        # Bridges are named with the env prefix; remove any a test left.
        out = run(["ip", "-o", "link", "show", "type", "bridge"]).stdout
        for line in out.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(self.env.prefix[:5] + "-"):
                run(["ip", "link", "del", name], check=False)
        for line in run(["ip", "-o", "-d", "link", "show"]).stdout.splitlines():
            if "alias ovsbr:uplink=" in line:
                name = line.split(":")[1].strip().split("@")[0]
                if self.mappings and any(name.startswith(n) for n in self.mappings.values()):
                    run(["ip", "link", "del", name], check=False)


HARNESSES = {"linuxbridge": LinuxBridgeHarness}


@pytest.fixture(params=["linuxbridge", "openvswitch"])
def datapath(request, env, tmp_path, identity):
    name = request.param
    if name == "openvswitch":
        from tests.functional.ovs_harness import OvsHarness

        harness = OvsHarness(env, tmp_path, identity, request.getfixturevalue("ovs"))
    else:
        harness = HARNESSES[name](env, tmp_path, identity)
    yield harness
    harness.cleanup()


@pytest.fixture
def lb(env, tmp_path, identity):
    harness = LinuxBridgeHarness(env, tmp_path, identity)
    yield harness
    harness.cleanup()
