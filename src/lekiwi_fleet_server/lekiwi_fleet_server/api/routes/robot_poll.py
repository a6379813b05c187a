"""The uplink's HTTP long-polling transport: robots that cannot keep a WebSocket poll here.

Robot routes only: every request carries the robot's own token (`Authorization: Bearer
<robot token>`, `X-Robot-Id: <robot id>`), never an operator's, and the frames are the
WebSocket's, one per line (NDJSON), both ways (docs/robot-protocol.md, "HTTP long-polling
transport"). The work is the gateway's (gateway/http_uplink.py): these routes only carry it.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from lekiwi_fleet_server.api.admin import ROBOT_ID
from lekiwi_fleet_server.api.body_limit import MAX_BODY_BYTES
from lekiwi_fleet_server.api.deps import Services, _bearer
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.api.robot_auth import authenticate_robot
from lekiwi_fleet_server.gateway.http_uplink import NDJSON, HttpUplink, PollingClosed

MAX_POST_WAIT_S = 5.0  # a POST answers once its frames are committed, or after this at most

router = APIRouter(prefix='/api/v1/robot/uplink', tags=['robot uplink'],
                   responses=error_responses(400, 401, 409, 413, 422, 503))

_FRAMES_OUT: dict[int | str, dict[str, Any]] = {200: {
    'description': 'The frames the server sends the robot (status, acks after commit, '
                   'commands, deploy goals), one JSON object per line',
    'content': {NDJSON: {'schema': {'type': 'string'}}}}}
_FRAMES_IN: dict[str, Any] = {'requestBody': {
    'required': True,
    'description': 'Frames of robot protocol lekiwi-fleet, one JSON object per line (NDJSON)',
    'content': {'application/octet-stream': {'schema': {'type': 'string', 'format': 'binary'}}}}}


class RobotCredentials:
    """The robot id and token a request carries (checked here and by the gateway)."""

    def __init__(self, robot_id: str, token: str) -> None:
        self.robot_id, self.token = robot_id, token


def robot_credentials(
        request: Request, services: Services,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        x_robot_id: Annotated[str | None, Header(pattern=f'^{ROBOT_ID.pattern}$')] = None
) -> RobotCredentials:
    """Read the robot's id and token, or answer 401."""
    if credentials is None or not x_robot_id:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, 'robot id and token required',
                            headers={'WWW-Authenticate': 'Bearer'})
    # Every request, not only the session's first: the release routes' one check (token,
    # revocation, and a key-bound robot's key proof), so a token copied off a key-bound
    # robot neither opens a session nor posts to or polls the robot's own (api/robot_auth.py).
    authenticate_robot(request, services, x_robot_id, credentials.credentials)
    return RobotCredentials(x_robot_id, credentials.credentials)


Robot = Annotated[RobotCredentials, Depends(robot_credentials)]


def _polling(services: Services) -> HttpUplink:
    gateway = services.gateway
    if not gateway.started:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, 'the robot gateway is not up')
    return gateway.polling


def _frames(frames: list[bytes]) -> Response:
    return Response(b''.join(f + b'\n' for f in frames), media_type=NDJSON)


def _inflated(body: bytes, encoding: str | None) -> bytes:
    """Return a POST's body, gunzipped when it says `Content-Encoding: gzip` (bounded)."""
    if not encoding or encoding == 'identity':
        return body
    if encoding != 'gzip':
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f'Content-Encoding {encoding[:32]!r}: only gzip is taken')
    inflate = zlib.decompressobj(wbits=31)
    try:
        # A small body that inflates beyond the limit (a "zip bomb") is refused like a big one.
        out = inflate.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f'bad gzip body: {exc}') from None
    if len(out) > MAX_BODY_BYTES or inflate.unconsumed_tail:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f'the body inflates beyond {MAX_BODY_BYTES} bytes')
    return out


def _lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b'\n') if line.strip()]


@router.post('/session', response_class=Response, responses=_FRAMES_OUT, openapi_extra=_FRAMES_IN)
async def open_session(request: Request, robot: Robot, services: Services) -> Response:
    """Open a polling session with the robot's `auth` frame; answer the auth status frame.

    It replaces the robot's current session, WebSocket or polling, as a new WebSocket would.
    """
    polling = _polling(services)
    lines = _lines(await request.body())
    if len(lines) != 1:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            'the body must be one auth frame')
    peer = request.client.host if request.client else None
    try:
        _session, frames = await polling.open(robot.robot_id, robot.token, lines[0], peer)
    except PollingClosed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                            headers={'WWW-Authenticate': 'Bearer'}) from None
    return _frames(frames)


@router.post('/frames', response_class=Response, responses=_FRAMES_OUT, openapi_extra=_FRAMES_IN)
async def post_frames(request: Request, robot: Robot, services: Services) -> Response:
    """Take frames of the robot (publish, service_response, action frames); answer after commit.

    The answer holds the acks of the frames once committed (or what is there after
    5 s), the errors of refused ones and whatever else waits for the robot.
    """
    polling = _polling(services)
    body = _inflated(await request.body(), request.headers.get('content-encoding'))
    try:
        session = polling.find(robot.robot_id, robot.token)
    except PollingClosed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session.receive(_lines(body))
    return _frames(await session.collect_acks(MAX_POST_WAIT_S))


@router.get('/frames', response_class=Response, responses=_FRAMES_OUT)
async def poll_frames(robot: Robot, services: Services,
                      wait_s: Annotated[float, Query(ge=0.0, le=60.0)] = 20.0) -> Response:
    """Wait for frames to the robot (commands, deploy goals, late acks), then answer them.

    It waits at most `wait_s`; while it waits, the robot counts as heard (every half
    presence timeout), as a WebSocket's pongs keep it present.
    """
    polling = _polling(services)
    try:
        session = polling.find(robot.robot_id, robot.token)
    except PollingClosed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _frames(await session.long_poll(wait_s, polling.presence_s()))
