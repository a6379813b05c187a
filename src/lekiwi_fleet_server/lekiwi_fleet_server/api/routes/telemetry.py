"""Telemetry history of a robot, downsampled into time buckets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from lekiwi_fleet_server.api.deps import CurrentOperator, RobotId, Services
from lekiwi_fleet_server.api.errors import AUTHENTICATED, error_responses
from lekiwi_fleet_server.api.routes.robots import get_robot_or_404
from lekiwi_fleet_server.api.schemas import TelemetryPointOut

router = APIRouter(prefix='/api/v1/robots', tags=['telemetry'])

MAX_BUCKETS = 10_000
# Unix seconds up to the year 5138: times in milliseconds stay far inside a 64-bit integer
# (the stored column), and any time a robot can send is inside the range.
MAX_TIME_S = 1e11


@router.get('/{robot_id}/telemetry', response_model=list[TelemetryPointOut],
            responses=error_responses(*AUTHENTICATED, 404, 422))
def telemetry_range(
        robot_id: RobotId, services: Services, _operator: CurrentOperator,
        start: Annotated[float, Query(ge=0, le=MAX_TIME_S, allow_inf_nan=False,
                                      description='Unix seconds, inclusive')],
        end: Annotated[float, Query(ge=0, le=MAX_TIME_S, allow_inf_nan=False,
                                    description='Unix seconds, exclusive')],
        bucket_s: Annotated[float, Query(gt=0, le=MAX_TIME_S, allow_inf_nan=False,
                                         description='Bucket width in seconds')] = 60.0,
        fields: Annotated[str | None, Query(pattern=r'^[A-Za-z0-9_,]{0,2048}$',
                                            description='Comma-separated field names')] = None,
) -> list[TelemetryPointOut]:
    """Return the mean of each field per bucket between start and end."""
    if end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'end must be after start')
    if (end - start) / bucket_s > MAX_BUCKETS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f'at most {MAX_BUCKETS} buckets: widen bucket_s')
    get_robot_or_404(services, robot_id)
    names = [f for f in fields.split(',') if f] if fields else None
    points = services.store.telemetry_range(robot_id, start, end, bucket_s, names)
    return [TelemetryPointOut.model_validate(p) for p in points]
