import pytest
from oslo_config import cfg

from ovsbr.cmd.common import check_options
from ovsbr.conf import opts
from ovsbr.conf.mappings import parse_mappings
from ovsbr.drivers import names
from ovsbr.exceptions import ConfigError

OPT = "[linux_bridge] physical_interface_mappings"


def test_mappings():
    assert parse_mappings(OPT, ["physnet1:eth0", " p2 : eth1 "], "INTERFACE") == {
        "physnet1": "eth0", "p2": "eth1"}


@pytest.mark.parametrize("items, text", [
    (["physnet1"], "is not PHYSNET:INTERFACE"),
    (["physnet1:"], "is not PHYSNET:INTERFACE"),
    ([":eth0"], "is not PHYSNET:INTERFACE"),
    (["p1:eth0", "p1:eth1"], "mapped twice"),
    (["p1:eth0", "p2:eth0"], "mapped to both"),
    (["p1:" + "e" * 16], "interface"),
    (["p 1:eth0"], "physical network"),
])
def test_bad_mappings(items, text):
    with pytest.raises(ConfigError) as e:
        parse_mappings(OPT, items, "INTERFACE")
    assert str(e.value).startswith(OPT)
    assert text in str(e.value)


def test_check_options_names_the_bad_option(tmp_path):
    conf = cfg.ConfigOpts()
    opts.register(conf)
    path = tmp_path / "c.conf"
    path.write_text("[ovs]\ndatapath_type = fast\n")
    conf(["--config-file", str(path)])
    with pytest.raises(ConfigError) as e:
        check_options(conf)
    assert str(e.value).startswith("[ovs] datapath_type")
    assert "system" in str(e.value) and "netdev" in str(e.value)


def test_list_opts_covers_groups():
    groups = dict(opts.list_opts())
    assert {"DEFAULT", "linux_bridge", "ovs", "openflow", "vxlan"} <= set(groups)


def test_ifname_always_fits():
    assert names.ifname("brq-", "net1") == "brq-net1"
    long = names.ifname("brq-", "a-very-long-network-name")
    other = names.ifname("brq-", "a-very-long-network-name2")
    assert len(long) == 15 and len(other) == 15 and long != other
    assert names.ifname("", "enx00e04c680001", ".4094").endswith(".4094")
    assert len(names.ifname("", "enx00e04c680001", ".4094")) == 15


def test_configuration_reference_is_current():
    import pathlib

    from ovsbr.conf import reference

    doc = pathlib.Path(__file__).parents[2] / "doc" / "configuration.md"
    assert doc.read_text() == reference.render(), (
        "doc/configuration.md is stale: run python -m ovsbr.conf.reference > "
        "doc/configuration.md")
