"""The checks every road into desired state shares, and the error they raise.

Networks and ports (:mod:`ovsbr.model`) and security groups
(:mod:`ovsbr.secgroups.model`) are validated with the same helpers, so an
operator meets one wording whatever the object: the field, then what is
allowed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

IFNAMSIZ = 15  # the kernel's limit for an interface name, without the NUL
# Names end up in file names, device names and OVSDB external_ids: keep them
# to a safe alphabet that no shell, path or netlink layer will reinterpret.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
NAME_RULE = "1-63 characters: letters, digits, '.', '_', '-', starting with a letter or digit"


class ValidationError(ValueError):
    """Bad desired state; ``field`` names what the operator must fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def compact(obj: Any) -> dict[str, Any]:
    """A dataclass's fields that are set: documents and the store stay short."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(obj).items() if v is not None}


def check_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(field, f"{value!r} is not a valid name ({NAME_RULE})")
    return value


def check_int(field: str, value: Any, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; digits in a string are accepted (CLI flags)."""
    if isinstance(value, bool):
        raise ValidationError(field, f"{value!r} is not an integer in {lo}-{hi}")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(field, f"{value!r} is not an integer in {lo}-{hi}")
    return value


def check_keys(kind: str, data: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise ValidationError(kind, f"expected a mapping with keys {', '.join(allowed)}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(
            f"{kind}.{unknown[0]}", f"unknown key; allowed keys: {', '.join(allowed)}"
        )


def to_bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise ValidationError(field, f"{value!r} is not a boolean (true or false)")


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(field, f"{value!r} is not one of {', '.join(choices)}")
    return value
