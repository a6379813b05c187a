"""Telemetry history: batched inserts, time partitions with retention, downsampled range queries.

Where the rows live depends on the database (the migration chose and wrote it to store_meta):
- 'partitioned' (PostgreSQL): declarative range partitions of `sampled_ms`, one per period,
  made ahead of time; retention drops whole partitions (cheap: no row deletes, no vacuum).
- 'timescaledb' (PostgreSQL with the extension created before the first migration): a hypertable;
  retention calls drop_chunks.
- 'plain' (SQLite): one table; retention deletes old rows.
A row's time is the delta's header stamp (robot clock), so a redelivered message lands on the
same key; a missing stamp or one too far in the future falls back to the server's receive time.
Rows older than the retention horizon are not stored at all.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.schema import store_meta, telemetry
from lekiwi_fleet_server.domain.telemetry_codec import TELEMETRY_FIELDS
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.interface import InvalidQuery, TelemetryPoint
from lekiwi_fleet_server.store.upsert import insert_ignore

log = logging.getLogger(__name__)

_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_FIELDS = frozenset(TELEMETRY_FIELDS)
_PARTITION_LOCK = 0x4C4B5450  # advisory lock key ('LKTP') taken while making partitions


def sampled_ms(stamp: float, received_at: float, max_future_s: float) -> int:
    """Return a telemetry row's time in Unix milliseconds (see the module docstring)."""
    when = stamp if 0 < stamp <= received_at + max_future_s else received_at
    return int(round(when * 1000))


def partition_start(t_ms: int, period_ms: int) -> int:
    """Return the lower bound of the partition holding `t_ms`."""
    return t_ms - t_ms % period_ms


def partition_name(start_ms: int) -> str:
    """Return the name of the partition starting at `start_ms` (UTC, readable in psql)."""
    when = datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc)
    return 'telemetry_p' + when.strftime('%Y%m%dt%H%M%S')


def parse_bound(expression: str) -> tuple[int, int] | None:
    """Return (from, to) of a partition bound as pg_get_expr prints it."""
    match = _BOUND.search(expression)
    return (int(match.group(1)), int(match.group(2))) if match else None


def row(robot_id: str, boot_id: str, seq: int, at_ms: int, received_at: float,
        full_snapshot: bool, complete: bool, values: Mapping[str, float | None]) -> dict[str, Any]:
    """Return a telemetry history row: the reconstructed state after one delta."""
    extra = {k: v for k, v in values.items() if k not in _FIELDS}
    out: dict[str, Any] = {
        'robot_id': robot_id, 'sampled_ms': at_ms, 'boot_id': boot_id, 'seq': seq,
        'received_at': received_at, 'full_snapshot': full_snapshot, 'complete': complete,
        'extra': extra or None,
    }
    for name in TELEMETRY_FIELDS:
        out[name] = values.get(name)
    return out


@dataclass(slots=True)
class TelemetryHistory:
    """The telemetry table of one database; holds the partitions it knows exist."""

    config: StoreConfig
    mode: str = 'plain'
    period_ms: int = 86_400_000
    partitions: dict[int, int] | None = None  # start -> end of existing partitions

    @classmethod
    def load(cls, conn: Connection, config: StoreConfig) -> TelemetryHistory:
        """Read the telemetry mode and partitions, fixing the period if none exist yet."""
        meta = dict(conn.execute(sa.select(store_meta.c.key, store_meta.c.value)).all())
        history = cls(config, meta.get('telemetry_mode', 'plain'),
                      int(meta.get('telemetry_partition_ms', 86_400_000)))
        wanted = int(config.telemetry_partition_s * 1000)
        if history.mode == 'partitioned':
            history.partitions = _list_partitions(conn)
            if wanted != history.period_ms:
                if history.partitions:
                    log.warning('telemetry partitions are %d s wide already; keeping that width',
                                history.period_ms // 1000)
                else:
                    history.period_ms = wanted
                    conn.execute(sa.update(store_meta)
                                 .where(store_meta.c.key == 'telemetry_partition_ms')
                                 .values(value=str(wanted)))
        return history

    def retention_cutoff_ms(self, now: float) -> int:
        """Return the time before which rows are no longer kept."""
        return int((now - self.config.telemetry_retention_s) * 1000)

    def missing_partitions(self, times_ms: Iterable[int]) -> list[int]:
        """Return starts of partitions the given row times need and that do not exist."""
        if self.mode != 'partitioned' or self.partitions is None:
            return []
        starts = {partition_start(t, self.period_ms) for t in times_ms}
        return sorted(s for s in starts if not self._covered(s))

    def _covered(self, start: int) -> bool:
        assert self.partitions is not None
        return any(lo <= start < hi for lo, hi in self.partitions.items())

    def create_partitions(self, conn: Connection, starts: Iterable[int]) -> list[tuple[int, int]]:
        """Create partitions (call `partitions_created` after the transaction commits)."""
        made = []
        starts = sorted(set(starts))
        if starts and conn.dialect.name == 'postgresql':
            # Writers of other shards may make the same partition now: one at a time, and
            # IF NOT EXISTS then sees the one committed while this transaction waited.
            conn.exec_driver_sql(f'SELECT pg_advisory_xact_lock({_PARTITION_LOCK})')
        for start in starts:
            end = start + self.period_ms
            conn.exec_driver_sql(
                f'CREATE TABLE IF NOT EXISTS {partition_name(start)} PARTITION OF telemetry '
                f'FOR VALUES FROM ({int(start)}) TO ({int(end)})')
            made.append((start, end))
        return made

    def partitions_created(self, made: Iterable[tuple[int, int]]) -> None:
        """Remember partitions a committed transaction created."""
        if self.partitions is not None:
            self.partitions.update(dict(made))

    def maintain(self, conn: Connection, now: float) -> tuple[list[tuple[int, int]], int]:
        """Create partitions ahead and apply retention; return (created, partitions dropped)."""
        cutoff = self.retention_cutoff_ms(now)
        if self.mode == 'plain':
            conn.execute(sa.delete(telemetry).where(telemetry.c.sampled_ms < cutoff))
            return [], 0
        if self.mode == 'timescaledb':  # pragma: no cover - TimescaleDB is not installed on CI
            conn.execute(sa.text('SELECT drop_chunks(:t, older_than => CAST(:c AS bigint))'),
                         {'t': 'telemetry', 'c': cutoff})
            return [], 0
        now_ms = int(now * 1000)
        ahead = [partition_start(now_ms, self.period_ms) + i * self.period_ms
                 for i in range(self.config.telemetry_partitions_ahead + 1)]
        made = self.create_partitions(conn, self.missing_partitions(ahead))
        existing = _list_partitions(conn)
        dropped = [lo for lo, hi in existing.items() if hi <= cutoff]
        for lo in dropped:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS {partition_name(lo)}')
        self.partitions = {lo: hi for lo, hi in existing.items() if lo not in dropped}
        return made, len(dropped)

    def insert(self, conn: Connection, rows: Sequence[dict[str, Any]], now: float) -> int:
        """Insert history rows (duplicates and rows past retention skipped); return how many."""
        kept = self.kept(rows, now)
        insert_ignore(conn, telemetry, kept)
        return len(kept)

    def kept(self, rows: Sequence[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """Return the rows within retention (the others are not stored at all)."""
        cutoff = self.retention_cutoff_ms(now)
        return [r for r in rows if r['sampled_ms'] >= cutoff]

    def range(self, conn: Connection, robot_id: str, start: float, end: float, bucket_s: float,
              fields: Sequence[str] | None) -> list[TelemetryPoint]:
        """Return bucket means of `fields` over [start, end), buckets aligned to the epoch."""
        names = list(TELEMETRY_FIELDS if fields is None else fields)
        unknown = [n for n in names if n not in _FIELDS]
        if unknown or not names:
            raise InvalidQuery(f'unknown telemetry fields {unknown}; known: '
                               f'{", ".join(TELEMETRY_FIELDS)}' if unknown else 'no fields')
        if not all(math.isfinite(x) for x in (start, end, bucket_s)):
            raise InvalidQuery('start, end and bucket_s must be finite numbers')
        if bucket_s <= 0 or end <= start:
            raise InvalidQuery('need bucket_s > 0 and end > start')
        bucket_ms = max(1, int(round(bucket_s * 1000)))
        start_ms, end_ms = int(math.floor(start * 1000)), int(math.ceil(end * 1000))
        buckets = end_ms // bucket_ms - start_ms // bucket_ms + 1
        if buckets > self.config.telemetry_max_buckets:
            raise InvalidQuery(f'{buckets} buckets asked, at most '
                               f'{self.config.telemetry_max_buckets}: widen bucket_s')
        bucket = (telemetry.c.sampled_ms // bucket_ms).label('bucket')
        query = (sa.select(bucket, *(sa.func.avg(telemetry.c[n]).label(n) for n in names))
                 .where(telemetry.c.robot_id == robot_id, telemetry.c.sampled_ms >= start_ms,
                        telemetry.c.sampled_ms < end_ms)
                 .group_by(bucket).order_by(bucket))
        return [TelemetryPoint(bucket_start=r.bucket * bucket_ms / 1000,
                               values={n: _float(r._mapping[n]) for n in names})
                for r in conn.execute(query)]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _list_partitions(conn: Connection) -> dict[int, int]:
    rows = conn.execute(sa.text(
        'SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i '
        'JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent '
        "WHERE p.relname = 'telemetry' AND p.relnamespace = "
        'to_regnamespace(current_schema())'))
    out = {}
    for (expression,) in rows:
        bound = parse_bound(expression or '')
        if bound:
            out[bound[0]] = bound[1]
    return out
