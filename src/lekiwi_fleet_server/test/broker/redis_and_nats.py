"""A redis-server and a nats-server side by side, as a fleet of gateways shares them (tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import nats_server
import pytest
import redis_server


@contextlib.contextmanager
def running_redis_and_nats(
        directory: Path) -> Iterator[tuple[redis_server.RedisServer, nats_server.NatsServer]]:
    """Run both on free loopback ports, Redis working in `directory`; skip if one is missing."""
    if redis_server.REDIS_BINARY is None:
        pytest.skip(redis_server.MISSING)
    if nats_server.NATS_BINARY is None:
        pytest.skip(nats_server.MISSING)
    redis, nats = redis_server.RedisServer(directory / 'redis'), nats_server.NatsServer()
    redis.start()
    nats.start()
    try:
        yield redis, nats
    finally:
        redis.stop()
        nats.stop()
