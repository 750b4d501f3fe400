"""The os-ken app starts and stops cleanly, many times in one process."""

import threading

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
