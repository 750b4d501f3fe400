"""Security groups on real traffic: Neutron's semantics, both datapaths.

VM a has no groups, b is a server in group ``srv``, c a client in group
``cli``. Every denial has a control next to it (the same server answers
another port, protocol or peer), so a failure to connect proves a drop,
not a server that is not there.
"""

from __future__ import annotations

import time

import pytest

from ovsbr.testing.netns import TIME_SCALE, bridge_conntrack_missing, wait_for

SRV_RULES = [
    ("ingress", "--protocol", "tcp", "--port-range", "8000"),
    ("ingress", "--protocol", "tcp", "--port-range", "8100:8199", "--remote-group", "cli"),
    ("ingress", "--protocol", "udp", "--port-range", "5353"),
    ("egress",),
]


def _rule(agent, group, direction, *args):
    return agent.cli_json("security-group", "rule", "create", group, "--direction",
                          direction, *args)["id"]


def eventually(cond, what, timeout=10.0):
    return wait_for(cond, timeout, what=what)


@pytest.fixture
def sg(datapath):
    """(agent, a, b, c, rules by name) with servers on b and c."""
    if datapath.name == "linuxbridge" and bridge_conntrack_missing():
        pytest.skip("linuxbridge: no nf_conntrack_bridge in this kernel (the stock-kernel "
                    "VM runs these tests; test_refused_without_bridge_conntrack here)")
    agent = datapath.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vms = [datapath.vm(role, i) for i, role in ((1, "a"), (2, "b"), (3, "c"))]
    agent.cli("security-group", "create", "srv")
    agent.cli("security-group", "create", "cli")
    rules = {}
    for rule in SRV_RULES:
        rules[" ".join(rule)] = _rule(agent, "srv", *rule)
    rules["cli egress"] = _rule(agent, "cli", "egress")
    for i, (vm, groups) in enumerate(zip(vms, ([], ["srv"], ["cli"]), strict=True), 1):
        flags = [f for g in groups for f in ("--security-group", g)]
        agent.cli("port", "create", f"p{i}", "--network", "n1", "--device", vm.tap,
                  "--mac", vm.mac, "--ip", vm.ip, *flags)
    agent.start()
    agent.wait_ports(["p1", "p2", "p3"])
    a, b, c = vms
    b.serve(8000, 8001, 8150, 8200, 5353, 5354)
    c.serve(9000)
    return agent, a, b, c, rules


def test_ingress_rules_allow_exactly_what_they_name(sg):
    agent, a, b, _, _ = sg
    assert eventually(lambda: a.connects("tcp", b.ip, 8000), "tcp 8000 allowed")
    assert not a.connects("tcp", b.ip, 8001)  # same server, no rule
    assert a.connects("udp", b.ip, 5353)
    assert not a.connects("udp", b.ip, 5354)
    assert not a.connects("udp", b.ip, 8000)  # the tcp rule does not open udp
    assert a.ping(b.ip, count=2)[1] == 0  # no icmp rule
    _rule(agent, "srv", "ingress", "--protocol", "icmp")
    assert a.can_ping(b.ip), "an icmp rule lets ping in"


def test_port_range_and_remote_group_membership(sg):
    agent, a, b, c, _ = sg
    assert eventually(lambda: c.connects("tcp", b.ip, 8150), "member in range")
    assert not c.connects("tcp", b.ip, 8200)  # member, outside the range
    assert not a.connects("tcp", b.ip, 8150)  # in range, not a member
    assert a.connects("tcp", b.ip, 8000)  # control: a reaches b
    agent.cli("port", "set", "p1", "--security-group", "cli")  # a joins cli
    assert eventually(lambda: a.connects("tcp", b.ip, 8150), "new member allowed")
    agent.cli("port", "set", "p1", "--no-security-group")
    assert eventually(lambda: not a.connects("tcp", b.ip, 8150), "former member denied")


def test_egress_rules_and_replies_of_allowed_connections(sg):
    agent, a, b, c, rules = sg
    # c may open anything (cli egress): its replies come back although cli
    # has no ingress rule; nobody may open a connection to c.
    assert eventually(lambda: c.connects("tcp", b.ip, 8000), "c to b")
    assert not a.connects("tcp", c.ip, 9000)
    assert not b.connects("tcp", c.ip, 9000)
    ingress = _rule(agent, "cli", "ingress", "--protocol", "tcp", "--port-range", "9000")
    assert eventually(lambda: a.connects("tcp", c.ip, 9000), "control: c's server is up")
    agent.cli("security-group", "rule", "delete", "cli", ingress)
    # Narrow c's egress to tcp 8000: udp from c stops, udp from a still flows.
    _rule(agent, "cli", "egress", "--protocol", "tcp", "--port-range", "8000")
    agent.cli("security-group", "rule", "delete", "cli", rules["cli egress"])
    assert eventually(lambda: not c.connects("udp", b.ip, 5353), "c's udp denied")
    assert c.connects("tcp", b.ip, 8000)
    assert a.connects("udp", b.ip, 5353)


@pytest.mark.stock_kernel  # the kernel's conntrack: OVS system datapath, bridge conntrack
def test_deleting_a_rule_cuts_its_established_connections(sg):
    agent, a, b, _, rules = sg
    assert eventually(lambda: a.connects("tcp", b.ip, 8000), "tcp 8000 allowed")
    stream = a.stream(b.ip, 8000, 20 * TIME_SCALE)
    echoes = []
    eventually(lambda: len(echoes.append(stream.stdout.readline()) or echoes) > 10,
               "the stream flows")
    agent.cli("security-group", "rule", "delete", "srv", rules["ingress --protocol tcp "
                                                              "--port-range 8000"])
    # From the store write on (the CLI's own start-up is not the agent's
    # time; under the VM's emulation it alone takes seconds).
    cut_at = time.monotonic()
    out, _ = stream.communicate(timeout=40 * TIME_SCALE)
    last = float(([ln for ln in out.split() if ln] or [echoes[-1]])[-1])
    assert last - cut_at < 1.0 * TIME_SCALE, \
        f"the connection lived {last - cut_at:.2f} s after its rule was deleted"
    assert not a.connects("tcp", b.ip, 8000)  # new connections too
    assert a.connects("udp", b.ip, 5353)  # control: b is still there


def test_invalid_tcp_is_dropped(sg):
    _, a, b, _, _ = sg
    assert eventually(lambda: a.connects("tcp", b.ip, 8000), "tcp 8000 allowed")
    with b.capture(f"tcp dst port 8000 and src host {a.ip}") as cap:
        pkt = (f"Ether(src='{a.mac}', dst='{b.mac}')/IP(src='{a.ip}', dst='{b.ip}')/"
               "TCP(sport=40000, dport=8000, flags='{flags}', seq=1000)")
        a.scapy(f"sendp({pkt.format(flags='SF')}, iface='eth0', count=3)\n"
                f"sendp({pkt.format(flags='S')}, iface='eth0')")
    lines = [ln for ln in cap.text.splitlines() if "8000" in ln]
    assert not [ln for ln in lines if "[SF]" in ln or "[FS]" in ln], cap.text
    assert [ln for ln in lines if "[S]" in ln], "control SYN missing: capture broken?"


def test_dhcp_client_passes_and_a_vm_never_serves_dhcp(sg):
    _, a, b, _, _ = sg
    bcast = "Ether(src='{mac}', dst='ff:ff:ff:ff:ff:ff')/IP(src='0.0.0.0', " \
            "dst='255.255.255.255')/UDP(sport={sport}, dport={dport})/Raw(b'{tag}')"
    with a.capture("udp and (port 67 or port 68)") as cap:
        b.scapy(f"sendp({bcast.format(mac=b.mac, sport=68, dport=67, tag='client')}, "
                f"iface='eth0', count=2)\n"
                f"sendp(Ether(src='{b.mac}', dst='ff:ff:ff:ff:ff:ff')/IP(src='{b.ip}', "
                f"dst='255.255.255.255')/UDP(sport=67, dport=68)/Raw(b'server'), "
                f"iface='eth0', count=2)")
    assert "68 > 255.255.255.255.67" in cap.text, "the DHCP client request must pass"
    assert ".67 > 255.255.255.255.68" not in cap.text, cap.text


def _link_local(vm) -> str:
    def addr():
        out = vm.exec(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
        return "tentative" not in out and out.split()[3].split("/")[0] if out else None
    return eventually(addr, f"{vm.name}'s link-local address")


def test_ipv6_neighbour_discovery_passes_and_rules_filter_echo(sg):
    agent, a, b, _, _ = sg
    target = _link_local(b)
    _link_local(a)
    assert a.ping(target, count=2, extra=["-I", "eth0"])[1] == 0  # no icmpv6 rule
    neigh = a.exec(["ip", "-6", "neigh", "show", target, "dev", "eth0"]).stdout.lower()
    assert b.mac in neigh, f"neighbour discovery must pass: {neigh!r}"
    _rule(agent, "srv", "ingress", "--ethertype", "IPv6", "--protocol", "icmpv6")
    assert eventually(lambda: a.ping(target, extra=["-I", "eth0"])[1] == 1,
                      "icmpv6 rule lets echo in")


def test_refused_without_bridge_conntrack(lb):
    """Never filter silently less: no nf_conntrack_bridge, no port with groups."""
    if not bridge_conntrack_missing():
        pytest.skip("this kernel has bridge conntrack")
    agent = lb.agent()
    agent.cli("network", "create", "n1", "--type", "local")
    vm = lb.vm("a", 1)
    agent.cli("security-group", "create", "srv")
    agent.cli("port", "create", "p1", "--network", "n1", "--device", vm.tap, "--mac", vm.mac,
              "--ip", vm.ip, "--security-group", "srv")
    agent.start()
    agent.wait_ports(["p1"], status="error")
    reason = agent.status()["ports"]["p1"].get("reason", "")
    assert "nf_conntrack_bridge" in reason, reason
    assert lb.wired_into(vm.tap) is None
