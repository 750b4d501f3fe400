"""The agent's own work per event: one reconcile at N ports, no datapath.

A driver that answers at once (every port present and bound, nothing to
do) leaves only what the agent itself spends on each wake-up: plan,
statuses, overlays, the status document. That is the part of single-port
latency that grows with N and that an incremental reconcile must make
O(change). Each version runs in its own process (PYTHONPATH = its tree),
alternating, so ``--against REF`` compares them in one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench import common

REPEATS = 300
# Runs inside the measured version: only public names the agent has had
# since the seed, plus the snapshot of the state-as-values agent.
PROBE = r'''
import json, logging, statistics, sys, time
logging.disable(logging.CRITICAL)
from ovsbr.agent import service
from ovsbr.drivers.base import Device, Driver, NetworkState, Observed
from ovsbr.model import Topology
n, repeats = int(sys.argv[1]), int(sys.argv[2])
topo = Topology.from_dict({"revision": 1,
    "networks": [{"name": f"n{i}", "type": "local"} for i in range(max(1, n // 100))],
    "ports": [{"name": f"p{i}", "network": f"n{i // 100}", "device": f"tap{i}"}
              for i in range(n)]})
obs = Observed(networks={k: NetworkState(k, "fp") for k in topo.networks},
               devices={f"tap{i}": Device(f"tap{i}", None, None, f"n{i // 100}")
                        for i in range(n)})
class Fake(Driver):
    name = "fake"
    def __init__(self): pass
    def check_config(self): pass
    def start(self, cb): pass
    def stop(self): pass
    def observe(self): return obs
    def fingerprint(self, net): return "fp"
    def ensure_network(self, net): pass
    def delete_network(self, name): pass
    def plug(self, *a): pass
    def unplug(self, *a): pass
class Store:
    def write_status(self, host, status, changed=None): pass
agent = service.Agent(Store(), Fake(), "h", 300)
if hasattr(service, "st"):
    agent.snapshot = service.st.DesiredSnapshot.of(topo, "h")
else:  # before the agent's state became values
    agent.topology, agent.desired = topo, topo.local_view("h")
for _ in range(20):
    agent.reconcile()
ms = []
for _ in range(repeats):
    t0 = time.perf_counter()
    agent.reconcile()
    ms.append((time.perf_counter() - t0) * 1000)
ms.sort()
print(json.dumps({"p50_ms": statistics.median(ms), "p99_ms": ms[int(len(ms) * 0.99)]}))
'''


def measure(source: str | None, n: int) -> dict:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = source
    out = subprocess.run([sys.executable, "-c", PROBE, str(n), str(REPEATS)], env=env,
                         capture_output=True, text=True, check=True, cwd="/")
    return json.loads(out.stdout)


def main(sizes: list[int], codes: list[tuple[str, str | None]] | None = None) -> dict:
    codes = codes or [("this tree", None)]
    results = []
    for i, n in enumerate(sizes):
        for label, source in (codes if i % 2 == 0 else codes[::-1]):
            r = {"code": label, "n": n, **measure(source, n)}
            results.append(r)
    results.sort(key=lambda r: (r["n"], r["code"]))
    rows = [[r["code"], r["n"], r["p50_ms"], r["p99_ms"]] for r in results]
    print(common.table("Agent core: one reconcile, every port bound, no datapath (lower "
                       "is better; grows with N until reconciles are incremental)",
                       ["code", "N", "p50 ms", "p99 ms"], rows))
    data = {"benchmark": "core", "repeats": REPEATS, "results": results}
    print("JSON:", common.write("core", data))
    return data
