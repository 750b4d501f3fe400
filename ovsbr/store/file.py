"""The embedded default store: one JSON document under ``state_path``.

Writers take an exclusive flock on a side file, write a temporary file in the
same directory, fsync it and rename it over the old one, so readers (which
take no lock) only ever see a whole document.

The agent's status is a small head document (``status.json``) and one file
per port under ``status.d/``, as the etcd store keeps a key per port: a port
bound on a host of 5,000 rewrites one small file, not the host's whole
document (which was a third of the agent's CPU per event at 5,000 ports).
A port's file, once it exists, is rewritten in place under its flock
(:func:`read_port_file` takes the shared lock), not replaced: see
:meth:`FileStore._write_port` for why and for what readers can rely on.

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
from ovsbr.validation import NAME_RE, NAME_RULE

TOPOLOGY = "topology.json"
STATUS = "status.json"
STATUS_PORTS = "status.d"  # one <port>.json per port; the head in STATUS
POLL_INTERVAL = 0.2  # seconds; the agent must notice a change within 1 s
DIR_MODE = 0o2770  # setgid: files made in it take its group
FILE_MODE = 0o660


class FileStore(Store):
    def __init__(self, conf: cfg.ConfigOpts | None = None, path: str | None = None):
        self.dir = path or conf.state_path
        self.path = os.path.join(self.dir, TOPOLOGY)
        self.status_path = os.path.join(self.dir, STATUS)
        self.status_ports = os.path.join(self.dir, STATUS_PORTS)
        # Each port's document as last written, and the head but its time;
        # None: not known since start.
        self._written: dict[str, dict | None] | None = None
        self._head: dict[str, Any] | None = None

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

    def _ensure_dir(self, path: str | None = None) -> None:
        """``path`` (the store's directory if None), 2770 like it."""
        path = path or self.dir
        if os.path.isdir(path):
            return
        with self._access(path):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, DIR_MODE)

    def _share(self, fd: int, gid: int | None = None) -> None:
        """0660 and the directory's group (``gid``, if the caller has it),
        for a file this process created."""
        os.fchmod(fd, FILE_MODE)
        if gid is None:
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

    def watch(self, stop: threading.Event, host: str | None = None
              ) -> Iterator[Topology | Exception]:
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

    def _write_text(self, path: str, text: str, durable: bool = True,
                    gid: int | None = None) -> None:
        self._ensure_dir()
        with self._access(path):
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path),
                                       dir=os.path.dirname(path))
        try:
            self._share(fd, gid)
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
        """The ports whose document changed (all of them compared when
        ``changed`` is None, else only those), then the head if more than
        its ``updated`` time changed.

        One agent per file store: the head names this host only. Rewritten
        on change and rebuilt by the agent after a crash, so not worth an
        fsync on the wiring path. A port's change writes its file alone
        (in place, :meth:`_write_port`); the head is replaced when more
        than its time changed, and readers take ``updated`` from the port
        files' times as well.
        """
        ports = status.get("ports", {})
        head = {k: v for k, v in status.items() if k != "ports"}
        written = self._written
        if written is None:  # first write since start (or since a failed
            # one): what an earlier run left, and the directories
            self._ensure_dir()
            self._ensure_dir(self.status_ports)
            written = dict.fromkeys(self._port_files(stale=True))
            changed = None
            self._head = None
        self._written = None  # unknown until every step has landed
        gid = os.stat(self.dir).st_gid
        for name in (set(ports) | set(written)) if changed is None else changed:
            doc = ports.get(name)
            if doc is not None and (name not in written or written[name] != doc):
                if not NAME_RE.match(name):
                    raise StoreError(f"status: port name {name!r} is not {NAME_RULE}")
                text = json.dumps(doc, sort_keys=True)
                # A file from before this start is replaced, made ours again.
                before = name in written
                if (before and written[name] is None) or \
                        not self._write_port(name, text, None if before else gid):
                    self._write_text(self._port_path(name), text, durable=False, gid=gid)
                written[name] = dict(doc)
            elif doc is None and name in written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._port_path(name))
                del written[name]
        same = {k: v for k, v in head.items() if k != "updated"}
        if same != self._head:
            self._head = None
            self._write_text(self.status_path, json.dumps({"hosts": {host: head}},
                                                          sort_keys=True),
                             durable=False, gid=gid)
            self._head = same
        self._written = written

    def _port_path(self, name: str) -> str:
        return os.path.join(self.status_ports, name + ".json")

    def _write_port(self, name: str, text: str, gid: int | None) -> bool:
        """Write a port's file in place, creating it (0660, group ``gid``)
        when ``gid`` is given; False when it must be replaced instead (it
        is gone, it is there when it should not be, or a reader holds its
        lock).

        Why not a temporary file renamed into place: that was the agent's
        costliest step per event, in the profile at 1,000 openvswitch ports
        (os.replace: 118 of 498 busy samples, ~2 ms an event), and alone on
        this ext4 a rename over an existing file takes 0.3 ms p50 (1.3 ms
        p99 next to an fsync load): a new inode, a directory entry and
        ext4's flush-on-replace for every status change. In place, one
        port's change costs 0.03-0.05 ms at p50 in write_status against
        0.4-0.7 ms replaced (a script calling it as the agent does; the
        commits have the figures).

        What readers get is still a whole document: the one write happens
        under the file's exclusive flock and readers take the shared one
        (:func:`read_port_file`); a shorter document is padded with spaces
        (JSON's whitespace), never truncated, so no reader or crash sees new
        text with an old tail; a file still empty is a port not there yet.
        The agent never waits for a reader: if one holds the lock, the file
        is replaced and that reader finishes on the old inode.
        """
        path = self._port_path(name)
        data = text.encode() + b"\n"
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with self._access(path):
                fd = os.open(path, flags if gid is None else flags | os.O_CREAT | os.O_EXCL,
                             FILE_MODE)
        except (FileNotFoundError, FileExistsError):
            return False
        try:
            if gid is not None:
                self._share(fd, gid)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            size = os.fstat(fd).st_size
            os.pwrite(fd, data.ljust(size, b" "), 0)
        finally:
            os.close(fd)
        return True

    def _port_files(self, stale: bool = False) -> list[str]:
        """The ports with a status file; ``stale``: remove the temporary
        files a writer that died left (one agent per store: none is live)."""
        try:
            with self._access(self.status_ports):
                names = os.listdir(self.status_ports)
        except FileNotFoundError:
            return []
        ports = []
        for n in names:
            if n.startswith("."):
                if stale:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.status_ports, n))
            elif n.endswith(".json"):
                ports.append(n[:-len(".json")])
        return ports

    def read_status(self) -> dict[str, dict[str, Any]]:
        """The head with its ports gathered from their files (a status.json
        from before ``status.d`` has them in the document)."""
        try:
            with open(self.status_path, encoding="utf-8") as f:
                hosts = json.load(f).get("hosts", {})
            for doc in hosts.values():
                if "ports" not in doc:
                    doc["ports"], latest = self._read_ports()
                    self._updated(doc, latest)
            return hosts
        except FileNotFoundError:
            return {}
        except PermissionError:
            raise self.denied(self.status_path) from None
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise StoreError(f"status {self.status_path}: unreadable: {e}") from e

    def _updated(self, doc: dict[str, Any], latest: float) -> None:
        """The last write's time: the head's, or that of the last port file
        written or removed since (the head is not rewritten for its time
        alone)."""
        updated = doc.get("updated")
        if isinstance(updated, (int, float)) and not isinstance(updated, bool):
            with contextlib.suppress(FileNotFoundError):  # a removal: the directory's
                latest = max(latest, os.stat(self.status_ports).st_mtime)
            doc["updated"] = max(updated, latest)

    def _read_ports(self) -> tuple[dict[str, Any], float]:
        """Every port's document, and the latest time one was written."""
        ports, latest = {}, 0.0
        for name in self._port_files():
            path = self._port_path(name)
            try:
                text, st = read_port_file(path)
                if not text:
                    continue  # being created: not there yet
                ports[name] = json.loads(text)
            except FileNotFoundError:
                continue  # the port left between listing and reading
            except ValueError as e:
                raise StoreError(f"status {path}: unreadable: {e}") from e
            latest = max(latest, st.st_mtime)
        return ports, latest


def read_port_file(path: str) -> tuple[str, os.stat_result]:
    """A port's status file whole, under the shared lock its in-place
    rewrite takes exclusively (:meth:`FileStore._write_port`), and its
    stat as read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        return os.read(fd, max(st.st_size, 1)).decode("utf-8"), st
    finally:
        os.close(fd)
