"""Run ovsbr's benchmarks (tox -e bench): each prints a table and writes JSON.

    python bench/run.py                      # everything, N = 100, 500, 1000
    python bench/run.py wiring --sizes 100   # one benchmark, smaller
    python bench/run.py wiring --against main  # this tree and main, side by side
    python bench/run.py metrics --sizes 100,1000  # [metrics] off vs on (named only)
    python bench/run.py secgroups --sizes 1000 --drivers openvswitch  # groups off vs on
    python bench/run.py scale --sizes 10000,100000 --against main  # 1000 hosts on etcd
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import (  # noqa: E402
    common,
    core,
    dataplane,
    learning,
    metrics_cost,
    scale,
    secgroups,
    wiring,
)

BENCHMARKS = ("wiring", "learning", "dataplane", "core")
ON_REQUEST = ("metrics", "secgroups", "scale")  # comparisons that run only when named
DRIVERS = ("linuxbridge", "openvswitch")


def parse(argv: list[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """(benchmarks, sizes, drivers) from the command line; exits 2 on bad input."""
    which, sizes, drivers, _ = parse_all(argv)
    return which, sizes, drivers


def parse_all(argv: list[str] | None = None) -> tuple[list[str], list[int], list[str],
                                                      str | None]:
    """:func:`parse` plus ``--against REF`` (a git revision, or None)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # No choices= on a nargs="*" positional: argparse checks the empty
    # default against them and refused a plain `bench/run.py`.
    parser.add_argument("which", nargs="*", metavar="{" + ",".join(BENCHMARKS) + "}")
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--drivers", default="linuxbridge,openvswitch")
    parser.add_argument("--against", metavar="REF",
                        help="also run the wiring, core, learning, secgroups and scale "
                             "benchmarks' "
                             "ovsbr from git revision REF, alternating with this tree, "
                             "in the same run")
    args = parser.parse_args(argv)
    unknown = [w for w in args.which if w not in BENCHMARKS + ON_REQUEST]
    if unknown:
        parser.error(f"benchmark {unknown[0]!r}: choose from "
                     f"{', '.join(BENCHMARKS + ON_REQUEST)}")
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
        if any(n < 2 for n in sizes):
            raise ValueError
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: comma-separated port counts, each >= 2")
    drivers = args.drivers.split(",")
    bad = [d for d in drivers if d not in DRIVERS]
    if bad:
        parser.error(f"--drivers {bad[0]!r}: choose from {', '.join(DRIVERS)}")
    if args.against is not None:
        top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ok = subprocess.run(["git", "-C", top, "rev-parse", "--verify", "--quiet",
                             f"{args.against}^{{commit}}"], capture_output=True)
        if ok.returncode != 0:
            parser.error(f"--against {args.against!r}: not a git revision of this checkout")
    return args.which or list(BENCHMARKS), sizes, drivers, args.against


def checkout(ref: str, into: str) -> str:
    """A detached worktree of ``ref``: the baseline's agent runs from it."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(into, "ref")
    subprocess.run(["git", "-C", top, "worktree", "add", "--detach", "--quiet", path, ref],
                   check=True)
    return path


def main() -> int:
    which, sizes, drivers, against = parse_all()
    if os.geteuid() != 0:
        print("benchmarks need root (namespaces, bridges, a private OVS)")
        return 2
    with tempfile.TemporaryDirectory(prefix="ovsbr-ref-") as tmp:
        codes = [("this tree", None)]
        if against is not None:
            codes.append((against, checkout(against, tmp)))
        try:
            for name in which:
                waited = common.settle()
                if waited > 1.5:
                    print(f"  (waited {waited:.0f} s for the machine to go quiet)", flush=True)
                if name == "wiring":
                    wiring.main(sizes, drivers, codes)
                elif name == "core":
                    core.main(sizes, codes)
                elif name == "metrics":
                    metrics_cost.main(sizes, drivers)
                elif name == "scale":  # --sizes: ports over 1000 simulated hosts
                    scale.side_by_side(sizes, codes)
                elif name == "secgroups":
                    secgroups.main(sizes, drivers, codes)
                elif name == "learning":
                    learning.main(codes)
                else:
                    dataplane.main()
        finally:
            if against is not None:
                top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                subprocess.run(["git", "-C", top, "worktree", "remove", "--force",
                                codes[1][1]], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
