"""Run devstack/plugin.sh through every phase with stand-ins for DevStack.

Real DevStack cannot run here; the stubs below implement the documented
plugin functions the plugin calls (recording each call), with a real
``iniset`` so the configuration it writes can be loaded by ovsbr itself.
"""

import os
import pathlib
import pwd
import shutil
import subprocess

import pytest

from ovsbr.cmd import cli

TOP = pathlib.Path(__file__).parents[2]
STUBS = r"""
log() { printf '%s\n' "$*" >> "$CALLS"; }
define_plugin() { log define_plugin "$@"; }
enable_service() { log enable_service "$@"; ENABLED="${ENABLED:-} $*"; }
disable_service() { log disable_service "$@"; }
is_service_enabled() {
    for s in "$@"; do [[ " ${ENABLED:-} " == *" $s "* ]] && return 0; done
    return 1
}
install_package() { log install_package "$@"; }
setup_develop() { log setup_develop "$@"; }
echo_summary() { log echo_summary "$@"; }
get_python_exec_prefix() { echo /usr/local/bin; }
run_process() { log run_process "$1" "$2" "${3:-}" "${4:-}"; }
stop_process() { log stop_process "$@"; }
sudo() {
    # Files are made for real (under the test's directories), without the
    # owners DevStack would give them (the ovsbr user does not exist here).
    log sudo "$@"
    case "$1" in
    install)
        shift
        local a=()
        while (($#)); do
            case "$1" in -o|-g) shift 2 ;; *) a+=("$1"); shift ;; esac
        done
        install "${a[@]}" ;;
    rm) "$@" ;;
    esac
}
iniset() {
    log iniset "$@"
    python3 - "$@" <<'PY'
import configparser, sys
path, section, key, value = sys.argv[1:5]
cp = configparser.RawConfigParser()
cp.optionxform = str
cp.read(path)
if section != "DEFAULT" and not cp.has_section(section):
    cp.add_section(section)
cp.set(section, key, value)
with open(path, "w") as f:
    cp.write(f)
PY
}
"""


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


ALL_PHASES = ("stack pre-install", "stack install", "stack post-config", "stack extra",
              "unstack", "clean")


def run_phases(tmp_path, env_vars, phases=ALL_PHASES) -> str:
    """Source settings, then plugin.sh once per phase, as stack.sh does."""
    calls = tmp_path / "calls.log"
    stubs = tmp_path / "stubs.sh"
    stubs.write_text(STUBS)
    script = f"""
set -eu
source {stubs}
DEST={tmp_path}/opt DATA_DIR={tmp_path}/data STACK_USER=$(id -un) OVSBR_DIR={TOP}
OVSBR_SYSTEMD_DIR={tmp_path}/systemd
source {TOP}/devstack/settings
for phase in {" ".join(f'"{p}"' for p in phases)}; do
    echo "== $phase" >> "$CALLS"
    source {TOP}/devstack/plugin.sh $phase
done
"""
    env = dict(os.environ, CALLS=str(calls), **env_vars)
    subprocess.run(["bash", "-c", script], check=True, env=env, timeout=60)
    return calls.read_text()


@pytest.mark.parametrize("driver", ["openvswitch", "linuxbridge"])
def test_plugin_phases(tmp_path, driver):
    conf_dir = tmp_path / "etc"
    env = {"OVSBR_CONF_DIR": str(conf_dir), "OVSBR_DRIVER": driver,
           "OVSBR_INTERFACE_MAPPINGS": "physnet1:eth1"}
    calls = run_phases(tmp_path, env)
    phases = calls.split("== ")
    install = next(p for p in phases if p.startswith("stack install"))
    assert "setup_develop " in install
    assert ("install_package openvswitch-switch" in install) == (driver == "openvswitch")
    post = next(p for p in phases if p.startswith("stack post-config"))
    assert f"iniset {conf_dir}/ovsbr.conf DEFAULT driver {driver}" in post
    # The agent's own user and group; the stack user joins the group.
    assert ("sudo useradd --system --user-group" in post) == (not _has_user("ovsbr"))
    assert "sudo usermod -a -G ovsbr" in post
    assert f"sudo install -d -o ovsbr -g ovsbr -m 2770 {tmp_path}/data/ovsbr" in post
    assert f"sudo chmod 0640 {conf_dir}/ovsbr.conf" in post
    assert ("ovsdb-server.service.d/ovsbr.conf" in post) == (driver == "openvswitch")
    # Started by ovsbr's hardened unit, with DevStack's paths in a drop-in.
    extra = next(p for p in phases if p.startswith("stack extra"))
    assert "sudo systemctl enable --now ovsbr-agent.service" in extra
    assert "run_process ovsbr-agent" not in extra
    assert "sudo systemctl stop ovsbr-agent.service" in next(
        p for p in phases if p.startswith("unstack"))
    clean = next(p for p in phases if p.startswith("clean"))
    assert "--cleanup" in clean and not conf_dir.exists()
    assert not (tmp_path / "systemd" / "ovsbr-agent.service").exists()


def test_devstack_runs_the_shipped_unit_with_its_paths(tmp_path):
    env = {"OVSBR_CONF_DIR": str(tmp_path / "etc"), "OVSBR_DRIVER": "linuxbridge"}
    run_phases(tmp_path, env, ("stack post-config", "stack extra"))
    unit = tmp_path / "systemd" / "ovsbr-agent.service"
    assert unit.read_text() == (TOP / "etc/systemd/ovsbr-agent.service").read_text()
    dropin = (tmp_path / "systemd/ovsbr-agent.service.d/devstack.conf").read_text()
    assert dropin.splitlines() == [
        "[Service]", "ExecStart=",
        f"ExecStart=/usr/local/bin/ovsbr-agent --config-file {tmp_path}/etc/ovsbr.conf",
        f"ReadWritePaths={tmp_path}/data/ovsbr"]


def test_written_config_is_accepted_by_ovsbr(tmp_path):
    conf_dir = tmp_path / "etc"
    env = {"OVSBR_CONF_DIR": str(conf_dir), "OVSBR_DRIVER": "openvswitch",
           "OVSBR_BRIDGE_MAPPINGS": "physnet1:br-ex,physnet2:br-eth2"}
    run_phases(tmp_path, env, ("stack post-config",))
    conf = cli.load_conf([str(conf_dir / "ovsbr.conf")])
    assert conf.driver == "openvswitch"
    assert conf.ovs.bridge_mappings == ["physnet1:br-ex", "physnet2:br-eth2"]
    assert conf.state_path == f"{tmp_path}/data/ovsbr"


def test_controller_with_neutron_uses_the_ovsbr_mechanism_driver(tmp_path):
    """Where neutron's API runs: ML2 loads ovsbr, neutron.conf names the
    store, the workers and a first resync start, the agent uses etcd."""
    from oslo_config import cfg

    from ovsbr.neutron import config as neutron_config
    from ovsbr.store.etcd import EtcdStore

    conf_dir = tmp_path / "etc"
    (tmp_path / "ml2").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sync = bin_dir / "ovsbr-neutron-sync"
    sync.write_text('#!/bin/sh\necho "ovsbr-neutron-sync $*" >> "$CALLS"\n')
    sync.chmod(0o755)
    env = {"OVSBR_CONF_DIR": str(conf_dir), "OVSBR_DRIVER": "linuxbridge",
           "OVSBR_BIN_DIR": str(bin_dir),
           "ENABLED": "q-svc", "SERVICE_HOST": "192.0.2.1",
           "NEUTRON_CONF": str(tmp_path / "neutron.conf"),
           "Q_PLUGIN_CONF_FILE": str(tmp_path / "ml2" / "ml2_conf.ini").lstrip("/")}
    calls = run_phases(tmp_path, env)
    assert "disable_service q-agt" in calls and "enable_service etcd3" in calls
    post = next(p for p in calls.split("== ") if p.startswith("stack post-config"))
    assert f"iniset {tmp_path}/ml2/ml2_conf.ini ml2 mechanism_drivers ovsbr" in post
    assert f"iniset {conf_dir}/ovsbr.conf DEFAULT store etcd" in post
    extra = next(p for p in calls.split("== ") if p.startswith("stack extra"))
    assert f"run_process ovsbr-neutron-workers {bin_dir}/neutron-periodic-workers" in extra
    assert f"ovsbr-neutron-sync --config-file {tmp_path}/neutron.conf" in extra
    conf = cfg.ConfigOpts()
    neutron_config.register(conf)
    conf(["--config-file", str(tmp_path / "neutron.conf")])
    store = EtcdStore(conf, group=neutron_config.GROUP)
    assert store.endpoints == [("192.0.2.1", 2379)]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    res = subprocess.run(["shellcheck", "-s", "bash", "-e", "SC1091,SC2034",
                          "devstack/plugin.sh", "devstack/settings", "tools/install-deps",
                          "tools/run-tests", "tools/demo", ".ci/run"],
                         cwd=TOP, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
