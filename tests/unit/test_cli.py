"""The CLI against a real file store in a temp dir (no root, no kernel)."""

import json
import socket

import pytest

from ovsbr.cmd import cli


@pytest.fixture
def run(tmp_path, capsys):
    conf = tmp_path / "ovsbr.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'state'}\n")

    def _run(*args, expect=0):
        rc = cli.main(["--config-file", str(conf), *args])
        out = capsys.readouterr()
        assert rc == expect, out
        return out
    _run.state = tmp_path / "state" / "topology.json"
    return _run


def snapshot(path):
    return path.read_bytes() if path.exists() else None


def test_network_and_port_life_cycle(run):
    run("network", "create", "n1", "--type", "vlan", "--physical-network", "physnet1",
        "--segmentation-id", "100")
    run("port", "create", "p1", "--network", "n1", "--device", "vnet0",
        "--mac", "52:54:00:00:00:01")
    nets = json.loads(run("network", "list", "-f", "json").out)
    assert nets == [{"name": "n1", "type": "vlan", "physical_network": "physnet1",
                     "segmentation_id": 100}]
    port = json.loads(run("port", "show", "p1", "-f", "json").out)
    assert port["status"] == "unknown" and port["device"] == "vnet0"
    err = run("network", "delete", "n1", expect=1).err
    assert "still has ports: p1" in err
    run("port", "delete", "p1")
    run("network", "delete", "n1")
    assert json.loads(run("network", "list", "-f", "json").out) == []


@pytest.mark.parametrize("args, text", [
    (("network", "create", "n 1", "--type", "local"), "network.name"),
    (("network", "create", "v", "--type", "vlan", "--physical-network", "p",
      "--segmentation-id", "5000"), "segmentation_id"),
    (("network", "create", "v", "--type", "vlan", "--physical-network", "p",
      "--segmentation-id", "abc"), "segmentation_id"),
    (("network", "create", "x", "--type", "local", "--mtu", "-1"), "mtu"),
    (("network", "create", "base", "--type", "local"), "already exists"),
    (("port", "create", "p", "--network", "nope", "--device", "vnet0"), "unknown network"),
    (("port", "create", "p", "--network", "base", "--device", "vnet0", "--mac", "zz"), "mac"),
    (("port", "create", "p", "--network", "base"), "device name or an iface_id"),
    (("port", "create", "p", "--network", "base", "--device", "x" * 16), "device"),
    (("port", "create", "p", "--network", "base", "--device", "$(reboot)"), "device"),
    (("port", "delete", "ghost"), "no port named"),
    (("network", "show", "ghost"), "no network named"),
])
def test_bad_input_is_refused_and_changes_nothing(run, args, text):
    run("network", "create", "base", "--type", "local")
    before = snapshot(run.state)
    err = run(*args, expect=1).err
    assert err.startswith("ovsbr: error:") and text in err, err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(run.state) == before


def test_apply_is_idempotent_validated_whole_and_prunes(run, tmp_path):
    doc = tmp_path / "topo.yaml"
    doc.write_text("""
networks:
  - {name: n1, type: local}
  - {name: n2, type: vxlan, segmentation_id: 1000}
ports:
""" + "".join(f"  - {{name: p{i}, network: n1, device: vnet{i}}}\n" for i in range(300)))
    out = run("apply", str(doc)).out
    assert "302 change(s); revision 1" in out
    assert "no changes; revision 1" in run("apply", str(doc)).out
    # One bad port: nothing of the document is written.
    bad = tmp_path / "bad.yaml"
    bad.write_text(doc.read_text() + "  - {name: q, network: n1, device: vnet0}\n"
                   "  - {name: r, network: n3, device: vnetr}\n")
    before = snapshot(run.state)
    err = run("apply", str(bad), expect=1).err
    assert "vnet0 is already port" in err or "unknown network" in err
    assert snapshot(run.state) == before
    exported = json.loads(run("export", "-f", "json").out)
    assert len(exported["ports"]) == 300
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"networks": [{"name": "n1", "type": "local"}],
                                 "ports": [{"name": "p1", "network": "n1",
                                            "device": "vnet1"}]}))
    out = json.loads(run("apply", "--prune", str(small), "-f", "json").out)
    assert "deleted network n2" in out["changes"] and len(out["changes"]) == 300


def test_cli_refuses_to_write_over_a_corrupt_store(run):
    run("network", "create", "base", "--type", "local")
    run.state.write_text("{garbage")
    err = run("network", "create", "n2", "--type", "local", expect=1).err
    assert "not valid JSON" in err
    assert run.state.read_text() == "{garbage"


def test_bad_config_option_is_named(tmp_path, capsys):
    conf = tmp_path / "bad.conf"
    conf.write_text("[DEFAULT]\nstore = nosuch\nstate_path = /tmp\n")
    assert cli.main(["--config-file", str(conf), "network", "list"]) == 1
    err = capsys.readouterr().err
    assert "[DEFAULT] store: unknown value 'nosuch'; available: etcd, file" in err


def test_status_watch_renders_hosts_and_problems():
    from ovsbr.cmd import status as watch
    hosts = {
        "hv1": {"driver": "linuxbridge", "revision": 7, "updated": 995.0,
                "ports": {"a": {"status": "bound", "device": "v1"},
                          "b": {"status": "waiting", "reason": "no device named v2"},
                          "c": {"status": "error", "reason": "bridge full"}},
                "networks": {"n1": {"status": "ok"}, "n2": {"status": "error",
                                                             "reason": "needs 8021q"}}},
        "hv2": {"driver": "openvswitch", "revision": 7, "store_error": "etcd: down",
                "ports": {}, "datapath": {"br-int": {"connected": False,
                                                     "counters": {"packet_ins": 4},
                                                     "macs": [{"mac": "x"}]}}}}
    text = watch.render(7, hosts, now=1000.0)
    lines = text.splitlines()
    assert "store revision 7  hosts 2" in lines[0]
    row = next(line for line in lines if line.startswith("hv1 "))
    assert row.split()[1:6] == ["linuxbridge", "7", "1", "1", "1"] and "5s ago" in row
    look = lines[lines.index("NEEDS A LOOK") + 1:]
    # Errors first, each with its reason; then what waits.
    assert look[0].startswith("hv1  error    port c: bridge full")
    assert any("network n2: needs 8021q" in x for x in look[:3])
    assert any("store: etcd: down" in x for x in look[:3])
    assert any("waiting  port b: no device named v2" in x for x in look)
    assert "hv2  br-int (DISCONNECTED, 1 MACs)  packet_ins=4" in text
    many = {"h": {"ports": {f"p{i}": {"status": "error", "reason": "x"} for i in range(30)}}}
    assert "... and 10 more" in watch.render(1, many, 0.0)


def test_status_watch_refreshes_in_place_and_json_stays_scriptable(run, capsys):
    run("network", "create", "n1", "--type", "local")
    out = run("status", "--watch", "--interval", "0.1", "--count", "2").out
    assert out.count(watch_clear()) == 2 and "hosts 0" in out
    lines = run("status", "--watch", "-f", "json", "--interval", "0.1", "--count", "3"
                ).out.splitlines()
    assert len(lines) == 3 and all(json.loads(x)["revision"] == 1 for x in lines)
    with pytest.raises(SystemExit) as e:
        cli.main(["status", "--watch", "--interval", "0"])
    assert e.value.code == 2 and "0.1-3600" in capsys.readouterr().err


def watch_clear():
    from ovsbr.cmd import status as watch
    return watch.CLEAR


def test_etcd_store_calls_print_no_eventlet_notice(tmp_path):
    """etcd3gw imports futurist, which imports eventlet: its deprecation
    notice must not reach the operator on every call."""
    import subprocess
    import sys
    conf = tmp_path / "ovsbr.conf"
    conf.write_text("[DEFAULT]\nstore = etcd\n[etcd]\nendpoints = 127.0.0.1:1\n"
                    "timeout = 0.5\n")
    res = subprocess.run([sys.executable, "-W", "default", "-m", "ovsbr.cmd.cli",
                          "--config-file", str(conf), "status"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.startswith("ovsbr: error: etcd: no endpoint answered"), res.stderr
    assert "Eventlet" not in res.stderr


def test_security_groups_rules_and_ports(run):
    run("network", "create", "n", "--type", "local")
    run("security-group", "create", "web")
    rule = json.loads(run("security-group", "rule", "create", "web", "--direction", "ingress",
                          "--protocol", "tcp", "--port-range", "80:81", "-f", "json").out)
    assert rule["port_range_min"] == 80 and rule["port_range_max"] == 81
    run("security-group", "rule", "create", "web", "--direction", "ingress", "--protocol",
        "icmp", "--remote-group", "web")
    run("port", "create", "p", "--network", "n", "--device", "t0", "--mac",
        "52:54:00:00:00:01", "--security-group", "web")
    before = snapshot(run.state)
    for args, text in [
        (("security-group", "rule", "create", "web", "--direction", "ingress", "--protocol",
          "6", "--port-range", "80:81"), f"already has this rule: {rule['id']}"),
        (("security-group", "rule", "create", "web", "--direction", "ingress",
          "--port-range", "80"), "port_range_min"),
        (("security-group", "rule", "create", "web", "--direction", "egress",
          "--remote-group", "ghost"), "unknown security group 'ghost'"),
        (("security-group", "delete", "web"), "used by port(s) p"),
        (("security-group", "rule", "delete", "web", "r-nope"), "no rule 'r-nope'"),
        (("port", "set", "p", "--security-group", "ghost"), "unknown security group"),
    ]:
        err = run(*args, expect=1).err
        assert text in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(run.state) == before
    shown = json.loads(run("security-group", "show", "web", "-f", "json").out)
    assert shown["ports"] == ["p"] and len(shown["rules"]) == 2
    exported = run("export", "-f", "json").out
    run("security-group", "rule", "delete", "web", rule["id"])
    run("port", "set", "p", "--no-security-group")
    run("security-group", "create", "db")
    run("security-group", "rule", "create", "db", "--direction", "ingress",
        "--remote-group", "web")
    out = run("security-group", "delete", "web").out
    assert "removed rule db/" in out  # rules naming it as their remote go with it
    # The exported document recreates groups, rules and membership whole.
    doc = run.state.parent / "doc.json"
    doc.write_text(exported)
    run("apply", str(doc))
    assert json.loads(run("port", "show", "p", "-f", "json").out)["security_groups"] == ["web"]


def test_mac_table_asks_this_hosts_agent(run):
    from ovsbr.agent.control import ControlServer

    out = run("mac-table", expect=1)
    assert "is ovsbr-agent running on this host" in out.err and "agent.ctl" in out.err
    table = {"br-int": {"connected": True, "counters": {"packet_ins": 3}, "flows": {},
                        "mac_count": 1, "macs": [{"network": "n1", "mac": "52:54:00:00:00:01",
                                                  "port": "vnet0", "age": 1.5}]}}
    server = ControlServer(str(run.state.parent / "agent.ctl"), {"mac-table": lambda: table})
    server.start()
    try:
        text = run("mac-table").out
        assert "br-int (connected): 1 MACs, packet_ins 3" in text
        assert "52:54:00:00:00:01" in text and "vnet0" in text
        doc = json.loads(run("mac-table", "-f", "json").out)
        assert list(doc.values()) == [table]
    finally:
        server.stop()
    # An agent from before the socket published its table in its status.
    from ovsbr.store.file import FileStore
    FileStore(path=str(run.state.parent)).write_status(
        socket.gethostname(), {"driver": "openvswitch", "ports": {}, "datapath": table})
    assert "52:54:00:00:00:01" in run("mac-table").out
