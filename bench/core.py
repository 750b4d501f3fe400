"""The agent's own work per event: one reconcile at N ports, no datapath.

A driver that answers at once (every port present and bound, nothing to
do) leaves only what the agent itself spends on each wake-up: plan,
statuses, overlays, the status document. Two figures: a whole-host
reconcile (start, periodic resync: the driver cannot say what changed)
and one for a device event naming one tap (the driver says which), the
part of single-port latency that must not grow with N. Each version runs
in its own process (PYTHONPATH = its tree), alternating, so ``--against
REF`` compares them in one run. ``OVSBR_BENCH_METRICS=1`` feeds
``[metrics]`` from the loop, as the agent does when it is on.
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
import json, logging, os, statistics, sys, time
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
    changed = None  # observe_change's names: None, a full plan; a set, an event's
    def observe(self): return obs
    def observe_change(self): return obs, self.changed
    def fingerprint(self, net): return "fp"
    def ensure_network(self, net): pass
    def delete_network(self, name): pass
    def plug(self, *a): pass
    def unplug(self, *a): pass
class Store:
    def write_status(self, host, status, changed=None): pass
    def stats(self): return {}
agent = service.Agent(Store(), Fake(), "h", 300)
served = None
if os.environ.get("OVSBR_BENCH_METRICS"):  # [metrics] on: the loop feeds it
    from ovsbr import metrics
    served = metrics.Metrics(agent)
    agent.on_reconciled = served.on_reconciled
if hasattr(service, "st"):
    agent.snapshot = service.st.DesiredSnapshot.of(topo, "h")
else:  # before the agent's state became values
    agent.topology, agent.desired = topo, topo.local_view("h")
def timed(fn, k):
    """(p50, p99) ms of k calls."""
    ms = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return statistics.median(ms), ms[int(len(ms) * 0.99)]
timed(agent.reconcile, 20)
result = dict(zip(("p50_ms", "p99_ms"), timed(agent.reconcile, repeats)))
# A device event naming one tap: the plan for that change (where the
# version plans incrementally; an older one plans the whole host again).
agent.driver.changed = frozenset({"tap0"})
agent.reconcile()
result.update(zip(("event_p50_ms", "event_p99_ms"), timed(agent.reconcile, repeats)))
if served is not None:  # one scrape's rendering, what each /metrics costs the agent
    result["scrape_ms"] = timed(served.exposition, 50)[0]
print(json.dumps(result))
'''


def measure(source: str | None, n: int, extra_env: dict[str, str] | None = None) -> dict:
    env = dict(os.environ, **(extra_env or {}))
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
    rows = [[r["code"], r["n"], r["p50_ms"], r["p99_ms"], r.get("event_p50_ms", "-"),
             r.get("event_p99_ms", "-")] for r in results]
    print(common.table("Agent core: one reconcile, every port bound, no datapath (lower "
                       "is better): whole host (start, resync) and one device event",
                       ["code", "N", "whole p50 ms", "whole p99 ms", "event p50 ms",
                        "event p99 ms"], rows))
    data = {"benchmark": "core", "repeats": REPEATS, "results": results}
    print("JSON:", common.write("core", data))
    return data
