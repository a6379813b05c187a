"""The fast path of plain state readings inside mixed batches (issue 17), on both databases.

A batch of the running gateway mixes every robot's messages: lekiwi-fleet/2 heartbeats and
teleop statuses (state space), telemetry and events (history), lekiwi-fleet/1 robots' messages.
A plain reading is taken in memory, with no statement, however the rest of its batch is
committed; a reading that yields an event, or whose robot has history or a presence change in
the same batch, goes through the commit with them, durable before its ack. A "crash" is a second
store opened on the same database while the first is left unflushed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from store_messages import T0, heartbeat, telemetry, token_hash

from lekiwi_fleet_server.store.interface import (
    BatchResult,
    MessageKey,
    PresenceChange,
    RobotMessage,
)
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

BOOT = 'boot0001'


def state(message: RobotMessage) -> RobotMessage:
    return replace(message, state_space=True)


def stored(store: SqlFleetStore, robot_id: str) -> tuple[Any, ...]:
    """Return robot_current's heartbeat_sequence and software_version of robots, from the DB."""
    with store.engine.connect() as conn:
        sequence = conn.execute(sa.text('SELECT heartbeat_sequence FROM robot_current '
                                        'WHERE robot_id = :r'), {'r': robot_id}).scalar_one()
        software = conn.execute(sa.text('SELECT software_version FROM robots '
                                        'WHERE robot_id = :r'), {'r': robot_id}).scalar_one()
    return sequence, software


def reopened(store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> SqlFleetStore:
    """Return a second store on the database (the first one 'crashed': never flushed)."""
    return make_store(store.engine.url.render_as_string(hide_password=False))


def started(store: SqlFleetStore, *robot_ids: str) -> None:
    """Enrol the robots; their first heartbeat (a version: an event) is stored and flushed."""
    for robot_id in robot_ids:
        store.enrol_robot(robot_id, token_hash(robot_id), (), now=T0)
    store.commit_batch([state(heartbeat(r, BOOT, 1, T0 + 1, sequence=1)) for r in robot_ids],
                       now=T0 + 1)
    store.flush_state(now=T0 + 1)


def test_a_mixed_batch_stores_history_and_events_and_defers_plain_readings(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    started(store, 'plain', 'history', 'eventful')
    answered: list[BatchResult] = []
    batch = [
        state(heartbeat('plain', BOOT, 2, T0 + 2, sequence=2)),
        telemetry('history', BOOT, 1, T0 + 2, 1, 1, {'battery_v': 12.0}, full=True),
        state(heartbeat('eventful', BOOT, 2, T0 + 2, sequence=2, software='2.0.0')),
    ]
    result = store.commit_batch(batch, now=T0 + 2, while_committing=answered.append)
    assert answered == [result]  # the answers made while committing are the whole batch's
    assert set(result.acknowledged) == {MessageKey('plain', BOOT, 2, True),
                                        MessageKey('history', BOOT, 1),
                                        MessageKey('eventful', BOOT, 2, True)}
    assert result.deferred == 1 and result.duplicates == 0
    assert [e.type for e in result.new_events] == ['RobotVersionChanged']
    assert [r.robot_id for r in result.changed_robots] == ['eventful', 'history', 'plain']
    assert {r.robot_id: r.heartbeat_sequence for r in result.changed_robots}['plain'] == 2
    # Crash before the flush: the event and its heartbeat are stored, the plain reading is not.
    after = reopened(store, make_store)
    assert stored(after, 'eventful') == (2, '2.0.0')
    assert after.robot_sequences('history')[BOOT].ranges == ((1, 1),)
    assert stored(after, 'plain') == (1, '1.0.0')
    # The flush writes it, and only it.
    assert store.flush_state(now=T0 + 3) == 1
    assert stored(store, 'plain') == (2, '1.0.0')


def test_a_reading_with_history_of_its_robot_in_the_batch_is_committed_in_order(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    started(store, 'kiwi')
    result = store.commit_batch([
        state(heartbeat('kiwi', BOOT, 2, T0 + 2, sequence=2)),
        telemetry('kiwi', BOOT, 1, T0 + 2, 1, 1, {'battery_v': 12.0}, full=True),
    ], now=T0 + 2)
    assert len(result.acknowledged) == 2
    # The robot's row was written with the telemetry, carrying the reading: nothing to flush.
    assert stored(reopened(store, make_store), 'kiwi') == (2, '1.0.0')
    assert store.flush_state(now=T0 + 3) == 0


def test_a_plain_reading_before_an_eventful_one_of_the_same_robot_stays_in_order(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    started(store, 'kiwi', 'other')
    result = store.commit_batch([
        state(heartbeat('kiwi', BOOT, 2, T0 + 2, sequence=2)),
        state(heartbeat('other', BOOT, 2, T0 + 2, sequence=2)),
        state(heartbeat('kiwi', BOOT, 3, T0 + 2.5, sequence=3, software='2.0.0')),
        state(heartbeat('kiwi', BOOT, 4, T0 + 3, sequence=4, software='2.0.0')),
    ], now=T0 + 3)
    assert [k.seq for k in result.acknowledged if k.robot_id == 'kiwi'] == [2, 3, 4]
    assert result.deferred == 3  # the readings without an event of their own
    assert [e.type for e in result.new_events] == ['RobotVersionChanged']
    after = reopened(store, make_store)
    assert stored(after, 'kiwi') == (4, '2.0.0')  # its newest reading, stored with the event
    assert stored(after, 'other') == (1, '1.0.0')


def test_a_presence_change_takes_its_robots_readings_into_the_commit(
        store: SqlFleetStore) -> None:
    started(store, 'kiwi')
    result = store.commit_batch(
        [state(heartbeat('kiwi', BOOT, 2, T0 + 2, sequence=2))],
        [PresenceChange('kiwi', True, T0 + 1.5, 'connected')], now=T0 + 2)
    assert [e.type for e in result.new_events] == ['RobotCameOnline']
    assert result.changed_robots[0].status == 'online'
    # Its row is written with the presence change, the reading in it: nothing left to flush.
    assert stored(store, 'kiwi')[0] == 2
    assert store.flush_state(now=T0 + 3) == 0


def test_v1_messages_beside_v2_readings_stay_durable_before_their_ack(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    started(store, 'v2')
    store.enrol_robot('v1', token_hash('v1'), (), now=T0)
    result = store.commit_batch([heartbeat('v1', BOOT, 1, T0 + 2, sequence=7),
                                 state(heartbeat('v2', BOOT, 2, T0 + 2, sequence=2))],
                                now=T0 + 2)
    assert set(result.acknowledged) == {MessageKey('v1', BOOT, 1),
                                        MessageKey('v2', BOOT, 2, True)}
    after = reopened(store, make_store)
    assert stored(after, 'v1')[0] == 7
    assert after.robot_sequences('v1')[BOOT].ranges == ((1, 1),)
    assert stored(after, 'v2')[0] == 1  # its reading waits for the flush


def test_bad_and_repeated_readings_on_the_fast_path_are_answered_as_before(
        store: SqlFleetStore) -> None:
    started(store, 'kiwi')
    bad = state(heartbeat('kiwi', BOOT, 3, T0 + 3, res={'cpu_percent': 'hot'}))
    result = store.commit_batch([state(heartbeat('kiwi', BOOT, 1, T0 + 1, sequence=1)), bad,
                                 telemetry('kiwi-unknown', BOOT, 1, T0 + 3, 1, 1, {'x': 1.0},
                                           full=True)], now=T0 + 3)
    assert result.acknowledged == (MessageKey('kiwi', BOOT, 1, True),)
    assert result.duplicates == 1 and result.deferred == 0
    assert sorted(r.key.robot_id for r in result.rejected) == ['kiwi', 'kiwi-unknown']
    assert 'cpu_percent' in next(r.reason for r in result.rejected if r.key.robot_id == 'kiwi')


def test_take_readings_leaves_every_message_of_an_eventful_robot_to_the_commit() -> None:
    from lekiwi_fleet_server.domain.robot_state import RobotAggregate, RobotState
    from lekiwi_fleet_server.store.config import StoreConfig
    from lekiwi_fleet_server.store.ingest import take_readings

    def loaded(robot_id: str) -> RobotState:
        return RobotState(RobotAggregate(robot_id, version=3, enrolled=True,
                                         agent_version='0.1.0', software_version='1.0.0'))

    states = {'a': loaded('a'), 'b': loaded('b')}
    readings = take_readings(states, [
        state(heartbeat('a', BOOT, 1, T0 + 1, sequence=1)),
        state(heartbeat('b', BOOT, 1, T0 + 1, sequence=1)),
        state(heartbeat('a', BOOT, 2, T0 + 2, sequence=2, software='2.0.0')),
        state(heartbeat('a', BOOT, 3, T0 + 3, sequence=3)),
        state(heartbeat('b', BOOT, 1, T0 + 1, sequence=1)),  # repeated: a duplicate
    ], StoreConfig())
    assert readings.eventful == {'a'}
    assert sorted(readings.states) == ['b']  # pure: `states` itself is left as it was
    assert readings.states['b'].current.heartbeat_sequence == 1
    assert states['b'].current.state is None
    assert readings.acknowledged == [MessageKey('b', BOOT, 1, True)] * 2
    assert readings.duplicates == 1 and readings.rejected == []
