"""Whether this kernel has the Open vSwitch datapath (``datapath_type = system``)."""

from __future__ import annotations

from pyroute2.netlink import genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

FAMILY = "ovs_datapath"  # the generic netlink family the openvswitch module registers


def has_kernel_datapath() -> bool:
    """True when the kernel answers for the OVS datapath family.

    Asking for a generic netlink family makes the kernel load its module on
    demand, so a module that is installed but not loaded counts as present.
    """
    sock = GenericNetlinkSocket()
    try:
        sock.bind(FAMILY, genlmsg)
        return True
    except NetlinkError:
        return False
    finally:
        sock.close()
