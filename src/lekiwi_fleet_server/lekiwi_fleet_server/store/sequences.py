"""robot_sequences: the sequence numbers of every committed robot message, as ranges per boot.

The writer keeps a `BootRecord` (a SeqRanges and when the boot was first seen) for each
(robot, boot) pair it has touched, in a bounded `SequenceCache`: pairs are loaded on demand, one
query per batch for the pairs it lacks, and updated only after a transaction has committed (the
plan works on copies). A message whose seq its boot's record holds is a duplicate, whatever its
topic. A batch writes the pairs that gained numbers with one UPDATE (and one INSERT for boots
new to the table; see hot_writes.py). The UPDATE expects each row's `received` count to be the
one the writer loaded: a row another writer moved (a server still finishing its last batch
while its successor starts) fails the batch with ConcurrencyConflict, and the replanned batch
reloads.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from lekiwi_fleet_server.db.schema import robot_sequences
from lekiwi_fleet_server.domain.seq_ranges import SeqRanges
from lekiwi_fleet_server.store.interface import ConcurrencyConflict, SequenceCoverage, StoreError
from lekiwi_fleet_server.store.upsert import insert

log = logging.getLogger(__name__)

Pair = tuple[str, str]  # (robot_id, boot_id)
_CHUNK = 500  # pairs per look-up statement on SQLite


@dataclass(slots=True)
class BootRecord:
    """What the store has committed of one boot of a robot."""

    ranges: SeqRanges
    first_seen_at: float | None = None  # None: nothing of this boot committed yet
    stored: int | None = None  # the row's `received` as last read or written; None: no row

    def copy(self) -> BootRecord:
        """Return a copy a batch plan may change."""
        return BootRecord(self.ranges.copy(), self.first_seen_at, self.stored)


def _record(robot_id: str, boot_id: str, ranges: Any, first_seen_at: float,
            received: int) -> BootRecord:
    try:
        return BootRecord(SeqRanges.from_json(ranges), first_seen_at, received)
    except ValueError as exc:
        # Not written by this store (edited by hand?): start the boot afresh rather than stop
        # ingest for the robot; the events table's unique message keys still refuse duplicates.
        log.error('robot %s boot %s: unreadable robot_sequences row, starting it afresh: %s',
                  robot_id, boot_id, exc)
        return BootRecord(SeqRanges(), first_seen_at, received)


def load(conn: Connection, pairs: Collection[Pair]) -> dict[Pair, BootRecord]:
    """Return the records of `pairs`, an empty one for each pair never recorded."""
    found: dict[Pair, BootRecord] = {}
    wanted = sorted(set(pairs))
    if not wanted:
        return found
    if conn.dialect.name == 'postgresql':
        # One join against two binary arrays: no IN list to render, whatever the count.
        rows: Iterable[Any] = conn.exec_driver_sql(
            'SELECT s.robot_id, s.boot_id, s.ranges, s.first_seen_at, s.received '
            'FROM robot_sequences AS s '
            'JOIN unnest(CAST(%(r)b AS text[]), CAST(%(b)b AS text[])) AS k(r, b) '
            'ON s.robot_id = k.r AND s.boot_id = k.b',
            {'r': [p[0] for p in wanted], 'b': [p[1] for p in wanted]}).all()
    else:
        key = sa.tuple_(robot_sequences.c.robot_id, robot_sequences.c.boot_id)
        columns = (robot_sequences.c.robot_id, robot_sequences.c.boot_id,
                   robot_sequences.c.ranges, robot_sequences.c.first_seen_at,
                   robot_sequences.c.received)
        rows = [row for i in range(0, len(wanted), _CHUNK) for row in conn.execute(
            sa.select(*columns).where(key.in_(wanted[i:i + _CHUNK])))]
    for robot_id, boot_id, ranges, first_seen_at, received in rows:
        if isinstance(ranges, str | bytes):  # a json column read through the raw driver
            ranges = orjson.loads(ranges)
        found[(robot_id, boot_id)] = _record(robot_id, boot_id, ranges, first_seen_at, received)
    for pair in wanted:
        found.setdefault(pair, BootRecord(SeqRanges()))
    return found


_PG_UPDATE = (
    'UPDATE robot_sequences AS t SET ranges = u.ranges, received = u.received, '
    'updated_at = %(t)s FROM json_to_recordset(CAST(%(rows)s AS json)) '
    'AS u(robot_id text, boot_id text, ranges json, received bigint, stored bigint) '
    'WHERE t.robot_id = u.robot_id AND t.boot_id = u.boot_id AND t.received = u.stored')
_UPDATE = (sa.update(robot_sequences)
           .where(robot_sequences.c.robot_id == sa.bindparam('k_robot'),
                  robot_sequences.c.boot_id == sa.bindparam('k_boot'),
                  robot_sequences.c.received == sa.bindparam('k_stored'))
           .values(ranges=sa.bindparam('ranges'), received=sa.bindparam('received'),
                   updated_at=sa.bindparam('updated_at')))


def split(records: Mapping[Pair, BootRecord]) -> tuple[list[tuple[Pair, BootRecord]],
                                                       list[dict[str, Any]]]:
    """Split a batch's records into rows to update (with their record) and rows to insert."""
    old: list[tuple[Pair, BootRecord]] = []
    new: list[dict[str, Any]] = []
    for pair, record in records.items():
        if record.stored is not None:
            old.append((pair, record))
        else:
            new.append({'robot_id': pair[0], 'boot_id': pair[1],
                        'ranges': record.ranges.to_json(), 'received': len(record.ranges),
                        'first_seen_at': record.first_seen_at, 'updated_at': None})
    return old, new


def pg_update(old: Sequence[tuple[Pair, BootRecord]], now: float) -> tuple[str, dict[str, Any]]:
    """Return the PostgreSQL UPDATE of recorded boots and its parameters."""
    return _PG_UPDATE, {'t': now, 'rows': orjson.dumps([
        {'robot_id': p[0], 'boot_id': p[1], 'ranges': r.ranges.to_json(),
         'received': len(r.ranges), 'stored': r.stored} for p, r in old]).decode()}


def check_updated(matched: int, old: Sequence[tuple[Pair, BootRecord]]) -> None:
    """Raise ConcurrencyConflict unless the UPDATE matched every recorded boot."""
    if matched != len(old):
        raise ConcurrencyConflict(f'robot_sequences: {len(old) - matched} boots were '
                                  'recorded by another writer meanwhile')


def insert_new(conn: Connection, new: list[dict[str, Any]], now: float) -> None:
    """Insert the rows of boots new to the table; raise ConcurrencyConflict on a conflict."""
    if not new:
        return
    for row in new:
        row['updated_at'] = now
    try:
        insert(conn, robot_sequences, new)
    except IntegrityError as exc:
        raise ConcurrencyConflict('robot_sequences: another writer recorded a new boot '
                                  'first') from exc


def run_update(conn: Connection, old: Sequence[tuple[Pair, BootRecord]], now: float) -> int:
    """Run the UPDATE of recorded boots; return how many rows it matched."""
    if conn.dialect.name == 'postgresql':
        matched: int = conn.exec_driver_sql(*pg_update(old, now)).rowcount
        return matched
    return conn.execute(_UPDATE, [
        {'k_robot': robot_id, 'k_boot': boot_id, 'k_stored': record.stored,
         'ranges': record.ranges.to_json(), 'received': len(record.ranges), 'updated_at': now}
        for (robot_id, boot_id), record in old]).rowcount


def coverage(conn: Connection, robot_id: str) -> dict[str, SequenceCoverage]:
    """Return a robot's committed sequence numbers per boot, oldest boot first."""
    rows = conn.execute(sa.select(robot_sequences).where(robot_sequences.c.robot_id == robot_id)
                        .order_by(robot_sequences.c.first_seen_at, robot_sequences.c.boot_id))
    out: dict[str, SequenceCoverage] = {}
    for row in rows:
        try:
            ranges = SeqRanges.from_json(row.ranges)
        except ValueError as exc:
            raise StoreError(f'robot {robot_id} boot {row.boot_id}: robot_sequences row is '
                             f'not valid sequence ranges: {exc}') from exc
        out[row.boot_id] = SequenceCoverage(
            ranges=tuple(ranges.ranges()), count=len(ranges),
            gaps=tuple((a, b) for a, b in ranges.gaps()),
            first_seen_at=row.first_seen_at, updated_at=row.updated_at)
    return out


def _storable(boot_id: object) -> bool:
    # What the plan refuses anyway (envelope_problem) never reaches the database.
    return isinstance(boot_id, str) and 0 < len(boot_id) <= 64 and boot_id.isprintable()


class SequenceCache:
    """The writer's records of the (robot, boot) pairs it touched, at most `max_pairs` of them.

    Used only under the store's writer lock. Beyond `max_pairs` the least recently committed
    pairs are dropped; a dropped pair is loaded again when a message of it comes.
    """

    def __init__(self, max_pairs: int) -> None:
        self._max_pairs = max_pairs
        self._records: dict[Pair, BootRecord] = {}  # in order of last commit: LRU first

    def __len__(self) -> int:
        return len(self._records)

    def get(self, pair: Pair) -> BootRecord | None:
        """Return the record of a pair, None when it is not loaded."""
        return self._records.get(pair)

    @property
    def records(self) -> Mapping[Pair, BootRecord]:
        """Return the loaded records (read-only view for planning)."""
        return self._records

    def ensure_loaded(self, conn: Connection, pairs: Iterable[Pair]) -> None:
        """Load the pairs not in memory yet, in one query (pairs no row can have: none)."""
        records = self._records
        missing = [p for p in pairs if p not in records]
        if missing:
            records.update(load(conn, [p for p in missing if _storable(p[1])]))

    def committed(self, changed: Mapping[Pair, BootRecord]) -> None:
        """Take the records of a committed batch; drop the oldest pairs beyond the limit."""
        records = self._records
        for pair, record in changed.items():
            record.stored = len(record.ranges)
            records.pop(pair, None)  # re-insert: most recently committed last
            records[pair] = record
        excess = len(records) - self._max_pairs
        if excess > 0:
            # Drop a tenth more than needed so that eviction runs once per many batches.
            drop = min(len(records), excess + self._max_pairs // 10)
            for pair in [p for p, _ in zip(records, range(drop), strict=False)]:
                if pair not in changed:
                    del records[pair]

    def forget(self, robot_ids: Collection[str]) -> None:
        """Drop every pair of these robots (after a commit whose outcome is unknown)."""
        if robot_ids:
            for pair in [p for p in self._records if p[0] in robot_ids]:
                del self._records[pair]

    def clear(self) -> None:
        """Drop every pair."""
        self._records.clear()


def undelivered(conn: Connection) -> dict[str, int]:
    """Return, per robot, the seqs of its current boot below its newest one not committed yet.

    An uplink numbers without gaps and sends state messages before its backlog, so the newest
    committed seq minus how many the boot has committed is the backlog still on its way: in
    the robot's outbox, or in flight (robot_current and robot_sequences are written in the
    same transaction, so the two agree).
    """
    from lekiwi_fleet_server.db.schema import robot_current

    query = (sa.select(robot_current.c.robot_id,
                       robot_current.c.last_seq - robot_sequences.c.received)
             .join(robot_sequences, sa.and_(robot_sequences.c.robot_id == robot_current.c.robot_id,
                                            robot_sequences.c.boot_id == robot_current.c.boot_id))
             .where(robot_current.c.last_seq.is_not(None)))
    return {robot_id: max(0, int(missing)) for robot_id, missing in conn.execute(query)}
