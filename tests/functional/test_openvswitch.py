"""openvswitch-only behaviour: OVSDB identity and faults, the L2-learning app."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from ovsbr.agent.service import COUNTERS_INTERVAL
from ovsbr.openflow import pipeline as pl
from ovsbr.testing.netns import wait_for
from tests.functional.ovs_harness import OvsHarness


@pytest.fixture
def ovsh(env, tmp_path, identity, ovs):
    harness = OvsHarness(env, tmp_path, identity, ovs)
    yield harness
    harness.cleanup()

# How ovs-ofctl names the learning tables in a dump.
SRC, DST = f"table={pl.ETH_SRC},", f"table={pl.ETH_DST},"


def _miss_packets(h) -> int:
    """Frames that went to the controller: the ETH_SRC table-miss counter."""
    for line in h.ovs.flows(h.br_int):
        if SRC in line and "priority=0 " in line:
            return int(re.search(r"n_packets=(\d+)", line).group(1))
    raise AssertionError("no table-miss flow in ETH_SRC")


def _learned(h, mac: str) -> list[str]:
    return [f for f in h.ovs.flows(h.br_int) if "priority=100" in f and mac in f
            and (SRC in f or DST in f)]


def _plug_as_libvirt(ovsh, tap: str, iface_id: str) -> None:
    """What libvirt/os-vif does: add the tap with the Neutron port id."""
    ovsh.ovs.vsctl("add-port", ovsh.br_int, tap, "--", "set", "Interface", tap,
                   f"external_ids:iface-id={iface_id}")
    ovsh.ovs._cmd(["ip", "link", "set", tap, "up"])


def test_interface_plugged_by_libvirt_with_only_iface_id_is_wired(ovsh):
    agent = ovsh.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vm1, vm2 = ovsh.vm("a", 1), ovsh.vm("b", 2)
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.cli("port", "create", "nova", "--network", "n1", "--iface-id",
              "3f7b1c2e-aaaa-bbbb-cccc-000000000001", "--mac", vm2.mac)
    agent.start()
    agent.wait_ports(["p1"])
    assert agent.port_status("nova") == "waiting"
    _plug_as_libvirt(ovsh, vm2.tap, "3f7b1c2e-aaaa-bbbb-cccc-000000000001")
    agent.wait_ports(["nova"], timeout=5)
    assert ovsh.wired_into(vm2.tap) == "n1"
    ids = ovsh.ovs.get("Interface", vm2.tap, "external_ids")
    assert 'iface-status=active' in ids and vm2.mac in ids
    assert vm1.can_ping(vm2.ip)
    # Unplug of a port ovsbr did not add: marks removed, the port stays.
    agent.cli("port", "delete", "nova")
    wait_for(lambda: ovsh.wired_into(vm2.tap) is None, 10, what="unwired")
    assert vm2.tap in ovsh.ovs.ports(ovsh.br_int)
    assert "iface-status=inactive" in ovsh.ovs.get("Interface", vm2.tap, "external_ids")


def test_bridges_are_secure_and_point_at_the_agent(ovsh):
    agent, vm1, vm2 = ovsh.two_vms()
    br = ovsh.br_int
    assert ovsh.ovs.get("Bridge", br, "fail_mode") == "secure"
    assert ovsh.ovs.get("Bridge", br, "datapath_type") == ovsh.datapath_type
    target = ovsh.ovs.vsctl("get-controller", br).stdout.strip()
    assert target == f"tcp:127.0.0.1:{ovsh.of_port}"
    assert 'ovsbr-owned="true"' in ovsh.ovs.get("Bridge", br, "external_ids") or \
        "ovsbr-owned=true" in ovsh.ovs.get("Bridge", br, "external_ids")
    assert not any("NORMAL" in f for f in ovsh.ovs.flows(br))
    # Packet-in protection: OVS rate-limits what reaches the controller.
    rate = ovsh.ovs.vsctl("get", "Controller", br, "controller_rate_limit").stdout.strip()
    assert rate == "2000"
    # A burst of new MACs waits for the controller instead of being dropped.
    queue = ovsh.ovs.vsctl("get", "Controller", br, "controller_queue_size").stdout.strip()
    assert queue == "512"


def test_learned_macs_age_out_and_the_table_follows(ovsh):
    agent, vm1, vm2 = ovsh.two_vms(openflow={"mac_aging_time": 10})
    assert vm1.can_ping(vm2.ip)
    wait_for(lambda: _learned(ovsh, vm1.mac), 5, what="learned")
    # Silence both VMs (no ARP refresh, no IPv6 chatter) and wait for aging.
    for vm in (vm1, vm2):
        vm.exec(["ip", "link", "set", "eth0", "down"])
    wait_for(lambda: not _learned(ovsh, vm1.mac) and not _learned(ovsh, vm2.mac), 30,
             interval=0.5, what="learned flows aged out")

    def table_empty():
        table = agent.cli_json("mac-table").get("testhost", {}).get(ovsh.br_int, {})
        return table and not table["macs"] and table["counters"]["expired"] >= 2
    wait_for(table_empty, 10, what="the app's table follows the switch")


def test_malformed_packet_ins_are_counted_and_forwarding_goes_on(ovsh):
    agent, vm1, vm2 = ovsh.two_vms()
    # Group (multicast) source MACs and a runt frame: unusable for learning.
    vm1.scapy("sendp([Ether(src='01:00:5e:00:00:0%d' % i, dst='ff:ff:ff:ff:ff:ff')/"
              "Raw(b'x'*30) for i in range(5)], iface='eth0')\n"
              "s = conf.L2socket(iface='eth0'); s.send(b'\\xff'*6 + b'\\x01'*6); s.close()")

    def dropped():
        table = agent.cli_json("mac-table").get("testhost", {}).get(ovsh.br_int, {})
        return table.get("counters", {}).get("dropped", 0) >= 5
    wait_for(dropped, 10, what="malformed packet-ins counted")
    assert vm1.can_ping(vm2.ip)


def test_learning_keeps_later_frames_off_the_controller(ovsh):
    agent, vm1, vm2 = ovsh.two_vms()
    assert vm1.can_ping(vm2.ip)
    wait_for(lambda: _learned(ovsh, vm1.mac) and _learned(ovsh, vm2.mac), 5,
             what="learned flows for both VMs")
    assert len(_learned(ovsh, vm1.mac)) == 2  # source and destination entries
    before = _miss_packets(ovsh)
    sent, got = vm1.ping(vm2.ip, count=10, interval=0.05)
    assert got == sent == 10
    assert _miss_packets(ovsh) == before, "known traffic reached the controller"
    wait_for(lambda: agent.cli_json("mac-table").get("testhost", {}).get(ovsh.br_int), 5,
             what="mac table published")
    macs = {m["mac"]: m for m in agent.cli_json("mac-table")["testhost"][ovsh.br_int]["macs"]}
    assert macs[vm1.mac]["port"] == vm1.tap and macs[vm1.mac]["network"] == "n1"

    # The table is asked for (the agent's control socket); the status the
    # agent publishes carries its size only, and a size that moved alone
    # within COUNTERS_INTERVAL of the last publish.
    def published():
        return agent.cli_json("status")["hosts"]["testhost"].get("datapath", {}).get(
            ovsh.br_int, {})
    wait_for(lambda: published().get("mac_count", 0) >= 2, COUNTERS_INTERVAL + 10,
             interval=0.5, what="table size published")
    assert "macs" not in published()


def test_source_is_learned_even_when_destination_is_known(ovsh):
    """simple_switch_13's bug: it stops learning sources behind known destinations."""
    agent, vm1, vm2 = ovsh.two_vms()
    assert vm1.can_ping(vm2.ip)
    wait_for(lambda: _learned(ovsh, vm2.mac), 5, what="vm2 learned")
    # A new source (spoofed into vm1's port, no port security MAC declared)
    # talks to the already-known vm2.
    new_mac = "52:54:00:aa:bb:cc"
    vm1.scapy(f"sendp(Ether(src='{new_mac}', dst='{vm2.mac}')/IP(dst='{vm2.ip}')/ICMP(),"
              " iface='eth0', count=2)")
    wait_for(lambda: len(_learned(ovsh, new_mac)) == 2, 5, what="new source learned")


@pytest.mark.stock_kernel
def test_mac_move_is_relearned_within_one_frame(ovsh):
    agent, vm1, vm2 = ovsh.two_vms()
    vm3 = ovsh.vm("c", 3)
    agent.cli("port", "create", "p3", "--network", "n1", "--device", vm3.tap)
    agent.wait_ports(["p3"])
    assert vm1.can_ping(vm2.ip)
    wait_for(lambda: _learned(ovsh, vm1.mac), 5, what="vm1 learned")
    ofport3 = ovsh.ovs.get("Interface", vm3.tap, "ofport")
    # The VM "migrates": silent at its old port, its MAC speaks from vm3's
    # port. One frame must move it.
    vm1.exec(["ip", "link", "set", "eth0", "down"])
    vm3.scapy(f"sendp(Ether(src='{vm1.mac}', dst='ff:ff:ff:ff:ff:ff')/ARP(psrc='{vm1.ip}'),"
              " iface='eth0', count=1)")
    wait_for(lambda: any(f"in_port={ofport3}" in f for f in _learned(ovsh, vm1.mac)),
             5, what="relearned on the new port")
    dst = [f for f in _learned(ovsh, vm1.mac) if DST in f]
    assert len(dst) == 1 and f"output:{ofport3}" in dst[0]


def test_mac_limit_holds_under_a_flood_and_others_still_learn(ovsh):
    agent, vm1, vm2 = ovsh.two_vms(openflow={"max_macs_per_port": 20})
    assert vm2.can_ping(vm1.ip)
    wait_for(lambda: _learned(ovsh, vm2.mac), 5, what="vm2 learned before the flood")
    vm1.scapy("sendp([Ether(src=RandMAC('52:54:01'), dst='ff:ff:ff:ff:ff:ff')/"
              "ARP(psrc='192.0.2.99') for _ in range(300)], iface='eth0')")
    time.sleep(1.0)
    ofport1 = ovsh.ovs.get("Interface", vm1.tap, "ofport")
    learned_on_1 = [f for f in ovsh.ovs.flows(ovsh.br_int)
                    if SRC in f and f"in_port={ofport1}" in f and "priority=100" in f]
    assert 0 < len(learned_on_1) <= 20
    assert len(_learned(ovsh, vm2.mac)) == 2, "the flood must not evict another port's MAC"
    # The controller still serves other ports.
    assert vm2.can_ping(vm1.ip)
    wait_for(lambda: _learned(ovsh, vm2.mac), 5, what="vm2 learned after the flood")


def test_tagged_frames_from_a_vm_cannot_hop_vlans(ovsh):
    out = ovsh.outside("physnet1")
    agent = ovsh.agent()
    for net, vid in (("v100", "100"), ("v200", "200")):
        agent.cli("network", "create", net, "--type", "vlan", "--physical-network",
                  "physnet1", "--segmentation-id", vid)
    vm1, vm2 = ovsh.vm("a", 1), ovsh.vm("b", 2)
    agent.cli("port", "create", "p1", "--network", "v100", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "v200", "--device", vm2.tap)
    agent.start()
    agent.wait_ports(["p1", "p2"])
    caps = [vm.popen(["tcpdump", "-n", "-e", "-l", "-i", "eth0", f"ether src {vm1.mac}"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for vm in (vm2, out)]
    time.sleep(1)
    vm1.scapy(f"sendp([Ether(src='{vm1.mac}', dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=200)/"
              "ARP(psrc='192.0.2.77'), "
              f"Ether(src='{vm1.mac}', dst='{vm2.mac}')/Dot1Q(vlan=100)/Dot1Q(vlan=200)/"
              "IP(dst='192.0.2.12')/ICMP()], iface='eth0', count=5)")
    vm1.ping("192.0.2.12", count=2, interval=0.2)  # untagged control, stays in v100
    time.sleep(0.5)
    for cap in caps:
        cap.terminate()
    seen_v200, seen_out = (c.communicate(timeout=5)[0] for c in caps)
    assert not seen_v200.strip(), seen_v200
    assert "vlan 100" in seen_out, "control: vm1's own frames leave tagged 100"
    assert "vlan 200" not in seen_out, seen_out


def _flow_ages(ovsh) -> dict[str, float]:
    """The bridge's static flows (match and actions) and their age in seconds."""
    ages = {}
    for line in ovsh.ovs.flows(ovsh.br_int):
        if "idle_timeout" in line:
            continue  # learned flows come and go with traffic
        key = re.sub(r"(duration|n_packets|n_bytes)=[^,]*, ", "", line)
        ages[key] = float(re.search(r"duration=([\d.]+)s", line).group(1))
    return ages


def _vswitchd_waits(ovsh) -> int:
    """How often ovs-vswitchd found no database to reconnect to."""
    with open(os.path.join(ovsh.ovs.rundir, "ovs-vswitchd.log")) as f:
        return f.read().count("connection attempt failed")


def test_ovsdb_server_restart_is_survived(ovsh):
    """The agent keeps the switch's flows through a restart of ovsdb-server
    (none removed and put back), and wires a port declared afterwards.

    The ping stream must lose nothing unless ovs-vswitchd itself had to
    wait for the database: a userspace (netdev) datapath forwards from
    ovs-vswitchd's main loop, which stops working while it has lost its
    database lock, so when ovsdb-server takes longer to come back than the
    first reconnect (1 s; seen on a loaded CI host) frames wait seconds and
    ARP fails, agent or no agent. Then the stream must recover instead."""
    agent, vm1, vm2 = ovsh.two_vms()
    before = _flow_ages(ovsh)
    stream = vm1.popen(["ping", "-n", "-q", "-i", "0.1", "-c", "50", "-W", "1", vm2.ip],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    waited_before = _vswitchd_waits(ovsh)
    ovsh.ovs.restart_ovsdb()
    # The agent reconnects: a port declared now is still wired.
    vm3 = ovsh.vm("c", 3)
    agent.cli("port", "create", "p3", "--network", "n1", "--device", vm3.tap)
    agent.wait_ports(["p3"], timeout=20)
    assert vm3.can_ping(vm2.ip)
    out = stream.communicate(timeout=30)[0]
    after = _flow_ages(ovsh)
    # Every flow from before is still there and older than the restart.
    assert all(after.get(key, -1) >= age for key, age in before.items()), (before, after)
    if _vswitchd_waits(ovsh) == waited_before:
        assert " 0% packet loss" in out, out
    else:
        print("ovs-vswitchd waited for ovsdb-server; the stream:", out)
        assert vm1.can_ping(vm2.ip)
    assert agent.alive()
    ovsh.assert_converged(agent)


def test_vswitchd_restart_reinstalls_flows(ovsh):
    agent, vm1, vm2 = ovsh.two_vms()
    assert vm1.can_ping(vm2.ip)
    stream = vm1.popen(["ping", "-n", "-i", "0.05", "-c", "300", "-W", "1", vm2.ip],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    ovsh.ovs.restart_vswitchd()
    # Kernel-side veths stay; vswitchd re-opens them and the app reinstalls.
    wait_for(lambda: any("group:" in f for f in ovsh.ovs.flows(ovsh.br_int)), 20,
             what="flows reinstalled after ovs-vswitchd restart")
    out = stream.communicate(timeout=60)[0]
    got = sorted(int(m) for m in re.findall(r"icmp_seq=(\d+)", out))
    lost = 300 - len(got)
    # The outage: the longest run of missing replies, at 20 pings/s.
    gaps = [b - a - 1 for a, b in zip([0, *got], [*got, 301], strict=True)]
    print(f"ovs-vswitchd restart: {lost} of 300 pings lost, longest outage "
          f"{max(gaps) * 0.05:.2f} s")
    assert max(gaps) * 0.05 < 5.0, out
    assert vm1.can_ping(vm2.ip, tries=40)
    ovsh.assert_converged(agent)


def test_fuzzed_frames_are_survived_counted_and_forwarding_goes_on(ovsh):
    """10,000 frames from scapy's fuzz(): random fields in every header layer."""
    agent, vm1, vm2 = ovsh.two_vms(openflow={"max_macs_per_port": 50})
    assert vm1.can_ping(vm2.ip)
    before = _miss_packets(ovsh)
    vm1.scapy(
        "import random\n"
        "random.seed(7)\n"
        "E = lambda: Ether(src=RandMAC(), dst=RandMAC()) if random.random() < 0.9 else Ether()\n"
        "layers = [lambda: E()/IP()/UDP(), lambda: E()/IP()/TCP(),\n"
        "          lambda: E()/ARP(), lambda: E()/Dot1Q()/IP()/ICMP(),\n"
        "          lambda: E()/IPv6()/UDP(), lambda: E()/Raw(b'x'*40),\n"
        "          lambda: E()/LLC()/SNAP()/Raw(b'y'*20)]\n"
        "s = conf.L2socket(iface='eth0')\n"
        "sent = i = 0\n"
        "while sent < 10000:\n"
        "    i += 1\n"
        "    try:\n"
        "        s.send(bytes(fuzz(layers[i % len(layers)]())))\n"
        "        sent += 1\n"
        "    except (ValueError, TypeError, OSError, struct.error):\n"
        "        pass  # fuzz() made a frame scapy cannot build or the NIC refuses\n"
        "s.close()\n"
        "print(sent, i)", timeout=300)
    time.sleep(2)  # flow statistics reach OpenFlow from the datapath lazily
    offered = _miss_packets(ovsh) - before

    def counters():
        table = agent.cli_json("mac-table").get("testhost", {}).get(ovsh.br_int, {})
        return table.get("counters", {})
    wait_for(lambda: counters().get("packet_ins", 0) > 0, 10, what="packet-ins counted")
    c = counters()
    print(f"fuzz: {offered} frames reached the learning miss, counters {c}")
    assert agent.alive()
    assert offered > 1000, "most fuzzed frames should reach ETH_SRC"
    assert c["dropped"] > 0, "fuzzed group/zero source MACs must be counted as dropped"
    learned_on_1 = [m for m in agent.cli_json("mac-table")["testhost"][ovsh.br_int]["macs"]
                    if m["port"] == vm1.tap]
    assert len(learned_on_1) <= 50
    assert not _learned(ovsh, "00:00:00:00:00:00"), "the all-zero MAC is no source"
    # Still forwarding, still learning new sources on other ports.
    assert vm1.can_ping(vm2.ip)
    vm3 = ovsh.vm("c", 3)
    agent.cli("port", "create", "p3", "--network", "n1", "--device", vm3.tap)
    agent.wait_ports(["p3"])
    assert vm3.can_ping(vm2.ip)
    wait_for(lambda: _learned(ovsh, vm3.mac), 5, what="a new VM learned after the fuzz")


def test_port_declared_before_its_tap_is_held_ready(ovsh):
    """The Port row is there first (as os-vif plugs before boot); the tap joins it."""
    agent = ovsh.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vm1 = ovsh.vm("a", 1)
    late, gone = f"{ovsh.env.prefix}b", f"{ovsh.env.prefix}c"
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "n1", "--device", late,
              "--iface-id", "3f7b1c2e-aaaa-bbbb-cccc-000000000002")
    agent.cli("port", "create", "p3", "--network", "n1", "--device", gone)
    agent.start()
    agent.wait_ports(["p1"])
    wait_for(lambda: late in ovsh.ovs.ports(ovsh.br_int), 10, what="row held for p2")
    assert agent.port_status("p2") == "waiting"
    ids = ovsh.ovs.get("Interface", late, "external_ids")
    assert "iface-status=inactive" in ids and "3f7b1c2e-aaaa-bbbb-cccc-000000000002" in ids
    assert ovsh.wired_into(late) == "n1"
    wait_for(lambda: ovsh.ovs.get("Interface", late, "ofport") == "-1", 10,
             what="ovs-vswitchd tried the absent device")
    ovsh.assert_converged(agent)
    row = ovsh.ovs.get("Port", late, "_uuid")

    vm2 = ovsh.vm("b", 2)  # its tap is `late`
    agent.wait_ports(["p2"], timeout=10)
    # Joined, not re-added: the same row, now active and forwarding.
    assert ovsh.ovs.get("Port", late, "_uuid") == row
    assert "iface-status=active" in ovsh.ovs.get("Interface", late, "external_ids")
    assert vm1.can_ping(vm2.ip)

    # A port deleted before its tap ever came: its row goes too.
    agent.cli("port", "delete", "p3")
    wait_for(lambda: gone not in ovsh.ovs.ports(ovsh.br_int), 10, what="p3's row removed")
    # A VM destroyed: its tap goes, the row stays held for the declared port.
    subprocess.run(["ip", "link", "del", late], check=True)
    agent.wait_ports(["p2"], status="waiting", timeout=10)
    wait_for(lambda: late in ovsh.ovs.ports(ovsh.br_int) and
             ovsh.ovs.get("Port", late, "_uuid") != row, 10, what="a fresh row held for p2")
    ovsh.assert_converged(agent)


def _in_port_flows(ovsh, ofport: int) -> list[str]:
    return [f for f in ovsh.ovs.flows(ovsh.br_int) if f"in_port={ofport}," in f]


def _declared_late(ovsh):
    """An agent with p1 bound and p2 declared for a tap not there yet; p2's
    requested OpenFlow port."""
    agent = ovsh.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vm1 = ovsh.vm("a", 1)
    late = f"{ovsh.env.prefix}b"  # ovsh.vm("b", ...)'s tap
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "n1", "--device", late)
    agent.start()
    agent.wait_ports(["p1"])
    wait_for(lambda: ovsh.ovs.get("Interface", late, "ofport_request") not in ("", "[]"),
             10, what="p2's row asking for an OpenFlow port")
    return agent, vm1, late, int(ovsh.ovs.get("Interface", late, "ofport_request"))


def test_a_prepared_ports_flows_are_in_place_before_its_tap(ovsh):
    """A declared port's row asks for an OpenFlow port from the upper half
    (ovs-vswitchd picks none there itself), and its flows go to the switch
    under that number before the tap exists: when the tap appears,
    ovs-vswitchd gives it that number and the port forwards without waiting
    for flows."""
    agent, vm1, late, request = _declared_late(ovsh)
    assert request >= 32768
    wait_for(lambda: _in_port_flows(ovsh, request), 10, what="p2's flows before its tap")
    assert ovsh.ovs.get("Interface", late, "ofport") == "-1"  # no tap: not opened
    assert agent.port_status("p2") == "waiting"
    vm2 = ovsh.vm("b", 2)
    agent.wait_ports(["p2"], timeout=10)
    assert ovsh.ovs.get("Interface", late, "ofport") == str(request)
    assert vm1.can_ping(vm2.ip)
    ovsh.assert_converged(agent)


def test_a_number_another_interface_takes_is_given_up(ovsh):
    """Someone else asks for the number a prepared port asked for, and gets
    it (its device exists): the port's flows for that number go, and the
    port takes the number ovs-vswitchd gives its tap instead."""
    agent, vm1, late, request = _declared_late(ovsh)
    wait_for(lambda: _in_port_flows(ovsh, request), 10, what="p2's flows before its tap")
    other = ovsh.env.veths(1, "o")[0]
    ovsh.ovs.vsctl("add-port", ovsh.br_int, other, "--", "set", "Interface", other,
                   f"ofport_request={request}")
    wait_for(lambda: ovsh.ovs.get("Interface", other, "ofport") == str(request), 10,
             what="the other interface numbered as it asked")
    wait_for(lambda: not _in_port_flows(ovsh, request), 10,
             what="p2's flows off the number another interface has")
    vm2 = ovsh.vm("b", 2)
    agent.wait_ports(["p2"], timeout=10)
    ofport = int(ovsh.ovs.get("Interface", late, "ofport"))
    assert ofport not in (request, -1)
    assert _in_port_flows(ovsh, ofport) and not _in_port_flows(ovsh, request)
    assert vm1.can_ping(vm2.ip)


def test_bound_waits_for_the_switch_to_apply_the_ports_flows(ovsh):
    """"bound" once ovs-vswitchd confirmed the port's flows (a barrier's
    reply), not once they were sent: with ovs-vswitchd stopped after the
    port got its OpenFlow number, the flows wait on the connection and the
    port waits with them; resumed, it is bound and forwards."""
    agent = ovsh.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vm1, vm2 = ovsh.vm("a", 1), ovsh.vm("b", 2)
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.start()
    agent.wait_ports(["p1"])
    iface_id = "3f7b1c2e-aaaa-bbbb-cccc-000000000003"
    _plug_as_libvirt(ovsh, vm2.tap, iface_id)
    wait_for(lambda: ovsh.ovs.get("Interface", vm2.tap, "ofport") not in ("", "[]", "-1"),
             10, what="ovs-vswitchd gave the tap an OpenFlow port")
    with ovsh.ovs.paused("ovs-vswitchd"):
        agent.cli("port", "create", "p2", "--network", "n1", "--iface-id", iface_id,
                  "--mac", vm2.mac)
        wait_for(lambda: "barrier" in agent.status().get("ports", {}).get("p2", {}).get(
            "reason", ""), 10, what="p2 waiting for the switch's confirmation")
        time.sleep(1)
        assert agent.port_status("p2") == "waiting"
    agent.wait_ports(["p2"], timeout=10)
    assert vm1.can_ping(vm2.ip)


def test_an_ovsdb_timeout_is_reported_in_a_line_and_the_port_heals(ovsh):
    """ovsdb-server stopped while the agent adds a port's rows: the
    transaction times out ([ovs] ovsdb_timeout = 1 s here) and the failure
    is reported in a line naming the option (ovsdbapp's own message lists
    every command of the transaction: 4.6 MB for a bulk of 5,000 ports,
    which went into each port's status and the log); once ovsdb-server
    answers again the port is wired and forwards."""
    agent, vm1, _ = ovsh.two_vms(ovs={"ovsdb_timeout": 1})
    vm3 = ovsh.vm("c", 3)
    with ovsh.ovs.paused("ovsdb-server"):
        agent.cli("port", "create", "p3", "--network", "n1", "--device", vm3.tap)
        wait_for(lambda: "did not confirm a transaction" in agent.tail(50), 20,
                 what="the agent's transaction to time out")
    failed = [line for line in agent.tail(200).splitlines() if "port(s) failed" in line]
    assert failed and all(len(line) < 1000 for line in failed), failed
    assert "[ovs] ovsdb_timeout is 1 s" in failed[0]
    agent.wait_ports(["p3"], timeout=30)
    assert vm1.can_ping(vm3.ip)


def test_a_network_past_one_flood_groups_size_floods_through_chunks(ovsh):
    """Past FLOOD_CHUNK ports a network floods through chained chunk groups
    (one group-mod holds at most ~1,000 filtered ports' buckets): a VM
    numbered before the filler ports and a filtered VM numbered after them,
    in different chunks, find each other by ARP broadcast both ways."""
    agent = ovsh.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    agent.cli("security-group", "create", "g")
    for rule in (("ingress", "--protocol", "icmp"), ("egress",)):
        agent.cli("security-group", "rule", "create", "g", "--direction", *rule)
    vm1 = ovsh.vm("a", 1)
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.start()
    agent.wait_ports(["p1"])
    fillers = ovsh.env.veths(pl.FLOOD_CHUNK + 10, role="f")
    doc = agent.cli_json("export")
    doc["ports"] += [{"name": f"f{i}", "network": "n1", "device": tap}
                     for i, tap in enumerate(fillers)]
    agent.cli("apply", "-", stdin=json.dumps(doc))
    agent.wait_ports([f"f{i}" for i in range(len(fillers))], timeout=60)
    vm2 = ovsh.vm("b", 2)
    agent.cli("port", "create", "p2", "--network", "n1", "--device", vm2.tap,
              "--mac", vm2.mac, "--ip", vm2.ip, "--security-group", "g")
    agent.wait_ports(["p2"])
    chunks = {int(ovsh.ovs.get("Interface", vm.tap, "ofport")) // pl.FLOOD_CHUNK
              for vm in (vm1, vm2)}
    assert len(chunks) == 2, "the two VMs should be in different chunks"
    groups = ovsh.ovs.ofctl("-O", "OpenFlow13", "dump-groups", ovsh.br_int).stdout
    assert re.search(r"actions=group:\d{5,}", groups), groups
    assert vm1.can_ping(vm2.ip) and vm2.can_ping(vm1.ip)
