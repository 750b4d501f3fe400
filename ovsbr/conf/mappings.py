"""Parse KEY:VALUE list options such as physical_interface_mappings."""

from __future__ import annotations

from ovsbr import model
from ovsbr.exceptions import ConfigError


def parse_mappings(option: str, items: list[str], value_kind: str) -> dict[str, str]:
    """Return {physnet: value}; refuse malformed, duplicate or unsafe entries.

    ``value_kind`` names what the right-hand side is (INTERFACE, BRIDGE) in the
    error, so the operator sees the expected form.
    """
    result: dict[str, str] = {}
    owners: dict[str, str] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(option, f"{raw!r} is not PHYSNET:{value_kind}")
        if not model.NAME_RE.match(key):
            raise ConfigError(option, f"physical network {key!r} is not {model.NAME_RULE}")
        if not model.IFNAME_RE.match(value):
            raise ConfigError(option, f"{value_kind.lower()} {value!r} is not {model.IFNAME_RULE}")
        if key in result:
            raise ConfigError(option, f"physical network {key!r} is mapped twice")
        if value in owners:
            raise ConfigError(
                option, f"{value_kind.lower()} {value!r} is mapped to both "
                f"{owners[value]!r} and {key!r}")
        result[key] = value
        owners[value] = key
    return result
