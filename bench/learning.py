"""L2 learning: how fast new source MACs are learned, and that no frame waits.

A sender VM emits K broadcast frames, each from a new source MAC, through a
raw socket; a receiver VM counts what arrives. Three controllers of the same
netdev bridge, same traffic:

ovsbr       ovsbr's pipeline and os-ken app: learned = source flows in ETH_SRC
NORMAL      OVS's own learning, no controller: learned = ``fdb/stats-show``
testctl     Open vSwitch's C learning controller ``ovs-testcontroller``; it
            floods unknown destinations by packet-out, so delivery waits on it

Reported: MACs learned per second (time until all K are in the table),
frames delivered out of K (the median and the worst of the repeats), and
first-ping latency (first RTT minus steady), and where frames were lost:
packet-ins ovs-vswitchd dropped, upcalls lost, frames dropped at its
packet sockets (:func:`socket_drops`); and in the JSON, who had the CPU
from the first frame until all were learned: ovs-vswitchd's and the
agent's CPU seconds, the machine's busy and steal fractions, and which
of ovs-vswitchd's coverage counters moved in the run, by how much
(:func:`coverage`). With ``--against REF`` the ovsbr case runs for this
tree and REF in turn within each repeat.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time

from bench import common
from ovsbr.openflow import pipeline as pl
from ovsbr.testing import ovs_sandbox
from ovsbr.testing.agent import Agent
from ovsbr.testing.netns import NetEnv, run, wait_for  # noqa: F401

K = 5000
OFFERED_PPS = int(os.environ.get("OVSBR_BENCH_PPS", "10000"))  # new MACs/s offered
REPEATS = int(os.environ.get("OVSBR_BENCH_REPEATS", "5"))  # the issue: median and worst of 5
ETHERTYPE = 0x88B5  # IEEE local experimental: no host stack reacts to it

SENDER = """
import socket, struct, sys, time
k, ethertype, pps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
frames = [b"\\xff" * 6 + bytes([0x52, 0x54, 0x02, i >> 16 & 255, i >> 8 & 255, i & 255])
          + struct.pack("!H", ethertype) + b"\\0" * 46 for i in range(k)]
t0 = time.perf_counter()
for i, f in enumerate(frames):
    s.send(f)
    if i % 50 == 49:  # paced: a real burst of new VMs, not a flood the NIC drops
        ahead = t0 + (i + 1) / pps - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
print(time.perf_counter() - t0)
"""

RECEIVER = """
import socket, sys, time, select
ethertype = int(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
s.bind(("eth0", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
print("ready", flush=True)
n, last = 0, None
while True:
    r, _, _ = select.select([s], [], [], 3.0)
    if not r:
        break
    s.recv(2048)
    n += 1
    last = time.time()
print(n, last)
"""


def count_learned(kind: str, ovs, bridge: str) -> int:
    if kind == "ovsbr":
        out = ovs.ofctl("dump-aggregate", bridge, f"table={pl.ETH_SRC}").stdout
        return max(0, int(re.search(r"flow_count=(\d+)", out).group(1)) - 1)
    if kind == "normal":
        out = ovs.appctl("fdb/stats-show", bridge).stdout
        return int(re.search(r"Current/maximum MAC entries in the table: (\d+)", out).group(1))
    return -1  # ovs-testcontroller keeps its table to itself


def settle(count, target: int, t0: float, quiet: float = 3.0) -> tuple[int, float]:
    """Poll ``count`` until it reaches ``target`` or stops growing for ``quiet`` s.

    Returns (last count, seconds from t0 to the last growth).
    """
    last, last_t = count(), time.perf_counter()
    while last < target and time.perf_counter() - last_t < quiet:
        time.sleep(0.02)
        now = count()
        if now != last:
            last, last_t = now, time.perf_counter()
    return last, last_t - t0


def first_ping(vm1, vm2) -> float:
    """First RTT (cold: unknown MACs) minus the steady RTT, in ms."""
    for vm in (vm1, vm2):
        vm.exec(["ip", "neigh", "flush", "all"], check=False)
    first = vm1.exec(["ping", "-n", "-c", "1", "-W", "2", vm2.ip], check=False).stdout
    steady = vm1.exec(["ping", "-n", "-q", "-c", "10", "-i", "0.02", vm2.ip]).stdout
    rtt1 = float(re.search(r"time=([\d.]+)", first).group(1)) if "time=" in first else -1
    avg = float(steady.strip().splitlines()[-1].split("=")[1].split("/")[1])
    return rtt1 - avg


def drops(ovs) -> tuple[int, int]:
    """Where ovs-vswitchd lost frames so far: messages dropped because a
    controller's send queue was full (coverage counter ``rconn_overflow``),
    and upcalls the datapath lost (``lost`` of ``dpctl/show``)."""
    out = ovs.appctl("coverage/read-counter", "rconn_overflow", check=False).stdout
    lost = re.findall(r"lost:(\d+)", ovs.appctl("dpctl/show", check=False).stdout)
    return int(out.strip() or 0), sum(int(n) for n in lost)


def coverage(ovs) -> dict[str, int]:
    """ovs-vswitchd's coverage counters' totals (``coverage/show``): what its
    threads did, event by event (upcalls, flow puts, revalidations, ...).
    Totals move when each thread folds its own counts in, about once a
    second, so a delta needs a quiet second or two after the work."""
    out = ovs.appctl("coverage/show", check=False).stdout
    return coverage_totals(out)


def coverage_totals(out: str) -> dict[str, int]:
    """The ``total:`` of each counter in ``coverage/show`` output."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+.*total:\s*(\d+)\s*$", out, re.M)}


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters that moved, and by how much."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items())
            if v != before.get(k, 0)}


def socket_drops(devices: list[str]) -> int:
    """Frames the kernel dropped at ovs-vswitchd's packet sockets on these
    devices (``ss``'s skmem ``d``): on the netdev datapath a port is read
    through an AF_PACKET socket, whose buffer (net.core.rmem_default, ~270
    such frames) overflows when ovs-vswitchd's main thread does not read it
    in time. The kernel datapath has no such socket."""
    out = subprocess.run(["ss", "-0", "-m", "-n", "-p"], capture_output=True, text=True,
                         check=False).stdout
    return ss_drops(out, devices)


def ss_drops(out: str, devices: list[str], process: str = "ovs-vswitchd") -> int:
    """The ``d`` of every ``process`` packet socket bound to ``devices`` in
    ``ss -0 -m -n -p`` output (columns: netid, queues, ``*:DEV``, peer, users,
    skmem)."""
    wanted = {f"*:{d}" for d in devices}
    total = 0
    for line in out.splitlines():
        if f'"{process}"' in line and wanted.intersection(line.split()):
            m = re.search(r"skmem:\(.*\bd(\d+)\)", line)
            total += int(m.group(1)) if m else 0
    return total


def run_case(kind: str, ovs, tmp: str, extra: dict | None = None,
             source: str | None = None, label: str | None = None) -> dict:
    """One run; ``extra``: more config sections for ovsbr's agent, ``source``:
    the checkout it runs from (None: this one), reported as ``label``."""
    bridge = f"bl{kind[:4]}"
    result: dict = {"controller": label or kind, "k": K}
    with NetEnv("bl") as env:
        vm1, vm2 = env.vm("a", 1, offload_off=True), env.vm("b", 2, offload_off=True)
        agent = proc = None
        try:
            if kind == "ovsbr":
                agent = Agent(os.path.join(tmp, f"agent-{time.monotonic_ns()}"), {
                    "DEFAULT": {"driver": "openvswitch"},
                    "ovs": {"ovsdb_connection": ovs.connection, "integration_bridge": bridge,
                            "datapath_type": "netdev", "of_listen_port": 16635},
                    "openflow": {"max_macs_per_port": K * 2, "packet_in_rate": 50000},
                    **(extra or {})}, source=source)
                agent.cli("network", "create", "n1", "--type", "local")
                for p, vm in (("p1", vm1), ("p2", vm2)):
                    agent.cli("port", "create", p, "--network", "n1", "--device", vm.tap)
                agent.start()
                agent.wait_ports(["p1", "p2"])
            else:
                ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge,
                          "datapath_type=netdev", "other_config:mac-table-size=100000")
                for vm in (vm1, vm2):
                    ovs.vsctl("add-port", bridge, vm.tap)
                    run(["ip", "link", "set", vm.tap, "up"])
                if kind == "testctl":
                    proc = subprocess.Popen(["ovs-testcontroller", "ptcp:16636:127.0.0.1"],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env=ovs._env())
                    ovs.vsctl("set-fail-mode", bridge, "secure")
                    ovs.vsctl("set-controller", bridge, "tcp:127.0.0.1:16636")
                    wait_for(lambda: re.search(r"is_connected\s*:\s*true", ovs.vsctl(
                        "list", "Controller").stdout), 10, what="testcontroller connected")
            assert vm1.can_ping(vm2.ip), f"{kind}: VMs do not talk"
            result["first_packet_extra_ms"] = first_ping(vm1, vm2)
            before = count_learned(kind, ovs, bridge)
            dropped = drops(ovs)
            dropped_rx = socket_drops([vm1.tap, vm2.tap])
            counted = coverage(ovs)
            receiver = vm2.popen([shutil.which("python3") or "python3", "-c", RECEIVER,
                                  str(ETHERTYPE)], stdout=subprocess.PIPE, text=True)
            receiver.stdout.readline()
            # OVSBR_BENCH_PROFILE: the agent's stacks over the window, one file a run.
            name = (label or kind).replace(" ", "-").replace("(", "").replace(")", "")
            spy = contextlib.nullcontext() if agent is None else \
                common.profiled(agent.proc.pid, f"learning-{name}-{time.strftime('%H%M%S')}")
            with spy:
                pids = {"vswitchd": ovs.pid("ovs-vswitchd"),
                        "agent": agent.proc.pid if agent is not None else None}
                cpu0 = {k: common.cpu_s(p) for k, p in pids.items() if p is not None}
                machine0 = common.machine_cpu()
                t0 = time.perf_counter()
                send_s = float(vm1.exec(["python3", "-c", SENDER, str(K), str(ETHERTYPE),
                                         str(OFFERED_PPS)]).stdout)
                learned_s = learned = None
                if kind != "testctl":
                    learned, learned_s = settle(lambda: count_learned(kind, ovs, bridge) - before,
                                                K, t0)
                    result["learned"] = learned
                # Who had the CPU from the first frame until all were learned
                # (or the count stopped): ovsbr's rate swings 4,100-7,800 MACs/s
                # between runs of one tree while NORMAL's stays within 10%.
                for k, p in pids.items():
                    if p is not None:
                        result[f"{k}_cpu_s"] = round(common.cpu_s(p) - cpu0[k], 3)
                machine1 = common.machine_cpu()
                total, idle, steal = (b - a for a, b in zip(machine0, machine1, strict=True))
                result.update(machine_busy=round(1 - idle / max(1, total), 3),
                              machine_steal=round(steal / max(1, total), 3),
                              window_s=round(time.perf_counter() - t0, 3))
            out = receiver.communicate(timeout=120)[0].split()
            delivered, last = int(out[0]), float(out[1]) if out[1] != "None" else None
            result.update(send_s=send_s, offered_pps=K / send_s, delivered=delivered)
            if learned_s:
                result.update(learn_s=learned_s, macs_per_s=learned / learned_s)
            if last is not None:
                result["delivery_s"] = last - (time.time() - (time.perf_counter() - t0))
            # Counted switch-wide: one bridge runs at a time.
            after = drops(ovs)
            result["upcalls_lost"] = after[1] - dropped[1]
            result["socket_drops"] = socket_drops([vm1.tap, vm2.tap]) - dropped_rx
            if kind != "normal":  # packet-ins, its queue to the controller full
                result["packet_ins_dropped"] = after[0] - dropped[0]
            if agent is not None:
                time.sleep(2.5)
                table = agent.cli_json("mac-table").get("testhost", {}).get(bridge, {})
                result["packet_ins"] = table.get("counters", {}).get("packet_ins")
            # After the settle's quiet spell (and ovsbr's 2.5 s): every
            # thread has folded its counts in. JSON only, not the table.
            result["vswitchd_coverage"] = grown(counted, coverage(ovs))
        finally:
            if agent is not None:
                agent.stop()
            if proc is not None:
                proc.kill()
                proc.wait()
            ovs.vsctl("--if-exists", "del-br", bridge, check=False)
    return result


def main(codes: list[tuple[str, str | None]] | None = None) -> dict:
    """``codes``: (label, checkout) of each ovsbr version; with more than one,
    each repeat runs every version in turn (order alternating), so they
    share the machine's state of the moment."""
    reason = ovs_sandbox.available()
    if reason:
        print(f"learning benchmark skipped: {reason}")
        return {}
    codes = codes or [("this tree", None)]
    results = []
    with tempfile.TemporaryDirectory(prefix="ovsbr-bench-l2-") as tmp:
        ovs = ovs_sandbox.OvsSandbox(os.path.join(tmp, "ovs")).start()
        try:
            cases = [("ovsbr", label if len(codes) > 1 else None, src)
                     for label, src in codes] + [("normal", None, None)]
            if shutil.which("ovs-testcontroller"):
                cases.append(("testctl", None, None))
            runs: dict[int, list[dict]] = {i: [] for i in range(len(cases))}
            for repeat in range(REPEATS):
                order = list(enumerate(cases))
                for i, (kind, label, src) in (order if repeat % 2 == 0 else order[::-1]):
                    name = label and f"ovsbr ({label})" or kind
                    try:
                        runs[i].append(run_case(kind, ovs, tmp, source=src, label=name))
                    except (TimeoutError, AssertionError, OSError) as e:
                        runs[i].append({"controller": name, "k": K, "delivered": 0,
                                        "error": str(e)})
                    shown = {k: v for k, v in runs[i][-1].items() if k != "vswitchd_coverage"}
                    print(f"  {name}: {shown}", flush=True)
            for i in runs:
                median = common.median_of(runs[i])
                median["worst_delivered"] = min(r.get("delivered", 0) for r in runs[i])
                for key, most in (("packet_ins_dropped", "most_dropped"),
                                  ("upcalls_lost", "most_lost"),
                                  ("socket_drops", "most_socket_drops")):
                    if any(key in r for r in runs[i]):
                        median[most] = max(r.get(key, 0) for r in runs[i])
                results.append(median)
        finally:
            ovs.stop()
    rows = [[r["controller"], r["k"], r.get("offered_pps", 0), r.get("learned", "-"),
             r.get("macs_per_s", "-"),
             f"{r['delivered']}/{r['k']}", f"{r['worst_delivered']}/{r['k']}",
             r.get("first_packet_extra_ms", "-"),
             r.get("packet_ins", "-"), r.get("most_dropped", "-"),
             r.get("most_lost", "-"), r.get("most_socket_drops", "-")] for r in results]
    print(common.table(f"L2 learning: {K} new source MACs, broadcast frames, median of "
                       f"{REPEATS} (target >= 5000 MACs/s; delivered = offered)",
                       ["controller", "K", "offered pps", "learned", "MACs learned/s",
                        f"delivered (median of {REPEATS})", "delivered (worst)",
                        "first-packet extra ms", "packet-ins",
                        "packet-ins dropped by OVS (worst)",
                        "upcalls lost (worst)", "socket drops (worst)"], rows))
    print("JSON:", common.write("learning", {"benchmark": "learning", "results": results}))
    return {"results": results}
