"""A writer shard behind the broker: the single consumer of its JetStream partition.

`PartitionWriter` fetches batches from its shard's durable consumer, commits each through
`CommitWorker.commit` in its own writer thread (one transaction), and only then publishes the
robots' acks and refusals to the gateway that received each robot's frames, the dashboard
update (with this partition's sequence number, so a dashboard that misses one resynchronises),
and acks the JetStream messages. A writer SIGKILLed before that leaves its messages unacked:
JetStream redelivers them to the next writer of the shard, and the store's idempotent message
keys turn what was committed already into duplicates (acked again, stored once). A failed
commit naks the batch for redelivery after `retry_s`.
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
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from lekiwi_fleet_server.broker import subjects
from lekiwi_fleet_server.broker.gateway_side import encode_acks
from lekiwi_fleet_server.broker.link import NatsLink
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, CommitWorker, RawFrame
from lekiwi_fleet_server.store.interface import PresenceChange

log = logging.getLogger(__name__)


def consumer_name(shard: int) -> str:
    """Return the durable consumer of a shard's partition (one per shard, whoever runs it)."""
    return f'writer-{shard}'


class PartitionWriter:
    """Consume, commit, answer: one writer shard over NATS (see the module docstring)."""

    def __init__(self, link: NatsLink, worker: CommitWorker, shard: int, *,
                 max_batch: int = 5000, fetch_timeout_s: float = 0.25, ack_wait_s: float = 30.0,
                 retry_s: float = 0.5, state_flush_interval_s: float = 1.0,
                 now: Callable[[], float] = time.time) -> None:
        self._link = link
        self._worker = worker
        self.shard = shard
        self._max_batch = max_batch
        self._fetch_timeout_s = fetch_timeout_s
        self._ack_wait_s = ack_wait_s
        self._retry_s = retry_s
        self._flush_s = state_flush_interval_s
        self._now = now
        # One thread: the store sees a single writer, and forgets run between batches.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f'fleet-writer-{shard}')
        self._epoch = uuid.uuid4().hex[:12]
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self.committed_batches = 0
        self.redelivered = 0

    async def start(self) -> None:
        """Bind to the shard's durable consumer and start consuming."""
        js = self._link.js
        config = ConsumerConfig(
            durable_name=consumer_name(self.shard), ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=self._ack_wait_s, max_deliver=-1,
            max_ack_pending=-1, filter_subject=subjects.durable_subject(self.shard))
        pull = await js.pull_subscribe(subjects.durable_subject(self.shard),
                                       durable=consumer_name(self.shard),
                                       stream=subjects.STREAM, config=config)
        forget = await self._link.nc.subscribe(subjects.forget_subject(self.shard),
                                               cb=self._on_forget)
        self._subs = [pull, forget]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(pull), name=f'writer-{self.shard}')]
        if getattr(self._worker, 'flush_state', None) is not None:
            self._tasks.append(loop.create_task(self._flush_loop(),
                                                name=f'writer-{self.shard}-flush'))
        log.info('writer shard %d consuming %s', self.shard,
                 subjects.durable_subject(self.shard))

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

    async def _consume(self, pull: Any) -> None:
        while True:
            try:
                msgs = await pull.fetch(self._max_batch, timeout=self._fetch_timeout_s)
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: nats-py reconnects
                log.warning('writer %d: fetch failed: %s', self.shard, exc)
                await asyncio.sleep(self._retry_s)
                continue
            if msgs:
                await self.commit_messages(msgs)

    async def commit_messages(self, msgs: Sequence[Msg]) -> CommitOutcome | None:
        """Commit one batch of JetStream messages; ack them only once it committed."""
        frames: list[RawFrame] = []
        presence: list[PresenceChange] = []
        gateway_of: dict[str, str] = {}
        for msg in msgs:
            headers = msg.headers or {}
            robot_id = headers.get(subjects.ROBOT, '')
            gateway_of[robot_id] = headers.get(subjects.GATEWAY, '')
            if msg.metadata.num_delivered > 1:
                self.redelivered += 1
            if headers.get(subjects.KIND) == 'presence':
                rid, online, at, reason = orjson.loads(msg.data)
                presence.append(PresenceChange(rid, bool(online), float(at), str(reason)))
            else:
                frames.append((robot_id, float(headers.get(subjects.RECEIVED_AT, self._now())),
                               msg.data))
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self._thread, self._worker.commit, frames,
                                                 presence, self._now(), True)
        except Exception as exc:
            log.warning('writer %d: commit of %d messages failed, redelivering: %s',
                        self.shard, len(msgs), exc)
            for msg in msgs:
                await _quietly(msg.nak(delay=self._retry_s))
            return None
        self.committed_batches += 1
        # Committed: answer the gateways, tell the dashboards, then release the messages.
        await self._answer(outcome, gateway_of)
        for msg in msgs:
            await _quietly(msg.ack())
        return outcome

    async def _answer(self, outcome: CommitOutcome, gateway_of: dict[str, str]) -> None:
        nc = self._link.nc
        by_gateway: dict[str, tuple[list[tuple[str, bytes]], list[Any]]] = {}
        for robot_id, frame in outcome.acks:
            by_gateway.setdefault(gateway_of.get(robot_id, ''), ([], []))[0].append(
                (robot_id, frame))
        for refusal in outcome.refusals:
            by_gateway.setdefault(gateway_of.get(refusal[0], ''), ([], []))[1].append(refusal)
        for gateway, (acks, refusals) in by_gateway.items():
            if gateway:
                await _quietly(nc.publish(subjects.ack_subject(gateway),
                                          encode_acks(acks, refusals)))
        await self._publish_update(outcome.update)

    async def _publish_update(self, update: str | None) -> None:
        if update is None:
            return
        self._seq += 1
        await _quietly(self._link.nc.publish(
            subjects.updates_subject(self.shard), update.encode(),
            headers={subjects.PARTITION: str(self.shard), subjects.EPOCH: self._epoch,
                     subjects.SEQ: str(self._seq)}))

    async def _flush_loop(self) -> None:
        flush = self._worker.flush_state  # type: ignore[attr-defined]
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


async def _quietly(awaitable: Any) -> None:
    # An ack or answer lost with the broker is redelivered (then a duplicate, acked again).
    try:
        await awaitable
    except Exception as exc:
        log.debug('broker publish failed: %s', exc)
