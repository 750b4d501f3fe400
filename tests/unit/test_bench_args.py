"""bench/run.py's command line: what `tox -e bench` passes, and bad input."""

import importlib.util
import os

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_run", os.path.join(os.path.dirname(__file__), "..", "..", "bench", "run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def test_no_arguments_runs_everything():
    # `tox -e bench` with no posargs: this once failed in argparse itself.
    assert run.parse([]) == (["wiring", "learning", "dataplane", "core"], [100, 500, 1000],
                             ["linuxbridge", "openvswitch"])


def test_one_benchmark_smaller():
    assert run.parse(["wiring", "--sizes", "100", "--drivers", "openvswitch"]) == (
        ["wiring"], [100], ["openvswitch"])


@pytest.mark.parametrize("argv, needle", [
    (["foo"], "benchmark 'foo': choose from wiring, learning, dataplane, core, metrics"),
    (["--against", "no-such-revision"], "--against 'no-such-revision': not a git revision"),
    (["--sizes", "x"], "--sizes 'x'"),
    (["--sizes", "1"], "each >= 2"),
    (["--drivers", "ovs"], "--drivers 'ovs': choose from linuxbridge, openvswitch"),
])
def test_bad_input_names_the_field(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        run.parse(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err
