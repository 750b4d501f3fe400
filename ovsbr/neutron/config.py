"""Neutron-side options: the ``[ovsbr]`` group of neutron.conf / ml2_conf.ini.

The etcd options are the agents' own (:data:`ovsbr.conf.opts.ETCD_OPTS`),
read from this group, so Neutron and the hosts name one store the same way.
"""

from __future__ import annotations

from oslo_config import cfg

from ovsbr.conf.opts import ETCD_OPTS

GROUP = "ovsbr"

OPTS = [o for o in ETCD_OPTS if o.name != "lease_ttl"] + [
    cfg.FloatOpt("status_interval", default=1.0, min=0.1, max=60,
                 help="Seconds between reads of the agents' status in the "
                      "store; a port turns ACTIVE at most this long after "
                      "its host wired it."),
    cfg.IntOpt("report_interval", default=10, min=1, max=3600,
               help="Seconds between the heartbeats written to Neutron's "
                    "agents table for each live ovsbr host; keep it under "
                    "half of [DEFAULT] agent_down_time."),
    cfg.IntOpt("resync_interval", default=300, min=10, max=86400,
               help="Seconds between full comparisons of Neutron's database "
                    "with the store, which repair what a failed write or a "
                    "lost store left behind."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(OPTS, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, list(OPTS))]
