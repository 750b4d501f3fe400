"""Ports' copies for narrowed watches (ovsbr.store.copies), pure."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.model import Topology, network_from_dict, port_from_dict
from ovsbr.secgroups.model import group_from_dict
from ovsbr.store import copies

BASE = "/ovsbr/index/ports/"


def port(name, network="n0", host="hv0", groups=None, migrating_to=None, mac=1):
    return port_from_dict({k: v for k, v in {
        "name": name, "network": network, "device": f"t{name}", "host": host,
        "security_groups": groups, "migrating_to": migrating_to,
        "mac": f"52:54:00:00:00:{mac:02x}"}.items() if v is not None})


def test_a_port_has_a_copy_per_question_an_agent_asks():
    assert copies.keys(port("p", groups=["g1", "g2"], migrating_to="hv1")) == {
        "host/hv0/p", "host/hv1/p", "network/n0/p", "group/g1/p", "group/g2/p"}
    assert copies.keys(port("p", host=None)) == {"any-host/p", "network/n0/p"}
    assert copies.keys(None) == frozenset()


def test_ops_put_every_copy_of_a_changed_port_and_delete_only_the_left_ones():
    old = {"p": port("p", host="hv0", groups=["g1"])}
    gone, put = copies.ops([("p", port("p", host="hv1", groups=["g1"]))], old, 7)
    assert gone == {"host/hv0/p"}
    assert set(put) == {"host/hv1/p", "network/n0/p", "group/g1/p"}
    assert copies.unwrap(put["network/n0/p"]) == (
        json.dumps(port("p", host="hv1", groups=["g1"]).to_dict(), sort_keys=True), 7)
    gone, put = copies.ops([("p", None)], old, 8)
    assert gone == {"host/hv0/p", "network/n0/p", "group/g1/p"} and put == {}
    assert copies.unwrap("{}") is None and copies.unwrap("not json") is None


def test_an_agent_watches_its_overlays_and_remote_groups_only():
    topo = Topology()
    for name, kind, seg in (("vx", "vxlan", 5), ("vl", "vlan", 7), ("other", "vxlan", 6)):
        topo.networks[name] = network_from_dict(
            {"name": name, "type": kind, "segmentation_id": seg,
             **({"physical_network": "physnet1"} if kind == "vlan" else {})})
    topo.security_groups["web"] = group_from_dict({"name": "web", "rules": [
        {"direction": "ingress", "protocol": "tcp", "remote_group": "db"}]})
    topo.security_groups["db"] = group_from_dict({"name": "db", "rules": []})
    topo.ports["a"] = port("a", "vx", "hv0", ["web"])
    topo.ports["b"] = port("b", "vl", None, mac=2)
    topo.ports["c"] = port("c", "other", "hv1", ["db"], migrating_to="hv0", mac=3)
    topo.ports["d"] = port("d", "other", "hv2", ["web"], mac=4)
    assert copies.folders(topo, "hv0") == {
        "host/hv0/", "any-host/", "network/vx/", "network/other/", "group/db/"}
    assert copies.folders(topo, "hv9") == {"host/hv9/", "any-host/"}
    assert copies.folder_of("network/vx/a") == "network/vx/"


# Writes: (port, its new version's fields, or None: deleted), one transaction each.
versions = st.one_of(st.none(), st.fixed_dictionaries({
    "network": st.sampled_from(["n0", "n1"]), "host": st.sampled_from(["hv0", "hv1", None]),
    "groups": st.sampled_from([None, ["g0"], ["g0", "g1"]]),
    "migrating_to": st.sampled_from([None, "hv2"]), "mac": st.integers(1, 3)}))
writes = st.lists(st.tuples(st.sampled_from(["p0", "p1", "p2"]), versions), max_size=25)
FOLDERS = ["host/hv0/", "host/hv1/", "host/hv2/", "any-host/", "network/n0/", "network/n1/",
           "group/g0/", "group/g1/"]


@settings(max_examples=300, deadline=None)
@given(writes, st.sets(st.sampled_from(FOLDERS), min_size=1), st.randoms(use_true_random=False),
       st.sampled_from(FOLDERS), st.sets(st.sampled_from(FOLDERS)))
def test_merged_copies_end_as_the_ports_the_folders_hold_and_never_go_back(
        writes, watched, rnd, dropped, twice):
    """Each folder's stream in its own order, the streams interleaved at
    random, some folders heard from two streams: at the end every port in a
    watched folder is its last version, and no port is ever shown older
    than a version shown before."""
    truth: dict = {}
    written: dict = {}  # port -> revision of its last write
    streams: dict[str, list] = {f: [] for f in watched}
    for rev, (name, fields) in enumerate(writes, start=2):
        if fields and fields["host"] is None:
            fields = {**fields, "migrating_to": None}  # a migration has a source host
        new = port(name, **fields) if fields else None
        gone, put = copies.ops([(name, new)], truth, rev)
        for rel in gone:
            if copies.folder_of(rel) in streams:
                streams[copies.folder_of(rel)].append(("DELETE", BASE + rel, "", rev))
        for rel, text in put.items():
            if copies.folder_of(rel) in streams:
                streams[copies.folder_of(rel)].append(("PUT", BASE + rel, text, rev))
        if new is None:
            truth.pop(name, None)
        else:
            truth[name] = new
        written[name] = rev
    merged = copies.Copies()
    shown: dict = {}
    floor: dict = {}  # port -> the newest write it was shown at, or hidden by
    for folder in twice & watched:  # a second stream of the folder, on its own pace
        streams[folder + "#2"] = list(streams[folder])
    order = [f for f, events in streams.items() for _ in events]
    rnd.shuffle(order)
    for folder in order:
        event = streams[folder].pop(0)
        for name, text in merged.apply([event], BASE):
            if text is None:
                shown.pop(name, None)
                floor[name] = max(floor.get(name, 0), event[3])
                continue
            rev = copies.unwrap(text)[1]
            assert rev >= floor.get(name, 0), "a port went back to an older version"
            shown[name] = (rev, text)
            floor[name] = rev

    def expected(folders):
        return {n: (written[n], copies.value(p, written[n])) for n, p in truth.items()
                if any(copies.folder_of(k) in folders for k in copies.keys(p))}
    assert shown == expected(watched)
    for name, text in merged.drop(dropped):
        if text is None:
            shown.pop(name)
        else:
            shown[name] = (copies.unwrap(text)[1], text)
    assert shown == expected(watched - {dropped})
