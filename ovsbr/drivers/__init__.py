"""Datapath drivers (stevedore namespace ``ovsbr.drivers``)."""

from __future__ import annotations

from oslo_config import cfg

from ovsbr import plugins
from ovsbr.drivers.base import Driver

NAMESPACE = "ovsbr.drivers"


def load(conf: cfg.ConfigOpts) -> Driver:
    return plugins.load(NAMESPACE, "[DEFAULT] driver", conf.driver, conf)
