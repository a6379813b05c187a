"""The agent's local status endpoint: GET /lekiwi/status over HTTP, served from one thread.

A plain `http.server` in a daemon thread: it answers a scan's probe in microseconds and holds
no state of its own (it reads the newest `AgentStatus` the node gave it). Each request is
bounded by a socket timeout so a probe that never finishes its request cannot hold it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from lekiwi_agent_ros.discovery.status import AgentStatus, respond

_REQUEST_TIMEOUT_S = 2.0


class StatusEndpoint:
    """Serve the status document on `host:port` (port 0: a free one, read back by `port`)."""

    def __init__(self, host: str, port: int, status: Callable[[], AgentStatus | None]) -> None:
        handler = _handler_for(status)
        self._server = HTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name='lekiwi-status-http', daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> StatusEndpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: only if it runs
            self._server.shutdown()
        self._server.server_close()


def _handler_for(status: Callable[[], AgentStatus | None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = _REQUEST_TIMEOUT_S
        server_version = 'lekiwi-agent'

        def _answer(self) -> None:
            code, body = respond(self.command, self.path, status())
            self.send_response(code)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = _answer  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # a scan every few minutes would fill the log

    return Handler
