"""The uplink's one outbound WebSocket, run by asyncio in a thread of its own.

A thin shell around `UplinkSession`: it connects (backing off with jitter between attempts),
sends the session's frames whenever the outbox changes or an ack frees the window, hands every
frame from the server to the session, and drops the connection when the session says it has
gone stale. Other threads only call `wake()`, `send_soon()` and `stop()`, which are thread-safe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed, WebSocketException

try:
    from websockets.asyncio.client import ClientConnection, connect
except ImportError as exc:  # websockets < 13: Ubuntu 24.04's python3-websockets is 10.4
    raise ImportError(
        'fleet_uplink needs websockets >= 13 (pip install -r requirements/agent.txt)',
        name='websockets',
    ) from exc

from lekiwi_agent_ros.uplink.backoff import Backoff
from lekiwi_agent_ros.uplink.uplink_session import AdmissionSigner, Log, UplinkSession

if TYPE_CHECKING:  # imported by fleet_uplink only with a poll_url: httpx costs memory
    from lekiwi_agent_ros.uplink.http_transport import PollingFallback

# The close code of a server going down for a restart (RFC 6455 registry): come back soon.
SERVICE_RESTART = 1012


class UplinkClient:
    """Keeps one authenticated WebSocket to the fleet server and pumps the session through it."""

    def __init__(
        self,
        url: str,
        session: UplinkSession,
        backoff: Backoff,
        token: Callable[[], str],
        log: Log,
        *,
        user_agent: str = 'lekiwi-agent',
        open_timeout_s: float = 5.0,
        max_frame_bytes: int = 65536,
        now: Callable[[], float] = time.monotonic,
        admission: AdmissionSigner | None = None,
        on_token: Callable[[str], None] | None = None,
        fallback: PollingFallback | None = None,
    ) -> None:
        self._fallback = fallback  # HTTP polling when the WebSocket is refused or too slow
        # With `admission`, a robot without a token asks admission with that key, and
        # `on_token` stores the token an admin's acceptance sends (docs/robot-protocol.md, 1a).
        self._admission = admission
        self._on_token = on_token
        self._url = url
        self._session = session
        self._backoff = backoff
        self._token = token
        self._log_to = log
        self._user_agent = user_agent
        self._open_timeout_s = open_timeout_s
        self._max_frame_bytes = max_frame_bytes
        self._now = now
        self._extra: collections.deque[str] = collections.deque()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopping = False
        self._wake_event: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None

    @property
    def connected(self) -> bool:
        """Tell whether the connection is open and authenticated."""
        return self._session.ready

    @property
    def url(self) -> str:
        """Return the server URL."""
        return self._url

    def start(self) -> None:
        """Start the connection thread."""
        self._thread = threading.Thread(target=self._thread_main, name='fleet_uplink', daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def wake(self) -> None:
        """Tell the connection thread that the outbox changed (thread-safe)."""
        loop, event = self._loop, self._wake_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def set_transport(self, mode: str) -> None:
        """Apply the `transport` parameter (auto | websocket | polling; thread-safe)."""
        if self._fallback is None:
            if mode == 'polling':
                raise ValueError('polling needs the poll_url parameter')
            return  # without a fallback, auto and websocket are the same
        self._fallback.set_mode(mode)
        loop, event = self._loop, self._wake_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._fallback.notify_mode)
                loop.call_soon_threadsafe(event.set)  # an open WebSocket looks again

    def send_soon(self, frame: str) -> None:
        """Send a frame that is not an outbox message, if connected (thread-safe)."""
        self._extra.append(frame)
        self.wake()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the connection and end the thread."""
        self._stopping = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake_event = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._loop = loop
        self._ready.set()
        if self._stopping:
            return
        while not self._stop_event.is_set():
            token = self._read_token()
            if token or self._admission is not None:
                if self._fallback is None or not self._fallback.forced_polling:
                    await self._connect_once(token)
                if self._fallback is not None and token:  # uplink/http_transport.py
                    await self._fallback.run(token, self._session, self._pending_frames,
                                             self._wake_event, self._stop_event, self._backoff,
                                             self._admission)
            self._session.connection_closed()
            self._backoff.disconnected()
            if self._stop_event.is_set():
                break
            delay = self._backoff.next_delay()
            self._log(logging.INFO, f'reconnecting to {self._url} in {delay:.1f} s')
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), delay)

    def _log(self, level: int, text: str) -> None:
        try:
            self._log_to(level, text)
        except Exception as exc:  # a broken logger must not end the connection thread
            print(f'fleet_uplink: {text} (logger failed: {exc!r})', file=sys.stderr)

    def _read_token(self) -> str:
        try:
            token = self._token()
        except OSError as exc:
            self._log(logging.ERROR, f'cannot read the robot token: {exc}')
            return ''
        if not token and self._admission is not None:
            self._log(logging.INFO, 'no robot token yet: asking the server for admission')
        elif not token:
            self._log(logging.ERROR, 'no robot token: set the token or token_file parameter')
        return token

    async def _connect_once(self, token: str) -> None:
        try:
            async with connect(
                self._url,
                open_timeout=self._open_timeout_s,
                max_size=self._max_frame_bytes,
                # The gateway pings every second; our pings would only add bytes. Staleness is
                # caught by the session's ack timeout, as a heartbeat is in flight every second.
                ping_interval=None,
                close_timeout=2.0,
                # The gateway (picows) does no permessage-deflate; offering it costs a zlib context.
                compression=None,
                user_agent_header=self._user_agent,
            ) as opened:
                ws = opened if self._fallback is None else self._fallback.watch(opened)
                self._log(logging.INFO, f'connected to {self._url}; authenticating')
                await ws.send(self._session.connection_opened(token, self._admission))
                await self._serve(ws)
                if ws.close_code == SERVICE_RESTART:
                    self._backoff.server_restarting()
                self._log(
                    logging.WARNING,
                    f'disconnected from {self._url}: {_close_summary(ws)}',
                )
        except (OSError, TimeoutError, WebSocketException) as exc:
            self._log(logging.WARNING, f'connection to {self._url} ended: {_describe(exc)}')
        except Exception as exc:  # the thread must outlive any surprise and keep retrying
            self._log(logging.ERROR, f'uplink error, reconnecting: {exc!r}')

    async def _serve(self, ws: ClientConnection) -> None:
        assert self._wake_event is not None and self._stop_event is not None
        reader = asyncio.create_task(self._read(ws))
        stopper = asyncio.create_task(self._stop_event.wait())
        try:
            while True:
                # Cleared before looking, so a wake() from now on is never missed.
                self._wake_event.clear()
                reason = self._session.expired() or (
                    self._fallback.too_slow() if self._fallback is not None else None)
                if reason:
                    self._log(logging.WARNING, f'dropping the connection: {reason}')
                    await ws.close(1000, reason[:120])
                    return
                for frame in self._pending_frames():
                    await ws.send(frame)
                deadline = self._session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._now())
                waker = asyncio.create_task(self._wake_event.wait())
                done, _ = await asyncio.wait(
                    {reader, waker, stopper},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waker.cancel()
                if reader in done:
                    reader.result()
                    return
                if stopper in done:
                    await ws.close(1001, 'agent stopping')
                    return
        finally:
            reader.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader

    def _pending_frames(self) -> list[str]:
        extra = []
        while self._extra:
            extra.append(self._extra.popleft())
        if not self._session.ready:
            if extra:
                self._log(logging.DEBUG, f'not connected: {len(extra)} action frames dropped')
            return []
        return extra + self._session.frames_to_send()

    async def _read(self, ws: ClientConnection) -> None:
        assert self._wake_event is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                reaction = self._session.receive(message)
                for frame in reaction.frames:
                    await ws.send(frame)
                if reaction.token is not None:
                    self._store_token(reaction.token)
                if reaction.authenticated:
                    self._backoff.connected()
                    self._log(logging.INFO, f'authenticated with {self._url}')
                if reaction.close_reason:
                    await ws.close(1000, reaction.close_reason[:120])
                    return
                # An ack may have freed room in the send window.
                self._wake_event.set()


    def _store_token(self, token: str) -> None:
        if self._on_token is None:
            self._log(logging.ERROR, 'admitted, but nowhere to keep the token')
            return
        try:
            self._on_token(token)
        except OSError as exc:  # it stays connected; a reconnect would ask admission again
            self._log(logging.ERROR, f'cannot store the robot token: {exc}')


def _close_summary(ws: ClientConnection) -> str:
    code, reason = ws.close_code, ws.close_reason
    if code is None:
        return 'connection lost'
    return f'close code {code}' + (f' ({reason})' if reason else '')


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f'{type(exc).__name__}: {text}' if type(exc).__name__ not in text else text
