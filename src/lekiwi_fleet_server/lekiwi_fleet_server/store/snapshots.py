"""Per-robot aggregate snapshots every N events, and loading aggregates from snapshot plus tail."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.schema import events, snapshots
from lekiwi_fleet_server.domain.events import DomainEvent, EventDecodeError, decode
from lekiwi_fleet_server.domain.robot_state import SNAPSHOT_SCHEMA, RobotAggregate
from lekiwi_fleet_server.store.event_store import stream_id
from lekiwi_fleet_server.store.upsert import upsert

log = logging.getLogger(__name__)

_CHUNK = 500


def is_due(version_before: int, version_after: int, every: int) -> bool:
    """Return True when a stream crossed a multiple of `every` events."""
    return version_after // every != version_before // every


def save(conn: Connection, aggregates: Sequence[RobotAggregate], *, taken_at: float) -> None:
    """Store the snapshots of `aggregates` (one row per stream: the newest replaces the older)."""
    upsert(conn, snapshots, [
        {'stream_id': stream_id(a.robot_id), 'version': a.version,
         'schema_version': SNAPSHOT_SCHEMA, 'state': a.to_snapshot(), 'taken_at': taken_at}
        for a in aggregates], keys=['stream_id'])


def fold(aggregate: RobotAggregate, event: DomainEvent) -> RobotAggregate:
    """Return the aggregate after `event` (the one replay step, shared by every loader)."""
    return aggregate.apply(event)


def decode_row(robot_id: str, type_name: str, schema_version: int, data: dict) -> DomainEvent:
    """Return a stored event as a DomainEvent; an unreadable one still counts as a version."""
    try:
        return decode(type_name, schema_version, data)
    except EventDecodeError as exc:
        # Written by a newer server, or corrupted: keep the stream's version count right and say
        # so, rather than refusing to load the robot.
        log.warning('robot %s: skipping unreadable event: %s', robot_id, exc)
        return DomainEvent(robot_id)


def load_aggregates(conn: Connection, robot_ids: Iterable[str] | None = None,
                    *, use_snapshots: bool = True) -> dict[str, RobotAggregate]:
    """Return the aggregates of `robot_ids` (all robots: None) from snapshot plus event tail."""
    ids = None if robot_ids is None else sorted(set(robot_ids))
    if ids is not None and not ids:
        return {}
    aggregates: dict[str, RobotAggregate] = {}
    groups = [None] if ids is None else [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
    for group in groups:
        streams = None if group is None else [stream_id(r) for r in group]
        if use_snapshots:
            query = sa.select(snapshots.c.state).where(
                snapshots.c.schema_version == SNAPSHOT_SCHEMA)
            if streams is not None:
                query = query.where(snapshots.c.stream_id.in_(streams))
            for (state,) in conn.execute(query):
                aggregate = RobotAggregate.from_snapshot(state)
                aggregates[aggregate.robot_id] = aggregate
        tail = (sa.select(events.c.stream_id, events.c.version, events.c.type,
                          events.c.schema_version, events.c.data)
                .select_from(events.outerjoin(snapshots, sa.and_(
                    snapshots.c.stream_id == events.c.stream_id,
                    snapshots.c.schema_version == SNAPSHOT_SCHEMA)))
                .order_by(events.c.stream_id, events.c.version))
        if use_snapshots:
            tail = tail.where(events.c.version > sa.func.coalesce(snapshots.c.version, 0))
        if streams is not None:
            tail = tail.where(events.c.stream_id.in_(streams))
        for row in conn.execute(tail):
            robot_id = row.stream_id.removeprefix('robot-')
            aggregate = aggregates.get(robot_id) or RobotAggregate(robot_id)
            aggregates[robot_id] = fold(
                aggregate, decode_row(robot_id, row.type, row.schema_version, row.data))
    return aggregates
