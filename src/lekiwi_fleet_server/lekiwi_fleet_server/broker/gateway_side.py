"""The gateway's side of the broker: hand robots' messages to the writers, take their acks back.

`JetStreamCommitter` is the gateway's `Committer` (gateway/commit_worker.py) for one writer
shard when a broker is configured. `commit` splits the batch:

- durable messages (history, and presence changes) go to the shard's JetStream partition, each
  with `Nats-Msg-Id = robot:boot:seq`, and `commit` returns once JetStream has stored every one
  of them. A publish that fails (the broker is down, the stream is full) raises
  StoreUnavailable: the batcher puts the batch back in front and retries, nothing is
  acknowledged meanwhile, and a retried message JetStream stored already is dropped as a
  duplicate by its id;
- lekiwi-fleet/2 state readings (`state_seq`) go on core NATS, packed: one message (or a few,
  each under `max_payload`) per shard and batch (broker/packing.py). They are not stored: a
  reading lost with NATS or with a writer that is gone is simply never acked, and the robot's
  outbox resends it (or a newer reading supersedes it).

Either way there are no acks in what `commit` returns: the robots' acks come later from the
writer, once it committed (`AckInbox`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import orjson
from nats.aio.msg import Msg

from lekiwi_fleet_server.broker import packing, subjects
from lekiwi_fleet_server.broker.link import NatsLink
from lekiwi_fleet_server.domain.protocol import ErrorCode
from lekiwi_fleet_server.gateway.commit_worker import CommitOutcome, RawFrame, Refusal
from lekiwi_fleet_server.store.interface import PresenceChange, StoreUnavailable

log = logging.getLogger(__name__)


class JetStreamCommitter:
    """Hand one writer shard's batches to its JetStream partition (see the module docstring)."""

    def __init__(self, link: NatsLink, shard: int, gateway_id: str, *,
                 publish_timeout_s: float = 5.0, ack_wait_s: float = 30.0) -> None:
        self._link = link
        self._shard = shard
        self._subject = subjects.durable_subject(shard)
        self._state_subject = subjects.state_subject(shard)
        self._gateway_id = gateway_id
        self._timeout_s = publish_timeout_s
        self._ack_wait_s = ack_wait_s
        self._partition_ready = False
        self.durable_published = 0  # messages stored in JetStream
        self.state_sent = 0  # readings sent on core NATS
        self.state_messages = 0  # ... in this many packed messages

    async def commit(self, frames: Sequence[RawFrame], presence: Sequence[PresenceChange],
                     now: float, want_update: bool) -> CommitOutcome:
        """Store the batch in JetStream; raise StoreUnavailable unless all of it was stored."""
        outcome = CommitOutcome()
        futures: list[asyncio.Future[object]] = []
        readings = [frame for frame in frames if packing.is_state_reading(frame[2])]
        durable = frames if not readings else [
            frame for frame in frames if not packing.is_state_reading(frame[2])]
        try:
            if not self._partition_ready:
                # The stream keeps a message only for a consumer: make sure the shard's is
                # there before the first publish (the wiring made it; a test may not have).
                await asyncio.wait_for(self._link.ensure_partitions(
                    [self._shard], self._ack_wait_s), self._timeout_s)
                self._partition_ready = True
            if readings:  # first: they wait for nothing, not for JetStream's PubAcks
                await self._send_readings(readings)
            # Bounded as a whole: while the broker is away publishing may also block (nats-py
            # caps the publishes awaiting their PubAck).
            await asyncio.wait_for(self._publish(durable, presence, now, outcome, futures),
                                   self._timeout_s)
        except Exception as exc:  # broker down, stream full, timeout: hold the batch
            for future in futures:
                future.cancel()
            raise StoreUnavailable(f'JetStream partition {self._shard}: {exc!r}') from exc
        self.durable_published += len(durable) + len(presence)
        outcome.messages = len(frames)
        return outcome

    async def _send_readings(self, readings: Sequence[RawFrame]) -> None:
        """Send state readings packed on core NATS (no reply: the acks come to our inbox)."""
        nc = self._link.nc
        # The connection's limit (1 MB by default), less room for the protocol's own lines.
        limit = max(64 * 1024, (nc.max_payload or 1024 * 1024) - 4096)
        for body in packing.pack(self._gateway_id, readings, limit):
            await nc.publish(self._state_subject, body)
            self.state_messages += 1
        self.state_sent += len(readings)

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

    def __init__(self, link: NatsLink, gateway_id: str, deliver: Deliver,
                 counted: Deliver = lambda _outcome: None) -> None:
        self._link = link
        self._subject = subjects.ack_subject(gateway_id)
        self._deliver = deliver
        self._counted = counted  # the gateway's metrics: what the writers committed for it
        self._sub: object | None = None

    async def start(self) -> None:
        """Subscribe to this gateway's ack subject."""
        self._sub = await self._link.nc.subscribe(self._subject, cb=self._on_message)
        await self._link.nc.flush()  # subscribed at the server before any batch is handed over

    async def _on_message(self, msg: Msg) -> None:
        try:
            outcome = decode_acks(msg.data)
        except (ValueError, TypeError, KeyError) as exc:
            log.error('undecodable ack message on %s: %s', self._subject, exc)
            return
        self._counted(outcome)
        self._deliver(outcome)


def encode_acks(acks: Sequence[tuple[str, bytes]], refusals: Sequence[Refusal],
                acknowledged: int = 0, duplicates: int = 0) -> bytes:
    """Encode the acks and refusals a writer sends one gateway for one batch.

    `acknowledged` and `duplicates` count this gateway's messages in the batch (its metrics).
    """
    return orjson.dumps({'acks': [(robot, frame.decode()) for robot, frame in acks],
                         'refusals': list(refusals), 'n': acknowledged, 'd': duplicates})


def decode_acks(data: bytes) -> CommitOutcome:
    """Decode what `encode_acks` made, as the outcome the gateway delivers."""
    body = orjson.loads(data)
    acks = [(str(robot), str(frame).encode()) for robot, frame in body['acks']]
    refusals: list[Refusal] = [(str(r), str(c), str(m), None if f is None else str(f))
                               for r, c, m, f in body['refusals']]
    return CommitOutcome(acks=acks, refusals=refusals, acknowledged=int(body.get('n', 0)),
                         duplicates=int(body.get('d', 0)))
