"""TCP and UDP probes for tests, run inside a namespace as ``python -m``.

``serve PORT...``     echo server on TCP and UDP, IPv4 and IPv6, each port
``try PROTO ADDR PORT``  one connection (or datagram) and its echo; exit 0
                        when the echo came back, 1 when it did not
``stream ADDR PORT SECONDS``  one TCP connection echoing a byte every 50 ms;
                        prints the monotonic time of every echo, one per
                        line, and stops at the first echo that does not
                        come back within a second (or after SECONDS)

Security-group tests need both verdicts with a control each: a connection
that works proves the server is there, so one that fails proves a drop.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

TIMEOUT = 1.0


def _echo_tcp(conn: socket.socket) -> None:
    with conn:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            conn.sendall(data)


def _serve_tcp(port: int) -> None:
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", port))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_echo_tcp, args=(conn,), daemon=True).start()


def _serve_udp(port: int) -> None:
    srv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    while True:
        data, peer = srv.recvfrom(4096)
        srv.sendto(data, peer)


def serve(ports: list[int]) -> None:
    for port in ports:
        for target in (_serve_tcp, _serve_udp):
            threading.Thread(target=target, args=(port,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def attempt(proto: str, addr: str, port: int) -> bool:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(_family(addr), kind) as s:
        s.settimeout(TIMEOUT)
        try:
            s.connect((addr, port))
            s.send(b"ping")
            return s.recv(16) == b"ping"
        except OSError:
            return False


def stream(addr: str, port: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    with socket.create_connection((addr, port), timeout=TIMEOUT) as s:
        while time.monotonic() < end:
            try:
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    return
            except OSError:
                return
            print(f"{time.monotonic():.3f}", flush=True)
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "serve":
        serve([int(p) for p in args])
    elif cmd == "try":
        return 0 if attempt(args[0], args[1], int(args[2])) else 1
    elif cmd == "stream":
        stream(args[0], int(args[1]), float(args[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
