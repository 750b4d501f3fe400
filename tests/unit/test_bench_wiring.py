"""bench/wiring.py's reader of the kernel's neighbour table counts, on real output."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from bench import wiring  # noqa: E402

# /proc/net/stat/arp_cache of this 2-core machine (one row per CPU, hex).
ARP_CACHE = """\
entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast \
rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls
00000402 000009c5 00000a3d 00000001   00003749 00000898 00000052   00000000         \
00000000         0000061f         00000000       00000000            00000003
00000402 00000a4c 000009d2 00000002   0000336f 0000099e 00000055   00000000         \
00000000         00000000         00000000       00000000            0000000a
"""


def test_neigh_table_reads_entries_once_and_sums_the_per_cpu_counts():
    assert wiring.neigh_table(ARP_CACHE) == (0x402, 0x52 + 0x55, 0x3 + 0xa)


def test_neigh_stats_reads_both_tables_of_this_kernel():
    stats = wiring.neigh_stats()
    assert set(stats) == {"arp_cache", "ndisc_cache"}
    assert all(len(v) == 3 and min(v) >= 0 for v in stats.values())
