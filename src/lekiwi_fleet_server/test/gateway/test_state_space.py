"""lekiwi-fleet/2's state space through the protocol, the CommitWorker and the batcher's flush."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import robot_frames as rf

from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.gateway.batcher import CommitBatcher
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, CommitWorker, ThreadCommitter
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.store.interface import PresenceChange
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

T0 = 1_764_190_000.0
V1, V2 = protocol.PROTOCOL_V1, protocol.PROTOCOL_V2


def token_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def state_frame(topic: str, state_seq: int, robot_id: str = 'kiwi', **msg: Any
                ) -> dict[str, Any]:
    """Return a v2 state-space publish frame (no `seq`: a `state_seq`)."""
    frame = rf.publish(topic, 1, robot_id=robot_id)
    del frame['seq']
    frame['state_seq'] = state_seq
    frame['msg'].update(msg)
    return frame


def raw(robot_id: str, frame: dict[str, Any], at: float = T0) -> tuple[str, float, bytes]:
    return robot_id, at, orjson.dumps(frame)


# -- the protocol ------------------------------------------------------------------------

def test_the_robot_preference_chooses_the_version() -> None:
    assert protocol.negotiate([V2, V1]) == V2
    assert protocol.negotiate([V1]) == V1
    assert protocol.negotiate([V1, V2]) == V1


def test_state_seq_is_taken_in_v2_only_and_only_on_state_topics() -> None:
    frame = state_frame('fleet/heartbeat', 3)
    p = protocol.parse_publish(frame, V2)
    assert (p.seq, p.state_space) == (3, True)
    with pytest.raises(ProtocolError) as v1:
        protocol.parse_publish(frame, V1)
    assert v1.value.code is ErrorCode.INVALID_MESSAGE and v1.value.frame_id == f'{rf.BOOT}:s3'
    history = {**rf.publish('fleet/events', 1)}
    del history['seq']
    history['state_seq'] = 1
    with pytest.raises(ProtocolError, match='history topic'):
        protocol.parse_publish(history, V2)
    with pytest.raises(ProtocolError, match='exclusive'):
        protocol.parse_publish({**frame, 'seq': 3}, V2)
    for bad in (0, -1, 1.5, '3', True, 2**63):
        with pytest.raises(ProtocolError, match='state_seq'):
            protocol.parse_publish({**frame, 'state_seq': bad}, V2)
    # A v2 robot's history and a v1 robot's every message keep `seq`.
    assert not protocol.parse_publish(rf.publish('fleet/heartbeat', 4), V2).state_space


def test_a_v2_ack_names_both_spaces_and_a_v1_ack_is_unchanged() -> None:
    v1 = orjson.loads(protocol.ack_frame_of(rf.BOOT, [1, 2, 4]))
    assert v1['msg'] == {'boot_id': rf.BOOT, 'ranges': [[1, 2], [4, 4]]}
    v2 = orjson.loads(protocol.ack_frame_of(rf.BOOT, [], [7, 8]))
    assert v2['msg'] == {'boot_id': rf.BOOT, 'ranges': [], 'state_ranges': [[7, 8]]}


# -- the worker --------------------------------------------------------------------------

def test_acks_of_both_spaces_and_the_flush(store: SqlFleetStore) -> None:
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    store.enrol_robot('v1bot', token_hash('v1bot'), (), now=T0)
    worker = CommitWorker(store)
    # The first heartbeat names the versions (an event: durable); then pure readings.
    worker.commit([raw('kiwi', state_frame('fleet/heartbeat', 1))], [], T0, want_update=False)
    outcome = worker.commit(
        [raw('kiwi', state_frame('fleet/heartbeat', 2, sequence=2), T0 + 1),
         raw('kiwi', state_frame('teleop/status', 3), T0 + 1),
         raw('kiwi', rf.publish('fleet/events', 1, robot_id='kiwi'), T0 + 1),
         raw('v1bot', rf.publish('fleet/heartbeat', 5, robot_id='v1bot'), T0 + 1)],
        [], T0 + 1, want_update=True)
    acks = {robot: orjson.loads(frame)['msg'] for robot, frame in outcome.acks}
    assert acks == {'kiwi': {'boot_id': rf.BOOT, 'ranges': [[1, 1]], 'state_ranges': [[2, 3]]},
                    'v1bot': {'boot_id': rf.BOOT, 'ranges': [[5, 5]]}}
    update = orjson.loads(outcome.update)  # type: ignore[arg-type]
    assert {r['robot_id'] for r in update['robots']} == {'kiwi', 'v1bot'}
    # kiwi's row was written with its event (readings included): nothing to flush yet.
    assert worker.flush_state(T0 + 1.5) is None
    worker.commit([raw('kiwi', state_frame('fleet/heartbeat', 4, sequence=4), T0 + 2)], [],
                  T0 + 2, want_update=False)
    flushed = worker.flush_state(T0 + 2)
    assert flushed is not None and flushed.messages == 1 and flushed.update is None
    assert worker.flush_state(T0 + 3) is None  # nothing new
    assert store.get_robot('kiwi', now=T0 + 3).heartbeat_sequence == 4
    # A refused state message names its state seq.
    refused = worker.commit([raw('ghost', state_frame('fleet/heartbeat', 9, robot_id='ghost'))],
                            [], T0 + 4, want_update=False)
    assert [r[3] for r in refused.refusals] == [f'{rf.BOOT}:s9']


@pytest.mark.anyio
async def test_the_thread_committer_flushes_in_the_writer_thread(store: SqlFleetStore) -> None:
    store.enrol_robot('kiwi', token_hash('kiwi'), (), now=T0)
    with ThreadPoolExecutor(1) as executor:
        committer = ThreadCommitter(store, executor)
        for n in (1, 2):
            await committer.commit([raw('kiwi', state_frame('fleet/heartbeat', n, sequence=n))],
                                   [], T0 + n, False)
        flushed = await committer.flush_state(T0 + 3)
    assert flushed is not None and flushed.messages == 1


# -- the batcher's timer ------------------------------------------------------------------

class FlushCounting:
    """A committer that counts flushes (and commits nothing)."""

    def __init__(self) -> None:
        self.flushes: list[float] = []
        self.commits = 0

    async def commit(self, frames: Sequence[Any], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        self.commits += 1
        return CommitOutcome(messages=len(frames))

    async def flush_state(self, now: float) -> CommitOutcome | None:
        self.flushes.append(now)
        return None

    async def forget(self, robot_ids: Sequence[str]) -> None: ...

    async def mark_all_offline(self, now: float) -> int:
        return 0


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


@pytest.mark.anyio
async def test_the_batcher_flushes_every_interval_idle_or_busy_and_at_drain() -> None:
    committer = FlushCounting()
    batcher = CommitBatcher(committer, interval_s=0.01, max_batch=100, max_pending=1000,
                            retry_s=0.01, on_committed=lambda _o: None, metrics=FleetMetrics(),
                            flush_interval_s=0.05)
    task = asyncio.get_running_loop().create_task(batcher.run())
    try:
        await asyncio.sleep(0.3)  # idle: flushes all the same
        idle = len(committer.flushes)
        for i in range(20):  # busy: frames all the time
            batcher.submit('kiwi', T0 + i, b'{}')
            await asyncio.sleep(0.015)
        busy = len(committer.flushes) - idle
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert 3 <= idle <= 8, idle
    assert busy >= 3 and committer.commits >= 5
    before = len(committer.flushes)
    assert await batcher.drain(1.0)
    assert len(committer.flushes) == before + 1


@pytest.mark.anyio
async def test_no_flush_without_an_interval_or_a_flushing_committer() -> None:
    committer = FlushCounting()
    batcher = CommitBatcher(committer, interval_s=0.01, max_batch=100, max_pending=1000,
                            retry_s=0.01, on_committed=lambda _o: None, metrics=FleetMetrics())
    assert await batcher.drain(1.0) and committer.flushes == []
