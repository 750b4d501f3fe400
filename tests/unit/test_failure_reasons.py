"""A failure's reason stays readable whatever the library said, and a bulk
OVSDB transaction gets time in proportion to its size."""

import contextlib

from ovsbr.agent.actions import REASON_LIMIT, Applier, SayOnce, reason_of
from ovsbr.agent.reconciler import Plug
from ovsbr.drivers.openvswitch.ovsdb import COMMANDS_PER_TIMEOUT, transaction_timeout
from ovsbr.model import Topology
from tests.unit.fakes import NullDriver


def test_a_short_reason_is_kept_whole():
    assert reason_of(RuntimeError("no such device")) == "no such device"
    assert reason_of(RuntimeError()) == "RuntimeError"


def test_a_long_reason_is_cut_and_says_how_much():
    text = "Commands [" + "AddPortCommand(port=bw0), " * 200_000 + "] exceeded timeout"
    reason = reason_of(RuntimeError(text))
    assert reason.startswith(text[:REASON_LIMIT])
    assert reason.endswith(f"... ({len(text) - REASON_LIMIT} more characters)")
    assert len(reason) < REASON_LIMIT + 50


HUGE = "Commands [" + "x" * 1_000_000 + "] exceeded timeout 10 seconds"


class _FailingBatch(NullDriver):
    """A driver whose batch fails on commit, with a message quoting every call."""

    def __init__(self):
        pass

    def observe(self):
        raise AssertionError("not asked")

    @contextlib.contextmanager
    def batch(self):
        yield
        raise RuntimeError(HUGE)


def test_a_failed_batch_gives_every_port_the_short_reason(caplog):
    topo = Topology.from_dict({
        "networks": [{"name": "n", "type": "local"}],
        "ports": [{"name": f"p{i}", "network": "n", "device": f"t{i}"} for i in range(50)]})
    applier = Applier(_FailingBatch(), SayOnce())
    outcomes = applier.apply_ports([Plug("n", f"p{i}", f"t{i}") for i in range(50)], topo)
    assert len(outcomes) == 50
    assert {o.error for o in outcomes} == {reason_of(RuntimeError(HUGE))}
    assert len(outcomes[0].error) < REASON_LIMIT + 50
    assert all(len(r.getMessage()) < 2 * REASON_LIMIT for r in caplog.records)


def test_the_transaction_timeout_grows_with_the_commands_only_past_the_first_share():
    assert transaction_timeout(10, 0) == 10
    assert transaction_timeout(10, 3) == 10
    assert transaction_timeout(10, COMMANDS_PER_TIMEOUT) == 10
    assert transaction_timeout(10, COMMANDS_PER_TIMEOUT + 1) == 20
    # A bulk of 5,002 new ports: three commands each.
    assert transaction_timeout(10, 5002 * 3) == 60
    assert transaction_timeout(1, 5002 * 3) == 6
