"""The volatile/durable split (issue 17) on SQLite and PostgreSQL.

A lekiwi-fleet/2 robot numbers its heartbeats and teleop statuses in a state space
(`RobotMessage.state_space`). Such a message that yields no event is acknowledged once the
store's memory has taken it and reaches robot_current with the next `flush_state`, in one
statement; anything that yields an event is stored before commit_batch returns, as before.
A "crash" here is a second store opened on the same database while the first is left as it is
(never closed: closing flushes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from store_messages import T0, heartbeat, telemetry, teleop_status, token_hash

from lekiwi_fleet_server.store.interface import MessageKey, RobotMessage
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

BOOT = 'boot0001'
WRITES = ('INSERT', 'UPDATE', 'DELETE')


def state(message: RobotMessage) -> RobotMessage:
    """Return the message numbered in the state space (its seq is then a state seq)."""
    return replace(message, state_space=True)


@contextmanager
def writes(store: SqlFleetStore) -> Iterator[list[str]]:
    """Collect the data-changing statements the store runs meanwhile (through SQLAlchemy)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            seen.append(statement)

    sa.event.listen(store.engine, 'before_cursor_execute', record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, 'before_cursor_execute', record)


def stored_heartbeat(store: SqlFleetStore, robot_id: str) -> tuple[Any, ...]:
    """Return what robot_current holds of the robot's heartbeat, read from the database."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.text(
            'SELECT heartbeat_seq, heartbeat_sequence, last_heartbeat_at, teleop_score '
            'FROM robot_current WHERE robot_id = :r'), {'r': robot_id}).one()
    return tuple(row)


def enrolled(store: SqlFleetStore, *robot_ids: str) -> None:
    for robot_id in robot_ids:
        store.enrol_robot(robot_id, token_hash(robot_id), (), now=T0)


def test_a_pure_reading_is_acknowledged_without_a_write_until_the_flush(
        store: SqlFleetStore) -> None:
    enrolled(store, 'kiwi-1')
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 1, T0 + 1))], now=T0 + 1)
    store.flush_state(now=T0 + 1)
    before = stored_heartbeat(store, 'kiwi-1')
    with writes(store) as seen:
        result = store.commit_batch([state(heartbeat('kiwi-1', BOOT, 2, T0 + 2, sequence=7))],
                                    now=T0 + 2)
    assert seen == []  # acknowledged with no write at all
    assert result.acknowledged == (MessageKey('kiwi-1', BOOT, 2, True),)
    assert result.deferred == 1 and not result.new_events
    # The dashboard's row already follows the memory...
    assert [r.heartbeat_sequence for r in result.changed_robots] == [7]
    # ...the database only after the flush.
    assert stored_heartbeat(store, 'kiwi-1') == before
    assert store.flush_state(now=T0 + 3) == 1
    assert stored_heartbeat(store, 'kiwi-1')[:2] == (2, 7)
    assert store.flush_state(now=T0 + 4) == 0  # nothing new: no statement


def test_a_flush_is_one_statement_for_every_robot(store: SqlFleetStore) -> None:
    robots = [f'kiwi-{i}' for i in range(40)]
    enrolled(store, *robots)
    for round_ in range(1, 4):  # coalesced: three readings of each robot, one row each
        store.commit_batch([state(heartbeat(r, BOOT, round_, T0 + round_, sequence=round_))
                            for r in robots], now=T0 + round_)
        store.commit_batch([state(teleop_status(r, BOOT, round_, T0 + round_, active=True,
                                                score=0.1 * round_)) for r in robots],
                           now=T0 + round_)
    with writes(store) as seen:
        assert store.flush_state(now=T0 + 4) == len(robots)
    assert len(seen) == 1 and seen[0].lstrip().upper().startswith('UPDATE')
    for robot_id in robots:
        seq, sequence, _at, score = stored_heartbeat(store, robot_id)
        assert (seq, sequence) == (3, 3) and abs(score - 0.3) < 1e-9


def test_a_state_change_inside_a_heartbeat_is_durable_before_its_ack(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    enrolled(store, 'kiwi-1')
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 1, T0 + 1, software='1.0.0'))],
                       now=T0 + 1)
    result = store.commit_batch(
        [state(heartbeat('kiwi-1', BOOT, 2, T0 + 2, software='1.1.0', sequence=2))], now=T0 + 2)
    assert result.deferred == 0 and [e.type for e in result.new_events] == [
        'RobotVersionChanged']
    assert result.new_events[0].metadata['state_seq'] == 2
    # A crash now (no flush): the version change and its heartbeat are in the database.
    after = make_store(store.engine.url.render_as_string(hide_password=False))
    robot = after.get_robot('kiwi-1', now=T0 + 2)
    assert robot is not None and robot.software_version == '1.1.0'
    assert robot.heartbeat_sequence == 2
    types = [e.type for e in after.robot_timeline('kiwi-1', 0, 100).events]
    assert types.count('RobotVersionChanged') == 2  # 1.0.0 then 1.1.0
    # An alarm raised by a reading is an event too: stored at once.
    low = heartbeat('kiwi-1', BOOT, 3, T0 + 3, software='1.1.0',
                    res={'battery_percent': 3.0, 'battery_voltage_v': 10.5})
    raised = store.commit_batch([state(low)], now=T0 + 3)
    assert [e.type for e in raised.new_events] == ['ResourceAlarmRaised']


def test_after_a_crash_only_the_last_intervals_readings_are_lost(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    enrolled(store, 'kiwi-1')
    # The first heartbeat names the robot's versions (an event): durable at once.
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 1, T0 + 1, sequence=1))], now=T0 + 1)
    store.commit_batch([telemetry('kiwi-1', BOOT, 1, T0 + 1, 1, 1, {'battery_v': 12.0},
                                  full=True)], now=T0 + 1)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 2, T0 + 1.2, sequence=2))], now=T0 + 1)
    assert store.flush_state(now=T0 + 1.5) == 1
    # The next interval: history (durable), then a reading, then the crash before the flush.
    store.commit_batch([telemetry('kiwi-1', BOOT, 2, T0 + 2, 2, 1, {'battery_v': 11.9})],
                       now=T0 + 2)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 3, T0 + 2, sequence=3))], now=T0 + 2)
    after = make_store(store.engine.url.render_as_string(hide_password=False))
    robot = after.get_robot('kiwi-1', now=T0 + 2)
    assert robot is not None
    assert robot.heartbeat_sequence == 2  # the flushed reading; the last one is lost
    assert robot.telemetry['battery_v'] == 11.9  # history: never lost
    # The history seqs stay gap-free: state seqs are never recorded among them.
    coverage = after.robot_sequences('kiwi-1')[BOOT]
    assert coverage.ranges == ((1, 2),) and coverage.gaps == ()
    assert after.undelivered_messages().get('kiwi-1', 0) == 0


def test_state_seqs_are_idempotent_and_never_recorded_as_history(store: SqlFleetStore) -> None:
    enrolled(store, 'kiwi-1')
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 1, T0 + 0.1, sequence=1))], now=T0 + 1)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 5, T0 + 1, sequence=5))], now=T0 + 1)
    again = store.commit_batch([state(heartbeat('kiwi-1', BOOT, 5, T0 + 1, sequence=5)),
                                state(heartbeat('kiwi-1', BOOT, 4, T0 + 0.5, sequence=4))],
                               now=T0 + 2)
    assert again.duplicates == 2 and len(again.acknowledged) == 2
    assert not again.changed_robots
    assert store.robot_sequences('kiwi-1') == {}  # no history message yet
    store.flush_state(now=T0 + 3)
    assert stored_heartbeat(store, 'kiwi-1')[:2] == (5, 5)


def test_a_v1_heartbeat_stays_durable_before_its_ack(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    enrolled(store, 'kiwi-1')
    result = store.commit_batch([heartbeat('kiwi-1', BOOT, 1, T0 + 1, sequence=9)], now=T0 + 1)
    assert result.deferred == 0
    after = make_store(store.engine.url.render_as_string(hide_password=False))
    robot = after.get_robot('kiwi-1', now=T0 + 1)
    assert robot is not None and robot.heartbeat_sequence == 9 and robot.last_seq == 1
    assert after.robot_sequences('kiwi-1')[BOOT].ranges == ((1, 1),)


def test_an_admin_write_keeps_the_robots_unflushed_readings(store: SqlFleetStore) -> None:
    enrolled(store, 'kiwi-1')
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 2, T0 + 0.5, sequence=2))], now=T0 + 1)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 3, T0 + 1, sequence=3))], now=T0 + 1)
    assert stored_heartbeat(store, 'kiwi-1')[:2] == (2, 2)  # 3 waits for a flush
    store.rotate_robot_token('kiwi-1', token_hash('new'), by='admin', now=T0 + 2)
    assert stored_heartbeat(store, 'kiwi-1')[:2] == (3, 3)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 4, T0 + 2, sequence=4))], now=T0 + 2)
    store.forget_robots(['kiwi-1'])  # another process changed it: flushed, then reloaded
    assert stored_heartbeat(store, 'kiwi-1')[:2] == (4, 4)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 4, T0 + 2, sequence=4))], now=T0 + 3)
    assert store.get_robot('kiwi-1', now=T0 + 3).heartbeat_sequence == 4


def test_a_history_topic_in_the_state_space_is_refused(store: SqlFleetStore) -> None:
    enrolled(store, 'kiwi-1')
    result = store.commit_batch([state(telemetry('kiwi-1', BOOT, 1, T0 + 1, 1, 1,
                                                 {'battery_v': 12.0}, full=True))], now=T0 + 1)
    assert not result.acknowledged
    assert [r.key for r in result.rejected] == [MessageKey('kiwi-1', BOOT, 1, True)]


def test_the_flush_interval_must_stay_below_the_stale_threshold() -> None:
    import pytest
    from pydantic import ValidationError

    from lekiwi_fleet_server.settings import Settings

    assert Settings().state_flush_interval_s == 1.0
    assert Settings(state_flush_interval_s=4.0, stale_after_s=5.0).state_flush_interval_s == 4.0
    for bad in ({'state_flush_interval_s': 5.0}, {'state_flush_interval_s': 0},
                {'state_flush_interval_s': 2.0, 'stale_after_s': 1.5}):
        with pytest.raises(ValidationError, match='state_flush_interval_s'):
            Settings(**bad)


def test_a_durable_row_carries_the_pending_readings(store: SqlFleetStore) -> None:
    enrolled(store, 'kiwi-1')
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 1, T0 + 1, sequence=1))], now=T0 + 1)
    store.commit_batch([state(heartbeat('kiwi-1', BOOT, 2, T0 + 2, sequence=2))], now=T0 + 2)
    with writes(store) as seen:
        store.commit_batch([telemetry('kiwi-1', BOOT, 1, T0 + 2, 1, 1, {'battery_v': 12.0},
                                      full=True)], now=T0 + 2)
    assert stored_heartbeat(store, 'kiwi-1')[:2] == (2, 2)  # written with the telemetry
    with writes(store) as flushed:
        assert store.flush_state(now=T0 + 3) == 0  # so the flush has nothing left to write
    assert flushed == [] and seen
