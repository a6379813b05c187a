"""GraphQL deployments and releases over what REST reads: the deployments' read model (list),
the rollout engine's fold of one deployment (waves, robots), the release store.

A deployment's waves and robots come from `deployment_out`, REST's own view, read once per
deployment and only when a query asks for them.
"""

from typing import Any

import strawberry
from starlette.concurrency import run_in_threadpool
from strawberry.types import Info

from lekiwi_fleet_server.api.routes.deployments import deployment_out
from lekiwi_fleet_server.deployments.engine import DeploymentEngine, UnknownDeployment
from lekiwi_fleet_server.graphql.access import IsViewer, bounded, services_of
from lekiwi_fleet_server.store.releases import ReleaseInfo, ReleaseStore


def _engine(info: Info) -> DeploymentEngine:
    engine = services_of(info).deployments
    if engine is None:
        raise ValueError('deployments are unavailable: the server has no release store')
    return engine


def _releases(info: Info) -> ReleaseStore:
    releases = services_of(info).releases
    if releases is None:
        raise ValueError('releases are unavailable: the server has no release store')
    return releases


@strawberry.type(description='A stored release robots can install.')
class Release:
    version: str
    manifest_sha256: str
    files: int
    total_bytes: int
    created_by: str
    created_at: float


def release_of(info: ReleaseInfo) -> Release:
    """Convert a release store row."""
    return Release(version=info.version, manifest_sha256=info.manifest_sha256, files=info.files,
                   total_bytes=info.total_bytes, created_by=info.created_by,
                   created_at=info.created_at)


@strawberry.type(description='One wave of a deployment and its robots per state.')
class DeploymentWave:
    wave: int = strawberry.field(description='1 for the first wave')
    robots: list[str]
    succeeded: int
    failed: int
    running: int
    pending: int
    skipped: int


@strawberry.type(description='Where one robot is in a deployment.')
class DeploymentRobot:
    robot_id: str
    wave: int | None = strawberry.field(description='Null until its wave starts')
    state: str = strawberry.field(description='pending, running, succeeded, failed, skipped')
    waiting: str | None = strawberry.field(description='teleop, offline or busy while pending')
    attempts: int
    message: str
    previous_version: str
    transferred_bytes: int
    full_bytes: int
    duration_s: float
    rollback: str | None = strawberry.field(description='running, reverted or revert_failed')
    deferrals: int


@strawberry.type(description='A staged rollout of a release to robots.')
class Deployment:
    deployment_id: str
    release_version: str
    status: str = strawberry.field(
        description='running, paused, rolling_back, aborting, completed, rolled_back, aborted')
    robot_ids: list[str] = strawberry.field(description='Every robot it targets')
    created_at: float
    updated_at: float | None
    detail: strawberry.Private[dict[str, Any] | None] = None

    async def _detail(self, info: Info) -> dict[str, Any]:
        if self.detail is None:
            rollout = await run_in_threadpool(_engine(info).get, self.deployment_id)
            self.detail = deployment_out(rollout)
        return self.detail

    @strawberry.field(description='Why it paused, rolled back or aborted')
    async def reason(self, info: Info) -> str:
        return str((await self._detail(info))['reason'])

    @strawberry.field
    async def created_by(self, info: Info) -> str:
        return str((await self._detail(info))['created_by'])

    @strawberry.field(description='Robots per wave as planned')
    async def planned_waves(self, info: Info) -> list[int]:
        return list((await self._detail(info))['planned_waves'])

    @strawberry.field(description='The waves started so far')
    async def waves(self, info: Info) -> list[DeploymentWave]:
        return [DeploymentWave(**w) for w in (await self._detail(info))['waves']]

    @strawberry.field(description='Its robots and where each is')
    async def robots(self, info: Info, first: int = 1000) -> list[DeploymentRobot]:
        rows = (await self._detail(info))['robots'][:bounded(first)]
        return [DeploymentRobot(**{**r, 'previous_version': r['previous_version'] or '',
                                   'message': r['message'] or ''}) for r in rows]


def _from_row(row: dict[str, Any]) -> Deployment:
    return Deployment(deployment_id=row['deployment_id'], release_version=row['release_version'],
                      status=row['status'], robot_ids=list(row['robots']),
                      created_at=row['created_at'], updated_at=row.get('updated_at'))


def _from_detail(detail: dict[str, Any], updated_at: float | None) -> Deployment:
    return Deployment(deployment_id=detail['deployment_id'],
                      release_version=detail['release_version'], status=detail['status'],
                      robot_ids=[r['robot_id'] for r in detail['robots']],
                      created_at=detail['created_at'], updated_at=updated_at, detail=detail)


@strawberry.type
class DeploymentQueries:
    @strawberry.field(permission_classes=[IsViewer],
                      description='Deployments, newest first; by status or a robot they target')
    async def deployments(self, info: Info, first: int = 20, status: str | None = None,
                          robot_id: str | None = None) -> list[Deployment]:
        engine = _engine(info)
        size = bounded(first)
        filtered = status is not None or robot_id is not None
        rows: list[dict[str, Any]] = await run_in_threadpool(engine.store.list,
                                                             1000 if filtered else size)
        rows = [r for r in rows if (status is None or r['status'] == status)
                and (robot_id is None or robot_id in r['robots'])]
        return [_from_row(r) for r in rows[:size]]

    @strawberry.field(permission_classes=[IsViewer], description='One deployment, or null')
    async def deployment(self, info: Info, deployment_id: str) -> Deployment | None:
        engine = _engine(info)
        try:
            rollout = await run_in_threadpool(engine.get, deployment_id)
        except UnknownDeployment:
            return None
        return _from_detail(deployment_out(rollout), None)

    @strawberry.field(permission_classes=[IsViewer], description='Stored releases, oldest first')
    async def releases(self, info: Info, first: int = 100) -> list[Release]:
        rows = await run_in_threadpool(_releases(info).list)
        return [release_of(r) for r in rows[:bounded(first)]]

    @strawberry.field(permission_classes=[IsViewer], description='One release, or null')
    async def release(self, info: Info, version: str) -> Release | None:
        found = await run_in_threadpool(_releases(info).get, version)
        return release_of(found) if found is not None else None
