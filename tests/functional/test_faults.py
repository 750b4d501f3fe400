"""Faults the agent must ride out, on both datapaths."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ovsbr.testing.agent import log_text
from ovsbr.testing.netns import wait_for


def test_corrupt_store_keeps_last_good_state_and_recovers(datapath):
    agent, vm1, vm2 = datapath.two_vms()
    store = os.path.join(agent.state_path, "topology.json")
    good = open(store).read()
    for garbage in ("", '{"networks": [', "\x00\xff garbage"):
        with open(store, "w") as f:
            f.write(garbage)
        wait_for(lambda: agent.status().get("store_error"), 5, what="store error published")
        assert agent.alive()
        assert vm1.ping(vm2.ip, count=3, interval=0.1)[1] == 3, "wiring must not change"
        assert datapath.wired_into(vm1.tap) == "n1"
        # The CLI refuses to write over what it cannot parse.
        res = agent.cli("port", "create", "p9", "--network", "n1", "--device", "x9",
                        check=False)
        assert res.returncode == 1 and "store" in res.stderr
        assert open(store).read() == garbage
    errors = [line for line in log_text(agent).splitlines() if " ERROR " in line]
    assert len(errors) == 3, errors  # one clear line per distinct breakage
    with open(store, "w") as f:
        f.write(good)
    wait_for(lambda: "store_error" not in agent.status(), 5, what="store error cleared")
    vm3 = datapath.vm("c", 3)
    agent.cli("port", "create", "p3", "--network", "n1", "--device", vm3.tap)
    agent.wait_ports(["p3"])
    datapath.assert_converged(agent)


def test_bridge_deleted_by_hand_is_rebuilt(datapath):
    agent, vm1, vm2 = datapath.two_vms()
    datapath.delete_bridge_by_hand("n1")
    wait_for(lambda: datapath.wired_into(vm1.tap) == "n1" and
             datapath.wired_into(vm2.tap) == "n1", 20, what="rebuilt and re-wired")
    assert vm1.can_ping(vm2.ip)
    datapath.assert_converged(agent)


def test_device_deleted_and_recreated_behind_the_agent(datapath):
    agent, vm1, vm2 = datapath.two_vms()
    # The VM goes away (its tap with it), then comes back under the same name.
    subprocess.run(["ip", "link", "del", vm1.tap], check=True)
    agent.wait_ports(["p1"], status="waiting")
    vm1b = datapath.env.vm("a2", 1, offload_off=datapath.offload_off)
    subprocess.run(["ip", "link", "set", vm1b.tap, "name", vm1.tap], check=True)
    agent.wait_ports(["p1"])
    time.sleep(0.5)
    assert vm1b.can_ping(vm2.ip)
    datapath.assert_converged(agent)


def test_kill9_in_the_middle_of_wiring_500_ports_converges(datapath):
    """Killed half-way through a 500-port apply, the next agent finishes the job."""
    taps = datapath.env.veths(500)
    agent = datapath.agent()
    doc = {"networks": [{"name": f"n{i}", "type": "local"} for i in range(5)],
           "ports": [{"name": f"p{i}", "network": f"n{i % 5}", "device": tap}
                     for i, tap in enumerate(taps)]}
    agent.start()
    wait_for(lambda: agent.status().get("driver"), 15, what="agent up")
    agent.cli("apply", "-", stdin=json.dumps(doc))
    # Kill between the agent's steps: its networks exist, its ports are in
    # flight (each step is one atomic OVSDB transaction or netlink batch).
    wait_for(lambda: " ready" in log_text(agent), 15, interval=0.002, what="wiring started")
    agent.kill()
    partial = len(datapath.wired_devices())
    agent.start()
    agent.wait_ports([f"p{i}" for i in range(500)], timeout=90)
    for i, tap in enumerate(taps):
        assert datapath.wired_into(tap) == f"n{i % 5}", tap
    # Nothing duplicated or orphaned: one datapath object per network and
    # exactly the declared ports.
    assert datapath.count_networks() == 5
    assert sorted(datapath.wired_devices()) == sorted(taps)
    datapath.assert_converged(agent)
    print(f"wired before the kill: {partial} of 500")


def test_bare_bridge_left_by_a_killed_agent_is_adopted_not_foreign_ones(lb):
    """Creating and marking a bridge are two netlink calls; a kill between them
    leaves a bare bridge with ovsbr's name, which the next agent must adopt."""
    agent = lb.agent()
    prefix = lb.sections()["linux_bridge"]["bridge_prefix"]
    subprocess.run(["ip", "link", "add", f"{prefix}n1", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "add", f"{prefix}n2", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", f"{prefix}n2", "alias", "someone-else"], check=True)
    for net in ("n1", "n2"):
        agent.cli("network", "create", net, "--type", "local")
    vm1 = lb.vm("a", 1)
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm1.tap)
    agent.start()
    agent.wait_ports(["p1"])
    assert lb.wired_into(vm1.tap) == "n1"
    wait_for(lambda: agent.status().get("networks", {}).get("n2", {}).get("status") == "error",
             10, what="foreign bridge refused")
    assert "not created by ovsbr" in agent.status()["networks"]["n2"]["reason"]
    out = subprocess.run(["ip", "-d", "link", "show", f"{prefix}n2"], capture_output=True,
                         text=True).stdout
    assert "alias someone-else" in out


def test_store_never_written_does_not_tear_down_the_host(datapath):
    """A missing store (say, a wrong state_path) keeps the wired networks."""
    agent, vm1, vm2 = datapath.two_vms()
    agent.stop()
    os.unlink(os.path.join(agent.state_path, "topology.json"))
    agent.start()
    wait_for(lambda: "never been written" in log_text(agent), 10, what="the warning")
    time.sleep(1)
    assert datapath.wired_into(vm1.tap) == "n1" and datapath.network_exists("n1")
    assert vm1.ping(vm2.ip, count=3, interval=0.1)[1] == 3


def test_device_renamed_behind_the_agent(datapath):
    """A tap renamed away is no longer the port's: unwired, nothing orphaned;
    renamed back, it is wired again."""
    agent, vm1, vm2 = datapath.two_vms()
    other = vm1.tap[:-1] + "Z"

    def rename(old: str, new: str) -> None:
        # Down first: kernels before 6.2 refuse to rename a running device
        # (EBUSY, seen on Debian's 6.1); up again after, as libvirt would.
        subprocess.run(["ip", "link", "set", old, "down"], check=True)
        res = subprocess.run(["ip", "link", "set", old, "name", new], capture_output=True,
                             text=True)
        if res.returncode and "busy" in res.stderr and datapath.name == "openvswitch":
            # The openvswitch driver brings a port's downed tap straight back
            # up (a recreated tap is plugged that way), so on such a kernel
            # the rename loses that race: the fault cannot be staged here.
            pytest.skip("this kernel refuses to rename a running device and the agent "
                        "brings its port's tap back up at once")
        assert res.returncode == 0, res.stderr
        subprocess.run(["ip", "link", "set", new, "up"], check=True)

    rename(vm1.tap, other)
    datapath.env.links.append(other)
    agent.wait_ports(["p1"], status="waiting")
    datapath.assert_converged(agent)
    assert datapath.wired_into(other) is None
    rename(other, vm1.tap)
    agent.wait_ports(["p1"])
    datapath.assert_converged(agent)
    assert vm1.can_ping(vm2.ip)


def test_kill9_and_restart_with_500_wired_ports_loses_no_packet(datapath):
    taps = datapath.env.veths(498)
    vm1, vm2 = datapath.vm("a", 1), datapath.vm("b", 2)
    agent = datapath.agent()
    doc = {"networks": [{"name": f"n{i}", "type": "local"} for i in range(5)],
           "ports": [{"name": f"p{i}", "network": f"n{i % 5}", "device": tap}
                     for i, tap in enumerate(taps)]
           + [{"name": "vm1", "network": "n0", "device": vm1.tap},
              {"name": "vm2", "network": "n0", "device": vm2.tap}]}
    agent.cli("apply", "-", stdin=json.dumps(doc))
    agent.start()
    names = [p["name"] for p in doc["ports"]]
    agent.wait_ports(names, timeout=90)
    assert vm1.can_ping(vm2.ip)
    stream = vm1.popen(["ping", "-n", "-q", "-i", "0.1", "-c", "150", "-W", "1", vm2.ip],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    agent.kill()
    agent.start()
    agent.wait_ports(names, timeout=90)
    out = stream.communicate(timeout=60)[0]
    assert " 0% packet loss" in out, out + agent.tail()
    datapath.assert_converged(agent)
