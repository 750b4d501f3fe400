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

from bench import common, learning, wiring
from ovsbr.testing import ovs_sandbox

PORT = 19477  # the benchmark's agents serve metrics here, one agent at a time
SCRAPE_EVERY = 1.0


SCRAPER = f"""
import sys, time, urllib.request
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
        out = self.proc.communicate(timeout=10)[0].strip()
        self.scrapes = int(out) if out.isdigit() else 0


ON = {"metrics": {"enabled": True, "bind_port": PORT}}
VARIANTS = [("metrics off", None, {}), ("metrics on", None, ON)]


def main(sizes: list[int], drivers: list[str]) -> dict:
    with Scraper() as scraper:
        wired = wiring.main(sizes, drivers, VARIANTS, name="metrics_wiring")
    print(f"  scraped /metrics {scraper.scrapes} times while wiring", flush=True)
    learned = []
    reason = ovs_sandbox.available()
    if reason is None:
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
                learned = [common.median_of(v) for v in runs.values()]
            finally:
                ovs.stop()
    rows = []
    by = {(r["driver"], r["n"], r["code"]): r for r in wired.get("results", [])}
    for driver in drivers:
        for n in sizes:
            off, on = by.get((driver, n, "metrics off")), by.get((driver, n, "metrics on"))
            if off and on:
                rows.append([driver, n, f"{off['single_p50_ms']:.1f}/{off['single_p99_ms']:.1f}",
                             f"{on['single_p50_ms']:.1f}/{on['single_p99_ms']:.1f}",
                             on["single_p99_ms"] / off["single_p99_ms"],
                             off["bulk_s"], on["bulk_s"]])
    print(common.table("Metrics cost: single-port wiring p50/p99 ms, off vs on (target: on "
                       "p99 within 5%)", ["driver", "N", "off p50/p99", "on p50/p99",
                                          "p99 on/off", "bulk s off", "bulk s on"], rows))
    if learned:
        print(common.table(f"Metrics cost: learning, median of {learning.REPEATS}",
                           ["variant", "MACs learned/s", "delivered"],
                           [[r["controller"], r.get("macs_per_s", "-"),
                             f"{r['delivered']}/{r['k']}"] for r in learned]))
    data = {"benchmark": "metrics_cost", "wiring": rows, "learning": learned}
    print("JSON:", common.write("metrics_cost", data))
    return data
