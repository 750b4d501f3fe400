"""Shared benchmark plumbing: machine facts, medians, a table and a JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import time
from importlib import metadata

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "kernel": platform.release()}
    for pkg in ("ovsbr", "os-ken", "ovsdbapp", "ovs", "pyroute2"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "?"
    try:
        out["openvswitch"] = subprocess.run(
            ["ovs-vswitchd", "--version"], capture_output=True, text=True
        ).stdout.split()[3]
    except (OSError, IndexError):
        out["openvswitch"] = "?"
    return out


def machine() -> dict:
    return {"cores": os.cpu_count(), "versions": versions(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def table(title: str, columns: list[str], rows: list[list]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [f"\n{title}", "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def write(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), **data}, f, indent=2)
    return path


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_cpu() -> tuple[int, int, int]:
    """All CPUs' jiffies so far (/proc/stat): total, idle + iowait, and
    steal (time the hypervisor gave this machine's vCPUs to others)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4], fields[7] if len(fields) > 7 else 0


def _cpu_busy(interval: float) -> float:
    """Fraction of all CPUs busy over ``interval`` (from /proc/stat)."""
    t0, i0, _ = machine_cpu()
    time.sleep(interval)
    t1, i1, _ = machine_cpu()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def settle(max_s: float = 60, busy: float = 0.15) -> float:
    """Wait until the machine is quiet; returns the seconds waited.

    Deleting thousands of veths goes on in the kernel after the commands
    return: a benchmark started straight after the wiring one measured
    18% fewer frames delivered than the same one alone.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_s and _cpu_busy(1.0) > busy:
        pass
    return time.monotonic() - t0


def median_of(runs: list[dict]) -> dict:
    """One result from repeats: numeric fields' medians, the runs kept."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
            out[key] = median(values)
    out["runs"] = runs
    return out


@contextlib.contextmanager
def profiled(pid: int, what: str):
    """py-spy samples ``pid`` for the block when ``OVSBR_BENCH_PROFILE`` names
    a directory: collapsed stacks in DIR/<what>.txt, the profile a miss gets.
    py-spy is not a dependency: it is looked up on PATH only when asked."""
    where = os.environ.get("OVSBR_BENCH_PROFILE")
    if not where:
        yield
        return
    os.makedirs(where, exist_ok=True)
    out = os.path.join(where, f"{what}.txt")
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--format", "raw",
                            "--rate", "250", "--nonblocking", "--output", out],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the block starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        print(f"  profile: {out}", flush=True)
