"""The os-ken app starts and stops cleanly, many times in one process."""

import threading
import time

from os_ken.controller import ofp_handler

from ovsbr.openflow import pipeline as pl
from ovsbr.openflow.runtime import ControllerRuntime
from ovsbr.testing.netns import wait_for
from tests.functional.conftest import DATAPATH_TYPE, free_port


def test_start_stop_many_times_with_a_real_switch(ovs, env):
    bridge = f"{env.prefix}rt"
    baseline = threading.active_count()
    try:
        for i in range(4):
            port = free_port()
            runtime = ControllerRuntime("ovsbr.openflow.l2_learning", ("127.0.0.1", port))
            apps = runtime.start()
            app = apps["ovsbr_l2"]
            app.set_bindings(0xAA, bridge, [], [])  # what the driver's sync() does
            if i == 0:
                ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge,
                          f"datapath_type={DATAPATH_TYPE}", "protocols=OpenFlow13",
                          "other_config:datapath-id=00000000000000aa")
            ovs.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{port}")
            assert app.wait_connected(0xAA, 15), f"switch never connected to runtime #{i}"
            assert any("CONTROLLER:128" in f for f in ovs.flows(bridge))
            runtime.stop()
            # Every thread the run made is gone: listener, switch, app loops.
            wait_for(lambda: threading.active_count() <= baseline, 10,
                     what=f"threads back to {baseline} (now {threading.active_count()})")
    finally:
        ovs.vsctl("--if-exists", "del-br", bridge, check=False)


def test_the_switch_is_taken_over_however_late_os_ken_reaches_main(ovs, env, monkeypatch):
    """os-ken's own handshake runs on the connection's thread: the features
    reply sets the switch's id and asks for its port descriptions, whose
    reply moves it to MAIN_DISPATCHER; the app's handlers run on the app's
    thread, and the connection's thread hands each reply to the handlers of
    the state it is in at that moment. An app that asked for flow stats on
    the features reply could be ahead of that (seen under TCG: a switch
    connected for minutes with no flows at all): the replies came in
    CONFIG and were dropped. Here the connection's thread is slow on purpose."""
    real = ofp_handler.OFPHandler.switch_features_handler

    def late(self, ev):
        time.sleep(0.5)
        real(self, ev)

    late.callers = real.callers  # an os-ken handler: registered as the original
    monkeypatch.setattr(ofp_handler.OFPHandler, "switch_features_handler", late)
    bridge, port = f"{env.prefix}rl", free_port()
    runtime = ControllerRuntime("ovsbr.openflow.l2_learning", ("127.0.0.1", port))
    try:
        app = runtime.start()["ovsbr_l2"]
        app.set_bindings(0xAB, bridge, [], [])
        ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge,
                  f"datapath_type={DATAPATH_TYPE}", "protocols=OpenFlow13",
                  "other_config:datapath-id=00000000000000ab")
        ovs.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{port}")
        assert app.wait_connected(0xAB, 15), "switch connected but never taken over"
        assert any("CONTROLLER:128" in f for f in ovs.flows(bridge))
    finally:
        runtime.stop()
        ovs.vsctl("--if-exists", "del-br", bridge, check=False)


def test_ports_of_a_new_bridge_wait_until_the_switch_has_their_flows(ovs, env):
    """On a bridge the agent created there are no flows to forward its
    ports: they are not applied (so not reported bound) before the switch
    connects, and are once the take-over's barrier is answered."""
    bridge, port = f"{env.prefix}rn", free_port()
    runtime = ControllerRuntime("ovsbr.openflow.l2_learning", ("127.0.0.1", port))
    try:
        app = runtime.start()["ovsbr_l2"]
        ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge,
                  f"datapath_type={DATAPATH_TYPE}", "protocols=OpenFlow13", "fail_mode=secure",
                  "other_config:datapath-id=00000000000000ac")
        app.new_bridge(0xAC, bridge)
        app.set_bindings(0xAC, bridge, [pl.PortBinding(7, 1)], [])
        time.sleep(1)
        assert app.unapplied(0xAC) == [7]  # no switch, no flows
        ovs.vsctl("set-controller", bridge, f"tcp:127.0.0.1:{port}")
        wait_for(lambda: app.unapplied(0xAC) == [], 15, what="port 7 applied after take-over")
        assert any("in_port=7" in f for f in ovs.flows(bridge))
    finally:
        runtime.stop()
        ovs.vsctl("--if-exists", "del-br", bridge, check=False)
