"""A writer shard behind the broker: the single consumer of its partition and of its readings.

`PartitionWriter` runs two inputs through one `CommitWorker` in one writer thread (so the store
sees a single writer):

- **durable messages**: batches fetched from its shard's JetStream consumer are committed
  (one transaction), then the robots' acks and refusals go to the gateway that received each
  robot's frames (one message per gateway), the dashboard update goes out with this
  partition's sequence number (a dashboard that misses one resynchronises), and the batch is
  released with **one cumulative ack** (`AckPolicy.ALL`: the batch's highest message acks all
  below it). A writer SIGKILLed before that leaves its messages unacked: JetStream redelivers
  them to the next writer of the shard, and the store's idempotent message keys turn what was
  committed already into duplicates (acked again, stored once). A failed commit is retried
  after `retry_s`, the batch held.
- **state readings** (lekiwi-fleet/2 `state_seq`): packed core-NATS messages from the
  gateways (broker/packing.py), taken by a subscription and committed in batches of their own
  as soon as the thread is free. `CommitWorker.commit` acks a reading that yields no event
  once the store's memory took it, and commits one that yields an event before its ack, as
  any history message. Nothing of them is stored in NATS: lost with NATS or with this process,
  they are never acked, and the robots resend them (or newer readings supersede them).

A cumulative ack releases every message delivered at or below it, so it is sent only while
this writer has seen every delivery of its consumer since it started (their delivery
sequence numbers follow one another) and the consumer had nothing pending when it started.
Otherwise (a previous writer died with messages pending, a delivery was lost with the
connection) the writer holds its acks, keeps committing (redelivered messages are
duplicates) and releases them once the consumer's own count of pending messages equals what
this writer committed and holds: then nothing pending is one it has not committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout

from lekiwi_fleet_server.broker import packing, subjects
from lekiwi_fleet_server.broker.gateway_side import encode_acks
from lekiwi_fleet_server.broker.link import NatsLink, partition_consumer
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, CommitWorker, RawFrame
from lekiwi_fleet_server.store.interface import PresenceChange

log = logging.getLogger(__name__)


def consumer_name(shard: int) -> str:
    """Return the durable consumer of a shard's partition (one per shard, whoever runs it)."""
    return partition_consumer(shard)


class PartitionWriter:
    """Consume, commit, answer: one writer shard over NATS (see the module docstring)."""

    def __init__(self, link: NatsLink, worker: CommitWorker, shard: int, *,
                 max_batch: int = 5000, fetch_timeout_s: float = 0.25, ack_wait_s: float = 30.0,
                 retry_s: float = 0.5, state_flush_interval_s: float = 1.0,
                 max_pending_readings: int = 100_000,
                 now: Callable[[], float] = time.time) -> None:
        self._link = link
        self._worker = worker
        self.shard = shard
        self._max_batch = max_batch
        self._fetch_timeout_s = fetch_timeout_s
        self._ack_wait_s = ack_wait_s
        self._retry_s = retry_s
        self._flush_s = state_flush_interval_s
        self._max_readings = max_pending_readings
        self._now = now
        # One thread: the store sees a single writer, and forgets run between batches.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f'fleet-writer-{shard}')
        self._epoch = uuid.uuid4().hex[:12]
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        # Packed readings taken and not yet committed: (gateway, frames) per message.
        self._readings: list[tuple[str, list[RawFrame]]] = []
        self._readings_count = 0
        self._readings_ready = asyncio.Event()
        # Cumulative acks (see the module docstring): the last delivery seen, whether every
        # delivery since the start was seen, and the committed messages not yet released.
        self._last_delivery: int | None = None
        self._in_order = False
        self._held: dict[int, Msg] = {}  # stream seq -> a delivery of it (committed)
        self.committed_batches = 0
        self.redelivered = 0
        self.readings_committed = 0
        self.readings_dropped = 0  # taken while this writer was far behind: never acked
        self.cumulative_acks = 0
        self.held_acks = 0  # batches whose ack waited for the consumer's count to agree

    async def start(self) -> None:
        """Bind to the shard's durable consumer and readings, then start consuming."""
        js = self._link.js
        await self._link.ensure_partitions([self.shard], self._ack_wait_s)
        info = await js.consumer_info(subjects.STREAM, consumer_name(self.shard))
        # Deliveries pending from a writer before us: never release them unseen.
        self._last_delivery = info.delivered.consumer_seq if info.delivered else 0
        self._in_order = not info.num_ack_pending
        pull = await js.pull_subscribe_bind(consumer_name(self.shard), subjects.STREAM)
        readings = await self._link.nc.subscribe(subjects.state_subject(self.shard),
                                                 cb=self._on_readings)
        forget = await self._link.nc.subscribe(subjects.forget_subject(self.shard),
                                               cb=self._on_forget)
        self._subs = [pull, readings, forget]
        await self._link.nc.flush()  # the server has both subscriptions before we say we run
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume(pull), name=f'writer-{self.shard}'),
            loop.create_task(self._consume_readings(), name=f'writer-{self.shard}-readings'),
            loop.create_task(self._flush_loop(), name=f'writer-{self.shard}-flush')]
        log.info('writer shard %d consuming %s and %s (%d pending from before)', self.shard,
                 subjects.durable_subject(self.shard), subjects.state_subject(self.shard),
                 info.num_ack_pending)

    async def stop(self) -> None:
        """Stop consuming (a batch being committed finishes; unacked ones are redelivered)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is gone: nothing to unsubscribe
                pass
        self._thread.shutdown(wait=True)

    # -- durable messages (JetStream) ------------------------------------------------------
    async def _consume(self, pull: Any) -> None:
        while True:
            try:
                msgs = await pull.fetch(self._max_batch, timeout=self._fetch_timeout_s)
            except (NatsTimeout, asyncio.TimeoutError):
                if self._held:  # idle: the moment the consumer's count can agree with ours
                    await self._release_held()
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: nats-py reconnects
                log.warning('writer %d: fetch failed: %s', self.shard, exc)
                await asyncio.sleep(self._retry_s)
                continue
            if msgs:
                await self.commit_messages(msgs)

    async def commit_messages(self, msgs: Sequence[Msg]) -> CommitOutcome:
        """Commit one batch of JetStream messages; release them only once it committed."""
        frames: list[RawFrame] = []
        presence: list[PresenceChange] = []
        gateway_of: dict[str, str] = {}
        counts: dict[str, int] = {}
        for msg in msgs:
            meta = msg.metadata
            self._saw_delivery(meta.sequence.consumer)
            headers = msg.headers or {}
            robot_id = headers.get(subjects.ROBOT, '')
            gateway = headers.get(subjects.GATEWAY, '')
            gateway_of[robot_id] = gateway
            if meta.num_delivered > 1:
                self.redelivered += 1
            if headers.get(subjects.KIND) == 'presence':
                rid, online, at, reason = orjson.loads(msg.data)
                presence.append(PresenceChange(rid, bool(online), float(at), str(reason)))
            else:
                counts[gateway] = counts.get(gateway, 0) + 1
                frames.append((robot_id, float(headers.get(subjects.RECEIVED_AT, self._now())),
                               msg.data))
        outcome = await self._commit(frames, presence)
        self.committed_batches += 1
        # Committed: answer the gateways, tell the dashboards, then release the messages.
        await self._answer(outcome, gateway_of, counts)
        for msg in msgs:
            self._held[msg.metadata.sequence.stream] = msg
        if self._in_order:
            await self._ack_held()
        else:
            self.held_acks += 1
            await self._release_held()
        return outcome

    def _saw_delivery(self, delivery: int) -> None:
        last = self._last_delivery
        if last is not None and delivery != last + 1:
            if self._in_order:
                log.warning('writer %d: delivery %d after %d (one missed): holding acks until '
                            'the consumer agrees', self.shard, delivery, last)
            self._in_order = False
        self._last_delivery = delivery if last is None else max(last, delivery)

    async def _ack_held(self) -> None:
        if not self._held:
            return
        highest = self._held[max(self._held)]
        self._held.clear()
        await _quietly(highest.ack())
        self.cumulative_acks += 1

    async def _release_held(self) -> None:
        """Release held messages once the consumer pends nothing this writer has not committed."""
        try:
            info = await self._link.js.consumer_info(subjects.STREAM, consumer_name(self.shard))
        except Exception as exc:  # the broker is away: ask again after the next batch
            log.debug('writer %d: consumer info failed: %s', self.shard, exc)
            return
        delivered = info.delivered.consumer_seq if info.delivered else 0
        # Every pending message is one we hold (we hold only delivered, unacked ones), and no
        # delivery is on its way to us that we have not seen.
        if info.num_ack_pending == len(self._held) and delivered == self._last_delivery:
            await self._ack_held()
            if not self._in_order:
                log.info('writer %d: every pending message committed; acking cumulatively '
                         'again', self.shard)
            self._in_order = True

    # -- state readings (core NATS) --------------------------------------------------------
    async def _on_readings(self, msg: Msg) -> None:
        try:
            gateway, frames = packing.unpack(msg.data)
        except ValueError as exc:
            log.error('writer %d: undecodable readings: %s', self.shard, exc)
            return
        if self._readings_count + len(frames) > self._max_readings:
            # Far behind: dropping is what losing them in transit would do (never acked).
            self.readings_dropped += len(frames)
            return
        self._readings.append((gateway, frames))
        self._readings_count += len(frames)
        self._readings_ready.set()

    async def _consume_readings(self) -> None:
        while True:
            await self._readings_ready.wait()
            self._readings_ready.clear()
            taken, self._readings, self._readings_count = self._readings, [], 0
            frames: list[RawFrame] = []
            gateway_of: dict[str, str] = {}
            counts: dict[str, int] = {}
            for gateway, chunk in taken:
                frames.extend(chunk)
                counts[gateway] = counts.get(gateway, 0) + len(chunk)
                for robot_id, _at, _payload in chunk:
                    gateway_of[robot_id] = gateway
            outcome = await self._commit(frames, [])
            self.readings_committed += len(frames)
            await self._answer(outcome, gateway_of, counts)

    # -- both ------------------------------------------------------------------------------
    async def _commit(self, frames: list[RawFrame], presence: list[PresenceChange]
                      ) -> CommitOutcome:
        """Commit in the writer thread, retrying (the batch held) until it commits."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(self._thread, self._worker.commit, frames,
                                                  presence, self._now(), True)
            except Exception as exc:
                log.warning('writer %d: commit of %d messages failed, retrying: %s',
                            self.shard, len(frames) + len(presence), exc)
                await asyncio.sleep(self._retry_s)

    async def _answer(self, outcome: CommitOutcome, gateway_of: dict[str, str],
                      counts: dict[str, int]) -> None:
        nc = self._link.nc
        by_gateway: dict[str, tuple[list[tuple[str, bytes]], list[Any]]] = {
            gateway: ([], []) for gateway in counts}
        for robot_id, frame in outcome.acks:
            by_gateway.setdefault(gateway_of.get(robot_id, ''), ([], []))[0].append(
                (robot_id, frame))
        for refusal in outcome.refusals:
            by_gateway.setdefault(gateway_of.get(refusal[0], ''), ([], []))[1].append(refusal)
        single = len(by_gateway) == 1
        # Thousands of acks for one gateway can exceed max_payload: send them in parts.
        limit = max(64 * 1024, (nc.max_payload or 1024 * 1024) * 3 // 4)
        for gateway, (acks, refusals) in by_gateway.items():
            if not gateway or not (acks or refusals):
                continue
            # Per gateway: its messages less its refusals (its metrics); duplicates are the
            # batch's, told when one gateway sent all of it.
            acknowledged = max(0, counts.get(gateway, 0) - len(refusals))
            duplicates = outcome.duplicates if single else 0
            start, size = 0, 0
            for i, (robot_id, frame) in enumerate(acks):
                size += len(frame) + len(robot_id) + 16
                if size > limit and i > start:
                    await _quietly(nc.publish(subjects.ack_subject(gateway),
                                              encode_acks(acks[start:i], [])))
                    start, size = i, len(frame) + len(robot_id) + 16
            await _quietly(nc.publish(subjects.ack_subject(gateway), encode_acks(
                acks[start:], refusals, acknowledged, duplicates)))
        await self._publish_update(outcome.update)

    async def _publish_update(self, update: str | None) -> None:
        if update is None:
            return
        nc = self._link.nc
        # A batch of thousands of robots' rows can exceed the connection's max_payload (1 MB by
        # default): NATS would refuse it, the partition's sequence would skip, and every
        # dashboard would be dropped for a gap. Such an update goes as several, each a delta.
        limit = max(64 * 1024, (nc.max_payload or 1024 * 1024) - 4096)
        for part in split_update(update.encode(), limit):
            self._seq += 1
            await _quietly(nc.publish(
                subjects.updates_subject(self.shard), part,
                headers={subjects.PARTITION: str(self.shard), subjects.EPOCH: self._epoch,
                         subjects.SEQ: str(self._seq)}))

    async def _flush_loop(self) -> None:
        flush = self._worker.flush_state
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                outcome = await loop.run_in_executor(self._thread, flush, self._now())
            except Exception as exc:  # the next flush writes the same state again
                log.warning('writer %d: state flush failed: %s', self.shard, exc)
                continue
            if outcome is not None:
                await self._publish_update(outcome.update)

    async def _on_forget(self, msg: Msg) -> None:
        try:
            robot_ids = [str(r) for r in orjson.loads(msg.data)]
        except (ValueError, TypeError):
            return
        await self.forget(robot_ids)

    async def forget(self, robot_ids: Sequence[str]) -> None:
        """Drop the store's memory of these robots, in the writer thread (between batches)."""
        store = self._worker.store
        await asyncio.get_running_loop().run_in_executor(self._thread, store.forget_robots,
                                                         list(robot_ids))


def split_update(update: bytes, limit: int) -> list[bytes]:
    """Split an encoded dashboard update into updates of at most about `limit` bytes each.

    Its rows are deltas of distinct robots and its events stand alone, so applying the parts
    one after the other is applying the whole. Within the limit it goes as it is.
    """
    if len(update) <= limit:
        return [update]
    body = orjson.loads(update)
    items = [('robots', row) for row in body.get('robots', ())] + [
        ('events', event) for event in body.get('events', ())]
    parts = max(2, -(-len(update) // (limit * 3 // 4)))  # aim at 3/4 of the limit each
    size = max(1, -(-len(items) // parts))
    out = []
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        out.append(orjson.dumps({**body, 'robots': [i for k, i in chunk if k == 'robots'],
                                 'events': [i for k, i in chunk if k == 'events']}))
    return out


async def _quietly(awaitable: Any) -> None:
    # An ack or answer lost with the broker is redelivered (then a duplicate, acked again).
    try:
        await awaitable
    except Exception as exc:
        log.debug('broker publish failed: %s', exc)
