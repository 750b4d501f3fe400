"""The shipped unit grants what the agent checks for, and nothing more."""

import pathlib
import re
import shutil
import subprocess

import pytest

from ovsbr import privileges
from ovsbr.testing.privileges import AGENT_CAPS

TOP = pathlib.Path(__file__).parents[2]
UNIT = TOP / "etc/systemd/ovsbr-agent.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_runs_the_agent_as_its_user_with_the_capabilities_it_checks():
    s = settings()
    assert s["User"] == ["ovsbr"] and s["Group"] == ["ovsbr"]
    needed = " ".join(privileges.AGENT_NEEDS)
    assert s["AmbientCapabilities"] == [needed]
    assert s["CapabilityBoundingSet"] == [needed]
    assert s["NoNewPrivileges"] == ["yes"]
    # Tests run agents with the same set (setpriv's spelling).
    assert AGENT_CAPS == ("net_admin",)
    # The store directory is shared with group ovsbr, files take its group.
    assert s["StateDirectoryMode"] == ["2770"]
    # The agent writes /proc/sys/net/ipv{4,6}/conf/<bridge>/: these would
    # make that read-only or hide it.
    assert "ProtectKernelTunables" not in s and "ProcSubset" not in s


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_exposure_score_is_the_one_readme_reports():
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", res.stdout)
    assert score, res.stdout + res.stderr
    assert float(score.group(1)) <= 2.0, res.stdout
    readme = (TOP / "README.md").read_text()
    assert f"exposure level {score.group(1)} ({score.group(2)})" in readme
