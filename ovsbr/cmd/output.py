"""The CLI's output: tables for people, JSON and YAML for scripts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import Any

import yaml

from ovsbr.exceptions import OvsbrError


class CliError(OvsbrError):
    pass


def get(mapping: dict, kind: str, name: str) -> Any:
    """The named object, or a CliError that names what is missing."""
    if name not in mapping:
        raise CliError(f"no {kind} named {name!r}")
    return mapping[name]


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def table(rows: list[dict[str, Any]], columns: Iterable[str]) -> str:
    columns = list(columns)
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def emit(args: argparse.Namespace, data: Any, columns: Iterable[str] | None = None) -> None:
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    elif args.format == "yaml":
        print(yaml.safe_dump(data, sort_keys=False), end="")
    elif isinstance(data, list):
        print(table(data, columns))
    else:
        width = max(len(k) for k in data) if data else 0
        for k, v in data.items():
            print(f"{k.ljust(width)}  {'' if v is None else v}")
