"""What a port's status says when the datapath cannot forward for it yet."""

from types import SimpleNamespace

from ovsbr.agent import reconciler
from ovsbr.agent.service import Agent
from ovsbr.drivers.base import NotReady
from ovsbr.model import Topology


def test_bound_only_once_the_datapath_forwards():
    agent = Agent(store=None, driver=SimpleNamespace(name="openvswitch"), host="h",
                  resync_interval=30)
    agent._not_ready = {
        "p1": NotReady("vnet1 is on br-int; waiting for ovs-vswitchd to give it an "
                       "OpenFlow port"),
        "p2": NotReady("ovs-vswitchd cannot open vnet2: No such device", failed=True),
        "p4": NotReady("stale: the port is not bound, this must not show")}
    agent._port_errors = {"p3": "plug failed"}
    plan = reconciler.Plan(ports={
        "p0": reconciler.PortStatus(reconciler.BOUND, "vnet0"),
        "p1": reconciler.PortStatus(reconciler.BOUND, "vnet1"),
        "p2": reconciler.PortStatus(reconciler.BOUND, "vnet2"),
        "p3": reconciler.PortStatus(reconciler.BOUND, "vnet3"),
        "p4": reconciler.PortStatus(reconciler.WAITING, None, "no device named vnet4")})
    ports = agent.status(Topology(), plan)["ports"]
    assert ports["p0"] == {"status": "bound", "device": "vnet0"}
    assert ports["p1"]["status"] == "waiting" and "OpenFlow port" in ports["p1"]["reason"]
    assert ports["p2"] == {"status": "error", "device": "vnet2",
                           "reason": "ovs-vswitchd cannot open vnet2: No such device"}
    assert ports["p3"] == {"status": "error", "device": "vnet3", "reason": "plug failed"}
    assert ports["p4"] == {"status": "waiting", "reason": "no device named vnet4"}
