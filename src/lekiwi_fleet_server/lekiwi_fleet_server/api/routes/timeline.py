"""A robot's event timeline, paged by global position."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lekiwi_fleet_server.api.admin import ROBOT_ID
from lekiwi_fleet_server.api.deps import CurrentOperator, RobotId, Services
from lekiwi_fleet_server.api.errors import AUTHENTICATED, error_responses
from lekiwi_fleet_server.api.routes.robots import get_robot_or_404
from lekiwi_fleet_server.api.schemas import (
    EventOut,
    EventPageOut,
    TeleopSessionOut,
    TimelineEntryOut,
    TimelinePageOut,
)

router = APIRouter(prefix='/api/v1', tags=['timeline'])

# Positions are 64-bit integers in the store: a larger `after` could only overflow there.
MAX_POSITION = 2**63 - 1


@router.get('/robots/{robot_id}/events', response_model=EventPageOut,
            responses=error_responses(*AUTHENTICATED, 404, 422))
def robot_events(robot_id: RobotId, services: Services, _operator: CurrentOperator,
                 after: Annotated[int, Query(ge=0, le=MAX_POSITION,
                                             description='Position to start after')] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> EventPageOut:
    """Return the robot's events after `after`, oldest first; follow `next_after`."""
    get_robot_or_404(services, robot_id)
    page = services.store.robot_timeline(robot_id, after, limit)
    return EventPageOut(events=[EventOut.model_validate(e) for e in page.events],
                        next_after=page.next_after)


@router.get('/timeline', response_model=TimelinePageOut,
            responses=error_responses(*AUTHENTICATED, 422))
def fleet_timeline(services: Services, _operator: CurrentOperator,
                   after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   robot_id: Annotated[str | None,
                                       Query(pattern=f'^{ROBOT_ID.pattern}$')] = None
                   ) -> TimelinePageOut:
    """Return the fleet event timeline (of one robot with `robot_id`), oldest first."""
    page = services.store.fleet_timeline(after, limit, robot_id)
    return TimelinePageOut(entries=[TimelineEntryOut.model_validate(e) for e in page.entries],
                           next_after=page.next_after)


@router.get('/robots/{robot_id}/teleop-sessions', response_model=list[TeleopSessionOut],
            responses=error_responses(*AUTHENTICATED, 404, 422))
def teleop_sessions(robot_id: RobotId, services: Services, _operator: CurrentOperator,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100
                    ) -> list[TeleopSessionOut]:
    """Return the robot's teleoperation sessions, newest first."""
    get_robot_or_404(services, robot_id)
    return [TeleopSessionOut.model_validate(s)
            for s in services.store.teleop_sessions(robot_id, limit)]
