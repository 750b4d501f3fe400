"""ovsbr: declare networks and ports, read what the agent wired.

Every write goes through Store.update, which validates the whole result
before writing, so a refused command leaves the store as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

import yaml
from oslo_config import cfg

from ovsbr import model, store
from ovsbr.cmd import secgroups
from ovsbr.cmd import status as views
from ovsbr.cmd.common import check_options, config_error, fail, quiet_eventlet
from ovsbr.cmd.output import CliError, emit, get
from ovsbr.conf import opts
from ovsbr.exceptions import OvsbrError
from ovsbr.model import Topology, ValidationError

PROG = "ovsbr"
NETWORK_COLUMNS = ("name", "type", "physical_network", "segmentation_id", "mtu")
PORT_COLUMNS = ("name", "network", "device", "iface_id", "mac", "ips", "port_security",
                "security_groups", "status")


# -- status ----------------------------------------------------------------------
def _port_statuses(st: store.Store) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for host, status in sorted(st.read_status().items()):
        for name, port in status.get("ports", {}).items():
            result[name] = dict(port, host=host)
    return result


def _port_row(port: model.Port, statuses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    row = port.to_dict()
    row.setdefault("port_security", port.port_security)
    st = statuses.get(port.name)
    row["status"] = st["status"] if st else "unknown"
    if st and st.get("reason"):
        row["reason"] = st["reason"]
    if st and st.get("host"):
        row["host"] = st["host"]
    return row


# -- commands --------------------------------------------------------------------
def _update(st: store.Store, change: Callable[[Topology], None],
            ports: Iterable[str] | None = None) -> Topology:
    """``ports``: the only ports ``change`` touches (none: ``()``), so that a
    shared store reads and writes their keys alone (see Store.update)."""
    _, after = st.update(change, scope=ports)
    return after


def network_create(args, st):
    net = model.network_from_dict({k: v for k, v in {
        "name": args.name, "type": args.type, "physical_network": args.physical_network,
        "segmentation_id": args.segmentation_id, "mtu": args.mtu}.items() if v is not None})

    def change(t: Topology) -> None:
        if net.name in t.networks:
            raise CliError(f"network {net.name} already exists")
        t.networks[net.name] = net

    _update(st, change, ports=())
    emit(args, net.to_dict())


def network_list(args, st):
    topo = st.load()
    emit(args, [n.to_dict() for n in sorted(topo.networks.values(), key=lambda n: n.name)],
          NETWORK_COLUMNS)


def network_show(args, st):
    topo = st.load()
    net = get(topo.networks, "network", args.name)
    data = net.to_dict()
    data["ports"] = sorted(p.name for p in topo.ports_of(net.name))
    status = {}
    for host_status in st.read_status().values():
        status.update(host_status.get("networks", {}))
    data["status"] = status.get(net.name, {}).get("status", "unknown")
    if status.get(net.name, {}).get("reason"):
        data["reason"] = status[net.name]["reason"]
    emit(args, data)


def network_delete(args, st):
    def change(t: Topology) -> None:
        get(t.networks, "network", args.name)
        ports = sorted(p.name for p in t.ports_of(args.name))
        if ports:
            raise CliError(f"network {args.name} still has ports: {', '.join(ports)}; "
                           "delete them first")
        del t.networks[args.name]

    _update(st, change)


def port_create(args, st):
    data = {"name": args.name, "network": args.network, "device": args.device,
            "iface_id": args.iface_id, "mac": args.mac,
            "port_security": not args.no_port_security, "ips": args.ip,
            "host": args.host or args.conf_host, "security_groups": args.security_group}
    port = model.port_from_dict({k: v for k, v in data.items() if v is not None})

    def change(t: Topology) -> None:
        if port.name in t.ports:
            raise CliError(f"port {port.name} already exists")
        t.ports[port.name] = port

    _update(st, change, ports=[port.name])
    emit(args, _port_row(port, {}))


def port_set(args, st):
    """Change a port's security groups: the new set replaces the old one whole."""
    def change(t: Topology) -> None:
        port = get(t.ports, "port", args.name)
        data = port.to_dict()
        data["security_groups"] = [] if args.no_security_group else args.security_group
        if args.security_group is None and not args.no_security_group:
            raise CliError("nothing to change: give --security-group or --no-security-group")
        t.ports[port.name] = model.port_from_dict(data)

    after = _update(st, change, ports=[args.name])
    emit(args, _port_row(after.ports[args.name], {}))


def port_list(args, st):
    topo = st.load()
    statuses = _port_statuses(st)
    rows = [_port_row(p, statuses) for p in sorted(topo.ports.values(), key=lambda p: p.name)]
    if args.network:
        rows = [r for r in rows if r["network"] == args.network]
    emit(args, rows, PORT_COLUMNS)


def port_show(args, st):
    topo = st.load()
    port = get(topo.ports, "port", args.name)
    row = _port_row(port, _port_statuses(st))
    dev = _port_statuses(st).get(port.name, {}).get("device")
    if dev:
        row["bound_device"] = dev
    emit(args, row)


def port_delete(args, st):
    def change(t: Topology) -> None:
        get(t.ports, "port", args.name)
        del t.ports[args.name]

    _update(st, change, ports=[args.name])


def _read_document(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise CliError(f"{path}: not valid YAML or JSON: {e}") from e
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping with 'networks' and 'ports' lists")
    return data


def apply(args, st):
    doc = Topology.from_dict({k: v for k, v in _read_document(args.file).items()
                              if k != "revision"}, validate=False)
    # Ports without a host are this host's, as with `port create`.
    doc.ports = {n: p if p.host else dataclasses.replace(p, host=args.conf_host)
                 for n, p in doc.ports.items()}
    changes: list[str] = []

    def change(t: Topology) -> None:
        changes.clear()
        for kind, current, wanted in (("network", t.networks, doc.networks),
                                      ("security group", t.security_groups,
                                       doc.security_groups),
                                      ("port", t.ports, doc.ports)):
            for name, obj in sorted(wanted.items()):
                if name not in current:
                    changes.append(f"created {kind} {name}")
                elif current[name] != obj:
                    changes.append(f"updated {kind} {name}")
                current[name] = obj
            if args.prune:
                for name in sorted(set(current) - set(wanted)):
                    changes.append(f"deleted {kind} {name}")
                    del current[name]

    before, after = st.update(change)
    if args.format == "json":
        print(json.dumps({"revision": after.revision, "changes": changes}, indent=2))
        return
    for line in changes:
        print(line)
    print(f"{len(changes)} change(s); revision {after.revision}"
          if changes else f"no changes; revision {before.revision}")


def export(args, st):
    data = st.load().to_dict()
    data.pop("revision")
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")


# -- argument parsing ------------------------------------------------------------
def _fmt(p: argparse.ArgumentParser, choices=("table", "json", "yaml"), default="table"):
    p.add_argument("-f", "--format", choices=choices, default=default,
                   help=f"output format (default {default})")


def _show_delete(sub, show, show_help: str, delete, delete_help: str) -> None:
    p = sub.add_parser("show", help=show_help)
    p.add_argument("name")
    _fmt(p)
    p.set_defaults(func=show)
    p = sub.add_parser("delete", help=delete_help)
    p.add_argument("name")
    p.set_defaults(func=delete)


def _groups(p: argparse.ArgumentParser) -> None:
    p.add_argument("--security-group", action="append", metavar="GROUP",
                   help="filter the port with this security group (repeatable; "
                        "needs --mac and port security)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Declare ovsbr networks "
                                     "and ports; show what the agent wired.")
    parser.add_argument("--config-file", action="append", default=[],
                        help="oslo.config file, as given to ovsbr-agent "
                             "(default: /etc/ovsbr/ovsbr.conf if present)")
    sub = parser.add_subparsers(dest="object", required=True)

    net = sub.add_parser("network", help="networks").add_subparsers(dest="action",
                                                                     required=True)
    p = net.add_parser("create", help="declare a network")
    p.add_argument("name")
    p.add_argument("--type", required=True, choices=model.NETWORK_TYPES)
    p.add_argument("--physical-network")
    p.add_argument("--segmentation-id")
    p.add_argument("--mtu")
    _fmt(p)
    p.set_defaults(func=network_create)
    p = net.add_parser("list", help="list networks")
    _fmt(p)
    p.set_defaults(func=network_list)
    _show_delete(net, network_show, "show a network", network_delete,
                 "delete a network without ports")

    port = sub.add_parser("port", help="ports").add_subparsers(dest="action", required=True)
    p = port.add_parser("create", help="declare a VM port")
    p.add_argument("name")
    p.add_argument("--network", required=True)
    p.add_argument("--device", help="tap device name, e.g. vnet0")
    p.add_argument("--iface-id", help="OVS external_ids:iface-id (Nova port id)")
    p.add_argument("--mac")
    p.add_argument("--ip", action="append", metavar="ADDRESS",
                   help="an address the port owns (repeatable); with port security on, "
                        "the only IP/ARP sources it may use")
    p.add_argument("--no-port-security", action="store_true")
    _groups(p)
    p.add_argument("--host", help="hypervisor whose agent wires the port "
                                  "(default: this host's [DEFAULT] host)")
    _fmt(p)
    p.set_defaults(func=port_create)
    p = port.add_parser("set", help="change a port's security groups")
    p.add_argument("name")
    _groups(p)
    p.add_argument("--no-security-group", action="store_true",
                   help="take every security group off the port")
    _fmt(p)
    p.set_defaults(func=port_set)
    p = port.add_parser("list", help="list ports with their status")
    p.add_argument("--network")
    _fmt(p)
    p.set_defaults(func=port_list)
    _show_delete(port, port_show, "show a port and its status", port_delete, "delete a port")

    secgroups.add_parsers(sub, _fmt, _show_delete)
    p = sub.add_parser("status", help="what the agent has wired, per port")
    p.add_argument("--watch", action="store_true",
                   help="a live view of every host, refreshed in place (Ctrl-C ends it)")
    p.add_argument("--interval", type=views.positive_float, default=2.0,
                   help="seconds between refreshes with --watch (default 2)")
    p.add_argument("--count", type=int, help="with --watch: stop after this many refreshes")
    _fmt(p)
    p.set_defaults(func=views.status)
    p = sub.add_parser("mac-table", help="learned MACs per bridge, with counters, "
                       "asked of this host's agent (openvswitch driver)")
    _fmt(p)
    p.set_defaults(func=views.mac_table)
    p = sub.add_parser("apply", help="apply a YAML/JSON topology document in one write")
    p.add_argument("file", help="document path, or - for standard input")
    p.add_argument("--prune", action="store_true",
                   help="also delete networks, ports and security groups the document "
                        "does not list")
    _fmt(p, ("table", "json"))
    p.set_defaults(func=apply)
    p = sub.add_parser("export", help="print the whole topology as a document")
    _fmt(p, ("yaml", "json"), "yaml")
    p.set_defaults(func=export)
    return parser


def load_conf(config_files: list[str]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    opts.register(conf)
    args = []
    for f in config_files:
        args += ["--config-file", f]
    conf(args, project="ovsbr", prog=PROG)
    check_options(conf)
    return conf


def main(argv: list[str] | None = None) -> int:
    quiet_eventlet()
    args = build_parser().parse_args(argv)
    try:
        conf = load_conf(args.config_file)
        args.conf_host = conf.host
        args.conf_control_socket = conf.control_socket
        st = store.load(conf)
        try:
            args.func(args, st)
        finally:
            st.close()
    except ValidationError as e:
        return fail(PROG, f"invalid {e}")
    except OvsbrError as e:
        return fail(PROG, str(e))
    except cfg.Error as e:
        return fail(PROG, config_error(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
