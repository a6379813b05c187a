"""Inventory: every robot found, however found; scans on demand; enrol from the inventory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.admin import enrol_robot
from lekiwi_fleet_server.api.deps import AdminOperator, CurrentOperator, RobotId, Services
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.discovery.inventory import Source
from lekiwi_fleet_server.discovery.service import DiscoveryService, presence_view
from lekiwi_fleet_server.discovery.targets import TargetError
from lekiwi_fleet_server.store.interface import RobotAlreadyEnrolled

# Every error status the routes below can answer, each with the one error body.
router = APIRouter(prefix='/api/v1/inventory', tags=['inventory'],
                   responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))

PresenceFilter = Literal['online', 'stale', 'offline', 'flapping', 'unknown']


class ScanRequest(BaseModel):
    targets: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=256,
        description='Addresses and CIDR ranges; empty: the configured ones')


class InventoryEnrolRequest(BaseModel):
    tags: list[str] = Field(default_factory=list, max_length=32)


def discovery_of(services: FleetServices) -> DiscoveryService:
    """Return the discovery service (always built by the lifespan)."""
    assert services.discovery is not None
    return services.discovery  # type: ignore[no-any-return]


@router.get('')
async def list_inventory(services: Services, _operator: CurrentOperator,
                         source: Source | None = None, enrolled: bool | None = None,
                         state: Annotated[PresenceFilter | None, Query()] = None
                         ) -> list[dict[str, Any]]:
    """List every robot found, filtered by a source that found it, enrolment, presence."""
    return inventory_views(discovery_of(services), source, enrolled, state)


def inventory_views(discovery: DiscoveryService, source: Source | None, enrolled: bool | None,
                    state: str | None) -> list[dict[str, Any]]:
    """Return the API views of the inventory's entries, filtered (REST and GraphQL)."""
    out = []
    for entry in discovery.inventory.entries(source=source, enrolled=enrolled):
        view = discovery.entry_view(entry)
        entry_state = view['presence']['state'] if view['presence'] else 'unknown'
        if state is None or entry_state == state:
            out.append(view)
    return out


@router.get('/presence')
async def presence_changes(services: Services, _operator: CurrentOperator,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100
                           ) -> list[dict[str, Any]]:
    """Return the newest presence changes (flaps folded), oldest first."""
    return [presence_view(p) for p in discovery_of(services).presence_log[-limit:]]


@router.post('/scans', status_code=status.HTTP_202_ACCEPTED)
async def start_scan(body: ScanRequest, services: Services, _admin: AdminOperator
                     ) -> dict[str, Any]:
    """Start a scan of hosts and CIDR ranges; poll it by id for progress and result."""
    try:
        job = discovery_of(services).start_scan(body.targets)
    except TargetError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return job.as_dict()


@router.get('/scans')
async def list_scans(services: Services, _operator: CurrentOperator) -> list[dict[str, Any]]:
    """List the recent scans, oldest first."""
    return [job.as_dict() for job in discovery_of(services).scans()]


@router.get('/scans/{scan_id}')
async def get_scan(scan_id: Annotated[str, Path(pattern=r'^[0-9a-f]{1,64}$')],
                   services: Services, _operator: CurrentOperator
                   ) -> dict[str, Any]:
    """Return one scan's progress and result."""
    job = discovery_of(services).get_scan(scan_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no scan {scan_id!r}')
    return job.as_dict()


@router.post('/{robot_id}/enrol', status_code=status.HTTP_201_CREATED)
async def enrol_from_inventory(robot_id: RobotId, body: InventoryEnrolRequest, services: Services,
                               _admin: AdminOperator) -> dict[str, Any]:
    """Enrol a robot the inventory lists as discovered; the token is shown once."""
    discovery = discovery_of(services)
    entry = discovery.inventory.get(robot_id)
    if entry is None or entry.robot_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {robot_id!r} in the inventory')
    try:
        enrolment = await run_in_threadpool(enrol_robot, services.store, robot_id, body.tags,
                                            now=services.now())
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except RobotAlreadyEnrolled:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f'robot {robot_id!r} is enrolled already') from None
    await discovery.refresh_enrolled()
    discovery.refresh()
    return {'robot_id': robot_id, 'token': enrolment.token,
            'entry': discovery.entry_view(discovery.inventory.get(robot_id) or entry)}
