"""The robot gateway's HTTP long-polling transport: the same session, without a WebSocket.

A robot whose network refuses WebSocket upgrades (or makes them too slow) polls instead
(docs/robot-protocol.md, "HTTP long-polling transport"). Each polling session is a
`RobotSession` whose wire is a buffer: the frames it would write to a WebSocket (the auth
answer, acks after commit, errors, commands, deploy goals) queue up, and the robot's requests
take them. Everything else is the WebSocket session's own code: the `auth` frame goes through
the same authentication (token hash, revocation, protocol negotiation), publish frames through
the same validation, per-robot limits and commit batcher, and `attach` makes it the robot's
one current session, so a later WebSocket replaces it and it replaces an earlier WebSocket.
An admin's revocation closes it through the gateway's re-check at once, like a WebSocket.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.domain.tokens import token_matches
from lekiwi_fleet_server.gateway.session import RobotSession, SessionState

if TYPE_CHECKING:
    from lekiwi_fleet_server.gateway.server import RobotGateway

NDJSON = 'application/x-ndjson'


class PollingClosed(Exception):
    """The polling session ended (replaced, revoked, timed out): the robot must open one again."""


class HttpUplinkSession(RobotSession):
    """One robot's polling session: a `RobotSession` whose outgoing frames wait in a buffer."""

    # Each polling request passed api/robot_auth.py, which refuses a key-bound robot's token
    # without its key's proof: the session's login needs no key challenge of its own.
    key_proved_by_request = True

    def __init__(self, gateway: RobotGateway, peer: str | None) -> None:
        super().__init__(gateway)
        self._peer = peer
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._changed = asyncio.Event()
        self._posting = 0  # POSTs waiting for their commits: they, not a GET, take the acks
        gateway.opened(self)

    # -- what the WebSocket session writes to its socket -------------------------------------
    def send(self, data: bytes) -> bool:
        """Queue a frame for the robot's next request; drop a robot that never collects."""
        if self.state is SessionState.CLOSED:
            return False
        self._out.append(data)
        self._out_bytes += len(data)
        self._changed.set()
        if self._out_bytes > self._max_queue:
            self._gw.count_refused(ErrorCode.SLOW_CONSUMER)
            self._out.append(b'{"op":"status","level":"error","code":"slow_consumer",'
                             b'"msg":"the robot does not collect what the server sends"}')
            self.close(1008, 'slow_consumer')
            return False
        return True

    def close(self, code: int, reason: str, graceful: bool = True) -> None:
        """End the session: the robot's waiting requests answer with what is left."""
        if self.state is SessionState.CLOSED:
            return
        # The WebSocket session's own end: auth task cancelled, presence, gateway bookkeeping.
        self.on_ws_disconnected(None)  # type: ignore[arg-type]
        self._changed.set()

    def ping(self) -> None:
        """Do nothing: a polling robot is heard at each request (and sends heartbeats)."""

    def peer_address(self) -> str | None:
        """Return the address the robot's requests come from."""
        return self._peer

    # -- what the robot's requests do ---------------------------------------------------------
    def take(self) -> list[bytes]:
        """Return and forget every queued frame."""
        frames, self._out, self._out_bytes = self._out, [], 0
        self._changed.clear()
        return frames

    async def _wait_until(self, done: Callable[[], bool], timeout_s: float,
                          tick_s: float | None = None,
                          on_tick: Callable[[], None] | None = None) -> None:
        """Wait until `done()` (looked at after each change of the session) or the timeout.

        With `tick_s`, `on_tick` runs at least that often while it waits (presence).
        """
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(),
                                       left if tick_s is None else min(left, tick_s))
            except TimeoutError:
                if on_tick is not None and time.monotonic() < deadline:
                    on_tick()
                continue

    async def wait_authenticated(self, timeout_s: float) -> None:
        """Wait until the auth frame was answered (authenticated or refused)."""
        await self._wait_until(lambda: self.state not in (SessionState.AWAITING_AUTH,
                                                          SessionState.AUTHENTICATING),
                               timeout_s)

    def receive(self, lines: Sequence[bytes]) -> None:
        """Handle the frames of a POST, one per line, as the WebSocket session does frames."""
        assert self.robot_id is not None
        for line in lines:
            if self.state is SessionState.CLOSED:
                return
            if len(line) > self._max_frame:
                self.refuse(ProtocolError(ErrorCode.OVERSIZE_FRAME,
                                          f'frame of {len(line)} bytes exceeds {self._max_frame}'))
                return
            self.handle_payload(line)

    async def collect_acks(self, timeout_s: float) -> list[bytes]:
        """Wait until this robot has no frame waiting for its commit (or timeout); take all."""
        robot_id = self.robot_id
        assert robot_id is not None
        batcher = self._gw.batcher_of(robot_id)
        self._posting += 1
        try:
            # Acks are sent from the commit callback right after the batcher counts the
            # robot's frames done, so once none is pending, every ack is in the buffer.
            await self._wait_until(lambda: self.state is SessionState.CLOSED
                                   or batcher.robot_pending(robot_id) <= 0, timeout_s)
        finally:
            self._posting -= 1
        return self.take()

    async def long_poll(self, wait_s: float, presence_s: float) -> list[bytes]:
        """Wait up to `wait_s` for frames to the robot (commands, goals, late acks); take all.

        The robot is heard every `presence_s` while its GET is held, as a WebSocket's pongs
        keep it present: so a GET may be held far longer than the presence timeout, and a
        polling robot pays for one GET's headers per `wait_s` instead of per `presence_s`.
        """
        robot_id = self.robot_id
        assert robot_id is not None
        self._gw.heard(robot_id)

        def still_here() -> None:
            if self.state is not SessionState.CLOSED:
                self._gw.heard(robot_id)

        # While a POST waits for its commits the acks are its own: the GET waits on.
        await self._wait_until(
            lambda: self.state is SessionState.CLOSED or bool(self._out and not self._posting),
            wait_s, tick_s=presence_s, on_tick=still_here)
        if self.state is not SessionState.CLOSED:
            self._gw.heard(robot_id)
        return self.take()


class HttpUplink:
    """The polling sessions of the gateway's robots, found by robot id and token."""

    def __init__(self, gateway: RobotGateway) -> None:
        self._gw = gateway
        self._sessions: dict[str, HttpUplinkSession] = {}

    def presence_s(self) -> float:
        """Return how often a held GET marks its robot heard: half the presence timeout."""
        return self._gw.settings.presence_timeout_s / 2.0

    async def open(self, robot_id: str, token: str, auth_line: bytes, peer: str | None
                   ) -> tuple[HttpUplinkSession, list[bytes]]:
        """Authenticate a robot's `auth` frame through the gateway; return the new session.

        The frame goes through the WebSocket session's first-frame path; its robot id and token
        must be the request's. Raises PollingClosed (with the refusal) when it is refused.
        """
        try:
            frame = orjson.loads(auth_line)
        except orjson.JSONDecodeError:
            raise PollingClosed('the body must be an auth frame (JSON)') from None
        if not isinstance(frame, dict) or frame.get('op') != 'auth':
            raise PollingClosed('the body must be an auth frame')
        if 'admission' in frame:
            raise PollingClosed('admission requests go over the WebSocket only')
        # Checked before authenticating: the frame must not attach another robot's session.
        if frame.get('robot_id') != robot_id or not isinstance(frame.get('token'), str) \
                or not hmac.compare_digest(frame['token'].encode(), token.encode()):
            raise PollingClosed('the auth frame must carry the request\'s robot id and token')
        session = HttpUplinkSession(self._gw, peer)
        session.handle_payload(auth_line)
        await session.wait_authenticated(self._gw.settings.auth_timeout_s)
        if session.state is not SessionState.AUTHENTICATED:
            frames = session.take()
            session.close(4401, 'auth_failed')
            raise PollingClosed(b'\n'.join(frames).decode('utf-8', 'replace'))
        older = self._sessions.get(robot_id)
        self._sessions[robot_id] = session
        if older is not None and older is not session:
            older.close(4409, 'replaced')
        return session, session.take()

    def find(self, robot_id: str, token: str) -> HttpUplinkSession:
        """Return the robot's open polling session if the token is its own, else raise."""
        session = self._sessions.get(robot_id)
        if session is None or session.state is not SessionState.AUTHENTICATED:
            self._sessions.pop(robot_id, None)
            raise PollingClosed('no polling session of this robot: open one')
        # The session keeps its token's hash; a revoked or rotated token closed it already.
        if session.token_sha256 is None or not token_matches(token, session.token_sha256):
            raise PollingClosed('wrong token for this polling session')
        return session

    def transport_of(self, robot_id: str) -> str | None:
        """Return 'polling' when the robot's current session is a polling one."""
        session = self._sessions.get(robot_id)
        if session is not None and session.state is SessionState.AUTHENTICATED:
            return 'polling'
        return None
