"""A loopback reverse proxy for tests: HTTP to the fleet API, WebSocket upgrades to the gateway.

Like a site's proxy in front of the fleet server, it sends plain HTTP requests to the API and
upgrade requests to the gateway, and the test decides what it does with upgrades: pass them
(`pass`), refuse them with 403 as a proxy that does not do WebSockets (`refuse`), or pass them
and hold every chunk of the upgraded connection for `delay_s` in each direction (`delay`), as a
congested or far-away link. It counts the bytes of the HTTP (polling) connections both ways,
and those of the WebSocket ones, on the wire, and when the first ack of each reached the robot.
Written with asyncio, in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

_HEAD_END = b'\r\n\r\n'
_REFUSAL = (b'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n'
            b'Connection: close\r\n\r\nWebSockets are not allowed')


class HttpGateProxy:
    """Forward 127.0.0.1:<port>: HTTP to `api_port`, WebSocket upgrades to `gateway_port`."""

    def __init__(self, api_port: int, gateway_port: int) -> None:
        self.api_port, self.gateway_port = api_port, gateway_port
        self.port = 0
        self.mode = 'pass'
        self.delay_s = 0.0
        self.http_bytes_up = 0  # robot -> server, polling connections
        self.http_bytes_down = 0  # server -> robot, polling connections
        self.ws_bytes_up = 0  # the same over WebSockets
        self.ws_bytes_down = 0
        # When the first ack reached the robot over each transport since mark() (monotonic).
        self.first_ack: dict[str, float | None] = {'http': None, 'ws': None}
        self.upgrades_refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    # -- control (from the test's thread) ------------------------------------------------------
    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        """Pass, refuse or delay WebSocket upgrades from now on; drop open WebSockets."""
        def apply() -> None:
            self.mode, self.delay_s = mode, delay_s
            for writer in list(self._writers):
                if getattr(writer, 'is_websocket', False):
                    writer.transport.abort()
        self._loop.call_soon_threadsafe(apply)

    def byte_counts(self) -> tuple[int, int]:
        """Return the polling bytes (up, down) so far."""
        return self.http_bytes_up, self.http_bytes_down

    def ws_byte_counts(self) -> tuple[int, int]:
        """Return the WebSocket bytes (up, down) so far."""
        return self.ws_bytes_up, self.ws_bytes_down

    def mark(self) -> None:
        """Forget the first acks seen: the next ones of each transport are noted again."""
        self.first_ack = {'http': None, 'ws': None}

    def close(self) -> None:
        async def shutdown() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the proxy ----------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, '127.0.0.1', 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled at close(): end quietly (asyncio logs a connection task that raises).
        with contextlib.suppress(asyncio.CancelledError):
            await self._proxy(reader, writer)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(_HEAD_END)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.transport.abort()
            return
        upgrade = b'\r\nupgrade: websocket' in head.lower()
        if upgrade and self.mode == 'refuse':
            self.upgrades_refused += 1
            writer.write(_REFUSAL)
            await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                '127.0.0.1', self.gateway_port if upgrade else self.api_port)
        except OSError:
            writer.transport.abort()
            return
        delay = self.delay_s if upgrade and self.mode == 'delay' else 0.0
        for w in (writer, up_writer):
            w.is_websocket = upgrade  # type: ignore[attr-defined]
            self._writers.add(w)
        self.http_bytes_up += len(head) if not upgrade else 0
        self.ws_bytes_up += len(head) if upgrade else 0
        up_writer.write(head)
        kind = 'ws' if upgrade else 'http'
        await asyncio.gather(self._pipe(reader, up_writer, delay, kind, True),
                             self._pipe(up_reader, writer, delay, kind, False),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    delay_s: float, kind: str, up: bool) -> None:
        # Delayed chunks keep their order: each waits until its own arrival + delay.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                arrived, data = await queue.get()
                if not data:
                    return
                wait = arrived + delay_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                name = f'{kind}_bytes_{"up" if up else "down"}'
                setattr(self, name, getattr(self, name) + len(data))
                if not up and self.first_ack[kind] is None and b'fleet/ack' in data:
                    self.first_ack[kind] = time.monotonic()

        sender = asyncio.create_task(forward())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic(), data))
            queue.put_nowait((time.monotonic(), b''))
            await sender
        finally:
            sender.cancel()
            writer.transport.abort()
            self._writers.discard(writer)
