"""A robot's event timeline, paged by global position."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lekiwi_fleet_server.api.deps import CurrentOperator, Services
from lekiwi_fleet_server.api.routes.robots import get_robot_or_404
from lekiwi_fleet_server.api.schemas import EventOut, EventPageOut

router = APIRouter(prefix='/api/v1/robots', tags=['timeline'])


@router.get('/{robot_id}/events', response_model=EventPageOut)
def robot_events(robot_id: str, services: Services, _operator: CurrentOperator,
                 after: Annotated[int, Query(ge=0, description='Position to start after')] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> EventPageOut:
    """Return the robot's events after `after`, oldest first; follow `next_after`."""
    get_robot_or_404(services, robot_id)
    page = services.store.robot_timeline(robot_id, after, limit)
    return EventPageOut(events=[EventOut.model_validate(e) for e in page.events],
                        next_after=page.next_after)
