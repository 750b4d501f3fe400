"""Soak: port churn for minutes, sampling what would show a leak.

    python bench/soak.py --minutes 10 --drivers linuxbridge,openvswitch

200 networks and a pool of devices; every second about 10 store writes
each create or delete one port (declared with a MAC and an IP, so port
security rules churn too). Each minute: the agent's RSS, open file
descriptors and threads, the flows on br-int (openvswitch), nftables
port chains (linuxbridge) and the host's network devices. At the end
every port and network is deleted and the datapath must hold nothing of
ovsbr's. Growth is reported as last sample minus the first one after
warm-up. Not part of CI (tox -e soak); its result goes in the issue note.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from ovsbr.model import Topology, port_from_dict  # noqa: E402
from ovsbr.store.file import FileStore  # noqa: E402
from ovsbr.testing import ovs_sandbox  # noqa: E402
from ovsbr.testing.agent import Agent  # noqa: E402
from ovsbr.testing.netns import NetEnv, delete_links, make_veths, run  # noqa: E402

NETWORKS = 200
POOL = 400  # devices; about half are declared at any time
OPS_PER_S = 10


def sample(agent: Agent, driver: str, extra: dict) -> dict:
    pid = agent.proc.pid
    out = {"t": round(time.monotonic()), "rss_mb": round(common.rss_mb(pid), 1),
           "fds": len(os.listdir(f"/proc/{pid}/fd")),
           "threads": len(os.listdir(f"/proc/{pid}/task")),
           "devices": len(run(["ip", "-o", "link", "show"]).stdout.splitlines())}
    if driver == "openvswitch":
        out["flows"] = len(extra["ovs"].flows(extra["br"]))
    else:
        res = run(["nft", "-j", "list", "table", "bridge", extra["table"]], check=False)
        out["nft_chains"] = (sum(1 for i in json.loads(res.stdout)["nftables"] if "chain" in i)
                             if res.returncode == 0 else 0)
    return out


def soak(driver: str, minutes: float, env: NetEnv, ovs) -> dict:
    prefix = env.prefix
    devices = [f"{prefix}k{i}" for i in range(POOL)]
    make_veths(devices)
    workdir = tempfile.mkdtemp(prefix="ovsbr-soak-")
    if driver == "openvswitch":
        br = f"{prefix}int"
        sections = {"DEFAULT": {"driver": driver, "resync_interval": 30},
                    "ovs": {"ovsdb_connection": ovs.connection, "integration_bridge": br,
                            "datapath_type": "netdev", "of_listen_port": 16634}}
        extra = {"ovs": ovs, "br": br}
    else:
        bprefix = prefix[:5] + "-"
        sections = {"DEFAULT": {"driver": driver, "resync_interval": 30},
                    "linux_bridge": {"bridge_prefix": bprefix}}
        extra = {"table": "ovsbr_" + bprefix.replace("-", "_")}
    agent = Agent(workdir, sections)
    store = FileStore(path=agent.state_path)
    nets = [f"s{i}" for i in range(NETWORKS)]

    rng = random.Random(1)
    declared: dict[str, str] = {}

    def new_port(i: int):
        name = f"q{i}"
        declared[devices[i]] = name
        return port_from_dict({
            "name": name, "network": rng.choice(nets), "device": devices[i],
            "mac": f"52:54:01:00:{i >> 8:02x}:{i & 255:02x}",
            "ips": [f"203.0.113.{i + 1}" if i < 250 else f"198.51.100.{i - 249}"]})

    # Start at the churn's steady state (half the pool declared), so the
    # samples show drift, not the ramp-up.
    first = [new_port(i) for i in range(0, POOL, 2)]

    def setup(t: Topology) -> None:
        fresh = Topology.from_dict({"networks": [{"name": n, "type": "local"} for n in nets]})
        t.networks, t.ports = fresh.networks, {p.name: p for p in first}
    store.update(setup)
    agent.start()
    samples, ops, t_end = [], 0, time.monotonic() + minutes * 60
    next_sample = time.monotonic() + 30  # warm-up: the first wiring of 200 ports
    try:
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            for _ in range(OPS_PER_S):
                i = rng.randrange(POOL)
                dev = devices[i]
                if dev in declared:
                    name = declared.pop(dev)
                    store.update(lambda t, n=name: t.ports.pop(n, None))
                else:
                    port = new_port(i)

                    def add(t, p=port):
                        t.ports[p.name] = p
                    store.update(add)
                ops += 1
            if time.monotonic() >= next_sample:
                samples.append(sample(agent, driver, extra))
                print(f"  {driver} sample {len(samples)}: {samples[-1]}", flush=True)
                next_sample += 60
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        assert agent.alive(), "agent died during the soak:\n" + agent.tail()
        # Everything away: nothing of ovsbr's may stay behind.
        store.update(lambda t: (t.ports.clear(), t.networks.clear()))
        t_clear = time.monotonic()
        while time.monotonic() - t_clear < 120 and leftovers_of(driver, prefix, extra):
            time.sleep(1)
        clear_s = round(time.monotonic() - t_clear, 1)
        final = sample(agent, driver, extra)
        leftovers = leftovers_of(driver, prefix, extra)
        first, last = samples[0], samples[-1]
        growth = {k: round(last[k] - first[k], 1) for k in first if k != "t"}
        return {"driver": driver, "minutes": minutes, "ops": ops, "samples": samples,
                "growth": growth, "final": final, "leftovers": leftovers,
                "emptied_in_s": clear_s}
    finally:
        agent.stop()
        subprocess.run([Agent.bin("ovsbr-agent"), "--config-file", agent.config, "--cleanup"],
                       capture_output=True, timeout=120)
        if driver == "openvswitch":
            ovs.vsctl("--if-exists", "del-br", extra["br"], check=False)
        delete_links(devices)
        shutil.rmtree(workdir, ignore_errors=True)


def leftovers_of(driver: str, prefix: str, extra: dict) -> list[str]:
    """What of ovsbr's is still on the datapath once every network is deleted."""
    leftovers = []
    if driver == "openvswitch":
        ovs = extra["ovs"]
        left = [p for p in ovs.ports(extra["br"]) if p.startswith(prefix)]
        if left:
            leftovers.append(f"ports on br-int: {left[:5]}")
        if "ovsbr-net-" in ovs.get("Bridge", extra["br"], "external_ids"):
            leftovers.append("networks in br-int external_ids")
        flows = len(ovs.flows(extra["br"]))
        if flows > 3:
            leftovers.append(f"{flows} flows on br-int (3 table-miss flows expected)")
    else:
        bridges = [ln.split(":")[1].strip() for ln in
                   run(["ip", "-o", "link", "show", "type", "bridge"]).stdout.splitlines()
                   if ln.split(":")[1].strip().startswith(prefix[:5] + "-")]
        if bridges:
            leftovers.append(f"{len(bridges)} bridges, e.g. {bridges[:3]}")
        res = run(["nft", "-j", "list", "table", "bridge", extra["table"]], check=False)
        chains = (sum(1 for i in json.loads(res.stdout)["nftables"] if "chain" in i)
                  if res.returncode == 0 else 0)
        if chains > 1:
            leftovers.append(f"{chains - 1} nftables port chains")
    return leftovers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--drivers", default="linuxbridge,openvswitch")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the soak needs root (namespaces, bridges, a private OVS)")
        return 2
    results, rows = [], []
    ovs = None
    try:
        for driver in args.drivers.split(","):
            if driver == "openvswitch" and ovs is None:
                ovs = ovs_sandbox.OvsSandbox().start()
            with NetEnv() as env:
                r = soak(driver, args.minutes, env, ovs)
            results.append(r)
            g = r["growth"]
            rows.append([driver, r["minutes"], r["ops"], r["samples"][0]["rss_mb"],
                         r["samples"][-1]["rss_mb"], g["rss_mb"], g["fds"], g["threads"],
                         g.get("flows", g.get("nft_chains")), g["devices"],
                         r["emptied_in_s"], "; ".join(r["leftovers"]) or "none"])
    finally:
        if ovs is not None:
            ovs.stop()
    print(common.table("soak: port churn, growth from first to last sample",
                       ["driver", "min", "ops", "rss first MB", "rss last MB", "d rss MB",
                        "d fds", "d threads", "d flows/chains", "d devices", "emptied s",
                        "left behind"],
                       rows))
    print("json:", common.write("soak", {"runs": results}))
    return 1 if any(r["leftovers"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
