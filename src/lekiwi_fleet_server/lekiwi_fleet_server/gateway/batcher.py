"""Commit batcher: one writer, one transaction per batch, acks only after it commits.

Publish frames from every connection are queued undecoded on the event loop; a batch is taken
at most every `interval_s` and committed through a `Committer` (a writer thread, or the writer
process), so the loop never decodes a message or waits on the database and each robot has a
single writer (with writer shards, the gateway has one batcher per shard). When a commit
fails, the batch goes back to the front of the queue and is retried: nothing is acknowledged,
nothing is lost while the process lives, and robots resend whatever a crash took.
Every `flush_interval_s` (settings.state_flush_interval_s) the batcher also has the committer
write the coalesced current-state readings (`Committer.flush_state`), and once more when it
drains at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, Committer, RawFrame
from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.store.interface import PresenceChange, StoreUnavailable

log = logging.getLogger(__name__)

OnCommitted = Callable[[CommitOutcome], None]


class CommitBatcher:
    """Collect raw publish frames and presence changes; commit them in paced batches."""

    def __init__(self, committer: Committer, *, interval_s: float, max_batch: int,
                 max_pending: int, retry_s: float, on_committed: OnCommitted,
                 metrics: FleetMetrics, want_update: Callable[[], bool] = lambda: False,
                 batch_done: Callable[[bool], None] = lambda _wanted: None,
                 now: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 flush_interval_s: float | None = None) -> None:
        self._committer = committer
        # Without a flush interval (tests of batching alone) the batcher never flushes.
        self._flushes = bool(flush_interval_s)
        self._flush_interval_s = flush_interval_s or 0.0
        self._next_flush = float('-inf') if self._flushes else float('inf')
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_s = retry_s
        self._on_committed = on_committed
        self._metrics = metrics
        self._want_update = want_update
        self._batch_done = batch_done
        self._now = now
        self._monotonic = monotonic
        self._pending: list[RawFrame] = []
        # Frames of each robot submitted and not yet committed (or refused by the store): the
        # gateway's per-robot in-flight cap reads it, so one robot cannot fill the backlog.
        self._robot_pending: dict[str, int] = {}
        self._presence: list[PresenceChange] = []
        self._wakeup = asyncio.Event()
        self._last_start = float('-inf')
        self.committed_batches = 0

    @property
    def pending(self) -> int:
        """Return how many frames wait for a commit."""
        return len(self._pending)

    def robot_pending(self, robot_id: str) -> int:
        """Return how many frames of this robot wait for their commit."""
        return self._robot_pending.get(robot_id, 0)

    def submit(self, robot_id: str, received_at: float, payload: bytes) -> bool:
        """Queue a publish frame for the next batch; False when the backlog is full."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            return False
        pending.append((robot_id, received_at, payload))
        counts = self._robot_pending
        counts[robot_id] = counts.get(robot_id, 0) + 1
        if len(pending) == 1:
            self._wakeup.set()
        return True

    def submit_presence(self, change: PresenceChange) -> None:
        """Queue a presence change for the next batch (never refused: it is tiny and rare)."""
        self._presence.append(change)
        self._wakeup.set()

    def _take(self) -> tuple[list[RawFrame], list[PresenceChange]]:
        frames = self._pending
        if len(frames) <= self._max_batch:
            self._pending = []
        else:
            frames, self._pending = frames[:self._max_batch], frames[self._max_batch:]
        presence, self._presence = self._presence, []
        return frames, presence

    def _put_back(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange]) -> None:
        self._pending[:0] = frames
        self._presence[:0] = presence

    async def commit_once(self) -> CommitOutcome | None:
        """Commit what is queued now (one batch); None when nothing was committed."""
        frames, presence = self._take()
        if not frames and not presence:
            return None
        started = time.perf_counter()
        # `batch_done(wanted)` follows once the outcome was delivered (its update published)
        # or the commit failed: the dashboard stream's hand-over waits on it (gateway/bus.py).
        wanted = self._want_update()
        try:
            outcome = await self._committer.commit(frames, presence, self._now(), wanted)
        except StoreUnavailable as exc:
            self._batch_done(wanted)
            self._put_back(frames, presence)
            self._metrics.commit_failures.inc()
            log.warning('commit of %d frames failed, will retry: %s', len(frames), exc)
            return None
        except Exception:
            self._batch_done(wanted)
            # Also retried: dropping a batch would lose unacknowledged messages for good.
            self._put_back(frames, presence)
            self._metrics.commit_failures.inc()
            log.exception('commit of %d frames failed unexpectedly, will retry', len(frames))
            return None
        counts = self._robot_pending
        for robot_id, _at, _payload in frames:  # answered now: acked or refused
            left = counts[robot_id] - 1
            if left:
                counts[robot_id] = left
            else:
                del counts[robot_id]
        metrics = self._metrics
        metrics.commit_seconds.observe(time.perf_counter() - started)
        self.committed_batches += 1
        metrics.batch_size.observe(len(frames))
        metrics.messages_committed.inc(outcome.acknowledged)
        metrics.duplicates.inc(outcome.duplicates)
        # Acks go out from the next turn of the loop: `run` first hands the writer its next
        # batch, so the writer never idles while thousands of acks are written to sockets.
        # Frames queue in arrival order (a retried batch goes back in front): the first is the
        # batch's oldest.
        asyncio.get_running_loop().call_soon(self._deliver, outcome,
                                             frames[0][1] if frames else None, wanted)
        return outcome

    def _deliver(self, outcome: CommitOutcome, oldest: float | None, wanted: bool) -> None:
        started = time.perf_counter()
        try:
            self._on_committed(outcome)
        finally:
            self._batch_done(wanted)
        metrics = self._metrics
        metrics.ack_send_seconds.observe(time.perf_counter() - started)
        if oldest is not None:
            # The server's share of a robot's ack latency, for the batch's longest-waiting
            # frame: receive queue, commit, and the acks written before its own.
            metrics.ack_seconds.observe(max(0.0, self._now() - oldest))

    async def flush_once(self) -> bool:
        """Have the committer write its coalesced current-state readings; False if it failed."""
        if not self._flushes:
            return True
        self._next_flush = self._monotonic() + self._flush_interval_s
        try:
            outcome = await self._committer.flush_state(self._now())
        except Exception as exc:  # the readings stay in memory: the next flush retries
            self._metrics.commit_failures.inc()
            log.warning('current-state flush failed, will retry: %s', exc)
            return False
        if outcome is not None and outcome.update is not None:
            self._on_committed(outcome)
        return True

    async def _wait_for_work(self) -> None:
        """Wait for frames or presence, flushing the readings whenever a flush is due."""
        while not self._wakeup.is_set():
            if not self._flushes:
                await self._wakeup.wait()
                return
            due = self._next_flush - self._monotonic()
            if due <= 0:
                await self.flush_once()
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 a cancelled wait_for around
            # Event.wait could hang the cancellation (gateway stop never returned).
            try:
                async with asyncio.timeout(due):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def run(self) -> None:
        """Commit batches until cancelled, at most one commit start per interval."""
        while True:
            await self._wait_for_work()
            if self._monotonic() >= self._next_flush:  # a busy writer flushes between batches
                await self.flush_once()
            self._wakeup.clear()
            delay = self._last_start + self._interval_s - self._monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._last_start = self._monotonic()
            before = self.committed_batches
            await self.commit_once()
            if self._pending or self._presence:
                self._wakeup.set()
                if self.committed_batches == before:
                    await asyncio.sleep(self._retry_s)

    async def drain(self, timeout_s: float) -> bool:
        """Commit everything queued (at shutdown); False if the store kept failing."""
        deadline = self._monotonic() + timeout_s
        while self._pending or self._presence:
            if self._monotonic() > deadline:
                return False
            if await self.commit_once() is None:
                await asyncio.sleep(min(self._retry_s, 0.1))
        return await self.flush_once()
