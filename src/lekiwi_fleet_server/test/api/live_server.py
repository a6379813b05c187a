"""The real app served by uvicorn on a loopback port of its own, in a thread of the test."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.app import StoreFactory, create_app
from lekiwi_fleet_server.settings import Settings


@dataclass(frozen=True)
class LiveServer:
    url: str
    services: FleetServices


@contextmanager
def live_server(settings: Settings, store_factory: StoreFactory | None = None,
                start_timeout_s: float = 60.0) -> Iterator[LiveServer]:
    """Serve `create_app(settings)` on 127.0.0.1, port 0; stop it afterwards."""
    app = create_app(settings, store_factory=store_factory)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level='warning', access_log=False,
                                           lifespan='on', loop='asyncio'))
    # Not the main thread: uvicorn installs no signal handlers here.
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name='live-server', daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError('the live server did not start')
        time.sleep(0.02)
    try:
        yield LiveServer(f'http://127.0.0.1:{port}', app.state.services)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
