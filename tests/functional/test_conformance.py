"""The driver conformance suite: each scenario runs on both datapaths."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from ovsbr.testing.netns import wait_for


def _flat_setup(datapath):
    out = datapath.outside("physnet1")
    agent = datapath.agent()
    agent.cli("network", "create", "ext", "--type", "flat", "--physical-network", "physnet1")
    return agent, out


def test_flat_vms_talk_to_each_other_and_outside(datapath):
    agent, out = _flat_setup(datapath)
    vm1, vm2 = datapath.vm("a", 1), datapath.vm("b", 2)
    agent.cli("port", "create", "p1", "--network", "ext", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "ext", "--device", vm2.tap,
              "--mac", vm2.mac)
    agent.start()
    agent.wait_ports(["p1", "p2"])
    assert vm1.can_ping(vm2.ip), agent.tail()
    assert vm1.can_ping(out.ip), agent.tail()
    assert vm2.can_ping(out.ip)
    assert datapath.wired_into(vm1.tap) == "ext"
    show = agent.cli_json("port", "show", "p1")
    assert show["status"] == "bound"


def test_local_networks_are_isolated(datapath):
    agent = datapath.agent()
    agent.cli("network", "create", "red", "--type", "local")
    agent.cli("network", "create", "blue", "--type", "local")
    r1, r2, b1 = datapath.vm("r1", 1), datapath.vm("r2", 2), datapath.vm("b1", 3)
    for port, vm, net in (("r1", r1, "red"), ("r2", r2, "red"), ("b1", b1, "blue")):
        agent.cli("port", "create", port, "--network", net, "--device", vm.tap)
    agent.start()
    agent.wait_ports(["r1", "r2", "b1"])
    assert r1.can_ping(r2.ip), "same network must talk (control)"
    # Broadcast from red must never reach blue: capture on blue's VM.
    from_red = f"ether src {r1.mac}"
    cap = b1.popen(["tcpdump", "-n", "-l", "-i", "eth0", "-c", "1", from_red],
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    control = r2.popen(["tcpdump", "-n", "-l", "-i", "eth0", "-c", "1", from_red],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    r1.ping("192.0.2.255", count=3, interval=0.2, extra=["-b"])  # broadcast
    r1.ping("224.0.0.1", count=2, interval=0.2)  # multicast
    r1.scapy(f"sendp(Ether(src='{r1.mac}', dst='52:54:00:de:ad:01')/IP(dst='192.0.2.99')"
             "/ICMP(), iface='eth0', count=3)")  # unknown unicast
    assert r1.ping(b1.ip, count=2, interval=0.2)[1] == 0
    time.sleep(0.5)
    for proc in (cap, control):
        proc.send_signal(signal.SIGINT)
    seen_blue = cap.communicate(timeout=5)[0]
    seen_red = control.communicate(timeout=5)[0]
    assert seen_red.strip(), "capture control: red's own VM saw nothing"
    assert not seen_blue.strip(), f"blue saw red's frames: {seen_blue}"


def test_device_appearing_later_is_wired(datapath):
    agent = datapath.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    agent.cli("port", "create", "late", "--network", "n1",
              "--device", f"{datapath.env.prefix}late")
    agent.cli("port", "create", "early", "--network", "n1",
              "--device", f"{datapath.env.prefix}early")
    early = datapath.vm("early", 1)
    agent.start()
    agent.wait_ports(["early"])
    assert agent.port_status("late") == "waiting"
    late = datapath.vm("late", 2)
    agent.wait_ports(["late"], timeout=5)
    assert late.can_ping(early.ip)


def test_port_declared_after_device_is_wired(datapath):
    agent = datapath.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vm1, vm2 = datapath.vm("a", 1), datapath.vm("b", 2)
    agent.start()
    wait_for(lambda: agent.status().get("networks", {}).get("n1"), 10, what="network")
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "n1", "--device", vm2.tap)
    agent.wait_ports(["p1", "p2"], timeout=5)
    assert vm1.can_ping(vm2.ip)


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_agent_restart_keeps_traffic_flowing(datapath, how):
    agent, vm1, vm2 = datapath.two_vms()
    assert vm1.can_ping(vm2.ip)
    # 10 pings/s; the kill -9 case runs 15 s of them across the restart.
    count = "150" if how == "kill9" else "60"
    stream = vm1.popen(["ping", "-n", "-q", "-i", "0.1", "-c", count, "-W", "1", vm2.ip],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    if how == "kill9":
        agent.kill()
    else:
        agent.stop()
    time.sleep(0.5)
    agent.start()
    time.sleep(1)
    agent.wait_ports(["p1", "p2"])
    out = stream.communicate(timeout=60)[0]
    assert " 0% packet loss" in out, out + agent.tail()


def test_drift_is_repaired(datapath):
    agent, vm1, vm2 = datapath.two_vms()
    datapath.detach_by_hand(vm1.tap)
    wait_for(lambda: datapath.wired_into(vm1.tap) == "n1", 10, what="re-wired after drift")
    assert vm1.can_ping(vm2.ip)


def test_delete_port_and_network_removes_only_ovsbrs(datapath):
    agent, out = _flat_setup(datapath)
    vm1 = datapath.vm("a", 1)
    agent.cli("port", "create", "p1", "--network", "ext", "--device", vm1.tap)
    agent.start()
    agent.wait_ports(["p1"])
    assert vm1.can_ping(out.ip)
    agent.cli("port", "delete", "p1")
    wait_for(lambda: datapath.wired_into(vm1.tap) is None, 10, what="tap unplugged")
    assert datapath.device_exists(vm1.tap), "the VM's tap is not ovsbr's to delete"
    res = agent.cli("network", "delete", "ext")
    assert res.returncode == 0
    wait_for(lambda: not datapath.network_exists("ext"), 10, what="network removed")
    assert datapath.device_exists(out.tap), "the physical NIC must survive"


def test_vlan_network(datapath):
    """VLAN where the datapath can do it; a clear per-network error where not."""
    out = datapath.outside("physnet1")
    agent = datapath.agent()
    agent.cli("network", "create", "v100", "--type", "vlan", "--physical-network",
              "physnet1", "--segmentation-id", "100")
    agent.cli("network", "create", "l1", "--type", "local")
    vm1, vm2 = datapath.vm("a", 1), datapath.vm("b", 2)
    agent.cli("port", "create", "p1", "--network", "v100", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "l1", "--device", vm2.tap)
    agent.start()
    agent.wait_ports(["p2"])  # an unrelated network is unaffected either way
    if not datapath.supports_vlan():
        agent.wait_ports(["p1"], status="error")
        reason = agent.cli_json("port", "show", "p1")["reason"]
        assert "8021q" in reason, reason
        pytest.skip("kernel lacks 8021q: vlan on linuxbridge reports a clear error "
                    f"(checked: {reason!r})")
    agent.wait_ports(["p1"])
    vm3 = datapath.vm("c", 3)
    agent.cli("port", "create", "p3", "--network", "v100", "--device", vm3.tap)
    agent.wait_ports(["p3"])
    assert vm1.can_ping(vm3.ip), "same vlan network must talk"
    assert vm2.ping(vm1.ip, count=2, interval=0.2)[1] == 0, "local and vlan are isolated"
    # Frames leave the uplink tagged with the segmentation id.
    cap = out.popen(["tcpdump", "-n", "-e", "-l", "-i", "eth0", "-c", "1",
                     f"vlan 100 and ether src {vm1.mac}"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    vm1.ping("192.0.2.200", count=3, interval=0.2)
    time.sleep(0.5)
    cap.send_signal(signal.SIGINT)
    seen = cap.communicate(timeout=5)[0]
    assert "vlan 100" in seen, f"no 802.1Q tag 100 on the uplink: {seen!r}"
    assert vm1.mac in seen.lower()


def test_cleanup_removes_what_ovsbr_created_and_nothing_else(datapath):
    agent, out = _flat_setup(datapath)
    agent.cli("network", "create", "l1", "--type", "local")
    vm1, vm2 = datapath.vm("a", 1), datapath.vm("b", 2)
    agent.cli("port", "create", "p1", "--network", "ext", "--device", vm1.tap)
    agent.cli("port", "create", "p2", "--network", "l1", "--device", vm2.tap,
              "--mac", vm2.mac)
    agent.start()
    agent.wait_ports(["p1", "p2"])
    if datapath.name == "linuxbridge":
        assert datapath.filtered_devices() == {vm2.tap}
    agent.stop()
    res = agent.run_once(["--cleanup"])
    assert res.returncode == 0, res.stdout + res.stderr
    for net in ("ext", "l1"):
        assert not datapath.network_exists(net)
    for vm in (vm1, vm2):
        assert datapath.device_exists(vm.tap) and datapath.wired_into(vm.tap) is None
    assert datapath.device_exists(out.tap)
    if datapath.name == "linuxbridge":
        res = subprocess.run(["nft", "list", "table", "bridge", datapath.nft_table],
                             capture_output=True)
        assert res.returncode != 0, "the port-security table must go with --cleanup"
