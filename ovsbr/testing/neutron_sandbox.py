"""A real Neutron for the tests: MariaDB, the API under a WSGI server and the
periodic workers, all private to one test and removed with it.

- :class:`MariaDB`: Debian's mariadbd with its own datadir and a unix socket
  only (``--skip-networking``): nothing listens on any network.
- :class:`Neutron`: ``neutron-db-manage upgrade heads``, the API app
  (``neutron.wsgi.api:application``) under :mod:`ovsbr.testing.wsgi_server`
  and ``neutron-periodic-workers`` (which runs ovsbr's status worker), with
  ``auth_strategy = noauth`` and ``transport_url = fake:/`` (no Keystone, no
  RabbitMQ: no RPC agent exists). Started inside a namespace (next to the
  test's etcd), reached from the test through a loopback
  :class:`~ovsbr.testing.netns_forward.Forwarder`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from typing import Any

from ovsbr.testing.agent import write_config
from ovsbr.testing.netns import TIME_SCALE, run, wait_for
from ovsbr.testing.netns_forward import Forwarder

BIN = os.path.dirname(sys.executable)
API_PORT = 9696


def available() -> str | None:
    """None when a Neutron can be started here, else why not (a skip reason)."""
    for tool in ("mariadbd", "mariadb-install-db", "mariadb"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package mariadb-server)"
    for module in ("neutron", "openstack", "pymysql"):
        if importlib.util.find_spec(module) is None:
            return f"python module {module} missing (pip install -r test-requirements.txt)"
    if os.geteuid() != 0:
        return "the Neutron sandbox needs root (namespaces)"
    return None


def _stop(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """Stop a process and everything it forked (its own session)."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _spawn(cmd: list[str], log_path: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen:
    """Start ``cmd`` in its own session, in the log's directory: run from a
    source tree, ``python -m`` would put the tree's (possibly stale)
    ``*.egg-info`` entry points ahead of the installed ones."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=os.path.dirname(log_path), start_new_session=True)


def tail(path: str, chars: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


class MariaDB:
    """A private MariaDB server on a unix socket."""

    def __init__(self):
        # A short path: a unix socket's path must fit in 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="ovsbr-db-")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.proc: subprocess.Popen | None = None

    def start(self) -> MariaDB:
        data = os.path.join(self.dir, "data")
        run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
             "--skip-test-db", "--auth-root-authentication-method=socket"], timeout=120)
        self.proc = _spawn(["mariadbd", "--no-defaults", f"--datadir={data}",
                            f"--socket={self.socket}", "--skip-networking", "--user=root",
                            f"--pid-file={self.dir}/mysqld.pid",
                            "--innodb-buffer-pool-size=64M", "--max-connections=500"],
                           os.path.join(self.dir, "mysqld.log"))
        wait_for(self._ready, 30 * TIME_SCALE, interval=0.2, what="mariadbd")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError("mariadbd exited: " + tail(os.path.join(self.dir, "mysqld.log")))
        return run(["mariadb", f"--socket={self.socket}", "-e", "SELECT 1"],
                   check=False).returncode == 0

    def create_database(self, name: str) -> str:
        """Create ``name``; returns its SQLAlchemy URL."""
        run(["mariadb", f"--socket={self.socket}", "-e", f"CREATE DATABASE {name}"])
        return f"mysql+pymysql://root@localhost/{name}?unix_socket={self.socket}"

    def remove(self) -> None:
        _stop(self.proc, timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


class Neutron:
    """neutron's API and periodic workers on one database, in ``netns``."""

    def __init__(self, workdir: str, db_url: str, etcd_endpoint: str, netns: str,
                 overrides: dict[str, dict[str, Any]] | None = None):
        self.workdir = workdir
        self.netns = netns
        os.makedirs(workdir, exist_ok=True)
        sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {
                "core_plugin": "ml2", "service_plugins": "", "auth_strategy": "noauth",
                "transport_url": "fake:/", "bind_host": "127.0.0.1",
                "api_paste_config": os.path.join(sys.prefix, "etc/neutron/api-paste.ini"),
                "notify_nova_on_port_status_changes": "false",
                "notify_nova_on_port_data_changes": "false",
                "state_path": os.path.join(workdir, "state"), "agent_down_time": 10,
                "api_workers": 1, "rpc_workers": 0},
            "database": {"connection": db_url},
            "oslo_concurrency": {"lock_path": os.path.join(workdir, "lock")},
            "ml2": {"type_drivers": "flat,vlan,vxlan,geneve",
                    "tenant_network_types": "vxlan", "mechanism_drivers": "ovsbr",
                    "extension_drivers": "port_security"},
            "ml2_type_vlan": {"network_vlan_ranges": "physnet1:100:199"},
            "ml2_type_flat": {"flat_networks": "physnet1"},
            "ml2_type_vxlan": {"vni_ranges": "1000:1999"},
            "ml2_type_geneve": {"vni_ranges": "2000:2999"},
            "ovsbr": {"endpoints": etcd_endpoint, "status_interval": 0.5,
                      "report_interval": 2, "resync_interval": 30},
        }
        for section, values in (overrides or {}).items():
            sections.setdefault(section, {}).update(values)
        self.config = write_config(os.path.join(workdir, "neutron.conf"), sections)
        self.api: subprocess.Popen | None = None
        self.periodic: subprocess.Popen | None = None
        self.forward: Forwarder | None = None

    @property
    def api_log(self) -> str:
        return os.path.join(self.workdir, "api.log")

    @property
    def periodic_log(self) -> str:
        return os.path.join(self.workdir, "periodic.log")

    def _env(self) -> dict[str, str]:
        return dict(os.environ, OS_NEUTRON_CONFIG_DIR=self.workdir,
                    OS_NEUTRON_CONFIG_FILES="neutron.conf")

    def start(self) -> Neutron:
        run([os.path.join(BIN, "neutron-db-manage"), "--config-file", self.config,
             "upgrade", "heads"], timeout=300)
        netns = ["ip", "netns", "exec", self.netns]
        self.api = _spawn([*netns, sys.executable, "-m", "ovsbr.testing.wsgi_server",
                           "127.0.0.1", str(API_PORT), "neutron.wsgi.api:application"],
                          self.api_log, self._env())
        self.start_workers()
        self.forward = Forwarder(self.netns, "127.0.0.1", API_PORT)
        wait_for(self._ready, 90 * TIME_SCALE, interval=0.5, what="neutron API")
        return self

    def start_workers(self) -> None:
        self.periodic = _spawn(["ip", "netns", "exec", self.netns,
                                os.path.join(BIN, "neutron-periodic-workers"),
                                "--config-file", self.config], self.periodic_log, self._env())

    def stop_workers(self) -> None:
        _stop(self.periodic)

    def sync(self) -> str:
        """Run ``ovsbr-neutron-sync`` on this Neutron's configuration; its output."""
        res = run(["ip", "netns", "exec", self.netns, os.path.join(BIN, "ovsbr-neutron-sync"),
                   "--config-file", self.config], timeout=120, env=self._env())
        return res.stdout

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.forward.port}/"

    def _ready(self) -> bool:
        for proc, log in ((self.api, self.api_log), (self.periodic, self.periodic_log)):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{os.path.basename(log)}: exited:\n{tail(log)}")
        try:
            with urllib.request.urlopen(self.endpoint + "v2.0/networks",  # noqa: S310
                                        timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def connection(self):
        """An openstacksdk connection to this Neutron (no Keystone: noauth)."""
        import openstack
        # A timeout, so a lost request fails the test instead of hanging it;
        # retries for connections dropped under a request (keep-alive races).
        return openstack.connection.Connection(
            auth_type="none", auth={"endpoint": self.endpoint}, network_api_version="2",
            api_timeout=60, connect_retries=3)

    def stop(self) -> None:
        _stop(self.api)
        _stop(self.periodic)
        if self.forward is not None:
            self.forward.close()
