"""Robots: list with filters, detail, enrol (and re-enrol), revoke, rotate a token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import anyio.from_thread
from fastapi import APIRouter, HTTPException, Query, status

from lekiwi_fleet_server.api.admin import TAG, enrol_robot, reenrol_robot, rotate_token
from lekiwi_fleet_server.api.deps import AdminOperator, CurrentOperator, RobotId, Services
from lekiwi_fleet_server.api.errors import ADMIN, AUTHENTICATED, error_responses
from lekiwi_fleet_server.api.schemas import (
    EnrolRequest,
    EnrolResponse,
    RobotOut,
    TokenRotated,
    agent_figures,
)
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.broker.presence import Owner, RegistryUnavailable, live_status
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.store.interface import RobotFilter, RobotStatus, RobotSummary

router = APIRouter(prefix='/api/v1/robots', tags=['robots'])

# A software version as robots report it, without control characters (PostgreSQL refuses NUL).
VERSION_PATTERN = r'^[^\x00-\x1f\x7f]{1,128}$'


def robot_out(services: FleetServices, robot: RobotSummary,
              live: tuple[Mapping[str, Owner], Mapping[str, int]] | None = None) -> RobotOut:
    """Return the API view of a robot row, with live presence from the registry."""
    owners, tokens = live if live is not None else live_owners(services, [robot.robot_id])
    out = RobotOut.model_validate(robot)
    owner = owners.get(robot.robot_id)
    out.status = live_status(robot.status, owner, services.now(),  # type: ignore[assignment]
                             services.settings.stale_after_s, robot.robot_id in tokens)
    out.agent = agent_figures(robot.resources, robot.uplink_transport)
    out.connected = owner is not None  # to whichever gateway of the fleet holds it
    if owner is None and robot.robot_id not in tokens:  # never claimed: this gateway's view
        out.connected = services.gateway.is_connected(robot.robot_id)
    if services.gateway.is_connected(robot.robot_id):  # the uplink's transport in use here
        out.transport = services.gateway.polling.transport_of(robot.robot_id) or 'websocket'
    return out


def live_owners(services: FleetServices, robot_ids: Sequence[str]
                ) -> tuple[dict[str, Owner], dict[str, int]]:
    """Return the robots' current holders and newest tokens (routes run in threads)."""
    registry = services.gateway.ownership.registry

    async def both() -> tuple[dict[str, Owner], dict[str, int]]:
        return await registry.lookup(robot_ids), await registry.latest_tokens(robot_ids)

    try:
        return anyio.from_thread.run(both)
    except RegistryUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f'presence registry: {exc}') from None


def get_robot_or_404(services: FleetServices, robot_id: str) -> RobotSummary:
    """Return the robot's row or raise 404."""
    robot = services.store.get_robot(robot_id, now=services.now())
    if robot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {robot_id!r}')
    return robot


@router.get('', response_model=list[RobotOut],
            responses=error_responses(*AUTHENTICATED, 422))
def list_robots(services: Services, _operator: CurrentOperator,
                status_: Annotated[RobotStatus | None, Query(alias='status')] = None,
                teleop: bool | None = None,
                version: Annotated[str | None, Query(pattern=VERSION_PATTERN)] = None,
                tag: Annotated[str | None, Query(pattern=f'^{TAG.pattern}$',
                                                 description='A tag of the robot')] = None
                ) -> list[RobotOut]:
    """List robots, filtered by status, teleop activity, software version and tag."""
    # Status is live presence laid over the read model: filter after the overlay.
    rows = services.store.list_robots(
        RobotFilter(status=None, teleop_active=teleop, software_version=version, tag=tag),
        now=services.now())
    live = live_owners(services, [r.robot_id for r in rows])
    out = [robot_out(services, r, live) for r in rows]
    return [r for r in out if status_ is None or r.status == status_]


@router.get('/{robot_id}', response_model=RobotOut,
            responses=error_responses(*AUTHENTICATED, 404, 422))
def get_robot(robot_id: RobotId, services: Services, _operator: CurrentOperator) -> RobotOut:
    """Return one robot."""
    return robot_out(services, get_robot_or_404(services, robot_id))


@router.post('', response_model=EnrolResponse, status_code=status.HTTP_201_CREATED,
             responses=error_responses(400, *ADMIN, 404, 409, 413, 422))
def enrol(body: EnrolRequest, services: Services, admin: AdminOperator) -> EnrolResponse:
    """Enrol a robot (or, with `reenrol`, a revoked one again); the token is shown only here."""
    if body.reenrol:  # UnknownRobot: 404; not revoked: 409
        enrolment = reenrol_robot(services.store, body.robot_id, body.tags, by=admin.name,
                                  now=services.now())
    else:  # enrolled or revoked already: 409
        enrolment = enrol_robot(services.store, body.robot_id, body.tags, now=services.now(),
                                actor=admin.name)
    services.gateway.store_changed('robot', body.robot_id)
    return EnrolResponse(robot=robot_out(services, enrolment.robot), token=enrolment.token)


@router.post('/{robot_id}/rotate-token', response_model=TokenRotated,
             responses=error_responses(*ADMIN, 404, 409, 422))
def rotate(robot_id: RobotId, services: Services, admin: AdminOperator) -> TokenRotated:
    """Give a robot a new token (shown only here); its old token is refused at once."""
    # UnknownRobot: 404; RobotRevoked: 409 (re-enrol it instead).
    token = rotate_token(services.store, robot_id, by=admin.name, now=services.now())
    # In this process at once; other servers hear of it through the store (store/changes.py).
    services.gateway.store_changed('robot', robot_id)
    return TokenRotated(robot_id=robot_id, token=token)


@router.post('/{robot_id}/revoke', status_code=status.HTTP_204_NO_CONTENT,
             responses=error_responses(*ADMIN, 404, 409, 422))
def revoke(robot_id: RobotId, services: Services, admin: AdminOperator) -> None:
    """Revoke a robot's token and drop its connection."""
    services.store.revoke_robot(robot_id, now=services.now(), actor=admin.name)  # 404: unknown
    # The route runs in a worker thread; the gateway lives on the event loop.
    services.gateway.call_soon_threadsafe(
        services.gateway.disconnect, robot_id,
        ProtocolError(ErrorCode.AUTH_FAILED, 'robot token revoked'))
    services.gateway.store_changed('robot', robot_id)  # the writers forget what they held
