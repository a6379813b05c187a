"""The gateway's side of the broker: publish robots' messages durably, take their acks back.

`JetStreamCommitter` is the gateway's `Committer` (gateway/commit_worker.py) for one writer
shard when a broker is configured: `commit` publishes the batch's frames (and presence changes)
to the shard's JetStream partition, each with `Nats-Msg-Id = robot:boot:seq`, and returns once
JetStream has stored every one of them, with no acks: the robots' acks come later, from the
writer, once PostgreSQL committed (`AckInbox`). A publish that fails (the broker is down, the
stream is full) raises StoreUnavailable: the batcher puts the batch back in front and retries,
nothing is acknowledged meanwhile, and a retried message JetStream stored already is dropped
as a duplicate by its id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import orjson
from nats.aio.msg import Msg

from lekiwi_fleet_server.broker import subjects
from lekiwi_fleet_server.broker.link import NatsLink
from lekiwi_fleet_server.domain.protocol import ErrorCode
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, RawFrame, Refusal
from lekiwi_fleet_server.store.interface import PresenceChange, StoreUnavailable

log = logging.getLogger(__name__)


class JetStreamCommitter:
    """Hand one writer shard's batches to its JetStream partition (see the module docstring)."""

    def __init__(self, link: NatsLink, shard: int, gateway_id: str, *,
                 publish_timeout_s: float = 5.0) -> None:
        self._link = link
        self._shard = shard
        self._subject = subjects.durable_subject(shard)
        self._gateway_id = gateway_id
        self._timeout_s = publish_timeout_s

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        """Store the batch in JetStream; raise StoreUnavailable unless all of it was stored."""
        outcome = CommitOutcome()
        futures: list[asyncio.Future[object]] = []
        try:
            # Bounded as a whole: while the broker is away publishing may also block (nats-py
            # caps the publishes awaiting their PubAck).
            await asyncio.wait_for(self._publish(frames, presence, now, outcome, futures),
                                   self._timeout_s)
        except Exception as exc:  # broker down, stream full, timeout: hold the batch
            for future in futures:
                future.cancel()
            raise StoreUnavailable(f'JetStream partition {self._shard}: {exc!r}') from exc
        outcome.messages = len(frames)
        return outcome

    async def _publish(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                       now: float, outcome: CommitOutcome,
                       futures: list[asyncio.Future[object]]) -> None:
        js = self._link.js
        subject = self._subject
        gateway = self._gateway_id
        for robot_id, received_at, payload in frames:
            try:
                head = orjson.loads(payload)
                # lekiwi-fleet/2 state readings number in a space of their own (`state_seq`).
                msg_id = (subjects.message_id(robot_id, head['boot_id'], head['seq'])
                          if 'seq' in head else subjects.state_message_id(
                              robot_id, head['boot_id'], head['state_seq']))
            except (ValueError, KeyError, TypeError) as exc:
                # The session validated the frame: only a bug gets here. The writer would
                # refuse it the same way; without an id it cannot be de-duplicated.
                outcome.refusals.append((robot_id, ErrorCode.SERVER_ERROR.value,
                                         f'undecodable frame: {exc!r}', None))
                continue
            futures.append(await js.publish_async(subject, payload, headers={
                subjects.MSG_ID: msg_id, subjects.ROBOT: robot_id,
                subjects.GATEWAY: gateway, subjects.RECEIVED_AT: repr(received_at)}))
        for change in presence:
            body = orjson.dumps([change.robot_id, change.online, change.at, change.reason])
            futures.append(await js.publish_async(subject, body, headers={
                subjects.MSG_ID: f'presence:{change.robot_id}:{change.at!r}:{change.online}',
                subjects.ROBOT: change.robot_id, subjects.GATEWAY: gateway,
                subjects.KIND: 'presence', subjects.RECEIVED_AT: repr(now)}))
        if futures:
            await asyncio.gather(*futures)

    async def forget(self, robot_ids: Sequence[str]) -> None:
        """Tell the shard's writer to reload these robots (an admin change)."""
        await self._link.nc.publish(subjects.forget_subject(self._shard),
                                    orjson.dumps(list(robot_ids)))

    async def mark_all_offline(self, now: float) -> int:
        """Mark nothing: with a broker several gateways serve one fleet (presence is shared)."""
        return 0

    async def flush_state(self, now: float) -> CommitOutcome | None:
        """Flush nothing: the shard's writer role flushes its readings itself."""
        return None


Deliver = Callable[[CommitOutcome], None]


class AckInbox:
    """The gateway's subscription to its acks and refusals, handed to `deliver` as outcomes."""

    def __init__(self, link: NatsLink, gateway_id: str, deliver: Deliver) -> None:
        self._link = link
        self._subject = subjects.ack_subject(gateway_id)
        self._deliver = deliver
        self._sub: object | None = None

    async def start(self) -> None:
        """Subscribe to this gateway's ack subject."""
        self._sub = await self._link.nc.subscribe(self._subject, cb=self._on_message)

    async def _on_message(self, msg: Msg) -> None:
        try:
            acks, refusals = decode_acks(msg.data)
        except (ValueError, TypeError) as exc:
            log.error('undecodable ack message on %s: %s', self._subject, exc)
            return
        self._deliver(CommitOutcome(acks=acks, refusals=refusals, acknowledged=len(acks)))


def encode_acks(acks: Sequence[tuple[str, bytes]], refusals: Sequence[Refusal]) -> bytes:
    """Encode the acks and refusals a writer sends one gateway for one batch."""
    return orjson.dumps({'acks': [(robot, frame.decode()) for robot, frame in acks],
                         'refusals': list(refusals)})


def decode_acks(data: bytes) -> tuple[list[tuple[str, bytes]], list[Refusal]]:
    """Decode what `encode_acks` made."""
    body = orjson.loads(data)
    acks = [(str(robot), str(frame).encode()) for robot, frame in body['acks']]
    refusals: list[Refusal] = [(str(r), str(c), str(m), None if f is None else str(f))
                               for r, c, m, f in body['refusals']]
    return acks, refusals
