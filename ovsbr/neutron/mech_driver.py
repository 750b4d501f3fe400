"""The ML2 mechanism driver ``ovsbr``: binds ports to live ovsbr hosts and
writes what they must wire into the store.

Thin on purpose: decisions are in :mod:`.binding`, :mod:`.mapping` and
:mod:`.sync` (pure); this class reads the host registry, calls them and
writes. Precommit runs inside Neutron's DB transaction, so it only
validates and adds the L2 provisioning block; the store is written in
postcommit. A failed store write is logged and left to the worker's
resync (which compares Neutron's database with the store), never turned
into a failed API call after the DB has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from neutron.db import provisioning_blocks
from neutron_lib import constants as n_const
from neutron_lib import exceptions as n_exc
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg

from ovsbr.exceptions import OvsbrError
from ovsbr.neutron import binding, config, groups, mapping, sync
from ovsbr.store.etcd import EtcdStore

LOG = logging.getLogger(__name__)


class OvsbrMechanismDriver(api.MechanismDriver):
    """Entry point ``neutron.ml2.mechanism_drivers: ovsbr``."""

    def __init__(self, conf: cfg.ConfigOpts | None = None):
        super().__init__()
        self.conf = conf or cfg.CONF
        self.store: EtcdStore | None = None

    def initialize(self) -> None:
        config.register(self.conf)
        for resource, event in ((resources.SECURITY_GROUP_RULE, events.AFTER_CREATE),
                                (resources.SECURITY_GROUP_RULE, events.AFTER_DELETE),
                                (resources.SECURITY_GROUP, events.AFTER_UPDATE),
                                (resources.SECURITY_GROUP, events.AFTER_DELETE)):
            registry.subscribe(self._group_changed, resource, event)
        # No connection is opened here: the client connects on first use,
        # in whichever process (API or periodic workers) uses it.
        self.store = EtcdStore(self.conf, group=config.GROUP)
        LOG.info("ovsbr mechanism driver: store etcd %s under %s",
                 ",".join(self.conf.ovsbr.endpoints), self.store.prefix)

    def get_workers(self) -> list:
        from ovsbr.neutron.worker import StatusWorker
        return [StatusWorker(self.conf)]

    # -- the host registry -----------------------------------------------------
    def _host(self, host: str | None) -> mapping.HostInfo | None:
        if not host:
            return None
        try:
            return mapping.host_info(self.store.read_host(host) or {})
        except OvsbrError as e:
            LOG.warning("ovsbr: cannot read host %s from the store: %s", host, e)
            return None

    # -- binding -----------------------------------------------------------------
    def bind_port(self, context: api.PortContext) -> None:
        port = context.current
        host = self._host(context.host)
        chosen = binding.choose(context.segments_to_bind, host,
                                port.get(portbindings.VNIC_TYPE, mapping.VNIC_NORMAL),
                                port.get("mac_address"), mapping.needs_filtering(port))
        if chosen is None:
            LOG.debug("ovsbr: not binding port %s on host %s (%s)", port["id"], context.host,
                      "no live ovsbr agent" if host is None else "no segment it serves")
            return
        context.set_binding(chosen.segment[api.ID], chosen.vif_type, dict(chosen.vif_details))

    # -- precommit: validate, block ----------------------------------------------
    def create_port_precommit(self, context: api.PortContext) -> None:
        self._check_and_block(context)

    def update_port_precommit(self, context: api.PortContext) -> None:
        if self._ours(context.binding_levels, context.vif_type):
            self._check(context.current)
        if context.host != context.original_host:
            self._check_and_block(context)

    def _check_and_block(self, context: api.PortContext) -> None:
        """Refuse what ovsbr cannot enforce, and hold the port DOWN until its
        host reports it wired (Neutron's agents do the same)."""
        port = context.current
        if (not context.host or port["status"] == n_const.PORT_STATUS_ACTIVE
                or port.get("device_owner", "").startswith("network:")
                or self._host(context.host) is None):
            return
        self._check(port)
        provisioning_blocks.add_provisioning_component(
            context.plugin_context, port["id"], resources.PORT,
            provisioning_blocks.L2_AGENT_ENTITY)

    @staticmethod
    def _check(port: dict[str, Any]) -> None:
        try:
            mapping.port_addresses(port)
        except mapping.MappingError as e:
            raise n_exc.InvalidInput(error_message=f"ovsbr: {e}") from None

    # -- postcommit: write the store ---------------------------------------------
    def create_network_postcommit(self, context: api.NetworkContext) -> None:
        self._put_network(context)

    def update_network_postcommit(self, context: api.NetworkContext) -> None:
        self._put_network(context)

    def delete_network_postcommit(self, context: api.NetworkContext) -> None:
        self._write(sync.remove_network(context.current["id"]), "delete network",
                    context.current["id"])

    def _put_network(self, context: api.NetworkContext) -> None:
        """A single-segment network is written as it is created, so it exists
        on the hosts before its first port; a multi-segment one when a port
        is bound (through the segment bound)."""
        segments = context.network_segments or []
        if len(segments) != 1:
            return
        try:
            net = mapping.network(context.current, segments[0])
        except mapping.MappingError as e:
            LOG.info("ovsbr: network %s is not served: %s", context.current["id"], e)
            return
        self._write(sync.put_network(net), "write network", net.name, scope=())

    def create_port_postcommit(self, context: api.PortContext) -> None:
        self.update_port_postcommit(context)

    def update_port_postcommit(self, context: api.PortContext) -> None:
        new = self._mapped(context.current, context.network.current, context.binding_levels,
                           context.host, context.vif_type, context.bottom_bound_segment)
        original = context.original
        old = None if original is None else self._mapped(
            original, context.network.current, context.original_binding_levels,
            context.original_host, context.original_vif_type,
            context.original_bottom_bound_segment)
        if new == old and new is not None:
            return  # nothing ovsbr wires changed (e.g. a status or name update)
        port_id = context.current["id"]
        if new is None:
            if old is not None:  # unbound, or bound elsewhere by another driver
                self._write(sync.remove_port(port_id), "remove port", port_id, scope=[port_id])
            return
        try:
            found = groups.fetch(context.plugin_context, new[1].security_groups or ())
        except mapping.MappingError as e:
            LOG.error("ovsbr: port %s: its security groups cannot be written: %s", port_id, e)
            return
        self._write(sync.put_port(*new, found), "write port", port_id, scope=[port_id])

    def delete_port_postcommit(self, context: api.PortContext) -> None:
        # Only ports ovsbr bound are in the store: deleting a DHCP or router
        # port must not cost a store transaction (the resync catches strays).
        if self._ours(context.binding_levels, context.vif_type):
            self._write(sync.remove_port(context.current["id"]), "remove port",
                        context.current["id"], scope=[context.current["id"]])

    def _mapped(self, port, network, levels, host, vif_type, segment):
        """(Network, Port) as ovsbr must wire them, or None when not ours."""
        if not self._ours(levels, vif_type) or not host or segment is None:
            return None
        try:
            return mapping.network(network, segment), mapping.port(port, host, vif_type)
        except mapping.MappingError as e:
            LOG.warning("ovsbr: port %s cannot be wired: %s", port.get("id"), e)
            return None

    @staticmethod
    def _ours(levels, vif_type) -> bool:
        return bool(levels) and levels[-1].get(api.BOUND_DRIVER) == mapping.MECHANISM_DRIVER \
            and vif_type in mapping.VIF_TYPES

    # -- security groups -----------------------------------------------------------
    def _group_changed(self, resource, event, trigger, payload=None) -> None:
        """A rule came or went, or a group changed or went: where the store has
        the group, write it as Neutron now has it."""
        if resource == resources.SECURITY_GROUP and event == events.AFTER_DELETE:
            self._write(sync.remove_group(payload.resource_id), "remove security group",
                        payload.resource_id)
            return
        if resource == resources.SECURITY_GROUP:
            group_id = payload.resource_id
        elif event == events.AFTER_DELETE:
            group_id = payload.metadata.get("security_group_id")
        else:
            group_id = payload.latest_state.get("security_group_id")
        if not group_id:
            return
        try:
            found = groups.fetch(payload.context, [group_id])
        except mapping.MappingError as e:
            LOG.error("ovsbr: security group %s cannot be written: %s", group_id, e)
            return
        self._write(sync.update_groups(found), "write security group", group_id, scope=())

    def _write(self, change: sync.Change, what: str, name: str,
               scope: Iterable[str] | None = None) -> None:
        """``scope``: the only ports ``change`` touches (see Store.update), so
        that the store reads and writes their keys alone."""
        try:
            self.store.update(change, scope=scope)
        except (OvsbrError, ValueError) as e:
            LOG.error("ovsbr: cannot %s %s in the store (the resync will retry): %s",
                      what, name, e)
