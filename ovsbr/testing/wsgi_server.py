"""Serve a WSGI application on a threaded wsgiref server (tests only).

``python -m ovsbr.testing.wsgi_server HOST PORT MODULE:ATTR`` serves, e.g.,
Neutron's API (``neutron.wsgi.api:application``) the way uwsgi would in a
deployment: one process, a thread per request. The standard library's
server, so the tests need no extra package.
"""

from __future__ import annotations

import importlib
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        sys.stderr.write("wsgi: " + (format % args) + "\n")


def main(argv: list[str]) -> None:
    host, port, target = argv
    module, _, attr = target.partition(":")
    sys.argv[1:] = []  # the application may parse the command line (Neutron's does)
    app = getattr(importlib.import_module(module), attr)
    server = make_server(host, int(port), app, server_class=ThreadingServer,
                         handler_class=QuietHandler)
    print(f"serving {target} on {host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
