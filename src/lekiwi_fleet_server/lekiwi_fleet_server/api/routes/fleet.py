"""Fleet-wide summary."""

from __future__ import annotations

from fastapi import APIRouter

from lekiwi_fleet_server.api.deps import CurrentOperator, Services
from lekiwi_fleet_server.api.errors import AUTHENTICATED, error_responses
from lekiwi_fleet_server.api.schemas import FleetSummaryOut

router = APIRouter(prefix='/api/v1/fleet', tags=['fleet'])


@router.get('/summary', response_model=FleetSummaryOut,
            responses=error_responses(*AUTHENTICATED))
def fleet_summary(services: Services, _operator: CurrentOperator) -> FleetSummaryOut:
    """Count robots by status, teleop activity and software version."""
    out = FleetSummaryOut.model_validate(services.store.fleet_summary(now=services.now()))
    out.connected = services.gateway.connection_count
    return out
