"""Read models projected from the event log: robots, teleop sessions, the fleet timeline.

Every projection is written in the transaction that appends its events and advances its row in
`projection_positions` in that same transaction, so a read model is never ahead of or behind the
log it reflects. `rebuild` replays the whole log through the same code and yields the same rows.
The robots read model is a function of each robot's aggregate (the fold of its stream), which the
writer already holds, so projecting it costs one upsert per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.schema import (
    projection_positions,
    robot_tags,
    robots,
    teleop_sessions,
    timeline,
)
from lekiwi_fleet_server.domain.events import (
    DomainEvent,
    RobotEnrolled,
    RobotReEnrolled,
    TeleopSessionEnded,
    TeleopSessionStarted,
)
from lekiwi_fleet_server.domain.robot_state import RobotAggregate
from lekiwi_fleet_server.store import event_store
from lekiwi_fleet_server.store.interface import RecordedEvent
from lekiwi_fleet_server.store.snapshots import decode_row, fold
from lekiwi_fleet_server.store.upsert import insert, upsert

PROJECTIONS: tuple[str, ...] = ('robots', 'teleop_sessions', 'timeline')
REPLAY_CHUNK = 1000
Progress = Callable[[int], None]  # called with the events replayed so far, after each chunk


@dataclass(frozen=True, slots=True)
class Applied:
    """A stored event and its decoded domain event."""

    recorded: RecordedEvent
    event: DomainEvent


def robot_row(aggregate: RobotAggregate) -> dict[str, Any]:
    """Return the robots read-model row of an aggregate."""
    return {
        'robot_id': aggregate.robot_id, 'version': aggregate.version,
        'enrolled_at': aggregate.enrolled_at, 'tags': list(aggregate.tags),
        'revoked': aggregate.revoked, 'revoked_at': aggregate.revoked_at,
        'online': aggregate.online, 'presence_at': aggregate.presence_at,
        'presence_reason': aggregate.presence_reason, 'agent_version': aggregate.agent_version,
        'software_version': aggregate.software_version, 'alarms': dict(aggregate.alarms),
        'session_id': aggregate.session_id, 'session_started_at': aggregate.session_started_at,
        'last_deployment': dict(aggregate.last_deployment) if aggregate.last_deployment else None,
    }


def occurred_at(event: DomainEvent, recorded_at: float) -> float:
    """Return when the event happened (its own time field), else when it was recorded."""
    for name in ('at', 'ended_at', 'started_at', 'enrolled_at', 'revoked_at', 'rotated_at',
                 'reenrolled_at'):
        value = getattr(event, name, None)
        if value:
            return float(value)
    return recorded_at


def project_robots(conn: Connection, applied: Sequence[Applied],
                   aggregates: Mapping[str, RobotAggregate]) -> None:
    """Write the rows of the robots whose streams `applied` touched."""
    touched = sorted({a.event.robot_id for a in applied})
    upsert(conn, robots, [robot_row(aggregates[r]) for r in touched], keys=['robot_id'])
    enrolled = sorted({a.event.robot_id for a in applied
                       if isinstance(a.event, RobotEnrolled | RobotReEnrolled)})
    if enrolled:
        conn.execute(sa.delete(robot_tags).where(robot_tags.c.robot_id.in_(enrolled)))
        rows = [{'robot_id': r, 'tag': t} for r in enrolled for t in aggregates[r].tags]
        if rows:
            conn.execute(sa.insert(robot_tags), rows)


def project_teleop_sessions(conn: Connection, applied: Sequence[Applied]) -> None:
    """Open and close session rows from TeleopSessionStarted / TeleopSessionEnded."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for item in applied:
        event, position = item.event, item.recorded.position
        row: dict[str, Any]
        if isinstance(event, TeleopSessionStarted):
            row = {'started_at': event.started_at, 'score': event.score,
                   'started_position': position}
        elif isinstance(event, TeleopSessionEnded):
            row = {'started_at': event.started_at, 'ended_at': event.ended_at,
                   'duration_s': event.duration_s, 'end_reason': event.reason,
                   'ended_position': position}
        else:
            continue
        key = (event.robot_id, event.session_id)
        # One statement may not touch a row twice: fold this batch's changes of a session first.
        merged.setdefault(key, {'robot_id': key[0], 'session_id': key[1]}).update(row)
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in merged.values():
        by_shape.setdefault(tuple(sorted(row)), []).append(row)
    for _shape, rows in sorted(by_shape.items()):
        upsert(conn, teleop_sessions, [{k: r[k] for k in sorted(r)} for r in rows],
               keys=['robot_id', 'session_id'])


def project_timeline(conn: Connection, applied: Sequence[Applied]) -> None:
    """Add a timeline entry per event."""
    rows = [{'position': a.recorded.position, 'robot_id': a.event.robot_id,
             'type': a.recorded.type, 'severity': a.event.severity,
             'summary': a.event.summary()[:500],
             'occurred_at': occurred_at(a.event, a.recorded.recorded_at)} for a in applied]
    insert(conn, timeline, rows)


def project(conn: Connection, applied: Sequence[Applied],
            aggregates: Mapping[str, RobotAggregate],
            names: Sequence[str] = PROJECTIONS) -> None:
    """Apply `applied` (position order) to the projections `names` and advance their positions."""
    if not applied:
        return
    if 'robots' in names:
        project_robots(conn, applied, aggregates)
    if 'teleop_sessions' in names:
        project_teleop_sessions(conn, applied)
    if 'timeline' in names:
        project_timeline(conn, applied)
    conn.execute(sa.update(projection_positions)
                 .where(projection_positions.c.name.in_(list(names)))
                 .values(position=applied[-1].recorded.position))


def positions(conn: Connection) -> dict[str, int]:
    """Return each projection's tracking position."""
    return dict(conn.execute(sa.select(projection_positions.c.name,
                                       projection_positions.c.position)).all())


def applied_from(recorded: Sequence[RecordedEvent]) -> list[Applied]:
    """Decode stored events for projecting."""
    return [Applied(r, decode_row(r.stream_id.removeprefix('robot-'), r.type, r.schema_version,
                                  dict(r.data))) for r in recorded]


def rebuild(conn: Connection, names: Sequence[str] = PROJECTIONS,
            progress: Progress | None = None) -> int:
    """Empty the projections `names` and replay the whole log into them; return events replayed."""
    _reset(conn, names)
    return _replay(conn, names, after=0, aggregates={}, progress=progress)


def catch_up(conn: Connection, aggregates: Mapping[str, RobotAggregate]) -> int:
    """Project events a projection has not seen yet (none, unless a projection was added).

    Every append projects in its own transaction, so a committed log has its projections at its
    head. The head is read before the positions: read the other way round, an append committed
    between the two reads would look unprojected, and replaying it would insert its timeline
    rows a second time (a CLI opening the store next to a running server met this). When a
    projection is behind, the log's append lock is taken first, so no append commits while it
    is replayed, and the positions are read again under it: a second process that waited for
    the lock then finds nothing left to do.
    """
    head = event_store.head_position(conn)
    seen = positions(conn)
    if all(seen.get(name, 0) >= head for name in PROJECTIONS):
        return 0
    event_store.lock_appends(conn)
    head = event_store.head_position(conn)
    seen = positions(conn)
    replayed = 0
    for name in PROJECTIONS:
        if seen.get(name, 0) < head:
            # Robots rows are folds of whole streams: replaying the tail needs the aggregates
            # as they were, so this projection is rebuilt instead.
            if name == 'robots':
                _reset(conn, ['robots'])
                replayed += _replay(conn, ['robots'], after=0, aggregates={})
            else:
                replayed += _replay(conn, [name], after=seen.get(name, 0),
                                    aggregates=aggregates)
    return replayed


def _reset(conn: Connection, names: Sequence[str]) -> None:
    tables = {'robots': (robots, robot_tags), 'teleop_sessions': (teleop_sessions,),
              'timeline': (timeline,)}
    for name in names:
        for table in tables[name]:
            conn.execute(sa.delete(table))
    conn.execute(sa.update(projection_positions)
                 .where(projection_positions.c.name.in_(list(names))).values(position=0))


def _replay(conn: Connection, names: Sequence[str], *, after: int,
            aggregates: Mapping[str, RobotAggregate], progress: Progress | None = None) -> int:
    folded = dict(aggregates)
    count = 0
    while True:
        chunk = event_store.read_all(conn, after, REPLAY_CHUNK)
        if not chunk:
            return count
        applied = applied_from(chunk)
        for item in applied:
            robot_id = item.event.robot_id
            folded[robot_id] = fold(folded.get(robot_id) or RobotAggregate(robot_id), item.event)
        project(conn, applied, folded, names)
        count += len(chunk)
        after = chunk[-1].position
        if progress is not None:
            progress(count)
