"""Deployments: create (all robots, by tag or by list), list, show, pause/resume/abort/rollback."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.deps import CurrentOperator, OperatorRole, Services
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.deployments.engine import (
    DeploymentEngine,
    DeploymentRefused,
    DeploymentRequest,
    UnknownDeployment,
)
from lekiwi_fleet_server.domain.rollout import Rollout
from lekiwi_fleet_server.store.interface import RobotFilter

# Every error status the routes below can answer, each with the one error body.
DeploymentId = Annotated[str, Path(pattern=r'^[A-Za-z0-9._-]{1,64}$')]

router = APIRouter(prefix='/api/v1/deployments', tags=['deployments'],
                   responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))


class DeploymentCreate(BaseModel):
    release_version: str = Field(max_length=64)
    robots: list[str] | None = Field(None, description='Robot ids; or use tag, or all')
    tag: str | None = None
    all: StrictBool = False
    waves: list[float] = Field([0.05, 0.25, 0.5, 1.0], min_length=1, max_length=20)
    parallelism: int = Field(100, ge=1, le=10_000)
    success_gate: float = Field(0.8, ge=0, le=1)
    rollback_gate: float = Field(0.2, gt=0, le=1)
    deadline_s: float = Field(3600.0, gt=0)
    robot_timeout_s: float = Field(600.0, gt=0)
    health_timeout_s: float = Field(60.0, gt=0)
    force: StrictBool = Field(False, description='Deploy even to robots being teleoperated')


def _engine(services: FleetServices) -> DeploymentEngine:
    if services.deployments is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, 'no deployment engine')
    return services.deployments


def deployment_out(rollout: Rollout) -> dict[str, Any]:
    """Return the API view of a deployment: per-wave and per-robot state."""
    waves = []
    for index, names in enumerate(rollout.waves):
        states = [rollout.robots[r].state for r in names]
        waves.append({'wave': index + 1, 'robots': list(names),
                      'succeeded': states.count('succeeded'), 'failed': states.count('failed'),
                      'running': states.count('running'), 'pending': states.count('pending'),
                      'skipped': states.count('skipped')})
    robots = [{'robot_id': r.robot_id, 'wave': r.wave + 1 if r.wave >= 0 else None,
               'state': r.state, 'waiting': r.waiting or None, 'attempts': r.attempts,
               'message': r.message, 'previous_version': r.previous_version,
               'transferred_bytes': r.transferred_bytes, 'full_bytes': r.full_bytes,
               'duration_s': r.duration_s, 'rollback': r.revert or None,
               'deferrals': r.deferrals}
              for r in rollout.robots.values()]
    return {'deployment_id': rollout.deployment_id, 'release_version': rollout.release_version,
            'status': rollout.status, 'reason': rollout.reason,
            'planned_waves': [len(w) for w in rollout.wave_plan()] if rollout.created else [],
            'waves': waves, 'robots': robots,
            'created_by': rollout.created.created_by if rollout.created else '',
            'created_at': rollout.created.at if rollout.created else 0.0}


@router.post('', status_code=201)
async def create_deployment(body: DeploymentCreate, services: Services,
                            operator: OperatorRole) -> dict[str, Any]:
    """Start a staged rollout (409 when a robot is already in an active deployment)."""
    engine = _engine(services)
    if body.robots:
        robots = list(dict.fromkeys(body.robots))
    elif body.tag or body.all:
        found = await run_in_threadpool(services.store.list_robots,
                                        RobotFilter(tag=body.tag), now=services.now())
        robots = [r.robot_id for r in found if not r.revoked]
    else:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            'name robots, a tag, or all: true')
    known = {r.robot_id for r in await run_in_threadpool(
        services.store.list_robots, RobotFilter(), now=services.now())}
    unknown = [r for r in robots if r not in known]
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f'unknown robots: {", ".join(unknown[:10])}')
    request = DeploymentRequest(
        body.release_version, tuple(robots), tuple(body.waves), body.parallelism,
        body.success_gate, body.rollback_gate, body.deadline_s, body.robot_timeout_s,
        body.health_timeout_s, body.force)
    try:
        rollout = await engine.create(request, by=operator.name)
    except DeploymentRefused as exc:
        code = (status.HTTP_404_NOT_FOUND if 'no release' in str(exc)
                else status.HTTP_409_CONFLICT)
        raise HTTPException(code, str(exc)) from None
    return deployment_out(rollout)


@router.get('')
def list_deployments(services: Services, _who: CurrentOperator) -> list[dict[str, Any]]:
    """List deployments, newest first (the read model)."""
    return _engine(services).store.list()


@router.get('/{deployment_id}')
def show_deployment(deployment_id: DeploymentId, services: Services,
                    _who: CurrentOperator) -> dict[str, Any]:
    """Show a deployment with its waves and robots."""
    try:
        return deployment_out(_engine(services).get(deployment_id))
    except UnknownDeployment:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no deployment {deployment_id}') from None


@router.post('/{deployment_id}/{action}')
async def deployment_action(deployment_id: DeploymentId,
                            action: Literal['pause', 'resume', 'abort', 'rollback'],
                            services: Services, operator: OperatorRole) -> dict[str, Any]:
    """Pause, resume, abort or roll back a deployment (409 when its state does not allow it)."""
    try:
        rollout = await _engine(services).command(deployment_id, action, by=operator.name)
    except UnknownDeployment:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no deployment {deployment_id}') from None
    except DeploymentRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return deployment_out(rollout)
