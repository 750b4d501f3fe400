"""Desired-state stores (stevedore namespace ``ovsbr.stores``)."""

from __future__ import annotations

from oslo_config import cfg

from ovsbr import plugins
from ovsbr.store.base import Store

NAMESPACE = "ovsbr.stores"


def load(conf: cfg.ConfigOpts) -> Store:
    return plugins.load(NAMESPACE, "[DEFAULT] store", conf.store, conf)
