"""The openvswitch datapath: OVSDB through ovsdbapp, flows from ovsbr's app.

Layout (as Neutron's): one integration bridge (``br-int``) holds every VM
port; each physical network's bridge from ``bridge_mappings`` (``br-ex``,
which holds the NIC and stays the operator's) is joined to it by a pair of
patch ports. ``br-int`` runs ``fail_mode=secure`` with its controller set
to the agent's own OpenFlow listener, where the L2-learning app keeps the
pipeline of :mod:`ovsbr.openflow.pipeline`: VM ports are access ports,
the patch port is a trunk, and VLAN tags are pushed and popped only there.

State lives in OVSDB itself, so a restarted agent adopts it instead of
rebuilding: networks as ``external_ids:ovsbr-net-<name>`` on br-int (their
id and fingerprint), wired ports as ``external_ids:ovsbr-network`` on the
Port, and ``ovsbr-owned`` on everything ovsbr created. Only marked rows are
ever deleted.

- :mod:`.view`: br-int's rows converted once per OVSDB change (pure);
- :mod:`.observe` and :mod:`.bindings` (pure): what is wired, and what the
  OpenFlow app must bind, from a view, the links and the desired state;
- :mod:`.ovsdb`: the OVSDB client and its transactions (I/O);
- :mod:`.controller`: the OpenFlow listener and its TLS (I/O);
- :mod:`.driver`: the :class:`OpenvSwitchDriver` that sequences them.
"""

from ovsbr.drivers.openvswitch.driver import OpenvSwitchDriver

__all__ = ["OpenvSwitchDriver"]
