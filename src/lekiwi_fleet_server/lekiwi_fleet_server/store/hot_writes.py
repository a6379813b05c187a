"""The writes of nearly every batch: current state, sequence records, telemetry history.

A batch of heartbeats and telemetry makes three to five statements. Run one after another,
each waits for its round trip while the next one's parameters are still to be built, and under
load each wait can cost the writer its turn on the CPU. On PostgreSQL they are therefore sent
together in pipeline mode: the server executes a statement while the writer builds the next,
and the writer waits once, after it has built its answers to the batch (`during`: acks, the
dashboard update), so that the database's work and the writer's overlap. The checks that
need a statement's row count (a robot without a current-state row, a sequence row another
writer moved) run after that one wait, still inside the batch's transaction, so a failed check
rolls back the whole batch as before. SQLite, in process, runs the same statements one after
another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.schema import robot_current
from lekiwi_fleet_server.db.schema import telemetry as telemetry_table
from lekiwi_fleet_server.store import sequences, telemetry, upsert
from lekiwi_fleet_server.store.interface import StoreError, StoreUnavailable


def write(conn: Connection, shapes: list[list[dict[str, Any]]],
          records: dict[sequences.Pair, sequences.BootRecord],
          telemetry_rows: list[dict[str, Any]], history: telemetry.TelemetryHistory,
          now: float, during: Callable[[], None] | None = None) -> list[list[dict[str, Any]]]:
    """Run the batch's current-state updates (one per row shape), sequence and history writes.

    `during` runs once they are sent, while the database works on them. Return the update
    groups that matched fewer rows than they hold (robots without a current-state row); raise
    ConcurrencyConflict when a sequence row was moved meanwhile.
    """
    old, new = sequences.split(records)
    kept = history.kept(telemetry_rows, now) if telemetry_rows else []
    if conn.dialect.name == 'postgresql':
        short, matched = _pipelined(conn, shapes, old, kept, now, during)
    else:
        if during is not None:
            during()
        short = [rows for rows in shapes
                 if upsert.update_rows(conn, robot_current, rows, 'robot_id') < len(rows)]
        matched = sequences.run_update(conn, old, now) if old else 0
        if kept:
            upsert.insert_ignore(conn, telemetry_table, kept)
    if old:
        sequences.check_updated(matched, old)
    sequences.insert_new(conn, new, now)
    return short


def _pipelined(conn: Connection, shapes: list[list[dict[str, Any]]],
               old: list[tuple[sequences.Pair, sequences.BootRecord]],
               kept: list[dict[str, Any]], now: float,
               during: Callable[[], None] | None) -> tuple[list[list[dict[str, Any]]], int]:
    import psycopg  # only ever here on PostgreSQL

    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    updates: list[tuple[psycopg.Cursor[Any], list[dict[str, Any]]]] = []
    sequence_cursor: psycopg.Cursor[Any] | None = None
    try:
        with raw.pipeline():
            for rows in shapes:
                cursor = raw.cursor()
                cursor.execute(*upsert.pg_update(robot_current, rows, 'robot_id'))
                updates.append((cursor, rows))
            if old:
                sequence_cursor = raw.cursor()
                sequence_cursor.execute(*sequences.pg_update(old, now))
            if kept:
                raw.cursor().execute(*upsert.pg_write(telemetry_table, kept, None))
            if during is not None:
                raw.pgconn.flush()  # every statement is on the wire before the wait
                during()
    # The statements ran on the driver's own cursors, past SQLAlchemy: translate here.
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f'commit_batch: database unavailable: {exc}') from exc
    except psycopg.Error as exc:
        raise StoreError(f'commit_batch: {exc}') from exc
    short = [rows for cursor, rows in updates if cursor.rowcount < len(rows)]
    return short, sequence_cursor.rowcount if sequence_cursor is not None else 0
