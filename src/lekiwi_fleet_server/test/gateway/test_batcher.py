"""CommitBatcher: pacing, dedupe, backlog limit, retry after store failures, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from lekiwi_fleet_server.gateway.batcher import CommitBatcher
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    MessageKey,
    PresenceChange,
    RobotMessage,
    StoreUnavailable,
)

pytestmark = pytest.mark.anyio

class RecordingStore:
    """Commits into a list; fails while `failures` is positive (a test double for the writer)."""

    def __init__(self, failures: int = 0, error: type[Exception] = StoreUnavailable) -> None:
        self.batches: list[tuple[list[RobotMessage], list[PresenceChange]]] = []
        self.committed: set[tuple[str, str, int]] = set()
        self.failures = failures
        self.error = error
        self.started: list[float] = []

    def commit_batch(self, messages: Sequence[RobotMessage],
                     presence: Sequence[PresenceChange] = (), *, now: float) -> BatchResult:
        self.started.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            raise self.error('database down')
        keys = [(m.robot_id, m.boot_id, m.seq) for m in messages]
        duplicates = sum(1 for k in keys if k in self.committed)
        self.committed.update(keys)
        self.batches.append((list(messages), list(presence)))
        return BatchResult(tuple(MessageKey(*k) for k in keys), duplicates, (), ())


def message(seq: int, robot: str = 'r1') -> RobotMessage:
    return RobotMessage(robot, 'boot-0001', seq, 'fleet/events', {}, 0.0)


def make(store: RecordingStore, results: list[BatchResult], **kw: float) -> CommitBatcher:
    options = {'interval_s': 0.05, 'max_batch': 1000, 'max_pending': 100, 'retry_s': 0.01} | kw
    return CommitBatcher(store, ThreadPoolExecutor(1), on_committed=results.append,  # type: ignore[arg-type]
                         metrics=FleetMetrics(), **options)  # type: ignore[arg-type]


async def test_batches_are_paced_and_deduplicated() -> None:
    store, results = RecordingStore(), []
    batcher = make(store, results)
    runner = asyncio.create_task(batcher.run())
    for seq in (1, 2, 2, 3):
        assert batcher.submit(message(seq))
    batcher.submit_presence(PresenceChange('r1', True, 0.0, 'connected'))
    await asyncio.sleep(0.02)
    for seq in (4, 5):
        batcher.submit(message(seq))
    await asyncio.sleep(0.15)
    runner.cancel()
    committed = [m.seq for batch, _ in store.batches for m in batch]
    assert sorted(committed) == [1, 2, 3, 4, 5]
    assert store.batches[0][1][0].online
    gaps = [b - a for a, b in zip(store.started, store.started[1:], strict=False)]
    assert all(g >= 0.045 for g in gaps), gaps
    assert sum(len(r.acknowledged) for r in results) == 5
    assert batcher.pending == 0


async def test_backlog_limit_refuses_new_messages() -> None:
    batcher = make(RecordingStore(), [], max_pending=2)
    assert batcher.submit(message(1)) and batcher.submit(message(2))
    assert batcher.submit(message(2))  # a resend of a queued one is fine
    assert not batcher.submit(message(3))
    assert batcher.pending == 2


@pytest.mark.parametrize('error', [StoreUnavailable, RuntimeError])
async def test_failed_commit_is_retried_and_nothing_acked_meanwhile(
        error: type[Exception]) -> None:
    store, results = RecordingStore(failures=2, error=error), []
    batcher = make(store, results, interval_s=0.01)
    runner = asyncio.create_task(batcher.run())
    batcher.submit(message(1))
    await asyncio.sleep(0.015)
    batcher.submit(message(2))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if results:
            break
    runner.cancel()
    assert len(store.started) >= 3  # two failures, then success
    acked = sorted(k.seq for r in results for k in r.acknowledged)
    assert acked == [1, 2]
    assert len(results) == 1 or sorted(m.seq for m in store.batches[0][0]) == [1, 2]


async def test_large_backlog_is_split_into_batches() -> None:
    store, results = RecordingStore(), []
    batcher = make(store, results, max_batch=3)
    for seq in range(1, 8):
        batcher.submit(message(seq))
    assert await batcher.drain(timeout_s=1.0)
    assert [len(b) for b, _ in store.batches] == [3, 3, 1]
    assert [m.seq for m in store.batches[0][0]] == [1, 2, 3]


async def test_drain_gives_up_when_the_store_stays_down() -> None:
    batcher = make(RecordingStore(failures=10**6), [], retry_s=0.01)
    batcher.submit(message(1))
    assert not await batcher.drain(timeout_s=0.05)
    assert batcher.pending == 1
