"""GraphQL object types and their conversion from the store's read-model rows."""

from typing import Any

import strawberry
from strawberry.scalars import JSON

from lekiwi_fleet_server.store.interface import (
    FleetSummary as SummaryRow,
)
from lekiwi_fleet_server.store.interface import (
    RecordedEvent,
    RobotSummary,
    TelemetryPoint,
    TimelineEntry,
)
from lekiwi_fleet_server.store.interface import (
    TeleopSession as SessionRow,
)


@strawberry.type(description='One event of a robot as the event log recorded it.')
class Event:
    position: float = strawberry.field(description='Global position (commit order)')
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: JSON
    metadata: JSON = strawberry.field(description='robot_id, boot_id, seq, causation')
    recorded_at: float


@strawberry.type
class EventPage:
    events: list[Event]
    next_after: float | None = strawberry.field(
        description='Pass as `after` for the next page; null at the end')


@strawberry.type
class TeleopSession:
    robot_id: str
    session_id: str
    started_at: float
    score: float | None
    ended_at: float | None
    duration_s: float | None
    end_reason: str | None


@strawberry.type
class TelemetryBucket:
    bucket_start: float
    values: JSON = strawberry.field(description='field -> mean over the bucket')


@strawberry.type
class TimelineItem:
    position: float
    robot_id: str
    type: str
    severity: str
    summary: str
    occurred_at: float


@strawberry.type
class TimelinePage:
    entries: list[TimelineItem]
    next_after: float | None


@strawberry.type
class FleetSummary:
    total: int
    by_status: JSON
    teleop_active: int
    by_software_version: JSON


@strawberry.type
class Me:
    name: str
    role: str


def event(e: RecordedEvent) -> Event:
    """Convert a recorded event."""
    return Event(position=e.position, stream_id=e.stream_id, version=e.version, type=e.type,
                 schema_version=e.schema_version, data=dict(e.data), metadata=dict(e.metadata),
                 recorded_at=e.recorded_at)


def teleop_session(s: SessionRow) -> TeleopSession:
    """Convert a teleop session row."""
    return TeleopSession(robot_id=s.robot_id, session_id=s.session_id, started_at=s.started_at,
                         score=s.score, ended_at=s.ended_at, duration_s=s.duration_s,
                         end_reason=s.end_reason)


def telemetry_bucket(p: TelemetryPoint) -> TelemetryBucket:
    """Convert a telemetry bucket."""
    return TelemetryBucket(bucket_start=p.bucket_start, values=dict(p.values))


def timeline_item(e: TimelineEntry) -> TimelineItem:
    """Convert a timeline entry."""
    return TimelineItem(position=e.position, robot_id=e.robot_id, type=e.type,
                        severity=e.severity, summary=e.summary, occurred_at=e.occurred_at)


def fleet_summary(s: SummaryRow) -> FleetSummary:
    """Convert the fleet summary."""
    return FleetSummary(total=s.total, by_status=dict(s.by_status),
                        teleop_active=s.teleop_active,
                        by_software_version=dict(s.by_software_version))


def robot_fields(r: RobotSummary, connected: bool) -> dict[str, Any]:
    """Return the plain fields of a robot row (the Robot type adds its nested lists)."""
    return dict(robot_id=r.robot_id, tags=list(r.tags), status=r.status,
                enrolled_at=r.enrolled_at, revoked=r.revoked, connected=connected,
                last_heartbeat_at=r.last_heartbeat_at, boot_id=r.boot_id,
                last_seq=r.last_seq, heartbeat_sequence=r.heartbeat_sequence, state=r.state,
                teleop_active=r.teleop_active, teleop_score=r.teleop_score,
                agent_version=r.agent_version, software_version=r.software_version,
                resources=dict(r.resources), telemetry=dict(r.telemetry))
