"""What is wired on br-int, from a bridge view and the kernel's links (pure)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from ovsbr.drivers.base import Device, NetworkState, Observed
from ovsbr.drivers.openvswitch.view import BridgeView
from ovsbr.drivers.rtnl import Link

# iface-status: wired by ovsbr / its tap not there yet, or no longer ovsbr's
ACTIVE, INACTIVE = "active", "inactive"
EMPTY_VIEW = BridgeView({}, {}, {}, {}, set(), collections.Counter())


def observe(view: BridgeView, links: Iterable[Link]) -> Observed:
    """ovsbr's networks, the VM devices (wired or not) and the prepared rows.

    A row without its tap that ovs-vswitchd never opened is a prepared
    port; one it had open is stale (see :func:`vanished`). A tap that is
    down (e.g. recreated under the same name) is not wired yet: plugging
    brings it up and makes ovs-vswitchd reopen it; nor is a prepared port
    whose tap just appeared. Kernel links that are in no OVSDB row are
    candidate devices too.
    """
    kernel = {link.name: link for link in links}
    observed = Observed(iface_ids={})
    for name, (_, fp) in view.networks.items():
        observed.networks[name] = NetworkState(name, fp)
    for name in view.vm_ifaces:
        _see(name, view, kernel.get(name), observed)
    for name, link in kernel.items():
        if name not in view.vm_ifaces:
            _see(name, view, link, observed)
    return observed


def see_change(observed: Observed, view: BridgeView, link: Callable[[str], Link | None],
               names: Iterable[str]) -> None:
    """Move ``observed`` (what :func:`observe` said of this view object
    before it moved on) on in place, for the interface and link ``names``
    that changed since: what :func:`observe` would now say of each of them.

    The view's networks are not read: a change to them rebuilds the view
    (a new object), and the caller then observes whole.
    """
    carrying = observed.iface_ids
    for name in names:
        old = observed.devices.pop(name, None)
        if old is not None and old.iface_id:
            rest = tuple(n for n in carrying[old.iface_id] if n != name)
            if rest:
                carrying[old.iface_id] = rest
            else:
                del carrying[old.iface_id]
        observed.prepared.pop(name, None)
        _see(name, view, link(name), observed)


def _see(name: str, view: BridgeView, link: Link | None, observed: Observed) -> None:
    """What one name is: a VM interface's device or prepared row, a kernel
    link no OVSDB row names, or nothing of ovsbr's concern."""
    iface = view.vm_ifaces.get(name)
    if iface is not None:
        if not iface.type and link is None:
            if name not in view.ofports:
                observed.prepared[name] = iface.network
            return
        wired = iface.type or (link.up and iface.status != INACTIVE)
        observed.devices[name] = Device(name, iface.mac, iface.iface_id,
                                        iface.network if wired else None)
        if iface.iface_id:  # by name: the last carries it (reconciler.carrier)
            carrying = observed.iface_ids
            carrying[iface.iface_id] = tuple(sorted(
                (*carrying.get(iface.iface_id, ()), name)))
    elif link is not None and name not in view.names and name != "lo" \
            and link.kind not in ("openvswitch", "bridge"):
        observed.devices[name] = Device(name, link.mac)


def vanished(view: BridgeView, kernel: set[str]) -> list[str]:
    """Rows ovsbr added for taps that no longer exist, to delete.

    Only rows ovs-vswitchd had opened: a prepared row (no OpenFlow port
    yet) is waiting for its tap, and the reconciler removes it when its
    port goes. Rows someone else added (libvirt) are theirs to remove.
    """
    return [i.name for i in view.vm_ifaces.values()
            if i.added and not i.type and i.name not in kernel and i.name in view.ofports]
