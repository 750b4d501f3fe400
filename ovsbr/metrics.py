"""Prometheus metrics, liveness and readiness over HTTP (``[metrics]``).

The only module that imports ``prometheus_client``. The agent's core makes
no metrics calls: at scrape time :class:`AgentCollector` reads the values
the agent already keeps (its frozen :class:`~ovsbr.agent.state.AgentState`,
the driver's per-bridge reports), and the loop's one hook,
``Agent(on_reconciled=...)``, feeds the reconcile histogram and counters.
Hot paths pay nothing but that call.

Naming follows Prometheus' conventions: the ``ovsbr_`` prefix, seconds,
``_total`` on counters, and no per-port or per-MAC label (a host has
thousands). Endpoints:

- ``/metrics``: the text exposition format;
- ``/healthz``: 200 while the reconcile loop turns (it wakes at least every
  few seconds), else 503;
- ``/readyz``: 200 once the desired state was read and applied and the
  datapath's connections are up, else 503; both answer JSON with reasons.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from ovsbr.agent.reconciler import PortState
from ovsbr.agent.state import ReconcileReport
from ovsbr.exceptions import ConfigError

LOG = logging.getLogger(__name__)
# The loop turns at least every INTROSPECT_INTERVAL (2 s); a reconcile of
# thousands of ports takes seconds. Silence this long means it is stuck.
STALL_AFTER = 60.0
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                     5.0, 10.0, 30.0)
# BridgeReport.counters (the L2-learning app's MacTable.Counters) -> metric.
BRIDGE_COUNTERS = {
    "packet_ins": ("ovsbr_openflow_packet_ins_total", "Packet-ins the controller received"),
    "learned": ("ovsbr_macs_learned_total", "Source MACs learned"),
    "moved": ("ovsbr_mac_moves_total", "Learned MACs that moved to another port"),
    "flaps": ("ovsbr_mac_flaps_total", "MACs damped for moving too often"),
    "limited": ("ovsbr_macs_limited_total",
                "Sources not learned: the port holds max_macs_per_port already"),
    "expired": ("ovsbr_macs_expired_total", "Learned MACs aged out"),
    "dropped": ("ovsbr_packet_ins_dropped_total", "Malformed or unusable packet-ins"),
    "flow_mods": ("ovsbr_openflow_flow_mods_total", "Flow-mods sent to the switch"),
}


def liveness(alive_at: float, now: float, stall_after: float = STALL_AFTER) -> list[str]:
    """Why the loop looks dead (empty: alive)."""
    age = now - alive_at
    if age > stall_after:
        return [f"the reconcile loop has not turned for {age:.0f} s"]
    return []


class AgentCollector(Collector):
    """Reads one agent's state at scrape time."""

    def __init__(self, agent, clock=time.monotonic):
        self.agent = agent
        self.clock = clock

    def collect(self) -> Iterator:
        agent = self.agent
        state = agent.state  # one read: a frozen value
        driver = agent.driver.name
        ports = GaugeMetricFamily("ovsbr_ports", "Ports this host wires, by status",
                                  labels=["driver", "status"])
        counts = {s.value: 0 for s in PortState}
        for st in state.ports.values():
            counts[st.status.value] = counts.get(st.status.value, 0) + 1
        for status, n in sorted(counts.items()):
            ports.add_metric([driver, status], n)
        yield ports
        local = state.desired.local
        networks = GaugeMetricFamily("ovsbr_networks", "Networks on this host, by status",
                                     labels=["status"])
        failed = len(state.networks)
        total = len(local.networks) if local is not None else 0
        networks.add_metric(["ok"], max(0, total - failed))
        networks.add_metric(["error"], failed)
        yield networks
        yield GaugeMetricFamily("ovsbr_store_error",
                                "1 while the store cannot be read (the last good state is kept)",
                                value=1 if state.desired.store_error else 0)
        yield GaugeMetricFamily("ovsbr_ready", "1 when /readyz answers 200",
                                value=0 if agent.readiness() else 1)
        yield GaugeMetricFamily("ovsbr_loop_idle_seconds",
                                "Seconds since the reconcile loop last turned",
                                value=max(0.0, self.clock() - agent.alive_at))
        yield from self._bridges(state.datapath)
        yield from self._store(agent.store.stats())

    @staticmethod
    def _store(stats) -> Iterator:
        if not stats:
            return
        yield SummaryMetricFamily("ovsbr_store_request_duration_seconds",
                                  "Requests to the store (etcd) and their time",
                                  count_value=stats["requests"],
                                  sum_value=stats["request_seconds"])
        for key, name, doc in (
                ("request_errors", "ovsbr_store_request_errors", "Store requests that failed"),
                ("watch_restarts", "ovsbr_store_watch_restarts",
                 "Store watches lost (ended, cancelled, compacted) and started over"),
                ("lease_renewals", "ovsbr_host_lease_renewals",
                 "Renewals of this host's registration lease"),
                ("lease_failures", "ovsbr_host_lease_failures",
                 "Failed renewals of this host's registration lease")):
            yield CounterMetricFamily(name, doc, value=stats[key])

    @staticmethod
    def _bridges(reports) -> Iterator:
        connected = GaugeMetricFamily("ovsbr_openflow_connected",
                                      "1 while the bridge's switch is connected",
                                      labels=["bridge"])
        macs = GaugeMetricFamily("ovsbr_learned_macs", "MACs in the bridge's table now",
                                 labels=["bridge"])
        flows = GaugeMetricFamily("ovsbr_openflow_flows",
                                  "Pipeline flows ovsbr installed, per table (each learned "
                                  "MAC adds two more: see ovsbr_learned_macs)",
                                  labels=["bridge", "table"])
        families = {key: CounterMetricFamily(name.removesuffix("_total"), doc,
                                             labels=["bridge"])
                    for key, (name, doc) in BRIDGE_COUNTERS.items()}
        for bridge, report in sorted(reports.items()):
            connected.add_metric([bridge], 1 if report.connected else 0)
            macs.add_metric([bridge], report.mac_count)
            for table, n in sorted(report.flows.items()):
                flows.add_metric([bridge, str(table)], n)
            for key, family in families.items():
                family.add_metric([bridge], report.counters.get(key, 0))
        yield connected
        yield macs
        yield flows
        yield from families.values()


class Metrics:
    """The registry, the reconcile hook and the HTTP endpoint of one agent."""

    def __init__(self, agent, clock=time.monotonic, wall=time.time):
        self.agent = agent
        self.clock, self.wall = clock, wall
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(AgentCollector(agent, clock))
        self.duration = Histogram("ovsbr_reconcile_duration_seconds",
                                  "Time of one reconcile (observe, plan, apply, sync)",
                                  buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.change_age = Histogram(
            "ovsbr_store_change_apply_seconds",
            "From a store change reaching the agent to the end of the reconcile that "
            "applied it (how far the datapath lags the store)",
            buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.bind_time = Histogram(
            "ovsbr_port_bind_seconds",
            "From the device event (kernel or OVSDB) that woke the agent to a port "
            "bound by that reconcile, one observation per port",
            buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.reconciles = PromCounter("ovsbr_reconciles", "Reconciles, by result",
                                      ["result"], registry=self.registry)
        self.actions = PromCounter("ovsbr_reconcile_actions",
                                   "Actions applied to the datapath, by kind", ["kind"],
                                   registry=self.registry)
        self.resyncs = PromCounter("ovsbr_full_resyncs",
                                   "Periodic full resyncs (datapath re-read from scratch)",
                                   registry=self.registry)
        self.last_ok = GaugeFromValue("ovsbr_last_reconcile_success_timestamp_seconds",
                                      "Unix time of the last reconcile without a failure")
        self.registry.register(self.last_ok)
        self.registry.register(BuildInfo())
        for result in ("ok", "failed"):
            self.reconciles.labels(result)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the loop's hook -------------------------------------------------------
    def on_reconciled(self, report: ReconcileReport) -> None:
        self.duration.observe(report.duration)
        if report.change_age is not None:
            self.change_age.observe(report.change_age)
        if report.event_age is not None:
            for _ in range(report.newly_bound):
                self.bind_time.observe(report.event_age)
        self.reconciles.labels("failed" if report.failures else "ok").inc()
        for kind, n in report.actions.items():
            self.actions.labels(kind).inc(n)
        if report.full:
            self.resyncs.inc()
        if not report.failures:
            self.last_ok.value = self.wall()

    # -- endpoints -------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> tuple[int, dict]:
        reasons = liveness(self.agent.alive_at, self.clock())
        return (503 if reasons else 200), {"status": "unhealthy" if reasons else "ok",
                                           "reasons": reasons}

    def ready(self) -> tuple[int, dict]:
        reasons = self.agent.readiness()
        return (503 if reasons else 200), {"status": "not ready" if reasons else "ready",
                                           "reasons": reasons}

    def serve(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    code, doc = metrics.health() if path == "/healthz" else metrics.ready()
                    self._send(code, json.dumps(doc).encode() + b"\n", "application/json")
                else:
                    self._send(404, b"/metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:  # scrapes are not news
                pass

        try:
            server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError("[metrics] bind_port",
                                  f"{host}:{port} is in use by another process; choose "
                                  "a free port") from None
            raise ConfigError("[metrics] bind_host",
                              f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="ovsbr-metrics",
                                        daemon=True)
        self._thread.start()
        bound = server.server_address[1]
        LOG.info("metrics on http://%s:%d/metrics (/healthz, /readyz)", host, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None


class GaugeFromValue(Collector):
    """A gauge whose value the hook sets; absent until it is set once."""

    def __init__(self, name: str, doc: str):
        self.name, self.doc = name, doc
        self.value: float | None = None

    def collect(self) -> Iterator:
        if self.value is not None:
            yield GaugeMetricFamily(self.name, self.doc, value=self.value)


class BuildInfo(Collector):
    def collect(self) -> Iterator:
        try:
            version = metadata.version("ovsbr")
        except metadata.PackageNotFoundError:
            version = "unknown"
        info = InfoMetricFamily("ovsbr_build", "ovsbr's version")
        info.add_metric([], {"version": version})
        yield info
