"""What security groups cost: wiring, the data plane, flows per port.

Side by side in one run, the same tree with and without groups:

wiring     N ports (bench/wiring.py: bulk, single-port p50/p99) with no
           groups, and with every port in 3 groups of 10 rules each
           (port ranges, prefixes, ICMP, IPv6, remote-group rules whose
           members are all N ports). Targets: bulk under 5 s at 1,000;
           single-port p99 with groups at most 1.2x without.
dataplane  iperf3 TCP between two VMs whose ports have a group that
           allows the traffic, and between two without, on one agent,
           runs alternated. Target: with/without >= 0.9.
flows      OpenFlow flows one port costs as its groups and their remote
           groups' members grow, and what the bridge holds once for all
           ports in the same groups (their profile's rules) and for all
           ports naming a remote group (its members) (compiled, no switch).

linuxbridge rows need bridge conntrack (nf_conntrack_bridge): where the
kernel lacks it they are skipped with the reason.
"""

from __future__ import annotations

import os
import tempfile
import time

from bench import common, dataplane, wiring
from ovsbr.model import Topology
from ovsbr.openflow import pipeline as pl
from ovsbr.openflow import secgroup_flows as sgf
from ovsbr.secgroups.policy import port_policy
from ovsbr.testing import ovs_sandbox
from ovsbr.testing.agent import Agent
from ovsbr.testing.netns import NetEnv, bridge_conntrack_missing


def _rules(*specs: str) -> list[dict]:
    rules = []
    for spec in specs:
        fields = dict(kv.split("=") for kv in spec.split())
        for key in ("port_range_min", "port_range_max", "icmp_type", "icmp_code"):
            if key in fields:
                fields[key] = int(fields[key])
        rules.append(fields)
    return rules


GROUPS = [
    {"name": "web", "rules": _rules(
        "direction=ingress protocol=tcp port_range_min=80",
        "direction=ingress protocol=tcp port_range_min=443",
        "direction=ingress protocol=tcp port_range_min=8000 port_range_max=8080",
        "direction=ingress protocol=tcp port_range_min=9000 port_range_max=9100",
        "direction=ingress protocol=udp port_range_min=53",
        "direction=ingress protocol=udp port_range_min=5000 port_range_max=5100",
        "direction=ingress protocol=icmp icmp_type=8 icmp_code=0",
        "direction=ingress ethertype=IPv6 protocol=tcp port_range_min=80",
        "direction=ingress ethertype=IPv6 protocol=icmpv6",
        "direction=egress")},
    {"name": "app", "rules": _rules(
        "direction=ingress protocol=tcp port_range_min=22 remote_ip_prefix=198.51.100.0/24",
        "direction=ingress ethertype=IPv6 protocol=tcp port_range_min=3306 remote_group=app",
        "direction=ingress ethertype=IPv6 protocol=tcp port_range_min=5432 remote_group=app",
        "direction=ingress ethertype=IPv6 protocol=udp port_range_min=4789 remote_group=app",
        "direction=ingress ethertype=IPv6 protocol=icmpv6 remote_group=app",
        "direction=ingress ethertype=IPv6 protocol=tcp port_range_min=22 "
        "remote_ip_prefix=2001:db8::/32",
        "direction=egress protocol=tcp port_range_min=443",
        "direction=egress protocol=udp port_range_min=123",
        "direction=egress ethertype=IPv6",
        "direction=egress protocol=tcp port_range_min=1 port_range_max=1024 "
        "remote_ip_prefix=203.0.113.0/24")},
    {"name": "mgmt", "rules": _rules(
        "direction=ingress protocol=udp port_range_min=161 port_range_max=162",
        "direction=ingress protocol=tcp port_range_min=10050 port_range_max=10051",
        "direction=ingress protocol=tcp port_range_min=9100",
        "direction=ingress protocol=tcp port_range_min=9090 port_range_max=9099",
        "direction=ingress protocol=sctp port_range_min=3868",
        "direction=ingress protocol=47",
        "direction=ingress protocol=112",
        "direction=ingress ethertype=IPv6 protocol=udp port_range_min=546",
        "direction=egress protocol=udp port_range_min=514",
        "direction=egress protocol=tcp port_range_min=6514")},
]
VARIANTS = [("no groups", None, {}, []), ("3 groups x 10 rules", None, {}, GROUPS)]
ALLOW_IPERF = {"name": "iperf", "rules": _rules(
    "direction=ingress protocol=tcp port_range_min=5201", "direction=ingress protocol=icmp",
    "direction=egress")}


def flows_per_port() -> list[list]:
    """Flows of one port's binding as groups and remote-group members grow."""
    rows = []
    for n_groups, members in ((0, 0), (1, 0), (3, 10), (3, 100), (3, 1000)):
        groups = GROUPS[:n_groups]
        ports = [{"name": f"p{i}", "network": "n", "device": f"t{i}",
                  "mac": f"52:54:00:{i >> 8 & 255:02x}:{i & 255:02x}:01",
                  "ips": [f"2001:db8:1::{i + 1:x}"],
                  "security_groups": [g["name"] for g in groups]}
                 for i in range(max(1, members))]
        topo = Topology.from_dict({"networks": [{"name": "n", "type": "local"}],
                                   "security_groups": groups, "ports": ports})
        port = topo.ports["p0"]
        binding = pl.PortBinding(5, 1, port.mac, port_policy(port, topo))
        t0 = time.perf_counter()
        flows = pl.port_flows(binding)
        rules = pl.profile_flows(binding)
        ms = (time.perf_counter() - t0) * 1000
        fw = binding.firewall
        keys = sgf.conj_keys(fw) if fw else set()
        shared = sgf.member_flows({k: fw.members(k[0], k[2]) for k in keys},
                                  sgf.stable_ids(keys))
        rows.append([n_groups, n_groups * 10, members, len(flows), len(rules), len(shared),
                     ms])
    return rows


def dataplane_ovs(ovs, env: NetEnv, tmp: str) -> dict:
    """Two pairs of VMs on one agent: one pair's ports in a group, runs alternated."""
    vms = [env.vm(role, i, offload_off=True) for i, role in enumerate("abcd", 1)]
    agent = Agent(os.path.join(tmp, "sg-agent"), {
        "DEFAULT": {"driver": "openvswitch"},
        "ovs": {"ovsdb_connection": ovs.connection, "integration_bridge": "bsint",
                "datapath_type": "netdev", "of_listen_port": 16635}})
    try:
        agent.cli("network", "create", "n1", "--type", "local")
        agent.cli("security-group", "create", "iperf")
        for rule in ALLOW_IPERF["rules"]:
            flags = [x for k, v in rule.items() for x in (
                "--port-range" if k == "port_range_min" else "--" + k.replace("_", "-"),
                str(v))]
            agent.cli("security-group", "rule", "create", "iperf", *flags)
        for i, vm in enumerate(vms, 1):
            groups = ["--security-group", "iperf"] if i > 2 else []
            agent.cli("port", "create", f"p{i}", "--network", "n1", "--device", vm.tap,
                      "--mac", vm.mac, "--ip", vm.ip, *groups)
        agent.start()
        agent.wait_ports([f"p{i}" for i in range(1, 5)])
        assert vms[0].can_ping(vms[1].ip) and vms[2].can_ping(vms[3].ip), "VMs do not talk"
        runs: dict[str, list] = {"without": [], "with": []}
        for i in range(dataplane.REPEATS):
            for label, (a, b) in ((("without", vms[:2]), ("with", vms[2:]))
                                  if i % 2 == 0 else (("with", vms[2:]), ("without", vms[:2]))):
                runs[label].append(dataplane.measure(a, b))
        return {k: {"gbps": common.median([r["gbps"] for r in v]),
                    "rtt_ms": common.median([r["rtt_ms"] for r in v]), "runs": v}
                for k, v in runs.items()}
    finally:
        agent.stop()
        ovs.vsctl("--if-exists", "del-br", "bsint", check=False)


def main(sizes: list[int], drivers: list[str], codes: list[tuple] | None = None) -> dict:
    """``codes``: as bench/run.py passes them; a second one (``--against``)
    adds that version with groups to the wiring rows, side by side."""
    if "linuxbridge" in drivers and bridge_conntrack_missing():
        print("  linuxbridge skipped: no nf_conntrack_bridge in this kernel")
        drivers = [d for d in drivers if d != "linuxbridge"]
    flow_rows = flows_per_port()
    print(common.table("Security groups: OpenFlow flows per port (compiled)",
                       ["groups", "rules", "remote-group members", "flows per port",
                        "profile rules per bridge", "member flows per bridge", "compile ms"],
                       flow_rows))
    variants = list(VARIANTS)
    ref = codes[1] if codes and len(codes) > 1 else None
    if ref is not None:
        variants.append((f"{VARIANTS[1][0]} @{ref[0]}", ref[1], {}, GROUPS))
    wired = wiring.main(sizes, drivers, variants, name="secgroups_wiring") if drivers else {}
    rows = []
    by = {(r["driver"], r["n"], r["code"]): r for r in wired.get("results", [])}
    for driver in drivers:
        for n in sizes:
            off, on = by.get((driver, n, VARIANTS[0][0])), by.get((driver, n, VARIANTS[1][0]))
            if off and on:
                row = [driver, n, off["bulk_s"], on["bulk_s"],
                       f"{off['single_p50_ms']:.1f}/{off['single_p99_ms']:.1f}",
                       f"{on['single_p50_ms']:.1f}/{on['single_p99_ms']:.1f}",
                       on["single_p99_ms"] / off["single_p99_ms"]]
                old = by.get((driver, n, variants[-1][0])) if ref else None
                if ref:
                    row += [old["bulk_s"], f"{old['single_p50_ms']:.1f}/"
                            f"{old['single_p99_ms']:.1f}"] if old else ["-", "-"]
                rows.append(row)
    cols = ["driver", "N", "bulk s without", "bulk s with", "single p50/p99 without",
            "with", "p99 with/without"]
    if ref:
        cols += [f"bulk s with @{ref[0]}", f"p50/p99 with @{ref[0]}"]
    print(common.table("Security groups: wiring without vs with 3 groups x 10 rules "
                       "(targets: bulk < 5 s at 1000; p99 with/without <= 1.2)", cols, rows))
    plane = {}
    if "openvswitch" in drivers and ovs_sandbox.available() is None:
        with tempfile.TemporaryDirectory(prefix="ovsbr-bench-sg-") as tmp:
            ovs = ovs_sandbox.OvsSandbox(os.path.join(tmp, "ovs")).start()
            try:
                with NetEnv("bs") as env:
                    plane = dataplane_ovs(ovs, env, tmp)
            finally:
                ovs.stop()
        ratio = plane["with"]["gbps"] / plane["without"]["gbps"]
        print(common.table(f"Security groups: iperf3 TCP {dataplane.SECONDS}s "
                           f"x{dataplane.REPEATS} (median), openvswitch netdev "
                           "(target with/without >= 0.9)",
                           ["ports", "Gbit/s", "RTT ms", "with/without"],
                           [["without groups", plane["without"]["gbps"],
                             plane["without"]["rtt_ms"], "-"],
                            ["with a group", plane["with"]["gbps"], plane["with"]["rtt_ms"],
                             ratio]]))
        plane["ratio"] = ratio
    data = {"benchmark": "secgroups", "flows_per_port": flow_rows, "wiring": rows,
            "dataplane": plane}
    print("JSON:", common.write("secgroups", data))
    return data
