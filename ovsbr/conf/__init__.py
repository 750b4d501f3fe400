"""oslo.config options of ovsbr, one module per concern, listed by opts.py."""

from oslo_config import cfg

from ovsbr.conf import opts

CONF = cfg.CONF
opts.register(CONF)
