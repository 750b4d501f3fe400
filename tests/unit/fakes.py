"""Test doubles shared by the agent's unit tests (pure logic, no datapath)."""

from ovsbr.drivers.base import Driver


class NullDriver(Driver):
    """A driver whose every datapath call does nothing and whose networks
    all fingerprint as "fp": a test overrides only what it watches."""

    name = "null"

    def check_config(self): pass
    def start(self, on_event): pass
    def stop(self): pass
    def fingerprint(self, net): return "fp"
    def ensure_network(self, net): pass
    def delete_network(self, name): pass
    def plug(self, port, net, device, policy=None): pass
    def unplug(self, device): pass
