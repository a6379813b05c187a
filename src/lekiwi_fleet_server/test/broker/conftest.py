"""Broker test fixtures: a real nats-server with JetStream (skipped, saying why, without one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nats_server import NatsServer, nats_binary


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    binary = nats_binary()
    if binary is None:
        pytest.skip('no nats-server binary (scripts/ensure_nats.sh installs it)')
    server = NatsServer(binary, tmp_path / 'jetstream')
    server.start()
    yield server
    server.stop()
