"""The OpenFlow side: ovsbr's listener, its TLS, and the app it runs."""

from __future__ import annotations

import os
import ssl
import time

from oslo_config import cfg

from ovsbr.exceptions import ConfigError, DriverError

APP_MODULE, APP_NAME = "ovsbr.openflow.l2_learning", "ovsbr_l2"
TLS_OPTIONS = ("of_ssl_key_file", "of_ssl_cert_file", "of_ssl_ca_cert_file")


def tls_context(key: str, cert: str, ca: str) -> ssl.SSLContext:
    """Mutual TLS: the controller proves itself and admits only CA-signed switches."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("[ovs] of_ssl_cert_file",
                          f"cannot load the controller's TLS files: {e}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_files(ovs: cfg.ConfigOpts.GroupAttr) -> tuple[str, str, str] | None:
    """The controller's TLS files (key, cert, CA): all three, or none."""
    values = [getattr(ovs, n) for n in TLS_OPTIONS]
    if not any(values):
        return None
    for name, value in zip(TLS_OPTIONS, values, strict=True):
        if not value:
            raise ConfigError(f"[ovs] {name}", "required when any of "
                              f"{', '.join(TLS_OPTIONS)} is set")
        if not os.access(value, os.R_OK):
            raise ConfigError(f"[ovs] {name}", f"{value!r} is not a readable file")
    return values[0], values[1], values[2]


def target(address: str, port: int, tls: bool) -> str:
    """The switch's view of the controller: ssl: when TLS is configured."""
    if ":" in address:
        address = f"[{address}]"
    return f"{'ssl' if tls else 'tcp'}:{address}:{port}"


def start(conf: cfg.ConfigOpts, ssl_context: ssl.SSLContext | None, dpid: int,
          bridge: str):
    """Listen for switches and run the L2-learning app; (runtime, app)."""
    from ovsbr.openflow.runtime import ControllerRuntime  # os-ken loads on use

    listen = (conf.ovs.of_listen_address, conf.ovs.of_listen_port)
    runtime = ControllerRuntime(APP_MODULE, listen, ssl_context)
    try:
        apps = runtime.start()
    except OSError as e:
        raise DriverError(f"[ovs] of_listen_port: {e}") from e
    app = apps[APP_NAME]
    of = conf.openflow
    app.configure(int(time.time()), of.mac_aging_time, of.max_macs_per_port)
    app.bridge(dpid, bridge)
    return runtime, app
