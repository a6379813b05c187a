"""Fixtures of the broker tests: a real redis-server per test (skipped when not installed)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import MISSING, REDIS_BINARY, RedisServer  # noqa: E402


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Yield a running redis-server on a free loopback port; stop it after the test."""
    if REDIS_BINARY is None:
        pytest.skip(MISSING)
    server = RedisServer(tmp_path / 'redis')
    server.start()
    try:
        yield server
    finally:
        server.stop()
