"""CommitBatcher: pacing, order, backlog limit, retry after store failures, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from lekiwi_fleet_server.gateway.batcher import CommitBatcher
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, RawFrame
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.store.interface import PresenceChange, StoreUnavailable

pytestmark = pytest.mark.anyio


class RecordingCommitter:
    """Commits into a list; fails while `failures` is positive (a stand-in for the writer)."""

    def __init__(self, failures: int = 0, error: type[Exception] = StoreUnavailable) -> None:
        self.batches: list[tuple[list[RawFrame], list[PresenceChange], bool]] = []
        self.failures = failures
        self.error = error
        self.started: list[float] = []

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        self.started.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            raise self.error('database down')
        self.batches.append((list(frames), list(presence), want_update))
        return CommitOutcome(acks=[(r, p) for r, _t, p in frames], acknowledged=len(frames),
                             duplicates=1 if frames else 0, messages=len(frames))

    async def mark_all_offline(self, now: float) -> int:
        return 0


def frame(seq: int, robot: str = 'r1') -> tuple[str, bytes]:
    return robot, f'frame-{seq}'.encode()


def make(committer: RecordingCommitter, results: list[CommitOutcome],
         **kw: float) -> tuple[CommitBatcher, FleetMetrics]:
    options = {'interval_s': 0.05, 'max_batch': 1000, 'max_pending': 100, 'retry_s': 0.01} | kw
    metrics = FleetMetrics()
    batcher = CommitBatcher(committer, on_committed=results.append, metrics=metrics,
                            want_update=lambda: True, **options)  # type: ignore[arg-type]
    return batcher, metrics


def submit(batcher: CommitBatcher, seq: int, robot: str = 'r1') -> bool:
    robot_id, payload = frame(seq, robot)
    return batcher.submit(robot_id, time.time(), payload)


async def test_batches_are_paced_and_keep_arrival_order() -> None:
    committer, results = RecordingCommitter(), []
    batcher, metrics = make(committer, results)
    runner = asyncio.create_task(batcher.run())
    for seq in (1, 2, 2, 3):
        assert submit(batcher, seq)
    batcher.submit_presence(PresenceChange('r1', True, 0.0, 'connected'))
    await asyncio.sleep(0.02)
    for seq in (4, 5):
        submit(batcher, seq)
    await asyncio.sleep(0.15)
    runner.cancel()
    committed = [p for batch, _, _ in committer.batches for _r, _t, p in batch]
    assert committed == [frame(s)[1] for s in (1, 2, 2, 3, 4, 5)]  # resends go to the writer
    assert committer.batches[0][1][0].online and committer.batches[0][2]  # update wanted
    gaps = [b - a for a, b in zip(committer.started, committer.started[1:], strict=False)]
    assert all(g >= 0.045 for g in gaps), gaps
    assert sum(r.acknowledged for r in results) == 6 and batcher.pending == 0
    assert metrics.messages_committed._value.get() == 6
    assert metrics.duplicates._value.get() == len(results)


async def test_backlog_limit_refuses_new_frames() -> None:
    batcher, _ = make(RecordingCommitter(), [], max_pending=2)
    assert submit(batcher, 1) and submit(batcher, 2)
    assert not submit(batcher, 3)
    assert batcher.pending == 2


@pytest.mark.parametrize('error', [StoreUnavailable, RuntimeError])
async def test_failed_commit_is_retried_in_order_and_nothing_acked_meanwhile(
        error: type[Exception]) -> None:
    committer, results = RecordingCommitter(failures=2, error=error), []
    batcher, metrics = make(committer, results, interval_s=0.01)
    runner = asyncio.create_task(batcher.run())
    submit(batcher, 1)
    await asyncio.sleep(0.015)
    submit(batcher, 2)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if results:
            break
    runner.cancel()
    assert len(committer.started) >= 3  # two failures, then success
    assert metrics.commit_failures._value.get() == 2
    committed = [p for batch, _, _ in committer.batches for _r, _t, p in batch]
    assert committed == [frame(1)[1], frame(2)[1]]  # the failed batch first, as it came


async def test_large_backlog_is_split_into_batches() -> None:
    committer, results = RecordingCommitter(), []
    batcher, _ = make(committer, results, max_batch=3)
    for seq in range(1, 8):
        submit(batcher, seq)
    assert await batcher.drain(timeout_s=1.0)
    assert [len(b) for b, _, _ in committer.batches] == [3, 3, 1]
    assert [p for _r, _t, p in committer.batches[0][0]] == [frame(s)[1] for s in (1, 2, 3)]


async def test_drain_gives_up_when_the_store_stays_down() -> None:
    batcher, _ = make(RecordingCommitter(failures=10**6), [], retry_s=0.01)
    submit(batcher, 1)
    assert not await batcher.drain(timeout_s=0.05)
    assert batcher.pending == 1


async def test_nothing_queued_commits_nothing() -> None:
    committer = RecordingCommitter()
    batcher, _ = make(committer, [])
    assert await batcher.commit_once() is None and committer.started == []


def observed(metrics: FleetMetrics, name: str) -> tuple[float | None, float | None]:
    """Return (count, sum) of one of the metrics' histograms."""
    get = metrics.registry.get_sample_value
    return get(f'{name}_count'), get(f'{name}_sum')


async def test_ack_metrics_time_the_oldest_frame_and_the_ack_writing() -> None:
    clock = [1000.0]
    written: list[CommitOutcome] = []

    def on_committed(outcome: CommitOutcome) -> None:
        time.sleep(0.02)  # writing the acks takes the loop a while
        written.append(outcome)

    metrics = FleetMetrics()
    batcher = CommitBatcher(RecordingCommitter(), interval_s=0.01, max_batch=1000,
                            max_pending=100, retry_s=0.01, on_committed=on_committed,
                            metrics=metrics, now=lambda: clock[0])
    batcher.submit('r1', 1000.0, b'first')
    batcher.submit('r2', 1000.2, b'second')
    clock[0] = 1000.5
    assert await batcher.commit_once() is not None
    assert not written  # acks go out from the next turn of the loop
    await asyncio.sleep(0.05)
    assert len(written) == 1
    count, total = observed(metrics, 'lekiwi_gateway_ack_seconds')
    assert count == 1 and total == pytest.approx(0.5)  # from the oldest frame, not the newest
    count, total = observed(metrics, 'lekiwi_gateway_ack_send_seconds')
    assert count == 1 and total is not None and 0.02 <= total < 1.0
    # A presence-only batch has no frame to time: only the writing is observed.
    batcher.submit_presence(PresenceChange('r1', False, 1000.5, 'closed'))
    assert await batcher.commit_once() is not None
    await asyncio.sleep(0.05)
    assert observed(metrics, 'lekiwi_gateway_ack_seconds')[0] == 1
    assert observed(metrics, 'lekiwi_gateway_ack_send_seconds')[0] == 2
