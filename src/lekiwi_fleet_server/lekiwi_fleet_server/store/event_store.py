"""The append-only event log: optimistic concurrency per stream, commit-ordered global positions.

Global positions are taken from the one-row `event_counter` table by an UPDATE in the appending
transaction. The UPDATE's row lock is held until that transaction ends, so a second writer
waits there until the first commits (or rolls back) and only then takes the next positions:
positions are handed out in commit order, and a reader that has seen position P can never later
find a newly committed event below P. (A sequence or identity column would not do: its values are
taken at insert time, and a transaction that took 7 may commit after one that took 8.) On SQLite
the database-wide write lock gives the same order. Only batches that append events take the lock;
heartbeat-only batches never touch it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from lekiwi_fleet_server.db.schema import event_counter, events
from lekiwi_fleet_server.domain.events import DomainEvent, encode
from lekiwi_fleet_server.store.interface import ConcurrencyConflict, RecordedEvent
from lekiwi_fleet_server.store.upsert import insert

_KEY_CHUNK = 500  # message keys per lookup statement


def stream_id(robot_id: str) -> str:
    """Return the stream id of a robot's events."""
    return f'robot-{robot_id}'


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append, with the robot message (if any) and reason that caused it."""

    event: DomainEvent
    boot_id: str | None = None
    seq: int | None = None
    seq_part: int = 0  # index among the events the same message caused
    causation: str | None = None  # e.g. 'fleet/heartbeat', 'presence:timeout', 'admin:enrol'
    actor: str | None = None  # who did it, for an operator's action (account or operator name)
    # The state seq (lekiwi-fleet/2) of the message that caused it: metadata only, never the
    # message key columns, whose seqs are history seqs (a state seq would collide with them).
    state_seq: int | None = None


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events to append to one stream that must find it at `expected_version`."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]


def lock_appends(conn: Connection) -> None:
    """Hold the appenders' lock until the caller's transaction ends: no event commits meanwhile.

    On SQLite the caller's write transaction already holds the database-wide write lock.
    """
    if conn.dialect.name == 'postgresql':
        conn.execute(sa.select(event_counter.c.position).where(event_counter.c.id == 1)
                     .with_for_update())


def append(conn: Connection, appends: Sequence[StreamAppend], *,
           recorded_at: float) -> list[RecordedEvent]:
    """Append to several streams in the caller's transaction; raise ConcurrencyConflict.

    The caller's transaction must be rolled back after a ConcurrencyConflict (PostgreSQL aborts
    it anyway); nothing of the appends is then stored.
    """
    total = sum(len(a.events) for a in appends)
    if total == 0:
        return []
    last = conn.execute(
        sa.update(event_counter).where(event_counter.c.id == 1)
        .values(position=event_counter.c.position + total)
        .returning(event_counter.c.position)).scalar_one()
    position = last - total
    rows: list[dict[str, Any]] = []
    recorded: list[RecordedEvent] = []
    for item in appends:
        version = item.expected_version
        for new in item.events:
            position += 1
            version += 1
            type_name, schema_version, data = encode(new.event)
            meta = {'robot_id': new.event.robot_id, 'boot_id': new.boot_id, 'seq': new.seq,
                    'causation': new.causation}
            if new.actor is not None:
                meta['actor'] = new.actor
            if new.state_seq is not None:
                meta['state_seq'] = new.state_seq
            rows.append({
                'stream_id': item.stream_id, 'version': version, 'position': position,
                'type': type_name, 'schema_version': schema_version, 'data': data,
                'metadata': meta, 'robot_id': new.event.robot_id if new.seq is not None else None,
                'boot_id': new.boot_id if new.seq is not None else None, 'seq': new.seq,
                'seq_part': new.seq_part, 'recorded_at': recorded_at,
            })
            recorded.append(RecordedEvent(position, item.stream_id, version, type_name,
                                          schema_version, data, meta, recorded_at))
    try:
        insert(conn, events, rows)
    except IntegrityError as exc:
        raise ConcurrencyConflict(_conflict_message(exc, appends)) from exc
    return recorded


def _conflict_message(exc: IntegrityError, appends: Sequence[StreamAppend]) -> str:
    text = str(exc.orig)
    constraint = getattr(getattr(exc.orig, 'diag', None), 'constraint_name', None) or ''
    if 'message_key' in constraint or 'events.robot_id' in text:
        return 'another writer stored an event of the same robot message first'
    streams = ', '.join(f'{a.stream_id}@{a.expected_version}' for a in appends[:5])
    return f'a stream moved past its expected version ({streams}): another writer appended first'


def _recorded(row: Any) -> RecordedEvent:
    return RecordedEvent(row.position, row.stream_id, row.version, row.type, row.schema_version,
                         row.data, row.metadata, row.recorded_at)


_COLUMNS = (events.c.position, events.c.stream_id, events.c.version, events.c.type,
            events.c.schema_version, events.c.data, events.c.metadata, events.c.recorded_at)


def read_stream(conn: Connection, stream: str, after_version: int = 0) -> list[RecordedEvent]:
    """Return a stream's events after `after_version`, in version order."""
    rows = conn.execute(sa.select(*_COLUMNS).where(
        events.c.stream_id == stream, events.c.version > after_version)
        .order_by(events.c.version))
    return [_recorded(r) for r in rows]


def read_all(conn: Connection, after_position: int, limit: int) -> list[RecordedEvent]:
    """Return up to `limit` events after `after_position`, in position (= commit) order."""
    rows = conn.execute(sa.select(*_COLUMNS).where(events.c.position > after_position)
                        .order_by(events.c.position).limit(limit))
    return [_recorded(r) for r in rows]


def head_position(conn: Connection) -> int:
    """Return the position of the newest committed event (0 when there is none)."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0))).scalar_one()


def stored_message_keys(conn: Connection,
                        keys: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
    """Return which of the (robot_id, boot_id, seq) keys already caused stored events."""
    wanted = sorted(set(keys))
    found: set[tuple[str, str, int]] = set()
    if conn.dialect.name == 'postgresql' and wanted:
        # One join against three binary arrays: no IN list to render, whatever the count.
        rows = conn.exec_driver_sql(
            'SELECT e.robot_id, e.boot_id, e.seq FROM events AS e JOIN unnest('
            'CAST(%(r)b AS text[]), CAST(%(b)b AS text[]), CAST(%(s)b AS bigint[])) AS k(r, b, s) '
            'ON e.robot_id = k.r AND e.boot_id = k.b AND e.seq = k.s AND e.seq_part = 0',
            {'r': [k[0] for k in wanted], 'b': [k[1] for k in wanted],
             's': [k[2] for k in wanted]})
        return {(r[0], r[1], r[2]) for r in rows}
    key = sa.tuple_(events.c.robot_id, events.c.boot_id, events.c.seq)
    for i in range(0, len(wanted), _KEY_CHUNK):
        rows = conn.execute(sa.select(events.c.robot_id, events.c.boot_id, events.c.seq)
                            .where(key.in_(wanted[i:i + _KEY_CHUNK]), events.c.seq_part == 0))
        found.update((r.robot_id, r.boot_id, r.seq) for r in rows)
    return found

