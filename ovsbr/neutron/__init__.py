"""Neutron's ML2 mechanism driver ``ovsbr`` (the optional extra ``ovsbr[neutron]``).

Neutron owns the intent; the store is the contract between Neutron and the
hosts, as it is between the CLI and the hosts. Agents never talk to Neutron.

- :mod:`.mapping` (pure, no Neutron import): Neutron dicts -> model objects,
  the host registry entry -> :class:`~.mapping.HostInfo`;
- :mod:`.binding` (pure): which segment a host can serve and its VIF;
- :mod:`.status` (pure): agents' status documents -> port status changes;
- :mod:`.mech_driver`: the thin ML2 driver (binds, writes in postcommit);
- :mod:`.worker`: the status and agents worker, and the Neutron -> store
  resync, run by ``neutron-periodic-workers``.
"""
