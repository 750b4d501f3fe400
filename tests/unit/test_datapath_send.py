"""A switch connection's send never waits, whatever the switch reads.

The app and its event handlers send while holding the app's lock; the
handlers are also what takes the switch's replies. A send that waited for
a full queue stopped both sides (see ``runtime._Datapath``).
"""

import contextlib
import socket
import threading

from ovsbr.openflow import runtime


def test_sending_to_a_switch_that_reads_nothing_does_not_wait():
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        peer = stack.enter_context(socket.create_connection(srv.getsockname()))
        sock, _ = srv.accept()
        stack.enter_context(sock)
        dp = runtime._Datapath(sock, ("127.0.0.1", peer.getsockname()[1]))
        # No send thread runs and the peer never reads: the stock queue of
        # 16 would leave this thread waiting at the 17th message.
        sender = threading.Thread(target=lambda: [dp.send(b"x" * 1000) for _ in range(500)],
                                  daemon=True)
        sender.start()
        sender.join(5)
        assert not sender.is_alive(), "send waited for the switch"
        assert dp.send_q.qsize() == 500
