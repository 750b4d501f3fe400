"""The plan for a change equals the full plan, over random sequences of changes."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from ovsbr.agent import reconciler
from ovsbr.agent.incremental import Change, PortRefs, changed_ports, plan_change
from ovsbr.agent.reconciler import Plug, Prepare, Unplug
from ovsbr.drivers.base import Device, NetworkState, Observed
from ovsbr.model import Network, Port, Topology

PORTS = [f"p{i}" for i in range(6)]
DEVICES = [f"d{i}" for i in range(6)]
IFACES = [None, "i0", "i1", "i2"]
NETS = ["n0", "n1", "n2"]
NETWORKS = {n: Network(n, "local") for n in NETS}


def fp(net):
    return net.type


port_def = st.tuples(st.sampled_from(NETS[:2]), st.sampled_from([None] + DEVICES),
                     st.sampled_from(IFACES))
device_def = st.tuples(st.sampled_from(IFACES), st.sampled_from([None] + NETS))
step = st.one_of(
    st.tuples(st.just("port"), st.sampled_from(PORTS), st.one_of(st.none(), port_def)),
    st.tuples(st.just("device"), st.sampled_from(DEVICES), st.one_of(st.none(), device_def)),
    st.tuples(st.just("prepared"), st.sampled_from(DEVICES),
              st.one_of(st.none(), st.sampled_from(NETS))),
)


def topology(ports: dict) -> Topology:
    t = Topology(networks=NETWORKS, revision=1)
    for name, (net, dev, iface) in ports.items():
        if dev is None and iface is None:
            dev = name  # a port names something to wait for
        t.ports[name] = Port(name, net, device=dev, iface_id=iface)
    return t


def observed(devices: dict, prepared: dict) -> Observed:
    obs = Observed(networks={n: NetworkState(n, "local") for n in NETS})
    for name, (iface, net) in devices.items():
        obs.devices[name] = Device(name, iface_id=iface, network=net)
    obs.prepared = {k: v for k, v in prepared.items() if k not in devices}
    return obs


def apply(plan: reconciler.Plan, devices: dict, prepared: dict) -> set[str]:
    """What the agent's driver calls do to the datapath; the devices they
    touch come back as events (the next change)."""
    touched = set()
    for a in plan.actions:
        if isinstance(a, Plug):
            devices[a.device] = (devices[a.device][0], a.network)
        elif isinstance(a, Unplug):
            if a.device in devices:
                devices[a.device] = (devices[a.device][0], None)
            prepared.pop(a.device, None)
        elif isinstance(a, Prepare):
            prepared[a.device] = a.network
        else:
            continue
        touched.add(a.device)
    return touched


def same(a: reconciler.Plan, b: reconciler.Plan) -> None:
    assert a.actions == b.actions
    assert a.ports == b.ports
    assert a.devices == b.devices


@given(start_ports=st.dictionaries(st.sampled_from(PORTS), port_def, max_size=6),
       start_devices=st.dictionaries(st.sampled_from(DEVICES), device_def, max_size=6),
       steps=st.lists(st.lists(step, min_size=1, max_size=3), min_size=1, max_size=8),
       errors=st.sampled_from([{}, {"n1": "boom"}]), prepare=st.booleans())
@settings(max_examples=400, deadline=None)
def test_plan_for_a_change_equals_the_full_plan(start_ports, start_devices, steps, errors,
                                                prepare):
    ports, devices, prepared = dict(start_ports), dict(start_devices), {}
    desired, obs = topology(ports), observed(devices, prepared)
    previous = reconciler.plan(desired, obs, fp, errors, prepare=prepare)
    touched_devices = apply(previous, devices, prepared)
    for batch in steps:
        for kind, name, value in batch:
            table = {"port": ports, "device": devices, "prepared": prepared}[kind]
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
            if kind != "port":
                touched_devices.add(name)
        before, desired = desired, topology(ports)
        obs = observed(devices, prepared)
        change = Change(changed_ports(before, desired), frozenset(touched_devices))
        full = reconciler.plan(desired, obs, fp, errors, prepare=prepare)
        inc = plan_change(desired, before, obs, fp, errors, previous, change,
                          PortRefs.of(desired), prepare=prepare)
        assert inc is not None
        same(inc, full)
        previous = inc
        touched_devices = apply(inc, devices, prepared)


def test_one_tap_appearing_is_planned_alone():
    """The point of it: a change reaches its own port, not the others."""
    ports = {f"p{i}": ("n0", f"d{i}", None) for i in range(200)}
    devices = {f"d{i}": (None, "n0") for i in range(199)}
    desired, obs = topology(ports), observed(devices, {})
    previous = reconciler.plan(desired, obs, fp)
    devices["d199"] = (None, None)
    obs = observed(devices, {})
    kept = previous.ports["p5"]
    inc = plan_change(desired, desired, obs, fp, {}, previous,
                      Change(devices=frozenset({"d199"})), PortRefs.of(desired))
    assert inc.actions == [Plug("n0", "p199", "d199")]
    assert inc.ports["p199"].status == "bound"
    # Unchanged ports keep their very status objects (status is not rebuilt).
    assert inc.ports["p5"] is kept


def test_a_device_leaving_its_port_frees_it_for_another():
    desired = topology({"p0": ("n0", "d1", "i0"), "p1": ("n1", "d1", None)})
    obs = observed({"d1": ("i0", "n0")}, {})
    previous = reconciler.plan(desired, obs, fp)
    assert previous.devices["p0"].name == "d1" and "p1" not in previous.devices
    after = topology({"p0": ("n0", "d9", "i2"), "p1": ("n1", "d1", None)})
    obs = observed({"d1": (None, "n0")}, {})
    inc = plan_change(after, desired, obs, fp, {}, previous,
                      Change(changed_ports(desired, after), frozenset({"d1"})),
                      PortRefs.of(after))
    assert inc.actions == [Plug("n1", "p1", "d1")]
    assert inc.ports["p0"].status == "waiting"


def test_networks_changed_take_the_full_plan():
    desired = topology({"p0": ("n0", "d0", None)})
    other = dataclasses.replace(desired, networks={"n0": Network("n0", "local", mtu=1400)})
    assert changed_ports(desired, other) is None
    assert plan_change(other, desired, observed({}, {}), fp, {},
                       reconciler.plan(desired, observed({}, {}), fp), Change(),
                       PortRefs.of(other)) is None
