"""Configuration loading shared by ovsbr-agent and ovsbr."""

from __future__ import annotations

import os
import sys
import warnings

from oslo_config import cfg

from ovsbr.conf import opts
from ovsbr.exceptions import ConfigError
from ovsbr.privileges import group_of


def check_options(conf: cfg.ConfigOpts) -> None:
    """Read every registered option now, so a bad value stops us at start.

    oslo.config checks types and choices lazily, on first access; reading
    them all here turns a bad value into one ConfigError naming the option.
    """
    for group, options in opts.GROUPS.items():
        section = conf if group == "DEFAULT" else conf[group]
        for opt in options:
            try:
                getattr(section, opt.dest)
            except (cfg.ConfigFileValueError, ValueError) as e:
                detail = str(e)
                if "is not valid:" in detail:
                    detail = detail.split("is not valid:", 1)[1].strip()
                raise ConfigError(f"[{group}] {opt.name}", detail) from None


def quiet_eventlet() -> None:
    """Hide eventlet's deprecation notice: python-ovs (via os-ken) and etcd3gw
    (via futurist) import eventlet when it is installed; ovsbr runs on native
    threads and never uses it, and an operator must not see it on every call."""
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def fail(prog: str, message: str, code: int = 1) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def config_error(e: cfg.Error) -> str:
    """oslo.config's error as one line; an unreadable file says whose it is."""
    if not isinstance(e, cfg.ConfigFilesPermissionDeniedError):
        return str(e)
    owners = []
    for path in e.config_files:
        group = group_of(path)
        owners.append(f"{path} is for group {group!r}" if group else f"{path} is unreadable")
    return (f"permission denied reading the configuration for uid {os.getuid()}: "
            f"{'; '.join(owners)}: add the user to that group (usermod -aG GROUP USER)")
