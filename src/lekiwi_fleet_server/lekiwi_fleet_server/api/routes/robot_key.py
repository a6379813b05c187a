"""The key challenge of a key-bound robot's HTTP requests (domain/request_proof.py).

`GET /api/v1/robot/key-challenge` with the robot's own token answers a nonce its key signs
for each request (header `X-Robot-Key-Proof`). Like the WebSocket login, nothing is said
about keys to a caller without a good token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from lekiwi_fleet_server.api.deps import Services, _bearer
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.api.robot_auth import REQUEST_NONCE_TTL_S, robot_by_token
from lekiwi_fleet_server.domain.request_proof import HEADER, new_request_nonce

router = APIRouter(prefix='/api/v1/robot', tags=['robot uplink'],
                   responses=error_responses(401, 422, 503))


class KeyChallengeOut(BaseModel):
    robot_id: str
    key_bound: bool  # False: the robot's token alone opens its routes, no proof needed
    nonce: str
    expires_in_s: float
    header: str = HEADER


@router.get('/key-challenge', response_model=KeyChallengeOut)
def key_challenge(request: Request, services: Services,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                  x_robot_id: Annotated[str | None, Header()] = None) -> KeyChallengeOut:
    """Answer a nonce for the robot's key proofs (robots; needs the robot's token)."""
    found = robot_by_token(services, x_robot_id,
                           credentials.credentials if credentials is not None else None)
    return KeyChallengeOut(robot_id=found.robot_id, key_bound=found.key_fingerprint is not None,
                           nonce=new_request_nonce(services.now(), REQUEST_NONCE_TTL_S),
                           expires_in_s=REQUEST_NONCE_TTL_S)
