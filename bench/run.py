"""Run ovsbr's benchmarks (tox -e bench): each prints a table and writes JSON.

    python bench/run.py                      # everything, N = 100, 500, 1000
    python bench/run.py wiring --sizes 100   # one benchmark, smaller
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import dataplane, learning, wiring  # noqa: E402

BENCHMARKS = ("wiring", "learning", "dataplane")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", choices=BENCHMARKS + ((),), default=[])
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--drivers", default="linuxbridge,openvswitch")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks need root (namespaces, bridges, a private OVS)")
        return 2
    which = args.which or list(BENCHMARKS)
    sizes = [int(x) for x in args.sizes.split(",")]
    drivers = args.drivers.split(",")
    if "wiring" in which:
        wiring.main(sizes, drivers)
    if "learning" in which:
        learning.main()
    if "dataplane" in which:
        dataplane.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
