"""Broker test fixtures: a real nats-server (with JetStream) per test.

Skipped, saying why, when its binary is not installed. `redis_server` is test/conftest.py's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from nats_server import NatsServer, nats_binary  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """Yield a running nats-server with JetStream on a free loopback port."""
    binary = nats_binary()
    if binary is None:
        pytest.skip('no nats-server binary (scripts/ensure_nats.sh installs it)')
    server = NatsServer(binary, tmp_path / 'jetstream')
    server.start()
    try:
        yield server
    finally:
        server.stop()
