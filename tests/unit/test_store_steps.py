"""Cutting a large store write into valid steps (ovsbr.store.steps)."""

from ovsbr.model import Topology, network_from_dict, port_from_dict
from ovsbr.store import steps


def _topo(nets=(), ports=()):
    t = Topology()
    for n in nets:
        t.networks[n] = network_from_dict({"name": n, "type": "local"})
    for name, net, dev in ports:
        t.ports[name] = port_from_dict({"name": name, "network": net, "device": dev})
    return t


def _replay(before, plan):
    """Each intermediate state of ``plan``, validated as the agents will see it."""
    state = before.copy()
    for step in plan:
        for kind, name, obj in step:
            objs = getattr(state, kind)
            objs.pop(name, None)
            if obj is not None:
                objs[name] = obj
        state.validate()
    return state


def test_a_small_change_is_one_step_and_no_change_none():
    before = _topo(["n"])
    after = _topo(["n"], [("p", "n", "t")])
    assert steps.steps(before, steps.changes(before, after), 10) == [
        [("ports", "p", after.ports["p"])]]
    assert steps.steps(before, steps.changes(before, before), 10) == []


def test_a_large_change_goes_in_steps_that_each_leave_a_valid_state():
    before = _topo(["old"], [(f"o{i}", "old", f"o{i}") for i in range(25)])
    after = _topo(["new"], [(f"p{i}", "new", f"t{i}") for i in range(30)])
    plan = steps.steps(before, steps.changes(before, after), 7)
    assert len(plan) > 1 and all(len(s) <= 7 for s in plan)
    assert _replay(before, plan) == after


def test_a_change_with_no_valid_order_stays_one_step():
    # Thirty ports each take the next one's device: any cut collides.
    before = _topo(["n"], [(f"p{i}", "n", f"t{i}") for i in range(30)])
    after = _topo(["n"], [(f"p{i}", "n", f"t{(i + 1) % 30}") for i in range(30)])
    todo = steps.changes(before, after)
    assert steps.steps(before, todo, 7) == [todo]
