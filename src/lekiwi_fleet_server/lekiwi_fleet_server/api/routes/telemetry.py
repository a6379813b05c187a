"""Telemetry history of a robot, downsampled into time buckets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from lekiwi_fleet_server.api.deps import CurrentOperator, Services
from lekiwi_fleet_server.api.routes.robots import get_robot_or_404
from lekiwi_fleet_server.api.schemas import TelemetryPointOut

router = APIRouter(prefix='/api/v1/robots', tags=['telemetry'])

MAX_BUCKETS = 10_000


@router.get('/{robot_id}/telemetry', response_model=list[TelemetryPointOut])
def telemetry_range(
        robot_id: str, services: Services, _operator: CurrentOperator,
        start: Annotated[float, Query(description='Unix seconds, inclusive')],
        end: Annotated[float, Query(description='Unix seconds, exclusive')],
        bucket_s: Annotated[float, Query(gt=0, description='Bucket width in seconds')] = 60.0,
        fields: Annotated[str | None, Query(max_length=2048,
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
