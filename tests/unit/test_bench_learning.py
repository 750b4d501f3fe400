"""bench/learning.py's readers of ovs-vswitchd's own counts, on real output."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from bench import learning  # noqa: E402

# ovs-appctl coverage/show of a netdev sandbox (OVS 3.1), cut short.
COVERAGE = """\
Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash=9d6f6662:
bridge_reconfigure         0.0/sec     4.567/sec        0.0761/sec   total: 275
ofproto_recv_openflow      0.0/sec    83.300/sec        1.3883/sec   total: 4998
rev_flow_table             0.0/sec     0.250/sec        0.0042/sec   total: 15
netlink_recv_jumbo         0.0/sec 11666.233/sec      194.4372/sec   total: 699974
102 events never hit
"""


def test_coverage_totals_read_every_counter():
    assert learning.coverage_totals(COVERAGE) == {
        "bridge_reconfigure": 275, "ofproto_recv_openflow": 4998, "rev_flow_table": 15,
        "netlink_recv_jumbo": 699974}


def test_grown_names_what_moved_and_new_counters():
    before = {"rev_flow_table": 15, "bridge_reconfigure": 275}
    after = {"rev_flow_table": 25, "bridge_reconfigure": 275, "upcall_ukey_replace": 3}
    assert learning.grown(before, after) == {"rev_flow_table": 10, "upcall_ukey_replace": 3}


def test_socket_drops_count_only_the_devices_asked_for():
    # ss -0 -m -n -p, as it prints ovs-vswitchd's packet sockets.
    out = (
        'p_raw 0 0   [0]:*   *  users:(("ovs-vswitchd",pid=9,fd=1054)) '
        'skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d5)\n'
        'p_raw 0 0   *:blaT1   *  users:(("ovs-vswitchd",pid=9,fd=41)) '
        'skmem:(r0,rb212992,t0,tb212992,f0,w0,o176,bl0,d366)\n'
        'p_raw 0 0   *:blbT2   *  users:(("ovs-vswitchd",pid=9,fd=42)) '
        'skmem:(r0,rb212992,t0,tb212992,f0,w0,o176,bl0,d7)\n'
        'p_raw 0 0   *:blaT1   *  users:(("tcpdump",pid=10,fd=3)) '
        'skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d1000)\n')
    assert learning.ss_drops(out, ["blaT1"]) == 366
    assert learning.ss_drops(out, ["blaT1", "blbT2"]) == 373
