"""What is wired on br-int, from a bridge view and the kernel's links (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from ovsbr.drivers.base import Device, NetworkState, Observed
from ovsbr.drivers.openvswitch.view import BridgeView
from ovsbr.drivers.rtnl import Link

# iface-status: wired by ovsbr / its tap not there yet, or no longer ovsbr's
ACTIVE, INACTIVE = "active", "inactive"
EMPTY_VIEW = BridgeView({}, [], {}, {}, set(), set())


def observe(view: BridgeView, links: Iterable[Link]) -> Observed:
    """ovsbr's networks, the VM devices (wired or not) and the prepared rows.

    A row without its tap that ovs-vswitchd never opened is a prepared
    port; one it had open is stale (see :func:`vanished`). A tap that is
    down (e.g. recreated under the same name) is not wired yet: plugging
    brings it up and makes ovs-vswitchd reopen it; nor is a prepared port
    whose tap just appeared. Kernel links that are in no OVSDB row are
    candidate devices too.
    """
    links = list(links)
    observed = Observed()
    kernel = {link.name: link.up for link in links}
    for name, (_, fp) in view.networks.items():
        observed.networks[name] = NetworkState(name, fp)
    for iface in view.vm_ifaces:
        name, itype = iface.name, iface.type
        if not itype and name not in kernel:
            if name not in view.ofports:
                observed.prepared[name] = iface.network
            continue
        wired = itype or (kernel[name] and iface.status != INACTIVE)
        observed.devices[name] = Device(name, iface.mac, iface.iface_id,
                                        iface.network if wired else None)
    for link in links:
        if link.name in view.names or link.name == "lo" or link.kind in (
                "openvswitch", "bridge") or link.name in observed.devices:
            continue
        observed.devices[link.name] = Device(link.name, link.mac)
    return observed


def vanished(view: BridgeView, kernel: set[str]) -> list[str]:
    """Rows ovsbr added for taps that no longer exist, to delete.

    Only rows ovs-vswitchd had opened: a prepared row (no OpenFlow port
    yet) is waiting for its tap, and the reconciler removes it when its
    port goes. Rows someone else added (libvirt) are theirs to remove.
    """
    return [i.name for i in view.vm_ifaces
            if i.added and not i.type and i.name not in kernel and i.name in view.ofports]
