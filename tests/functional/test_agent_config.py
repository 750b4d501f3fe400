"""A bad configuration stops ovsbr-agent at start with one clear line."""

import os
import subprocess

import pytest

from ovsbr.testing.agent import Agent, log_text
from ovsbr.testing.netns import TIME_SCALE, wait_for


@pytest.mark.parametrize("sections, text", [
    ({"DEFAULT": {"driver": "hyperswitch"}},
     "[DEFAULT] driver: unknown value 'hyperswitch'; available: linuxbridge, openvswitch"),
    ({"linux_bridge": {"physical_interface_mappings": "physnet1"}},
     "[linux_bridge] physical_interface_mappings: 'physnet1' is not PHYSNET:INTERFACE"),
    ({"linux_bridge": {"physical_interface_mappings": "physnet1:nosuchnic0"}},
     "interface 'nosuchnic0' of physical network 'physnet1' does not exist"),
    ({"linux_bridge": {"bridge_prefix": "toolongprefix"}}, "[linux_bridge] bridge_prefix"),
    ({"DEFAULT": {"resync_interval": "0"}}, "[DEFAULT] resync_interval"),
    ({"ovs": {"datapath_type": "fast"}}, "[ovs] datapath_type"),
    ({"ovs": {"of_listen_port": "70000"}}, "[ovs] of_listen_port"),
    ({"vxlan": {"local_ip": "10.0.0.300"}}, "[vxlan] local_ip"),
    ({"DEFAULT": {"driver": "openvswitch"}, "vxlan": {"local_ip": "2001:db8::1"}},
     "[vxlan] local_ip"),
    ({"DEFAULT": {"driver": "openvswitch"}, "ovs": {"of_listen_address": "192.0.2.1"}},
     "[ovs] of_listen_address: 192.0.2.1 is not a loopback address: without TLS"),
    ({"DEFAULT": {"driver": "openvswitch"}, "ovs": {"of_ssl_key_file": "/etc/hostname"}},
     "[ovs] of_ssl_cert_file: required when any of"),
    ({"DEFAULT": {"driver": "openvswitch"},
      "ovs": {"of_ssl_key_file": "/nonexistent/k", "of_ssl_cert_file": "/etc/hostname",
              "of_ssl_ca_cert_file": "/etc/hostname"}},
     "[ovs] of_ssl_key_file: '/nonexistent/k' is not a readable file"),
    ({"DEFAULT": {"driver": "openvswitch"},
      "ovs": {"of_ssl_key_file": "/etc/hostname", "of_ssl_cert_file": "/etc/hostname",
              "of_ssl_ca_cert_file": "/etc/hostname"}},
     "[ovs] of_ssl_cert_file: cannot load the controller's TLS files"),
])
def test_bad_config_stops_agent_with_one_line(tmp_path, sections, text):
    agent = Agent(str(tmp_path), sections)
    agent.start()
    try:
        rc = agent.proc.wait(30 * TIME_SCALE)  # importing os-ken takes long under TCG
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("agent kept running with a bad configuration")
    out = log_text(agent)
    assert rc == 1, out
    errors = [line for line in out.splitlines() if line.startswith("ovsbr-agent: error:")]
    assert len(errors) == 1 and text in errors[0], out
    # Nothing was created: no state, no devices.
    assert not (tmp_path / "state" / "status.json").exists()


def test_kernel_datapath_missing_is_named(tmp_path):
    """datapath_type = system on a kernel without the openvswitch module."""
    from ovsbr.drivers.openvswitch.kernel import has_kernel_datapath

    if has_kernel_datapath():
        pytest.skip("this kernel has the openvswitch module (the stock-kernel VM)")
    agent = Agent(str(tmp_path), {"DEFAULT": {"driver": "openvswitch"},
                                  "ovs": {"datapath_type": "system"}})
    agent.start()
    rc = agent.proc.wait(30)
    out = log_text(agent)
    errors = [line for line in out.splitlines() if line.startswith("ovsbr-agent: error:")]
    assert rc == 1 and len(errors) == 1, out
    assert "[ovs] datapath_type: system needs the Open vSwitch kernel datapath (kernel " \
           "module openvswitch)" in errors[0], out


def test_a_control_socket_it_cannot_open_does_not_stop_the_wiring(tmp_path):
    """The control socket only answers ``ovsbr mac-table``: if its path is
    taken the agent says so, names the option, and wires ports anyway."""
    taken = tmp_path / "taken"
    taken.write_text("an operator's file")
    agent = Agent(str(tmp_path), {"DEFAULT": {"control_socket": str(taken)}})
    agent.start()
    try:
        wait_for(lambda: os.path.exists(os.path.join(agent.state_path, "status.json")),
                 30 * TIME_SCALE, what="the agent's first status")
        assert agent.alive(), log_text(agent)
        out = log_text(agent)
        assert f"control_socket {taken}: exists and is not a socket" in out, out
        assert taken.read_text() == "an operator's file"
        bad = agent.cli("mac-table", check=False)
        assert bad.returncode == 1 and "no agent answers" in bad.stderr, bad
    finally:
        agent.stop()
