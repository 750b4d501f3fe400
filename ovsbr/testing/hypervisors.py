"""Emulated hypervisors: one network namespace per host on a shared underlay.

The underlay is a Linux bridge in a namespace of its own (the top-of-rack
switch); each host gets a veth into it, ``u0`` inside the host, with an
address in TEST-NET-2. A host's VMs are namespaces whose taps live in the
host's namespace, so an agent started there (``ip netns exec``) sees exactly
what it would see on a real compute node. Nothing is created in the root
namespace; NetEnv.cleanup removes every namespace and so everything inside.
"""

from __future__ import annotations

import hashlib

from ovsbr.testing.netns import OUTSIDE_NET, TEST_NET, VM, Namespace, NetEnv, run

UNDERLAY_NET = OUTSIDE_NET  # 198.51.100.0/24, RFC 5737


def _offload_off(ns: str, dev: str) -> None:
    # Userspace (OVS netdev) tunnels and veth checksum offload do not mix.
    run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"], check=False)


class Host(Namespace):
    """One emulated machine on the underlay: ``u0`` carries ``ip``."""

    def __init__(self, env: NetEnv, name: str, ip: str, index: int):
        super().__init__(env, name)
        self.ip = ip
        self.index = index

    def vm(self, role: str, host_id: int, subnet: str = TEST_NET,
           offload_off: bool = False, tap: str | None = None, mac: str | None = None,
           ip: str | None = None) -> VM:
        """A VM of this hypervisor: its tap ``<prefix><role>`` is in this namespace.

        ``tap``, ``mac``, ``ip``: what Nova and Neutron chose, when they did
        (the tap is then removed with this host's namespace).
        """
        env = self.env
        vm_ns = env.netns(role)
        tap = tap or f"{env.prefix}{role}"
        assert len(tap) <= 15, tap
        digest = hashlib.sha1((env.prefix + role).encode()).digest()
        mac = mac or "52:54:" + ":".join(f"{b:02x}" for b in (*digest[:3], host_id))
        ip = ip or f"{subnet}.{10 + host_id}"
        self.exec(["ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0",
                   "netns", vm_ns.name])
        if offload_off:
            _offload_off(self.name, tap)
            _offload_off(vm_ns.name, "eth0")
        vm_ns.exec(["ip", "link", "set", "eth0", "address", mac])
        vm_ns.exec(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
        vm_ns.exec(["ip", "link", "set", "eth0", "up"])
        return VM(env, vm_ns.name, tap, ip, mac)


class Fabric:
    """The underlay switch and the hosts plugged into it."""

    def __init__(self, env: NetEnv):
        self.env = env
        self.switch = env.netns("ul")
        self.switch.exec(["ip", "link", "add", "sw", "type", "bridge"])
        self.switch.exec(["ip", "link", "set", "sw", "up"])
        self.hosts: list[Host] = []

    def host(self, role: str, index: int) -> Host:
        """A machine with underlay address 198.51.100.<10+index>."""
        ns = self.env.netns(role)
        port = f"p{index}"
        self.switch.exec(["ip", "link", "add", port, "type", "veth", "peer", "name", "u0",
                          "netns", ns.name])
        _offload_off(self.switch.name, port)
        _offload_off(ns.name, "u0")
        self.switch.exec(["ip", "link", "set", port, "master", "sw", "up"])
        ip = f"{UNDERLAY_NET}.{10 + index}"
        ns.exec(["ip", "addr", "add", f"{ip}/24", "dev", "u0"])
        ns.exec(["ip", "link", "set", "u0", "up"])
        host = Host(self.env, ns.name, ip, index)
        self.hosts.append(host)
        return host

    def capture_underlay(self, host: Host, bpf: str):
        """tcpdump on the switch port of ``host``: what the wire to it carries."""
        return self.switch.capture(bpf, iface=f"p{host.index}")
