"""Run ovsbr's benchmarks (tox -e bench): each prints a table and writes JSON.

    python bench/run.py                      # everything, N = 100, 500, 1000
    python bench/run.py wiring --sizes 100   # one benchmark, smaller
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, dataplane, learning, wiring  # noqa: E402

BENCHMARKS = ("wiring", "learning", "dataplane")
DRIVERS = ("linuxbridge", "openvswitch")


def parse(argv: list[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """(benchmarks, sizes, drivers) from the command line; exits 2 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # No choices= on a nargs="*" positional: argparse checks the empty
    # default against them and refused a plain `bench/run.py`.
    parser.add_argument("which", nargs="*", metavar="{" + ",".join(BENCHMARKS) + "}")
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--drivers", default="linuxbridge,openvswitch")
    args = parser.parse_args(argv)
    unknown = [w for w in args.which if w not in BENCHMARKS]
    if unknown:
        parser.error(f"benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
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
    return args.which or list(BENCHMARKS), sizes, drivers


def main() -> int:
    which, sizes, drivers = parse()
    if os.geteuid() != 0:
        print("benchmarks need root (namespaces, bridges, a private OVS)")
        return 2
    for name in which:
        waited = common.settle()
        if waited > 1.5:
            print(f"  (waited {waited:.0f} s for the machine to go quiet)", flush=True)
        if name == "wiring":
            wiring.main(sizes, drivers)
        elif name == "learning":
            learning.main()
        else:
            dataplane.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
