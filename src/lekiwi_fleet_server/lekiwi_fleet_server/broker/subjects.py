"""Subject and header names of the broker, and the de-duplication id of a robot message.

One JetStream stream (`STREAM`) holds every partition: `lekiwi.durable.<shard>`, one per writer
shard (domain/shards.py), so each writer is the single consumer of its robots' messages.
Acks go back on core NATS to `lekiwi.acks.<gateway>`; dashboard updates on `lekiwi.updates.<n>`
(n: the writer shard, or `api` for what the API publishes itself). lekiwi-fleet/2 state readings
travel on core NATS, packed (broker/packing.py), to `lekiwi.state.<shard>`: not stored, acked
by the writer once its memory has them. Robots' Deploy results go to `lekiwi.actions.results`.
"""

from __future__ import annotations

STREAM = 'LEKIWI_DURABLE'
DURABLE_PREFIX = 'lekiwi.durable'
UPDATES_PREFIX = 'lekiwi.updates'
# Every gateway publishes its robots' Deploy results here (core NATS, not stored) and every
# process listens: the driving deployment engine may run beside any gateway (routing.py).
ACTION_RESULTS = 'lekiwi.actions.results'

# Headers of a durable message (the payload is the robot's validated publish frame, as is).
MSG_ID = 'Nats-Msg-Id'
ROBOT = 'Lekiwi-Robot'
GATEWAY = 'Lekiwi-Gateway'
RECEIVED_AT = 'Lekiwi-At'
KIND = 'Lekiwi-Kind'  # 'frame' (default) or 'presence' (the payload is a PresenceChange)
# Headers of a dashboard update.
PARTITION = 'Lekiwi-Partition'
EPOCH = 'Lekiwi-Epoch'  # a writer's start: its sequence numbers begin again at 1
SEQ = 'Lekiwi-Seq'


def durable_subject(shard: int) -> str:
    """Return the JetStream subject of a writer shard's partition."""
    return f'{DURABLE_PREFIX}.{shard}'


def state_subject(shard: int) -> str:
    """Return the core-NATS subject of a writer shard's packed state readings."""
    return f'lekiwi.state.{shard}'


def ack_subject(gateway_id: str) -> str:
    """Return the subject a gateway takes its robots' acks and refusals on."""
    return f'lekiwi.acks.{gateway_id}'


def forget_subject(shard: int) -> str:
    """Return the subject that tells a writer shard to reload robots (admin changes)."""
    return f'lekiwi.writer.{shard}.forget'


def updates_subject(partition: int | str) -> str:
    """Return the subject of a partition's dashboard updates."""
    return f'{UPDATES_PREFIX}.{partition}'


def message_id(robot_id: str, boot_id: str, seq: int) -> str:
    """Return the JetStream de-duplication id of a robot's message (`robot:boot:seq`)."""
    return f'{robot_id}:{boot_id}:{seq}'


def state_message_id(robot_id: str, boot_id: str, state_seq: int) -> str:
    """Return the de-duplication id of a lekiwi-fleet/2 state reading (`robot:boot:s<seq>`)."""
    return f'{robot_id}:{boot_id}:s{state_seq}'
