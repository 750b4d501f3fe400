"""Port security for Linux bridges: nftables rules in the bridge family.

The openvswitch driver enforces port security in its OpenFlow pipeline; a
Linux bridge has no pipeline, so frames entering the bridge from a VM's tap
are checked in an nftables ``bridge`` table (the job Neutron's Linux bridge
agent gave ebtables and arptables). Both compile the same
:class:`~ovsbr.secgroups.policy.PortPolicy`:

* no 802.1Q/802.1ad tagged frames;
* with a declared MAC, only that source MAC;
* with declared IPs, only the policy's admitted ARP sender and IPv4/IPv6
  source addresses.

The base chain sends each tap's frames to its own chain through one
verdict map (``iifname vmap @ports``), so a port that comes, goes or changes
is one libnftables transaction touching its chain and its map element
(:func:`port_changes`), not a rewrite of every port's rules: at 1,000
filtered ports the whole table was thousands of rules per new tap. The
whole table (:func:`ruleset`) is still written at start, after a resync,
when a batch is refused, and while security groups (stateful chains, which
reference every port) are in it. Either way a change is one transaction and
never leaves the table half-written. Both are plain data, unit-tested, sent
through libnftables' own JSON API, not the ``nft`` command: no strings
reach a shell or a parser of ours.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ovsbr.drivers.linuxbridge import nft_secgroups
from ovsbr.drivers.linuxbridge.nft_expr import ether_type as _ether_type
from ovsbr.drivers.linuxbridge.nft_expr import match as _match
from ovsbr.drivers.linuxbridge.nft_expr import payload as _payload
from ovsbr.exceptions import FeatureMissing
from ovsbr.secgroups import policy as pp

LOG = logging.getLogger(__name__)
FAMILY = "bridge"
BASE_CHAIN = "vm-ports"
PORT_MAP = "ports"  # tap name -> jump to its chain
# Before anything else on the bridge's prerouting hook, and before the
# bridge learns the source MAC: a spoofed frame must not poison its table.
PRIORITY = -300


# nftables' name of each checked frame type and of its source address.
PROTOCOL = {pp.ETH_ARP: ("arp", "saddr ip"), pp.ETH_IPV4: ("ip", "saddr"),
            pp.ETH_IPV6: ("ip6", "saddr")}


@dataclasses.dataclass(frozen=True)
class PortFilter:
    """One tap, the policy its chains enforce, and its bridge (whose
    conntrack zone its connections live in)."""

    device: str
    policy: pp.PortPolicy
    bridge: str | None = None


def _device(f: PortFilter) -> str:
    return f.device


def table_name(bridge_prefix: str) -> str:
    """One table per agent, named for its bridge prefix like its bridges."""
    return "ovsbr_" + bridge_prefix.replace("-", "_")


def _set(values: list) -> Any:
    return values[0] if len(values) == 1 else {"set": values}


def _source(admit: pp.Admit) -> Any:
    net = admit.prefix
    if net is None:
        return admit.source
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _port_rules(policy: pp.PortPolicy) -> list[list[dict]]:
    """The rules of one port's chain, in order; each is a list of expressions."""
    # 802.1Q/802.1ad from a VM: no VLAN hopping, as on the OVS access ports.
    rules: list[list[dict]] = [[_ether_type({"set": ["vlan", "8021ad"]}), {"drop": None}]]
    if policy.mac is not None:
        rules.append([_match(_payload("ether", "saddr"), policy.mac, "!="), {"drop": None}])
    if policy.admit is None:
        return rules
    for ethertype in pp.SOURCE_CHECKED:
        proto, field = PROTOCOL[ethertype]
        admits = policy.sources(ethertype)
        for a in admits:
            if a.udp is not None:
                rules.append([_ether_type(proto), _match(_payload(proto, field), _source(a)),
                              _match(_payload("udp", "sport"), a.udp[0]),
                              _match(_payload("udp", "dport"), a.udp[1]), {"accept": None}])
        plain = [_source(a) for a in admits if a.udp is None]
        if plain:
            rules.append([_ether_type(proto), _match(_payload(proto, field), _set(plain)),
                          {"accept": None}])
        rules.append([_ether_type(proto), {"drop": None}])
    return rules


def ruleset(table: str, filters: list[PortFilter]) -> dict:
    """The whole table as one libnftables JSON batch that replaces it atomically.

    ``add`` then ``delete`` then ``add`` of the table: the delete cannot fail
    on a missing table, and the kernel applies the batch as one transaction.
    """
    t = {"family": FAMILY, "name": table}
    cmds: list[dict] = [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}},
                        {"add": {"chain": {"family": FAMILY, "table": table,
                                           "name": BASE_CHAIN, "type": "filter",
                                           "hook": "prerouting", "prio": PRIORITY,
                                           "policy": "accept"}}}]
    stateful = [(f.device, f.bridge or "", f.policy.firewall) for f in filters
                if f.policy.firewall is not None]
    for expr in nft_secgroups.zone_rules([b for _, b, _ in stateful if b]):
        # Before the jumps below, whose accept ends the chain; before
        # conntrack (priority -200), which must see the zone.
        cmds.append({"add": {"rule": {"family": FAMILY, "table": table, "chain": BASE_CHAIN,
                                      "expr": expr}}})
    cmds.append({"add": {"map": {"family": FAMILY, "table": table, "name": PORT_MAP,
                                 "type": "ifname", "map": "verdict"}}})
    cmds.append({"add": {"rule": {"family": FAMILY, "table": table, "chain": BASE_CHAIN,
                                  "expr": [{"vmap": {"key": {"meta": {"key": "iifname"}},
                                                     "data": f"@{PORT_MAP}"}}]}}})
    for f in sorted(filters, key=_device):
        cmds += _add_port(table, f)
    if stateful:
        cmds += nft_secgroups.commands(table, stateful)
    return {"nftables": cmds}


def _chain(device: str) -> str:
    return f"port-{device}"


def _element(table: str, device: str) -> dict:
    return {"family": FAMILY, "table": table, "name": PORT_MAP,
            "elem": [[device, {"jump": {"target": _chain(device)}}]]}


def _fill(table: str, f: PortFilter) -> list[dict]:
    return [{"add": {"rule": {"family": FAMILY, "table": table, "chain": _chain(f.device),
                              "expr": expr}}} for expr in _port_rules(f.policy)]


def _add_port(table: str, f: PortFilter) -> list[dict]:
    return [{"add": {"chain": {"family": FAMILY, "table": table, "name": _chain(f.device)}}},
            *_fill(table, f), {"add": {"element": _element(table, f.device)}}]


def port_changes(table: str, before: dict[str, PortFilter | None],
                 after: dict[str, PortFilter | None]) -> dict | None:
    """One batch taking the named taps' filters from ``before`` to ``after``
    (None: none), leaving every other port's chain alone; None when only the
    whole table can say it (security groups involved)."""
    if any(f is not None and f.policy.firewall is not None
           for f in (*before.values(), *after.values())):
        return None
    cmds: list[dict] = []
    for device in sorted(after):
        old, new = before.get(device), after[device]
        chain = {"family": FAMILY, "table": table, "name": _chain(device)}
        if old is not None and new is not None:
            cmds += [{"flush": {"chain": chain}}, *_fill(table, new)]
        elif old is not None:
            cmds += [{"delete": {"element": {**_element(table, device), "elem": [device]}}},
                     {"flush": {"chain": chain}}, {"delete": {"chain": chain}}]
        elif new is not None:
            cmds += _add_port(table, new)
    return {"nftables": cmds}


class NftPortSecurity:
    """Keeps the kernel's table equal to the wanted filters, one batch per change."""

    def __init__(self, table: str):
        self.table = table
        self._nft = None
        self._applied: dict[str, PortFilter] | None = None  # tap -> filter in the kernel
        self._stateful_ports = False  # the table holds security groups: written whole
        self._lock = threading.Lock()
        self.missing: str | None = None
        # Why stateful filtering (security groups) cannot work here, if so.
        self.stateful: str | None = None

    def probe(self) -> str | None:
        """None if nftables bridge filtering works here, else why not."""
        try:
            import nftables  # noqa: PLC0415 - optional until a port needs it
        except ImportError:
            self.missing = ("port security on linuxbridge needs libnftables' Python "
                            "binding (pip package pip-nftables, Debian nftables)")
            return self.missing
        try:
            nft = nftables.Nftables()
            nft.set_json_output(True)
            probe = f"{self.table}_probe"
            rc, _, err = nft.json_cmd({"nftables": [
                {"add": {"table": {"family": FAMILY, "name": probe}}},
                {"delete": {"table": {"family": FAMILY, "name": probe}}}]})
        except OSError as e:  # libnftables.so missing
            rc, err = 1, str(e)
        if rc != 0:
            self.missing = ("port security on linuxbridge needs nftables bridge-family "
                            f"filtering (kernel nf_tables, libnftables): {err.strip()}")
            return self.missing
        self._nft = nft
        self.missing = None
        self.stateful = self._probe_conntrack(nft, probe)
        return None

    @staticmethod
    def _probe_conntrack(nft, probe: str) -> str | None:
        """None if bridge-family conntrack works, else the one line that says why.

        The kernel refuses a ``ct`` match in a bridge table unless
        nf_conntrack_bridge is loaded (it asks for the module itself where
        modules can load): no silent filtering of less than asked.
        """
        t = {"family": FAMILY, "name": probe}
        rc, _, err = nft.json_cmd({"nftables": [
            {"add": {"table": t}},
            {"add": {"chain": {"family": FAMILY, "table": probe, "name": "ct"}}},
            {"add": {"rule": {"family": FAMILY, "table": probe, "chain": "ct", "expr": [
                _match({"ct": {"key": "state"}}, ["established"], "in"),
                {"accept": None}]}}},
            {"delete": {"table": t}}]})
        if rc == 0:
            return None
        return ("security groups on linuxbridge need the kernel module nf_conntrack_bridge "
                f"(bridge-family conntrack), which this kernel lacks ({err.strip()})")

    def check(self, wanted: PortFilter) -> None:
        """Refuse a filter this host cannot enforce, naming what is missing."""
        if self.missing:
            raise FeatureMissing(self.missing)
        if wanted.policy.firewall is not None and self.stateful:
            raise FeatureMissing(self.stateful)

    def apply(self, filters: Mapping[str, PortFilter], force: bool = False,
              devices: Iterable[str] | None = None) -> None:
        """Make the table hold ``filters`` (tap -> filter). ``devices``: the
        only taps whose filter may have changed since the last call (None:
        any). One batch for those taps when it can; the whole table at the
        first call, when forced, or when that batch is refused."""
        with self._lock:
            applied = self._applied
            changes = None
            if applied is not None and not force:
                names = set(filters) | set(applied) if devices is None else set(devices)
                changes = {d: filters.get(d) for d in names if filters.get(d) != applied.get(d)}
                if not changes:
                    return
            if self._nft is None:
                if not filters:
                    return
                raise FeatureMissing(self.missing or "nftables not probed")
            if changes is not None and not self._stateful_ports:
                batch = port_changes(self.table, {d: applied.get(d) for d in changes}, changes)
                if batch is not None:
                    rc, _, err = self._nft.json_cmd(batch)
                    if rc == 0:
                        for d, f in changes.items():
                            if f is None:
                                applied.pop(d, None)
                            else:
                                applied[d] = f
                        return
                    LOG.warning("nftables refused a change of %d port(s) (%s); writing "
                                "table %s whole", len(changes), err.strip(), self.table)
            rc, _, err = self._nft.json_cmd(ruleset(self.table, list(filters.values())))
            if rc != 0:
                self._applied = None
                raise FeatureMissing(f"nftables rejected the port-security rules: "
                                     f"{err.strip()}")
            self._applied = dict(filters)
            self._stateful_ports = any(f.policy.firewall is not None for f in filters.values())
            LOG.debug("port security: %d filtered port(s) in table %s", len(filters),
                      self.table)

    def remove(self) -> None:
        if self._nft is None and self.probe():
            return  # no nftables here, so no table of ours either
        with self._lock:
            t = {"family": FAMILY, "name": self.table}
            self._nft.json_cmd({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]})
            self._applied = None
