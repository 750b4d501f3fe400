"""The live demo behind tools/demo: ovsbr wiring fake VMs, step by step."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

from ovsbr.testing import ovs_sandbox
from ovsbr.testing.agent import Agent
from ovsbr.testing.netns import NetEnv, run


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd))
    print(run(cmd, check=False).stdout.rstrip())


def ping(vm, target, label) -> bool:
    vm.can_ping(target.ip)  # the first one may wait for ARP
    sent, got = vm.ping(target.ip, count=3, interval=0.2)
    print(f"  {label}: {'OK' if got == sent else 'FAILED'} ({got}/{sent} replies)")
    return got == sent


def linuxbridge_demo(workdir: str) -> bool:
    say("linuxbridge: a flat network on a Linux bridge, two VMs and the outside")
    with NetEnv("demo") as env:
        nic, outside = env.outside()
        agent = Agent(workdir, {
            "DEFAULT": {"driver": "linuxbridge", "resync_interval": 10},
            "linux_bridge": {"physical_interface_mappings": f"physnet1:{nic}",
                             "bridge_prefix": "dmo-"}})
        try:
            vm1, vm2 = env.vm("vm1", 1), env.vm("vm2", 2)
            print(f"VM1 {vm1.ip} on tap {vm1.tap}; VM2 {vm2.ip} on tap {vm2.tap}; "
                  f"outside host {outside.ip} behind NIC {nic}")
            for args in (("network", "create", "public", "--type", "flat",
                          "--physical-network", "physnet1"),
                         ("port", "create", "vm1-port", "--network", "public",
                          "--device", vm1.tap),
                         ("port", "create", "vm2-port", "--network", "public",
                          "--device", vm2.tap)):
                print("$ ovsbr " + " ".join(args))
                agent.cli(*args)
            say("starting ovsbr-agent")
            agent.start()
            agent.wait_ports(["vm1-port", "vm2-port"])
            print("$ ovsbr status")
            print(agent.cli("status").stdout.rstrip())
            show(["ip", "-br", "link", "show", "master", "dmo-public"])
            say("VMs ping across the bridge ovsbr built")
            ok = ping(vm1, vm2, "VM1 -> VM2") and ping(vm1, outside, "VM1 -> outside")
            ok = ping(vm2, outside, "VM2 -> outside") and ok
            return ok
        finally:
            agent.stop()
            run(["ip", "link", "del", "dmo-public"], check=False)


def openvswitch_demo(workdir: str) -> bool:
    say("openvswitch: a private OVS, two VLAN networks, ovsbr's own OpenFlow controller")
    sandbox = ovs_sandbox.OvsSandbox(os.path.join(workdir, "ovs")).start()
    print(f"private OVS: ovsdb-server + ovs-vswitchd in {sandbox.rundir} (datapath netdev)")
    try:
        with NetEnv("demo") as env:
            nic, outside = env.outside(offload_off=True)
            sandbox.vsctl("add-br", "demo-ex", "--", "set", "bridge", "demo-ex",
                          "datapath_type=netdev", "--", "add-port", "demo-ex", nic)
            agent = Agent(os.path.join(workdir, "agent"), {
                "DEFAULT": {"driver": "openvswitch", "resync_interval": 10},
                "ovs": {"ovsdb_connection": sandbox.connection,
                        "integration_bridge": "demo-int", "datapath_type": "netdev",
                        "bridge_mappings": "physnet1:demo-ex", "of_listen_port": 16653}})
            try:
                vms = [env.vm(f"vm{i}", i, offload_off=True) for i in (1, 2, 3)]
                for args in (("network", "create", "blue", "--type", "vlan",
                              "--physical-network", "physnet1", "--segmentation-id", "100"),
                             ("network", "create", "red", "--type", "vlan",
                              "--physical-network", "physnet1", "--segmentation-id", "200"),
                             ("port", "create", "vm1-port", "--network", "blue",
                              "--device", vms[0].tap),
                             ("port", "create", "vm2-port", "--network", "blue",
                              "--device", vms[1].tap),
                             ("port", "create", "vm3-port", "--network", "red",
                              "--device", vms[2].tap)):
                    print("$ ovsbr " + " ".join(args))
                    agent.cli(*args)
                say("starting ovsbr-agent (driver openvswitch)")
                agent.start()
                agent.wait_ports(["vm1-port", "vm2-port", "vm3-port"], timeout=30)
                print(sandbox.vsctl("show").stdout.rstrip())
                say("blue VMs talk; red is isolated")
                ok = ping(vms[0], vms[1], "VM1 (blue) -> VM2 (blue)")
                sent, got = vms[0].ping(vms[2].ip, count=3, interval=0.2)
                print(f"  VM1 (blue) -> VM3 (red): {'isolated' if got == 0 else 'LEAKED'} "
                      f"({got}/{sent} replies)")
                ok = ok and got == 0
                say("flows ovsbr's controller installed on demo-int")
                flows = sandbox.flows("demo-int")
                for line in flows:
                    print("  " + re.sub(r"duration=[^,]+, |n_bytes=\d+, ", "", line))
                time.sleep(2.5)
                print("$ ovsbr mac-table")
                print(agent.cli("mac-table").stdout.rstrip())
                return ok
            finally:
                agent.stop()
    finally:
        sandbox.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--driver", choices=["linuxbridge", "openvswitch", "all"],
                        default="all")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ovsbr-demo-") as tmp:
        if args.driver in ("linuxbridge", "all"):
            results["linuxbridge"] = linuxbridge_demo(tmp + "/lb")
        if args.driver in ("openvswitch", "all"):
            reason = ovs_sandbox.available()
            if reason:
                print(f"openvswitch demo skipped: {reason}")
                results["openvswitch"] = False
            else:
                results["openvswitch"] = openvswitch_demo(tmp + "/ovs")
    say("result")
    for name, ok in results.items():
        print(f"  {name}: {'VMs talk through ovsbr' if ok else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
