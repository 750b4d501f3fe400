"""ovsbr-agent: wire the host's VM devices as the store declares."""

from __future__ import annotations

import os
import signal
import sys

from oslo_config import cfg
from oslo_log import log as logging

from ovsbr import drivers, metrics, privileges, store
from ovsbr.agent.control import ControlError, ControlServer
from ovsbr.agent.service import Agent
from ovsbr.cmd.common import check_options, config_error, fail, quiet_eventlet
from ovsbr.conf import opts
from ovsbr.exceptions import OvsbrError

LOG = logging.getLogger(__name__)
PROG = "ovsbr-agent"


def build(conf: cfg.ConfigOpts) -> Agent:
    """Validate the configuration, load the plugins; touch nothing yet."""
    check_options(conf)
    driver = drivers.load(conf)
    driver.check_config()
    st = store.load(conf)
    return Agent(st, driver, conf.host, conf.resync_interval, conf.vxlan.local_ip)


CLI_OPTS = [cfg.BoolOpt("cleanup", default=False,
                        help="Remove every bridge, uplink, patch port and mark ovsbr "
                             "created on this host, then exit (VM taps and the "
                             "operator's bridges are left alone).")]


def main(argv: list[str] | None = None) -> int:
    quiet_eventlet()
    CONF = cfg.CONF  # noqa: N806 - os-ken reads its options from the global
    opts.register(CONF)
    CONF.register_cli_opts(CLI_OPTS)
    logging.register_options(CONF)
    logging.set_defaults(default_log_levels=logging.get_default_log_levels() + [
        "pyroute2=WARNING", "os_ken=INFO", "ovsdbapp=INFO", "stevedore=ERROR"])
    try:
        CONF(sys.argv[1:] if argv is None else argv, project="ovsbr", prog=PROG)
    except cfg.Error as e:
        return fail(PROG, config_error(e), 2)
    logging.setup(CONF, "ovsbr")
    try:
        agent = build(CONF)
        held = privileges.require()
    except OvsbrError as e:
        return fail(PROG, str(e))
    # Nothing the agent writes is for everyone: the store names every VM
    # port, the log every device. Group ovsbr (operators) may read; the
    # file store makes its own files group-writable (store/file.py).
    os.umask(0o027)
    LOG.info("ovsbr-agent starting on host %s as %s: driver %s, store %s (%s), resync "
             "every %ss", CONF.host, held.describe(), agent.driver.describe(), CONF.store,
             CONF.state_path, CONF.resync_interval)

    def _stop(signum, _frame):
        LOG.info("signal %d: stopping; the datapath is left as it is", signum)
        agent.stop()

    if CONF.cleanup:
        try:
            agent.cleanup()
        except OvsbrError as e:
            return fail(PROG, str(e))
        LOG.info("cleanup done: ovsbr's networks removed from the datapath")
        return 0

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    served = None
    control = ControlServer(CONF.control_socket, {"mac-table": agent.mac_tables})
    try:
        if CONF.metrics.enabled:
            served = metrics.Metrics(agent)
            agent.on_reconciled = served.on_reconciled
            served.serve(CONF.metrics.bind_host, CONF.metrics.bind_port)
        try:
            control.start()
        except ControlError as e:
            # A diagnostic channel: without it the agent still wires VMs.
            LOG.error("%s; ovsbr mac-table will not work on this host", e)
        agent.start()
        agent.run()
    except OvsbrError as e:
        return fail(PROG, str(e))
    finally:
        control.stop()
        if served is not None:
            served.stop()
    LOG.info("ovsbr-agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
