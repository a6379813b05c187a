"""The one check of every robot-authenticated HTTP request: id, token, revocation, key proof.

The same rule as the WebSocket gateway's login (gateway/session.py): the token must be the
robot's and not revoked, and a robot whose token is bound to its admission key must also
prove the key (domain/request_proof.py). An operator's token never passes (it is no robot's
token), and a revoked robot is refused at its next request, since every request reads the
store. Release downloads, the long-polling transport and the key challenge use it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import Request

from lekiwi_fleet_server.api.admin import ROBOT_ID
from lekiwi_fleet_server.api.deps import Services, _bearer
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.request_proof import (
    HEADER,
    RequestProofRefused,
    check_request_proof,
)
from lekiwi_fleet_server.domain.tokens import token_matches
from lekiwi_fleet_server.store.interface import RobotCredentials

# How long a key challenge's nonce is good for: long enough for a release's downloads, short
# enough that a proof header seen in a log is soon worth nothing (domain/request_proof.py).
REQUEST_NONCE_TTL_S = 60.0


def _refused(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={'WWW-Authenticate': 'Bearer'})


def robot_by_token(services: FleetServices, robot_id: str | None,
                   token: str | None) -> RobotCredentials:
    """Return the credentials of the robot whose live token this is, or raise 401."""
    if not token or not robot_id:
        raise _refused('robot id and token required')
    if not ROBOT_ID.fullmatch(robot_id):
        raise _refused('unknown robot or wrong token')
    found = services.store.robot_credentials(robot_id)
    if found is None or found.revoked or not token_matches(token, found.token_sha256):
        raise _refused('unknown robot or wrong token')
    return found


def authenticate_robot(request: Request, services: FleetServices, robot_id: str | None,
                       token: str | None) -> RobotCredentials:
    """Check a robot request's token and, for a key-bound robot, its key proof; or raise 401.

    Blocks (it queries): call it from a worker thread.
    """
    found = robot_by_token(services, robot_id, token)
    try:
        check_request_proof(found.robot_id, found.key_fingerprint, request.headers.get(HEADER),
                            method=request.method, path=request.url.path,
                            now=services.now(), ttl_s=REQUEST_NONCE_TTL_S)
    except RequestProofRefused as exc:
        raise _refused(str(exc)) from None
    return found


def current_robot(request: Request, services: Services,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                  x_robot_id: Annotated[str | None, Header()] = None) -> str:
    """Authenticate a robot request (runs in the thread pool: it queries); return its id."""
    token = credentials.credentials if credentials is not None else None
    return authenticate_robot(request, services, x_robot_id, token).robot_id


CurrentRobot = Annotated[str, Depends(current_robot)]
