"""Several hypervisors sharing one desired state in etcd, carrying overlays.

Three emulated hosts (namespaces on an underlay switch), etcd in a fourth,
one ovsbr-agent inside each host's namespace. VMs on different hosts talk
over VXLAN/Geneve; the flood list and remote MACs come from etcd.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from ovsbr.drivers.openvswitch.bindings import tunnel_name
from ovsbr.testing.netns import wait_for
from tests.functional.multihost import LEASE_TTL, MultiHost, ping_stream, pings_lost


@pytest.fixture
def three_lb(fabric, tmp_path):
    mh = MultiHost(fabric, tmp_path)
    for i, name in enumerate(("hv1", "hv2", "hv3"), start=1):
        mh.add(name, 10 + i)
    yield mh
    mh.stop()


def _three_vms_on_blue(mh):
    mh.cli("network", "create", "blue", "--type", "vxlan", "--segmentation-id", "1001")
    vms = {}
    for i, name in enumerate(("hv1", "hv2", "hv3"), start=1):
        vms[name] = mh.vm(name, f"b{i}", i)
        mh.port(f"b{i}", "blue", vms[name], name)
    for agent in mh.agents.values():
        agent.start()
    for i, agent in enumerate(mh.agents.values(), start=1):
        agent.wait_ports([f"b{i}"], timeout=20)
    return vms


def test_vms_on_three_hosts_talk_over_vxlan(three_lb):
    mh = three_lb
    vms = _three_vms_on_blue(mh)
    for a in vms.values():
        for b in vms.values():
            if a is not b:
                assert a.can_ping(b.ip), f"{a.name} -> {b.ip}"
    # Head-end replication list and remote MACs came from etcd, ahead of traffic.
    fdb = mh.fdb("hv1", 1001)
    for other in ("hv2", "hv3"):
        ip = mh.hosts[other].ip
        assert f"00:00:00:00:00:00 dst {ip}" in fdb and f"{vms[other].mac} dst {ip}" in fdb
    # The taps carry the overlay MTU.
    assert "mtu 1450" in mh.hosts["hv2"].exec(["ip", "link", "show", vms["hv2"].tap]).stdout
    status = mh.agents["hv1"].cli_json("status")
    assert {"hv1", "hv2", "hv3"} <= set(status["hosts"])


def test_second_vni_is_isolated_and_floods_only_where_it_has_ports(three_lb):
    mh = three_lb
    vms = _three_vms_on_blue(mh)
    mh.cli("network", "create", "red", "--type", "vxlan", "--segmentation-id", "1002")
    r1 = mh.hosts["hv1"].vm("r1", 21)
    r2 = mh.hosts["hv2"].vm("r2", 22)
    mh.port("r1", "red", r1, "hv1")
    mh.port("r2", "red", r2, "hv2")
    mh.agents["hv1"].wait_ports(["r1"])
    mh.agents["hv2"].wait_ports(["r2"])
    assert r1.can_ping(r2.ip)
    # red never reaches blue's VMs, and hv3 (no red port) gets no red VXLAN.
    with vms["hv3"].capture(f"ether src {r1.mac}") as blue_cap, \
            mh.fabric.capture_underlay(mh.hosts["hv3"], "udp port 4789") as wire:
        r1.ping("192.0.2.255", count=3, interval=0.2, extra=["-b"])
        r1.ping(vms["hv3"].ip, count=2, interval=0.2)
        r1.scapy(f"sendp(Ether(src='{r1.mac}', dst='52:54:00:de:ad:01')/IP(dst='192.0.2.99')"
                 "/ICMP(), iface='eth0', count=3)")
    assert not blue_cap.text.strip(), blue_cap.text
    assert "vni 1002" not in wire.text, wire.text
    with mh.fabric.capture_underlay(mh.hosts["hv2"], "udp port 4789") as control:
        r1.ping("192.0.2.255", count=2, interval=0.2, extra=["-b"])
    assert "vni 1002" in control.text, "capture control: red floods reach hv2"


def test_dead_host_leaves_the_flood_lists_and_comes_back(three_lb):
    mh = three_lb
    vms = _three_vms_on_blue(mh)
    hv3_ip = mh.hosts["hv3"].ip
    assert f"dst {hv3_ip}" in mh.fdb("hv1", 1001)
    mh.agents["hv3"].kill()
    t0 = time.monotonic()
    wait_for(lambda: f"dst {hv3_ip}" not in mh.fdb("hv1", 1001) and
             f"dst {hv3_ip}" not in mh.fdb("hv2", 1001), LEASE_TTL + 5, interval=0.1,
             what="hv3's entries removed on hv1 and hv2")
    gone = time.monotonic() - t0
    print(f"dead host removed everywhere {gone:.2f} s after kill -9 (lease TTL {LEASE_TTL} s)")
    assert gone < LEASE_TTL + 1.5
    assert vms["hv1"].can_ping(vms["hv2"].ip), "the live hosts keep talking"
    mh.agents["hv3"].start()
    wait_for(lambda: f"dst {hv3_ip}" in mh.fdb("hv1", 1001), 15, what="hv3 back")
    assert vms["hv1"].can_ping(vms["hv3"].ip)


def test_etcd_restart_and_agent_restart_lose_no_packet(three_lb):
    mh = three_lb
    vms = _three_vms_on_blue(mh)
    assert vms["hv1"].can_ping(vms["hv2"].ip)
    stream = ping_stream(vms["hv1"], vms["hv2"].ip, 100)
    time.sleep(1)
    mh.fabric.etcd.restart(down=2)
    time.sleep(2)
    mh.agents["hv2"].kill()  # restarted within the lease: nobody pulls its tunnels
    mh.agents["hv2"].start()
    mh.agents["hv2"].wait_ports(["b2"], timeout=20)
    out = stream.communicate(timeout=60)[0]
    assert pings_lost(out, 100) == 0, out
    # Changes made after the etcd restart still reach every agent.
    v4 = mh.hosts["hv3"].vm("b4", 4)
    mh.port("b4", "blue", v4, "hv3")
    mh.agents["hv3"].wait_ports(["b4"], timeout=20)
    assert vms["hv1"].can_ping(v4.ip)


@pytest.fixture
def mixed(fabric, tmp_path):
    mh = MultiHost(fabric, tmp_path)
    mh.add("lb1", 31, "linuxbridge")
    mh.add("ovs1", 32, "openvswitch")
    mh.add("ovs2", 33, "openvswitch")
    yield mh
    mh.stop()


def _start(mh, ports):
    for agent in mh.agents.values():
        agent.start()
    for host, names in ports.items():
        mh.agents[host].wait_ports(names, timeout=30)


def _vxlan_on_every_host(mh, vni: int, role: str) -> dict:
    """Network blue (VXLAN ``vni``) with one VM per host, all agents up."""
    mh.cli("network", "create", "blue", "--type", "vxlan", "--segmentation-id", str(vni))
    vms = {h: mh.vm(h, f"{role}{i}", i) for i, h in enumerate(mh.hosts, start=1)}
    for i, (h, vm) in enumerate(vms.items(), start=1):
        mh.port(f"{role}{i}", "blue", vm, h)
    _start(mh, {h: [f"{role}{i}"] for i, h in enumerate(mh.hosts, start=1)})
    return vms


def test_linuxbridge_and_openvswitch_hosts_share_a_vxlan_network(mixed):
    mh = mixed
    vms = _vxlan_on_every_host(mh, 2001, "m")
    # Remote MACs are in ovs1's pipeline before any traffic, with the VNI.
    flows = mh.hosts["ovs1"].ovs.flows("br-int")
    assert any(f"dl_dst={vms['lb1'].mac}" in f and "set_field:0x7d1->tun_id" in f
               for f in flows), flows
    for a, b in (("lb1", "ovs1"), ("ovs1", "lb1"), ("ovs1", "ovs2"), ("ovs2", "lb1")):
        assert vms[a].can_ping(vms[b].ip, tries=30), f"{a} -> {b}"
    # Standard VXLAN on the wire between the kernel and OVS userspace.
    with mh.fabric.capture_underlay(mh.hosts["lb1"], "udp dst port 4789") as wire:
        vms["ovs1"].ping(vms["lb1"].ip, count=2, interval=0.2)
    assert "vni 2001" in wire.text, wire.text
    ovs1 = mh.hosts["ovs1"].ovs
    assert sorted(p for p in ovs1.ports("br-int") if p.startswith("vx-")) == sorted(
        tunnel_name("vxlan", mh.hosts[h].ip) for h in ("lb1", "ovs2"))


def _kernel_has(module_kind: str) -> bool:
    """Probe the kernel ourselves: the test must not trust the driver's word."""
    probe = "obtestgnv"
    res = subprocess.run(["ip", "link", "add", probe, "type", module_kind, "id", "7",
                          "remote", "192.0.2.254"], capture_output=True)
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return res.returncode == 0


@pytest.mark.stock_kernel
def test_geneve_between_openvswitch_and_linuxbridge_hosts(mixed):
    """Geneve between two OVS hosts; the linuxbridge host joins where the
    kernel has geneve devices (one per remote host, isolated bridge ports),
    and reports the missing module where it has not."""
    mh = mixed
    mh.cli("network", "create", "green", "--type", "geneve", "--segmentation-id", "3001")
    g1, g2 = mh.vm("ovs1", "g1", 1), mh.vm("ovs2", "g2", 2)
    mh.port("g1", "green", g1, "ovs1")
    mh.port("g2", "green", g2, "ovs2")
    g3 = mh.vm("lb1", "g3", 3)
    mh.port("g3", "green", g3, "lb1")
    lb_geneve = _kernel_has("geneve")
    _start(mh, {"ovs1": ["g1"], "ovs2": ["g2"], **({"lb1": ["g3"]} if lb_geneve else {})})
    assert g1.can_ping(g2.ip, tries=30)
    with mh.fabric.capture_underlay(mh.hosts["ovs2"], "udp dst port 6081") as wire:
        g1.ping(g2.ip, count=2, interval=0.2)
    assert "Geneve" in wire.text and "vni 0xbb9" in wire.text, wire.text
    if not lb_geneve:
        # The linuxbridge host refuses geneve with the module's name, per network.
        wait_for(lambda: mh.agents["lb1"].status().get("networks", {}).get("green", {})
                 .get("status") == "error", 15, what="geneve refused on linuxbridge")
        reason = mh.agents["lb1"].status()["networks"]["green"]["reason"]
        assert "module geneve" in reason, reason
        pytest.skip(f"kernel lacks geneve: linuxbridge reports {reason!r} (checked)")
    for a, b in ((g3, g1), (g3, g2), (g1, g3), (g2, g3)):
        assert a.can_ping(b.ip, tries=30), f"{a.name} -> {b.name}"
    lb = mh.hosts["lb1"]
    devices = lb.exec(["ip", "-o", "-d", "link", "show", "type", "geneve"]).stdout
    assert devices.count("geneve id 3001") == 2, devices  # one per remote host
    assert devices.count("isolated on") == 2, "tunnel ports must be isolated: " + devices
    # Split horizon: a broadcast from ovs1 reaches lb1's VM once, and lb1
    # never sends it on to ovs2 (ovs2 has its own copy from ovs1).
    with mh.fabric.capture_underlay(lb, "udp dst port 6081") as wire:
        g1.ping("192.0.2.255", count=2, interval=0.2, extra=["-b"])
    out_of_lb = [line for line in wire.text.splitlines() if f"{lb.ip}." in line.split(">")[0]]
    assert not out_of_lb, "lb1 relayed a tunnel's broadcast:\n" + "\n".join(out_of_lb)


def test_dead_openvswitch_host_loses_its_tunnels_everywhere(mixed):
    mh = mixed
    vms = _vxlan_on_every_host(mh, 2002, "d")
    tunnel = tunnel_name("vxlan", mh.hosts["ovs2"].ip)
    ovs1 = mh.hosts["ovs1"].ovs
    wait_for(lambda: tunnel in ovs1.ports("br-int"), 15, what="tunnel to ovs2")
    assert vms["ovs1"].can_ping(vms["ovs2"].ip, tries=30)
    mh.agents["ovs2"].kill()
    t0 = time.monotonic()
    wait_for(lambda: tunnel not in ovs1.ports("br-int") and
             f"dst {mh.hosts['ovs2'].ip}" not in mh.fdb("lb1", 2002), LEASE_TTL + 5,
             interval=0.1, what="ovs2 removed from ovs1 and lb1")
    gone = time.monotonic() - t0
    print(f"dead OVS host's tunnels gone {gone:.2f} s after kill -9 (TTL {LEASE_TTL} s)")
    assert gone < LEASE_TTL + 1.5
    assert vms["ovs1"].can_ping(vms["lb1"].ip)
    mh.agents["ovs2"].start()
    wait_for(lambda: tunnel in ovs1.ports("br-int"), 15, what="tunnel back")
    assert vms["ovs1"].can_ping(vms["ovs2"].ip, tries=30)
