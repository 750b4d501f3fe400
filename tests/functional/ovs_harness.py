"""The openvswitch side of the conformance suite, on the private OVS sandbox."""

from __future__ import annotations

import json
import os
import re

from ovsbr.drivers.openvswitch.view import TUNNEL_KEY
from ovsbr.testing.netns import link_exists
from tests.functional.conftest import DATAPATH_TYPE, Harness, free_port


class OvsHarness(Harness):
    name = "openvswitch"
    # netdev here (no openvswitch module); system in the stock-kernel VM.
    datapath_type = DATAPATH_TYPE
    offload_off = DATAPATH_TYPE == "netdev"  # netdev + veth: TCP stalls otherwise
    enforces_port_security = True

    def __init__(self, env, tmp_path, identity, ovs):
        super().__init__(env, tmp_path, identity)
        self.ovs = ovs
        self.br_int = f"{env.prefix}int"
        self.of_port = free_port()
        self.phys_bridges: dict[str, str] = {}

    def add_physnet(self, physnet: str, nic: str) -> None:
        bridge = f"{self.env.prefix}x{len(self.phys_bridges)}"
        self.ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge,
                       f"datapath_type={self.datapath_type}", "--", "add-port", bridge, nic)
        self.phys_bridges[physnet] = bridge

    def sections(self) -> dict:
        return {
            "DEFAULT": {"driver": "openvswitch", "resync_interval": 5},
            "ovs": {"ovsdb_connection": self.ovs.connection,
                    "integration_bridge": self.br_int, "datapath_type": self.datapath_type,
                    "bridge_mappings": [f"{k}:{v}" for k, v in self.phys_bridges.items()],
                    "of_listen_port": self.of_port},
        }

    def _diagnostics(self):
        yield self.ovs.report(self.br_int)

    def wired_into(self, tap: str) -> str | None:
        res = self.ovs.vsctl("--if-exists", "get", "Port", tap, "external_ids:ovsbr-network",
                             check=False)
        return res.stdout.strip().strip('"') or None

    def network_exists(self, network: str) -> bool:
        return f"ovsbr-net-{network}" in self.ovs.get("Bridge", self.br_int, "external_ids")

    def detach_by_hand(self, tap: str) -> None:
        self.ovs.vsctl("del-port", tap)

    def count_networks(self) -> int:
        ids = self.ovs.get("Bridge", self.br_int, "external_ids")
        return ids.count("ovsbr-net-")

    def wired_devices(self) -> list[str]:
        return [p for p in self.ovs.ports(self.br_int) if not p.startswith("int-")]

    def audit(self, agent) -> list[str]:
        networks, ports = self.desired(agent)
        problems = []
        ids = self.ovs.get("Bridge", self.br_int, "external_ids")
        declared = set(re.findall(r'"?ovsbr-net-([^"=]+)"?=', ids))
        if declared != networks:
            problems.append(f"networks in OVSDB {sorted(declared)} != {sorted(networks)}")
        rows = self._rows("Port", "name,external_ids")
        br_ports = set(self.ovs.ports(self.br_int))
        links = set(os.listdir("/sys/class/net"))
        wired = {name: ids.get("ovsbr-network", "") for name, ids in rows.items()
                 if name in br_ports and not name.startswith("int-") and name in links}
        ofports = {ofport: name for name, ofport in self._rows("Interface", "name,ofport").items()
                   if name in br_ports}
        if wired != ports:
            problems.append(f"ports on {self.br_int} {wired} != declared {ports}")
        # Declared ports whose device is absent are held ready (prepared),
        # in their network; no other row without a device may stay.
        awaited = {p["device"]: p["network"] for p in agent.cli_json("export")["ports"]
                   if p.get("device") and p["device"] not in links}
        held = {name: ids.get("ovsbr-network", "") for name, ids in rows.items()
                if name in br_ports and not name.startswith("int-")
                and name not in links and TUNNEL_KEY not in ids}
        if held != awaited:
            problems.append(f"ports held for absent devices {held} != awaited {awaited}")
        flows = self.ovs.flows(self.br_int)
        gens = {int(m, 16) >> 32 for m in re.findall(r"cookie=(0x[0-9a-f]+)", " ".join(flows))}
        if len(gens) != 1:
            problems.append(f"flows of {len(gens)} agent generations: {sorted(gens)}")
        ingress = [int(m) for f in flows if "table=0," in f
                   for m in re.findall(r"in_port=(\d+)", f)]
        # A held row's flows are in place, under the number it asked for.
        requested = {n for name, n in self._rows("Interface", "name,ofport_request").items()
                     if name in held and n != -1}
        stale = sorted({p for p in ingress if p not in ofports and p not in requested})
        if stale:
            problems.append(f"ingress flows for ports no longer there: {stale}")
        if requested - set(ingress):
            problems.append(f"held ports without their flows: {sorted(requested - set(ingress))}")
        return problems

    def _rows(self, table: str, columns: str) -> dict:
        """name -> second column, for every row: one ovs-vsctl call, not one per row."""
        out = self.ovs.vsctl("-f", "json", f"--columns={columns}", "list", table).stdout
        result = {}
        for name, value in json.loads(out)["data"]:
            if isinstance(value, list) and value[0] == "map":
                value = dict(value[1])
            elif isinstance(value, list):  # an empty set: no ofport yet
                value = -1
            result[name] = value
        return result

    def delete_bridge_by_hand(self, network: str) -> None:
        self.ovs.vsctl("del-br", self.br_int)

    def device_exists(self, name: str) -> bool:
        return link_exists(name)

    def supports_vlan(self) -> bool:
        return True  # OVS does VLANs in userspace

    def cleanup(self) -> None:
        self.stop_agents()
        for bridge in [self.br_int, *self.phys_bridges.values()]:
            self.ovs.vsctl("--if-exists", "del-br", bridge, check=False)
