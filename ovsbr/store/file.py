"""The embedded default store: one JSON document under ``state_path``.

Writers take an exclusive flock on a side file, write a temporary file in the
same directory, fsync it and rename it over the old one, so readers (which
take no lock) only ever see a whole document.

Who may read and write: root, the agent's user and operators in the
directory's group (``ovsbr`` as installed), nobody else, since the topology
names every VM port on the host. Files are 0660 and take the directory's
group (the directory is 2770), whoever writes them; anyone else is told
which group to join instead of getting a bare EACCES.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oslo_config import cfg

from ovsbr.exceptions import StoreError
from ovsbr.model import Topology, ValidationError
from ovsbr.privileges import group_of
from ovsbr.store.base import Store

TOPOLOGY = "topology.json"
STATUS = "status.json"
POLL_INTERVAL = 0.2  # seconds; the agent must notice a change within 1 s
DIR_MODE = 0o2770  # setgid: files made in it take its group
FILE_MODE = 0o660


class StatusText:
    """``json.dumps({"hosts": {host: status}}, sort_keys=True)``, re-encoding
    only the ports whose document changed.

    The agent rewrites the whole file on every port change, and encoding a
    thousand port entries was most of a one-port reconcile (py-spy). Each
    port's JSON text is kept with the dict it came from and reused while the
    agent hands the same dict (``agent.state.PortDocs`` keeps them); told
    which ports changed, only those are looked at, and the sorted order is
    kept while no port comes or goes.
    """

    _SLOT = "\0ovsbr-ports\0"

    def __init__(self):
        self._parts: dict[str, tuple[dict, str]] = {}
        self._order: list[str] | None = None  # sorted names of _parts

    def _part(self, name: str, doc: dict) -> None:
        part = self._parts.get(name)
        if part is None or part[0] is not doc:
            self._parts[name] = (doc, f"{json.dumps(name)}: {json.dumps(doc, sort_keys=True)}")

    def encode(self, host: str, status: dict[str, Any],
               changed: Iterable[str] | None = None) -> str:
        ports = status.get("ports")
        if not isinstance(ports, dict):
            self._parts, self._order = {}, None
            return json.dumps({"hosts": {host: status}}, sort_keys=True)
        if changed is None or self._order is None:
            for name, doc in ports.items():
                self._part(name, doc)
            if len(self._parts) != len(ports):
                self._parts = {n: p for n, p in self._parts.items() if n in ports}
            self._order = sorted(ports)
        else:
            for name in changed:
                if name in ports:
                    if name not in self._parts:
                        self._order = None
                    self._part(name, ports[name])
                elif self._parts.pop(name, None) is not None:
                    self._order = None
            if self._order is None:
                self._order = sorted(self._parts)
        parts = self._parts
        body = ", ".join([parts[n][1] for n in self._order])
        head = json.dumps({"hosts": {host: dict(status, ports=self._SLOT)}}, sort_keys=True)
        return head.replace(f'"ports": {json.dumps(self._SLOT)}', '"ports": {' + body + "}", 1)


class FileStore(Store):
    def __init__(self, conf: cfg.ConfigOpts | None = None, path: str | None = None):
        self.dir = path or conf.state_path
        self.path = os.path.join(self.dir, TOPOLOGY)
        self.status_path = os.path.join(self.dir, STATUS)
        self._status_text = StatusText()

    # -- permissions ---------------------------------------------------------
    def denied(self, path: str) -> StoreError:
        """The one-line refusal for a user outside the store's group."""
        group = group_of(self.dir) or "ovsbr"
        return StoreError(
            f"store {path}: permission denied for uid {os.getuid()}: ovsbr's store is "
            f"for root and the members of group {group!r} (the group of {self.dir}); "
            f"add the user to it (usermod -aG {group} USER, then log in again)")

    @contextlib.contextmanager
    def _access(self, path: str) -> Iterator[None]:
        try:
            yield
        except PermissionError:
            raise self.denied(path) from None

    def _ensure_dir(self) -> None:
        if os.path.isdir(self.dir):
            return
        with self._access(self.dir):
            os.makedirs(self.dir, exist_ok=True)
            os.chmod(self.dir, DIR_MODE)

    def _share(self, fd: int) -> None:
        """0660 and the directory's group, for a file this process created."""
        os.fchmod(fd, FILE_MODE)
        gid = os.stat(self.dir).st_gid
        if os.fstat(fd).st_gid != gid:
            # Allowed to root and to members of that group; anyone else
            # could not have created the file in a 2770 directory.
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, gid)

    # -- reading -----------------------------------------------------------
    def _stat_key(self) -> tuple | None:
        try:
            with self._access(self.path):
                st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> Topology:
        try:
            with self._access(self.path), open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return Topology()
        except OSError as e:
            raise StoreError(f"store {self.path}: cannot read: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise StoreError(f"store {self.path}: not UTF-8 text ({e.reason} at byte "
                             f"{e.start}); fix or restore the file, ovsbr will not write "
                             "over it") from e
        try:
            data = json.loads(text)
        except ValueError as e:
            raise StoreError(f"store {self.path}: not valid JSON ({e}); fix or "
                             "restore the file, ovsbr will not write over it") from e
        try:
            return Topology.from_dict(data)
        except ValidationError as e:
            raise StoreError(f"store {self.path}: invalid content: {e}") from e

    def watch(self, stop: threading.Event) -> Iterator[Topology | Exception]:
        last: Any = object()
        while not stop.is_set():
            try:
                key = self._stat_key()
            except StoreError as e:  # denied: load() says so, once per change
                key = str(e)
            if key != last:
                last = key
                try:
                    yield self.load()
                except StoreError as e:
                    yield e
            stop.wait(POLL_INTERVAL)

    # -- writing -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        with self._access(self.path):
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            if os.fstat(fd).st_uid == os.geteuid():
                self._share(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write_json(self, path: str, data: dict[str, Any], durable: bool = True) -> None:
        # dumps, not dump: dump always takes the pure-Python encoder.
        self._write_text(path, json.dumps(data, indent=1 if durable else None,
                                          sort_keys=True), durable)

    def _write_text(self, path: str, text: str, durable: bool = True) -> None:
        self._ensure_dir()
        with self._access(path):
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path), dir=self.dir)
        try:
            self._share(fd)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.write("\n")
                if durable:  # the desired state must survive a crash
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def update(self, change: Callable[[Topology], None],
               scope: Iterable[str] | None = None) -> tuple[Topology, Topology]:
        # One file: reading it whole is the only way; ``scope`` changes nothing.
        with self._locked():
            before = self.load()
            after = before.copy()
            change(after)
            after.validate()
            if after.to_dict() == before.to_dict():
                return before, before
            after.revision = before.revision + 1
            self._write_json(self.path, after.to_dict())
            return before, after

    def write_status(self, host: str, status: dict[str, Any],
                     changed: Iterable[str] | None = None) -> None:
        # One agent per file store: the status file holds this host's only.
        # Rewritten on every change and rebuilt by the agent after a crash:
        # atomic, but not worth an fsync on the wiring path.
        self._write_text(self.status_path,
                         self._status_text.encode(host, status, changed), durable=False)

    def read_status(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.status_path, encoding="utf-8") as f:
                return json.load(f).get("hosts", {})
        except FileNotFoundError:
            return {}
        except PermissionError:
            raise self.denied(self.status_path) from None
        except (OSError, ValueError, AttributeError) as e:
            raise StoreError(f"status {self.status_path}: unreadable: {e}") from e
