"""Run os-ken apps inside the agent, and stop them for real.

os-ken 4.x has no osken-manager: apps run in-process through
``AppManager``, on the native thread hub where ``hub.kill()`` is a no-op.
Its stock OpenFlow listener (``OFPHandler`` -> ``OpenFlowController``)
blocks in ``accept()`` forever and keeps every switch connection's threads
alive, so an agent could never stop and start its controller twice in one
process. :class:`StoppableOFPHandler` replaces it with the same handshake
handlers over a listener we own: stopping closes the listening socket and
every switch socket, and the threads end by themselves.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading

from os_ken import cfg as osken_cfg
from os_ken.base import app_manager
from os_ken.controller import controller as of_controller
from os_ken.controller import ofp_handler
from os_ken.lib import hub

LOG = logging.getLogger(__name__)
_STOCK_HANDLER = "os_ken.controller.ofp_handler"


class _NeverWait:
    """os-ken's send-queue semaphore, for a queue without a bound."""

    def acquire(self, *args, **kwargs) -> bool:
        return True

    def release(self) -> None:
        pass


class _Datapath(of_controller.Datapath):
    """A switch connection whose threads all end when the socket does, and
    whose ``send`` never waits.

    On the native hub the stock ``serve()`` joins its send thread, which is
    blocked on an empty queue forever once the switch is gone: every
    disconnect would leak two threads. A sentinel message wakes it.

    The stock send queue holds 16 messages and ``send`` waits when it is
    full. The app sends while holding its lock, and so do its event
    handlers; ovs-vswitchd stops reading a connection whose replies (barrier
    replies, flow-removed messages) the controller is slow to take, and
    the controller takes them on the thread that waits for that lock. A
    full queue then stops both sides for good (seen as a port waiting for
    its barrier for ever in bench wiring). Unbounded, a send only queues:
    the most it holds is one push of the static pipeline (10 MB at 1,000
    filtered ports, sent in 256 KB writes), and a switch that reads nothing
    for long is dropped by the echo check, which empties the queue.
    """

    def __init__(self, sock, address):
        super().__init__(sock, address)
        self.send_q = hub.Queue()
        self._send_q_sem = _NeverWait()

    def serve(self):
        send_thr = hub.spawn(self._send_loop)
        self.send_msg(self.ofproto_parser.OFPHello(self))
        echo_thr = hub.spawn(self._echo_request_loop)
        try:
            self._recv_loop()
        finally:
            queue = self.send_q
            if queue is not None:
                with contextlib.suppress(Exception):
                    queue.put_nowait((b"", True))
            send_thr.join(5)
            echo_thr.join(1)
            self.is_active = False


def _serve_switch(sock: socket.socket, addr) -> None:
    with contextlib.closing(_Datapath(sock, addr)) as datapath:
        try:
            datapath.serve()
        except Exception:
            LOG.exception("OpenFlow connection from %s failed", addr)


class StoppableOFPHandler(ofp_handler.OFPHandler):
    """OFPHandler whose listener and switch connections can be closed."""

    listen: tuple[str, int] = ("127.0.0.1", 6653)
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._conn_threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.bound = threading.Event()
        self.bind_error: Exception | None = None

    def start(self):
        app_manager.OSKenApp.start(self)
        return hub.spawn(self._serve)

    def _serve(self) -> None:
        family = socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind(self.listen)
            srv.listen(64)
        except OSError as e:
            self.bind_error = e
            srv.close()
            self.bound.set()
            return
        srv.settimeout(0.5)
        self._server = srv
        self.bound.set()
        while not self._closing.is_set():
            try:
                sock, addr = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            if self.ssl_context is not None:
                try:
                    # A client that stalls the handshake must not hold the
                    # accept loop for long.
                    sock.settimeout(5)
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                    sock.settimeout(None)
                except (OSError, ssl.SSLError) as e:
                    LOG.warning("TLS handshake with %s failed: %s", addr, e)
                    sock.close()
                    continue
            t = threading.Thread(target=self._connection, args=(sock, addr),
                                 name=f"ovsbr-of-{addr[1]}", daemon=True)
            with self._lock:
                self._conns.add(sock)
                self._conn_threads.append(t)
            t.start()
        srv.close()

    def _connection(self, sock: socket.socket, addr) -> None:
        try:
            _serve_switch(sock, addr)
        finally:
            with self._lock:
                self._conns.discard(sock)

    def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._conn_threads)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(5)


class ControllerRuntime:
    """Owns one AppManager run: start(), then stop() tears everything down."""

    def __init__(self, app_module: str, listen: tuple[str, int],
                 ssl_context: ssl.SSLContext | None = None):
        self.app_module = app_module
        self.listen = listen
        self.ssl_context = ssl_context
        self.manager: app_manager.AppManager | None = None
        self.threads: list = []

    def start(self) -> dict[str, app_manager.OSKenApp]:
        # os-ken reads a few options of its own (socket timeout, echo
        # interval) from its global CONF; parse it empty once.
        with contextlib.suppress(Exception):
            osken_cfg.CONF(args=[], project="os_ken")
        app_manager.AppManager._instance = None
        mgr = app_manager.AppManager.get_instance()
        mgr.load_apps([self.app_module])
        # Swap the stock listener for ours before anything is instantiated.
        handler = type("OvsbrOFPHandler", (StoppableOFPHandler,),
                       {"listen": self.listen, "ssl_context": self.ssl_context})
        handler.__module__ = StoppableOFPHandler.__module__
        mgr.applications_cls[_STOCK_HANDLER] = handler
        contexts = mgr.create_contexts()
        self.threads = mgr.instantiate_apps(**contexts)
        self.manager = mgr
        ofp = mgr.applications.get("ofp_event")
        ofp.bound.wait(10)
        if ofp.bind_error is not None:
            self.stop()
            raise OSError(f"cannot listen on {self.listen[0]}:{self.listen[1]}: "
                          f"{ofp.bind_error}")
        return dict(mgr.applications)

    def stop(self) -> None:
        mgr, self.manager = self.manager, None
        if mgr is None:
            return
        mgr.close()  # stops each app's event loop and calls close()
        for t in self.threads:
            t.join(5)
        self.threads = []
        app_manager.AppManager._instance = None
