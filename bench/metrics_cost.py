"""What [metrics] costs the agent: the same tree with metrics off and on.

Side by side in one run: single-port wiring (p50/p95/p99 at each N, both
drivers, via :mod:`wiring`) and L2 learning (MACs/s and frames delivered,
via :mod:`learning`), alternating which goes first. With metrics on, a
scraper reads /metrics every second throughout, harsher than Prometheus'
usual 15-30 s, so the cost of serving scrapes is in the numbers. Target:
on within 5% of off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from bench import common, core, learning, wiring
from ovsbr.testing import ovs_sandbox

PORT = 19477  # the benchmark's agents serve metrics here, one agent at a time
SCRAPE_EVERY = 1.0


# SIGINT ends it and makes it print its count. A shell's background job
# starts with SIGINT ignored, and Python then leaves it ignored: restored.
SCRAPER = f"""
import signal, sys, time, urllib.request
signal.signal(signal.SIGINT, signal.default_int_handler)
ok = 0
try:
    while True:
        time.sleep({SCRAPE_EVERY})
        try:
            with urllib.request.urlopen("http://127.0.0.1:{PORT}/metrics", timeout=2) as r:
                r.read()
            ok += 1
        except OSError:
            pass  # between agents nothing listens
except KeyboardInterrupt:
    print(ok)
"""


class Scraper:
    """Reads /metrics every second from a process of its own (a thread here
    would compete for the GIL with the benchmark's own timing); counts them."""

    def __init__(self):
        self.scrapes = 0
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Scraper:
        self.proc = subprocess.Popen([sys.executable, "-c", SCRAPER], stdout=subprocess.PIPE,
                                     text=True)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            out = self.proc.communicate(timeout=10)[0].strip()
        except subprocess.TimeoutExpired:  # the figures matter more than its count
            self.proc.kill()
            out = self.proc.communicate()[0].strip()
        self.scrapes = int(out) if out.isdigit() else 0


ON = {"metrics": {"enabled": True, "bind_port": PORT}}
VARIANTS = [("metrics off", None, {}), ("metrics on", None, ON)]


def _row(driver: str, n: int, off: list[dict], on: list[dict]) -> list:
    """One (driver, N) line from its alternating runs: medians, and each run's
    p99, so the spread between runs of one variant is there to compare the
    on/off difference with."""
    def med(runs, key):
        return common.median([r[key] for r in runs])

    def each(runs):
        return " ".join(f"{r['single_p99_ms']:.1f}" for r in runs)
    return [driver, n, min(len(off), len(on)),
            f"{med(off, 'single_p50_ms'):.1f}/{med(off, 'single_p99_ms'):.1f}",
            f"{med(on, 'single_p50_ms'):.1f}/{med(on, 'single_p99_ms'):.1f}",
            med(on, "single_p99_ms") / med(off, "single_p99_ms"), each(off), each(on),
            f"{med(off, 'single_cpu_ms_per_port'):.2f}/{med(on, 'single_cpu_ms_per_port'):.2f}",
            f"{med(off, 'bulk_s'):.2f}/{med(on, 'bulk_s'):.2f}"]


def wiring_rows(results: list[dict], sizes: list[int], drivers: list[str]) -> list[list]:
    """The side-by-side lines from wiring.main's results (also from its JSON)."""
    runs_of: dict[tuple, list[dict]] = {}
    for r in results:
        runs_of.setdefault((r["driver"], r["n"], r["code"]), []).append(r)
    rows = []
    for driver in drivers:
        for n in dict.fromkeys(sizes):
            off, on = (runs_of.get((driver, n, label)) for label, _, _ in VARIANTS)
            if off and on:
                rows.append(_row(driver, n, off, on))
    return rows


def core_runs(sizes: list[int], repeats: int = 3) -> list[list]:
    """The agent's own reconcile (bench.core: no datapath, every port bound)
    with metrics off and on, alternating in fresh processes, and one
    scrape's rendering: the cost itself, without the datapath's noise that
    swamps 5 % in the wiring figures."""
    rows = []
    for n in dict.fromkeys(sizes):
        runs: dict[str, list[dict]] = {"metrics off": [], "metrics on": []}
        for i in range(repeats):
            for label, _, extra in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
                env = {"OVSBR_BENCH_METRICS": "1"} if extra else {}
                runs[label].append(core.measure(None, n, env))
        off, on = (runs[label] for label, _, _ in VARIANTS)

        def med(runs, key):
            return common.median([r[key] for r in runs])
        rows.append([n, repeats, med(off, "event_p50_ms"), med(on, "event_p50_ms"),
                     med(on, "event_p50_ms") - med(off, "event_p50_ms"),
                     med(off, "p50_ms"), med(on, "p50_ms"),
                     med(on, "p50_ms") - med(off, "p50_ms"), med(on, "scrape_ms")])
    return rows


def learning_runs() -> list[dict]:
    """Learning with metrics off and on, alternating, median of each."""
    if ovs_sandbox.available() is not None:
        return []
    with tempfile.TemporaryDirectory(prefix="ovsbr-bench-m-") as tmp, Scraper():
        ovs = ovs_sandbox.OvsSandbox(os.path.join(tmp, "ovs")).start()
        try:
            runs: dict[str, list] = {"metrics off": [], "metrics on": []}
            for i in range(learning.REPEATS):
                for label, _, extra in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
                    r = learning.run_case("ovsbr", ovs, tmp, extra)
                    r["controller"] = label
                    print(f"  learning {label}: {r}", flush=True)
                    runs[label].append(r)
            return [common.median_of(v) for v in runs.values()]
        finally:
            ovs.stop()


def main(sizes: list[int], drivers: list[str]) -> dict:
    with Scraper() as scraper:
        wired = wiring.main(sizes, drivers, VARIANTS, name="metrics_wiring")
    print(f"  scraped /metrics {scraper.scrapes} times while wiring", flush=True)
    learned = learning_runs()
    cores = core_runs(sizes)
    rows = wiring_rows(wired.get("results", []), sizes, drivers)
    print(common.table("Metrics cost: single-port wiring, median of the runs at each N "
                       "(a size given k times runs k alternating pairs; target: on p99 "
                       "within 5%)", ["driver", "N", "runs", "off p50/p99 ms", "on p50/p99 ms",
                                      "p99 on/off", "off p99 per run", "on p99 per run",
                                      "agent CPU ms/port off/on", "bulk s off/on"], rows))
    print(common.table("Metrics cost: the agent's own reconcile (bench core, no datapath: "
                       "a device event's, and a whole-host one's), p50 ms, median of "
                       "alternating runs; and one /metrics rendering",
                       ["N", "runs", "event off", "event on", "event +ms", "whole off",
                        "whole on", "whole +ms", "scrape ms"], cores))
    if learned:
        print(common.table(f"Metrics cost: learning, median of {learning.REPEATS}",
                           ["variant", "MACs learned/s", "delivered"],
                           [[r["controller"], r.get("macs_per_s", "-"),
                             f"{r['delivered']}/{r['k']}"] for r in learned]))
    data = {"benchmark": "metrics_cost", "wiring": rows, "core": cores, "learning": learned}
    print("JSON:", common.write("metrics_cost", data))
    return data
