"""The linuxbridge datapath: one Linux bridge per network, over netlink.

- :mod:`.layout` (pure): names, ownership marks, fingerprints, what the
  link table says is built, overlay forwarding-database differences;
- :mod:`.netlink_ops`: the netlink requests, taking plain values;
- :mod:`.portsec`: port policies compiled to one nftables table;
- :mod:`.filters`: which port wants which filter, and which taps changed;
- :mod:`.driver`: the :class:`LinuxBridgeDriver` that sequences them.
"""

from ovsbr.drivers.linuxbridge.driver import LinuxBridgeDriver

__all__ = ["LinuxBridgeDriver"]
