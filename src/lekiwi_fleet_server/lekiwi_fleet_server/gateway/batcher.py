"""Commit batcher: one writer, one transaction per batch, acks only after it commits.

Messages from every connection are queued on the event loop; a batch is taken at most every
`interval_s` and committed through `FleetStore.commit_batch` in one dedicated writer thread, so
the loop never waits on the database and the store sees a single writer. When the store fails,
the batch goes back to the front of the queue and is retried: nothing is acknowledged, nothing
is lost while the process lives, and robots resend whatever a crash took.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from itertools import islice

from lekiwi_fleet_server.metrics import FleetMetrics
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    FleetStore,
    PresenceChange,
    RobotMessage,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

Key = tuple[str, str, int]
OnCommitted = Callable[[BatchResult], None]


class CommitBatcher:
    """Collect validated messages and presence changes; commit them in paced batches."""

    def __init__(self, store: FleetStore, executor: Executor, *, interval_s: float,
                 max_batch: int, max_pending: int, retry_s: float,
                 on_committed: OnCommitted, metrics: FleetMetrics,
                 now: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._executor = executor
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_s = retry_s
        self._on_committed = on_committed
        self._metrics = metrics
        self._now = now
        self._monotonic = monotonic
        # Keyed by the idempotency key: a resend of a queued message is not queued twice.
        self._pending: dict[Key, RobotMessage] = {}
        self._presence: list[PresenceChange] = []
        self._wakeup = asyncio.Event()
        self._last_start = float('-inf')
        self.committed_batches = 0

    @property
    def pending(self) -> int:
        """Return how many messages wait for a commit."""
        return len(self._pending)

    def submit(self, message: RobotMessage) -> bool:
        """Queue a message for the next batch; False when the backlog is full (refuse it)."""
        pending = self._pending
        key = (message.robot_id, message.boot_id, message.seq)
        if key not in pending:
            if len(pending) >= self._max_pending:
                return False
            pending[key] = message
        self._wakeup.set()
        return True

    def submit_presence(self, change: PresenceChange) -> None:
        """Queue a presence change for the next batch (never refused: it is tiny and rare)."""
        self._presence.append(change)
        self._wakeup.set()

    def _take(self) -> tuple[list[RobotMessage], list[PresenceChange]]:
        pending = self._pending
        if len(pending) <= self._max_batch:
            messages = list(pending.values())
            self._pending = {}
        else:
            keys = list(islice(pending, self._max_batch))
            messages = [pending.pop(k) for k in keys]
        presence, self._presence = self._presence, []
        return messages, presence

    def _put_back(self, messages: Sequence[RobotMessage],
                  presence: Sequence[PresenceChange]) -> None:
        merged = {(m.robot_id, m.boot_id, m.seq): m for m in messages}
        for key, m in self._pending.items():
            merged.setdefault(key, m)
        self._pending = merged
        self._presence = [*presence, *self._presence]

    def _commit(self, messages: list[RobotMessage], presence: list[PresenceChange]
                ) -> BatchResult:
        started = time.perf_counter()
        result = self._store.commit_batch(messages, presence, now=self._now())
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return result

    async def commit_once(self) -> BatchResult | None:
        """Commit what is queued now (one batch); None when nothing was committed."""
        messages, presence = self._take()
        if not messages and not presence:
            return None
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._commit, messages, presence)
        except StoreUnavailable as exc:
            self._put_back(messages, presence)
            self._metrics.commit_failures.inc()
            log.warning('commit of %d messages failed, will retry: %s', len(messages), exc)
            return None
        except Exception:
            # Also retried: dropping a batch would lose unacknowledged messages for good.
            self._put_back(messages, presence)
            self._metrics.commit_failures.inc()
            log.exception('commit of %d messages failed unexpectedly, will retry',
                          len(messages))
            return None
        self.committed_batches += 1
        self._metrics.batch_size.observe(len(messages))
        self._metrics.messages_committed.inc(len(result.acknowledged))
        self._metrics.duplicates.inc(result.duplicates)
        self._on_committed(result)
        return result

    async def run(self) -> None:
        """Commit batches until cancelled, at most one commit start per interval."""
        while True:
            await self._wakeup.wait()
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
        return True
