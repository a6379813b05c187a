"""Feature flags: list, create, change, step, delete, their events; migration plans; a robot's.

Viewers read; operators create, change, step and run migration plans; admins delete. Every
change is an event of the flag's stream with who made it (GET .../events).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.api.deps import (
    AdminOperator,
    CurrentOperator,
    OperatorRole,
    RobotId,
    Services,
)
from lekiwi_fleet_server.api.errors import error_responses
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.domain.flag_events import FlagState, flag_to_dict
from lekiwi_fleet_server.domain.flags import METRICS, FlagError
from lekiwi_fleet_server.flags.engine import FlagEngine, FlagRefused, UnknownFlag

FlagName = Annotated[str, Path(pattern=r'^[a-z][a-z0-9_.-]{0,63}$',
                               description='1-64 of [a-z0-9_.-], starting with a letter')]
Value = StrictBool | Annotated[str, Field(min_length=1, max_length=64)]
Short = Annotated[str, Field(min_length=1, max_length=64)]
Target = Annotated[str, Field(min_length=3, max_length=257,
                              description="'node:parameter', e.g. 'fleet_uplink:transport'")]

router = APIRouter(tags=['flags'],
                   responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))
PREFIX = '/api/v1/flags'


class RuleIn(BaseModel):
    model_config = ConfigDict(strict=True)  # no true for 1, no "5" for 5

    value: Value
    robots: list[Short] = Field([], max_length=10_000, description='Robot ids (empty: any)')
    tags: list[Short] = Field([], max_length=100, description='Any of these tags (empty: any)')
    staged: StrictBool = Field(False, description="Only the flag's current step percentage "
                                                  'of the robots this rule matches')


class GuardIn(BaseModel):
    model_config = ConfigDict(strict=True)  # no true for 1, no "5" for 5

    metric: Literal['error_rate', 'agent_memory_mb', 'agent_uss_mb',
                    'uplink_latency_p99_ms'] = Field(
        description=f'One of {", ".join(METRICS)} (error_rate as a share: 0.05 is 5 %)')
    above: float = Field(ge=0, le=1e9)
    action: Literal['off', 'step_back', 'set']
    value: Value | None = Field(None, description="The variant a 'set' guard gives the cohort")


class FlagBody(BaseModel):
    model_config = ConfigDict(strict=True)  # no true for 1, no "5" for 5

    kind: Literal['boolean', 'variant'] = 'boolean'
    default: Value = False
    variants: list[Short] = Field([], max_length=32)
    rules: list[RuleIn] = Field([], max_length=100)
    steps: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        [5.0, 25.0, 50.0, 100.0], min_length=1, max_length=20)
    guards: list[GuardIn] = Field([], max_length=20)
    parameters: list[Target] = Field([], max_length=20, description='Node parameters robots '
                                     'set to the value')


class FlagCreate(FlagBody):
    name: Annotated[str, Field(pattern=r'^[a-z][a-z0-9_.-]{0,63}$')]
    step: int = Field(0, ge=-1, le=19, description='Index into steps; -1: off')


class StepIn(BaseModel):
    model_config = ConfigDict(strict=True)  # no true for 1, no "5" for 5

    action: Literal['advance', 'back', 'set']
    percentage: float | None = Field(None, ge=0, le=100, description="For 'set': a step or 0")


class PlanIn(BaseModel):
    model_config = ConfigDict(strict=True)  # no true for 1, no "5" for 5

    soak_s: float = Field(600.0, ge=0, le=30 * 86400, description='Time each step must hold')
    min_applied: float = Field(0.8, ge=0, le=1,
                               description='Share of the cohort that must have applied it')


def _engine(services: FleetServices) -> FlagEngine:
    if services.flags is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, 'no flag engine')
    return services.flags  # type: ignore[no-any-return]


def flag_out(state: FlagState) -> dict[str, Any]:
    """Return the API view of a flag."""
    flag, plan = state.flag, state.plan
    return {**flag_to_dict(flag), 'step': flag.step, 'percentage': flag.percentage,
            'tripped': {str(k): v for k, v in flag.tripped.items()},
            'plan': None if plan is None else {
                'soak_s': plan.soak_s, 'min_applied': plan.min_applied, 'paused': plan.paused,
                'reason': plan.reason, 'step_since': state.step_since},
            'version': state.version, 'created_by': state.created_by,
            'updated_by': state.updated_by, 'updated_at': state.updated_at}


async def _run(call: Any) -> dict[str, Any]:
    try:
        return flag_out(await call)
    except UnknownFlag as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no flag {exc.args[0]}') from None
    except FlagRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except FlagError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get(PREFIX)
def list_flags(services: Services, _who: CurrentOperator) -> list[dict[str, Any]]:
    """List the flags, by name."""
    return [flag_out(s) for s in _engine(services).live()]


@router.post(PREFIX, status_code=201)
async def create_flag(body: FlagCreate, services: Services,
                      operator: OperatorRole) -> dict[str, Any]:
    """Create a flag (409 when one of the name exists)."""
    definition = body.model_dump(exclude={'step'})
    return await _run(_engine(services).create(definition, step=body.step, by=operator.name))


@router.get(PREFIX + '/{name}')
def show_flag(name: FlagName, services: Services, _who: CurrentOperator) -> dict[str, Any]:
    """Show a flag."""
    try:
        return flag_out(_engine(services).get(name))
    except UnknownFlag:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no flag {name}') from None


@router.put(PREFIX + '/{name}')
async def change_flag(name: FlagName, body: FlagBody, services: Services,
                      operator: OperatorRole) -> dict[str, Any]:
    """Replace a flag's definition (its step is kept; tripped 'set' guards are reset)."""
    return await _run(_engine(services).change(name, body.model_dump(), by=operator.name))


@router.delete(PREFIX + '/{name}')
async def delete_flag(name: FlagName, services: Services,
                      operator: AdminOperator) -> dict[str, Any]:
    """Delete a flag (admin): robots get their flags without it."""
    return await _run(_engine(services).delete(name, by=operator.name))


@router.post(PREFIX + '/{name}/step')
async def step_flag(name: FlagName, body: StepIn, services: Services,
                    operator: OperatorRole) -> dict[str, Any]:
    """Advance, step back or set a flag's step (409 past either end)."""
    return await _run(_engine(services).step(name, body.action, by=operator.name,
                                             to=body.percentage))


@router.get(PREFIX + '/{name}/events')
async def flag_events(name: FlagName, services: Services,
                      _who: CurrentOperator) -> list[dict[str, Any]]:
    """Return a flag's events, oldest first, each with who made it."""
    recorded = await run_in_threadpool(_engine(services).store.events, name)
    if not recorded:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no flag {name}')
    return [{'version': r.version, 'type': r.event.TYPE, 'actor': r.actor,
             'recorded_at': r.recorded_at, 'severity': r.event.severity,
             'summary': r.event.summary()} for r in recorded]


@router.post(PREFIX + '/{name}/plan')
async def set_plan(name: FlagName, body: PlanIn, services: Services,
                   operator: OperatorRole) -> dict[str, Any]:
    """Give a flag a migration plan: each step advances by itself once its gate held."""
    return await _run(_engine(services).plan(name, 'set', by=operator.name,
                                             soak_s=body.soak_s, min_applied=body.min_applied))


@router.post(PREFIX + '/{name}/plan/{action}')
async def plan_action(name: FlagName, action: Literal['pause', 'resume'], services: Services,
                      operator: OperatorRole) -> dict[str, Any]:
    """Pause or resume a flag's migration plan."""
    return await _run(_engine(services).plan(name, action, by=operator.name))


@router.get('/api/v1/robots/{robot_id}/flags')
async def robot_flags(robot_id: RobotId, services: Services,
                      _who: CurrentOperator) -> dict[str, Any]:
    """Return a robot's evaluated flags and what it last reported applying."""
    robot = await run_in_threadpool(services.store.get_robot, robot_id, now=services.now())
    if robot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'no robot {robot_id}')
    engine = _engine(services)
    payload = engine.payload_for(robot_id, tuple(robot.tags))
    last = engine.delivery(robot_id)
    return {'robot_id': robot_id, **payload,
            'delivered': None if last is None else {
                'revision': last.revision, 'accepted': last.accepted, 'applied': last.applied,
                'message': last.message, 'boot_id': last.boot_id, 'at': last.delivered_at,
                'current': last.revision == payload['revision']}}
