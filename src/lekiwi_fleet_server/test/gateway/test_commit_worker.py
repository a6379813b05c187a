"""CommitWorker and ThreadCommitter: frames to messages, acks per boot, refusals, updates."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import robot_frames as rf
from memory_store import MemoryStore

from lekiwi_fleet_server.domain.protocol import ErrorCode
from lekiwi_fleet_server.gateway.commit_worker import (
    CommitWorker,
    ThreadCommitter,
    refusal_error,
)
from lekiwi_fleet_server.store.interface import BatchResult, PresenceChange, StoreUnavailable
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

OTHER_BOOT = 'aaaabbbbccccdddd'
T0 = 1_764_190_000.0


def token_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def raw(robot_id: str, seq: int, topic: str = 'fleet/events', **kw: object) -> tuple:
    return robot_id, T0 + seq, orjson.dumps(rf.publish(topic, seq, **kw))


def test_frames_are_committed_in_order_and_acked_per_boot() -> None:
    store = MemoryStore()
    outcome = CommitWorker(store).commit(
        [raw('a', 1), raw('a', 2), raw('b', 1), raw('a', 4), raw('a', 1, boot_id=OTHER_BOOT)],
        [PresenceChange('a', True, T0, 'connected')], T0 + 5, want_update=False)
    assert [(k[0], k[2]) for k in store.messages] == [('a', 1), ('a', 2), ('b', 1), ('a', 4),
                                                      ('a', 1)]
    assert store.messages[('a', rf.BOOT, 2)].received_at == T0 + 2
    acks = {(robot, orjson.loads(f)['msg']['boot_id']): orjson.loads(f)['msg']['ranges']
            for robot, f in outcome.acks}
    assert acks == {('a', rf.BOOT): [[1, 2], [4, 4]], ('b', rf.BOOT): [[1, 1]],
                    ('a', OTHER_BOOT): [[1, 1]]}
    assert (outcome.acknowledged, outcome.messages, outcome.refusals) == (5, 5, [])
    assert outcome.update is None and store.presence_log[0].robot_id == 'a'


def test_an_undecodable_frame_is_refused_and_the_rest_committed() -> None:
    store = MemoryStore()
    outcome = CommitWorker(store).commit([('a', T0, b'{not json'), ('a', T0, b'{"op": 1}'),
                                          raw('a', 3)], [], T0, want_update=False)
    assert [r[1] for r in outcome.refusals] == [ErrorCode.SERVER_ERROR.value] * 2
    assert list(store.messages) == [('a', rf.BOOT, 3)]
    error = refusal_error(outcome.refusals[0])
    assert error.code is ErrorCode.SERVER_ERROR and error.close_code is None


def test_nothing_to_commit_calls_no_store() -> None:
    store = MemoryStore()
    outcome = CommitWorker(store).commit([], [], T0, want_update=True)
    assert store.commits == 0 and outcome.acks == [] and outcome.update is None


def test_store_refusals_and_the_dashboard_update(store: SqlFleetStore) -> None:
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    worker = CommitWorker(store)
    bad_delta = {**rf.telemetry(robot_id='kiwi'), 'field_values': [1.0]}
    outcome = worker.commit([raw('kiwi', 1, 'fleet/heartbeat', msg=rf.heartbeat('kiwi')),
                             raw('kiwi', 2, 'fleet/telemetry', msg=bad_delta),
                             raw('ghost', 1)], [], T0 + 1, want_update=True)
    assert [(r[0], r[1], r[3]) for r in outcome.refusals] == [
        ('kiwi', 'invalid_message', f'{rf.BOOT}:2'), ('ghost', 'invalid_message', f'{rf.BOOT}:1')]
    assert 'field_names' in outcome.refusals[0][2] or 'values' in outcome.refusals[0][2]
    update = orjson.loads(outcome.update)  # type: ignore[arg-type]
    assert update['type'] == 'update' and update['at'] == T0 + 1
    assert [(r['robot_id'], r['last_seq']) for r in update['robots']] == [('kiwi', 1)]
    assert [e['type'] for e in update['events']] == ['RobotVersionChanged']
    # A duplicate changes nothing: acked, no update to send.
    again = worker.commit([raw('kiwi', 1, 'fleet/heartbeat', msg=rf.heartbeat('kiwi'))], [],
                          T0 + 2, want_update=True)
    assert again.acknowledged == 1 and again.duplicates == 1 and again.update is None


def test_updates_carry_deltas_after_a_robots_first_whole_row(store: SqlFleetStore) -> None:
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    worker = CommitWorker(store)

    def update_rows(seq: int, want_update: bool = True) -> list[dict[str, Any]] | None:
        outcome = worker.commit([raw('kiwi', seq, 'fleet/heartbeat',
                                     msg=rf.heartbeat('kiwi', sequence=seq))], [],
                                T0 + seq, want_update=want_update)
        return orjson.loads(outcome.update)['robots'] if outcome.update else None

    first = update_rows(1)
    assert first is not None and first[0]['software_version'] == '1.0.0'  # whole
    # The next heartbeat changes its time, seq and sequence only: the row says just that.
    assert update_rows(2) == [{'robot_id': 'kiwi', 'last_heartbeat_at': T0 + 2,
                               'last_seq': 2, 'heartbeat_sequence': 2}]
    # A batch committed while nobody listened: the robot's next row comes whole again.
    assert update_rows(3, want_update=False) is None
    again = update_rows(4)
    assert again is not None and again[0]['software_version'] == '1.0.0'


def test_a_batch_begun_unwatched_still_carries_its_events(store: SqlFleetStore) -> None:
    # A dashboard may subscribe while it commits: it gets the events from this update and the
    # rows from its snapshot (read once the batch is done).
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    outcome = CommitWorker(store).commit([raw('kiwi', 1)], [], T0 + 1, want_update=False)
    assert outcome.update is not None
    update = orjson.loads(outcome.update)
    assert update['robots'] == []
    assert [e['type'] for e in update['events']] == ['RobotEventReported']


class FailingAfterAnswer(MemoryStore):
    """A store whose commit fails after it handed out its result (a COMMIT that failed)."""

    def commit_batch(self, *args: Any, **kwargs: Any) -> BatchResult:
        super().commit_batch(*args, **kwargs)
        raise StoreUnavailable('the commit failed')


def test_answers_of_a_failed_commit_are_never_returned() -> None:
    with pytest.raises(StoreUnavailable):
        CommitWorker(FailingAfterAnswer()).commit([raw('a', 1)], [], T0, want_update=True)


@pytest.mark.anyio
async def test_thread_committer_runs_in_its_executor() -> None:
    store = MemoryStore()
    store.online['a'] = True
    with ThreadPoolExecutor(1, thread_name_prefix='test-writer') as executor:
        committer = ThreadCommitter(store, executor)
        outcome = await committer.commit([raw('a', 1)], [], T0, False)
        assert outcome.acknowledged == 1
        assert await committer.mark_all_offline(T0) == 1
        assert not store.online['a']
        assert asyncio.get_running_loop() is not None


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


def test_writer_metrics_count_batches_events_deployments_and_errors() -> None:
    from prometheus_client import CollectorRegistry

    from lekiwi_fleet_server.gateway.writer_metrics import WriterMetrics

    registry = CollectorRegistry()
    metrics = WriterMetrics(registry, shard=1)
    store = MemoryStore()
    worker = CommitWorker(store, metrics)
    worker.commit([raw('a', 1), raw('a', 2)], [], T0 + 5, want_update=False)
    value = registry.get_sample_value
    assert value('lekiwi_writer_batches_total', {'shard': '1'}) == 1
    assert value('lekiwi_writer_messages_total', {'shard': '1'}) == 2
    assert value('lekiwi_writer_commit_seconds_count', {'shard': '1'}) == 1

    class Down(MemoryStore):
        def commit_batch(self, *args: Any, **kwargs: Any) -> BatchResult:
            raise StoreUnavailable('down')

    with pytest.raises(StoreUnavailable):
        CommitWorker(Down(), metrics).commit([raw('a', 3)], [], T0 + 6, want_update=False)
    assert value('lekiwi_writer_errors_total', {'shard': '1', 'error': 'StoreUnavailable'}) == 1
