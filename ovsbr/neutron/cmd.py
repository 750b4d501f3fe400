"""``ovsbr-neutron-sync``: make the store equal to Neutron's database, once.

The workers do this at start and every ``[ovsbr] resync_interval``; an
operator runs it after restoring etcd from a backup, or to see the
differences at once. It reads neutron-server's own configuration::

    ovsbr-neutron-sync --config-file /etc/neutron/neutron.conf \\
        --config-file /etc/neutron/plugins/ml2/ml2_conf.ini
"""

from __future__ import annotations

import sys

from neutron import manager
from neutron.common import config as n_config
from neutron_lib import context as n_context
from oslo_config import cfg

from ovsbr.exceptions import OvsbrError
from ovsbr.neutron import config
from ovsbr.neutron.worker import resync
from ovsbr.store.etcd import EtcdStore

PROG = "ovsbr-neutron-sync"


def main(argv: list[str] | None = None) -> int:
    n_config.register_common_config_options()
    n_config.init(sys.argv[1:] if argv is None else argv, prog=PROG)
    n_config.setup_logging()
    manager.init()  # loads ML2 and its drivers, ovsbr's among them
    config.register(cfg.CONF)
    try:
        store = EtcdStore(cfg.CONF, group=config.GROUP)
        try:
            counts = resync(n_context.get_admin_context(), store)
        finally:
            store.close()
    except OvsbrError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    print(f"{PROG}: store {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
