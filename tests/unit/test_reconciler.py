from ovsbr.agent import reconciler
from ovsbr.agent.reconciler import Action
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
    assert plan.actions == [Action("ensure_network", network="n1"),
                            Action("ensure_network", network="n2"),
                            Action("plug", network="n1", port="p1", device="vnet0")]
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
    assert plan.actions == [Action("plug", network="n1", port="p1", device="vnet0")]


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
    assert reconciler.plan(Topology(), obs, fp, keep_existing=True).actions == []
    kinds = [a.kind for a in reconciler.plan(Topology(), obs, fp).actions]
    assert kinds == ["unplug", "delete_network"]
