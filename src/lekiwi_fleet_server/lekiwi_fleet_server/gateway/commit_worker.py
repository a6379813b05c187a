"""The writer's side of a commit: publish frames in; acks, refusals and an update out.

The gateway's event loop validates each `publish` frame and hands it over as its payload bytes
(`RawFrame`: robot id, receive time, payload); `CommitWorker.commit` decodes them, commits the
messages and the batch's presence changes through `FleetStore.commit_batch` in one
transaction, and returns what the loop has to send: one encoded ack frame per robot and boot,
the store's refusals, and the encoded dashboard update. It runs wherever the single writer
runs: in a thread of the server process (`ThreadCommitter`, the default) or in a writer role
that consumes its shard's JetStream partition (broker/writer_side.py). Either way nothing is
returned, so nothing is acknowledged, unless the transaction committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from lekiwi_fleet_server.domain import protocol
from lekiwi_fleet_server.domain.protocol import ErrorCode, ProtocolError
from lekiwi_fleet_server.gateway.bus import encode_update
from lekiwi_fleet_server.gateway.summary_deltas import SummaryDeltas
from lekiwi_fleet_server.gateway.writer_metrics import WriterMetrics
from lekiwi_fleet_server.store.interface import (
    BatchResult,
    FleetStore,
    PresenceChange,
    RobotMessage,
)

# (robot_id, received_at, payload of a validated publish frame): a tuple, not a dataclass,
# because thousands a second cross a pipe to the writer process, and tuples of str, float and
# bytes pickle fastest; the bytes are far cheaper to send and decode than the decoded message.
RawFrame = tuple[str, float, bytes]
# (robot_id, error code value, message, frame id): a refused frame to answer with an error.
Refusal = tuple[str, str, str, str | None]


@dataclass(slots=True)
class CommitOutcome:
    """What one committed batch asks the gateway to send."""

    acks: list[tuple[str, bytes]] = field(default_factory=list)  # (robot_id, ack frame)
    refusals: list[Refusal] = field(default_factory=list)
    update: str | None = None  # the encoded dashboard update, when asked for and non-empty
    acknowledged: int = 0
    duplicates: int = 0
    messages: int = 0  # valid publish frames handed to the store


class CommitWorker:
    """Decode, validate and commit batches of raw publish frames through one store."""

    def __init__(self, store: FleetStore, metrics: WriterMetrics | None = None) -> None:
        self._store = store
        self._metrics = metrics
        # What the dashboard updates of this writer's robots have carried so far.
        self._deltas = SummaryDeltas()

    @property
    def store(self) -> FleetStore:
        """The store commits go through."""
        return self._store

    def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
               now: float, want_update: bool) -> CommitOutcome:
        """Commit a batch; raise the store's error (nothing acknowledged) when it fails."""
        outcome = CommitOutcome()
        messages: list[RobotMessage] = []
        loads = orjson.loads
        for robot_id, received_at, payload in frames:
            try:
                frame = loads(payload)
                seq = frame.get('seq')
                if seq is None:  # lekiwi-fleet/2's state space (the gateway checked the topic)
                    messages.append(RobotMessage(robot_id, frame['boot_id'], frame['state_seq'],
                                                 frame['topic'], frame['msg'], received_at,
                                                 True))
                    continue
                messages.append(RobotMessage(robot_id, frame['boot_id'], seq,
                                             frame['topic'], frame['msg'], received_at))
            except (ValueError, KeyError, TypeError) as exc:
                # The gateway validated the frame: only a bug (or a corrupted pipe) gets here.
                outcome.refusals.append((robot_id, ErrorCode.SERVER_ERROR.value,
                                         f'undecodable frame: {exc!r}', None))
        outcome.messages = len(messages)
        if not messages and not presence:
            return outcome
        # The answers are made while the database commits (see FleetStore.commit_batch); an
        # outcome whose commit then fails is never returned.
        undecodable = list(outcome.refusals)
        deltas = self._deltas
        started = time.perf_counter()
        try:
            result = self._store.commit_batch(
                messages, presence, now=now, while_committing=lambda result: _answer(
                    outcome, undecodable, result, now, deltas if want_update else None))
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.failed(exc)
            raise
        if self._metrics is not None:
            self._metrics.committed(len(messages), time.perf_counter() - started,
                                    result.new_events)
        # Committed: the deltas' memory follows what this update carries (or, without one,
        # forgets the changed robots: a subscriber arriving now may hold an older snapshot).
        if want_update:
            deltas.remember(result.changed_robots)
        elif result.changed_robots and len(deltas):
            deltas.forget(s.robot_id for s in result.changed_robots)
        return outcome

    def flush_state(self, now: float) -> CommitOutcome | None:
        """Write the coalesced current-state readings (one statement); None when none were due.

        Whatever runs this worker calls it every `state_flush_interval_s`. The readings reached
        the dashboard with the commit that took them, so the outcome carries no update; its
        `messages` says how many robots' rows were written. Raises the store's error.
        """
        try:
            written = self._store.flush_state(now=now)
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.failed(exc)
            raise
        if self._metrics is not None:
            self._metrics.flushed(written)
        return CommitOutcome(messages=written) if written else None


def _answer(outcome: CommitOutcome, undecodable: list[Refusal], result: BatchResult,
            now: float, deltas: SummaryDeltas | None) -> None:
    """Fill in what the gateway sends for a committed batch (again when it was replanned)."""
    # Per robot and boot: its history seqs and its state seqs (index 1: `key.state_space`).
    by_boot: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for key in result.acknowledged:
        pair = (key.robot_id, key.boot_id)
        seqs = by_boot.get(pair)
        if seqs is None:
            seqs = by_boot[pair] = ([], [])
        seqs[key.state_space].append(key.seq)
    ack = protocol.ack_frame_of
    # A boot without state seqs gets v1's ack (a lekiwi-fleet/1 robot never sees another).
    outcome.acks = [(robot_id, ack(boot_id, history, states or None))
                    for (robot_id, boot_id), (history, states) in by_boot.items()]
    outcome.refusals = undecodable + [
        # Valid by the protocol but refused by the store (say a delta whose names and
        # values differ in length): never acked, so the robot learns why instead.
        (r.key.robot_id, ErrorCode.INVALID_MESSAGE.value, r.reason,
         protocol.publish_id(r.key.boot_id, r.key.seq, r.key.state_space))
        for r in result.rejected]
    outcome.acknowledged = len(result.acknowledged)
    outcome.duplicates = result.duplicates
    outcome.update = None
    # Without deltas (nobody listened when the batch began) the update still carries the
    # batch's events: a dashboard subscribing meanwhile gets them from it, and the rows from a
    # snapshot read after this batch is done (gateway/bus.py, `settled`).
    rows = deltas.rows(result.changed_robots) if deltas is not None else []
    if rows or result.new_events:
        outcome.update = encode_update('update', now, rows, list(result.new_events))


def refusal_error(refusal: Refusal) -> ProtocolError:
    """Return the protocol error of a refusal."""
    _robot_id, code, message, frame_id = refusal
    return ProtocolError(ErrorCode(code), message, frame_id)


class Committer(Protocol):
    """Where the gateway's batches are committed: a writer thread or a writer role over NATS.

    The batcher calls `flush_state` every `state_flush_interval_s` (issue 17); a committer
    whose writer flushes on its own (the writer role) answers None.
    """

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome: ...

    async def flush_state(self, now: float) -> CommitOutcome | None: ...

    async def forget(self, robot_ids: Sequence[str]) -> None: ...

    async def mark_all_offline(self, now: float) -> int: ...


class ThreadCommitter:
    """Commit in one writer thread of this process (the store sees a single writer)."""

    def __init__(self, store: FleetStore, executor: Executor,
                 metrics: WriterMetrics | None = None) -> None:
        self._worker = CommitWorker(store, metrics)
        self._executor = executor

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        """Run `CommitWorker.commit` in the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._worker.commit, frames, presence, now, want_update)

    async def flush_state(self, now: float) -> CommitOutcome | None:
        """Run `CommitWorker.flush_state` in the writer thread (between two batches)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._worker.flush_state, now)

    async def forget(self, robot_ids: Sequence[str]) -> None:
        """Drop the store's memory of these robots, in the writer thread (after its batch)."""
        store = self._worker.store
        await asyncio.get_running_loop().run_in_executor(
            self._executor, store.forget_robots, list(robot_ids))

    async def mark_all_offline(self, now: float) -> int:
        """Record every robot shown online as offline (at gateway start)."""
        store = self._worker.store
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: store.mark_all_offline(now=now))

