"""Recovery tools over a database: rebuild the read models, verify them against a replay.

`verify` rebuilds the projections inside one transaction and rolls it back: the rows a replay
makes are compared (as a digest per table, in primary-key order) with the rows stored, through
the very code the writer projects with, and nothing is changed. It also checks what replay
cannot: every robot stream's versions run 1..n, every projection is at the log's head, and the
robots' sequence coverage (robot_sequences) has no gaps and covers every stored event's seq.

Both take the write lock of the read models for their transaction (SQLite: the database): run
them with the server stopped, or accept that ingest waits while they run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lekiwi_fleet_server.db.engine import writer
from lekiwi_fleet_server.db.schema import (
    events,
    robot_sequences,
    robot_tags,
    robots,
    teleop_sessions,
    timeline,
)
from lekiwi_fleet_server.domain.seq_ranges import SeqRanges
from lekiwi_fleet_server.store import event_store, projections

Progress = Callable[[int, int], None]  # (events replayed, events in the log)
READ_MODELS: tuple[sa.Table, ...] = (robots, robot_tags, teleop_sessions, timeline)
_SCAN_ROWS = 5000
_MAX_LISTED = 20  # findings listed per kind; the count says how many there were


@dataclass(frozen=True, slots=True)
class TableDigest:
    """How many rows a table holds and a SHA-256 over them in primary-key order."""

    rows: int
    sha256: str


@dataclass(slots=True)
class VerifyReport:
    """What `verify` found; `ok` when it found nothing wrong."""

    events: int = 0
    head_position: int = 0
    stored: dict[str, TableDigest] = field(default_factory=dict)
    replayed: dict[str, TableDigest] = field(default_factory=dict)
    projections_behind: dict[str, int] = field(default_factory=dict)  # name -> its position
    stream_version_gaps: list[str] = field(default_factory=list)
    sequence_gaps: list[str] = field(default_factory=list)
    sequence_gap_count: int = 0
    uncovered_events: list[str] = field(default_factory=list)
    uncovered_event_count: int = 0

    @property
    def mismatched_tables(self) -> list[str]:
        """Return the read models whose stored rows differ from a replay's."""
        return [name for name, digest in self.stored.items() if self.replayed.get(name) != digest]

    @property
    def ok(self) -> bool:
        """Tell whether the read models match a replay and nothing is missing."""
        return not (self.mismatched_tables or self.projections_behind
                    or self.stream_version_gaps or self.sequence_gap_count
                    or self.uncovered_event_count)

    def lines(self) -> list[str]:
        """Return the report as lines for people."""
        out = [f'events {self.events}, head position {self.head_position}']
        for name, digest in self.stored.items():
            replayed = self.replayed.get(name)
            verdict = 'matches replay' if replayed == digest else (
                f'DIFFERS from replay ({replayed.rows if replayed else "?"} rows)')
            out.append(f'read model {name}: {digest.rows} rows, {verdict}')
        for name, position in self.projections_behind.items():
            out.append(f'projection {name} at position {position}, behind the head')
        out += [f'stream version gap: {s}' for s in self.stream_version_gaps]
        if self.sequence_gap_count:
            out.append(f'sequence gaps: {self.sequence_gap_count} boot(s)')
            out += [f'  {s}' for s in self.sequence_gaps]
        if self.uncovered_event_count:
            out.append(f'events whose seq robot_sequences lacks: {self.uncovered_event_count}')
            out += [f'  {s}' for s in self.uncovered_events]
        out.append('verify: OK' if self.ok else 'verify: FAILED')
        return out


def count_events(conn: Connection) -> int:
    """Return how many events the log holds."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())


def rebuild_projections(engine: Engine, progress: Progress | None = None) -> int:
    """Empty the read models and replay the log into them in one transaction; return events."""
    with writer(engine).begin() as conn:
        total = count_events(conn)
        return projections.rebuild(conn, progress=_bound(progress, total))


def digest(conn: Connection, table: sa.Table) -> TableDigest:
    """Return the row count and SHA-256 of a table's rows in primary-key order."""
    hasher = hashlib.sha256()
    rows = 0
    query = sa.select(table).order_by(*table.primary_key.columns)
    for row in conn.execute(query.execution_options(yield_per=_SCAN_ROWS)):
        # repr of the row's values: floats in full precision, JSON with its keys sorted (the
        # order in which a live batch and a replay built a dict may differ).
        hasher.update(repr(tuple(_canonical(v) for v in row)).encode())
        hasher.update(b'\n')
        rows += 1
    return TableDigest(rows, hasher.hexdigest())


def _canonical(value: object) -> object:
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value


def verify(engine: Engine, progress: Progress | None = None) -> VerifyReport:
    """Compare the read models with a replay of the log, check versions and sequences."""
    report = VerifyReport()
    with writer(engine).connect() as conn, conn.begin() as transaction:
        report.events = count_events(conn)
        report.head_position = event_store.head_position(conn)
        report.projections_behind = {name: position for name, position
                                     in projections.positions(conn).items()
                                     if position < report.head_position}
        report.stored = {t.name: digest(conn, t) for t in READ_MODELS}
        projections.rebuild(conn, progress=_bound(progress, report.events))
        report.replayed = {t.name: digest(conn, t) for t in READ_MODELS}
        _check_stream_versions(conn, report)
        _check_sequences(conn, report)
        transaction.rollback()  # verify changes nothing
    return report


def _bound(progress: Progress | None, total: int) -> projections.Progress | None:
    if progress is None:
        return None
    return lambda done: progress(done, total)


def _check_stream_versions(conn: Connection, report: VerifyReport) -> None:
    query = (sa.select(events.c.stream_id, sa.func.min(events.c.version),
                       sa.func.max(events.c.version), sa.func.count())
             .group_by(events.c.stream_id)
             .having(sa.or_(sa.func.min(events.c.version) != 1,
                            sa.func.max(events.c.version) != sa.func.count()))
             .order_by(events.c.stream_id).limit(_MAX_LISTED))
    report.stream_version_gaps = [
        f'{stream}: versions {low}..{high}, {count} events'
        for stream, low, high, count in conn.execute(query)]


def _check_sequences(conn: Connection, report: VerifyReport) -> None:
    coverage: dict[tuple[str, str], SeqRanges] = {}
    for robot_id, boot_id, ranges in conn.execute(
            sa.select(robot_sequences.c.robot_id, robot_sequences.c.boot_id,
                      robot_sequences.c.ranges).order_by(robot_sequences.c.robot_id,
                                                         robot_sequences.c.boot_id)):
        try:
            seqs = SeqRanges.from_json(ranges)
        except ValueError as exc:
            _note(report, 'sequence', f'{robot_id} boot {boot_id}: unreadable ranges ({exc})')
            continue
        coverage[(robot_id, boot_id)] = seqs
        gaps = seqs.gaps()
        if gaps:
            shown = ', '.join(f'{a}..{b}' for a, b in gaps[:5])
            _note(report, 'sequence', f'{robot_id} boot {boot_id}: missing {shown}'
                                      f'{" ..." if len(gaps) > 5 else ""}')
    keyed = (sa.select(events.c.robot_id, events.c.boot_id, events.c.seq)
             .where(events.c.seq.is_not(None)).distinct())
    for robot_id, boot_id, seq in conn.execute(keyed.execution_options(yield_per=_SCAN_ROWS)):
        held = coverage.get((robot_id, boot_id))
        if held is None or seq not in held:
            _note(report, 'uncovered', f'{robot_id} boot {boot_id} seq {seq}')


def _note(report: VerifyReport, kind: str, line: str) -> None:
    if kind == 'sequence':
        report.sequence_gap_count += 1
        if len(report.sequence_gaps) < _MAX_LISTED:
            report.sequence_gaps.append(line)
    else:
        report.uncovered_event_count += 1
        if len(report.uncovered_events) < _MAX_LISTED:
            report.uncovered_events.append(line)
