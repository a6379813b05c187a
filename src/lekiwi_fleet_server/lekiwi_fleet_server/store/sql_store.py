"""SqlFleetStore: the FleetStore on SQLAlchemy Core, for PostgreSQL and the embedded SQLite.

The store is the single writer of its robots: every write goes through one lock, and it keeps each
enrolled robot's state (aggregate + current state) in memory so a batch of heartbeats is decided
without reading anything back. That memory is loaded at open (aggregates from snapshots plus the
event tail, current state from robot_current) and updated only after a transaction has committed.
It is a cache the event log can always correct: appends are checked against stream versions, so if
another process (the CLI enrolling or revoking) appended to a robot's stream, the append fails with
ConcurrencyConflict, the robot is reloaded and the batch is planned again. After a failed commit,
whose outcome may be unknown, the batch's robots are reloaded too.

State readings are volatile (store/ingest.py): a robot whose batch only changed readings of
state-space messages is *dirty*, its memory ahead of robot_current, until `flush_state` writes
the current-state rows of every dirty robot in one statement. A failed batch or an admin write
that reloads a robot loses its unflushed readings (never more than one flush interval of them,
and never an event); `forget_robots` and admin writes flush the robot first. With writer shards
(StoreConfig.shard_index and shard_count) several stores write one database, each for its own
robots only.

Driver errors are translated into interface.py's errors here, once, at the boundary.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lekiwi_fleet_server.db.engine import make_engine, writer
from lekiwi_fleet_server.db.schema import (
    credentials,
    event_counter,
    operators,
    robot_current,
    robots,
)
from lekiwi_fleet_server.domain.events import DomainEvent
from lekiwi_fleet_server.domain.robot_state import CurrentState, RobotAggregate, RobotState
from lekiwi_fleet_server.migrations import current_revision, head_revision, upgrade
from lekiwi_fleet_server.store import (
    changes,
    event_store,
    ingest,
    projections,
    queries,
    sequences,
    snapshots,
    upsert,
)
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    ConcurrencyConflict,
    EventPage,
    FleetSummary,
    InvalidQuery,
    Operator,
    OperatorAlreadyExists,
    OperatorRole,
    PresenceChange,
    RecordedEvent,
    RobotAlreadyEnrolled,
    RobotCredentials,
    RobotFilter,
    RobotMessage,
    RobotRevoked,
    RobotSummary,
    SequenceCoverage,
    StoreError,
    StoreUnavailable,
    TelemetryPoint,
    TeleopSession,
    TimelinePage,
    UnknownRobot,
)
from lekiwi_fleet_server.store.telemetry import TelemetryHistory

log = logging.getLogger(__name__)

ROBOT_ID = re.compile(r'[A-Za-z0-9._-]{1,64}')
TAG = re.compile(r'[A-Za-z0-9._:=/-]{1,64}')
SHA256_HEX = re.compile(r'[0-9a-f]{64}')
MAX_TAGS = 32
ADMIN_WRITE_ATTEMPTS = 5
ROLES = ('viewer', 'operator', 'admin')


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into the store's errors (StoreError passes through)."""
    try:
        yield
    except StoreError:
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            raise StoreUnavailable(f'{action}: database unavailable: {exc.orig}') from exc
        raise StoreError(f'{action}: {exc.orig}') from exc
    except PoolTimeout as exc:
        raise StoreUnavailable(f'{action}: no database connection free: {exc}') from exc
    except SQLAlchemyError as exc:
        raise StoreError(f'{action}: {exc}') from exc


class SqlFleetStore:
    """The FleetStore on SQLAlchemy Core; build it with `open`."""

    def __init__(self, engine: Engine, config: StoreConfig, *, owns_engine: bool) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._write_conn: Connection | None = None  # kept by commit_batch: see _batch_transaction
        self._config = config
        self._owns_engine = owns_engine
        # One writer at a time: the in-memory states must match what the database committed.
        self._lock = threading.RLock()
        self._states: dict[str, RobotState] = {}
        self._sequences = sequences.SequenceCache(config.sequence_cache_pairs)
        self._history = TelemetryHistory(config)
        self._next_maintenance = float('-inf')
        # Robots whose readings in memory are newer than their robot_current row.
        self._dirty: set[str] = set()

    @classmethod
    def open(cls, target: str | Engine, config: StoreConfig | None = None, *,
             migrate: bool = True, preload: bool = True) -> SqlFleetStore:
        """Connect to a URL (or engine), migrate to head and load the robots' states.

        `preload=False` skips loading the states (a store that only reads, next to a writer
        elsewhere, needs none; a write would load the robots it touches).
        """
        config = config or StoreConfig()
        owns = isinstance(target, str)
        with translate_errors('open'):
            engine = make_engine(target, pool_size=config.pool_size) if isinstance(
                target, str) else target
            try:
                if migrate:
                    upgrade(engine)
                else:
                    at, head = current_revision(engine), head_revision()
                    if at != head:
                        raise StoreError(f'the database is at schema revision {at}, this server '
                                         f'needs {head}: run `lekiwi-fleet-server migrate`')
                store = cls(engine, config, owns_engine=owns)
                store._load(states=preload)
            except BaseException:
                if owns:
                    engine.dispose()
                raise
        return store

    @property
    def engine(self) -> Engine:
        """The engine (for maintenance tools and tests)."""
        return self._engine

    @property
    def config(self) -> StoreConfig:
        """The settings the store was opened with."""
        return self._config

    def _load(self, *, states: bool) -> None:
        with self._lock, self._writer.begin() as conn:
            self._history = TelemetryHistory.load(conn, self._config)
            if not states:
                return
            aggregates = snapshots.load_aggregates(conn)
            projections.catch_up(conn, aggregates)
            currents = {r.robot_id: ingest.current_from_row(r)
                        for r in conn.execute(sa.select(robot_current))}
        owns = self._config.owns
        self._states = {rid: RobotState(agg, currents.get(rid, CurrentState()))
                        for rid, agg in aggregates.items() if agg.enrolled and owns(rid)}
        log.info('store open: %d robots, telemetry %s', len(self._states), self._history.mode)

    def _ensure_loaded(self, conn: Connection, robot_ids: Iterable[str]) -> None:
        missing = [r for r in set(robot_ids) if r not in self._states]
        if not missing:
            return
        aggregates = snapshots.load_aggregates(conn, missing)
        currents = {r.robot_id: ingest.current_from_row(r) for r in conn.execute(
            sa.select(robot_current).where(robot_current.c.robot_id.in_(sorted(aggregates))))}
        for rid, agg in aggregates.items():
            if agg.enrolled:
                self._states[rid] = RobotState(agg, currents.get(rid, CurrentState()))

    def _forget(self, robot_ids: Collection[str]) -> None:
        for robot_id in robot_ids:
            self._states.pop(robot_id, None)
            self._dirty.discard(robot_id)  # its unflushed readings are lost (see the docstring)
        self._sequences.forget(robot_ids)

    # -- writes ----------------------------------------------------------------------------

    def commit_batch(self, messages: Sequence[RobotMessage],
                     presence: Sequence[PresenceChange] = (), *, now: float,
                     while_committing: Callable[[BatchResult], None] | None = None
                     ) -> BatchResult:
        """Store messages and presence changes in one transaction, idempotently."""
        with self._lock, translate_errors('commit_batch'):
            if now >= self._next_maintenance:
                self._maintain_quietly(now)
            # The fast path of plain state readings (issue 17): taken in memory, no statement.
            readings, messages = self._take_readings(messages, presence)
            if readings is not None and not messages and not presence:
                result = self._readings_result(readings, now)
                if while_committing is not None:
                    while_committing(result)
                self._readings_taken(readings)
                return result
            taken = self._readings_result(readings, now) if readings is not None else None
            answer = while_committing
            if taken is not None and while_committing is not None:
                answer = _answering_with(while_committing, taken)
            # Only ids that can be enrolled are looked up: anything else is refused by the plan.
            robot_ids = {r for r in ({m.robot_id for m in messages}
                                     | {p.robot_id for p in presence}) if _is_robot_id(r)}
            for attempt in (1, 2):
                try:
                    # The second attempt also looks up event message keys: a conflict on them
                    # means events committed before robot_sequences recorded their seqs.
                    result = self._commit(messages, presence, robot_ids, now,
                                          look_up_events=attempt == 2,
                                          while_committing=answer)
                    break
                except ConcurrencyConflict:
                    self._forget(robot_ids)
                    if attempt == 2:
                        raise
                    log.info('commit_batch: another writer moved a stream or stored a message '
                             'key; replanning')
                except BaseException:
                    self._forget(robot_ids)  # the commit's outcome may be unknown: reload
                    raise
            if readings is None or taken is None:
                return result
            # Committed: the readings' robots (none of them in the commit) take theirs too.
            self._readings_taken(readings)
            return _merged(result, taken)

    def _take_readings(self, messages: Sequence[RobotMessage],
                       presence: Sequence[PresenceChange]
                       ) -> tuple[ingest.Readings | None, Sequence[RobotMessage]]:
        """Split off the plain state readings; return them and the messages left to commit.

        A robot's state-space messages take the fast path when it is loaded and the batch has
        nothing else of it (a history message or a presence change goes through the commit
        with them, in order); a reading that yields an event sends all of its robot's
        messages to the commit. None: no message took the fast path.
        """
        states = self._states
        blocked = {p.robot_id for p in presence}
        blocked.update(m.robot_id for m in messages if not m.state_space)
        fast = [m for m in messages if m.state_space and m.robot_id not in blocked
                and m.robot_id in states]
        if not fast:
            return None, messages
        readings = ingest.take_readings(states, fast, self._config)
        if len(fast) == len(messages) and not readings.eventful:
            return readings, ()
        blocked |= readings.eventful
        rest = [m for m in messages if not m.state_space or m.robot_id in blocked
                or m.robot_id not in states]
        return readings, rest

    def _readings_result(self, readings: ingest.Readings, now: float) -> BatchResult:
        """Return what taking the readings did (the memory follows in `_readings_taken`)."""
        stale = self._config.stale_after_s
        taken = readings.states
        return BatchResult(
            acknowledged=tuple(readings.acknowledged), duplicates=readings.duplicates,
            changed_robots=tuple(queries.summary_from_state(taken[r], now=now,
                                                            stale_after_s=stale)
                                 for r in sorted(taken)),
            new_events=(), rejected=tuple(readings.rejected),
            deferred=len(readings.acknowledged) - readings.duplicates)

    def _readings_taken(self, readings: ingest.Readings) -> None:
        self._states.update(readings.states)
        self._dirty.update(readings.states)

    @contextmanager
    def _batch_transaction(self) -> Iterator[Connection]:
        """Begin a transaction on the connection commit_batch keeps between batches."""
        # A batch every few tens of milliseconds: checking a connection out of the pool (and
        # pinging it) each time cost a round trip per batch. After any failure the connection
        # is dropped, so the next batch checks out (and pings) a fresh one.
        conn = self._write_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._write_conn = self._writer.connect()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._write_conn = None
            with suppress(Exception):
                conn.close()
            raise

    def _commit(self, messages: Sequence[RobotMessage], presence: Sequence[PresenceChange],
                robot_ids: set[str], now: float, *, look_up_events: bool,
                while_committing: Callable[[BatchResult], None] | None) -> BatchResult:
        result: BatchResult | None = None

        def decided(recorded: list[RecordedEvent]) -> None:
            # The hot writes are on their way: answer while the database works on them.
            nonlocal result
            result = self._result(plan, recorded, now)
            if while_committing is not None:
                while_committing(result)

        with self._batch_transaction() as conn:
            self._ensure_loaded(conn, robot_ids)
            self._sequences.ensure_loaded(conn, ingest.boot_pairs(messages, self._states))
            stored: set[tuple[str, str, int]] = set()
            if look_up_events:
                keys = ingest.event_message_keys(messages)
                stored = event_store.stored_message_keys(conn, keys) if keys else set()
            plan = ingest.plan_batch(self._states, self._sequences.records, messages, presence,
                                     self._config, now=now, stored_keys=stored,
                                     dirty=self._dirty)
            made = self._history.create_partitions(conn, self._history.missing_partitions(
                r['sampled_ms'] for r in plan.telemetry_rows))
            ingest.write_batch(conn, plan, self._history, now=now, decided=decided)
        # Committed: now the memory may follow.
        self._history.partitions_created(made)
        self._sequences.committed(plan.sequences)
        self._states.update(plan.states)
        self._dirty.difference_update(plan.cleaned)
        self._dirty.update(plan.deferred - plan.cleaned)
        assert result is not None, 'write_batch calls decided once the writes are sent'
        return result

    def _result(self, plan: ingest.BatchPlan, recorded: list[RecordedEvent],
                now: float) -> BatchResult:
        """Return what a batch did, from its plan (the memory follows only once committed)."""
        states = self._states
        stale = self._config.stale_after_s
        return BatchResult(
            acknowledged=tuple(plan.acknowledged), duplicates=plan.duplicates,
            changed_robots=tuple(queries.summary_from_state(plan.states[r], now=now,
                                                            stale_after_s=stale)
                                 for r in sorted(plan.states)
                                 if plan.states[r] is not states.get(r)),
            new_events=tuple(recorded), rejected=tuple(plan.rejected),
            deferred=plan.deferred_messages)

    def flush_state(self, *, now: float) -> int:
        """Write the dirty robots' current-state rows in one statement; return how many."""
        with self._lock, translate_errors('flush_state'):
            return self._flush(set(self._dirty))  # the rows carry their own times

    def _flush(self, robot_ids: Collection[str]) -> int:
        rows = ingest.flush_rows(self._states, robot_ids)
        if not rows:
            self._dirty.difference_update(robot_ids)
            return 0
        # On failure the robots stay dirty (the memory is still right): the next flush retries.
        with self._batch_transaction() as conn:
            upsert.update_rows(conn, robot_current, rows, 'robot_id')
        self._dirty.difference_update(robot_ids)
        return len(rows)

    def _flush_quietly(self, robot_ids: Collection[str]) -> None:
        """Flush these robots before their memory is dropped (a failure loses their readings)."""
        dirty = self._dirty.intersection(robot_ids)
        if not dirty:
            return
        try:
            with translate_errors('flush_state'):
                self._flush(dirty)
        except StoreError as exc:
            log.warning('could not write the readings of %d robots before reloading them: %s',
                        len(dirty), exc)

    def _commit_outcomes(self, conn: Connection, outcomes: Sequence[ingest.Outcome],
                         causation: str, now: float, actor: str | None = None
                         ) -> ingest.BatchPlan:
        plan = ingest.plan_outcomes(self._states, outcomes, causation, self._config, actor)
        ingest.write_batch(conn, plan, self._history, now=now)
        return plan

    def enrol_robot(self, robot_id: str, token_sha256: str, tags: Sequence[str], *,
                    now: float, actor: str | None = None) -> RobotSummary:
        """Enrol a robot with its token's SHA-256 (hex); the token itself is never stored."""
        _check_robot_id(robot_id)
        _check_sha256(token_sha256)
        clean_tags = _check_tags(tags)

        def write(conn: Connection, state: RobotState | None) -> ingest.BatchPlan:
            state = state or RobotState(RobotAggregate(robot_id))
            if state.aggregate.enrolled:
                raise RobotAlreadyEnrolled(
                    f'robot {robot_id!r} is revoked: re-enrol it' if state.aggregate.revoked
                    else f'robot {robot_id!r} is enrolled already')
            plan = self._commit_outcomes(conn, [state.on_enrol(clean_tags, now)], 'admin:enrol',
                                         now, actor)
            try:  # the transaction is rolled back by the raise below
                conn.execute(sa.insert(credentials).values(
                    robot_id=robot_id, token_sha256=token_sha256, revoked=False, updated_at=now))
            except IntegrityError as exc:
                raise RobotAlreadyEnrolled(f'robot {robot_id!r} is enrolled already') from exc
            return plan

        self._admin_write('enrol_robot', robot_id, write)
        return self._summary(robot_id, now)

    def record_robot_event(self, event: DomainEvent, *, now: float, actor: str | None = None,
                           causation: str = 'admin:record') -> None:
        """Append a state-less event (a command sent, a presence report) to a robot's stream."""
        if not self.record_robot_events([event], now=now, actor=actor, causation=causation):
            raise UnknownRobot(f'no robot {event.robot_id!r} is enrolled')

    def record_robot_events(self, events: Sequence[DomainEvent], *, now: float,
                            actor: str | None = None, causation: str = 'admin:record') -> int:
        """Append state-less events of any robots in one transaction; return how many.

        Events of robots not enrolled are skipped. Unlike the admin writes nothing is
        announced: these change no robot's credentials or state, so no server re-checks.
        """
        robot_ids = list(dict.fromkeys(e.robot_id for e in events if _is_robot_id(e.robot_id)))
        if not robot_ids:
            return 0
        with self._lock, translate_errors('record_robot_events'):
            for attempt in range(1, ADMIN_WRITE_ATTEMPTS + 1):
                # Read back, as an admin write does: another process may have appended.
                self._forget(robot_ids)
                try:
                    with self._writer.begin() as conn:
                        conn.execute(sa.select(event_counter).with_for_update())
                        self._ensure_loaded(conn, robot_ids)
                        outcomes: list[ingest.Outcome] = []
                        latest: dict[str, RobotState] = {}
                        for event in events:
                            state = latest.get(event.robot_id) or self._states.get(event.robot_id)
                            if state is None or not state.aggregate.enrolled:
                                continue
                            outcome = state.on_recorded(event)
                            latest[event.robot_id] = outcome.state
                            outcomes.append(outcome)
                        if not outcomes:
                            return 0
                        plan = self._commit_outcomes(conn, outcomes, causation, now, actor)
                except ConcurrencyConflict:
                    self._forget(robot_ids)
                    if attempt == ADMIN_WRITE_ATTEMPTS:
                        raise
                    continue
                except BaseException:
                    self._forget(robot_ids)
                    raise
                self._states.update(plan.states)
                return len(outcomes)
        return 0  # not reached: the last attempt returns or raises

    def revoke_robot(self, robot_id: str, *, now: float, actor: str | None = None) -> None:
        """Revoke a robot's token (the gateway refuses it from now on); idempotent."""
        if not _is_robot_id(robot_id):
            raise UnknownRobot(f'no robot {robot_id!r} is enrolled')

        def write(conn: Connection, state: RobotState | None) -> ingest.BatchPlan:
            if state is None:
                raise UnknownRobot(f'no robot {robot_id!r} is enrolled')
            plan = self._commit_outcomes(conn, [state.on_revoke(now)], 'admin:revoke', now,
                                         actor)
            conn.execute(sa.update(credentials).where(credentials.c.robot_id == robot_id)
                         .values(revoked=True, updated_at=now))
            return plan

        self._admin_write('revoke_robot', robot_id, write)

    def rotate_robot_token(self, robot_id: str, token_sha256: str, *, by: str,
                           now: float) -> None:
        """Give an enrolled, unrevoked robot a new token hash (the old one is refused)."""
        if not _is_robot_id(robot_id):
            raise UnknownRobot(f'no robot {robot_id!r} is enrolled')
        _check_sha256(token_sha256)

        def write(conn: Connection, state: RobotState | None) -> ingest.BatchPlan:
            if state is None:
                raise UnknownRobot(f'no robot {robot_id!r} is enrolled')
            if state.aggregate.revoked:
                raise RobotRevoked(f'robot {robot_id!r} is revoked: re-enrol it')
            plan = self._commit_outcomes(conn, [state.on_rotate_token(now, by)],
                                         'admin:rotate-token', now, by)
            conn.execute(sa.update(credentials).where(credentials.c.robot_id == robot_id)
                         .values(token_sha256=token_sha256, updated_at=now))
            return plan

        self._admin_write('rotate_robot_token', robot_id, write)

    def reenrol_robot(self, robot_id: str, token_sha256: str, tags: Sequence[str], *,
                      by: str, now: float) -> RobotSummary:
        """Enrol a revoked robot again with a new token hash and tags."""
        if not _is_robot_id(robot_id):
            raise UnknownRobot(f'no robot {robot_id!r} is enrolled')
        _check_sha256(token_sha256)
        clean_tags = _check_tags(tags)

        def write(conn: Connection, state: RobotState | None) -> ingest.BatchPlan:
            if state is None:
                raise UnknownRobot(f'no robot {robot_id!r} is enrolled')
            if not state.aggregate.revoked:
                raise RobotAlreadyEnrolled(
                    f'robot {robot_id!r} is not revoked: rotate its token instead')
            plan = self._commit_outcomes(conn, [state.on_reenrol(clean_tags, now, by)],
                                         'admin:reenrol', now, by)
            conn.execute(sa.update(credentials).where(credentials.c.robot_id == robot_id)
                         .values(token_sha256=token_sha256, revoked=False, updated_at=now))
            return plan

        self._admin_write('reenrol_robot', robot_id, write)
        return self._summary(robot_id, now)

    def _admin_write(self, action: str, robot_id: str,
                     write: Callable[[Connection, RobotState | None], ingest.BatchPlan]) -> None:
        """Run an admin write about one robot on its state read back; retry on a conflict.

        Admin writes are rare and may follow a write of another process (the CLI, or the
        server's writer appending a robot's events while the CLI revokes it): each attempt
        reads the robot back instead of trusting memory, so a stale stream version never
        surfaces (it was an HTTP 500 once), and a concurrent append makes it try again.
        Committed, it is announced to listening servers (store/changes.py).
        """
        with self._lock, translate_errors(action):
            self._flush_quietly([robot_id])
            for attempt in range(1, ADMIN_WRITE_ATTEMPTS + 1):
                self._forget([robot_id])
                try:
                    with self._writer.begin() as conn:
                        # Take the event counter's lock before reading the robot back: a
                        # writer appending its events (a robot sending) commits first, so the
                        # version read is the one to append at (store/event_store.py). Without
                        # it the CLI lost that race to a busy writer every time. SQLite's
                        # BEGIN IMMEDIATE serialises writers already (FOR UPDATE is ignored).
                        conn.execute(sa.select(event_counter).with_for_update())
                        self._ensure_loaded(conn, [robot_id])
                        plan = write(conn, self._states.get(robot_id))
                        changes.announce(conn, 'robot', robot_id)
                except ConcurrencyConflict:
                    self._forget([robot_id])
                    if attempt == ADMIN_WRITE_ATTEMPTS:
                        raise
                    continue
                except BaseException:
                    self._forget([robot_id])
                    raise
                self._states.update(plan.states)
                return

    def _summary(self, robot_id: str, now: float) -> RobotSummary:
        return queries.summary_from_state(self._states[robot_id], now=now,
                                          stale_after_s=self._config.stale_after_s)

    def forget_robots(self, robot_ids: Sequence[str]) -> None:
        """Drop the remembered state of these robots: the next batch reloads it."""
        with self._lock:
            self._flush_quietly(robot_ids)
            self._forget(list(robot_ids))

    def mark_all_offline(self, *, now: float, reason: str = 'server_restart') -> int:
        """Record every robot the read model shows online as offline; return how many."""
        with self._lock, translate_errors('mark_all_offline'):
            try:
                with self._writer.begin() as conn:
                    owns = self._config.owns  # other shards' writers mark their own
                    online = [r for (r,) in conn.execute(
                        sa.select(robots.c.robot_id).where(robots.c.online.is_(True)))
                        if owns(r)]
                    self._ensure_loaded(conn, online)
                    outcomes = [self._states[r].on_presence(False, now, reason)
                                for r in sorted(online) if r in self._states]
                    plan = self._commit_outcomes(conn, outcomes, f'presence:{reason}', now)
            except BaseException:
                self._states.clear()  # reloaded robot by robot as batches need them
                self._dirty.clear()
                raise
            self._states.update(plan.states)
            return sum(len(a.events) for a in plan.appends)

    def create_operator(self, name: str, role: OperatorRole, token_sha256: str, *,
                        now: float) -> Operator:
        """Create an API operator identified by its token's SHA-256 (hex)."""
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise InvalidQuery('operator name must be 1..128 characters')
        if role not in ROLES:
            raise InvalidQuery(f'role must be one of {", ".join(ROLES)}')
        _check_sha256(token_sha256)
        with translate_errors('create_operator'):
            try:
                with self._writer.begin() as conn:
                    conn.execute(sa.insert(operators).values(
                        token_sha256=token_sha256, name=name, role=role, created_at=now,
                        revoked=False))
                    changes.announce(conn, 'operator', name)
            except IntegrityError as exc:
                raise OperatorAlreadyExists('an operator with this token exists already') from exc
        return Operator(name=name, role=role, token_sha256=token_sha256, created_at=now)

    def maintain(self, *, now: float) -> None:
        """Make telemetry partitions ahead and apply retention."""
        with self._lock, translate_errors('maintain'):
            self._maintain(now)

    def _maintain_quietly(self, now: float) -> None:
        # Maintenance must never keep robot data from being stored: a batch makes the
        # partitions it needs itself, and a failed retention run is tried again later.
        try:
            with translate_errors('maintain'):
                self._maintain(now)
        except StoreError as exc:
            log.warning('telemetry maintenance failed, retrying in a minute: %s', exc)
            self._next_maintenance = now + 60.0

    def _maintain(self, now: float) -> None:
        if self._config.shard_index != 0:  # one writer makes and drops partitions
            self._next_maintenance = float('inf')
            return
        with self._writer.begin() as conn:
            made, dropped = self._history.maintain(conn, now)
        if made or dropped:
            log.info('telemetry: %d partitions made, %d dropped', len(made), dropped)
        self._next_maintenance = now + min(3600.0, self._config.telemetry_partition_s / 4)

    def rebuild_projections(self) -> int:
        """Replay the event log into emptied read models; return how many events it replayed."""
        with self._lock, translate_errors('rebuild_projections'), self._writer.begin() as conn:
            return projections.rebuild(conn)

    # -- reads -----------------------------------------------------------------------------

    def robot_credentials(self, robot_id: str) -> RobotCredentials | None:
        """Return a robot's token hash and revocation, None when not enrolled."""
        if not _is_robot_id(robot_id):
            return None
        with translate_errors('robot_credentials'), self._engine.connect() as conn:
            return queries.robot_credentials(conn, robot_id)

    def operator_by_token(self, token_sha256: str) -> Operator | None:
        """Return the operator with this token hash, None when there is none."""
        if not isinstance(token_sha256, str) or not SHA256_HEX.fullmatch(token_sha256):
            return None
        with translate_errors('operator_by_token'), self._engine.connect() as conn:
            return queries.operator_by_token(conn, token_sha256)

    def list_robots(self, robot_filter: RobotFilter, *, now: float) -> list[RobotSummary]:
        """Return the robots matching the filter, status derived at `now`."""
        _check_filter(robot_filter)
        with translate_errors('list_robots'), self._engine.connect() as conn:
            return queries.list_robots(conn, robot_filter, now=now,
                                       stale_after_s=self._config.stale_after_s)

    def get_robot(self, robot_id: str, *, now: float) -> RobotSummary | None:
        """Return one robot's summary at `now`, None when it is not enrolled."""
        if not _is_robot_id(robot_id):
            return None
        with translate_errors('get_robot'), self._engine.connect() as conn:
            return queries.get_robot(conn, robot_id, now=now,
                                     stale_after_s=self._config.stale_after_s)

    def robot_timeline(self, robot_id: str, after_position: int, limit: int) -> EventPage:
        """Return a page of a robot's events after `after_position`."""
        if not _is_robot_id(robot_id):
            robot_id = ''  # matches no stream; the page checks still apply
        with translate_errors('robot_timeline'), self._engine.connect() as conn:
            return queries.robot_timeline(conn, robot_id, after_position, limit)

    def fleet_timeline(self, after_position: int, limit: int,
                       robot_id: str | None = None) -> TimelinePage:
        """Return a page of timeline entries (of one robot, or of all)."""
        if robot_id is not None and not _is_robot_id(robot_id):
            robot_id = ''
        with translate_errors('fleet_timeline'), self._engine.connect() as conn:
            return queries.fleet_timeline(conn, after_position, limit, robot_id)

    def teleop_sessions(self, robot_id: str, limit: int = 100) -> list[TeleopSession]:
        """Return a robot's teleop sessions, newest first."""
        if not _is_robot_id(robot_id):
            robot_id = ''
        with translate_errors('teleop_sessions'), self._engine.connect() as conn:
            return queries.list_teleop_sessions(conn, robot_id, limit)

    def robot_sequences(self, robot_id: str) -> dict[str, SequenceCoverage]:
        """Return the committed sequence numbers of a robot per boot, oldest boot first."""
        if not _is_robot_id(robot_id):
            return {}
        with translate_errors('robot_sequences'), self._engine.connect() as conn:
            return sequences.coverage(conn, robot_id)

    def undelivered_messages(self) -> dict[str, int]:
        """Return, per robot, how many messages of its current boot have not arrived yet."""
        with translate_errors('undelivered_messages'), self._engine.connect() as conn:
            return sequences.undelivered(conn)

    def fleet_summary(self, *, now: float) -> FleetSummary:
        """Return counts by status and version at `now`."""
        with translate_errors('fleet_summary'), self._engine.connect() as conn:
            return queries.fleet_summary(conn, now=now, stale_after_s=self._config.stale_after_s)

    def telemetry_range(self, robot_id: str, start: float, end: float, bucket_s: float,
                        fields: Sequence[str] | None = None) -> list[TelemetryPoint]:
        """Return bucket means of telemetry fields over [start, end)."""
        if not _is_robot_id(robot_id):
            robot_id = ''
        with translate_errors('telemetry_range'), self._engine.connect() as conn:
            return self._history.range(conn, robot_id, start, end, bucket_s, fields)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""
        with translate_errors('ping'), self._engine.connect() as conn:
            conn.execute(sa.text('SELECT 1'))

    def close(self) -> None:
        """Write pending readings, release the database connections (if the store made them)."""
        with self._lock:
            self._flush_quietly(list(self._dirty))
            if self._write_conn is not None:
                with suppress(Exception):
                    self._write_conn.close()
                self._write_conn = None
        if self._owns_engine:
            self._engine.dispose()


def _merged(committed: BatchResult, readings: BatchResult) -> BatchResult:
    """Return a commit's result with the result of its batch's readings taken in memory."""
    robots = committed.changed_robots + readings.changed_robots
    return BatchResult(
        acknowledged=committed.acknowledged + readings.acknowledged,
        duplicates=committed.duplicates + readings.duplicates,
        changed_robots=tuple(sorted(robots, key=_summary_id)) if committed.changed_robots
        else readings.changed_robots,
        new_events=committed.new_events, rejected=committed.rejected + readings.rejected,
        deferred=committed.deferred + readings.deferred)


def _answering_with(while_committing: Callable[[BatchResult], None], readings: BatchResult
                    ) -> Callable[[BatchResult], None]:
    """Return a while_committing that also answers the readings taken in memory."""
    def answer(committed: BatchResult) -> None:
        while_committing(_merged(committed, readings))
    return answer


def _summary_id(summary: RobotSummary) -> str:
    return summary.robot_id


def _is_robot_id(value: object) -> bool:
    return isinstance(value, str) and ROBOT_ID.fullmatch(value) is not None


def _check_robot_id(robot_id: str) -> None:
    if not _is_robot_id(robot_id):
        raise InvalidQuery('robot_id must be 1..64 characters of A-Z a-z 0-9 . _ -')


def _check_sha256(token_sha256: str) -> None:
    if not isinstance(token_sha256, str) or not SHA256_HEX.fullmatch(token_sha256):
        raise InvalidQuery('token_sha256 must be 64 lower-case hex digits')


def _check_filter(robot_filter: RobotFilter) -> None:
    if robot_filter.tag is not None and not (isinstance(robot_filter.tag, str)
                                             and TAG.fullmatch(robot_filter.tag)):
        raise InvalidQuery('tag: 1..64 characters of A-Z a-z 0-9 . _ : = / -')
    version = robot_filter.software_version
    if version is not None and not (isinstance(version, str) and len(version) <= 128
                                    and version.isprintable()):
        raise InvalidQuery('software_version: at most 128 printable characters')


def _check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise InvalidQuery('tags must be a list of strings')
    clean = tuple(dict.fromkeys(tags))
    if len(clean) > MAX_TAGS:
        raise InvalidQuery(f'at most {MAX_TAGS} tags')
    for tag in clean:
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise InvalidQuery(f'tag {tag!r}: 1..64 characters of A-Z a-z 0-9 . _ : = / -')
    return clean
