"""One robot connection: authenticate first, then validate frames and queue their messages.

A `RobotSession` is the picows listener of one WebSocket. It does the per-frame work on the
event loop and nothing that can block: a valid publish frame is queued, as its payload bytes,
for the batcher, whose committer commits it in the writer; store look-ups go through the
gateway's executor. Every refused frame, whatever raised, goes through `refuse`, the one place
that turns exceptions into the protocol's error frames (the writer's refusals come back
through it too).
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import TYPE_CHECKING, Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.admission import new_nonce
from lekiwi_fleet_server.domain.key_binding import check_key_proof
from lekiwi_fleet_server.domain.protocol import (
    AuthRequest,
    ErrorCode,
    ProtocolError,
    auth_ok_frame,
    error_frame,
)
from lekiwi_fleet_server.domain.rate_limit import TokenBucket
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.gateway.actions import parse_result
from lekiwi_fleet_server.store.interface import StoreError

if TYPE_CHECKING:
    from lekiwi_fleet_server.api.admin import Enrolment
    from lekiwi_fleet_server.gateway.server import RobotGateway

log = logging.getLogger(__name__)

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_CONTINUATION, _PONG, _CLOSE = WSMsgType.CONTINUATION, WSMsgType.PONG, WSMsgType.CLOSE


class SessionState(Enum):
    AWAITING_AUTH = 'awaiting_auth'
    AUTHENTICATING = 'authenticating'
    AWAITING_ADMISSION = 'awaiting_admission'  # an admission request waits for an admin
    AUTHENTICATED = 'authenticated'
    CLOSED = 'closed'


def protocol_error_for(exc: BaseException, frame_id: str | None = None) -> ProtocolError:
    """Map any exception met while handling a frame onto the protocol error to send."""
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, StoreError):
        return ProtocolError(ErrorCode.SERVER_ERROR,
                             'the server cannot reach its store; send it again later', frame_id)
    return ProtocolError(ErrorCode.SERVER_ERROR, 'internal error; send it again later', frame_id)


class RobotSession(WSListener):
    """The gateway's side of one robot WebSocket."""

    # True where every request of the connection has proved the robot's key already (HTTP
    # polling: api/robot_auth.py checks each request's X-Robot-Key-Proof): no key challenge.
    key_proved_by_request = False

    def __init__(self, gateway: RobotGateway) -> None:
        super().__init__()
        self._gw = gateway
        self.transport: WSTransport | None = None
        self.state = SessionState.AWAITING_AUTH
        self.robot_id: str | None = None
        self.token_sha256: str | None = None
        self.rate: TokenBucket | None = None  # the robot's publish rate, once authenticated
        self._stock_boot: str | None = None  # boot id of stock rosbridge publishes (no boot_id)
        self._stock_seq = 0
        self.protocol: str | None = None
        self.agent_version: str | None = None
        self._max_frame = gateway.settings.max_frame_bytes
        self._max_queue = gateway.settings.send_queue_bytes
        self._fragments: bytearray | None = None
        self._pre_auth: list[bytes] = []
        self._auth_timer: asyncio.TimerHandle | None = None
        self._auth_task: asyncio.Task[None] | None = None
        self._write_buffer_size: Any = None
        self.fd = -1  # the socket's descriptor (picows names its logger after it)
        self.admission_nonce: str | None = None  # the challenge sent to this connection
        self.admission_robot_id: str | None = None  # the robot id it asked admission for
        self.key_nonce: str | None = None  # the key challenge sent to this connection
        self._admission: AuthRequest | None = None
        self._admission_protocol: str | None = None

    # -- picows callbacks ---------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._write_buffer_size = transport.underlying_transport.get_write_buffer_size
        self._auth_timer = asyncio.get_running_loop().call_later(
            self._gw.settings.auth_timeout_s, self._on_auth_timeout)
        sock = transport.underlying_transport.get_extra_info('socket')
        self.fd = sock.fileno() if sock is not None else -1
        self._gw.opened(self, self.fd)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == _TEXT or msg_type == _BINARY:
            if self._fragments is not None:
                self.close(1002, 'new message inside a fragmented one')
            elif frame.payload_size > self._max_frame:
                self._oversize(frame.payload_size)
            elif frame.fin:
                self.handle_payload(frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type == _CONTINUATION:
            if self._fragments is None:
                self.close(1002, 'continuation without a message')
                return
            if len(self._fragments) + frame.payload_size > self._max_frame:
                self._oversize(len(self._fragments) + frame.payload_size)
                return
            self._fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                payload, self._fragments = bytes(self._fragments), None
                self.handle_payload(payload)
        elif msg_type == _PONG:
            if self.robot_id is not None:
                self._gw.heard(self.robot_id)
        elif msg_type == _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        previous, self.state = self.state, SessionState.CLOSED
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if self._auth_task is not None and not self._auth_task.done():
            self._auth_task.cancel()
        self._gw.closed(self, was_authenticated=previous is SessionState.AUTHENTICATED)

    # -- frames -------------------------------------------------------------------------------
    def handle_payload(self, payload: bytes) -> None:
        """Handle one complete frame payload from the robot."""
        frame: dict[str, Any] | None = None
        try:
            if self.state is SessionState.AUTHENTICATED:
                self._gw.heard(self.robot_id)  # type: ignore[arg-type]
                frame = protocol.decode_frame(payload)
                if frame.get('op') == 'publish':
                    self._publish(frame, payload)
                else:
                    self._other_op(frame)
            elif self.state is SessionState.AWAITING_AUTH:
                self._first_frame(payload)
            elif self.state is SessionState.AWAITING_ADMISSION:
                raise ProtocolError(ErrorCode.UNAUTHENTICATED,
                                    'no frames while the admission request waits')
            elif self.state is SessionState.AUTHENTICATING:
                # A stock rosbridge client sends right after auth without waiting for its
                # answer: hold those frames until the token is checked.
                if len(self._pre_auth) >= self._gw.settings.pre_auth_frames:
                    raise ProtocolError(ErrorCode.UNAUTHENTICATED,
                                        'too many frames before authentication completed')
                self._pre_auth.append(payload)
        except Exception as exc:  # the one place exceptions become protocol errors
            if not isinstance(exc, ProtocolError):
                log.exception('robot %s: frame handling failed', self.robot_id)
            self.refuse(protocol_error_for(exc, protocol.frame_id(frame) if frame else None))

    def _first_frame(self, payload: bytes) -> None:
        # Whatever is wrong with the first frame (not JSON, an unknown op, any op but auth),
        # the connection closes with 4401: an unauthenticated peer gets one answer, not a
        # conversation until the auth timeout.
        frame: dict[str, Any] | None = None
        try:
            frame = protocol.decode_frame(payload)
            op = protocol.frame_op(frame)
        except ProtocolError as exc:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED,
                                f'the first frame must be auth ({exc.code.value}: '
                                f'{exc.message})', exc.frame_id) from None
        if op != 'auth':
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, 'the first frame must be auth',
                                protocol.frame_id(frame))
        self._start_auth(protocol.parse_auth(frame))

    def _publish(self, frame: dict[str, Any], payload: bytes) -> None:
        # Validated here, committed by the writer from the payload bytes: bytes cross to the
        # writer process far cheaper than the decoded message would.
        at_most_once = 'boot_id' not in frame and 'seq' not in frame and 'state_seq' not in frame
        if at_most_once:
            # A stock rosbridge publish (roslibpy's Topic.publish): the connection's own boot
            # id and the next seq make its idempotency key. Such a client keeps no outbox and
            # does not resend, so each frame is stored at most once (docs/robot-protocol.md).
            if self._stock_boot is None:
                self._stock_boot = protocol.connection_boot_id()
            self._stock_seq += 1
            frame['boot_id'], frame['seq'] = self._stock_boot, self._stock_seq
            payload = protocol.encode(frame)
        p = protocol.parse_publish(frame, self.protocol or protocol.PROTOCOL_V1)
        protocol.check_identity(p, self.robot_id,  # type: ignore[arg-type]
                                check_boot=not at_most_once)
        fid = protocol.publish_id(p.boot_id, p.seq, p.state_space)
        self._gw.check_robot_limits(self, fid)
        if not self._gw.submit(self.robot_id, payload):  # type: ignore[arg-type]
            raise ProtocolError(ErrorCode.SERVER_ERROR,
                                'the server is behind on commits; send it again later', fid)

    def _other_op(self, frame: dict[str, Any]) -> None:
        op = protocol.frame_op(frame)
        if op == 'service_response':
            response = protocol.parse_command_response(frame)
            if not self._gw.commands.resolve(self.robot_id, response):  # type: ignore[arg-type]
                log.info('robot %s answered unknown or expired command %s',
                         self.robot_id, response.id)
        elif op == 'action_result':
            self._gw.actions.result(parse_result(self.robot_id, frame))  # type: ignore[arg-type]
        elif op == 'subscribe':
            protocol.parse_subscribe(frame)  # acks reach every robot anyway
        elif op == 'auth':
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                f'already authenticated as {self.robot_id}', 'auth')
        # Other bookkeeping ops of rosbridge clients (advertise, ...) need no answer.

    def refused_oversize(self, size: int) -> None:
        """Answer a frame picows refused for its size (it sends close 1009 itself)."""
        self._fragments = None
        self._gw.count_refused(ErrorCode.OVERSIZE_FRAME)
        self.send(error_frame(ProtocolError(
            ErrorCode.OVERSIZE_FRAME, f'frame of {size} bytes exceeds {self._max_frame}')))

    def _oversize(self, size: int) -> None:
        self._fragments = None
        self.refuse(ProtocolError(ErrorCode.OVERSIZE_FRAME,
                                  f'frame of {size} bytes exceeds {self._max_frame}'))

    # -- authentication -----------------------------------------------------------------------
    def _start_auth(self, request: AuthRequest) -> None:
        protocol_version = protocol.negotiate(request.protocols)
        self.state = SessionState.AUTHENTICATING
        handler = self._authenticate if request.admission is None else self._request_admission
        self._auth_task = asyncio.get_running_loop().create_task(
            handler(request, protocol_version))

    async def _request_admission(self, request: AuthRequest, protocol_version: str) -> None:
        if self.admission_robot_id not in (None, request.robot_id):
            self.refuse(ProtocolError(ErrorCode.AUTH_FAILED,
                                      'the challenge was for another robot id', 'auth'))
            return
        self.admission_robot_id = request.robot_id
        try:
            nonce = await self._gw.admissions.handle(self, request)
        except Exception as exc:
            if self.state is SessionState.CLOSED:
                return
            if not isinstance(exc, ProtocolError | StoreError):
                log.exception('admission request of %s failed unexpectedly', request.robot_id)
            self.refuse(protocol_error_for(exc, 'auth'))
            return
        if self.state is SessionState.CLOSED:
            return
        if nonce is not None:  # challenged: the signed auth frame comes next
            self.admission_nonce, self.state = nonce, SessionState.AWAITING_AUTH
            held, self._pre_auth = self._pre_auth, []
            for payload in held:  # sent while the request was being looked at
                self.handle_payload(payload)
            return
        # Pending: no auth timeout while an admin decides, the admission timeout instead.
        self._admission, self._admission_protocol = request, protocol_version
        self.state = SessionState.AWAITING_ADMISSION
        self._pre_auth.clear()
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self._auth_timer = asyncio.get_running_loop().call_later(
            self._gw.settings.admission_timeout_s, self._on_auth_timeout)

    @property
    def is_closed(self) -> bool:
        """Tell whether the connection has closed."""
        return self.state is SessionState.CLOSED

    def admitted(self, enrolment: Enrolment) -> bool:
        """Send the accepted robot its token and authenticate it; False if it stopped waiting."""
        request, protocol_version = self._admission, self._admission_protocol
        if self.state is not SessionState.AWAITING_ADMISSION or request is None \
                or protocol_version is None:
            return False
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if not self.send(protocol.admission_status_frame(
                'admission_accepted', request.robot_id, token=enrolment.token)):
            return False
        self._become_authenticated(request, protocol_version, hash_token(enrolment.token))
        return True

    async def _authenticate(self, request: AuthRequest, protocol_version: str) -> None:
        try:
            credentials = await self._gw.verify_robot(request.robot_id, request.token)
            # A token bound to an admission key counts only with the key's proof: the nonce
            # is this connection's and used once (domain/key_binding.py).
            nonce, self.key_nonce = self.key_nonce, None
            proved = self.key_proved_by_request or check_key_proof(
                request.robot_id, credentials.key_fingerprint, request.key_proof, nonce)
            token_sha256 = credentials.token_sha256
        except Exception as exc:
            if self.state is SessionState.CLOSED:
                return
            self.state = SessionState.AWAITING_AUTH
            self._pre_auth.clear()
            if not isinstance(exc, ProtocolError | StoreError):
                log.exception('auth of %s failed unexpectedly', request.robot_id)
            self.refuse(protocol_error_for(exc, 'auth'))
            return
        if self.state is SessionState.CLOSED:
            return
        if not proved:  # challenged: the signed auth frame comes next, within the auth timeout
            self.key_nonce, self.state = new_nonce(), SessionState.AWAITING_AUTH
            self.send(protocol.key_challenge_frame(request.robot_id, self.key_nonce))
            held, self._pre_auth = self._pre_auth, []
            for payload in held:
                self.handle_payload(payload)
            return
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self._become_authenticated(request, protocol_version, token_sha256)

    def _become_authenticated(self, request: AuthRequest, protocol_version: str,
                              token_sha256: str) -> None:
        self.robot_id, self.protocol = request.robot_id, protocol_version
        self.token_sha256 = token_sha256  # re-checked when an admin changes the robot
        self.rate = self._gw.rate_bucket()
        self.agent_version = request.agent_version
        self.state = SessionState.AUTHENTICATED
        self._gw.attach(self)
        self.send(auth_ok_frame(request.robot_id, protocol_version))
        held, self._pre_auth = self._pre_auth, []
        for payload in held:
            self.handle_payload(payload)

    def _on_auth_timeout(self) -> None:
        if self.state in (SessionState.AWAITING_AUTH, SessionState.AUTHENTICATING):
            self.refuse(ProtocolError(ErrorCode.AUTH_TIMEOUT, 'no auth within '
                                      f'{self._gw.settings.auth_timeout_s} s'))
        elif self.state is SessionState.AWAITING_ADMISSION:
            self.refuse(ProtocolError(ErrorCode.AUTH_TIMEOUT, 'no admission decision within '
                                      f'{self._gw.settings.admission_timeout_s} s', 'auth'))

    # -- sending ------------------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Send a text frame; drop the robot as a slow consumer when its queue overflows."""
        transport = self.transport
        if transport is None or self.state is SessionState.CLOSED \
                or transport.is_close_frame_sent:
            return False
        transport.send(_TEXT, data)
        if self._write_buffer_size() > self._max_queue:
            self._gw.count_refused(ErrorCode.SLOW_CONSUMER)
            # It does not read, so a graceful close would wait forever: abort.
            self.close(protocol.CLOSE_CODES[ErrorCode.SLOW_CONSUMER], 'slow_consumer',
                       graceful=False)
            return False
        return True

    def refuse(self, error: ProtocolError) -> None:
        """Send the error frame for a refused frame; close when the error says so."""
        self._gw.count_refused(error.code)
        self.send(error_frame(error))
        if error.close_code is not None:
            self.close(error.close_code, error.code.value)

    def peer_address(self) -> str | None:
        """Return the robot's IP address as its socket sees it."""
        if self.transport is None:
            return None
        peer = self.transport.underlying_transport.get_extra_info('peername')
        return str(peer[0]) if peer else None

    def ping(self) -> None:
        """Send a WebSocket ping (presence checks an idle robot with it)."""
        if self.transport is not None and not self.transport.is_close_frame_sent:
            self.transport.send_ping()

    def close(self, code: int, reason: str, graceful: bool = True) -> None:
        """Close the connection with a WebSocket close code."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(code, reason.encode()[:120])  # type: ignore[arg-type]
        transport.disconnect(graceful=graceful)

