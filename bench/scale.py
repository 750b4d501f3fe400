"""Many hosts on one etcd, simulated: write and watch latency, flood lists.

    python bench/scale.py --hosts 1000 --ports 10000 --networks 200
    python bench/run.py scale --sizes 10000,100000 --against REF  # side by side

``OVSBR_CODE=DIR`` measures the ovsbr of another tree (bench/run.py sets it
for ``--against``); the measuring code is this file either way.

One local etcd (the sandbox). Simulated hosts register under leases kept
alive at TTL/3, as agents do; ports are spread over networks and hosts
at random. Measured:

* registration and bulk-write latency (raw etcd transactions);
* one port write through EtcdStore.update, the CLI's path, at the full
  port count: from a fresh store each time, as each ``ovsbr`` command
  starts (cli_update), and from one long-lived store, as Neutron's
  server writes (store_update);
* watch fan-out: after one port write, the delay until each of the W
  watcher streams (one per simulated host) has the event;
* port statuses: Neutron's worker learning of one change among every
  port's, by reading the status folder whole and by following it;
* CPU per port write (over the write phase, lease renewals included):
  etcd's, and the simulated hosts' process's;
* per-agent update latency: from the start of a port write until
  EtcdStore.watch yields the new topology in a real agent's code path
  (agent_update, so it includes the write itself), and until that agent
  has its host's share and overlay flood lists from it (agent_view);
* flood lists: remote hosts per (host, overlay network) and tunnels per
  host, from the same overlays() the agents run.

Each simulated host watches what an agent of this tree watches (``--watch
host``, the default where the tree keeps port copies): its host's copy
folder and the copy folders of the networks its ports are on, as watches
multiplexed on one stream per host (the agent's fixed folders, networks,
groups and hosts, see no port write and are left out); or the whole
topology (``--watch all``, and any tree from before the copies). The
measured agent runs the real EtcdStore.watch in the same mode. Caveat: the
gateway may drop create requests after the first once it has answered
(the agent uses one watch a stream for that reason); a simulated host
missing a watch shows as fewer ``watchers_reached``, and a write whose
wanting streams never all hear it waits out 30 s, so a run with missing
watches is visibly slow, which the 2026-12-03 runs were not.

``--watchers W`` opens W watch streams instead of one per host: etcd's
fan-out of each write to every stream (over its gRPC gateway, as etcd3gw
and so every agent reads it) is what the write and update latencies grow
with on one machine, and W = 1 shows them without it (side_by_side adds
that row for this tree). ``--watch-elsewhere`` keeps the W streams but
points each at a folder of its own that no port write touches, as a watch
narrowed to one host's share would be: what a write costs when etcd holds
W streams of which none wants it (the real agent's stream still does).
"""

from __future__ import annotations

import argparse
import base64
import inspect
import itertools
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

# etcd3gw imports futurist, which imports eventlet and its deprecation
# notice: ovsbr's commands hide it (cmd.common.quiet_eventlet), so here too.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

if os.environ.get("OVSBR_CODE"):
    sys.path.insert(0, os.environ["OVSBR_CODE"])

from ovsbr.agent import overlay as overlay_mod  # noqa: E402
from ovsbr.agent.overlay import overlays  # noqa: E402
from ovsbr.model import port_from_dict  # noqa: E402
from ovsbr.testing.etcd_sandbox import EtcdSandbox  # noqa: E402

PREFIX = "/bench"
KEEPALIVE_THREADS = 8


def step(what: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {what}", flush=True)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def make_store(endpoint: str, watch: str | None = None):
    from oslo_config import cfg

    from ovsbr.conf import opts
    from ovsbr.store.etcd import EtcdStore
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf([], default_config_files=[])
    conf.set_override("endpoints", [endpoint], group="etcd")
    conf.set_override("prefix", PREFIX, group="etcd")
    if watch is not None and "watch" in conf.etcd:
        conf.set_override("watch", watch, group="etcd")
    return EtcdStore(conf)


class Watcher(threading.Thread):
    """One raw watch stream, as each agent holds: records when events arrive."""

    def __init__(self, url: str, start_rev: int, keys: list[str]):
        super().__init__(daemon=True)
        self.url, self.start_rev, self.keys = url, start_rev, keys
        self.seen: dict[str, float] = {}  # port (the key's last part) -> first heard
        self.ready = threading.Event()
        self.resp = None

    def run(self):
        body = "\n".join(json.dumps({"create_request": {
            "key": b64(key), "range_end": b64(key[:-1] + "0"),
            "start_revision": str(self.start_rev)}}) for key in self.keys)
        self.resp = requests.post(self.url + "/v3/watch", data=body, stream=True, timeout=None)
        self.ready.set()
        try:
            for line in self.resp.iter_lines():
                now = time.perf_counter()
                for ev in json.loads(line).get("result", {}).get("events", []):
                    key = base64.b64decode(ev["kv"]["key"]).decode()
                    self.seen.setdefault(key.rsplit("/", 1)[-1], now)
        except Exception:  # noqa: S110 - closed at the end of the run
            pass


def other_hosts(url: str, conn) -> None:
    """The simulated hosts' side, in its own process so that their 1,000
    watch threads and lease renewals do not share the measuring process's
    GIL (they did, and inflated every latency measured beside them):
    renews the leases it is sent, opens the watches, and answers each key
    with the times (perf_counter, one clock for all processes on Linux)
    at which every watch saw it."""
    leases = conn.recv()
    stop = threading.Event()

    def keepalive(mine: list) -> None:
        # Each lease renewed every TTL/3 (10 s / 3), spread evenly, by one of
        # several threads as hosts renew in parallel. A cycle over the leases
        # (slices that stopped at the end and started again at chunk
        # multiples skipped the first leases for rounds: they expired at
        # 100,000 ports, where renewals are slower).
        chunk = max(1, len(mine) // 33)
        turn = itertools.cycle(mine)
        ka = requests.Session()
        while not stop.wait(0.1):
            for lease in itertools.islice(turn, chunk):
                try:
                    ka.post(url + "/v3/lease/keepalive", json={"ID": lease}, timeout=10)
                except requests.RequestException:
                    if stop.is_set():
                        return  # etcd stopped: the run is over
    for j in range(KEEPALIVE_THREADS):
        if leases[j::KEEPALIVE_THREADS]:
            threading.Thread(target=keepalive, args=(leases[j::KEEPALIVE_THREADS],),
                             daemon=True).start()
    rev, folders = conn.recv()  # each stream's folders
    watchers = [Watcher(url, rev, keys) for keys in folders]
    for w in watchers:
        w.start()
    for w in watchers:
        w.ready.wait(30)
    conn.send("ready")
    while (item := conn.recv()) is not None:
        name, where = item  # the port written, and the folders it is written in
        wanting = [w for w in watchers if any(k.startswith(f) for k in where for f in w.keys)]
        deadline = time.monotonic() + (30 if wanting else 0)
        while time.monotonic() < deadline and sum(name in w.seen for w in wanting) < len(
                wanting):
            time.sleep(0.01)
        conn.send([w.seen[name] for w in watchers if name in w.seen])
    stop.set()


def status_reading(session, url: str, ports: list[dict], store) -> dict:
    """What Neutron's worker pays each ``status_interval`` to learn of one
    port status change among every port's: reading the status folder whole
    (what it did) against following it (``follow_status``, where the tree
    has it: one watch, then only what moved)."""
    docs = {f"{PREFIX}/status/{p['host']}/ports/{p['name']}": {"status": "bound"}
            for p in ports}
    items = sorted(docs.items())
    for i in range(0, len(items), 100):
        r = session.post(url + "/v3/kv/txn", json={"success": [{"request_put": {
            "key": b64(k), "value": b64(json.dumps(v))}} for k, v in items[i:i + 100]]},
            timeout=30)
        r.raise_for_status()
    out: dict = {}
    reads = []
    for _ in range(5):
        t0 = time.perf_counter()
        got = store.read_status()
        reads.append(time.perf_counter() - t0)
    out["status_read_whole_ms_p50"] = common.median(reads) * 1000
    out["status_read_ports"] = sum(len(d.get("ports", {})) for d in got.values())
    if not hasattr(store, "follow_status"):
        return out
    follower = store.follow_status()
    t0 = time.perf_counter()
    follower.poll()
    out["status_follow_first_ms"] = (time.perf_counter() - t0) * 1000
    polls, delays = [], []
    for i, (key, _) in enumerate(items[:20]):
        t0 = time.perf_counter()
        session.post(url + "/v3/kv/put", json={"key": b64(key), "value": b64(json.dumps(
            {"status": "waiting", "n": i}))}, timeout=30).raise_for_status()
        while True:  # poll as the worker does, faster: until the change comes
            p0 = time.perf_counter()
            _, events = follower.poll()
            if events:
                polls.append(time.perf_counter() - p0)
                delays.append(time.perf_counter() - t0)
                break
            time.sleep(0.001)
    follower.close()
    out["status_follow_poll_ms_p50"] = common.median(polls) * 1000
    out["status_follow_delay_ms_p50"] = common.median(delays) * 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--watchers", type=int, default=None,
                        help="watch streams to open (default: one per host)")
    parser.add_argument("--watch-elsewhere", action="store_true",
                        help="point the streams where no write goes (see the notes)")
    parser.add_argument("--watch", choices=["host", "all"], default=None,
                        help="what hosts watch (default: host where the tree keeps copies)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    rng = random.Random(7)
    etcd = EtcdSandbox().start()
    session = requests.Session()
    url = etcd.url
    watchers = args.hosts if args.watchers is None else max(1, min(args.watchers, args.hosts))
    try:
        from ovsbr.store import copies as copies_mod
    except ImportError:  # a tree from before the copies
        copies_mod = None
    mode = args.watch or ("host" if copies_mod else "all")
    if mode == "host" and copies_mod is None:
        parser.error("--watch host: this tree keeps no port copies")
    result: dict = {"hosts": args.hosts, "ports": args.ports, "networks": args.networks,
                    "watchers": watchers, "watch_elsewhere": args.watch_elsewhere,
                    "watch": mode}
    # Forked before this process has any thread.
    conn, child_conn = multiprocessing.get_context("fork").Pipe()
    others = multiprocessing.get_context("fork").Process(
        target=other_hosts, args=(url, child_conn), daemon=True)
    others.start()
    try:
        def txn(body):
            t0 = time.perf_counter()
            r = session.post(url + "/v3/kv/txn", json=body, timeout=30)
            r.raise_for_status()
            return time.perf_counter() - t0, r.json()

        step(f"registering {args.hosts} hosts")
        # Hosts under leases.
        leases, reg = [], []
        for h in range(args.hosts):
            lease = session.post(url + "/v3/lease/grant", json={"TTL": 10}).json()["ID"]
            ip = f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}"
            info = json.dumps({"local_ip": ip, "driver": "linuxbridge"})
            dt, _ = txn({"success": [{"request_put": {
                "key": b64(f"{PREFIX}/hosts/hv{h}"), "value": b64(info), "lease": lease}}]})
            leases.append(lease)
            reg.append(dt)
        result["register_ms_p50"] = common.median(reg) * 1000
        result["register_ms_p99"] = common.percentile(reg, 99) * 1000

        conn.send(leases)
        result["keepalives_per_s"] = args.hosts / (10 / 3)

        step(f"writing {args.networks} networks and {args.ports} ports")
        # Networks and ports, 100 keys per transaction.
        nets = [{"name": f"net{i}", "type": "vxlan", "segmentation_id": 1000 + i}
                for i in range(args.networks)]
        ports = [{"name": f"port{i}", "network": rng.choice(nets)["name"],
                  "device": f"tap{i}", "host": f"hv{rng.randrange(args.hosts)}",
                  "mac": f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
                         f"{i >> 8 & 255:02x}:{i & 255:02x}"} for i in range(args.ports)]
        ops = [(f"{PREFIX}/topology/networks/{n['name']}", n) for n in nets]
        ops += [(f"{PREFIX}/topology/ports/{p['name']}", p) for p in ports]
        bulk = []
        t_all = time.perf_counter()
        for i in range(0, len(ops), 100):
            dt, _ = txn({"success": [{"request_put": {"key": b64(k), "value": b64(json.dumps(v))}}
                                     for k, v in ops[i:i + 100]]})
            bulk.append(dt)
        txn({"success": [{"request_put": {"key": b64(f"{PREFIX}/topology/revision"),
                                          "value": b64("1")}}]})
        result["bulk_txn100_ms_p50"] = common.median(bulk) * 1000
        result["bulk_all_s"] = time.perf_counter() - t_all

        store = make_store(etcd.endpoint)
        t0 = time.perf_counter()
        topo = store.load()
        result["load_all_s"] = time.perf_counter() - t0

        server_store = make_store(etcd.endpoint)
        server_store.load()  # a server has read the state before its first write
        # The ports above were written raw, as by hand: the first write
        # through the store (re)builds what it keeps beside them (claim keys
        # and copies), before any watch opens.
        step("first write through the store")
        t0 = time.perf_counter()
        server_store.update(lambda t: t.ports.__setitem__("warmup", port_from_dict(
            {"name": "warmup", "network": "net0", "device": "warmup", "host": "hv0"})))
        result["first_store_write_s"] = time.perf_counter() - t0

        step(f"opening {watchers} watch streams")
        # Watch fan-out: one stream per simulated host (or --watchers).
        nets_of: dict[str, set[str]] = {}
        for p in ports:
            nets_of.setdefault(p["host"], set()).add(p["network"])
        folders = []
        for i in range(watchers):
            if args.watch_elsewhere:
                folders.append([f"{PREFIX}/elsewhere/hv{i}/"])
            elif mode == "all":
                folders.append([PREFIX + "/topology/"])
            else:
                base = PREFIX + "/" + copies_mod.FOLDER
                nets = sorted(nets_of.get(f"hv{i}", ()))
                folders.append([f"{base}host/hv{i}/", *(f"{base}network/{n}/" for n in nets)])
        result["watches"] = sum(map(len, folders))
        conn.send((etcd.revision() + 1, folders))
        conn.recv()  # every watch open
        # etcd is busy for seconds after 80,000 watches open (100,000
        # ports): the first writes took 0.2-0.9 s. Measure from when it
        # is idle again (under a tenth of a core for half a second).
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 120:
            cpu = common.cpu_s(etcd.proc.pid)
            time.sleep(0.5)
            if common.cpu_s(etcd.proc.pid) - cpu < 0.05:
                break
        result["watch_settle_s"] = time.perf_counter() - t0

        # A real agent's watch, as the agent runs it.
        agent_store = make_store(etcd.endpoint, mode)
        yielded: list[tuple[float, int, float]] = []
        stop = threading.Event()

        from ovsbr.agent.state import DesiredSnapshot
        hv0_ip = "10.0.0.0"

        # The agent's flood lists as it computes them (a tree from before
        # the per-network cache computes all of them each time).
        cache = getattr(overlay_mod, "OverlayCache", None)
        flood_lists = cache("hv0", hv0_ip) if cache else (lambda t: overlays(t, "hv0", hv0_ip))

        def consume():
            # What an agent does with each topology before planning: its
            # host's share (the snapshot) and its overlays' flood lists.
            for item in agent_store.watch(stop, **host_kw):
                if not isinstance(item, Exception):
                    t_yield = time.perf_counter()
                    DesiredSnapshot.of(item, "hv0")
                    flood_lists(item)
                    yielded.append((t_yield, item.revision, time.perf_counter()))
        host_kw = {"host": "hv0"} if "host" in inspect.signature(
            agent_store.watch).parameters else {}
        threading.Thread(target=consume, daemon=True).start()
        common_wait = time.monotonic() + 60
        while not yielded and time.monotonic() < common_wait:
            time.sleep(0.05)

        step(f"agent watch up: {bool(yielded)}; {args.writes} port writes")
        update_lat, fanout, agent_lat, warm_lat, view_lat = [], [], [], [], []
        # Whose CPU the writes cost: etcd (its gateway encodes each event
        # once per stream that wants it) and the simulated hosts' process
        # (each stream's thread parses it), which on a real cloud runs on
        # the 1,000 other machines, not beside etcd.
        cpu0 = {"etcd": common.cpu_s(etcd.proc.pid), "hosts": common.cpu_s(others.pid)}
        # A port write names its port where the store supports it (the CLI does).
        scoped = "scope" in inspect.signature(server_store.update).parameters
        for i in range(args.writes):
            name = f"extra{i}"
            port = port_from_dict({"name": name, "network": "net0", "device": f"x{i}",
                                   "host": "hv0"})
            warm = i % 2 == 1  # alternate: a fresh CLI's store, the server's
            cli_store = server_store if warm else make_store(etcd.endpoint)
            t0 = time.perf_counter()
            _, after = cli_store.update(lambda t, p=port: t.ports.__setitem__(p.name, p),
                                        **({"scope": [name]} if scoped else {}))
            t_commit = time.perf_counter()
            (warm_lat if warm else update_lat).append(t_commit - t0)
            if not warm:
                cli_store.close()
            if mode == "all":
                where = [f"{PREFIX}/topology/ports/{name}"]
            else:
                where = [PREFIX + "/" + copies_mod.FOLDER + k for k in copies_mod.keys(port)]
            conn.send((name, where))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                    y[1] == after.revision for y in yielded):
                time.sleep(0.001)
            lat = [t - t_commit for t in conn.recv()]
            if lat:
                fanout.append((common.percentile(lat, 50), common.percentile(lat, 99),
                               max(lat), len(lat)))
            got = [(t, v) for t, r, v in yielded if r == after.revision]
            if got:
                # From the write's start: etcd's watch can reach the agent
                # before the writer has read the transaction's response.
                agent_lat.append(got[0][0] - t0)
                view_lat.append(got[0][1] - t0)
        stop.set()
        result["etcd_cpu_ms_per_write"] = (
            (common.cpu_s(etcd.proc.pid) - cpu0["etcd"]) * 1000 / args.writes)
        result["hosts_cpu_ms_per_write"] = (
            (common.cpu_s(others.pid) - cpu0["hosts"]) * 1000 / args.writes)
        result["cli_update_ms_p50"] = common.median(update_lat) * 1000
        result["cli_update_ms_p99"] = common.percentile(update_lat, 99) * 1000
        result["store_update_ms_p50"] = common.median(warm_lat) * 1000
        if fanout:  # none with --watch-elsewhere: no stream wants the writes
            result["watch_fanout_ms_p50"] = common.median([f[0] for f in fanout]) * 1000
            result["watch_fanout_ms_p99"] = common.median([f[1] for f in fanout]) * 1000
            result["watch_fanout_ms_max"] = max(f[2] for f in fanout) * 1000
            result["watchers_reached"] = min(f[3] for f in fanout)
        result["agent_update_ms_p50"] = common.median(agent_lat) * 1000
        result["agent_update_ms_p99"] = common.percentile(agent_lat, 99) * 1000
        # Every write's, in order: where a tail comes from (one write, or a phase).
        result["agent_update_ms_each"] = [round(x * 1000, 1) for x in agent_lat]
        result["cli_update_ms_each"] = [round(x * 1000, 1) for x in update_lat]
        result["agent_view_ms_p50"] = common.median(view_lat) * 1000
        result["agent_view_ms_p99"] = common.percentile(view_lat, 99) * 1000

        step(f"{args.ports} port statuses: read whole, and followed")
        result.update(status_reading(session, url, ports, server_store))

        step("flood lists")
        # Flood lists as every host's agent would compute them.
        per_net, per_host = [], []
        for h in range(args.hosts):
            host = f"hv{h}"
            ov = overlays(topo, host, topo.hosts[host]["local_ip"])
            sizes = [len(o.vteps) for o in ov.values() if o.vteps]
            per_net += sizes
            per_host.append(len({ip for o in ov.values() for ip in o.vteps}))
        result["flood_list_mean"] = sum(per_net) / max(1, len(per_net))
        result["flood_list_max"] = max(per_net or [0])
        result["tunnels_per_host_mean"] = sum(per_host) / len(per_host)
        result["tunnels_per_host_max"] = max(per_host)
        result["etcd_rss_mb"] = common.rss_mb(etcd.proc.pid)
    finally:
        try:
            conn.send(None)
        except OSError:
            pass
        others.join(5)
        if others.is_alive():
            others.kill()
        # Stopping etcd ends every stream; closing a response another thread
        # is reading would block on its buffer lock.
        etcd.remove()
    rows = [[k, v] for k, v in result.items() if not k.endswith("_each")]
    print(common.table(f"scale: {args.hosts} simulated hosts ({watchers} watching), "
                       f"{args.ports} ports, {args.networks} vxlan networks, one local etcd",
                       ["figure", "value"], rows))
    print("json:", common.write("scale", result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    return 0


def side_by_side(sizes: list[int], codes: list[tuple[str, str | None]],
                 hosts: int = 1000) -> list[dict]:
    """Each tree's ovsbr at each port count, alternating order, one table
    (bench/run.py scale --sizes 10000,100000 --against REF)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="ovsbr-scale-") as tmp:
        for i, n in enumerate(sizes):
            runs = [(label, source, []) for label, source in codes]
            runs = runs if i % 2 == 0 else runs[::-1]
            # This tree again with every host watching the whole topology
            # (before the copies), and with one watch stream: what the
            # figures are without etcd's fan-out (see the module's notes).
            runs.append((f"{codes[0][0]}, watch all", codes[0][1], ["--watch", "all"]))
            runs.append((f"{codes[0][0]}, 1 watching", codes[0][1], ["--watchers", "1"]))
            for label, source, extra in runs:
                env = dict(os.environ)
                env.pop("OVSBR_CODE", None)
                if source is not None:
                    env["OVSBR_CODE"] = source
                out = os.path.join(tmp, "result.json")
                print(f"scale: {label}, {hosts} hosts, {n} ports", flush=True)
                subprocess.run([sys.executable, os.path.abspath(__file__), "--hosts", str(hosts),
                                "--ports", str(n), "--json", out, *extra],
                               env=env, check=True)
                with open(out) as f:
                    results.append({"code": label, **json.load(f)})
    figures = ["cli_update_ms_p50", "cli_update_ms_p99", "store_update_ms_p50",
               "agent_update_ms_p50", "agent_update_ms_p99", "agent_view_ms_p99",
               "load_all_s", "etcd_cpu_ms_per_write"]
    rows = [[r["code"], r["ports"], r.get("watchers", hosts), r.get("watchers_reached", "-"),
             *(r.get(f, "-") for f in figures)]
            for r in sorted(results, key=lambda r: (r["ports"], r["code"]))]
    print(common.table(f"scale side by side: {hosts} simulated hosts on one etcd (lower is "
                       "better; cli = a fresh store per write, store = a long-lived one)",
                       ["code", "ports", "streams", "wanting", *figures], rows))
    print("JSON:", common.write("scale_side_by_side", {"benchmark": "scale",
                                                      "results": results}))
    return results


if __name__ == "__main__":
    sys.exit(main())
