"""Robots: list with filters, detail, enrol (and re-enrol), revoke, rotate a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from lekiwi_fleet_server.api.admin import (
    enrol_robot,
    reenrol_robot,
    rotate_token,
    validate_robot_id,
)
from lekiwi_fleet_server.api.deps import AdminOperator, CurrentOperator, Services
from lekiwi_fleet_server.api.schemas import (
    EnrolRequest,
    EnrolResponse,
    RobotOut,
    TokenRotated,
)
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.store.interface import (
    RobotAlreadyEnrolled,
    RobotFilter,
    RobotRevoked,
    RobotStatus,
    RobotSummary,
    UnknownRobot,
)

router = APIRouter(prefix='/api/v1/robots', tags=['robots'])


def robot_out(services: FleetServices, robot: RobotSummary) -> RobotOut:
    """Return the API view of a robot row, with whether it is connected right now."""
    out = RobotOut.model_validate(robot)
    out.connected = services.gateway.is_connected(robot.robot_id)
    return out


def get_robot_or_404(services: FleetServices, robot_id: str) -> RobotSummary:
    """Return the robot's row or raise 404."""
    robot = services.store.get_robot(robot_id, now=services.now())
    if robot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {robot_id!r}')
    return robot


@router.get('', response_model=list[RobotOut])
def list_robots(services: Services, _operator: CurrentOperator,
                status_: Annotated[RobotStatus | None, Query(alias='status')] = None,
                teleop: bool | None = None,
                version: Annotated[str | None, Query(max_length=128)] = None,
                tag: Annotated[str | None, Query(max_length=64)] = None) -> list[RobotOut]:
    """List robots, filtered by status, teleop activity, software version and tag."""
    rows = services.store.list_robots(
        RobotFilter(status=status_, teleop_active=teleop, software_version=version, tag=tag),
        now=services.now())
    return [robot_out(services, r) for r in rows]


@router.get('/{robot_id}', response_model=RobotOut)
def get_robot(robot_id: str, services: Services, _operator: CurrentOperator) -> RobotOut:
    """Return one robot."""
    return robot_out(services, get_robot_or_404(services, robot_id))


@router.post('', response_model=EnrolResponse, status_code=status.HTTP_201_CREATED)
def enrol(body: EnrolRequest, services: Services, admin: AdminOperator) -> EnrolResponse:
    """Enrol a robot (or, with `reenrol`, a revoked one again); the token is shown only here."""
    try:
        if body.reenrol:
            enrolment = reenrol_robot(services.store, body.robot_id, body.tags, by=admin.name,
                                      now=services.now())
        else:
            enrolment = enrol_robot(services.store, body.robot_id, body.tags,
                                    now=services.now())
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except UnknownRobot:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {body.robot_id!r}') from None
    except RobotAlreadyEnrolled as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    services.gateway.store_changed('robot', body.robot_id)
    return EnrolResponse(robot=robot_out(services, enrolment.robot), token=enrolment.token)


@router.post('/{robot_id}/rotate-token', response_model=TokenRotated)
def rotate(robot_id: str, services: Services, admin: AdminOperator) -> TokenRotated:
    """Give a robot a new token (shown only here); its old token is refused at once."""
    try:
        token = rotate_token(services.store, robot_id, by=admin.name, now=services.now())
    except (ValueError, UnknownRobot):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {robot_id!r}') from None
    except RobotRevoked as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    # In this process at once; other servers hear of it through the store (store/changes.py).
    services.gateway.store_changed('robot', robot_id)
    return TokenRotated(robot_id=robot_id, token=token)


@router.post('/{robot_id}/revoke', status_code=status.HTTP_204_NO_CONTENT)
def revoke(robot_id: str, services: Services, _admin: AdminOperator) -> None:
    """Revoke a robot's token and drop its connection."""
    try:
        validate_robot_id(robot_id)
        services.store.revoke_robot(robot_id, now=services.now())
    except (ValueError, UnknownRobot):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {robot_id!r}') from None
    # The route runs in a worker thread; the gateway lives on the event loop.
    services.gateway.call_soon_threadsafe(
        services.gateway.disconnect, robot_id,
        ProtocolError(ErrorCode.AUTH_FAILED, 'robot token revoked'))
    services.gateway.store_changed('robot', robot_id)  # the writers forget what they held
