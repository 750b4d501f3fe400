"""Port security: a VM may speak only with its own MAC and its own addresses.

Frames are forged with scapy inside the attacker VM; the victim network is
watched with tcpdump. Each case has a control (the genuine frame arrives),
so a capture that sees nothing proves a drop, not a broken capture.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from ovsbr.testing.netns import wait_for

FOREIGN_MAC = "52:54:00:66:66:66"


@pytest.fixture
def secured(datapath):
    if not datapath.enforces_port_security:
        pytest.skip(f"{datapath.name}: port security is not enforced by this driver")
    agent = datapath.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vms = [datapath.vm(role, i) for i, role in ((1, "a"), (2, "b"), (3, "c"))]
    for i, vm in enumerate(vms, 1):
        agent.cli("port", "create", f"p{i}", "--network", "n1", "--device", vm.tap,
                  "--mac", vm.mac, "--ip", vm.ip)
    agent.start()
    agent.wait_ports(["p1", "p2", "p3"])
    assert vms[0].can_ping(vms[1].ip), "genuine traffic must flow (control)"
    return vms


def test_foreign_source_mac_is_dropped(secured):
    attacker, victim, _ = secured
    with victim.capture(f"ether src {FOREIGN_MAC} or ether src {attacker.mac}") as cap:
        attacker.scapy(
            f"sendp([Ether(src='{FOREIGN_MAC}', dst='ff:ff:ff:ff:ff:ff')/ARP(psrc='{attacker.ip}'),"
            f" Ether(src='{FOREIGN_MAC}', dst='{victim.mac}')/IP(src='{attacker.ip}',"
            f" dst='{victim.ip}')/ICMP()], iface='eth0', count=3)\n"
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{attacker.ip}',"
            f" dst='{victim.ip}')/ICMP(id=4242), iface='eth0')")
    assert FOREIGN_MAC not in cap.text.lower(), cap.text
    assert attacker.mac in cap.text.lower(), "control frame missing: capture broken?"


def test_arp_claiming_another_ports_ip_is_dropped(secured):
    """The classic poisoning: an unsolicited ARP reply "victim2's IP is at my MAC"."""
    attacker, victim, other = secured
    with victim.capture(f"arp and ether src {attacker.mac}") as cap:
        attacker.scapy(
            f"sendp([Ether(src='{attacker.mac}', dst='{victim.mac}')/ARP(op=2,"
            f" hwsrc='{attacker.mac}', psrc='{other.ip}', hwdst='{victim.mac}',"
            f" pdst='{victim.ip}'),"
            f" Ether(src='{attacker.mac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1,"
            f" hwsrc='{attacker.mac}', psrc='{other.ip}', pdst='{victim.ip}')],"
            f" iface='eth0', count=3)\n"
            f"sendp(Ether(src='{attacker.mac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1,"
            f" hwsrc='{attacker.mac}', psrc='{attacker.ip}', pdst='{victim.ip}'),"
            f" iface='eth0')")
    lines = [ln for ln in cap.text.splitlines() if "ARP" in ln]
    assert not [ln for ln in lines if other.ip in ln], cap.text
    assert [ln for ln in lines if f"tell {attacker.ip}" in ln], "control ARP missing"
    # The victim's ARP cache still maps the other VM's IP to the other VM.
    neigh = victim.exec(["ip", "neigh", "show", other.ip]).stdout.lower()
    assert attacker.mac not in neigh, neigh


def test_ip_source_spoofing_is_dropped(secured):
    attacker, victim, other = secured
    with victim.capture(f"icmp and ether src {attacker.mac}") as cap:
        attacker.scapy(
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{other.ip}',"
            f" dst='{victim.ip}')/ICMP(id=1111), iface='eth0', count=3)\n"
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{attacker.ip}',"
            f" dst='{victim.ip}')/ICMP(id=2222), iface='eth0')")
    assert f"{other.ip} >" not in cap.text, cap.text
    assert f"{attacker.ip} >" in cap.text, "control frame missing"


def test_tagged_frames_from_a_secured_port_are_dropped(secured):
    attacker, victim, _ = secured
    with victim.capture(f"ether src {attacker.mac}") as cap:
        attacker.scapy(
            f"sendp([Ether(src='{attacker.mac}', dst='{victim.mac}')/Dot1Q(vlan=5)/"
            f"IP(src='{attacker.ip}', dst='{victim.ip}')/ICMP(id=3333),"
            f" Ether(src='{attacker.mac}', dst='{victim.mac}', type=0x88a8)/Dot1Q(vlan=5)/"
            f"Dot1Q(vlan=6)/IP(src='{attacker.ip}', dst='{victim.ip}')/ICMP(id=3334)],"
            f" iface='eth0', count=3)\n"
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{attacker.ip}',"
            f" dst='{victim.ip}')/ICMP(id=4444), iface='eth0')")
    assert "vlan" not in cap.text.lower() and "802.1ad" not in cap.text.lower(), cap.text
    assert "id 4444" in cap.text, "control frame missing"


def _table_handle(table: str) -> int:
    out = subprocess.run(["nft", "-j", "list", "table", "bridge", table], check=True,
                         capture_output=True, text=True).stdout
    return next(i["table"]["handle"] for i in json.loads(out)["nftables"] if "table" in i)


def test_a_port_change_rewrites_only_that_ports_chain(secured, datapath):
    """linuxbridge: one port's filter comes, changes and goes in its own chain
    and map element; the table is never rewritten (its handle stays), and
    every other port keeps being filtered as before."""
    if datapath.name != "linuxbridge":
        pytest.skip("the nftables table is the linuxbridge driver's")
    a, b, c = secured
    agent = datapath.agents[-1]
    table = _table_handle(datapath.nft_table)
    # c declared with a MAC that is not its own: its frames drop, a and b still talk.
    agent.cli("port", "delete", "p3")
    agent.cli("port", "create", "p3", "--network", "n1", "--device", c.tap,
              "--mac", FOREIGN_MAC, "--ip", c.ip)
    agent.wait_ports(["p3"])
    wait_for(lambda: not c.can_ping(a.ip, tries=1), 10, what="c's own MAC refused")
    assert a.can_ping(b.ip), "the other ports' filters must be untouched (control)"
    # Its port gone: its chain and map element go, nothing else.
    agent.cli("port", "delete", "p3")
    wait_for(lambda: c.tap not in datapath.filtered_devices(), 10, what="p3's chain removed")
    assert datapath.filtered_devices() == {a.tap, b.tap} == datapath.mapped_devices()
    # Declared again with its own MAC: it talks.
    agent.cli("port", "create", "p3", "--network", "n1", "--device", c.tap,
              "--mac", c.mac, "--ip", c.ip)
    agent.wait_ports(["p3"])
    assert c.can_ping(a.ip)
    assert _table_handle(datapath.nft_table) == table, "the table was rewritten whole"
    datapath.assert_converged(agent)


def test_a_network_that_cannot_be_rebuilt_keeps_its_ports_filtered(secured, datapath):
    """An edit the host cannot build (a flat network on a physical network it
    has no interface for) puts the network's ports in error; their taps stay
    where they were, and must stay filtered: an error fails closed, never
    open. A port changed meanwhile is filtered as it is now declared."""
    attacker, victim, other = secured
    agent = datapath.agents[-1]
    before = agent.cli("export", "-f", "json").stdout
    doc = json.loads(before)
    doc["networks"] = [{"name": "n1", "type": "flat", "physical_network": "nowhere"}]
    moved = "192.0.2.77"  # p1's address from now on
    for port in doc["ports"]:
        if port["name"] == "p1":
            port["ips"] = [moved]
    agent.cli("apply", "-", stdin=json.dumps(doc))
    agent.wait_ports(["p1", "p2", "p3"], status="error")
    wait_for(lambda: "nowhere" in agent.status()["ports"]["p1"].get("reason", ""), 10,
             what="p1's reason names the network's error")
    with victim.capture(f"icmp and ether src {attacker.mac}") as cap:
        attacker.scapy(
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{other.ip}',"
            f" dst='{victim.ip}')/ICMP(id=1111), iface='eth0', count=3)\n"
            f"sendp(Ether(src='{FOREIGN_MAC}', dst='{victim.mac}')/IP(src='{moved}',"
            f" dst='{victim.ip}')/ICMP(id=1112), iface='eth0', count=3)\n"
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{attacker.ip}',"
            f" dst='{victim.ip}')/ICMP(id=1113), iface='eth0', count=3)\n"
            f"sendp(Ether(src='{attacker.mac}', dst='{victim.mac}')/IP(src='{moved}',"
            f" dst='{victim.ip}')/ICMP(id=2222), iface='eth0')")
    assert f"{other.ip} >" not in cap.text, cap.text
    assert "id 1112" not in cap.text, cap.text
    assert "id 1113" not in cap.text, "p1's old address still passes: " + cap.text
    if datapath.name == "linuxbridge":
        # The taps still forward on the bridge they had (the control).
        assert "id 2222" in cap.text, "control frame missing"
        assert datapath.filtered_devices() >= {attacker.tap, victim.tap, other.tap}
    with open(agent.log) as f:
        assert "datapath sync failed" not in f.read()
    # Built again as it was: the ports are bound and talk, still filtered.
    agent.cli("apply", "-", stdin=before)
    agent.wait_ports(["p1", "p2", "p3"])
    assert attacker.can_ping(victim.ip)
    datapath.assert_converged(agent)
