"""The OpenFlow listener with mutual TLS: switches must present a CA-signed cert."""

from __future__ import annotations

import socket
import subprocess

import pytest

from ovsbr.testing.netns import wait_for
from tests.functional.ovs_harness import OvsHarness

OFPT_HELLO_13 = bytes.fromhex("0400000800000001")


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d) -> dict[str, str]:
    """A throwaway CA with a controller and a switch certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=ovsbr-test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for who in ("ctl", "switch"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=ovsbr-test-{who}",
                 "-keyout", f"{who}.key", "-out", f"{who}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{who}.pem", cwd=d)
    return {name: str(d / name) for name in
            ("ca.pem", "ctl.key", "ctl.pem", "switch.key", "switch.pem")}


@pytest.fixture
def tls_ovsh(env, tmp_path, ovs):
    pki = make_pki(tmp_path)
    ovs.vsctl("set-ssl", pki["switch.key"], pki["switch.pem"], pki["ca.pem"])
    # Root's agent: the keys stay in pytest's private directory.
    harness = OvsHarness(env, tmp_path, None, ovs)
    yield harness, pki
    harness.cleanup()
    ovs.vsctl("del-ssl", check=False)


def test_switch_connects_over_tls_and_plain_tcp_is_refused(tls_ovsh):
    h, pki = tls_ovsh
    agent, vm1, vm2 = h.two_vms(ovs={"of_ssl_key_file": pki["ctl.key"],
                                     "of_ssl_cert_file": pki["ctl.pem"],
                                     "of_ssl_ca_cert_file": pki["ca.pem"]})
    assert h.ovs.vsctl("get-controller", h.br_int).stdout.strip() == \
        f"ssl:127.0.0.1:{h.of_port}"
    # fail_mode=secure: traffic flows only if the app programmed the switch.
    wait_for(lambda: any("group:" in f for f in h.ovs.flows(h.br_int)), 15,
             what="flows installed over TLS")
    assert vm1.can_ping(vm2.ip)
    # A peer speaking plain OpenFlow gets no OpenFlow back: the TLS
    # handshake fails and the connection is closed.
    with socket.create_connection(("127.0.0.1", h.of_port), timeout=10) as s:
        s.sendall(OFPT_HELLO_13)
        try:
            reply = s.recv(64)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"\x04\x00"), reply
    assert agent.alive()
    assert vm1.can_ping(vm2.ip)
