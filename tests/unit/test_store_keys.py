"""The etcd store's key parsing, without etcd."""

import json

import pytest

from ovsbr.exceptions import StoreError
from ovsbr.store import keys

BASE = "/ovsbr/topology/"


def doc(**objs):
    out = {BASE + "revision": "3"}
    for key, value in objs.items():
        kind, name = key.split("__")
        out[f"{BASE}{kind}/{name}"] = json.dumps(value)
    return out


def test_unchanged_keys_keep_their_objects_and_changed_ones_are_parsed():
    k = doc(networks__n1={"name": "n1", "type": "local"},
            ports__p1={"name": "p1", "network": "n1", "device": "v1"})
    topo, cache = keys.topology(BASE, k, {})
    assert topo.revision == 3 and set(topo.ports) == {"p1"}
    k[BASE + "ports/p2"] = json.dumps({"name": "p2", "network": "n1", "device": "v2"})
    again, cache2 = keys.topology(BASE, k, cache)
    assert again.ports["p1"] is topo.ports["p1"] and again.networks["n1"] is topo.networks["n1"]
    assert set(cache2) == set(k) - {BASE + "revision"}


@pytest.mark.parametrize("key, text, words", [
    ("ports/p1", "{not json", "etcd key /ovsbr/topology/ports/p1: invalid content"),
    ("ports/p1", json.dumps({"name": "p9", "network": "n1", "device": "v"}),
     "key names 'p1' but the value names 'p9'"),
    ("ports/p1", json.dumps({"name": "p1", "network": "nope", "device": "v"}),
     "unknown network 'nope'"),
    ("revision", "x", "etcd key /ovsbr/topology/revision: invalid content"),
])
def test_garbage_is_refused_naming_the_key(key, text, words):
    k = doc(networks__n1={"name": "n1", "type": "local"})
    k[BASE + key] = text
    with pytest.raises(StoreError) as e:
        keys.topology(BASE, k, {})
    assert words in str(e.value)


def test_hosts_skip_garbage():
    assert keys.hosts({"/ovsbr/hosts/a": '{"driver": "x"}', "/ovsbr/hosts/b": "{"}) == {
        "a": {"driver": "x"}}
