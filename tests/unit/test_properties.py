"""Property tests: hostile input gets a ValidationError naming a field, nothing else."""

import pathlib
import string
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsbr import model
from ovsbr.cmd import cli

anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                     st.text(), st.binary(), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
hostile_text = st.text(alphabet=string.printable + "\x00\u202e\u00e9/;$`|&", max_size=80)


def _check_parser(parse, data, valid) -> None:
    try:
        obj = parse(data)
    except model.ValidationError as e:
        assert e.field and e.message
    else:
        assert valid(obj)


@given(st.dictionaries(st.sampled_from(model.NETWORK_KEYS + ("extra",)), anything))
@settings(deadline=None)
def test_network_parsing_never_crashes(data):
    _check_parser(model.network_from_dict, data,
                  lambda n: model.NAME_RE.match(n.name) and n.type in model.NETWORK_TYPES)


@given(st.dictionaries(st.sampled_from(model.PORT_KEYS + ("extra",)), anything))
@settings(deadline=None)
def test_port_parsing_never_crashes(data):
    _check_parser(model.port_from_dict, data,
                  lambda p: p.device is None or len(p.device) <= model.IFNAMSIZ)


@given(name=hostile_text, device=hostile_text, mac=hostile_text)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cli_refuses_hostile_values_and_leaves_store_unchanged(tmp_path, capsys, name,
                                                               device, mac):
    work = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))  # fresh per example
    conf = work / "ovsbr.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {work / 'state'}\n")
    base = ["--config-file", str(conf)]
    assert cli.main(base + ["network", "create", "base", "--type", "local"]) == 0
    capsys.readouterr()
    state = work / "state" / "topology.json"
    before = state.read_bytes()
    try:
        rc = cli.main(base + ["port", "create", name or "x", "--network", "base",
                              "--device", device or "y", "--mac", mac or "z"])
    except SystemExit as e:  # argparse: a value that looks like an option
        rc = e.code
    err = capsys.readouterr().err
    if rc != 0:
        assert rc in (1, 2) and "error:" in err
        if rc == 1:
            assert err.startswith("ovsbr: error:") and len(err.splitlines()) == 1
        assert state.read_bytes() == before
