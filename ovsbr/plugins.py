"""Load a stevedore plugin named by a config option, or say what exists."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from stevedore import driver as sd_driver
from stevedore import exception as sd_exc

from ovsbr.exceptions import ConfigError


def available(namespace: str) -> list[str]:
    """Installed plugin names, read from metadata without importing them."""
    return sorted({ep.name for ep in metadata.entry_points(group=namespace)})


def load(namespace: str, option: str, name: str, *args: Any) -> Any:
    """Instantiate plugin ``name`` of ``namespace`` with ``args``.

    An unknown name is a configuration error naming ``option`` and the
    installed choices, raised before anything is touched.
    """
    try:
        mgr = sd_driver.DriverManager(namespace, name, invoke_on_load=True,
                                      invoke_args=args)
    except sd_exc.NoMatches:
        raise ConfigError(option, f"unknown value {name!r}; available: "
                          f"{', '.join(available(namespace))}") from None
    return mgr.driver
