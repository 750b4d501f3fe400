"""The watcher's delta path (ovsbr.store.mirror), against the full build."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.exceptions import StoreError
from ovsbr.port_index import PortIndex
from ovsbr.store import keys
from ovsbr.store.mirror import ClaimIndex, Mirror
from tests.unit.test_store_keys import doc

PREFIX = "/ovsbr/"
BASE = PREFIX + "topology/"

# A small universe, so that events collide: shared segments, devices, MACs,
# addresses, dangling networks and groups all happen often.
networks = st.builds(
    lambda name, kind, seg: {"name": name, "type": kind, "segmentation_id": seg,
                             "physical_network": "physnet1" if kind in ("flat", "vlan") else None},
    st.sampled_from(["n0", "n1", "n2"]), st.sampled_from(["vxlan", "vlan", "flat", "local"]),
    st.integers(100, 101))
ports = st.builds(
    lambda name, net, dev, host, mac, ip, groups: {
        "name": name, "network": net, "device": dev, "host": host,
        "mac": f"52:54:00:00:00:0{mac}", "ips": [f"192.0.2.{ip}"],
        "security_groups": groups, "port_security": True},
    st.sampled_from(["p0", "p1", "p2", "p3"]), st.sampled_from(["n0", "n1", "n2"]),
    st.sampled_from(["tap0", "tap1"]), st.sampled_from(["hv0", "hv1"]),
    st.integers(1, 3), st.integers(1, 3), st.lists(st.sampled_from(["g0", "g1"]), max_size=2,
                                                   unique=True))
groups = st.builds(
    lambda name, remote: {"name": name, "rules": [
        {"direction": "ingress", "protocol": "tcp", "remote_group": remote}] if remote else []},
    st.sampled_from(["g0", "g1"]), st.sampled_from([None, "g0", "g1", "g2"]))


def _put(folder, obj):
    return ("PUT", f"{BASE}{folder}/{obj['name']}",
            json.dumps({k: v for k, v in obj.items() if v is not None}))


events = st.one_of(
    networks.map(lambda o: _put("networks", o)),
    ports.map(lambda o: _put("ports", o)),
    groups.map(lambda o: _put("security_groups", o)),
    st.builds(lambda folder, name: ("DELETE", f"{BASE}{folder}/{name}", ""),
              st.sampled_from(["networks", "ports", "security_groups"]),
              st.sampled_from(["n0", "n1", "p0", "p1", "g0", "g1"])),
    st.integers(1, 9).map(lambda r: ("PUT", BASE + "revision", str(r))),
    st.just(("PUT", BASE + "ports/p9", "{not json")),
)


def _full(k):
    try:
        return keys.topology(BASE, k, {})[0], None
    except StoreError as e:
        return None, str(e)


@given(st.lists(st.lists(events, min_size=1, max_size=4), max_size=12))
@settings(deadline=None, max_examples=300)
def test_any_sequence_of_batches_ends_where_the_full_build_does(batches):
    mirror = Mirror(PREFIX, {BASE + "revision": "1"}, {})
    mirror.build()
    k = {BASE + "revision": "1"}
    for batch in batches:
        mirror.apply(batch)
        for kind, key, value in batch:
            if kind == "PUT":
                k[key] = value
            else:
                k.pop(key, None)
        want, error = _full(k)
        try:
            got = mirror.build()
        except StoreError as e:
            assert error is not None, f"delta refused a valid state: {e}"
            continue
        assert error is None, f"delta accepted an invalid state: {error}"
        assert got == want
        assert ClaimIndex.of(got).valid
        assert got.index() == PortIndex.of(got.ports)  # carried over = rebuilt


NET = {"name": "n1", "type": "vxlan", "segmentation_id": 5}


def test_a_valid_delta_parses_only_what_changed_and_shares_the_rest():
    m = Mirror(PREFIX, doc(networks__n1=NET, ports__p1={"name": "p1", "network": "n1",
                                                          "device": "v1"}), {})
    first = m.build()
    m.apply([("PUT", BASE + "ports/p2",
              json.dumps({"name": "p2", "network": "n1", "device": "v2"})),
             ("PUT", BASE + "revision", "2")])
    second = m.build()
    assert m.full_builds == 1 and second.revision == 2 and set(second.ports) == {"p1", "p2"}
    assert second.ports["p1"] is first.ports["p1"] and second.networks["n1"] is first.networks["n1"]
    assert set(first.ports) == {"p1"}, "a topology handed out never changes"


def test_an_invalid_delta_names_what_the_full_build_names_and_a_fix_recovers():
    m = Mirror(PREFIX, doc(networks__n1=NET), {"/ovsbr/hosts/hv1": '{"local_ip": "x"}'})
    assert m.build().hosts == {"hv1": {"local_ip": "x"}}
    m.apply([("PUT", BASE + "ports/p1",
              json.dumps({"name": "p1", "network": "nope", "device": "v1"}))])
    with pytest.raises(StoreError, match="unknown network 'nope'"):
        m.build()
    m.apply([("PUT", BASE + "networks/nope", json.dumps({"name": "nope", "type": "local"})),
             ("DELETE", "/ovsbr/hosts/hv1", "")])
    topo = m.build()
    assert set(topo.ports) == {"p1"} and topo.hosts == {}
    m.apply([("PUT", BASE + "ports/p1", "{garbage")])
    with pytest.raises(StoreError, match="etcd key /ovsbr/topology/ports/p1: invalid content"):
        m.build()
