"""commit_batch: turn robot messages and presence changes into one transaction's writes.

`plan_batch` is pure: from the robots' states, the committed sequence numbers of the batch's
boots and the batch, it decides what is acknowledged, refused or a duplicate, which events to
append, which current state, sequence and telemetry rows to write. `write_batch` runs the plan's
statements in the caller's transaction: a few statements per batch, not a statement per robot.

Volatile and durable (issue 17): a state-space message (`RobotMessage.state_space`, a
lekiwi-fleet/2 heartbeat or teleop status) that yields no event changes only readings that the
next message supersedes anyway. Its robot is *deferred*: the plan takes its next state (so it is
acknowledged and shown) but writes no row for it; the store writes the current-state rows of its
deferred robots coalesced, in one statement per `flush_state`. Whatever yields an event, and
every history-space message (all of a lekiwi-fleet/1 robot's), is written before its ack as
before; a deferred robot's readings ride along in that robot's row when it has one to write.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.schema import robot_current
from lekiwi_fleet_server.domain import topics
from lekiwi_fleet_server.domain.robot_state import (
    CurrentState,
    InvalidRobotMessage,
    Outcome,
    RobotState,
)
from lekiwi_fleet_server.domain.seq_ranges import SeqRanges, TooManyRanges
from lekiwi_fleet_server.domain.telemetry_codec import TelemetryState
from lekiwi_fleet_server.store import event_store, hot_writes, projections, snapshots, telemetry
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.event_store import NewEvent, StreamAppend
from lekiwi_fleet_server.store.interface import (
    MessageKey,
    PresenceChange,
    RecordedEvent,
    RejectedMessage,
    RobotMessage,
)
from lekiwi_fleet_server.store.sequences import BootRecord, Pair
from lekiwi_fleet_server.store.upsert import upsert

# Topics whose messages are events: the events table's unique message keys guard them too.
EVENT_TOPICS = frozenset({topics.EVENTS, topics.DEPLOYMENT_STATUS})
# Topics that may be numbered in the state space (lekiwi-fleet/2's `state_seq`).
STATE_TOPICS = frozenset({topics.HEARTBEAT, topics.TELEOP_STATUS})


# Columns of robot_current by what changes them: a batch writes only the groups it changed
# (a heartbeat batch leaves the telemetry and teleop columns alone).
CURRENT_GROUPS: tuple[tuple[str, ...], ...] = (
    ('last_heartbeat_at', 'heartbeat_stamp', 'heartbeat_boot_id', 'heartbeat_seq',
     'heartbeat_sequence', 'state', 'resources', 'uplink_transport'),
    ('teleop_active', 'teleop_score', 'teleop', 'teleop_boot_id', 'teleop_seq',
     'teleop_stamp'),
    ('telemetry', 'telemetry_at'),
    ('boot_id', 'last_seq'),
)
_CURRENT_COLUMNS = tuple(c for group in CURRENT_GROUPS for c in group)
# One C call fetches a group's values as a tuple; tuples compare item by item, identity first.
_GROUP_GETTERS = tuple((operator.attrgetter(*group), group) for group in CURRENT_GROUPS)


@dataclass(slots=True)
class BatchPlan:
    """Everything one batch writes, decided before any statement runs."""

    states: dict[str, RobotState] = field(default_factory=dict)  # next states, touched robots
    appends: list[StreamAppend] = field(default_factory=list)
    current_rows: list[dict[str, Any]] = field(default_factory=list)  # whole rows: upsert
    current_updates: list[dict[str, Any]] = field(default_factory=list)  # changed groups only
    telemetry_rows: list[dict[str, Any]] = field(default_factory=list)
    sequences: dict[Pair, BootRecord] = field(default_factory=dict)  # boots that gained seqs
    snapshot_robots: list[str] = field(default_factory=list)
    acknowledged: list[MessageKey] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    duplicates: int = 0
    # Robots of which the batch changed only readings of state-space messages: no row now,
    # the next flush_state writes them. `durable` names the robots with something to store.
    deferred: set[str] = field(default_factory=set)
    durable: set[str] = field(default_factory=set)
    deferred_messages: int = 0  # acknowledged state-space messages that wrote nothing yet
    cleaned: set[str] = field(default_factory=set)  # robots whose readings this batch writes


def event_message_keys(messages: Sequence[RobotMessage]) -> list[tuple[str, str, int]]:
    """Return the keys of the batch's event messages (to look up after a key conflict)."""
    return [(m.robot_id, m.boot_id, m.seq) for m in messages
            if m.topic in EVENT_TOPICS and envelope_problem(m) is None]


def boot_pairs(messages: Sequence[RobotMessage],
               robot_ids: Collection[str]) -> set[Pair]:
    """Return the (robot_id, boot_id) pairs of the history messages of the given robots."""
    # State-space messages have no sequence record: looking their boots up found nothing.
    return {(m.robot_id, m.boot_id) for m in messages
            if not m.state_space and m.robot_id in robot_ids}


def envelope_problem(message: RobotMessage) -> str | None:
    """Return why a message's robot_id, boot_id or seq cannot be stored, None when they can."""
    for name in ('robot_id', 'boot_id'):
        value = getattr(message, name)
        if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
            return f'{name} must be 1..64 printable characters'
    seq = message.seq
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        return 'seq must be an integer 0..2^63-1'
    if message.msg.__class__ is not dict and not isinstance(message.msg, Mapping):
        return 'msg must be an object'
    return None


def _order(messages: Sequence[RobotMessage],
           presence: Sequence[PresenceChange]) -> list[RobotMessage | PresenceChange]:
    # One timeline per batch: a robot that connected, sent and left within 50 ms gets its
    # events in that order. At equal times a connect goes first and a disconnect last.
    if not presence:
        return list(messages)  # already in arrival order: most batches skip the sort
    keyed: list[tuple[float, int, int, RobotMessage | PresenceChange]] = []
    for i, change in enumerate(presence):
        keyed.append((change.at, 0 if change.online else 2, i, change))
    for i, message in enumerate(messages):
        keyed.append((message.received_at, 1, i, message))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def plan_batch(
    states: Mapping[str, RobotState],
    records: Mapping[Pair, BootRecord],
    messages: Sequence[RobotMessage],
    presence: Sequence[PresenceChange],
    config: StoreConfig,
    *,
    now: float,
    stored_keys: Collection[tuple[str, str, int]] = frozenset(),
    dirty: Collection[str] = frozenset(),
) -> BatchPlan:
    """Decide what the batch does (pure: `states` and `records` are not modified).

    `records` holds the committed seqs of the batch's boots (a boot it lacks has none);
    `stored_keys` names event messages found in the events table though not in `records`;
    `dirty` the robots whose readings in `states` wait for a flush (a row the batch writes for
    one of them carries its readings too, so the flush need not write it again).
    """
    plan = BatchPlan()
    pending: dict[str, list[NewEvent]] = {}
    touched: dict[Pair, BootRecord] = {}  # copies of the records, changed as messages commit
    for item in _order(messages, presence):
        if isinstance(item, PresenceChange):
            state = plan.states.get(item.robot_id) or states.get(item.robot_id)
            if state is None or not state.aggregate.enrolled:
                continue  # the gateway only sees enrolled robots; nothing to record otherwise
            outcome = state.on_presence(item.online, item.at, item.reason)
            _take(plan, pending, outcome, None, f'presence:{item.reason}')
            plan.durable.add(item.robot_id)
            continue
        if item.state_space:
            _plan_state(plan, pending, states, item, config)
            continue
        key = MessageKey(item.robot_id, item.boot_id, item.seq)
        problem = envelope_problem(item)
        if problem is not None:
            plan.rejected.append(RejectedMessage(key, problem))
            continue
        pair = (item.robot_id, item.boot_id)
        record = touched.get(pair)
        if record is None:
            committed = records.get(pair)
            record = touched[pair] = (committed.copy() if committed is not None
                                      else BootRecord(SeqRanges()))
        seq = item.seq
        if seq in record.ranges:
            plan.acknowledged.append(key)
            plan.duplicates += 1
            continue
        if stored_keys and (item.robot_id, item.boot_id, seq) in stored_keys:
            record.ranges.add(seq)  # committed before robot_sequences knew it: record it now
            plan.acknowledged.append(key)
            plan.duplicates += 1
            continue
        state = plan.states.get(item.robot_id) or states.get(item.robot_id)
        if state is None or not state.aggregate.enrolled:
            plan.rejected.append(RejectedMessage(key, f'robot {item.robot_id!r} is not enrolled'))
            continue
        if state.aggregate.revoked:
            # The gateway closes a revoked robot's session, but frames it sent before that
            # may still be queued: none of them is stored.
            plan.rejected.append(RejectedMessage(key, f'robot {item.robot_id!r} is revoked'))
            continue
        try:
            outcome = _apply(state, item, config)
            # The outcome is taken only once its seq is recorded: refused, it changes nothing.
            record.ranges.add(seq, config.max_seq_ranges)
        except InvalidRobotMessage as exc:
            plan.rejected.append(RejectedMessage(key, f'{item.topic}: {exc}'))
            continue
        except TooManyRanges as exc:
            plan.rejected.append(RejectedMessage(
                key, f'boot {item.boot_id}: {exc} of seq (an uplink numbers without gaps)'))
            continue
        plan.acknowledged.append(key)
        plan.durable.add(item.robot_id)  # its seq is recorded: the robot has a row to write
        if not outcome.stored:
            plan.duplicates += 1
            continue
        _take(plan, pending, outcome, item, item.topic)
        if outcome.telemetry is not None:
            history = outcome.telemetry
            plan.telemetry_rows.append(telemetry.row(
                item.robot_id, item.boot_id, seq,
                telemetry.sampled_ms(history.delta.stamp, item.received_at,
                                     config.telemetry_max_future_s),
                item.received_at, history.delta.full_snapshot, history.complete,
                history.values))
    for pair, record in touched.items():
        committed = records.get(pair)
        if len(record.ranges) != (len(committed.ranges) if committed is not None else 0):
            if record.first_seen_at is None:
                record.first_seen_at = now
            plan.sequences[pair] = record
    _finish(plan, pending, states, config, dirty)
    return plan


def _plan_state(plan: BatchPlan, pending: dict[str, list[NewEvent]],
                states: Mapping[str, RobotState], item: RobotMessage,
                config: StoreConfig) -> None:
    """Plan one state-space message: durable when it yields an event, else deferred."""
    key = MessageKey(item.robot_id, item.boot_id, item.seq, True)
    problem = envelope_problem(item)
    if problem is None and item.topic not in STATE_TOPICS:
        problem = f'{item.topic}: a history topic has no state_seq'
    if problem is not None:
        plan.rejected.append(RejectedMessage(key, problem))
        return
    state = plan.states.get(item.robot_id) or states.get(item.robot_id)
    if state is None or not state.aggregate.enrolled:
        plan.rejected.append(RejectedMessage(key, f'robot {item.robot_id!r} is not enrolled'))
        return
    if state.aggregate.revoked:
        plan.rejected.append(RejectedMessage(key, f'robot {item.robot_id!r} is revoked'))
        return
    try:
        outcome = _apply(state, item, config)
    except InvalidRobotMessage as exc:
        plan.rejected.append(RejectedMessage(key, f'{item.topic}: {exc}'))
        return
    plan.acknowledged.append(key)
    # No robot_sequences record: a state message is idempotent by its (boot_id, state_seq)
    # against the robot's current state (is_newer), which a redelivery does not pass.
    if not outcome.stored:
        plan.duplicates += 1
        return
    if outcome.events:
        # An event: stored before the ack, with the robot's row (the events' message key
        # columns stay empty: a state seq would collide with the history seqs' key).
        plan.states[item.robot_id] = outcome.state
        target = pending.setdefault(item.robot_id, [])
        for part, event in enumerate(outcome.events):
            target.append(NewEvent(event, boot_id=item.boot_id, seq_part=part,
                                   causation=item.topic, state_seq=item.seq))
        plan.durable.add(item.robot_id)
        return
    plan.states[item.robot_id] = outcome.state
    plan.deferred.add(item.robot_id)
    plan.deferred_messages += 1


@dataclass(slots=True)
class Readings:
    """State readings taken in memory, without a transaction (`take_readings`)."""

    states: dict[str, RobotState] = field(default_factory=dict)  # next states, robots taken
    acknowledged: list[MessageKey] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    duplicates: int = 0
    # Robots with a reading that yields an event: none of their messages is taken here, the
    # caller commits them all, in order, durably before their acks (plan_batch).
    eventful: set[str] = field(default_factory=set)


def take_readings(states: Mapping[str, RobotState], messages: Sequence[RobotMessage],
                  config: StoreConfig) -> Readings:
    """Take the state-space messages of loaded robots that yield no event (pure).

    The fast path of a plain lekiwi-fleet/2 heartbeat or teleop status: no sequence record,
    no plan of statements, no transaction; the caller acknowledges what this takes once its
    memory holds the states, and writes them with the next flush. `messages` are state-space
    messages of robots in `states` whose batch holds nothing else of them (no history message,
    no presence change). Same answers as plan_batch's for them (`_plan_state`).
    """
    out = Readings()
    taken = out.states
    eventful = out.eventful
    acknowledged, rejected = out.acknowledged, out.rejected
    duplicate_robots: list[str] = []
    for item in messages:
        robot_id = item.robot_id
        if robot_id in eventful:
            continue
        key = MessageKey(robot_id, item.boot_id, item.seq, True)
        problem = envelope_problem(item)
        if problem is None and item.topic not in STATE_TOPICS:
            problem = f'{item.topic}: a history topic has no state_seq'
        if problem is not None:
            rejected.append(RejectedMessage(key, problem))
            continue
        state = taken.get(robot_id) or states[robot_id]
        aggregate = state.aggregate
        if not aggregate.enrolled or aggregate.revoked:
            why = 'revoked' if aggregate.enrolled else 'not enrolled'
            rejected.append(RejectedMessage(key, f'robot {robot_id!r} is {why}'))
            continue
        try:
            outcome = _apply(state, item, config)
        except InvalidRobotMessage as exc:
            rejected.append(RejectedMessage(key, f'{item.topic}: {exc}'))
            continue
        if outcome.events:
            eventful.add(robot_id)
            continue
        acknowledged.append(key)
        if outcome.stored:
            taken[robot_id] = outcome.state
        else:
            duplicate_robots.append(robot_id)
    if eventful:  # whatever was taken of them before their event goes to the commit too
        out.acknowledged = [k for k in acknowledged if k.robot_id not in eventful]
        out.rejected = [r for r in rejected if r.key.robot_id not in eventful]
        for robot_id in eventful:
            taken.pop(robot_id, None)
        duplicate_robots = [r for r in duplicate_robots if r not in eventful]
    out.duplicates = len(duplicate_robots)
    return out


def _finish(plan: BatchPlan, pending: Mapping[str, list[NewEvent]],
            states: Mapping[str, RobotState], config: StoreConfig,
            dirty: Collection[str] = frozenset()) -> None:
    # Each robot's events go in one append expecting the version its state had before.
    for robot_id, new_events in pending.items():
        before = states[robot_id].aggregate.version if robot_id in states else 0
        plan.appends.append(StreamAppend(event_store.stream_id(robot_id), before, new_events))
        if snapshots.is_due(before, plan.states[robot_id].aggregate.version,
                            config.snapshot_every):
            plan.snapshot_robots.append(robot_id)
    for robot_id, state in plan.states.items():
        if robot_id in plan.deferred and robot_id not in plan.durable:
            continue  # readings only: flush_state writes them
        previous = states.get(robot_id)
        if previous is None:
            plan.current_rows.append(current_row(robot_id, state.current))
        elif state.current is not previous.current:
            columns = changed_columns(previous.current, state.current)
            if robot_id in dirty or robot_id in plan.deferred:
                # A row is written anyway: with the readings in it, the robot is clean.
                columns = tuple(dict.fromkeys(columns + FLUSH_COLUMNS))
                plan.cleaned.add(robot_id)
            if columns:
                plan.current_updates.append(current_row(robot_id, state.current, columns))


def changed_columns(before: CurrentState, after: CurrentState) -> tuple[str, ...]:
    """Return the robot_current columns of every group in which `after` differs."""
    out: list[str] = []
    for get, group in _GROUP_GETTERS:
        if get(before) != get(after):
            out.extend(group)
    return tuple(out)


def _apply(state: RobotState, message: RobotMessage, config: StoreConfig) -> Outcome:
    args = (message.boot_id, message.seq, message.msg, message.received_at)
    if message.topic == topics.HEARTBEAT:
        return state.on_heartbeat(*args, config.alarms, message.state_space)
    if message.topic == topics.TELEOP_STATUS:
        return state.on_teleop_status(*args, message.state_space)
    if message.topic == topics.TELEMETRY:
        return state.on_telemetry(*args, config.alarms)
    if message.topic == topics.EVENTS:
        return state.on_robot_event(*args)
    if message.topic == topics.DEPLOYMENT_STATUS:
        return state.on_deployment_status(*args)
    raise InvalidRobotMessage('unknown topic')


def _take(plan: BatchPlan, pending: dict[str, list[NewEvent]], outcome: Outcome,
          message: RobotMessage | None, causation: str, actor: str | None = None) -> None:
    robot_id = outcome.state.robot_id
    plan.states[robot_id] = outcome.state
    if not outcome.events:
        return
    target = pending.setdefault(robot_id, [])
    for part, event in enumerate(outcome.events):
        target.append(NewEvent(
            event, boot_id=message.boot_id if message else None,
            seq=message.seq if message else None, seq_part=part, causation=causation,
            actor=actor))


def current_row(robot_id: str, cur: CurrentState,
                columns: tuple[str, ...] = _CURRENT_COLUMNS) -> dict[str, Any]:
    """Return the robot_current row (or the given columns of it) of a robot's current state."""
    row: dict[str, Any] = {'robot_id': robot_id}
    for column in columns:
        value = getattr(cur, column)
        if column == 'telemetry':
            value = value.to_json()
        row[column] = value
    return row


# What a flush writes of a deferred robot: the groups state-space messages change (one row
# shape for every robot, so one statement per flush). Telemetry is history: never deferred.
FLUSH_COLUMNS: tuple[str, ...] = CURRENT_GROUPS[0] + CURRENT_GROUPS[1] + CURRENT_GROUPS[3]


_FLUSH_KEYS = ('robot_id', *FLUSH_COLUMNS)
_flush_values = operator.attrgetter(*FLUSH_COLUMNS)  # plain values: no telemetry to encode


def flush_rows(states: Mapping[str, RobotState], robot_ids: Collection[str]
               ) -> list[dict[str, Any]]:
    """Return the rows a flush writes for these robots (those still in memory), sorted."""
    keys, values = _FLUSH_KEYS, _flush_values
    return [dict(zip(keys, (r, *values(states[r].current)), strict=True))
            for r in sorted(robot_ids) if r in states]


def current_from_row(row: Any) -> CurrentState:
    """Return the CurrentState a robot_current row holds."""
    return CurrentState(
        last_heartbeat_at=row.last_heartbeat_at, heartbeat_stamp=row.heartbeat_stamp,
        heartbeat_boot_id=row.heartbeat_boot_id, heartbeat_seq=row.heartbeat_seq,
        heartbeat_sequence=row.heartbeat_sequence, state=row.state,
        teleop_active=row.teleop_active, teleop_score=row.teleop_score,
        teleop=row.teleop or {}, teleop_boot_id=row.teleop_boot_id, teleop_seq=row.teleop_seq,
        teleop_stamp=row.teleop_stamp, resources=row.resources or {}, boot_id=row.boot_id,
        last_seq=row.last_seq, telemetry=TelemetryState.from_json(row.telemetry),
        telemetry_at=row.telemetry_at, uplink_transport=row.uplink_transport)


def write_batch(conn: Connection, plan: BatchPlan, history: telemetry.TelemetryHistory, *,
                now: float, decided: Callable[[list[RecordedEvent]], None] | None = None
                ) -> list[RecordedEvent]:
    """Run the plan's statements in the caller's transaction; return the appended events.

    `decided` gets the appended events once the last statements are sent, while the database
    may still run them; the transaction may yet fail after it.
    """
    recorded = event_store.append(conn, plan.appends, recorded_at=now)
    if recorded:
        domain_events = [new.event for a in plan.appends for new in a.events]
        applied = [projections.Applied(r, e) for r, e in zip(recorded, domain_events,
                                                              strict=True)]
        aggregates = {r: s.aggregate for r, s in plan.states.items()}
        projections.project(conn, applied, aggregates)
        if plan.snapshot_robots:
            snapshots.save(conn, [plan.states[r].aggregate for r in plan.snapshot_robots],
                           taken_at=now)
    if plan.current_rows:
        upsert(conn, robot_current, plan.current_rows, keys=['robot_id'])
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in plan.current_updates:
        shapes.setdefault(tuple(row), []).append(row)
    short = hot_writes.write(conn, list(shapes.values()), plan.sequences, plan.telemetry_rows,
                             history, now,
                             during=(lambda: decided(recorded)) if decided is not None else None)
    for rows in short:
        # A robot without a robot_current row (none is made outside enrol_robot, but the
        # store must not lose a heartbeat over it): write whole rows instead.
        upsert(conn, robot_current, [current_row(r['robot_id'], plan.states[r['robot_id']].current)
                                     for r in rows], keys=['robot_id'])
    return recorded


def plan_outcomes(states: Mapping[str, RobotState], outcomes: Sequence[Outcome],
                  causation: str, config: StoreConfig, actor: str | None = None) -> BatchPlan:
    """Return the plan of outcomes not caused by robot messages (admin actions, presence)."""
    plan = BatchPlan()
    pending: dict[str, list[NewEvent]] = {}
    for outcome in outcomes:
        _take(plan, pending, outcome, None, causation, actor)
    _finish(plan, pending, states, config)
    return plan
