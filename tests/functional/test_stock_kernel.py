"""What only a distribution kernel can do: VLAN sub-interfaces, kernel tunnels.

These run on the host where its kernel allows (OVS does VLANs in userspace
there) and skip with the missing module named where it does not; the
stock-kernel VM stage (tools/run-vm-tests) runs them on Debian's kernel,
with OVS on the kernel datapath.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

pytestmark = pytest.mark.stock_kernel

FAR_V100, FAR_V200 = "192.0.2.100", "203.0.113.200"


def _far_side_vlans(datapath):
    """The physical NIC's far side answers on a VLAN sub-interface per segment."""
    if not datapath.kernel_has_vlan():
        pytest.skip("needs kernel module 8021q for the far side's VLAN sub-interfaces "
                    "(runs in the stock-kernel VM: tools/run-vm-tests)")
    out = datapath.outside("physnet1")
    out.exec(["ip", "addr", "flush", "dev", "eth0"])
    for vid, ip in ((100, FAR_V100), (200, FAR_V200)):
        out.exec(["ip", "link", "add", "link", "eth0", "name", f"eth0.{vid}", "type", "vlan",
                  "id", str(vid)])
        out.exec(["ip", "addr", "add", f"{ip}/24", "dev", f"eth0.{vid}"])
        out.exec(["ip", "link", "set", f"eth0.{vid}", "up"])
    return out


def _outer_tags(capture: str) -> list[str]:
    """The first (outer) 802.1Q tag of each captured frame, or '' if untagged."""
    tags = []
    for line in capture.splitlines():
        if " > " not in line:
            continue  # not a frame (blank or tcpdump's own lines)
        m = re.search(r"vlan (\d+)", line)
        tags.append(m.group(1) if m else "")
    return tags


def test_two_vlans_on_one_nic(datapath):
    out = _far_side_vlans(datapath)
    agent = datapath.agent()
    for net, vid in (("v100", "100"), ("v200", "200")):
        agent.cli("network", "create", net, "--type", "vlan", "--physical-network",
                  "physnet1", "--segmentation-id", vid)
    a, b = datapath.vm("a", 1), datapath.vm("b", 2)
    c = datapath.vm("c", 3, subnet="203.0.113")
    for port, vm, net in (("pa", a, "v100"), ("pb", b, "v100"), ("pc", c, "v200")):
        agent.cli("port", "create", port, "--network", net, "--device", vm.tap)
    agent.start()
    agent.wait_ports(["pa", "pb", "pc"])

    assert a.can_ping(b.ip), "same VLAN must talk"
    assert a.can_ping(FAR_V100), "v100 reaches the far side's VLAN 100 " + agent.tail()
    assert c.can_ping(FAR_V200), "v200 reaches the far side's VLAN 200 " + agent.tail()
    assert a.ping(FAR_V200, count=2, interval=0.2)[1] == 0, "v100 must not reach VLAN 200"

    from_a = f"ether src {a.mac}"
    with c.capture(from_a) as other, b.capture(from_a) as same, \
            out.capture(from_a) as wire:
        a.ping("192.0.2.255", count=3, interval=0.2, extra=["-b"])  # broadcast
        a.ping("224.0.0.1", count=2, interval=0.2)  # multicast
        a.scapy(f"sendp(Ether(src='{a.mac}', dst='52:54:00:de:ad:01')/IP(dst='192.0.2.99')"
                "/ICMP(), iface='eth0', count=3)")  # unknown unicast
        # Tagged and double-tagged frames from the VM: no VLAN hopping.
        a.scapy(f"sendp([Ether(src='{a.mac}', dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=200)/"
                "ARP(psrc='203.0.113.77', pdst='203.0.113.200'), "
                f"Ether(src='{a.mac}', dst='{c.mac}')/Dot1Q(vlan=100)/Dot1Q(vlan=200)/"
                "IP(dst='203.0.113.13')/ICMP()], iface='eth0', count=3)")
    assert same.text.strip(), "capture control: a's own VLAN saw nothing"
    assert not other.text.strip(), f"VLAN 200 saw v100's frames:\n{other.text}"
    tags = _outer_tags(wire.text)
    assert tags and set(tags) == {"100"}, (
        f"every frame of a's must leave the NIC tagged 100 (outer), saw {tags}:\n{wire.text}")


def test_vlan_network_survives_agent_kill(datapath):
    """kill -9 and restart on the kernel's VLAN devices: no packet lost."""
    _far_side_vlans(datapath)
    agent = datapath.agent()
    agent.cli("network", "create", "v100", "--type", "vlan", "--physical-network",
              "physnet1", "--segmentation-id", "100")
    a = datapath.vm("a", 1)
    agent.cli("port", "create", "pa", "--network", "v100", "--device", a.tap)
    agent.start()
    agent.wait_ports(["pa"])
    assert a.can_ping(FAR_V100)
    stream = a.popen(["ping", "-n", "-q", "-i", "0.05", "-c", "60", FAR_V100],
                     stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    agent.kill()
    agent.start()
    agent.wait_ports(["pa"])
    out = stream.communicate(timeout=60)[0]
    sent = int(out.split(" packets transmitted")[0].split()[-1])
    got = int(out.split(" received")[0].split()[-1])
    assert got == sent, f"lost {sent - got} of {sent} pings across kill -9:\n{out}"
    datapath.assert_converged(agent)
