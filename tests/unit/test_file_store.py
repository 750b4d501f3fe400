import json
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.exceptions import StoreError
from ovsbr.model import Network, Port, ValidationError
from ovsbr.store.file import FileStore, StatusText


@pytest.fixture
def store(tmp_path):
    return FileStore(path=str(tmp_path / "state"))


def add(name, type_="local"):
    def change(t):
        t.networks[name] = Network(name, type_)
    return change


def test_empty_store_then_atomic_write_with_revision_and_mode(store):
    assert store.load().revision == 0
    _, after = store.update(add("n1"))
    assert after.revision == 1
    assert store.load().networks["n1"].type == "local"
    # The store's group (operators) may read and write; nobody else.
    assert os.stat(store.path).st_mode & 0o777 == 0o660
    assert os.stat(store.dir).st_mode & 0o7777 == 0o2770
    assert os.stat(store.path + ".lock").st_mode & 0o777 == 0o660
    assert not [f for f in os.listdir(store.dir) if f.startswith(".")]
    # A change that changes nothing keeps the revision.
    _, same = store.update(lambda t: None)
    assert same.revision == 1


def test_refused_change_writes_nothing(store):
    store.update(add("n1"))
    before = open(store.path).read()

    def bad(t):
        t.ports["p"] = Port("p", "no-such-network", "tap0")
    with pytest.raises(ValidationError):
        store.update(bad)
    assert open(store.path).read() == before


def test_corrupt_store_is_refused_not_overwritten(store):
    store.update(add("n1"))
    with open(store.path, "w") as f:
        f.write('{"networks": [')
    with pytest.raises(StoreError, match="not valid JSON"):
        store.load()
    with pytest.raises(StoreError):
        store.update(add("n2"))
    assert open(store.path).read() == '{"networks": ['


def test_concurrent_writers_lose_nothing(store):
    def writer(i):
        for j in range(10):
            store.update(add(f"n{i}-{j}"))
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    topo = store.load()
    assert len(topo.networks) == 40
    assert topo.revision == 40


def test_watch_yields_changes_and_errors(store):
    stop = threading.Event()
    seen = []
    gen = store.watch(stop)
    seen.append(next(gen))
    store.update(add("n1"))
    seen.append(next(gen))
    with open(store.path, "w") as f:
        f.write("garbage")
    seen.append(next(gen))
    stop.set()
    assert seen[0].revision == 0
    assert "n1" in seen[1].networks
    assert isinstance(seen[2], StoreError)


def test_status_round_trip(store):
    store.write_status("h1", {"ports": {"p": {"status": "bound"}}})
    assert store.read_status() == {"h1": {"ports": {"p": {"status": "bound"}}}}
    assert json.load(open(store.status_path))["hosts"]["h1"]


port_doc = st.fixed_dictionaries({"status": st.sampled_from(["bound", "waiting", "error"])},
                                 optional={"device": st.text(max_size=5),
                                           "reason": st.text(max_size=20)})


@given(host=st.text(max_size=8),
       rounds=st.lists(st.dictionaries(st.text(max_size=6), st.one_of(st.none(), port_doc),
                                       max_size=6), min_size=1, max_size=5),
       extra=st.dictionaries(st.sampled_from(["driver", "store_error", "networks", "poRts",
                                              "updated"]), st.text(max_size=8)),
       hinted=st.sampled_from([None, 0, 1]))
@settings(max_examples=300, deadline=None)
def test_status_text_is_what_json_dumps_writes(host, rounds, extra, hinted):
    """Kept port texts are reused only for the very dict they came from;
    told which ports changed (some rounds), only those are looked at."""
    text = StatusText()
    ports: dict = {}
    for changes in rounds:
        ports = dict(ports)
        for name, doc in changes.items():
            if doc is None:
                ports.pop(name, None)
            else:
                ports[name] = dict(doc)  # a new object: the agent's rule for a change
        status = dict(extra, ports=ports)
        hint = None if hinted is None or len(changes) % 2 == hinted else set(changes)
        assert text.encode(host, status, hint) == json.dumps({"hosts": {host: status}},
                                                             sort_keys=True)
