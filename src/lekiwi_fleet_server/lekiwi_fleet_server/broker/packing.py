"""Packed state readings: many raw frames of one gateway in one core-NATS message.

lekiwi-fleet/2 state readings (heartbeats, teleop statuses numbered by `state_seq`) are
superseded a second later and acked once the writer's memory has them, so they need no
stored copy in JetStream: a gateway sends each writer shard one core-NATS message per batch
(or a few, each under the connection's `max_payload`) holding the batch's readings as they
came, and the writer answers their acks in one message. The layout is length-prefixed so
that the writer hands the payloads to `CommitWorker.commit` without decoding or copying them
into another encoding:

    4 bytes big-endian: length of the index | index (JSON) | payload 1 | payload 2 | ...

where the index is `{"g": gateway_id, "f": [[robot_id, received_at, payload_length], ...]}`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

from lekiwi_fleet_server.gateway.commit_worker import RawFrame

# A reading is a frame numbered in the state space: `state_seq` can only be a JSON key here
# (a string value holding those bytes would have its quotes escaped, or be exactly the word).
# A history frame taken for one by that rare value is still committed durably before its ack
# by the writer; it only misses JetStream's buffering, and the robot resends it unacked.
STATE_MARK = b'"state_seq"'
_LENGTH = 4


def is_state_reading(payload: bytes) -> bool:
    """Tell whether a validated publish frame is a lekiwi-fleet/2 state reading."""
    return STATE_MARK in payload


def pack(gateway_id: str, frames: Sequence[RawFrame], max_bytes: int) -> Iterator[bytes]:
    """Yield messages of at most about `max_bytes` each holding all of `frames`, in order."""
    budget = max(1024, max_bytes - 256)  # room for the index's own overhead per message
    start = 0
    while start < len(frames):
        size, end = 0, start
        while end < len(frames) and (end == start or size + len(frames[end][2]) + 48 <= budget):
            size += len(frames[end][2]) + len(frames[end][0]) + 32
            end += 1
        chunk = frames[start:end]
        index = orjson.dumps({'g': gateway_id,
                              'f': [(robot, at, len(payload)) for robot, at, payload in chunk]})
        yield b''.join((len(index).to_bytes(_LENGTH, 'big'), index,
                        *(payload for _r, _a, payload in chunk)))
        start = end


def unpack(data: bytes) -> tuple[str, list[RawFrame]]:
    """Return the gateway id and the frames of a packed message; ValueError if malformed."""
    if len(data) < _LENGTH:
        raise ValueError('packed readings: too short')
    length = int.from_bytes(data[:_LENGTH], 'big')
    end = _LENGTH + length
    if end > len(data):
        raise ValueError('packed readings: index runs past the end')
    try:
        index = orjson.loads(data[_LENGTH:end])
        gateway, entries = str(index['g']), index['f']
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f'packed readings: bad index ({exc})') from exc
    frames: list[RawFrame] = []
    view = memoryview(data)
    offset = end
    for robot, at, size in entries:
        if not isinstance(size, int) or size < 0 or offset + size > len(data):
            raise ValueError('packed readings: a payload runs past the end')
        frames.append((str(robot), float(at), bytes(view[offset:offset + size])))
        offset += size
    if offset != len(data):
        raise ValueError('packed readings: bytes left over after the last payload')
    return gateway, frames
