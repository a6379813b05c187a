"""The uplink's fallback: HTTP(S) long polling when the WebSocket is refused or too slow.

`UplinkClient` calls `run` after each WebSocket attempt. When that attempt could not open a
WebSocket (a proxy refused the upgrade, a firewall), or dropped it because the ack latency
p99 went over its threshold, `run` drives the same `UplinkSession` (same outbox, same order,
same acks) over HTTP (docs/robot-protocol.md, "HTTP long-polling transport"): the auth frame
opens a polling session, `POST`s carry batches of frames and answer their acks after commit,
and a long-poll `GET` brings commands and deploy goals. Meanwhile it probes the WebSocket, with
backoff; once a probe opens one in time, `run` returns and the client goes back to it. The
server de-duplicates by (robot, boot_id, seq), so frames in flight when the transport changes
are sent again safely.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from lekiwi_agent_ros.deploy.key_challenge import CHALLENGE_PATH, KeyChallenge, KeySigner
from lekiwi_agent_ros.uplink.ack_latency import AckLatency
from lekiwi_agent_ros.uplink.backoff import Backoff
from lekiwi_agent_ros.uplink.polling_config import PollingConfig
from lekiwi_agent_ros.uplink.uplink_session import Log, Reaction, UplinkSession

NDJSON = 'application/x-ndjson'
SESSION_PATH = '/api/v1/robot/uplink/session'
FRAMES_PATH = '/api/v1/robot/uplink/frames'
MAX_POST_BYTES = 192 * 1024  # under the server's 256 KiB body limit (inflated)
GZIP_FROM_BYTES = 256  # smaller bodies save less than their Content-Encoding header costs
GZIP_HEADERS = {'Content-Encoding': 'gzip'}
WEBSOCKET, POLLING = 'websocket', 'polling'
AUTO = 'auto'
# The `transport` parameter (fleet_uplink:transport, the `uplink_transport` flag's target):
# auto: the WebSocket, polling when it is refused or too slow; websocket: the WebSocket only;
# polling: polling only (no WebSocket, no probes).
MODES = (AUTO, WEBSOCKET, POLLING)


class PollingClosed(Exception):
    """The polling session ended: the server replaced or refused it, or the link failed."""


class WatchedConnection:
    """A WebSocket whose sends and receives feed the ack latency (the client uses it as is)."""

    def __init__(self, ws: ClientConnection, latency: AckLatency) -> None:
        self._ws = ws
        self._latency = latency

    async def send(self, frame: str) -> None:
        self._latency.sent(frame)
        await self._ws.send(frame)

    def __aiter__(self) -> WatchedConnection:
        return self

    async def __anext__(self) -> Any:
        message = await self._ws.__aiter__().__anext__()
        self._latency.received(message)
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class PollingFallback:
    """Decide between WebSocket and polling, and run the polling transport when it must."""

    def __init__(self, config: PollingConfig, ws_url: str, robot_id: str, log: Log, *,
                 user_agent: str = 'lekiwi-agent',
                 now: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._ws_url = ws_url
        self._robot_id = robot_id
        self._log = log
        self._user_agent = user_agent
        self._now = now
        self._latency = AckLatency(config.latency, now)
        self._opened = False  # the last WebSocket attempt opened a WebSocket
        self._slow: str | None = None  # ...and dropped it for this reason
        self._probe_failures = 0
        self.transport = WEBSOCKET
        self.switches = 0  # transport changes so far (diagnostics)
        self.last_switch_reason = ''
        self.mode = AUTO  # the `transport` parameter: set_mode() from any thread
        self._mode_changed = asyncio.Event()  # set in the client's loop (notify_mode)

    # -- the `transport` parameter ------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Take a new `transport` mode (any thread); the client then calls `notify_mode`."""
        if mode not in MODES:
            raise ValueError(f'transport must be one of {", ".join(MODES)}, got {mode!r}')
        self.mode = mode

    def notify_mode(self) -> None:
        """Wake what waits on the mode (call in the client's event loop)."""
        self._mode_changed.set()

    @property
    def forced_polling(self) -> bool:
        """Tell whether the `transport` parameter says polling only."""
        return self.mode == POLLING

    async def _mode_wait(self, timeout_s: float | None) -> None:
        self._mode_changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._mode_changed.wait(), timeout_s)

    # -- hooks of the WebSocket client --------------------------------------------------------
    def watch(self, ws: ClientConnection) -> WatchedConnection:
        """Time the frames of a freshly opened WebSocket."""
        self._opened, self._slow = True, None
        self._latency.reset()
        return WatchedConnection(ws, self._latency)

    def too_slow(self) -> str | None:
        """Return why the open WebSocket must make way for polling, or None."""
        if self.mode == WEBSOCKET:
            return None  # the WebSocket only, however slow
        reason = ('the transport parameter says polling' if self.mode == POLLING
                  else self._latency.too_slow())
        if reason is not None:
            self._slow = reason
        return reason

    # -- the polling transport ----------------------------------------------------------------
    async def run(self, token: str, session: UplinkSession, pending: Callable[[], list[str]],
                  wake: asyncio.Event, stop: asyncio.Event, backoff: Backoff,
                  signer: KeySigner | None = None) -> None:
        """Poll while the WebSocket is refused or too slow; return to try the WebSocket again.

        With `signer` (the robot's admission key), each request carries the key's proof, which
        the server asks of a robot whose token is bound to that key (api/robot_auth.py).
        """
        opened, slow = self._opened, self._slow
        self._opened, self._slow = False, None
        if self.mode == WEBSOCKET:
            return  # the parameter says the WebSocket only: the client tries it again
        if self.mode == POLLING:
            slow = 'the transport parameter says polling'
        elif opened and slow is None:
            self._probe_failures = 0  # the WebSocket worked and was not too slow
            return
        reason = slow or 'the WebSocket could not be opened'
        if slow is not None:
            self._probe_failures += 1  # back again and too slow again: probe less often
        session.connection_closed()
        self._switch(POLLING, reason)
        try:
            await _Polling(self, token, session, pending, wake, stop, backoff,
                           signer).serve()
        except PollingClosed as exc:
            self._log(logging.WARNING, f'polling {self._config.poll_url} ended: {exc}')
        except Exception as exc:  # the thread must outlive any surprise and keep retrying
            self._log(logging.ERROR, f'polling error: {exc!r}')
        finally:
            self._switch(WEBSOCKET, 'trying the WebSocket again')

    def _switch(self, transport: str, reason: str) -> None:
        if transport != self.transport:
            self.transport, self.switches, self.last_switch_reason = \
                transport, self.switches + 1, reason
            self._log(logging.WARNING if transport == POLLING else logging.INFO,
                      f'uplink transport: {transport} ({reason})')

    def probe_delay(self) -> float:
        """Return the wait before the next WebSocket probe (doubling, capped)."""
        cfg = self._config
        return min(cfg.probe_cap_s, cfg.probe_base_s * 2 ** min(self._probe_failures, 16))

    async def probe(self) -> bool:
        """Open a WebSocket and close it at once; True when it opened within the threshold."""
        started = self._now()
        try:
            async with connect(self._ws_url, open_timeout=self._config.latency.threshold_s * 4,
                               ping_interval=None, close_timeout=1.0, compression=None,
                               user_agent_header=self._user_agent) as ws:
                took = self._now() - started
                await ws.close(1000, 'probe')
        except Exception as exc:  # refused, timed out, unreachable: still blocked
            self._probe_failures += 1
            self._log(logging.DEBUG, f'WebSocket probe failed: {exc!r}')
            return False
        if took > self._config.latency.threshold_s:
            self._probe_failures += 1
            self._log(logging.INFO, f'WebSocket probe opened in {took * 1000:.0f} ms: too slow')
            return False
        return True


class _Polling:
    """One polling session: open it, then POST, GET and probe side by side until one ends."""

    def __init__(self, owner: PollingFallback, token: str, session: UplinkSession,
                 pending: Callable[[], list[str]], wake: asyncio.Event, stop: asyncio.Event,
                 backoff: Backoff, signer: KeySigner | None = None) -> None:
        self._owner = owner
        self._token = token
        self._session = session
        self._pending = pending
        self._wake = wake
        self._stop = stop
        self._backoff = backoff
        self._replies: collections.deque[str] = collections.deque()
        self._reply_ready = asyncio.Event()  # a command answer cuts a POST's linger short
        self._leaving = False  # a probe opened the WebSocket: finish the POST under way, stop
        cfg = owner._config
        self._config = cfg
        self._client = httpx.AsyncClient(
            base_url=cfg.poll_url.rstrip('/'),
            headers={'Authorization': f'Bearer {token}', 'X-Robot-Id': owner._robot_id},
            timeout=httpx.Timeout(cfg.request_timeout_s + cfg.long_poll_s))
        for name in ('Accept', 'Accept-Encoding', 'Connection', 'User-Agent'):
            # httpx's defaults say nothing here (keep-alive is HTTP/1.1's own, the answers are
            # small NDJSON), and the session's opening request names the agent and the body's
            # type once: 90 bytes less on every request after it.
            self._client.headers.pop(name, None)
        self._opening_headers = {'User-Agent': owner._user_agent, 'Content-Type': NDJSON}
        self._last_batch = 0  # frames of the last POST: a backlog goes without lingering
        # The key proof of each request (a key-bound robot's; see PollingFallback.run): the
        # signed path is the one the server sees, under the API's base URL.
        self._challenge = KeyChallenge(owner._robot_id, signer)
        self._base_path = urllib.parse.urlsplit(cfg.poll_url).path.rstrip('/')

    async def serve(self) -> None:
        try:
            await self._open()
            post = asyncio.create_task(self._post_loop())
            probe = asyncio.create_task(self._probe_loop())
            tasks = [post, asyncio.create_task(self._poll_loop()), probe,
                     asyncio.create_task(self._stop.wait())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a PollingClosed ends the session with its reason
                if probe in done and not post.done():
                    # Back to the WebSocket: the POST on its way must finish, not be cut off.
                    # Cut off, the server still commits its frames but its acks never arrive:
                    # the frames would go again over the WebSocket (sent on both transports,
                    # de-duplicated by the server, but twice the bytes) and the command
                    # answers it carried would be lost.
                    self._leaving = True
                    self._reply_ready.set()  # cut a linger short
                    self._wake.set()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(post),
                                               self._config.request_timeout_s)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            await self._client.aclose()

    async def _open(self) -> None:
        auth = self._session.connection_opened(self._token)
        lines = await self._request('POST', SESSION_PATH, content=auth.encode(),
                                    headers=self._opening_headers)
        self._handle(lines)
        if not self._session.ready:
            raise PollingClosed('the server did not authenticate the polling session')
        self._backoff.connected()
        self._owner._log(logging.INFO, f'authenticated with {self._config.poll_url} (polling)')

    async def _proof(self, method: str, path: str) -> dict[str, str]:
        """Return the key-proof header of one request, or none for a token-only robot."""
        now = self._owner._now()
        if self._challenge.due(now):
            try:
                response = await self._client.get(CHALLENGE_PATH)
                answer = response.json() if response.status_code == 200 else None
            except httpx.HTTPError as exc:
                raise PollingClosed(f'key challenge: {type(exc).__name__}: {exc}') from None
            except ValueError:
                answer = None
            if answer is None:
                raise PollingClosed(f'key challenge: HTTP {response.status_code}: '
                                    f'{response.text[:200]}')
            try:
                self._challenge.answered(answer, now)
            except ValueError as exc:
                raise PollingClosed(f'key challenge: {exc}') from None
        return self._challenge.header(method, self._base_path + path)

    async def _request(self, method: str, path: str, **kwargs: Any) -> list[str]:
        proof = await self._proof(method, path)
        if proof:
            kwargs['headers'] = {**(kwargs.get('headers') or {}), **proof}
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PollingClosed(f'{type(exc).__name__}: {exc}') from None
        if response.status_code != 200:
            raise PollingClosed(f'HTTP {response.status_code}: {response.text[:200]}')
        return [line for line in response.text.split('\n') if line]

    def _handle(self, lines: list[str]) -> None:
        for line in lines:
            reaction: Reaction = self._session.receive(line)
            self._replies.extend(reaction.frames)
            if reaction.frames:
                self._reply_ready.set()
            if reaction.close_reason:
                raise PollingClosed(reaction.close_reason)
        if self._replies:
            self._wake.set()

    async def _post_loop(self) -> None:
        session = self._session
        while True:
            if self._leaving:
                return  # the request before this one is answered: hand over now
            self._wake.clear()  # cleared before looking, so a wake() from now on is not missed
            reason = session.expired()
            if reason:
                raise PollingClosed(reason)
            if self._config.post_linger_s > 0 and not self._replies and self._last_batch < 8:
                # Light traffic: let the period's other frames (and a newer heartbeat, which
                # supersedes this one in the outbox) join this POST. Command answers go at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reply_ready.wait(), self._config.post_linger_s)
                self._reply_ready.clear()
                if self._leaving:
                    return
            frames = [*self._drain_replies(), *self._pending()]
            self._last_batch = len(frames)
            while frames:
                batch, size = [], 0
                while frames and (not batch or size + len(frames[0]) < MAX_POST_BYTES):
                    size += len(frames[0]) + 1
                    batch.append(frames.pop(0))
                body = ''.join(f + '\n' for f in batch).encode()
                headers = None
                if len(body) >= GZIP_FROM_BYTES:  # JSON frames shrink to about half
                    body, headers = gzip.compress(body, 6, mtime=0), GZIP_HEADERS
                self._handle(await self._request('POST', FRAMES_PATH, content=body,
                                                 headers=headers))
            if self._wake.is_set():
                continue
            deadline = session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._owner._now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _drain_replies(self) -> list[str]:
        replies = list(self._replies)
        self._replies.clear()
        return replies

    async def _poll_loop(self) -> None:
        wait = self._config.long_poll_s
        while True:
            self._handle(await self._request('GET', FRAMES_PATH, params={'wait_s': wait}))

    async def _probe_loop(self) -> None:
        owner = self._owner
        while True:
            if owner.mode == POLLING:
                await owner._mode_wait(None)  # no probes while the parameter says polling
                continue
            if owner.mode == WEBSOCKET:
                owner._log(logging.INFO, 'the transport parameter says websocket: leaving polling')
                return
            await owner._mode_wait(owner.probe_delay())  # a mode change cuts the wait short
            if owner.mode != AUTO:
                continue
            if await owner.probe():
                owner._log(logging.INFO, 'the WebSocket opens again: leaving polling')
                return
