"""The etcd store's keys and values, as pure functions (see :mod:`.etcd`).

etcd's gRPC gateway speaks base64 keys and values and ranges by end key;
the topology is one JSON object per key, validated whole.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from ovsbr.exceptions import StoreError
from ovsbr.model import Topology, ValidationError, network_from_dict, port_from_dict
from ovsbr.secgroups.model import group_from_dict

# Key folder -> (parser of one value, the Topology dict it goes in).
KINDS = {"networks": (network_from_dict, "networks"), "ports": (port_from_dict, "ports"),
         "security_groups": (group_from_dict, "security_groups")}

LOG = logging.getLogger(__name__)
Parsed = dict[str, tuple[str, Any]]  # key -> (its text, the object parsed from it)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def decode(kvs: list[dict]) -> dict[str, str]:
    """Key -> value of a range response's ``kvs``, decoded."""
    return {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in kvs}


def get(key: str) -> dict[str, Any]:
    """A transaction's request reading one key."""
    return {"request_range": {"key": b64(key)}}


def single(resp: dict, i: int) -> str | None:
    """The value of the single key read by a transaction's ``i``-th request, if any."""
    responses = resp.get("responses", [])
    if i >= len(responses):
        return None
    kvs = responses[i].get("response_range", {}).get("kvs", [])
    return unb64(kvs[0].get("value", "")) if kvs else None


def puts(kvs: list[dict]) -> list[tuple[str, str, str, int]]:
    """A range response's ``kvs`` as watch events: (PUT, key, value, mod revision)."""
    return [("PUT", unb64(kv["key"]), unb64(kv.get("value", "")),
             int(kv.get("mod_revision", 0))) for kv in kvs]


def range_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def topology(base: str, keys: dict[str, str], parsed: Parsed) -> tuple[Topology, Parsed]:
    """Build and validate the topology from the keys under ``base``.

    Objects are re-used from ``parsed`` where a key's text is unchanged: a
    watch event re-parses only the keys it changed (at 10,000 ports, parsing
    everything again was most of an agent's update latency); the
    cross-checks still run on the whole result. Returns the topology and the
    new cache; StoreError names the key at fault.
    """
    topo = Topology()
    cache: Parsed = {}
    for key, text in sorted(keys.items()):
        rel = key[len(base):]
        if rel == "revision":
            topo.revision = revision(key, text)
            continue
        kind, _, name = rel.partition("/")
        if kind not in KINDS:
            continue
        hit = parsed.get(key)
        obj = hit[1] if hit is not None and hit[0] == text else parse(key, kind, name, text)
        cache[key] = (text, obj)
        getattr(topo, KINDS[kind][1])[obj.name] = obj
    try:
        topo.validate()
    except ValidationError as e:
        raise StoreError(f"etcd {base}: invalid content: {e}") from e
    return topo, cache


def revision(key: str, text: str) -> int:
    """The ``topology/revision`` key's value; StoreError names the key."""
    try:
        return int(text)
    except ValueError as e:
        raise StoreError(f"etcd key {key}: invalid content: {e}") from e


def parse(key: str, kind: str, name: str, text: str) -> Any:
    """One object from its key's text; StoreError names the key."""
    try:
        data = json.loads(text)
        obj = KINDS[kind][0](data)
        if obj.name != name:
            what = kind[:-1].replace("_", " ")
            raise ValidationError(f"{what} {name}", f"key names {name!r} but "
                                  f"the value names {obj.name!r}")
    except (ValueError, TypeError) as e:
        raise StoreError(f"etcd key {key}: invalid content: {e}") from e
    return obj


def hosts(keys: dict[str, str]) -> dict[str, dict]:
    """Host name -> registration, from the ``hosts/`` keys; garbage skipped."""
    result = {}
    for key, text in keys.items():
        try:
            result[key.rsplit("/", 1)[1]] = json.loads(text)
        except ValueError:
            LOG.warning("etcd key %s: not JSON; ignored", key)
    return result


def status_key(rel: str) -> tuple[str, str | None] | None:
    """(host, port or None for the host's head) of a key below ``status/``
    (``<host>`` or ``<host>/ports/<port>``); None for anything else."""
    host, _, port = rel.partition("/ports/")
    if not host or "/" in host:
        return None
    return host, port or None
