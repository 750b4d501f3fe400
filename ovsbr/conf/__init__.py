"""oslo.config options of ovsbr, listed by opts.py.

Nothing is registered at import: the agent registers its options on its
own ``ConfigOpts`` (:func:`opts.register`), and ovsbr modules imported into
another service (the Neutron driver) must not add options to its global
``cfg.CONF``.
"""
