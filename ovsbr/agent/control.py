"""The agent's control socket: answers asked for, never published.

Why: a bridge's MAC table used to travel in the status document, which the
agent rewrites every few seconds. At thousands of learned MACs (a provider
VLAN learns every MAC of its segment) that was an O(MACs) snapshot under
the lock the packet-in handler needs, a document of ~100 bytes a MAC (485
KB at 5,000 with Nova's tap names) rewritten every 2 s, and with the etcd
store one such put per host every 2 s (past ~16,000 MACs larger than
etcd's 1.5 MiB request limit, which would have failed the status publish
itself). Nobody reads a MAC table unless an operator asks: like
``ovs-appctl fdb/show``, ``ovsbr mac-table`` now asks the agent on its own
host over a Unix socket, and the status keeps each bridge's counters and
table size.

Protocol: the client sends one command name and a newline; the agent
answers one JSON document, ``{"result": ...}`` or ``{"error": "..."}``,
and closes. The socket is 0660 in the agent's state directory (2770,
group ovsbr): who may read the store may ask.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ovsbr.exceptions import OvsbrError

LOG = logging.getLogger(__name__)
MAX_REQUEST = 256  # bytes: a command name
TIMEOUT = 5.0  # seconds a client may take to send its command


class ControlError(OvsbrError):
    """The agent could not be asked, or said no."""


class NoAgent(ControlError):
    """Nothing listens at the socket: no agent, or one from before it."""


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handlers: Mapping[str, Callable[[], Any]] = {}


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.connection.settimeout(TIMEOUT)
        try:
            line = self.rfile.readline(MAX_REQUEST)
        except OSError:
            return
        command = line.decode("utf-8", "replace").strip()
        handlers = self.server.handlers
        if command not in handlers:
            reply = {"error": f"unknown command {command!r}; allowed: "
                              f"{', '.join(sorted(handlers))}"}
        else:
            try:
                reply = {"result": handlers[command]()}
            except Exception as e:  # the agent goes on; the asker is told
                LOG.exception("control command %s failed", command)
                reply = {"error": f"{command} failed: {e}"}
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(reply, sort_keys=True).encode() + b"\n")


class ControlServer:
    """Serves ``handlers`` (command name -> a function of nothing returning
    JSON-able data) at ``path``, each connection on its own thread."""

    def __init__(self, path: str, handlers: Mapping[str, Callable[[], Any]]):
        self.path = path
        self.handlers = dict(handlers)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; an old socket left by a killed agent is replaced,
        anything else at the path is an error (nothing is removed)."""
        directory = os.path.dirname(self.path) or "."
        server = None
        try:
            os.makedirs(directory, mode=0o2770, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    raise ControlError(f"control_socket {self.path}: exists and is not a "
                                       "socket; remove it or set [DEFAULT] control_socket")
                os.unlink(self.path)
            server = _Server(self.path, _Handler, bind_and_activate=False)
            server.handlers = self.handlers
            server.server_bind()
            os.chmod(self.path, 0o660)
            with contextlib.suppress(PermissionError):  # group of the directory
                os.chown(self.path, -1, os.stat(directory).st_gid)
            server.server_activate()
        except OSError as e:
            if server is not None:
                server.server_close()
            raise ControlError(f"control_socket {self.path}: cannot listen: "
                               f"{e.strerror or e}") from e
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.5,),
                                        name="ovsbr-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def ask(path: str, command: str, timeout: float = 30.0) -> Any:
    """The agent's answer to ``command`` at ``path``; ControlError when it
    cannot be reached or says no."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(1 << 16):
                chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoAgent(f"no agent answers at {path} (control_socket): is "
                      "ovsbr-agent running on this host?") from None
    except OSError as e:
        raise ControlError(f"cannot ask the agent at {path} (control_socket): "
                           f"{e.strerror or e}") from None
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"the agent at {path} gave no answer to {command!r}") from None
    if "error" in reply:
        raise ControlError(f"the agent at {path}: {reply['error']}")
    return reply.get("result")
