"""The agent's control socket (agent.control), on a real Unix socket."""

import os
import socket
import stat

import pytest

from ovsbr.agent import control
from ovsbr.agent.control import ControlError, ControlServer


def _boom():
    raise RuntimeError("the switch is gone")


@pytest.fixture
def served(tmp_path):
    path = str(tmp_path / "agent.ctl")
    server = ControlServer(path, {"mac-table": lambda: {"br-int": {"mac_count": 2}},
                                  "boom": _boom})
    server.start()
    yield server
    server.stop()


def test_a_command_is_answered(served):
    assert control.ask(served.path, "mac-table") == {"br-int": {"mac_count": 2}}
    assert stat.S_IMODE(os.stat(served.path).st_mode) == 0o660


def test_an_unknown_command_names_the_allowed_ones(served):
    with pytest.raises(ControlError, match=r"unknown command 'fdb'; allowed: boom, mac-table"):
        control.ask(served.path, "fdb")


def test_a_failing_command_is_reported_and_the_server_goes_on(served):
    with pytest.raises(ControlError, match="boom failed: the switch is gone"):
        control.ask(served.path, "boom")
    assert control.ask(served.path, "mac-table")


def test_a_silent_client_does_not_stop_the_others(served):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(served.path)  # says nothing, holds its connection
        assert control.ask(served.path, "mac-table", timeout=3)


def test_no_agent_is_a_clear_error(tmp_path):
    with pytest.raises(ControlError, match="is ovsbr-agent running on this host"):
        control.ask(str(tmp_path / "agent.ctl"), "mac-table")


def test_a_socket_left_by_a_killed_agent_is_replaced_and_stop_removes_it(tmp_path):
    path = str(tmp_path / "agent.ctl")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(path)
    old.close()  # the file stays, nobody listens
    server = ControlServer(path, {"ping": lambda: "pong"})
    server.start()
    try:
        assert control.ask(path, "ping") == "pong"
    finally:
        server.stop()
    assert not os.path.exists(path)


def test_anything_else_at_the_path_is_kept_and_named(tmp_path):
    path = tmp_path / "agent.ctl"
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        ControlServer(str(path), {}).start()
    assert path.read_text() == "not a socket"


def test_a_directory_it_cannot_make_is_a_control_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ControlError, match="cannot listen"):
        ControlServer(str(blocker / "agent.ctl"), {}).start()
