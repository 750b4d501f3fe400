import fcntl
import json
import os
import shutil
import tempfile
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.exceptions import StoreError
from ovsbr.model import Network, Port, ValidationError
from ovsbr.store.file import FileStore


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
    assert json.load(open(store.status_path)) == {"hosts": {"h1": {}}}  # the head


port_doc = st.fixed_dictionaries({"status": st.sampled_from(["bound", "waiting", "error"])},
                                 optional={"device": st.text(max_size=5),
                                           "reason": st.text(max_size=20)})
port_name = st.sampled_from(["a", "b", "c", "p.1", "tap-x_2"])  # few: ports come and go


@given(host=st.text(max_size=8),
       rounds=st.lists(st.dictionaries(port_name, st.one_of(st.none(), port_doc),
                                       max_size=6), min_size=1, max_size=5),
       extra=st.dictionaries(st.sampled_from(["driver", "store_error", "networks", "poRts",
                                              "updated"]), st.text(max_size=8)),
       hinted=st.sampled_from([None, 0, 1]), restart=st.integers(0, 5))
@settings(max_examples=300, deadline=None)
def test_status_read_back_is_the_last_written(host, rounds, extra, hinted, restart):
    """Told which ports changed (some rounds), only those are written; the
    head and the port files read back as the last status, also by another
    process, and an agent restarting (round ``restart``) removes the files
    of ports that left while it was down."""
    with tempfile.TemporaryDirectory() as d:
        store = FileStore(path=d)
        ports: dict = {}
        for i, changes in enumerate(rounds):
            if i == restart:
                store = FileStore(path=d)
            ports = dict(ports)
            for name, doc in changes.items():
                if doc is None:
                    ports.pop(name, None)
                else:
                    ports[name] = dict(doc)
            status = dict(extra, ports=ports)
            hint = None if hinted is None or len(changes) % 2 == hinted else set(changes)
            store.write_status(host, status, hint)
            assert FileStore(path=d).read_status() == {host: status}
            assert sorted(os.listdir(store.status_ports)) == sorted(f"{n}.json" for n in ports)


def _port_files(store) -> dict[str, tuple[int, bytes]]:
    """Each port file's inode and bytes."""
    files = {}
    for n in os.listdir(store.status_ports):
        path = os.path.join(store.status_ports, n)
        with open(path, "rb") as f:
            files[n] = (os.fstat(f.fileno()).st_ino, f.read())
    return files


def test_one_port_change_writes_one_port_file_in_place(store):
    ports = {f"p{i}": {"status": "waiting"} for i in range(50)}
    store.write_status("h1", {"driver": "x", "ports": ports})
    before = _port_files(store)
    ports = dict(ports, p7={"status": "bound", "device": "tap7"})
    store.write_status("h1", {"driver": "x", "ports": ports}, {"p7"})
    after = _port_files(store)
    assert {n for n in after if after[n][1] != before[n][1]} == {"p7.json"}
    assert {n: ino for n, (ino, _) in after.items()} == \
        {n: ino for n, (ino, _) in before.items()}  # rewritten, not replaced
    assert store.read_status()["h1"]["ports"]["p7"]["device"] == "tap7"
    ports = dict(ports, p7={"status": "waiting"})  # shorter than what it holds
    store.write_status("h1", {"driver": "x", "ports": ports}, {"p7"})
    assert _port_files(store)["p7.json"][0] == before["p7.json"][0]
    assert FileStore(path=store.dir).read_status()["h1"]["ports"] == ports


def test_a_port_file_a_reader_holds_is_replaced_not_waited_for(store):
    ports = {"p1": {"status": "waiting"}}
    store.write_status("h1", {"ports": ports})
    path = os.path.join(store.status_ports, "p1.json")
    held = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_SH)  # a reader, mid-read
        ports = {"p1": {"status": "bound", "device": "tap1"}}
        writer = threading.Thread(target=store.write_status,
                                  args=("h1", {"ports": ports}, {"p1"}), daemon=True)
        writer.start()
        writer.join(10)
        assert not writer.is_alive(), "the agent waited for a reader's lock"
        assert os.stat(path).st_ino != os.fstat(held).st_ino
        assert json.loads(os.pread(held, 4096, 0)) == {"status": "waiting"}  # its copy
    finally:
        os.close(held)
    assert store.read_status()["h1"]["ports"] == ports


def test_a_new_port_file_is_the_store_group_s_and_empty_reads_as_absent(store):
    store.write_status("h1", {"ports": {"p1": {"status": "waiting"}}})
    store.write_status("h1", {"ports": {"p1": {"status": "waiting"},
                                        "p2": {"status": "bound"}}}, {"p2"})
    st = os.stat(os.path.join(store.status_ports, "p2.json"))
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, os.stat(store.dir).st_gid)
    open(os.path.join(store.status_ports, "p3.json"), "w").close()  # being created
    assert store.read_status()["h1"]["ports"] == {"p1": {"status": "waiting"},
                                                  "p2": {"status": "bound"}}


def test_a_port_file_from_before_a_restart_is_replaced(store):
    store.write_status("h1", {"ports": {"p1": {"status": "waiting"}}})
    ino = _port_files(store)["p1.json"][0]
    again = FileStore(path=store.dir)
    again.write_status("h1", {"ports": {"p1": {"status": "bound"}}})
    assert _port_files(store)["p1.json"][0] != ino  # made this run's again (mode, group)


def test_status_from_before_port_files_reads_as_it_was(store):
    os.makedirs(store.dir)
    doc = {"driver": "x", "ports": {"p": {"status": "bound"}}}
    with open(store.status_path, "w") as f:
        json.dump({"hosts": {"h1": doc}}, f)
    assert store.read_status() == {"h1": doc}


def test_status_leftovers_of_a_dead_writer_are_removed(store):
    store.write_status("h1", {"ports": {"p": {"status": "bound"}}})
    open(os.path.join(store.status_ports, ".p.jsonab12"), "w").close()
    again = FileStore(path=store.dir)
    again.write_status("h1", {"ports": {"p": {"status": "bound"}}})
    assert os.listdir(store.status_ports) == ["p.json"]


def test_status_port_name_that_is_not_a_name_is_refused(store):
    with pytest.raises(StoreError, match="port name '../x'"):
        store.write_status("h1", {"ports": {"../x": {"status": "bound"}}})


def test_a_port_change_leaves_the_head_and_still_dates_the_status(store):
    ports = {"p1": {"status": "waiting"}}
    store.write_status("h1", {"driver": "x", "updated": 1.0, "ports": ports})
    head = os.stat(store.status_path).st_ino
    before = time.time()
    ports = {"p1": {"status": "bound", "device": "tap1"}}
    store.write_status("h1", {"driver": "x", "updated": before, "ports": ports}, {"p1"})
    assert os.stat(store.status_path).st_ino == head  # only its time would change
    doc = FileStore(path=store.dir).read_status()["h1"]
    assert doc["ports"] == ports
    assert doc["updated"] >= before - 0.05  # status.d's time (a kernel clock tick)
    store.write_status("h1", {"driver": "y", "updated": 2.0, "ports": ports}, ())
    assert os.stat(store.status_path).st_ino != head
    assert FileStore(path=store.dir).read_status()["h1"]["driver"] == "y"


def test_status_directory_removed_underneath_comes_back_on_the_next_write(store):
    status = {"driver": "x", "ports": {"p1": {"status": "bound"}}}
    store.write_status("h1", status)
    shutil.rmtree(store.status_ports)
    status = {"driver": "x", "ports": {"p1": {"status": "error", "reason": "r"}}}
    with pytest.raises(OSError):  # the agent logs it and publishes again later
        store.write_status("h1", status, {"p1"})
    store.write_status("h1", status, {"p1"})
    assert FileStore(path=store.dir).read_status() == {"h1": status}
