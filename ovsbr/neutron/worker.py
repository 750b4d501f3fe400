"""The ovsbr worker in ``neutron-periodic-workers``: status back, hosts as
agents, and the Neutron -> store resync.

One native thread (no eventlet: Neutron 2026 has none) loops every
``[ovsbr] status_interval``:

1. reads the live hosts and every host's status document from the store,
   and tells Neutron what changed (:mod:`.status`): ``bound`` completes the
   L2 provisioning block, ``waiting`` is DOWN, ``error`` is ERROR;
2. every ``report_interval``, writes a heartbeat to Neutron's agents table
   for each live host (agent type ``ovsbr``), so ``openstack network agent
   list`` shows them, alive while their lease in the store is;
3. at start and every ``resync_interval``, makes the store's Neutron objects
   equal to Neutron's database (:func:`.sync.converge`): nothing lost when a
   postcommit write failed, nothing orphaned when a delete did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from neutron.db import provisioning_blocks
from neutron.objects import ports as port_obj
from neutron.worker import NeutronBaseWorker
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import resources
from neutron_lib.plugins import directory
from oslo_config import cfg

from ovsbr.exceptions import OvsbrError
from ovsbr.neutron import config, mapping, status, sync
from ovsbr.store.etcd import EtcdStore

LOG = logging.getLogger(__name__)
AGENT_TYPE, AGENT_BINARY = "ovsbr", "ovsbr-agent"
DRIVER_NAME = "ovsbr"


def agent_state(host: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The agents-table row for one live host (what ``agent show`` prints)."""
    return {"agent_type": AGENT_TYPE, "binary": AGENT_BINARY, "host": host,
            "topic": "N/A", "configurations": dict(info)}


class StatusWorker(NeutronBaseWorker):
    desc = "ovsbr status worker"

    def __init__(self, conf: cfg.ConfigOpts):
        super().__init__(worker_process_count=0, desc=self.desc)
        self.conf = conf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store: EtcdStore | None = None

    # -- oslo.service life cycle -------------------------------------------------
    def start(self, **kwargs: Any) -> None:
        super().start(desc=self.desc)
        config.register(self.conf)
        self.store = EtcdStore(self.conf, group=config.GROUP)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ovsbr-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self.store is not None:
            self.store.close()

    def reset(self) -> None:
        self.stop()
        self.wait()
        self.start()

    # -- the loop ------------------------------------------------------------------
    def _run(self) -> None:
        opts = self.conf.ovsbr
        seen: status.Seen = {}
        next_report = next_resync = 0.0
        while not self._stop.is_set():
            ctx = n_context.get_admin_context()
            now = time.monotonic()
            try:
                hosts = self.store.read_hosts()
                if now >= next_resync:
                    self.resync(ctx)
                    next_resync = now + opts.resync_interval
                if now >= next_report:
                    self._report(ctx, hosts)
                    next_report = now + opts.report_interval
                seen = self._statuses(ctx, seen, hosts)
            except OvsbrError as e:
                LOG.warning("ovsbr worker: %s", e)
            except Exception:  # the loop's edge: log, keep running
                LOG.exception("ovsbr worker: unexpected error")
            self._stop.wait(opts.status_interval)

    def _report(self, ctx, hosts: Mapping[str, Any]) -> None:
        plugin = directory.get_plugin()
        for host, info in sorted(hosts.items()):
            if mapping.host_info(info) is not None:
                plugin.create_or_update_agent(ctx, agent_state(host, info))

    def _statuses(self, ctx, seen: status.Seen, hosts: Mapping[str, Any]) -> status.Seen:
        now = status.current(self.store.read_status(), hosts)
        plugin = directory.get_plugin()
        for change in status.changes(seen, now):
            if not plugin.port_bound_to_host(ctx, change.port_id, change.host):
                continue
            LOG.debug("ovsbr: port %s on %s is %s", change.port_id, change.host,
                      change.status)
            if change.status == status.ACTIVE:
                provisioning_blocks.provisioning_complete(
                    ctx, change.port_id, resources.PORT, provisioning_blocks.L2_AGENT_ENTITY)
            else:
                plugin.update_port_status(ctx, change.port_id, change.status, change.host)
        return now

    # -- Neutron -> store --------------------------------------------------------
    def resync(self, ctx) -> sync.Counts:
        """Make the store's Neutron objects equal to Neutron's database."""
        networks, ports = wanted(ctx)
        counts = sync.Counts()
        self.store.update(sync.converge(networks, ports, counts))
        LOG.info("ovsbr resync: %d networks, %d ports in Neutron; store: %s",
                 len(networks), len(ports), counts)
        return counts


def wanted(ctx) -> tuple[dict, dict]:
    """What the store must hold for Neutron: its networks with one segment,
    and every port ovsbr bound (with the network through its bound segment)."""
    plugin = directory.get_plugin()
    networks = {}
    nets = {n["id"]: n for n in plugin.get_networks(ctx)}
    for net in nets.values():
        segment = {"network_type": net.get("provider:network_type"),
                   "physical_network": net.get("provider:physical_network"),
                   "segmentation_id": net.get("provider:segmentation_id")}
        if segment["network_type"]:
            try:
                networks[net["id"]] = mapping.network(net, segment)
            except mapping.MappingError:
                continue
    levels = {lv.port_id: lv for lv in port_obj.PortBindingLevel.get_objects(
        ctx, driver=DRIVER_NAME)}
    ports = {}
    if levels:
        for port in plugin.get_ports(ctx, filters={"id": list(levels)}):
            level = levels[port["id"]]
            vif_type = port.get(portbindings.VIF_TYPE)
            if port.get(portbindings.HOST_ID) != level.host or level.segment is None or \
                    vif_type not in (mapping.VIF_TYPE_TAP, mapping.VIF_TYPE_OVS):
                continue
            seg = level.segment
            segment = {"network_type": seg.network_type,
                       "physical_network": seg.physical_network,
                       "segmentation_id": seg.segmentation_id}
            try:
                net = mapping.network(nets[port["network_id"]], segment)
                ports[port["id"]] = mapping.port(port, level.host, vif_type)
            except (KeyError, mapping.MappingError) as e:
                LOG.warning("ovsbr resync: port %s cannot be wired: %s", port["id"], e)
                continue
            networks[net.name] = net
    return networks, ports
