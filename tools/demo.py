"""The live demo behind tools/demo: ovsbr wiring fake VMs, step by step."""

from __future__ import annotations

import argparse
import sys
import tempfile

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--driver", choices=["linuxbridge", "openvswitch", "all"],
                        default="all")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ovsbr-demo-") as tmp:
        if args.driver in ("linuxbridge", "all"):
            results["linuxbridge"] = linuxbridge_demo(tmp + "/lb")
    say("result")
    for name, ok in results.items():
        print(f"  {name}: {'VMs talk through ovsbr' if ok else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
