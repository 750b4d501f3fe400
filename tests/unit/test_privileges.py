"""The agent's capability check, from recorded /proc/PID/status texts."""

import pytest

from ovsbr import privileges
from ovsbr.privileges import PrivilegeError

ROOT = """Name:\tovsbr-agent
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
CapInh:\t0000000000000000
CapPrm:\t000001ffffffffff
CapEff:\t000001ffffffffff
CapBnd:\t000001ffffffffff
"""
# setpriv --reuid 61000 --regid 61000 --inh-caps=+net_admin --ambient-caps=+net_admin
NET_ADMIN = ROOT.replace("\t0\t0\t0\t0", "\t61000\t61000\t61000\t61000").replace(
    "000001ffffffffff", "0000000000001000")
NOTHING = NET_ADMIN.replace("0000000000001000", "0000000000000000")


def test_parse_names_the_capabilities_held():
    held = privileges.parse_status(NET_ADMIN)
    assert (held.uid, held.gid, held.effective) == (61000, 61000, {"CAP_NET_ADMIN"})
    assert held.describe() == "uid 61000, gid 61000, CAP_NET_ADMIN"
    assert "41 capabilities" in privileges.parse_status(ROOT).describe()


def test_net_admin_alone_is_enough_and_root_passes():
    assert privileges.require(held=privileges.parse_status(NET_ADMIN)).uid == 61000
    assert privileges.require(held=privileges.parse_status(ROOT)).uid == 0


def test_missing_capability_is_one_line_naming_it_and_how_to_grant_it():
    with pytest.raises(PrivilegeError) as e:
        privileges.require(held=privileges.parse_status(NOTHING))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("missing capability CAP_NET_ADMIN")
    assert "uid 61000" in msg and "no capabilities" in msg
    assert "AmbientCapabilities=CAP_NET_ADMIN" in msg and "setpriv" in msg


def test_unreadable_status_is_an_error_not_a_traceback():
    with pytest.raises(PrivilegeError, match="cannot read"):
        privileges.parse_status("Name:\tx\n")


def test_this_process_can_be_read():
    assert privileges.current().uid >= 0


def test_group_of_names_a_paths_group_or_none(tmp_path):
    import grp
    import os

    f = tmp_path / "f"
    f.write_text("x")
    assert privileges.group_of(str(f)) == grp.getgrgid(os.stat(f).st_gid).gr_name
    assert privileges.group_of(str(tmp_path / "missing")) is None
