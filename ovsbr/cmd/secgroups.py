"""``ovsbr security-group ...``: groups and their rules, written through the store.

As for networks and ports, every write is one Store.update whose result is
validated whole, so a refused rule or a delete that would leave a dangling
reference writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from ovsbr import store
from ovsbr.cmd.output import CliError, emit, get
from ovsbr.model import Topology
from ovsbr.secgroups import model as sgm
from ovsbr.validation import ValidationError

GROUP_COLUMNS = ("name", "rules", "ports", "description")
RULE_COLUMNS = ("id", "direction", "ethertype", "protocol", "ports", "icmp", "remote")


def _rule_row(rule: sgm.Rule) -> dict:
    data = rule.to_dict()
    row = {k: data.get(k) for k in ("id", "direction", "ethertype", "protocol")}
    row["protocol"] = row["protocol"] if row["protocol"] is not None else "any"
    if rule.port_range_min is not None:
        row["ports"] = (str(rule.port_range_min) if rule.port_range_min == rule.port_range_max
                        else f"{rule.port_range_min}:{rule.port_range_max}")
    if rule.icmp_type is not None:
        row["icmp"] = f"{rule.icmp_type}" + (f"/{rule.icmp_code}"
                                              if rule.icmp_code is not None else "")
    row["remote"] = (f"group {rule.remote_group}" if rule.remote_group
                     else rule.remote_ip_prefix or "any")
    return row


def _members(topo: Topology, name: str) -> list[str]:
    return sorted(p.name for p in topo.ports.values() if name in (p.security_groups or ()))


def group_create(args, st: store.Store) -> None:
    group = sgm.group_from_dict({"name": args.name, "description": args.description})

    def change(t: Topology) -> None:
        if group.name in t.security_groups:
            raise CliError(f"security group {group.name} already exists")
        t.security_groups[group.name] = group

    st.update(change, scope=())  # no port: a shared store leaves the ports unread
    emit(args, group.to_dict())


def group_list(args, st: store.Store) -> None:
    topo = st.load()
    emit(args, [{"name": g.name, "rules": len(g.rules), "ports": len(_members(topo, g.name)),
                 "description": g.description}
                for g in sorted(topo.security_groups.values(), key=lambda g: g.name)],
         GROUP_COLUMNS)


def group_show(args, st: store.Store) -> None:
    topo = st.load()
    group = get(topo.security_groups, "security group", args.name)
    if args.format != "table":
        emit(args, dict(group.to_dict(), ports=_members(topo, group.name)))
        return
    emit(args, {"name": group.name, "description": group.description,
                "ports": ",".join(_members(topo, group.name))})
    print()
    emit(args, [_rule_row(r) for r in group.rules], RULE_COLUMNS)


def group_delete(args, st: store.Store) -> None:
    """Refused while ports use the group; rules of other groups that name it as
    their remote go with it, as Neutron deletes them."""
    removed: list[str] = []

    def change(t: Topology) -> None:
        get(t.security_groups, "security group", args.name)
        users = _members(t, args.name)
        if users:
            raise CliError(f"security group {args.name} is used by port(s) "
                           f"{', '.join(users)}; take it off them first (ovsbr port set)")
        del t.security_groups[args.name]
        removed.clear()
        for other in list(t.security_groups.values()):
            keep = tuple(r for r in other.rules if r.remote_group != args.name)
            if len(keep) != len(other.rules):
                removed.extend(f"{other.name}/{r.id}" for r in other.rules
                               if r.remote_group == args.name)
                t.security_groups[other.name] = dataclasses.replace(other, rules=keep)

    st.update(change)
    for rule in removed:
        print(f"removed rule {rule} (its remote group is gone)")


def _port_range(text: str | None) -> tuple[str | None, str | None]:
    if text is None:
        return None, None
    lo, sep, hi = text.partition(":")
    if not lo or (sep and not hi):
        raise ValidationError("port_range", f"{text!r} is not PORT or MIN:MAX (e.g. 8000:8080)")
    return lo, hi if sep else lo


def rule_create(args, st: store.Store) -> None:
    pmin, pmax = _port_range(args.port_range)
    data = {"id": args.id, "direction": args.direction, "ethertype": args.ethertype,
            "protocol": args.protocol, "port_range_min": pmin, "port_range_max": pmax,
            "icmp_type": args.icmp_type, "icmp_code": args.icmp_code,
            "remote_ip_prefix": args.remote_ip, "remote_group": args.remote_group}
    rule = sgm.rule_from_dict({k: v for k, v in data.items() if v is not None})

    def change(t: Topology) -> None:
        group = get(t.security_groups, "security group", args.group)
        for other in group.rules:
            if other.content() == rule.content():
                raise CliError(f"security group {group.name} already has this rule: "
                               f"{other.id}")
        rules = [*group.rules, rule]
        sgm.check_rules(f"security group {group.name}", rules)
        t.security_groups[group.name] = dataclasses.replace(group, rules=tuple(rules))

    st.update(change, scope=())
    emit(args, rule.to_dict())


def rule_delete(args, st: store.Store) -> None:
    def change(t: Topology) -> None:
        group = get(t.security_groups, "security group", args.group)
        keep = tuple(r for r in group.rules if r.id != args.rule)
        if len(keep) == len(group.rules):
            raise CliError(f"security group {group.name} has no rule {args.rule!r} "
                           f"(ovsbr security-group show {group.name} lists them)")
        t.security_groups[group.name] = dataclasses.replace(group, rules=keep)

    st.update(change, scope=())


def add_parsers(sub: argparse._SubParsersAction,
                fmt: Callable[[argparse.ArgumentParser], None],
                show_delete: Callable[..., None]) -> None:
    """``security-group`` and its ``rule`` subcommands (``fmt`` and
    ``show_delete`` are the CLI's own, so every object reads alike)."""
    sg = sub.add_parser("security-group", help="security groups (stateful filtering)")
    acts = sg.add_subparsers(dest="action", required=True)
    p = acts.add_parser("create", help="declare a security group (no rules: drops all)")
    p.add_argument("name")
    p.add_argument("--description")
    fmt(p)
    p.set_defaults(func=group_create)
    p = acts.add_parser("list", help="list security groups")
    fmt(p)
    p.set_defaults(func=group_list)
    show_delete(acts, group_show, "a group, its rules and its ports", group_delete,
                "delete a security group no port uses")

    rule = acts.add_parser("rule", help="a group's rules").add_subparsers(
        dest="rule_action", required=True)
    p = rule.add_parser("create", help="allow traffic of one kind (Neutron's rule fields)")
    p.add_argument("group")
    p.add_argument("--direction", required=True, choices=sgm.DIRECTIONS)
    p.add_argument("--ethertype", default="IPv4", choices=sgm.ETHERTYPES)
    p.add_argument("--protocol", help=sgm.PROTOCOL_RULE + " (default any)")
    p.add_argument("--port-range", metavar="MIN:MAX",
                   help="destination ports (tcp, udp, sctp): PORT or MIN:MAX")
    p.add_argument("--icmp-type")
    p.add_argument("--icmp-code")
    remote = p.add_mutually_exclusive_group()
    remote.add_argument("--remote-ip", metavar="PREFIX",
                        help="the other end's addresses (default: anywhere)")
    remote.add_argument("--remote-group", metavar="GROUP",
                        help="the other end is a member of this group")
    p.add_argument("--id", help="the rule's id (default: derived from its content)")
    fmt(p)
    p.set_defaults(func=rule_create)
    p = rule.add_parser("delete", help="delete a rule; the connections it allowed are cut")
    p.add_argument("group")
    p.add_argument("rule", help="the rule's id")
    p.set_defaults(func=rule_delete)
