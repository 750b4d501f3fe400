"""Plug or unplug a VM's OVS port the way Nova does, with os-vif's real
``ovs`` plugin (tests only).

``python -m ovsbr.testing.nova_plug plug|unplug JSON`` where JSON holds
``ovsdb`` (the host's OVSDB connection), ``port_id``, ``mac``, ``tap``,
``bridge``, ``datapath_type``, ``mtu``, ``network_id`` and ``instance``:
the fields Nova takes from the port's ``binding:vif_details``. os-vif runs
its privileged part in process here (the test is root), as
``privsep-helper`` would for nova-compute.
"""

from __future__ import annotations

import json
import sys
import tempfile

from oslo_config import cfg


def main(argv: list[str]) -> None:
    action, spec = argv[0], json.loads(argv[1])
    import os_vif
    from os_vif import objects
    from vif_plug_ovs import privsep

    # The plugin reads its options when it loads: they must be there first,
    # as nova.conf's [os_vif_ovs] would be.
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write(f"[os_vif_ovs]\novsdb_connection = {spec['ovsdb']}\n")
        conf.flush()
        cfg.CONF(["--config-file", conf.name], project="nova")
        os_vif.initialize()
    privsep.vif_plug.set_client_mode(False)
    network = objects.network.Network(id=spec["network_id"], bridge=spec["bridge"],
                                      mtu=spec.get("mtu"))
    profile = objects.vif.VIFPortProfileOpenVSwitch(
        interface_id=spec["port_id"], datapath_type=spec["datapath_type"], create_port=True)
    vif = objects.vif.VIFOpenVSwitch(
        id=spec["port_id"], address=spec["mac"], vif_name=spec["tap"],
        bridge_name=spec["bridge"], network=network, port_profile=profile,
        plugin="ovs", has_traffic_filtering=False, preserve_on_delete=False, active=False)
    instance = objects.instance_info.InstanceInfo(uuid=spec["instance"], name="vm")
    getattr(os_vif, action)(vif, instance)


if __name__ == "__main__":
    main(sys.argv[1:])
