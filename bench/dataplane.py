"""Data plane cost: iperf3 TCP and ping RTT between two VMs, three ways.

(a) a Linux bridge built by ovsbr's linuxbridge driver, (b) an OVS netdev
bridge with one NORMAL flow (no controller), (c) an OVS netdev bridge run by
ovsbr's pipeline after learning. Target: (c)/(b) >= 0.95. The megaflow
count from ``ovs-appctl dpctl/dump-flows`` shows whether the pipeline costs
extra datapath flows (upcalls).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from bench import common
from ovsbr.testing import ovs_sandbox
from ovsbr.testing.agent import Agent
from ovsbr.testing.netns import NetEnv, run

SECONDS = 5
REPEATS = int(os.environ.get("OVSBR_BENCH_REPEATS", "3"))


def measure(vm1, vm2) -> dict:
    server = vm2.popen(["iperf3", "-s", "-1", "-B", vm2.ip], stdout=open(os.devnull, "w"),
                       stderr=open(os.devnull, "w"))
    time.sleep(0.5)
    try:
        out = vm1.exec(["iperf3", "-c", vm2.ip, "-t", str(SECONDS), "-J"],
                       timeout=SECONDS + 30).stdout
    finally:
        server.kill()
        server.wait()
    gbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    ping = vm1.exec(["ping", "-n", "-q", "-c", "20", "-i", "0.05", vm2.ip]).stdout
    rtt = float(ping.strip().splitlines()[-1].split("=")[1].split("/")[1])
    return {"gbps": gbps, "rtt_ms": rtt}


def repeat(vm1, vm2) -> dict:
    runs = [measure(vm1, vm2) for _ in range(REPEATS)]
    return {"gbps": common.median([r["gbps"] for r in runs]),
            "rtt_ms": common.median([r["rtt_ms"] for r in runs]), "runs": runs}


def megaflows(ovs) -> int:
    out = ovs.appctl("dpctl/dump-flows", check=False).stdout
    return sum(1 for line in out.splitlines() if "actions:" in line)


def main() -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="ovsbr-bench-dp-") as tmp:
        # (a) linuxbridge
        with NetEnv("bd") as env:
            vm1, vm2 = env.vm("a", 1), env.vm("b", 2)
            agent = Agent(os.path.join(tmp, "lb"), {
                "DEFAULT": {"driver": "linuxbridge"},
                "linux_bridge": {"bridge_prefix": "bd-"}})
            try:
                agent.cli("network", "create", "n1", "--type", "local")
                for p, vm in (("p1", vm1), ("p2", vm2)):
                    agent.cli("port", "create", p, "--network", "n1", "--device", vm.tap)
                agent.start()
                agent.wait_ports(["p1", "p2"])
                vm1.can_ping(vm2.ip)
                results["linuxbridge"] = repeat(vm1, vm2)
            finally:
                agent.stop()
                run(["ip", "link", "del", "bd-n1"], check=False)
        reason = ovs_sandbox.available()
        if reason:
            print(f"  OVS rows skipped: {reason}")
        else:
            ovs = ovs_sandbox.OvsSandbox(os.path.join(tmp, "ovs")).start()
            try:
                # (b) NORMAL, no controller
                with NetEnv("bd") as env:
                    vm1, vm2 = env.vm("a", 1, offload_off=True), env.vm("b", 2, offload_off=True)
                    ovs.vsctl("add-br", "bdnormal", "--", "set", "bridge", "bdnormal",
                              "datapath_type=netdev")
                    for vm in (vm1, vm2):
                        ovs.vsctl("add-port", "bdnormal", vm.tap)
                        run(["ip", "link", "set", vm.tap, "up"])
                    vm1.can_ping(vm2.ip)
                    results["ovs_normal"] = repeat(vm1, vm2)
                    results["ovs_normal"]["megaflows"] = megaflows(ovs)
                    ovs.vsctl("del-br", "bdnormal")
                # (c) ovsbr's pipeline
                with NetEnv("bd") as env:
                    vm1, vm2 = env.vm("a", 1, offload_off=True), env.vm("b", 2, offload_off=True)
                    agent = Agent(os.path.join(tmp, "ovs-agent"), {
                        "DEFAULT": {"driver": "openvswitch"},
                        "ovs": {"ovsdb_connection": ovs.connection,
                                "integration_bridge": "bdint", "datapath_type": "netdev",
                                "of_listen_port": 16634}})
                    try:
                        agent.cli("network", "create", "n1", "--type", "local")
                        for p, vm in (("p1", vm1), ("p2", vm2)):
                            agent.cli("port", "create", p, "--network", "n1", "--device",
                                      vm.tap)
                        agent.start()
                        agent.wait_ports(["p1", "p2"])
                        vm1.can_ping(vm2.ip)
                        time.sleep(1)
                        results["ovs_ovsbr"] = repeat(vm1, vm2)
                        results["ovs_ovsbr"]["megaflows"] = megaflows(ovs)
                    finally:
                        agent.stop()
                        ovs.vsctl("--if-exists", "del-br", "bdint", check=False)
            finally:
                ovs.stop()
    rows = []
    base = results.get("ovs_normal", {}).get("gbps")
    for name, r in results.items():
        ratio = r["gbps"] / base if base and name.startswith("ovs") else None
        rows.append([name, r["gbps"], r["rtt_ms"], r.get("megaflows", "-"),
                     "-" if ratio is None else ratio])
    if base and "ovs_ovsbr" in results:
        results["ovsbr_vs_normal_throughput"] = results["ovs_ovsbr"]["gbps"] / base
    print(common.table(f"Data plane: iperf3 TCP {SECONDS}s x{REPEATS} (median), ping RTT "
                       "(target ovsbr/NORMAL >= 0.95)",
                       ["path", "Gbit/s", "RTT ms", "megaflows", "vs OVS NORMAL"], rows))
    print("JSON:", common.write("dataplane", {"benchmark": "dataplane", "results": results}))
    return results
