"""The alert rules and the Grafana dashboard name only metrics the agent
exports, and the rules fire when they should (promtool, when installed)."""

import json
import pathlib
import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ovsbr import metrics
from tests.unit.test_metrics import FakeAgent

DOC = pathlib.Path(__file__).parents[2] / "doc"
RULES = DOC / "prometheus" / "ovsbr-alerts.yml"
DASHBOARD = DOC / "grafana" / "ovsbr-dashboard.json"
NAME = re.compile(r"\b(ovsbr_[a-z_]+)")


def exported() -> set[str]:
    """Every sample name the agent's registry can expose."""
    m = metrics.Metrics(FakeAgent(), wall=lambda: 1.0)
    m.on_reconciled(metrics.ReconcileReport(0.01, {"plug": 1}, 0, True))
    names = set()
    for family in text_string_to_metric_families(m.exposition().decode()):
        names |= {s.name for s in family.samples}
    return names


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return exprs


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_only_exported_metrics_are_named(source):
    text = RULES.read_text() if source == "rules" else "\n".join(dashboard_exprs())
    named = set(NAME.findall(text))
    assert named, "no ovsbr metric named at all"
    assert named <= exported(), sorted(named - exported())


def test_dashboard_panels_have_unique_ids_and_a_query():
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and all(p["targets"] for p in doc["panels"])


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus)")
def test_rules_are_valid_and_fire_as_tested():
    for args in (["check", "rules", RULES.name], ["test", "rules", "ovsbr-alerts.test.yml"]):
        res = subprocess.run(["promtool", *args], cwd=RULES.parent, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
