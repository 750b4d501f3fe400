"""PortIndex (ovsbr.port_index): updated = rebuilt, and the answers of a scan."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.agent.overlay import overlays
from ovsbr.model import Topology, network_from_dict, port_from_dict
from ovsbr.port_index import PortIndex

BASE = port_from_dict({"name": "x", "network": "n0", "device": "t",
                       "mac": "52:54:00:00:00:01", "ips": ["192.0.2.1"]})
port = st.builds(
    lambda net, host, moving, groups: dataclasses.replace(
        BASE, network=net, host=host, migrating_to=moving, security_groups=tuple(groups)),
    st.sampled_from(["n0", "n1", "n2"]), st.sampled_from([None, "hv0", "hv1"]),
    st.sampled_from([None, "hv1", "hv2"]),
    st.lists(st.sampled_from(["g0", "g1"]), unique=True, max_size=2))
ports = st.dictionaries(st.sampled_from([f"p{i}" for i in range(6)]), port, max_size=6)


def named(d):
    return {n: dataclasses.replace(p, name=n) for n, p in d.items()}


@given(ports, ports)
@settings(deadline=None, max_examples=300)
def test_an_updated_index_equals_one_built_from_the_new_ports(old, new):
    old, new = named(old), named(new)
    changes = [(n, new.get(n)) for n in sorted(set(old) | set(new))]
    before = PortIndex.of(old)
    assert before.update(old, changes) == PortIndex.of(new)
    assert before == PortIndex.of(old), "the old index is left as it was"


@given(ports)
@settings(deadline=None, max_examples=200)
def test_the_index_answers_what_a_scan_of_every_port_answers(d):
    topo = Topology(networks={n: network_from_dict({"name": n, "type": "vxlan",
                                                    "segmentation_id": i + 1})
                              for i, n in enumerate(["n0", "n1", "n2"])},
                    ports=named(d),
                    hosts={h: {"local_ip": f"198.51.100.{i + 1}"}
                           for i, h in enumerate(["hv0", "hv1", "hv2"])})
    for host in ("hv0", "hv1", "hv2", "hv9"):
        assert set(topo.local_view(host).ports) == {
            n for n, p in topo.ports.items() if p.wired_on(host)}
        # Flood lists by brute force: every port of a network this host wires.
        local = {p.network for p in topo.ports.values() if p.wired_on(host)}
        want = {}
        for p in topo.ports.values():
            if p.network in local:
                ips = {topo.hosts[h]["local_ip"] for h in (p.host, p.migrating_to)
                       if h and h != host}
                want.setdefault(p.network, set()).update(ips)
        got = {n: set(o.vteps) for n, o in overlays(topo, host, None).items() if o.vteps}
        assert got == {n: v for n, v in want.items() if v}
    for net in ("n0", "n1", "n2"):
        assert [p.name for p in topo.ports_of(net)] == sorted(
            n for n, p in topo.ports.items() if p.network == net)
