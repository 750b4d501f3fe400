"""The etcd store against a real etcd: contended writes, watches, liveness."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import threading
import time

import pytest
from oslo_config import cfg

from ovsbr.conf import opts
from ovsbr.exceptions import StoreError
from ovsbr.store.etcd import EtcdStore
from ovsbr.testing import etcd_sandbox
from ovsbr.testing.agent import Agent
from ovsbr.testing.netns import wait_for


@pytest.fixture(scope="module")
def etcd():
    reason = etcd_sandbox.available()
    if reason:
        pytest.skip(reason)
    sandbox = etcd_sandbox.EtcdSandbox().start()
    yield sandbox
    sandbox.remove()


@pytest.fixture
def prefix(request):
    return "/t-" + request.node.name[:40].replace("[", "-").replace("]", "")


def make_store(etcd, prefix, **etcd_opts) -> EtcdStore:
    conf = cfg.ConfigOpts()
    opts.register(conf)
    conf([], default_config_files=[])
    for key, value in {"endpoints": [etcd.endpoint], "prefix": prefix, **etcd_opts}.items():
        conf.set_override(key, value, group="etcd")
    return EtcdStore(conf)


def add_network(t, name="n1"):
    from ovsbr.model import network_from_dict
    t.networks[name] = network_from_dict({"name": name, "type": "local"})


def add_port(t, name, device=None, host=None):
    from ovsbr.model import port_from_dict
    t.ports[name] = port_from_dict({"name": name, "network": "n1", "device": device or name,
                                    **({"host": host} if host else {})})


def test_concurrent_writers_never_lose_an_update(etcd, prefix):
    make_store(etcd, prefix).update(add_network)
    errors = []

    def writer(w):
        store = make_store(etcd, prefix)  # its own HTTP session: real contention
        try:
            for i in range(10):
                store.update(lambda t, n=f"w{w}p{i}": add_port(t, n))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    topo = make_store(etcd, prefix).load()
    assert len(topo.ports) == 40 and topo.revision == 41


def test_invalid_result_writes_nothing_and_names_the_field(etcd, prefix):
    store = make_store(etcd, prefix)
    store.update(add_network)
    store.update(lambda t: add_port(t, "p1", "tap1"))
    before = etcd.revision()
    from ovsbr.model import ValidationError
    with pytest.raises(ValidationError) as e:
        store.update(lambda t: add_port(t, "p2", "tap1"))  # same device, same host
    assert e.value.field == "port p2: device"
    assert etcd.revision() == before
    # The same device name on two hypervisors is fine (vnet0 everywhere).
    store.update(lambda t: (add_port(t, "a", "vnet0", "hv1"), add_port(t, "b", "vnet0", "hv2")))


@contextlib.contextmanager
def watching(watcher, host=None):
    """Run ``watcher.watch`` on a thread for the block; yield what it yields."""
    stop, seen = threading.Event(), []

    def consume():
        for item in watcher.watch(stop, host=host):
            seen.append(item)
    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.close()
        t.join(5)


def test_watch_follows_changes_and_survives_etcd_restart(etcd, prefix):
    store = make_store(etcd, prefix)
    store.update(add_network)
    with watching(make_store(etcd, prefix)) as seen:
        wait_for(lambda: seen and seen[-1].revision == 1, 5, what="initial state")
        t0 = time.monotonic()
        store.update(lambda t: add_port(t, "p1"))
        wait_for(lambda: seen[-1].revision == 2, 5, interval=0.01, what="change seen")
        print(f"watch latency {time.monotonic() - t0:.3f} s")
        etcd.restart()
        store.update(lambda t: add_port(t, "p2"))
        wait_for(lambda: isinstance(seen[-1], type(seen[0])) and seen[-1].revision == 3, 15,
                 what="change after the etcd restart seen")


def test_watch_lost_to_compaction_starts_over(etcd, prefix):
    store = make_store(etcd, prefix)
    store.update(add_network)
    old = etcd.revision()
    for i in range(3):
        store.update(lambda t, n=f"p{i}": add_port(t, n))
    etcd.compact(etcd.revision())
    watcher = make_store(etcd, prefix)
    real = watcher._snapshot
    calls = []

    def stale_first():
        rev, topo, hosts = real()
        calls.append(rev)
        return (old if len(calls) == 1 else rev), topo, hosts
    watcher._snapshot = stale_first  # a watch from before the compaction
    with watching(watcher) as seen:
        wait_for(lambda: len(calls) >= 2, 10, what="a fresh read after the compaction")
        store.update(lambda t: add_port(t, "late"))
        wait_for(lambda: "late" in seen[-1].ports, 5, what="changes followed again")


def test_garbage_in_etcd_is_reported_and_refused(etcd, prefix):
    store = make_store(etcd, prefix)
    store.update(add_network)
    key = f"{prefix}/topology/ports/bad"
    etcd._post("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                              "value": base64.b64encode(b"{not json").decode()})
    with pytest.raises(StoreError, match=f"etcd key {key}: invalid content"):
        store.load()
    with pytest.raises(StoreError):
        store.update(lambda t: add_port(t, "p1"))


def test_hosts_live_under_a_lease(etcd, prefix):
    agent_store = make_store(etcd, prefix, lease_ttl=2)
    agent_store.register("hv1", {"local_ip": "198.51.100.1"})
    reader = make_store(etcd, prefix)
    assert reader.load().hosts == {"hv1": {"local_ip": "198.51.100.1"}}
    time.sleep(3)  # kept alive past its TTL
    assert "hv1" in reader.load().hosts
    agent_store.close()  # stops renewing, like a killed agent
    t0 = time.monotonic()
    wait_for(lambda: "hv1" not in reader.load().hosts, 5, interval=0.1, what="lease expired")
    assert time.monotonic() - t0 < 3.5


def test_cli_and_agent_status_work_against_etcd(etcd, prefix, tmp_path):
    sections = {"DEFAULT": {"store": "etcd", "host": "hv9"},
                "etcd": {"endpoints": etcd.endpoint, "prefix": prefix}}
    cli = Agent(str(tmp_path), sections)
    cli.cli("network", "create", "n1", "--type", "vxlan", "--segmentation-id", "42")
    cli.cli("port", "create", "p1", "--network", "n1", "--device", "vnet0",
            "--mac", "52:54:00:00:00:01")
    ports = cli.cli_json("port", "list")
    assert [(p["name"], p["host"]) for p in ports] == [("p1", "hv9")]
    res = cli.cli("port", "create", "p2", "--network", "n1", "--device", "vnet0", check=False)
    assert res.returncode == 1 and "port p2: device" in res.stderr
    doc = json.loads(cli.cli("export", "-f", "json").stdout)
    assert doc["networks"][0]["segmentation_id"] == 42


def test_a_change_larger_than_one_etcd_transaction_is_written_in_valid_steps(etcd, prefix):
    """etcd's default --max-txn-ops is 128: a resync or an apply of 300 ports
    must still land, and every state the agents see on the way is valid."""
    store = make_store(etcd, prefix)
    with watching(make_store(etcd, prefix)) as seen:
        wait_for(lambda: seen, 5, what="initial state")
        before, after = store.update(lambda t: (add_network(t), *(
            add_port(t, f"p{i}", f"t{i}") for i in range(300))))
        assert len(after.ports) == 300 and store.load() == after
        assert _copies(etcd, prefix) == _copies_of(after), "copies kept in every step"
        wait_for(lambda: len(getattr(seen[-1], "ports", ())) == 300, 10, what="all ports seen")
        assert not [s for s in seen if isinstance(s, Exception)], "an invalid state was seen"
        # Every port takes the next one's device: no order of steps keeps the
        # states between valid, so it is one transaction, which etcd refuses
        # by name; nothing is written.
        revision = etcd.revision()

        def rotate(t):
            for i in range(300):
                add_port(t, f"p{i}", f"t{(i + 1) % 300}")
        with pytest.raises(StoreError, match=r"--max-txn-ops \d+ or more \(default 128\)"):
            store.update(rotate)
        assert etcd.revision() == revision and store.load() == after


def test_status_is_written_per_changed_port(etcd, prefix):
    def mods():
        resp = etcd._post("/v3/kv/range", {
            "key": base64.b64encode(f"{prefix}/status/".encode()).decode(),
            "range_end": base64.b64encode(f"{prefix}/status0".encode()).decode()})
        return {base64.b64decode(kv["key"]).decode()[len(prefix) + 8:]: int(kv["mod_revision"])
                for kv in resp.get("kvs", [])}
    # Left by an earlier run of this host's agent, and a host whose agent
    # predates per-port keys (its ports inside the document).
    make_store(etcd, prefix).write_status("hv1", {"driver": "x", "ports": {
        "gone": {"status": "ACTIVE"}}})
    etcd._post("/v3/kv/put", {"key": base64.b64encode(f"{prefix}/status/old".encode()).decode(),
                              "value": base64.b64encode(json.dumps({"driver": "y", "ports": {
                                  "q": {"status": "DOWN"}}}).encode()).decode()})
    store = make_store(etcd, prefix)  # a restarted agent
    doc = {"driver": "x", "revision": 1,
           "ports": {f"p{i}": {"status": "ACTIVE", "device": f"t{i}"} for i in range(200)}}
    store.write_status("hv1", doc)
    assert store.read_status() == {"hv1": doc, "old": {"driver": "y", "ports": {
        "q": {"status": "DOWN"}}}}
    before = mods()
    assert "hv1/ports/gone" not in before and len(before) == 202
    changed = {**doc, "revision": 2, "ports": {**doc["ports"], "p7": {"status": "DOWN"}}}
    del changed["ports"]["p9"]
    store.write_status("hv1", changed)
    after = mods()
    moved = {k for k in after if after[k] != before.get(k)} | (set(before) - set(after))
    assert moved == {"hv1", "hv1/ports/p7", "hv1/ports/p9"}
    assert make_store(etcd, prefix).read_status()["hv1"] == changed
    # Told which ports changed (as the agent tells it), the same keys move.
    again = {**changed, "revision": 3, "ports": {**changed["ports"], "p8": {"status": "DOWN"},
                                                 "p300": {"status": "ACTIVE"}}}
    del again["ports"]["p7"]
    before = mods()
    store.write_status("hv1", again, changed={"p7", "p8", "p300"})
    after = mods()
    moved = {k for k in after if after[k] != before.get(k)} | (set(before) - set(after))
    assert moved == {"hv1", "hv1/ports/p7", "hv1/ports/p8", "hv1/ports/p300"}
    assert make_store(etcd, prefix).read_status()["hv1"] == again


def _spy(store, record):
    """What ``record`` makes of each transaction ``store`` makes from now on."""
    seen, real = [], store._txn

    def txn(body):
        seen.extend(record(body))
        return real(body)
    store._txn = txn
    return seen


def _reads_of(store):
    """The key ranges ``store`` reads from now on."""
    return _spy(store, lambda body: [
        base64.b64decode(r["key"]).decode() + ("*" if r.get("range_end") else "")
        for op in body.get("success", []) if (r := op.get("request_range"))])


def _txns_of(store):
    """Each transaction ``store`` makes from now on: its compare targets."""
    return _spy(store, lambda body: [[c["target"] for c in body.get("compare", [])]])


def test_a_port_write_reads_and_writes_that_port_alone(etcd, prefix):
    from ovsbr.model import ValidationError, port_from_dict
    writer = make_store(etcd, prefix)
    writer.update(lambda t: (add_network(t), *(add_port(t, f"p{i}", f"t{i}")
                                              for i in range(200))))
    cli = make_store(etcd, prefix)  # a fresh CLI process's store
    reads = _reads_of(cli)
    txns = _txns_of(cli)
    _, after = cli.update(lambda t: add_port(t, "new", "tnew"), scope=["new"])
    assert set(after.ports) == {"new"} and after.revision == 3
    # One read, one commit: the new port's claims are compared free in the
    # commit, not read before it.
    assert len(txns) == 2, txns
    assert _claims(etcd, prefix)["device//tnew"] == "new"
    assert f"{prefix}/topology/ports/*" not in reads and f"{prefix}/topology/*" not in reads
    assert len(make_store(etcd, prefix).load().ports) == 201
    # Another port's device, MAC or address: refused as the whole check
    # refuses it, naming the holder, with nothing written.
    revision = etcd.revision()
    with pytest.raises(ValidationError) as e:
        cli.update(lambda t: add_port(t, "dup", "t7"), scope=["dup"])
    assert (e.value.field, e.value.message) == ("port dup: device", "t7 is already port p7's")
    assert etcd.revision() == revision
    # A port handing its device over frees it: p7 leaves, then tdup is free.
    cli.update(lambda t: t.ports.pop("p7"), scope=["p7"])
    cli.update(lambda t: add_port(t, "dup", "t7"), scope=["dup"])
    t = make_store(etcd, prefix).load()
    assert t.ports["dup"].device == "t7" and "p7" not in t.ports
    assert _copies(etcd, prefix) == _copies_of(t), "the port road keeps the copies"
    # Changes beyond the named ports take the whole road and are still checked.
    # Networks and groups: every one is read, no port is.
    from ovsbr.model import network_from_dict
    del reads[:]
    vx = network_from_dict({"name": "vx", "type": "vxlan", "segmentation_id": 7})
    cli.update(lambda t: t.networks.__setitem__("vx", vx), scope=())
    with pytest.raises(ValidationError, match="7 is already used by network vx"):
        cli.update(lambda t: t.networks.__setitem__("vy", network_from_dict(
            {"name": "vy", "type": "vxlan", "segmentation_id": 7})), scope=())
    assert not [r for r in reads if "/topology/ports" in r or r.endswith("/topology/*")]
    writer.update(lambda t: (add_network(t, "n2"), t.ports.__setitem__(
        "q", port_from_dict({"name": "q", "network": "n2", "device": "tq"}))))
    del reads[:]
    with pytest.raises(ValidationError, match="port q: network: unknown network 'n2'"):
        cli.update(lambda t: t.networks.pop("n2"), scope=["dup"])
    assert f"{prefix}/topology/*" in reads


def test_claim_keys_left_behind_by_another_writer_are_rebuilt(etcd, prefix):
    """An older ovsbr, or a hand edit, writes a port without its claims: the
    next write takes the whole road and rebuilds them, so a port write after
    it still sees that port's device as taken."""
    from ovsbr.model import ValidationError
    store = make_store(etcd, prefix)
    store.update(lambda t: (add_network(t), add_port(t, "edited", "tedited", "hv1")))
    port = {"name": "old", "network": "n1", "device": "told"}
    edited = {"name": "edited", "network": "n1", "device": "tedited", "host": "hv2"}
    etcd._post("/v3/kv/txn", {"success": [
        {"request_put": {"key": base64.b64encode(f"{prefix}/topology/ports/{p['name']}"
                                                 .encode()).decode(),
                         "value": base64.b64encode(json.dumps(p).encode()).decode()}}
        for p in (port, edited)] + [
        {"request_put": {"key": base64.b64encode(f"{prefix}/topology/revision".encode())
                         .decode(), "value": base64.b64encode(b"2").decode()}}]})
    reads = _reads_of(store)
    with pytest.raises(ValidationError, match="told is already port"):
        store.update(lambda t: add_port(t, "new", "told"), scope=["new"])
    assert f"{prefix}/topology/*" in reads, "behind: the whole road"
    store.update(lambda t: add_port(t, "other", "tother"), scope=["other"])  # rebuilds
    assert _copies(etcd, prefix) == _copies_of(store.load()), "copies rebuilt too"
    del reads[:]
    with pytest.raises(ValidationError, match="told is already port old's"):
        store.update(lambda t: add_port(t, "new", "told"), scope=["new"])
    assert f"{prefix}/topology/*" not in reads, "rebuilt: the port road again"


def test_a_late_claim_rebuild_never_undoes_a_newer_one(etcd, prefix):
    """Two writers finding the claim keys behind both rebuild them; the one
    whose topology is older must not overwrite what the newer one wrote."""
    store = make_store(etcd, prefix)
    store.update(lambda t: (add_network(t), add_port(t, "a", "tdev")))
    old = store.load()
    seen = str(etcd.revision())  # the revision key's mod revision now
    store.update(lambda t: (t.ports.pop("a"), add_port(t, "b", "tdev")))
    claims_before = _claims(etcd, prefix)
    assert claims_before == {"device//tdev": "b"}
    store._writer._rebuild(old, seen)  # the older writer, late
    assert _claims(etcd, prefix) == claims_before


def _claims(etcd, prefix, folder="index/claims/"):
    base = f"{prefix}/{folder}"
    resp = etcd._post("/v3/kv/range", {
        "key": base64.b64encode(base.encode()).decode(),
        "range_end": base64.b64encode(base[:-1].encode() + b"0").decode()})
    return {base64.b64decode(kv["key"]).decode()[len(base):]:
            base64.b64decode(kv["value"]).decode() for kv in resp.get("kvs", [])}


def _copies(etcd, prefix):
    """The port copies in etcd: key below index/ports/ -> the port's document."""
    from ovsbr.store import copies
    return {k: copies.unwrap(v)[0] for k, v in _claims(etcd, prefix, copies.FOLDER).items()}


def _copies_of(topo):
    from ovsbr.store import copies
    return {k: copies.unwrap(copies.value(p, 0))[0]
            for p in topo.ports.values() for k in copies.keys(p)}


def test_status_follower_hands_over_only_what_moved(etcd, prefix):
    """Neutron's worker follows the status folder instead of reading it
    whole every second: a first read, then only the keys that moved, and a
    whole read again after etcd restarts; at every poll, replaying what it
    handed over gives what read_status reads."""
    agent = make_store(etcd, prefix)
    doc = {"driver": "x", "ports": {f"p{i}": {"status": "waiting"} for i in range(50)}}
    agent.write_status("hv1", doc)
    etcd._post("/v3/kv/put", {"key": base64.b64encode(f"{prefix}/status/old".encode()).decode(),
                              "value": base64.b64encode(json.dumps({"driver": "y", "ports": {
                                  "q": {"status": "bound"}}}).encode()).decode()})
    reader = make_store(etcd, prefix)
    follower = reader.follow_status()
    held: dict = {}

    def drain() -> tuple[bool, list]:
        try:
            whole, events = follower.poll()
        except StoreError:  # etcd restarting: the worker's loop tries again too
            return False, []
        if whole:
            held.clear()
        for host, port, d in events:
            entry = held.setdefault(host, {"ports": {}})
            if port is None:
                entry.update(head=d)
            elif d is None:
                entry["ports"].pop(port, None)
            else:
                entry["ports"][port] = d
        return whole, events

    def poll() -> list:
        found = []
        wait_for(lambda: found.extend(drain()[1]) or found, 15, interval=0.05,
                 what="status events")
        return found

    def replayed() -> dict:
        out = {}
        for host, entry in held.items():
            head = entry.get("head") or {}
            ports = {**head.get("ports", {}), **entry["ports"]}
            if entry.get("head") is not None or ports:
                out[host] = {**head, "ports": ports}
        return out

    try:
        assert len(poll()) == 52 and replayed() == reader.read_status()
        changed = {**doc, "ports": {**doc["ports"], "p7": {"status": "bound"}}}
        del changed["ports"]["p9"]
        agent.write_status("hv1", changed)
        time.sleep(0.5)  # both keys' events in, whichever batch they came in
        got = poll()
        assert sorted((h, p or "") for h, p, _ in got) == [("hv1", ""), ("hv1", "p7"),
                                                           ("hv1", "p9")]
        assert replayed() == reader.read_status()
        assert follower.poll() == (False, [])  # nothing moved: nothing read
        etcd.restart()
        agent.write_status("hv1", {**changed, "ports": {**changed["ports"],
                                                        "p8": {"status": "error"}}})
        wait_for(lambda: drain()[0], 20, interval=0.1, what="a whole read after the restart")
        wait_for(lambda: drain() and "p8" in replayed()["hv1"]["ports"], 10,
                 what="the write after the restart")
        assert replayed() == reader.read_status()
        assert replayed()["hv1"]["ports"]["p8"] == {"status": "error"}
    finally:
        reader.close()


def _share_world(store):
    """Two overlay networks, a local one, and groups where web's rule names db."""
    from ovsbr.model import network_from_dict
    from ovsbr.secgroups.model import group_from_dict

    def build(t):
        for name, kind, seg in (("vx", "vxlan", 5), ("vy", "vxlan", 6), ("lo", "local", None)):
            t.networks[name] = network_from_dict(
                {"name": name, "type": kind, **({"segmentation_id": seg} if seg else {})})
        t.security_groups["db"] = group_from_dict({"name": "db", "rules": []})
        t.security_groups["web"] = group_from_dict({"name": "web", "rules": [
            {"direction": "ingress", "protocol": "tcp", "remote_group": "db"}]})
    store.update(build)


def _vm(t, name, network, host, groups=None, ip=None):
    from ovsbr.model import port_from_dict
    n = sum(map(ord, name)) % 200
    t.ports[name] = port_from_dict({k: v for k, v in {
        "name": name, "network": network, "device": f"t{name}", "host": host,
        "mac": f"52:54:00:00:01:{n:02x}", "ips": [ip or f"192.0.2.{n + 10}"],
        "security_groups": groups}.items() if v is not None})


def test_an_agent_hears_its_hosts_share_only(etcd, prefix):
    """With the port copies, host hv0's watch holds its ports, every port of
    its overlay networks and the members of its remote groups, follows its
    ports into new networks and out of them, and hears nothing else."""
    from ovsbr.agent.overlay import overlays
    store = make_store(etcd, prefix)
    _share_world(store)
    store.update(lambda t: (_vm(t, "a1", "vx", "hv0", ["web"]), _vm(t, "b1", "vx", "hv1"),
                            _vm(t, "c1", "vy", "hv2", ["db"]), _vm(t, "d1", "vy", "hv3"),
                            _vm(t, "e1", "lo", "hv0")))
    def whole_now():
        return make_store(etcd, prefix).load()
    with watching(make_store(etcd, prefix), host="hv0") as seen:
        wait_for(lambda: seen, 5, what="hv0's share")
        assert set(seen[-1].ports) == {"a1", "b1", "c1", "e1"}, "own, vx's, db's members"
        assert set(seen[-1].networks) == {"vx", "vy", "lo"}
        heard = len(seen)
        # Another host's port on a network hv0 has no port on: not heard.
        _, after = store.update(lambda t: _vm(t, "f1", "vy", "hv3"), scope=["f1"])
        time.sleep(1.0)
        assert len(seen) == heard, "hv0 heard a write that does not concern it"
        # One on its overlay network, one joining its remote group: heard.
        store.update(lambda t: _vm(t, "g1", "vx", "hv2"), scope=["g1"])
        wait_for(lambda: "g1" in seen[-1].ports, 5, what="overlay port heard")
        store.update(lambda t: _vm(t, "d1", "vy", "hv3", ["db"]), scope=["d1"])
        wait_for(lambda: "d1" in seen[-1].ports, 5, what="new remote group member heard")
        # A port of hv0's own on vy: every port of vy comes with it, and goes
        # when it leaves (d1 stays: a member of db).
        _, after = store.update(lambda t: _vm(t, "h1", "vy", "hv0"), scope=["h1"])
        wait_for(lambda: {"h1", "f1"} <= set(seen[-1].ports), 5, what="vy followed")
        assert seen[-1].revision == after.revision
        whole = make_store(etcd, prefix).load()
        for host, info in (("hv1", "198.51.100.1"), ("hv2", "198.51.100.2"),
                           ("hv3", "198.51.100.3")):
            whole.hosts[host] = seen[-1].hosts[host] = {"local_ip": info}
        mine = seen[-1]
        assert mine.local_view("hv0").ports == whole.local_view("hv0").ports
        assert overlays(mine, "hv0", "198.51.100.9") == overlays(whole, "hv0", "198.51.100.9")
        assert mine.group_members()["db"] == whole.group_members()["db"]
        store.update(lambda t: t.ports.pop("h1"), scope=["h1"])
        wait_for(lambda: "f1" not in seen[-1].ports and "h1" not in seen[-1].ports, 5,
                 what="vy dropped")
        assert {"c1", "d1"} <= set(seen[-1].ports)
        # In and out again at once: the dropped stream's leftovers must not
        # bring f1 back, nor keep it after vy is dropped again.
        for _ in range(3):
            store.update(lambda t: _vm(t, "h1", "vy", "hv0"), scope=["h1"])
            store.update(lambda t: _vm(t, "f1", "vy", "hv3", ip="192.0.2.99"), scope=["f1"])
            store.update(lambda t: t.ports.pop("h1"), scope=["h1"])
        store.update(lambda t: _vm(t, "h1", "vy", "hv0"), scope=["h1"])
        wait_for(lambda: "h1" in seen[-1].ports and seen[-1].ports.get("f1") ==
                 whole_now().ports["f1"], 5, what="vy followed again, f1 current")
        store.update(lambda t: t.ports.pop("h1"), scope=["h1"])
        wait_for(lambda: "f1" not in seen[-1].ports, 5, what="vy dropped again")
        assert not [s for s in seen if isinstance(s, Exception)]


def test_an_agent_watches_everything_while_the_copies_are_behind(etcd, prefix, monkeypatch):
    """An older ovsbr, or a hand edit, writes a port without its copies: the
    narrowed agent finds them behind at its next check and watches the
    whole topology (so it sees that port), until a writer has rebuilt them."""
    from ovsbr.store import etcd_narrow
    monkeypatch.setattr(etcd_narrow, "INDEX_CHECK", 0.5)
    store = make_store(etcd, prefix)
    _share_world(store)
    store.update(lambda t: _vm(t, "a1", "vx", "hv0"))
    port = {"name": "old", "network": "vx", "device": "told", "host": "hv0"}

    def put(key, value):
        return {"request_put": {"key": base64.b64encode(f"{prefix}/{key}".encode()).decode(),
                                "value": base64.b64encode(value.encode()).decode()}}
    with watching(make_store(etcd, prefix), host="hv0") as seen:
        wait_for(lambda: seen, 5, what="hv0's share")
        etcd._post("/v3/kv/txn", {"success": [put("topology/ports/old", json.dumps(port)),
                                              put("topology/revision", "3")]})
        wait_for(lambda: "old" in seen[-1].ports, 5, what="the old writer's port")
        store.update(lambda t: _vm(t, "b1", "vy", "hv3"))  # rebuilds the copies
        assert "b1" in make_store(etcd, prefix).load().ports
        time.sleep(1.5)  # a check or two: the agent narrows again
        heard = len(seen)
        store.update(lambda t: _vm(t, "c1", "vy", "hv3"), scope=["c1"])
        time.sleep(1.0)
        assert len(seen) == heard, "still watching everything after the rebuild"
        store.update(lambda t: _vm(t, "d1", "vx", "hv3"), scope=["d1"])
        wait_for(lambda: {"old", "d1"} <= set(seen[-1].ports), 5, what="narrowed share")


def test_a_host_on_more_networks_than_one_etcd_transaction_reads(etcd, prefix):
    """etcd takes at most 128 requests in a transaction (--max-txn-ops): a
    host whose ports span 130 overlay networks reads their folders in
    several, all at one revision, and hears each of them."""
    from ovsbr.model import network_from_dict
    store = make_store(etcd, prefix)

    def build(t):
        for i in range(130):
            t.networks[f"v{i}"] = network_from_dict(
                {"name": f"v{i}", "type": "vxlan", "segmentation_id": 100 + i})
            _vm(t, f"a{i}", f"v{i}", "hv0", ip=f"192.0.2.{i % 250 + 1}")
            t.ports[f"a{i}"] = dataclasses.replace(t.ports[f"a{i}"], mac=f"52:54:00:00:02:{i:02x}")
            _vm(t, f"b{i}", f"v{i}", "hv1", ip=f"198.51.100.{i % 250 + 1}")
            t.ports[f"b{i}"] = dataclasses.replace(t.ports[f"b{i}"], mac=f"52:54:00:00:03:{i:02x}")
    store.update(build)
    with watching(make_store(etcd, prefix), host="hv0") as seen:
        wait_for(lambda: seen and not isinstance(seen[-1], Exception)
                 and len(seen[-1].ports) == 260, 10, what="every network's ports")
        store.update(lambda t: _vm(t, "c1", "v129", "hv2", ip="203.0.113.9"), scope=["c1"])
        wait_for(lambda: "c1" in seen[-1].ports, 5, what="the 130th network's new port")
        assert not [s for s in seen if isinstance(s, Exception)]
