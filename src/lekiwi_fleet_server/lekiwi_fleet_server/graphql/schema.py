"""The GraphQL schema: robots (filters, cursor pagination), robot, events, timeline, teleop
sessions, fleet summary, deployments and releases (deployments.py), the discovery inventory
(inventory.py); a subscription to robot changes over the dashboard's update bus.

Every root field passes the role check REST and the stream use (`role_allows`, viewer and up);
the context carries who asks (see router.py). Store calls block, so resolvers run them in the
thread pool.
"""

import base64
import binascii
from collections.abc import AsyncGenerator
from typing import Any

import orjson
import strawberry
from starlette.concurrency import run_in_threadpool
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, QueryDepthLimiter
from strawberry.scalars import JSON
from strawberry.types import Info

from lekiwi_fleet_server.api.admin import ROBOT_ID
from lekiwi_fleet_server.api.presence_view import LiveRow, live_rows
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.broker.presence import RegistryUnavailable
from lekiwi_fleet_server.graphql import types as t
from lekiwi_fleet_server.graphql.access import IsViewer, bounded, services_of
from lekiwi_fleet_server.graphql.cost import cost_limit_rule
from lekiwi_fleet_server.graphql.deployments import DeploymentQueries
from lekiwi_fleet_server.graphql.inventory import InventoryQueries
from lekiwi_fleet_server.store.interface import RobotFilter, RobotSummary

ROBOT_STATUSES = ('online', 'stale', 'offline', 'never_seen')


def _services(info: Info) -> FleetServices:
    return services_of(info)


def _size(value: int) -> int:
    return bounded(value)


@strawberry.type(description='A robot as the fleet read model shows it.')
class Robot:
    robot_id: str
    tags: list[str]
    status: str
    enrolled_at: float
    revoked: bool
    connected: bool
    last_heartbeat_at: float | None
    boot_id: str | None
    last_seq: float | None
    heartbeat_sequence: float | None
    state: str | None
    teleop_active: bool
    teleop_score: float
    agent_version: str | None
    software_version: str | None
    resources: JSON
    telemetry: JSON = strawberry.field(description='Reconstructed current telemetry')

    @strawberry.field(description="The robot's events after `after`, oldest first")
    async def events(self, info: Info, after: float = 0, first: int = 50) -> t.EventPage:
        page = await run_in_threadpool(_services(info).store.robot_timeline, self.robot_id,
                                       int(after), _size(first))
        return t.EventPage(events=[t.event(e) for e in page.events], next_after=page.next_after)

    @strawberry.field(description='Teleoperation sessions, newest first')
    async def teleop_sessions(self, info: Info, first: int = 20) -> list[t.TeleopSession]:
        rows = await run_in_threadpool(_services(info).store.teleop_sessions, self.robot_id,
                                       _size(first))
        return [t.teleop_session(s) for s in rows]

    @strawberry.field(description='Downsampled telemetry: the mean per bucket')
    async def telemetry_range(self, info: Info, start: float, end: float,
                              bucket_s: float = 60.0, fields: list[str] | None = None
                              ) -> list[t.TelemetryBucket]:
        if end <= start or bucket_s <= 0 or (end - start) / bucket_s > 10_000:
            raise ValueError('need start < end and at most 10000 buckets')
        rows = await run_in_threadpool(_services(info).store.telemetry_range, self.robot_id,
                                       start, end, bucket_s, fields)
        return [t.telemetry_bucket(p) for p in rows]


def robot(live: LiveRow) -> Robot:
    """Build the GraphQL robot of a read-model row with its live presence."""
    return Robot(**t.robot_fields(live.robot, live.connected))


async def _live(services: FleetServices, rows: list[RobotSummary]) -> list[LiveRow]:
    """Lay live presence over the rows (api/presence_view.py), as REST and the stream do."""
    try:
        return await live_rows(services, rows)
    except RegistryUnavailable as exc:
        raise PresenceUnavailable(f'presence registry: {exc}') from None


class PresenceUnavailable(Exception):
    """The presence registry cannot be reached: status cannot be told (REST answers 503)."""


@strawberry.input
class RobotFilterInput:
    status: str | None = None
    teleop_active: bool | None = None
    software_version: str | None = None
    tag: str | None = None
    search: str | None = strawberry.field(default=None,
                                          description='Part of the robot id')


@strawberry.type
class RobotEdge:
    cursor: str
    node: Robot


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class RobotConnection:
    edges: list[RobotEdge]
    page_info: PageInfo
    total_count: int


def encode_cursor(robot_id: str) -> str:
    """Return the opaque cursor after a robot (robots are ordered by id)."""
    return base64.urlsafe_b64encode(robot_id.encode()).decode()


def decode_cursor(cursor: str) -> str:
    """Return the robot id of a cursor; ValueError when it is not one."""
    try:
        robot_id = base64.b64decode(cursor.encode(), altchars=b'-_', validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError('invalid cursor') from None
    if not ROBOT_ID.fullmatch(robot_id):
        raise ValueError('invalid cursor')
    return robot_id


@strawberry.type
class RobotUpdate:
    kind: str = strawberry.field(description="'snapshot' first, then 'update'")
    at: float
    robots: list[JSON] = strawberry.field(
        description='Whole rows, or deltas: robot_id and the fields that changed')
    events: list[t.Event]


@strawberry.type
class Query(DeploymentQueries, InventoryQueries):
    @strawberry.field(permission_classes=[IsViewer])
    def me(self, info: Info) -> t.Me:
        operator = info.context['operator']
        return t.Me(name=operator.name, role=operator.role)

    @strawberry.field(permission_classes=[IsViewer],
                      description='Robots ordered by id, filtered; page with first/after')
    async def robots(self, info: Info, filter: RobotFilterInput | None = None,
                     first: int = 100, after: str | None = None) -> RobotConnection:
        services = _services(info)
        f = filter or RobotFilterInput()
        if f.status is not None and f.status not in ROBOT_STATUSES:
            raise ValueError(f'status must be one of {", ".join(ROBOT_STATUSES)}')
        # Status is live presence laid over the read model: filter after the overlay (REST too).
        found = await run_in_threadpool(
            services.store.list_robots,
            RobotFilter(teleop_active=f.teleop_active, software_version=f.software_version,
                        tag=f.tag), now=services.now())
        if f.search:
            found = [r for r in found if f.search.lower() in r.robot_id.lower()]
        rows = [r for r in await _live(services, found)
                if f.status is None or r.robot.status == f.status]
        rows.sort(key=lambda r: r.robot.robot_id)
        start_after = decode_cursor(after) if after else None
        if start_after is not None:
            rows_after = [r for r in rows if r.robot.robot_id > start_after]
        else:
            rows_after = rows
        page = rows_after[:_size(first)]
        return RobotConnection(
            edges=[RobotEdge(cursor=encode_cursor(r.robot.robot_id), node=robot(r))
                   for r in page],
            page_info=PageInfo(has_next_page=len(rows_after) > len(page),
                               end_cursor=(encode_cursor(page[-1].robot.robot_id)
                                           if page else None)),
            total_count=len(rows))

    @strawberry.field(permission_classes=[IsViewer])
    async def robot(self, info: Info, robot_id: str) -> Robot | None:
        services = _services(info)
        row = await run_in_threadpool(services.store.get_robot, robot_id, now=services.now())
        return robot((await _live(services, [row]))[0]) if row is not None else None

    @strawberry.field(permission_classes=[IsViewer], description="A robot's events, paged")
    async def events(self, info: Info, robot_id: str, after: float = 0,
                     first: int = 100) -> t.EventPage:
        page = await run_in_threadpool(_services(info).store.robot_timeline, robot_id,
                                       int(after), _size(first))
        return t.EventPage(events=[t.event(e) for e in page.events], next_after=page.next_after)

    @strawberry.field(permission_classes=[IsViewer], description='The fleet timeline, paged')
    async def timeline(self, info: Info, after: float = 0, first: int = 100,
                       robot_id: str | None = None) -> t.TimelinePage:
        page = await run_in_threadpool(_services(info).store.fleet_timeline, int(after),
                                       _size(first), robot_id)
        return t.TimelinePage(entries=[t.timeline_item(e) for e in page.entries],
                              next_after=page.next_after)

    @strawberry.field(permission_classes=[IsViewer])
    async def teleop_sessions(self, info: Info, robot_id: str,
                              first: int = 100) -> list[t.TeleopSession]:
        rows = await run_in_threadpool(_services(info).store.teleop_sessions, robot_id,
                                       _size(first))
        return [t.teleop_session(s) for s in rows]

    @strawberry.field(permission_classes=[IsViewer])
    async def fleet_summary(self, info: Info) -> t.FleetSummary:
        services = _services(info)
        summary = await run_in_threadpool(services.store.fleet_summary, now=services.now())
        return t.fleet_summary(summary)


def _event_of(raw: dict[str, Any]) -> t.Event:
    return t.Event(position=raw['position'], stream_id=raw['stream_id'],
                   version=raw['version'], type=raw['type'],
                   schema_version=raw['schema_version'], data=raw['data'],
                   metadata=raw['metadata'], recorded_at=raw['recorded_at'])


@strawberry.type
class Subscription:
    @strawberry.subscription(permission_classes=[IsViewer],
                             description='A snapshot of the robots, then their changes live '
                                         '(the dashboard stream; deltas as it sends them)')
    async def robot_changes(self, info: Info, robot_ids: list[str] | None = None
                            ) -> AsyncGenerator[RobotUpdate, None]:
        services = _services(info)
        wanted = set(robot_ids) if robot_ids else None
        # Subscribe before the snapshot: every update missed is in the snapshot already.
        subscription = services.bus.subscribe()
        try:
            rows = await run_in_threadpool(services.store.list_robots, RobotFilter(),
                                           now=services.now())
            rows = [r for r in rows if wanted is None or r.robot_id in wanted]
            yield RobotUpdate(kind='snapshot', at=services.now(), events=[], robots=[
                orjson.loads(orjson.dumps(r.robot)) for r in await _live(services, rows)])
            while (encoded := await subscription.get()) is not None:
                update = orjson.loads(encoded)
                if update.get('type') != 'update':
                    continue  # the bus also carries deployments' progress: not robot changes
                robots = [r for r in update['robots']
                          if wanted is None or r['robot_id'] in wanted]
                events = [e for e in update['events']
                          if wanted is None or e['metadata'].get('robot_id') in wanted]
                if robots or events:
                    yield RobotUpdate(kind='update', at=update['at'], robots=robots,
                                      events=[_event_of(e) for e in events])
        finally:
            subscription.close()


def build_schema(*, max_depth: int = 10, max_cost: int = 50_000) -> strawberry.Schema:
    """Return the schema with its depth, alias and cost limits."""
    return strawberry.Schema(
        query=Query, subscription=Subscription,
        extensions=[QueryDepthLimiter(max_depth=max_depth), MaxAliasesLimiter(max_alias_count=30),
                    AddValidationRules([cost_limit_rule(max_cost)])])
