"""The ovsbr worker in ``neutron-periodic-workers``: status back, hosts as
agents, and the Neutron -> store resync.

One native thread (no eventlet: Neutron 2026 has none) loops every
``[ovsbr] status_interval``:

1. reads the live hosts, and the port statuses that changed in the store
   since the last round (a watch on the status folder, read whole at
   start and whenever the watch is lost: :mod:`ovsbr.store.etcd_status`),
   and tells Neutron what changed (:mod:`.status`): ``bound`` completes
   the L2 provisioning block, ``waiting`` is DOWN, ``error`` is ERROR;
2. every ``report_interval``, writes a heartbeat to Neutron's agents table
   for each live host (agent type ``ovsbr``), so ``openstack network agent
   list`` shows them, alive while their lease in the store is;
3. follows live migrations: a port's inactive binding that ovsbr bound
   (Neutron's multiple port bindings, which Nova creates on the destination
   before it moves the VM) becomes the port's ``migrating_to`` in the store,
   so the destination wires the port ahead of the switch; ML2 has no
   postcommit for inactive bindings, hence this poll (one indexed query);
4. at start and every ``resync_interval``, makes the store's Neutron objects
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
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import resources
from neutron_lib.plugins import directory
from oslo_config import cfg

from ovsbr.exceptions import OvsbrError
from ovsbr.neutron import config, groups, mapping, status, sync
from ovsbr.store.etcd import EtcdStore

LOG = logging.getLogger(__name__)
AGENT_TYPE, AGENT_BINARY = "ovsbr", "ovsbr-agent"


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
        self._notified: set[tuple[str, str]] = set()  # migration targets told to Nova
        self._tracker = status.Tracker()
        self._follower = None

    # -- oslo.service life cycle -------------------------------------------------
    def start(self, **kwargs: Any) -> None:
        super().start(desc=self.desc)
        config.register(self.conf)
        self.store = EtcdStore(self.conf, group=config.GROUP)
        self._follower = self.store.follow_status()
        self._tracker = status.Tracker()
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
        seen: dict[tuple[str, str], str] = {}
        moving: dict[str, str] | None = None
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
                targets = migrations(ctx)
                if targets != moving:
                    self.store.update(sync.set_migrations(targets))
                    moving = targets
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

    def _statuses(self, ctx, seen: dict[tuple[str, str], str],
                  hosts: Mapping[str, Any]) -> dict[tuple[str, str], str]:
        """Send what changed; ``seen`` (what was sent) is updated in place.

        Only the statuses the store's events or a host's liveness moved are
        looked at (:class:`.status.Tracker`). A status from a host the port
        is not bound to (a live migration's destination, or its source
        afterwards) is not recorded as sent and is looked at again next
        round: once Neutron activates the binding there, it must go again.
        """
        whole, events = self._follower.poll()
        if whole:
            self._tracker.clear()
        for host, port, doc in events:
            if port is None:
                self._tracker.head(host, doc)
            else:
                self._tracker.port(host, port, doc)
        self._tracker.live(hosts)
        moved = list(self._tracker.take().items())
        plugin = directory.get_plugin()
        for i, (key, now) in enumerate(moved):
            try:
                self._status(ctx, plugin, seen, key, now)
            except Exception:
                for left, _ in moved[i:]:  # not lost: looked at again next round
                    self._tracker.again(left)
                raise
        return seen

    def _status(self, ctx, plugin, seen: dict[tuple[str, str], str], key: tuple[str, str],
                now: str | None) -> None:
        if now != status.ACTIVE:
            self._notified.discard(key)
        if now is None:
            seen.pop(key, None)
            return
        if seen.get(key) == now:
            return
        change = status.Change(key[0], key[1], now)
        if not plugin.port_bound_to_host(ctx, change.port_id, change.host):
            seen.pop(key, None)
            self._tracker.again(key)
            if now == status.ACTIVE and key not in self._notified:
                self._wired_for_migration(ctx, plugin, change)
                self._notified.add(key)
            return
        LOG.debug("ovsbr: port %s on %s is %s", change.port_id, change.host, now)
        if now == status.ACTIVE:
            provisioning_blocks.provisioning_complete(
                ctx, change.port_id, resources.PORT, provisioning_blocks.L2_AGENT_ENTITY)
        else:
            plugin.update_port_status(ctx, change.port_id, now, change.host)
        seen[key] = now

    def _wired_for_migration(self, ctx, plugin, change: status.Change) -> None:
        """The destination of a live migration wired the port: Nova waits for
        network-vif-plugged before it moves the VM. As Neutron's RPC does for
        its own agents, tell Nova directly: the port is not ACTIVE there yet."""
        notifier = getattr(plugin, "nova_notifier", None)
        if notifier is None or not self.conf.notify_nova_on_port_status_changes:
            return
        port = plugin.get_port(ctx, change.port_id)
        if port.get("device_owner", "").startswith(n_const.DEVICE_OWNER_COMPUTE_PREFIX):
            LOG.info("ovsbr: port %s wired on migration target %s", change.port_id,
                     change.host)
            notifier.notify_port_active_direct(port)

    def resync(self, ctx) -> sync.Counts:
        return resync(ctx, self.store)


def resync(ctx, store: EtcdStore) -> sync.Counts:
    """Make the store's Neutron objects equal to Neutron's database; one
    revision-checked write of the differences, and one line of counts."""
    networks, ports = wanted(ctx)
    found = groups.fetch(ctx, {g for p in ports.values() for g in p.security_groups or ()})
    counts = sync.Counts()
    store.update(sync.converge(networks, ports, counts, found))
    LOG.info("ovsbr resync: %d networks, %d ports, %d security groups in Neutron; "
             "store: %s", len(networks), len(ports), len(found), counts)
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
    levels = {(lv.port_id, lv.host): lv for lv in port_obj.PortBindingLevel.get_objects(
        ctx, driver=mapping.MECHANISM_DRIVER)}
    targets = migrations(ctx)
    ports = {}
    if levels:
        for port in plugin.get_ports(ctx, filters={"id": sorted({p for p, _ in levels})}):
            level = levels.get((port["id"], port.get(portbindings.HOST_ID)))
            vif_type = port.get(portbindings.VIF_TYPE)
            if level is None or level.segment is None or \
                    vif_type not in mapping.VIF_TYPES:
                continue
            seg = level.segment
            segment = {"network_type": seg.network_type,
                       "physical_network": seg.physical_network,
                       "segmentation_id": seg.segmentation_id}
            try:
                net = mapping.network(nets[port["network_id"]], segment)
                ports[port["id"]] = mapping.port(port, level.host, vif_type,
                                                 targets.get(port["id"]))
            except (KeyError, mapping.MappingError) as e:
                LOG.warning("ovsbr resync: port %s cannot be wired: %s", port["id"], e)
                continue
            networks[net.name] = net
    return networks, ports


def migrations(ctx) -> dict[str, str]:
    """Port -> the host of its inactive binding, where ovsbr bound it."""
    inactive = {(b.port_id, b.host) for b in port_obj.PortBinding.get_objects(
        ctx, status=n_const.INACTIVE) if b.vif_type in mapping.VIF_TYPES}
    if not inactive:
        return {}
    ours = {(lv.port_id, lv.host) for lv in port_obj.PortBindingLevel.get_objects(
        ctx, driver=mapping.MECHANISM_DRIVER, port_id=sorted({p for p, _ in inactive}))}
    return dict(sorted(inactive & ours))
