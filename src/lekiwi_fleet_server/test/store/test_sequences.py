"""The record of committed sequence numbers (robot_sequences), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from store_messages import (
    T0,
    deployment,
    fleet_event,
    heartbeat,
    session_started,
    telemetry,
    teleop_status,
    token_hash,
)

from lekiwi_fleet_server.migrations import downgrade, upgrade
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    MessageKey,
    SequenceCoverage,
    StoreError,
)
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

BOOT, BOOT2 = 'boot0001', 'boot0002'


def enrol(store: SqlFleetStore, *robot_ids: str) -> None:
    for robot_id in robot_ids:
        store.enrol_robot(robot_id, token_hash(robot_id), (), now=T0)


def every_topic(robot_id: str, boot: str, first: int, t: float) -> list:
    """Five messages, one per topic, seqs first..first+4."""
    return [heartbeat(robot_id, boot, first, t),
            telemetry(robot_id, boot, first + 1, t, first, first, {'cpu_percent': 1.0},
                      full=True),
            teleop_status(robot_id, boot, first + 2, t, active=False, score=0.0),
            fleet_event(robot_id, boot, first + 3, t, 'battery.swap', {}),
            deployment(robot_id, boot, first + 4, t, phase=1)]


def ranges(store: SqlFleetStore, robot_id: str, boot: str = BOOT) -> list[tuple[int, int]]:
    return list(store.robot_sequences(robot_id)[boot].ranges)


def test_every_acknowledged_message_is_recorded_whatever_its_topic(
        store: SqlFleetStore) -> None:
    enrol(store, 'kiwi')
    assert store.robot_sequences('kiwi') == {}
    store.commit_batch(every_topic('kiwi', BOOT, 1, T0 + 1), now=T0 + 1)
    store.commit_batch(every_topic('kiwi', BOOT, 6, T0 + 2), now=T0 + 2)
    assert store.robot_sequences('kiwi') == {BOOT: SequenceCoverage(
        ranges=((1, 10),), count=10, gaps=(), first_seen_at=T0 + 1, updated_at=T0 + 2)}


def test_out_of_order_seqs_leave_gaps_until_they_arrive(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi')
    # State goes before a history backlog: heartbeat 10 arrives before events 7..9.
    store.commit_batch([heartbeat('kiwi', BOOT, s, T0 + s) for s in (1, 2, 10)], now=T0 + 10)
    coverage = store.robot_sequences('kiwi')[BOOT]
    assert coverage.ranges == ((1, 2), (10, 10)) and coverage.count == 3
    assert coverage.gaps == ((3, 9),)
    store.commit_batch([fleet_event('kiwi', BOOT, s, T0 + s, 'tick', {})
                        for s in range(3, 10)], now=T0 + 11)
    coverage = store.robot_sequences('kiwi')[BOOT]
    assert coverage.ranges == ((1, 10),) and coverage.gaps == () and coverage.count == 10


def test_a_recorded_seq_is_a_duplicate_whatever_its_topic(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi')
    store.commit_batch([heartbeat('kiwi', BOOT, 5, T0)], now=T0)
    # Another message under the same key (a broken uplink): acknowledged, nothing applied.
    result = store.commit_batch([session_started('kiwi', BOOT, 5, T0 + 1, 's1')], now=T0 + 1)
    assert result.acknowledged == (MessageKey('kiwi', BOOT, 5),)
    assert result.duplicates == 1 and result.new_events == () and result.changed_robots == ()
    assert store.teleop_sessions('kiwi') == []
    # The same key in one batch twice, and a seq older than the newest heartbeat: the first is
    # a duplicate, the second is new (recorded) though it changes no state.
    result = store.commit_batch([heartbeat('kiwi', BOOT, 3, T0 - 5),
                                 heartbeat('kiwi', BOOT, 3, T0 - 5)], now=T0 + 2)
    assert result.duplicates == 2 and len(result.acknowledged) == 2
    assert ranges(store, 'kiwi') == [(3, 3), (5, 5)]


def test_refused_messages_are_not_recorded(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi')
    bad = heartbeat('kiwi', BOOT, 2, T0)
    bad.msg['state'] = 'flying'  # type: ignore[index]
    result = store.commit_batch([heartbeat('kiwi', BOOT, 1, T0), bad,
                                 heartbeat('ghost', BOOT, 1, T0),
                                 heartbeat('kiwi', 'x' * 65, 1, T0)], now=T0)
    assert [r.key.seq for r in result.rejected] == [2, 1, 1]
    assert store.robot_sequences('kiwi') == {BOOT: SequenceCoverage(((1, 1),), 1, (), T0, T0)}
    assert store.robot_sequences('ghost') == {}
    # The robot sends seq 2 again, valid this time.
    store.commit_batch([heartbeat('kiwi', BOOT, 2, T0 + 1)], now=T0 + 1)
    assert ranges(store, 'kiwi') == [(1, 2)]


def test_boots_are_recorded_apart_oldest_first(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi', 'other')
    store.commit_batch([heartbeat('kiwi', BOOT2, 1, T0 + 50)], now=T0 + 50)
    # An outbox backlog of the earlier boot arrives after the new boot started.
    store.commit_batch([fleet_event('kiwi', BOOT, s, T0 + s, 'tick', {}) for s in (7, 8)] +
                       [heartbeat('other', BOOT, 1, T0)], now=T0 + 60)
    coverage = store.robot_sequences('kiwi')
    assert list(coverage) == [BOOT2, BOOT]
    assert coverage[BOOT2].ranges == ((1, 1),) and coverage[BOOT2].first_seen_at == T0 + 50
    assert coverage[BOOT].ranges == ((7, 8),) and coverage[BOOT].gaps == ((1, 6),)
    assert list(store.robot_sequences('other')) == [BOOT]
    assert store.robot_sequences('bad id') == {} and store.robot_sequences('x\x00') == {}


def test_a_boot_full_of_holes_is_refused_clearly(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(database_url, StoreConfig(max_seq_ranges=2))
    enrol(store, 'kiwi')
    result = store.commit_batch([heartbeat('kiwi', BOOT, s, T0 + s) for s in (1, 3, 5, 4, 2)],
                                now=T0 + 5)
    (rejected,) = result.rejected
    assert rejected.key.seq == 5 and 'more than 2 separate sequence ranges' in rejected.reason
    assert [k.seq for k in result.acknowledged] == [1, 3, 4, 2]
    assert ranges(store, 'kiwi') == [(1, 4)]
    # Joined up, the boot may go on.
    assert store.commit_batch([heartbeat('kiwi', BOOT, 5, T0 + 6)], now=T0 + 6).rejected == ()


def test_a_restarted_store_and_an_evicted_boot_still_know_their_seqs(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    first = make_store(database_url)
    enrol(first, 'a', 'b', 'c')
    batch = [fleet_event(r, BOOT, 1, T0, 'tick', {}) for r in ('a', 'b', 'c')]
    first.commit_batch(batch, now=T0)
    first.close()
    # A tiny cache: every batch evicts boots that later batches load again.
    store = make_store(database_url, StoreConfig(sequence_cache_pairs=1))
    again = store.commit_batch(batch, now=T0 + 1)
    assert again.duplicates == 3 and again.new_events == ()
    for t, robot in enumerate(('a', 'b', 'c', 'a', 'b'), start=2):
        store.commit_batch([fleet_event(robot, BOOT, 2, T0 + t, 'tock', {})], now=T0 + t)
    assert store.commit_batch(batch, now=T0 + 9).duplicates == 3
    for robot in ('a', 'b', 'c'):
        assert ranges(store, robot) == [(1, 2)]
        assert [e.type for e in store.robot_timeline(robot, 0, 10).events] == [
            'RobotEnrolled', 'RobotEventReported', 'RobotEventReported']


def test_events_stored_before_the_record_are_found_by_their_keys(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore]) -> None:
    enrol(store, 'kiwi')
    events = [fleet_event('kiwi', BOOT, s, T0, 'tick', {}) for s in (1, 2)]
    store.commit_batch(events, now=T0)
    with store.engine.begin() as conn:
        conn.exec_driver_sql('DELETE FROM robot_sequences')  # as if never recorded
    fresh = make_store(store.engine.url.render_as_string(hide_password=False))
    result = fresh.commit_batch([*events, heartbeat('kiwi', BOOT, 3, T0 + 1)], now=T0 + 1)
    # The events' unique message keys refused them; the replanned batch found them stored.
    assert result.duplicates == 2 and len(result.acknowledged) == 3
    assert [e.type for e in result.new_events] == ['RobotVersionChanged']
    assert ranges(fresh, 'kiwi') == [(1, 3)]


def test_an_unreadable_row_starts_its_boot_afresh(
        store: SqlFleetStore, make_store: Callable[..., SqlFleetStore],
        caplog: pytest.LogCaptureFixture) -> None:
    enrol(store, 'kiwi')
    store.commit_batch([heartbeat('kiwi', BOOT, 1, T0)], now=T0)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE robot_sequences SET ranges = '[[5, 1]]'"))
    with pytest.raises(StoreError, match='not valid sequence ranges'):
        store.robot_sequences('kiwi')
    fresh = make_store(store.engine.url.render_as_string(hide_password=False))
    with caplog.at_level(logging.ERROR):
        fresh.commit_batch([heartbeat('kiwi', BOOT, 2, T0 + 1)], now=T0 + 1)
    assert 'unreadable robot_sequences row' in caplog.text
    coverage = fresh.robot_sequences('kiwi')[BOOT]
    assert coverage.ranges == ((2, 2),) and coverage.first_seen_at == T0


def test_migration_backfills_the_keys_stored_before_it(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(database_url)
    enrol(store, 'kiwi')
    batch = [heartbeat('kiwi', BOOT, 1, T0), heartbeat('kiwi', BOOT, 2, T0 + 1),
             fleet_event('kiwi', BOOT, 3, T0, 'tick', {}),
             telemetry('kiwi', BOOT, 4, T0, 1, 1, {'cpu_percent': 1.0}, full=True),
             heartbeat('kiwi', BOOT, 5, T0 + 2), fleet_event('kiwi', BOOT, 7, T0, 'tick', {}),
             session_started('kiwi', BOOT2, 9, T0 + 2, 's1')]
    store.commit_batch(batch, now=T0 + 2)
    store.close()
    downgrade(database_url, '0002_current_state_hot_updates')
    upgrade(database_url)
    reopened = make_store(database_url)
    coverage = reopened.robot_sequences('kiwi')
    # Before revision 0003 only messages with events (heartbeat 1 changed the version) or
    # telemetry rows kept their keys, and robot_current the newest heartbeat's: not heartbeat 2.
    assert coverage[BOOT].ranges == ((1, 1), (3, 5), (7, 7)) and coverage[BOOT].count == 5
    assert coverage[BOOT].gaps == ((2, 2), (6, 6))
    assert coverage[BOOT].first_seen_at == T0 and coverage[BOOT].updated_at == T0 + 2
    assert coverage[BOOT2].ranges == ((9, 9),)
    again = reopened.commit_batch(batch, now=T0 + 3)
    assert again.duplicates == len(batch) and again.new_events == ()


def test_a_second_writer_recording_the_same_boot_is_noticed(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    first = make_store(database_url)
    enrol(first, 'kiwi')
    first.commit_batch([heartbeat('kiwi', BOOT, 1, T0)], now=T0)
    # A second server (say one starting while the first finishes its last batch) goes on.
    second = make_store(database_url)
    second.commit_batch([heartbeat('kiwi', BOOT, 2, T0 + 1)], now=T0 + 1)
    # The first one's memory of the boot is stale now: its write must not drop seq 2.
    answers: list[BatchResult] = []
    result = first.commit_batch([heartbeat('kiwi', BOOT, 3, T0 + 2),
                                 heartbeat('kiwi', BOOT, 2, T0 + 1)], now=T0 + 2,
                                while_committing=answers.append)
    assert [k.seq for k in result.acknowledged] == [3, 2] and result.duplicates == 1
    # The answer made while the first plan was being written was superseded by the replanned
    # batch's, which is the one returned.
    assert len(answers) == 2 and answers[-1] is result
    assert ranges(first, 'kiwi') == [(1, 3)]
    assert first.robot_sequences('kiwi')[BOOT].count == 3
