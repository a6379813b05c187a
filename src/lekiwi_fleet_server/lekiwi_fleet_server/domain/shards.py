"""Which writer shard owns a robot: a stable hash of its id, the same in every process.

With a broker and `writer_shards` > 1 the server runs that many writer shards (broker/), each
the only writer of its own robots (their current state, sequence records, streams and
snapshots) and the only consumer of their JetStream partition. A robot's shard must not depend
on the process or the run (Python's `hash` of a str does), so it is the CRC-32 of the id's
UTF-8 bytes modulo the shard count.
"""

from __future__ import annotations

import zlib

MAX_SHARDS = 8


def shard_of(robot_id: str, shards: int) -> int:
    """Return the shard (0 .. shards-1) that owns `robot_id`."""
    if shards == 1:
        return 0
    return zlib.crc32(robot_id.encode('utf-8')) % shards


def check_shard(index: int, shards: int) -> None:
    """Raise ValueError unless `index` is a shard of `shards` (1 .. MAX_SHARDS)."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f'the writer shard count must be 1..{MAX_SHARDS}, not {shards}')
    if not 0 <= index < shards:
        raise ValueError(f'writer shard {index} is not one of 0..{shards - 1}')
