"""libnftables JSON expressions, as small pure builders (port security and
security groups write the same matches)."""

from __future__ import annotations

from typing import Any


def match(left: dict, right: Any, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def payload(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def ether_type(name: Any) -> dict:
    return match(payload("ether", "type"), name)
