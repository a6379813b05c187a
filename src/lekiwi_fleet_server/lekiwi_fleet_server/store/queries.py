"""Read queries of the API: robots (status derived at query time), summary, timelines, sessions.

`summary_from_state` builds the same RobotSummary from the writer's memory that `summary_from_row`
builds from the read model, so a batch can report changed robots without reading them back; a
test holds the two equal.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.schema import (
    credentials,
    events,
    operators,
    robot_current,
    robot_tags,
    robots,
    teleop_sessions,
    timeline,
)
from lekiwi_fleet_server.domain.key_binding import KEY_TAG_PREFIX, bound_fingerprint
from lekiwi_fleet_server.domain.robot_state import RobotState, robot_status
from lekiwi_fleet_server.domain.telemetry_codec import TelemetryState
from lekiwi_fleet_server.store.event_store import stream_id
from lekiwi_fleet_server.store.interface import (
    EventPage,
    FleetSummary,
    InvalidQuery,
    Operator,
    RecordedEvent,
    RobotCredentials,
    RobotFilter,
    RobotSummary,
    TeleopSession,
    TimelineEntry,
    TimelinePage,
)

STATUSES = ('online', 'stale', 'offline', 'never_seen')
MAX_PAGE = 1000


def status_expr(now: float, stale_after_s: float) -> sa.ColumnElement[str]:
    """Return robot_status() as SQL over robots joined with robot_current."""
    hb, seen = robot_current.c.last_heartbeat_at, robots.c.presence_at
    last = sa.case((hb.is_(None), seen), (seen.is_(None), hb), (hb > seen, hb), else_=seen)
    return sa.case(
        (sa.and_(robots.c.online.is_(False), seen.is_(None), hb.is_(None)), 'never_seen'),
        (robots.c.online.is_(False), 'offline'),
        (sa.or_(last.is_(None), last < now - stale_after_s), 'stale'),
        else_='online')


def _teleop_active() -> sa.ColumnElement[bool]:
    # The newest teleop status counts only while the robot is online: an offline robot's last
    # report says nothing about now.
    return sa.and_(robots.c.online.is_(True), robot_current.c.teleop_active.is_(True))


_JOINED = robots.outerjoin(robot_current, robot_current.c.robot_id == robots.c.robot_id)


def _summary_query(now: float, stale_after_s: float) -> sa.Select[Any]:
    return sa.select(
        robots, robot_current.c.last_heartbeat_at, robot_current.c.boot_id,
        robot_current.c.last_seq, robot_current.c.heartbeat_sequence, robot_current.c.state,
        robot_current.c.teleop_active, robot_current.c.teleop_score, robot_current.c.resources,
        robot_current.c.telemetry, robot_current.c.uplink_transport,
        status_expr(now, stale_after_s).label('status'),
    ).select_from(_JOINED)


def summary_from_row(row: Any) -> RobotSummary:
    """Return the RobotSummary of a `_summary_query` row."""
    return RobotSummary(
        robot_id=row.robot_id, tags=tuple(row.tags or ()), status=row.status,
        enrolled_at=row.enrolled_at, revoked=row.revoked,
        last_heartbeat_at=row.last_heartbeat_at, boot_id=row.boot_id, last_seq=row.last_seq,
        heartbeat_sequence=row.heartbeat_sequence, state=row.state,
        teleop_active=bool(row.teleop_active) and row.online, teleop_score=row.teleop_score or 0.0,
        agent_version=row.agent_version, software_version=row.software_version,
        resources=row.resources or {},
        telemetry=dict(TelemetryState.from_json(row.telemetry).values),
        uplink_transport=row.uplink_transport,
    )


def summary_from_state(state: RobotState, *, now: float, stale_after_s: float) -> RobotSummary:
    """Return the RobotSummary of a robot's in-memory state."""
    agg, cur = state.aggregate, state.current
    return RobotSummary(
        robot_id=agg.robot_id, tags=agg.tags,
        status=robot_status(agg.online, agg.presence_at, cur.last_heartbeat_at, now=now,
                            stale_after_s=stale_after_s),  # type: ignore[arg-type]
        enrolled_at=agg.enrolled_at or 0.0, revoked=agg.revoked,
        last_heartbeat_at=cur.last_heartbeat_at, boot_id=cur.boot_id, last_seq=cur.last_seq,
        heartbeat_sequence=cur.heartbeat_sequence, state=cur.state,
        teleop_active=cur.teleop_active and agg.online, teleop_score=cur.teleop_score,
        agent_version=agg.agent_version, software_version=agg.software_version,
        # Shared, not copied: states are never changed in place (a new one per message).
        resources=cur.resources, telemetry=cur.telemetry.values,
        uplink_transport=cur.uplink_transport,
    )


def list_robots(conn: Connection, robot_filter: RobotFilter, *, now: float,
                stale_after_s: float) -> list[RobotSummary]:
    """Return the robots matching `robot_filter`, ordered by id."""
    query = _summary_query(now, stale_after_s)
    f = robot_filter
    if f.status is not None:
        if f.status not in STATUSES:
            raise InvalidQuery(f'status must be one of {", ".join(STATUSES)}')
        query = query.where(status_expr(now, stale_after_s) == f.status)
    if f.teleop_active is not None:
        query = query.where(_teleop_active() if f.teleop_active else sa.not_(_teleop_active()))
    if f.software_version is not None:
        query = query.where(robots.c.software_version == f.software_version)
    if f.tag is not None:
        query = query.where(sa.exists().where(robot_tags.c.robot_id == robots.c.robot_id,
                                              robot_tags.c.tag == f.tag))
    return [summary_from_row(r) for r in conn.execute(query.order_by(robots.c.robot_id))]


def get_robot(conn: Connection, robot_id: str, *, now: float,
              stale_after_s: float) -> RobotSummary | None:
    """Return one robot's summary, None when it is not enrolled."""
    row = conn.execute(_summary_query(now, stale_after_s)
                       .where(robots.c.robot_id == robot_id)).first()
    return summary_from_row(row) if row is not None else None


def fleet_summary(conn: Connection, *, now: float, stale_after_s: float) -> FleetSummary:
    """Return counts by status and software version, and how many robots are teleoperated."""
    status = status_expr(now, stale_after_s).label('status')
    by_status = dict.fromkeys(STATUSES, 0)
    for name, count in conn.execute(sa.select(status, sa.func.count()).select_from(_JOINED)
                                    .group_by(status)):
        by_status[name] = count
    teleop = conn.execute(sa.select(sa.func.count()).select_from(_JOINED)
                          .where(_teleop_active())).scalar_one()
    versions = {(v or 'unknown'): c for v, c in conn.execute(
        sa.select(robots.c.software_version, sa.func.count()).group_by(robots.c.software_version))}
    return FleetSummary(total=sum(by_status.values()), by_status=by_status,
                        teleop_active=teleop, by_software_version=versions)


def _check_page(after_position: int, limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f'limit must be 1..{MAX_PAGE}')
    if after_position < 0:
        raise InvalidQuery('after_position must be >= 0')


def robot_timeline(conn: Connection, robot_id: str, after_position: int,
                   limit: int) -> EventPage:
    """Return a robot's events after `after_position`, oldest first, `limit` a page."""
    _check_page(after_position, limit)
    # Within a stream, version order is position order: ordering by version lets the primary
    # key (stream_id, version) serve the query instead of a scan of the position index.
    rows = conn.execute(sa.select(events).where(
        events.c.stream_id == stream_id(robot_id), events.c.position > after_position)
        .order_by(events.c.version).limit(limit + 1)).all()
    page = tuple(RecordedEvent(r.position, r.stream_id, r.version, r.type, r.schema_version,
                               r.data, r.metadata, r.recorded_at) for r in rows[:limit])
    return EventPage(page, page[-1].position if len(rows) > limit else None)


def fleet_timeline(conn: Connection, after_position: int, limit: int,
                   robot_id: str | None = None) -> TimelinePage:
    """Return timeline entries after `after_position` (one robot's, or the fleet's)."""
    _check_page(after_position, limit)
    query = sa.select(timeline).where(timeline.c.position > after_position)
    if robot_id is not None:
        query = query.where(timeline.c.robot_id == robot_id)
    rows = conn.execute(query.order_by(timeline.c.position).limit(limit + 1)).all()
    entries = tuple(TimelineEntry(r.position, r.robot_id, r.type, r.severity, r.summary,
                                  r.occurred_at) for r in rows[:limit])
    return TimelinePage(entries, entries[-1].position if len(rows) > limit else None)


def list_teleop_sessions(conn: Connection, robot_id: str, limit: int) -> list[TeleopSession]:
    """Return a robot's teleop sessions, newest first."""
    _check_page(0, limit)
    rows = conn.execute(sa.select(teleop_sessions).where(teleop_sessions.c.robot_id == robot_id)
                        .order_by(teleop_sessions.c.started_at.desc()).limit(limit))
    return [TeleopSession(r.robot_id, r.session_id, r.started_at, r.score, r.ended_at,
                          r.duration_s, r.end_reason) for r in rows]


def robot_credentials(conn: Connection, robot_id: str) -> RobotCredentials | None:
    """Return a robot's token hash and whether it is revoked."""
    # The key binding is the `key:SHA256:...` tag (domain/key_binding.py): read in the same
    # statement, so a login costs one round trip as before.
    key_tag = (sa.select(robot_tags.c.tag)
               .where(robot_tags.c.robot_id == credentials.c.robot_id,
                      robot_tags.c.tag.like(KEY_TAG_PREFIX + 'SHA256:%'))
               .order_by(robot_tags.c.tag).limit(1).scalar_subquery())
    row = conn.execute(sa.select(credentials, key_tag.label('key_tag'))
                       .where(credentials.c.robot_id == robot_id)).first()
    if row is None:
        return None
    return RobotCredentials(row.robot_id, row.token_sha256, row.revoked,
                            bound_fingerprint([row.key_tag] if row.key_tag else []))


def operator_by_token(conn: Connection, token_sha256: str) -> Operator | None:
    """Return the operator with this token hash."""
    row = conn.execute(sa.select(operators)
                       .where(operators.c.token_sha256 == token_sha256)).first()
    return _operator(row) if row else None


def _operator(row: Any) -> Operator:
    return Operator(name=row.name, role=row.role, token_sha256=row.token_sha256,
                    created_at=row.created_at, revoked=row.revoked)
