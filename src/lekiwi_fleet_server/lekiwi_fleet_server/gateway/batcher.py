"""Commit batcher: one writer, one transaction per batch, acks only after it commits.

Publish frames from every connection are queued undecoded on the event loop; a batch is taken
at most every `interval_s` and committed through a `Committer` (a writer thread, or the writer
process), so the loop never decodes a message or waits on the database and the store sees a
single writer. A committer that can plan a batch while the one before it is written (the writer
process: `max_in_flight` 2) gets the next batch without waiting for the previous commit; the
outcomes are still taken in order. When a commit fails, its batch and every batch sent after
it (which the committer fails too: they were planned on it) go back to the front of the queue
in their order, nothing new is sent until they are all back, and they are retried: nothing is
acknowledged, nothing is lost or reordered while the process lives, and robots resend whatever
a crash took.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
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
                 now: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._committer = committer
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_s = retry_s
        self._on_committed = on_committed
        self._metrics = metrics
        self._want_update = want_update
        self._now = now
        self._monotonic = monotonic
        self._pending: list[RawFrame] = []
        self._presence: list[PresenceChange] = []
        self._wakeup = asyncio.Event()
        self._last_start = float('-inf')
        self.committed_batches = 0
        self._max_in_flight = max(1, getattr(committer, 'max_in_flight', 1))
        self._in_flight: deque[asyncio.Task[CommitOutcome | None]] = deque()
        self._failing = False  # a commit failed: send nothing until every batch sent is back
        self._requeued = (0, 0)  # frames, presence changes put back since that failure

    @property
    def pending(self) -> int:
        """Return how many frames wait for a commit."""
        return len(self._pending)

    def submit(self, robot_id: str, received_at: float, payload: bytes) -> bool:
        """Queue a publish frame for the next batch; False when the backlog is full."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            return False
        pending.append((robot_id, received_at, payload))
        if len(pending) == 1:
            self._wakeup.set()
        return True

    def submit_presence(self, change: PresenceChange) -> None:
        """Queue a presence change for the next batch (never refused: it is tiny and rare)."""
        self._presence.append(change)
        self._wakeup.set()

    def _take(self) -> tuple[list[RawFrame], list[PresenceChange]]:
        self._requeued = (0, 0)
        frames = self._pending
        if len(frames) <= self._max_batch:
            self._pending = []
        else:
            frames, self._pending = frames[:self._max_batch], frames[self._max_batch:]
        presence, self._presence = self._presence, []
        return frames, presence

    def _put_back(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange]) -> None:
        # Batches come back in the order they were sent: each after those already back.
        at_frame, at_change = self._requeued
        self._pending[at_frame:at_frame] = frames
        self._presence[at_change:at_change] = presence
        self._requeued = (at_frame + len(frames), at_change + len(presence))

    async def commit_once(self) -> CommitOutcome | None:
        """Commit what is queued now (one batch); None when nothing was committed."""
        frames, presence = self._take()
        if not frames and not presence:
            return None
        return await self._commit(frames, presence, None)

    async def _commit(self, frames: list[RawFrame], presence: list[PresenceChange],
                      previous: asyncio.Task[CommitOutcome | None] | None
                      ) -> CommitOutcome | None:
        started = time.perf_counter()
        call = asyncio.ensure_future(self._committer.commit(frames, presence, self._now(),
                                                            self._want_update()))
        if previous is not None:
            await asyncio.wait({previous})  # outcomes are taken in the order batches were sent
        try:
            outcome = await call
        except StoreUnavailable as exc:
            self._failed(frames, presence)
            log.warning('commit of %d frames failed, will retry: %s', len(frames), exc)
            return None
        except Exception:
            # Also retried: dropping a batch would lose unacknowledged messages for good.
            self._failed(frames, presence)
            log.exception('commit of %d frames failed unexpectedly, will retry', len(frames))
            return None
        metrics = self._metrics
        metrics.commit_seconds.observe(time.perf_counter() - started)
        self.committed_batches += 1
        metrics.batch_size.observe(len(frames))
        metrics.messages_committed.inc(outcome.acknowledged)
        metrics.duplicates.inc(outcome.duplicates)
        # Acks go out from the next turn of the loop: `run` first hands the writer its next
        # batch, so the writer never idles while thousands of acks are written to sockets.
        asyncio.get_running_loop().call_soon(self._on_committed, outcome)
        return outcome

    def _failed(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange]) -> None:
        self._failing = True
        self._put_back(frames, presence)
        self._metrics.commit_failures.inc()
        self._wakeup.set()

    async def run(self) -> None:
        """Commit batches until cancelled, at most one commit start per interval."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while True:  # until a batch may be sent now; no await between the checks and _take
                if len(self._in_flight) >= self._max_in_flight:
                    await asyncio.wait({self._in_flight[0]})
                elif self._failing:
                    # Every batch sent before the failure comes back before anything is resent.
                    while self._in_flight:
                        await asyncio.wait({self._in_flight[0]})
                    self._failing = False
                    await asyncio.sleep(self._retry_s)
                elif (delay := self._last_start + self._interval_s - self._monotonic()) > 0:
                    await asyncio.sleep(delay)
                else:
                    break
            frames, presence = self._take()
            if frames or presence:
                self._last_start = self._monotonic()
                previous = self._in_flight[-1] if self._in_flight else None
                task = asyncio.create_task(self._commit(frames, presence, previous))
                self._in_flight.append(task)
                task.add_done_callback(self._in_flight.remove)
            if self._pending or self._presence:
                self._wakeup.set()

    async def drain(self, timeout_s: float) -> bool:
        """Commit everything queued (at shutdown); False if the store kept failing."""
        deadline = self._monotonic() + timeout_s
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout_s)
        while self._pending or self._presence:
            if self._monotonic() > deadline:
                return False
            if await self.commit_once() is None:
                await asyncio.sleep(min(self._retry_s, 0.1))
        return True
