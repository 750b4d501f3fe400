"""``ovsbr status`` and ``ovsbr mac-table``: what the agents report.

``--watch`` is a live view of every host, refreshed in place: :func:`render`
is pure (status documents in, text out) so the view is unit-tested without
a terminal; :func:`watch` reads the store every ``interval`` seconds and
redraws. With ``-f json`` each refresh is one JSON line instead (for
scripts: ``ovsbr status --watch -f json | jq ...``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from ovsbr.agent import control
from ovsbr.cmd.output import CliError, emit, table

STATES = ("bound", "waiting", "error")
CLEAR = "\033[H\033[2J"  # cursor home, clear screen: redraw in place


def render(revision: int, hosts: Mapping[str, Mapping[str, Any]], now: float,
           max_problems: int = 20) -> str:
    """One screen: a row per host, the ports that need a look, the bridges."""
    lines = [f"ovsbr  {time.strftime('%H:%M:%S', time.localtime(now))}  "
             f"store revision {revision}  hosts {len(hosts)}", ""]
    rows = []
    problems: list[tuple[int, str]] = []
    for host, doc in sorted(hosts.items()):
        counts = dict.fromkeys(STATES, 0)
        for name, port in sorted((doc.get("ports") or {}).items()):
            state = port.get("status", "?")
            counts[state] = counts.get(state, 0) + 1
            if state != "bound":
                rank = 0 if state == "error" else 1
                problems.append((rank, f"{host}  {state:7}  port {name}: "
                                       f"{port.get('reason', '')}".rstrip(": ")))
        for name, net in sorted((doc.get("networks") or {}).items()):
            if net.get("status") not in (None, "ok"):
                problems.append((0, f"{host}  error    network {name}: {net.get('reason')}"))
        if doc.get("store_error"):
            problems.append((0, f"{host}  error    store: {doc['store_error']}"))
        updated = doc.get("updated")
        age = f"{max(0, now - updated):.0f}s ago" if isinstance(updated, (int, float)) else "-"
        rows.append({"HOST": host, "DRIVER": doc.get("driver", "?"),
                     "REV": doc.get("revision", "?"),
                     **{s.upper(): counts[s] for s in STATES}, "UPDATED": age})
    lines.append(table(rows, ("HOST", "DRIVER", "REV", *(s.upper() for s in STATES),
                              "UPDATED")))
    if problems:
        problems.sort(key=lambda p: p[0])
        lines += ["", "NEEDS A LOOK"]
        lines += [text for _, text in problems[:max_problems]]
        if len(problems) > max_problems:
            lines.append(f"... and {len(problems) - max_problems} more")
    bridges = [(host, name, info) for host, doc in sorted(hosts.items())
               for name, info in sorted((doc.get("datapath") or {}).items())]
    if bridges:
        lines += ["", "BRIDGES"]
        for host, name, info in bridges:
            state = "connected" if info.get("connected") else "DISCONNECTED"
            counters = " ".join(f"{k}={v}" for k, v in sorted(info.get("counters", {}).items()))
            lines.append(f"{host}  {name} ({state}, {mac_count(info)} MACs)  "
                         f"{counters}")
    return "\n".join(lines) + "\n"


def watch(read: Callable[[], tuple[int, dict]], interval: float, as_json: bool,
          count: int | None = None, out=None, clock=time.time,
          sleep=time.sleep) -> None:
    """Redraw every ``interval`` seconds until interrupted (or ``count`` times)."""
    out = out or sys.stdout
    shown = 0
    try:
        while count is None or shown < count:
            revision, hosts = read()
            if as_json:
                out.write(json.dumps({"time": clock(), "revision": revision, "hosts": hosts},
                                     sort_keys=True) + "\n")
            else:
                out.write(CLEAR + render(revision, hosts, clock()))
            out.flush()
            shown += 1
            if count is None or shown < count:
                sleep(interval)
    except KeyboardInterrupt:
        pass


def status(args, st) -> None:
    """``ovsbr status``: each host's report, once or ``--watch``ed."""
    if args.watch:
        if args.format == "yaml":
            raise CliError("--watch prints a table or one JSON line per refresh (-f json)")
        watch(lambda: (st.load().revision, st.read_status()), args.interval,
              args.format == "json", args.count)
        return
    topo = st.load()
    hosts = st.read_status()
    if args.format in ("json", "yaml"):
        emit(args, {"revision": topo.revision, "hosts": hosts})
        return
    if not hosts:
        print("no agent has reported yet")
    for host, hs in sorted(hosts.items()):
        # An agent's revision: the newest write it has heard that concerns
        # its host (it watches its share only), so often below the store's.
        print(f"host {host}: driver {hs.get('driver')}, revision {hs.get('revision')} "
              f"(store at {topo.revision})")
        if hs.get("store_error"):
            print(f"  store error: {hs['store_error']}")
        for name, ns in sorted(hs.get("networks", {}).items()):
            if ns.get("status") != "ok":
                print(f"  network {name}: {ns.get('status')}: {ns.get('reason', '')}")
        rows = [dict(name=n, **p) for n, p in sorted(hs.get("ports", {}).items())]
        if rows:
            print(table(rows, ("name", "status", "device", "reason")))
        print_mac_tables(hs.get("datapath", {}))


def mac_count(info: Mapping[str, Any]) -> int:
    """A bridge's table size; an agent from before ``mac_count`` sent the
    table itself."""
    return info.get("mac_count", len(info.get("macs") or []))


def print_mac_tables(datapath: dict) -> None:
    for bridge, info in sorted(datapath.items()):
        counters = ", ".join(f"{k} {v}" for k, v in info.get("counters", {}).items())
        state = "connected" if info.get("connected") else "DISCONNECTED"
        print(f"  bridge {bridge} ({state}): {mac_count(info)} MACs, {counters}")
        if info.get("macs"):
            print(table(info["macs"], ("network", "mac", "port", "age")))


def mac_table(args, st) -> None:
    """``ovsbr mac-table``: learned MACs per bridge (openvswitch), asked of
    this host's agent (its control socket): the table is never published.
    An agent from before the socket (an upgrade under way) still has it in
    its status, which is shown then."""
    try:
        tables = control.ask(args.conf_control_socket, "mac-table")
    except control.NoAgent:
        tables = st.read_status().get(args.conf_host, {}).get("datapath") or {}
        if not any("macs" in report for report in tables.values()):
            raise
    if args.format in ("json", "yaml"):
        emit(args, {args.conf_host: tables})
        return
    print(f"host {args.conf_host}:")
    print_mac_tables(tables)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in 0.1-3600")
    return value
