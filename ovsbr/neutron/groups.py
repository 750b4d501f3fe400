"""Security groups as Neutron's database has them, for the driver and the resync.

The store refuses a rule whose remote group it does not hold, so groups are
read with every group their rules name as remote, transitively.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from neutron_lib.plugins import directory

from ovsbr.neutron import mapping
from ovsbr.secgroups.model import SecurityGroup

LOG = logging.getLogger(__name__)


def fetch(ctx, names: Iterable[str]) -> dict[str, SecurityGroup]:
    """These groups and their remote groups, in ovsbr's terms. A rule ovsbr
    cannot represent is left out (it would only have allowed more) and
    logged; MappingError when a group itself cannot be written."""
    plugin = directory.get_plugin()
    ctx = ctx.elevated()  # remote groups may belong to other projects
    found: dict[str, SecurityGroup] = {}
    wanted = set(names)
    while wanted:
        for raw in plugin.get_security_groups(ctx, filters={"id": sorted(wanted)}):
            group, problems = mapping.security_group(raw)
            for problem in problems:
                LOG.warning("ovsbr: security group %s: %s; not enforced, so the group "
                            "allows less than Neutron says", group.name, problem)
            found[group.name] = group
        # Ids Neutron no longer has stay wanted no more: the store's
        # validation names them if a port still refers to one.
        missing = wanted - set(found)
        wanted = {r.remote_group for g in found.values() for r in g.rules
                  if r.remote_group} - set(found) - missing
    return found
