from ovsbr.agent import reconciler
from ovsbr.agent.reconciler import EnsureNetwork, Mode, Plug, Prepare, Unplug
from ovsbr.drivers.base import Device, NetworkState, Observed
from ovsbr.model import Topology


def fp(net):
    return f"{net.type}/{net.mtu}"


def topo():
    return Topology.from_dict({
        "networks": [{"name": "n1", "type": "local"}, {"name": "n2", "type": "local"}],
        "ports": [{"name": "p1", "network": "n1", "device": "vnet0"},
                  {"name": "p2", "network": "n2", "iface_id": "abc"},
                  {"name": "p3", "network": "n2", "device": "vnet9"}]})


def built():
    return {"n1": NetworkState("n1", "local/None"), "n2": NetworkState("n2", "local/None")}


def test_empty_datapath_builds_networks_and_plugs_present_devices():
    obs = Observed(devices={"vnet0": Device("vnet0"), "eth0": Device("eth0")})
    plan = reconciler.plan(topo(), obs, fp)
    assert plan.actions == [EnsureNetwork("n1"),
                            EnsureNetwork("n2"),
                            Plug("n1", "p1", "vnet0")]
    assert plan.ports["p1"].status == "bound"
    assert plan.ports["p2"].status == "waiting"
    assert "iface-id abc" in plan.ports["p2"].reason


def test_converged_state_needs_nothing():
    obs = Observed(networks=built(), devices={
        "vnet0": Device("vnet0", network="n1"), "tapx": Device("tapx", iface_id="abc",
                                                               network="n2")})
    plan = reconciler.plan(topo(), obs, fp)
    assert plan.actions == []
    assert plan.ports["p2"].device == "tapx"


def test_iface_id_wins_over_a_device_name():
    t = topo()
    obs = Observed(networks=built(), devices={"vnet9": Device("vnet9", iface_id="abc")})
    plan = reconciler.plan(t, obs, fp)
    # vnet9 carries p2's iface-id, so p3 (which names vnet9) must not take it.
    assert plan.ports["p2"].device == "vnet9"
    assert plan.ports["p3"].status == "waiting"


def test_orphans_unplugged_stale_networks_deleted_changed_rebuilt():
    t = topo()
    del t.ports["p1"]
    obs = Observed(networks={"n1": NetworkState("n1", "local/1400"),
                             "old": NetworkState("old", "x")},
                   devices={"vnet0": Device("vnet0", network="n1"),
                            "vnet5": Device("vnet5", network="old")})
    kinds = [(a.kind, a.network or a.device) for a in reconciler.plan(t, obs, fp).actions]
    assert kinds == [("unplug", "n1"), ("unplug", "old"), ("delete_network", "old"),
                     ("ensure_network", "n1"), ("ensure_network", "n2")]


def test_device_in_wrong_network_is_moved():
    obs = Observed(networks=built(), devices={"vnet0": Device("vnet0", network="n2")})
    plan = reconciler.plan(topo(), obs, fp)
    assert plan.actions == [Plug("n1", "p1", "vnet0")]


def test_failed_network_reports_error_and_is_not_retried():
    obs = Observed(networks={"n2": NetworkState("n2", "local/None")},
                   devices={"vnet0": Device("vnet0")})
    plan = reconciler.plan(topo(), obs, fp, {"n1": "needs 8021q"})
    assert plan.actions == []
    assert plan.ports["p1"].status == "error"
    assert "8021q" in plan.ports["p1"].reason


def test_keep_existing_plans_no_teardown():
    obs = Observed(networks={"old": NetworkState("old", "x")},
                   devices={"vnet5": Device("vnet5", network="old")})
    assert reconciler.plan(Topology(), obs, fp, mode=Mode.KEEP).actions == []
    kinds = [a.kind for a in reconciler.plan(Topology(), obs, fp).actions]
    assert kinds == ["unplug", "delete_network"]


def test_declared_ports_without_device_are_prepared_once():
    obs = Observed(networks=built(), devices={"vnet0": Device("vnet0", network="n1")})
    plan = reconciler.plan(topo(), obs, fp, prepare=True)
    # p3 names vnet9, which is absent; p2 has only an iface-id: no name to hold.
    assert plan.actions == [Prepare("n2", "p3", "vnet9")]
    assert plan.ports["p3"].status == "waiting"
    obs.prepared["vnet9"] = "n2"
    assert reconciler.plan(topo(), obs, fp, prepare=True).actions == []
    # Without the driver's support nothing is prepared.
    obs.prepared.clear()
    assert reconciler.plan(topo(), obs, fp).actions == []


def test_prepared_port_follows_its_network_and_goes_with_its_port():
    obs = Observed(networks=built(), devices={"vnet0": Device("vnet0", network="n1")},
                   prepared={"vnet9": "n1", "vnet7": "n2", "vnetx": None})
    plan = reconciler.plan(topo(), obs, fp, prepare=True)
    # vnet7's port is gone: unplugged; vnet9 moves to n2; an unmarked row
    # someone else made (vnetx) is left alone.
    assert plan.actions == [Unplug("n2", "vnet7"),
                            Prepare("n2", "p3", "vnet9")]
    assert reconciler.plan(topo(), obs, fp, prepare=True, mode=Mode.KEEP).actions == [
        Prepare("n2", "p3", "vnet9")]


def test_no_prepare_for_a_failed_network_or_a_present_device():
    obs = Observed(networks=built(), devices={"vnet0": Device("vnet0", network="n1"),
                                              "vnet9": Device("vnet9", iface_id="abc")})
    # vnet9 exists (claimed by p2's iface-id): nothing to prepare for p3.
    assert reconciler.plan(topo(), obs, fp, prepare=True).actions == [
        Plug("n2", "p2", "vnet9")]
    obs = Observed(networks=built(), devices={"vnet0": Device("vnet0", network="n1")})
    assert reconciler.plan(topo(), obs, fp, {"n2": "broken"}, prepare=True).actions == []


def test_mode_keeps_a_datapath_the_store_never_described():
    obs = Observed(networks={"old": NetworkState("old", "x")})
    assert reconciler.mode_for(Topology(), obs) is Mode.KEEP
    assert reconciler.mode_for(Topology(), obs, cleanup=True) is Mode.CLEANUP
    assert reconciler.mode_for(Topology(revision=3), obs) is Mode.NORMAL
    assert reconciler.mode_for(Topology(), Observed()) is Mode.NORMAL  # nothing to keep


def test_actions_carry_exactly_their_fields():
    import dataclasses

    import pytest

    with pytest.raises(TypeError):
        Plug("n1", "p1")  # a plug without its device cannot be made
    assert [f.name for f in dataclasses.fields(Unplug)] == ["network", "device"]
    assert {a.kind for a in (EnsureNetwork("n"), Unplug("n", "d"), Plug("n", "p", "d"),
                             Prepare("n", "p", "d"))} == {
        "ensure_network", "unplug", "plug", "prepare"}
