"""The sdist and wheel built by ``python -m build`` install and run in a clean venv."""

import os
import pathlib
import subprocess
import sys
import venv

import pytest

TOP = pathlib.Path(__file__).parents[2]
# The stock-kernel VM has no network: build's isolated env and the fresh venv
# fetch from the package index, and packaging does not depend on the kernel.
pytestmark = pytest.mark.skipif(os.environ.get("OVSBR_STOCK_KERNEL") == "1",
                                reason="no package index in the stock-kernel VM; "
                                       "packaging is tested on the host")


def run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(TOP)])
    return out


@pytest.mark.parametrize("kind", ["whl", "tar.gz"])
def test_install_from_dist_in_a_fresh_venv(dist, tmp_path, kind):
    artifact = next(dist.glob(f"ovsbr-*.{kind}"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    run([str(bin_dir / "pip"), "install", "-q", str(artifact)])
    for script in ("ovsbr-agent", "ovsbr"):
        res = run([str(bin_dir / script), "--help"], cwd=tmp_path)
        assert "usage:" in res.stdout
    # Entry points are in the installed metadata (pbr wrote them).
    res = run([str(bin_dir / "python"), "-c",
               "from importlib.metadata import entry_points as e;"
               "print(sorted(x.name for x in e(group='ovsbr.drivers')),"
               " sorted(x.name for x in e(group='ovsbr.stores')),"
               " 'ovsbr' in [x.name for x in e(group='oslo.config.opts')])"],
              cwd=tmp_path, env=dict(os.environ, PYTHONPATH=""))
    assert "['linuxbridge', 'openvswitch'] ['etcd', 'file'] True" in res.stdout
