"""A TCP forwarder from the test's namespace into another one (tests only).

Servers a test starts inside an emulated host (Neutron's API next to etcd
in the controller's namespace) are not reachable from the test process,
which stays in the root namespace. :class:`Forwarder` listens on
127.0.0.1 here and opens each upstream connection from a thread that has
joined the target namespace (``setns`` moves only the calling thread), so
nothing is added to the root namespace but a loopback listener.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import socket
import threading

CLONE_NEWNET = 0x40000000


def _join_netns(name: str) -> None:
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Forwarder:
    """127.0.0.1:``port`` -> ``host``:``target_port`` inside namespace ``netns``."""

    def __init__(self, netns: str, host: str, target_port: int):
        self.netns, self.target = netns, (host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._dials: queue.Queue = queue.Queue()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        for target in (self._dialer, self._acceptor):
            threading.Thread(target=target, daemon=True, name="netns-forward").start()

    def _dialer(self) -> None:
        _join_netns(self.netns)
        while True:
            reply = self._dials.get()
            if reply is None:
                return
            try:
                reply.put(socket.create_connection(self.target, timeout=10))
            except OSError as e:
                reply.put(e)

    def _acceptor(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            reply: queue.Queue = queue.Queue()
            self._dials.put(reply)
            upstream = reply.get()
            if isinstance(upstream, Exception):
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, upstream_side: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            # The server closed: close the client's side both ways. Half-closed,
            # a keep-alive client could send its next request into it before
            # it saw the end, and wait for an answer forever (seen: a GET to
            # Neutron's API that never reached the server).
            dst.shutdown(socket.SHUT_RDWR if upstream_side else socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._dials.put(None)
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()
