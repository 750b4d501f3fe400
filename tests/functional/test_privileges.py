"""Least privilege: the agent as an unprivileged user with CAP_NET_ADMIN alone.

Every conformance scenario already runs its agent that way (the harness
does); these tests check the identity itself: what the running process
holds, what it writes, what it cannot touch, the refusal without the
capability, and the CLI for operators in the store's group.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ovsbr.testing.netns import wait_for
from ovsbr.testing.privileges import unused_identity

NET_ADMIN = 1 << 12


def _proc_status(pid: int) -> dict[str, list[str]]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, v in (line.split(":", 1) for line in f)}


def test_agent_holds_net_admin_alone_and_writes_nothing_for_others(datapath):
    agent, vm1, vm2 = datapath.two_vms()
    assert vm1.ping(vm2.ip, count=3, interval=0.1)[1] == 3
    ident = datapath.identity
    st = _proc_status(agent.proc.pid)
    assert st["Uid"] == [str(ident.uid)] * 4 and st["Gid"] == [str(ident.gid)] * 4
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(st[field][0], 16) == NET_ADMIN, (field, st[field])
    assert st["NoNewPrivs"] == ["1"]
    assert f"as uid {ident.uid}, gid {ident.gid}, CAP_NET_ADMIN" in open(agent.log).read()
    # What it wrote is its own or its group's, never everyone's.
    written = [os.path.join(top, f) for top, dirs, files in os.walk(agent.state_path)
               for f in dirs + files]
    assert any(p.endswith("status.json") for p in written)
    assert any(p.endswith(".json") and "/status.d/" in p for p in written)  # a port's
    for path in written:
        mode = os.stat(path).st_mode
        assert mode & 0o007 == 0, f"{path} is {oct(mode)}"
    assert os.stat(os.path.join(agent.state_path, "status.json")).st_uid == ident.uid


def _fstype(path: str) -> str:
    """The filesystem type of the mount holding ``path``."""
    best, kind = "", ""
    with open("/proc/self/mounts") as f:
        for line in f:
            mnt, fs = line.split()[1:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, kind = mnt, fs
    return kind


def test_agent_identity_cannot_touch_what_is_not_its_own(datapath):
    """What a compromised agent could do: the same identity, the same caps."""
    agent = datapath.agent()
    root_file = os.path.join(agent.private, "root-only")
    secret = os.path.join(agent.private, "secret")
    for path, mode in ((root_file, 0o644), (secret, 0o600)):
        with open(path, "w") as f:
            f.write("x")
        os.chmod(path, mode)
    # /etc/shadow too, where its filesystem enforces modes (the stock-kernel
    # VM shares the host's root over 9p, which does not).
    shadow = [] if _fstype("/etc/shadow") == "9p" else ["/etc/shadow"]
    probe = (
        "import os, sys\n"
        "H = '/proc/sys/kernel/hostname'\n"
        f"tries = [lambda: [open(p).read() for p in {[secret] + shadow!r}],\n"
        f"        lambda: open({root_file!r}, 'a').write('y'),\n"
        "        lambda: os.listdir('/root'),\n"
        "        lambda: os.setuid(0),\n"
        # a kernel (not net.*) sysctl, rewritten with its own value
        "        lambda: open(H, 'w').write(open(H).read())]\n"
        "allowed = []\n"
        "for i, t in enumerate(tries):\n"
        "    try:\n"
        "        t(); allowed.append(i)\n"
        "    except PermissionError:\n"
        "        pass\n"
        "print(allowed)\n")
    res = subprocess.run(datapath.identity.prefix() + [sys.executable, "-c", probe],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"allowed: {res.stdout}"
    # Control: the same probe as root is allowed each of the reads.
    assert open(secret).read() == "x" and all(open(p).read() for p in shadow)


def test_agent_without_net_admin_refuses_with_one_line(datapath):
    agent = datapath.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    res = agent.run_once([], caps=())
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ovsbr-agent: error: missing capability CAP_NET_ADMIN")
    assert f"uid {datapath.identity.uid}" in lines[0] and "AmbientCapabilities" in lines[0]
    assert not datapath.network_exists("n1"), "a refused start must change nothing"
    # Control: the same command with the capability runs and builds n1.
    agent.start()
    wait_for(lambda: datapath.network_exists("n1"), 20, what="n1 built")


def test_ovsdb_socket_out_of_reach_is_named(env, tmp_path, identity, ovs):
    from tests.functional.ovs_harness import OvsHarness

    harness = OvsHarness(env, tmp_path, identity, ovs)
    try:
        agent = harness.agent()
        os.chmod(ovs.db_sock, 0o750)  # as ovsdb-server makes it: group may not write
        res = agent.run_once([])
        assert res.returncode == 1, res.stdout + res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "permission denied" in res.stderr and "ovsdb-server.service.d" in res.stderr
    finally:
        ovs.share_socket(identity.gid)
        harness.cleanup()
    # Control: with the socket shared again the same agent starts.
    harness.two_vms()
    harness.cleanup()


def test_operator_in_the_group_uses_the_cli_others_are_refused(lb):
    agent = lb.agent()
    group = lb.identity.gid
    operator = unused_identity(lb.identity.uid + 1)
    stranger = unused_identity(operator.uid + 1)

    def cli(who, *args, groups=()):
        return subprocess.run(who.prefix(caps=(), groups=groups) + [
            agent.bin("ovsbr"), "--config-file", agent.config, *args],
            capture_output=True, text=True, timeout=60)

    vm = lb.vm("a", 1)
    for args in (("network", "create", "n1", "--type", "local"),
                 ("port", "create", "p1", "--network", "n1", "--device", vm.tap)):
        res = cli(operator, *args, groups=(group,))
        assert res.returncode == 0, res.stderr
    agent.start()
    agent.wait_ports(["p1"])
    res = cli(operator, "status", groups=(group,))
    assert res.returncode == 0 and "p1" in res.stdout, res.stdout + res.stderr
    topo = os.stat(os.path.join(agent.state_path, "topology.json"))
    assert (topo.st_uid, topo.st_gid, topo.st_mode & 0o777) == (operator.uid, group, 0o660)

    # Someone outside the group: refused, told which group to join.
    res = cli(stranger, "network", "list")
    assert res.returncode != 0
    assert "permission denied" in res.stderr and f"uid {stranger.uid}" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # A world-readable configuration: the store itself refuses, naming its group.
    os.chmod(agent.config, 0o644)
    os.chmod(agent.private, 0o755)
    res = cli(stranger, "network", "create", "n2", "--type", "local")
    assert res.returncode == 1, res.stderr
    assert "store" in res.stderr and "usermod -aG" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert cli(operator, "network", "list", groups=(group,)).stdout.count("n2") == 0
