"""The VM stage's host side: which kernel, what the guest runs, what it reports."""

import os
import subprocess
import sys

from ovsbr.testing import stock_kernel as sk

SK, MH = "tests.functional.test_stock_kernel", "tests.functional.test_multihost"
JUNIT = f"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="{SK}" name="test_two_vlans_on_one_nic[linuxbridge]" time="9.1"/>
<testcase classname="{SK}" name="test_two_vlans_on_one_nic[openvswitch]" time="7.0">
  <failure message="boom">trace</failure></testcase>
<testcase classname="{MH}" name="test_x" time="0.1"><skipped message="no etcd"/></testcase>
<testcase classname="{MH}" name="test_y" time="0.1"><error message="fixture"/></testcase>
</testsuite></testsuites>
"""


def test_newest_kernel_with_its_modules(tmp_path):
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    for v in ("6.1.0-9-amd64", "6.1.0-28-amd64", "6.12.0-1-amd64"):
        (boot / f"vmlinuz-{v}").parent.mkdir(exist_ok=True)
        (boot / f"vmlinuz-{v}").write_text("")
    for v in ("6.1.0-9-amd64", "6.1.0-28-amd64"):  # 6.12 has no modules installed
        (mods / v).mkdir(parents=True)
        (mods / v / "modules.dep").write_text("")
    assert sk.find_kernel(str(boot), str(mods)) == str(boot / "vmlinuz-6.1.0-28-amd64")
    assert sk.find_kernel(str(tmp_path / "none"), str(mods)) is None


def test_junit_outcomes_and_closing_line(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    cases = sk.parse_junit(str(path))
    assert cases[0] == ("passed",
                        "tests/functional/test_stock_kernel.py::test_two_vlans_on_one_nic"
                        "[linuxbridge]")
    assert [o for o, _ in cases] == ["passed", "failed", "skipped", "error"]
    assert sk.summary(cases) == "1 passed, 2 failed, 1 skipped"


def test_vng_command_falls_back_to_tcg():
    kvm = sk.vng_command("vng", "/boot/vmlinuz-x", "/r/g.sh", "/r", True, 2, "3G")
    tcg = sk.vng_command("vng", "/boot/vmlinuz-x", "/r/g.sh", "/r", False, 2, "3G")
    assert "--disable-kvm" not in kvm and "--disable-kvm" in tcg
    assert tcg[tcg.index("--rwdir") + 1] == "/r" and tcg[-1] == "bash /r/g.sh"


def test_guest_runs_this_checkout_on_the_kernel_datapath():
    script = sk.guest_script("/work/x y", "/tmp/r", ["-m", "stock_kernel", "tests/functional"])
    assert "cd '/work/x y'" in script
    assert "OVSBR_OVS_DATAPATH=system" in script
    assert "-m stock_kernel tests/functional" in script
    assert "modprobe -q \"$m\"" in script and "8021q" in script
    assert script.rstrip().endswith(f"> {os.path.join('/tmp/r', 'rc')}")


def test_console_through_a_pipe_keeps_the_log(tmp_path):
    """qemu opens its stdout with O_TRUNC: handed a log file, it emptied it."""
    log = tmp_path / "run.log"
    host_side = ("import sys; from ovsbr.testing import stock_kernel as sk\n"
                 "print('host tests: 240 passed', flush=True)\n"
                 "sk.run_forwarding(['bash', '-c', ': > /dev/stdout; echo guest says hi'])\n")
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-c", host_side], stdout=out, check=True)
    assert log.read_text() == "host tests: 240 passed\nguest says hi\n"


def test_failed_tests_logs_lead_and_passing_tests_logs_are_left_out():
    names = ["dmesg.txt", "_tmp_ovsbr-vm-x_pytest.log",
             "_tmp_pytest-of-root_pytest-3_test_deleting_a_rule_cuts_its_0_agent_agent.log",
             "_tmp_pytest-of-root_pytest-3_test_mac_move_is_relearned_wit0_agent_agent.log",
             "_tmp_pytest-of-root_pytest-3_test_two_vlans_on_one_nic_linu0_lb_agent.log"]
    failed = ["tests/functional/test_openvswitch.py::test_mac_move_is_relearned_within_one_frame",
              "tests/functional/test_stock_kernel.py::test_two_vlans_on_one_nic[linuxbridge]"]
    assert sk.failed_first(names, failed) == [
        "_tmp_pytest-of-root_pytest-3_test_mac_move_is_relearned_wit0_agent_agent.log",
        "_tmp_pytest-of-root_pytest-3_test_two_vlans_on_one_nic_linu0_lb_agent.log",
        "dmesg.txt"]
