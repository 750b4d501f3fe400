"""Security groups and their rules, as pure data with validation.

The semantics are Neutron's: a group holds allow rules, a port's rules are
the union of its groups' rules, whatever no rule allows is dropped, and a
rule's remote is either an address prefix or another group (its members'
addresses). Neutron's oddities are normalised by the Neutron mapping before
they reach :func:`rule_from_dict`; here every field has one canonical form,
so equal rules compare equal whoever wrote them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from ovsbr.validation import (
    ValidationError,
    check_choice,
    check_int,
    check_keys,
    check_name,
)

DIRECTIONS = ("ingress", "egress")
ETHERTYPES = ("IPv4", "IPv6")
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOL_NUMBERS.items()}
PORT_PROTOCOLS = (6, 17, 132)  # tcp, udp, sctp: the ones a port range applies to
ICMP_PROTOCOLS = (1, 58)
PROTOCOL_RULE = "tcp, udp, icmp, icmpv6, sctp, any, or a protocol number 0-255"
RULE_KEYS = ("id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
             "icmp_type", "icmp_code", "remote_ip_prefix", "remote_group")
GROUP_KEYS = ("name", "description", "rules")
MAX_RULES = 1000  # per group; Neutron's default quota is 100 per project


@dataclasses.dataclass(frozen=True, order=True)
class Rule:
    """One allow rule. ``protocol`` None = any; port range only for tcp/udp/sctp,
    ICMP type and code only for icmp/icmpv6; at most one remote."""

    id: str
    direction: str
    ethertype: str
    protocol: int | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    remote_ip_prefix: str | None = None
    remote_group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if self.protocol is not None:
            data["protocol"] = PROTOCOL_NAMES.get(self.protocol, self.protocol)
        return data

    def content(self) -> tuple:
        """Everything but the id: two rules with equal content are one rule."""
        return dataclasses.astuple(self)[1:]

    @property
    def version(self) -> int:
        return 4 if self.ethertype == "IPv4" else 6


@dataclasses.dataclass(frozen=True)
class SecurityGroup:
    name: str
    rules: tuple[Rule, ...] = ()
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        data["rules"] = [r.to_dict() for r in self.rules]
        return data


def protocol_number(field: str, value: Any) -> int | None:
    """A protocol by name or number as its number; None for any."""
    if value is None or value in ("any", "", -1, "-1"):
        return None
    if isinstance(value, str) and value.lower() in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[value.lower()]
    if isinstance(value, bool):
        raise ValidationError(field, f"{value!r} is not {PROTOCOL_RULE}")
    try:
        return check_int(field, value, 0, 255)
    except ValidationError:
        raise ValidationError(field, f"{value!r} is not {PROTOCOL_RULE}") from None


def _optional_int(field: str, value: Any, lo: int, hi: int) -> int | None:
    return None if value is None or value == "" else check_int(field, value, lo, hi)


def rule_id(content: tuple) -> str:
    """A rule's id when none is given: its content's digest, so a repeated
    ``rule create`` names the rule that already exists."""
    return "r-" + hashlib.sha1(repr(content).encode()).hexdigest()[:12]


def rule_from_dict(data: Mapping[str, Any], where: str = "rule") -> Rule:
    check_keys(where, data, RULE_KEYS)
    direction = check_choice(f"{where}: direction", data.get("direction"), DIRECTIONS)
    ethertype = check_choice(f"{where}: ethertype", data.get("ethertype", "IPv4"), ETHERTYPES)
    proto = protocol_number(f"{where}: protocol", data.get("protocol"))
    if proto == 1 and ethertype == "IPv6":
        proto = 58  # Neutron's API accepts icmp for IPv6 rules and means icmpv6
    if proto == 58 and ethertype == "IPv4":
        raise ValidationError(f"{where}: protocol", "icmpv6 needs ethertype IPv6")
    pmin = _optional_int(f"{where}: port_range_min", data.get("port_range_min"), 1, 65535)
    pmax = _optional_int(f"{where}: port_range_max", data.get("port_range_max"), 1, 65535)
    itype = _optional_int(f"{where}: icmp_type", data.get("icmp_type"), 0, 255)
    icode = _optional_int(f"{where}: icmp_code", data.get("icmp_code"), 0, 255)
    if pmin is not None or pmax is not None:
        if proto not in PORT_PROTOCOLS:
            raise ValidationError(f"{where}: port_range_min",
                                  "a port range needs protocol tcp, udp or sctp")
        pmin = pmax if pmin is None else pmin
        pmax = pmin if pmax is None else pmax
        if pmin > pmax:
            raise ValidationError(f"{where}: port_range_max",
                                  f"{pmax} is below port_range_min {pmin}")
        if (pmin, pmax) == (1, 65535):
            pmin = pmax = None  # every port: the same rule as no range
    if itype is not None or icode is not None:
        if proto not in ICMP_PROTOCOLS:
            raise ValidationError(f"{where}: icmp_type",
                                  "ICMP type and code need protocol icmp or icmpv6")
        if itype is None:
            raise ValidationError(f"{where}: icmp_code", "needs an icmp_type")
    prefix = data.get("remote_ip_prefix")
    group = data.get("remote_group")
    if prefix is not None and group is not None:
        raise ValidationError(f"{where}: remote_group",
                              "give remote_ip_prefix or remote_group, not both")
    if prefix is not None:
        try:
            net = ipaddress.ip_network(str(prefix).strip(), strict=False)
        except ValueError:
            raise ValidationError(f"{where}: remote_ip_prefix", f"{prefix!r} is not an IP "
                                  "prefix (e.g. 198.51.100.0/24 or 2001:db8::/32)") from None
        if net.version != (4 if ethertype == "IPv4" else 6):
            raise ValidationError(f"{where}: remote_ip_prefix",
                                  f"{prefix} is not an {ethertype} prefix")
        prefix = None if net.prefixlen == 0 else str(net)  # 0.0.0.0/0: anywhere
    if group is not None:
        group = check_name(f"{where}: remote_group", group)
    content = (direction, ethertype, proto, pmin, pmax, itype, icode, prefix, group)
    rid = data.get("id")
    rid = rule_id(content) if rid is None else check_name(f"{where}: id", rid)
    return Rule(rid, *content)


def group_from_dict(data: Mapping[str, Any]) -> SecurityGroup:
    check_keys("security_group", data, GROUP_KEYS)
    name = check_name("security_group.name", data.get("name"))
    where = f"security group {name}"
    desc = data.get("description")
    if desc is not None and (not isinstance(desc, str) or len(desc) > 255):
        raise ValidationError(f"{where}: description", "a text of at most 255 characters")
    raw = data.get("rules") or []
    if not isinstance(raw, list):
        raise ValidationError(f"{where}: rules", "expected a list of rules")
    if len(raw) > MAX_RULES:
        raise ValidationError(f"{where}: rules", f"{len(raw)} rules; at most {MAX_RULES}")
    rules = [rule_from_dict(r, f"{where}: rules[{i}]") for i, r in enumerate(raw)]
    check_rules(where, rules)
    return SecurityGroup(name, tuple(rules), desc or None)


def check_rules(where: str, rules: list[Rule]) -> None:
    """Rule ids unique in a group, and no rule twice (Neutron refuses both)."""
    ids: dict[str, int] = {}
    contents: dict[tuple, str] = {}
    for i, rule in enumerate(rules):
        if ids.setdefault(rule.id, i) != i:
            raise ValidationError(f"{where}: rules[{i}].id", f"{rule.id} is used twice")
        other = contents.setdefault(rule.content(), rule.id)
        if other != rule.id:
            raise ValidationError(f"{where}: rules[{i}]",
                                  f"the same rule already exists as {other}")


def normalize_groups(field: str, value: Any) -> tuple[str, ...] | None:
    """A port's security groups: names, each once, sorted; empty is None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(field, f"{value!r} is not a list of security group names")
    names = sorted({check_name(field, v.strip() if isinstance(v, str) else v) for v in value})
    return tuple(names) or None
